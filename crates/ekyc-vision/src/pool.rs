//! A bounded pool of OS threads for blocking work (decoding, inference) on behalf of async
//! callers: the async runtime never blocks, a full queue is refused at once (so a service
//! can answer RESOURCE_EXHAUSTED instead of queueing without bound), and work whose caller
//! has gone away is skipped before it starts.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use thiserror::Error;

type Job<S> = Box<dyn FnOnce(&S) + Send>;

/// Why a job did not run to completion.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    #[error("the inference queue is full")]
    Busy,
    #[error("the inference pool has shut down")]
    Closed,
    #[error("the job panicked")]
    Panicked,
}

/// Threads that each hold a shared `Arc<S>` (for example a `FacePipeline`) and run jobs.
pub struct InferencePool<S> {
    tx: SyncSender<Job<S>>,
    threads: usize,
}

impl<S> std::fmt::Debug for InferencePool<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferencePool").field("threads", &self.threads).finish()
    }
}

impl<S: Send + Sync + 'static> InferencePool<S> {
    /// Starts `threads` workers sharing `state`, with room for `queue` waiting jobs.
    pub fn new(state: Arc<S>, threads: usize, queue: usize, name: &str) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<Job<S>>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let threads = threads.max(1);
        for i in 0..threads {
            let rx: Arc<Mutex<Receiver<Job<S>>>> = Arc::clone(&rx);
            let state = Arc::clone(&state);
            std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || {
                loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(&state),
                        Err(_) => return, // every sender dropped: shut down
                    }
                }
            })?;
        }
        Ok(Self { tx, threads })
    }

    /// Runs `f` on a worker and waits for its result without blocking the async runtime.
    /// Fails at once with [`PoolError::Busy`] when the queue is full.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        F: FnOnce(&S) -> T + Send + 'static,
        T: Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel::<Result<T, PoolError>>();
        let job: Job<S> = Box::new(move |state: &S| {
            if reply.is_closed() {
                return; // the caller cancelled or timed out: skip the work
            }
            let result = catch_unwind(AssertUnwindSafe(|| f(state))).map_err(|_| PoolError::Panicked);
            let _ = reply.send(result);
        });
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => PoolError::Busy,
            TrySendError::Disconnected(_) => PoolError::Closed,
        })?;
        rx.await.map_err(|_| PoolError::Closed)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_on_a_worker_thread_and_refuses_when_full() {
        let pool = InferencePool::new(Arc::new(41u32), 1, 1, "test").expect("spawn");
        let caller = std::thread::current().id();
        let (v, worker) = pool.run(|s| (*s + 1, std::thread::current().id())).await.expect("runs");
        assert_eq!(v, 42);
        assert_ne!(worker, caller);

        // Block the single worker, fill the one queue slot, and the next job is refused.
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let hold_rx = Mutex::new(hold_rx);
        let started_tx = Mutex::new(started_tx);
        let blocker = pool.run(move |_| {
            let _ = started_tx.lock().map(|t| t.send(()));
            let _ = hold_rx.lock().map(|r| r.recv());
        });
        let queued = pool.run(|s| *s);
        let mut blocker = Box::pin(blocker);
        let mut queued = Box::pin(queued);
        // Poll both once so they are submitted.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(blocker.as_mut().poll(&mut cx).is_pending());
        started_rx.recv().expect("worker took the blocking job");
        assert!(queued.as_mut().poll(&mut cx).is_pending());
        assert_eq!(pool.run(|s| *s).await, Err(PoolError::Busy));
        hold_tx.send(()).expect("worker waiting");
        blocker.await.expect("blocker finishes");
        assert_eq!(queued.await, Ok(41));
    }
}
