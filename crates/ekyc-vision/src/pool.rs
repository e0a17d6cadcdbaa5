//! A bounded pool of OS threads for blocking work (decoding, inference) on behalf of async
//! callers: the async runtime never blocks, a full queue is refused at once (so a service
//! can answer RESOURCE_EXHAUSTED instead of queueing without bound), and work whose caller
//! has gone away is skipped before it starts.
//!
//! A job that panics is answered [`PoolError::Panicked`] (never left hanging). In a pool
//! made with [`InferencePool::restarting`], the worker then drops its state (the ONNX
//! sessions the panic may have left broken), makes a fresh one, and counts the restart in
//! `ekyc_worker_restarts_total{service,role}`; [`InferencePool::usable`] is false meanwhile,
//! so health can say NOT_SERVING.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;

/// A job; returns true when it panicked.
type Job<S> = Box<dyn FnOnce(&mut S) -> bool + Send>;

/// How a worker makes a fresh state after a panic, and the labels its restarts are counted
/// under.
pub struct Restart<S> {
    pub service: &'static str,
    pub role: &'static str,
    pub make: Arc<dyn Fn() -> Result<S, String> + Send + Sync>,
}

impl<S> Clone for Restart<S> {
    fn clone(&self) -> Self {
        Self { service: self.service, role: self.role, make: Arc::clone(&self.make) }
    }
}

/// Workers restarting now and restarts so far, shared by a pool's threads.
#[derive(Debug, Default)]
pub struct RestartCounters {
    restarting: AtomicUsize,
    restarts: AtomicU64,
}

impl RestartCounters {
    /// False while any thread is replacing a state it lost to a panic.
    pub fn usable(&self) -> bool {
        self.restarting.load(Ordering::SeqCst) == 0
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::SeqCst)
    }

    /// Marks one thread restarting, calls `make` until it succeeds (waiting `backoff`
    /// between failures), counts the restart, and returns the fresh state.
    pub fn restart<S>(&self, restart: &Restart<S>, thread: &str, backoff: Duration) -> S {
        self.restarting.fetch_add(1, Ordering::SeqCst);
        tracing::error!(
            service = restart.service,
            role = restart.role,
            thread,
            "a model thread panicked: restarting it with fresh sessions"
        );
        metrics::counter!("ekyc_worker_restarts_total", "service" => restart.service, "role" => restart.role).increment(1);
        let state = loop {
            match (restart.make)() {
                Ok(s) => break s,
                Err(e) => {
                    tracing::error!(service = restart.service, role = restart.role, thread, error = %e, "restart failed; retrying");
                    std::thread::sleep(backoff);
                }
            }
        };
        self.restarts.fetch_add(1, Ordering::SeqCst);
        self.restarting.fetch_sub(1, Ordering::SeqCst);
        tracing::info!(service = restart.service, role = restart.role, thread, "restarted");
        state
    }
}

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

/// Threads that each own a state `S` (for example a `FacePipeline` with its own ONNX
/// sessions, so workers never wait on each other's sessions) and run jobs on it.
pub struct InferencePool<S> {
    tx: SyncSender<Job<S>>,
    threads: usize,
    skipped: Arc<std::sync::atomic::AtomicU64>,
    restarts: Arc<RestartCounters>,
}

impl<S> std::fmt::Debug for Restart<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restart").field("service", &self.service).field("role", &self.role).finish()
    }
}

impl<S> std::fmt::Debug for InferencePool<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferencePool").field("threads", &self.threads).finish()
    }
}

impl<S: Send + 'static> InferencePool<S> {
    /// Starts one worker per state, with room for `queue` waiting jobs. A worker whose job
    /// panics keeps its state.
    pub fn new(states: Vec<S>, queue: usize, name: &str) -> std::io::Result<Self> {
        Self::start(states, queue, name, None)
    }

    /// [`Self::new`], but a worker whose job panicked replaces its state with a fresh one
    /// from `restart.make` before it takes the next job.
    pub fn restarting(states: Vec<S>, queue: usize, name: &str, restart: Restart<S>) -> std::io::Result<Self> {
        Self::start(states, queue, name, Some(restart))
    }

    fn start(states: Vec<S>, queue: usize, name: &str, restart: Option<Restart<S>>) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<Job<S>>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let threads = states.len();
        let counters = Arc::new(RestartCounters::default());
        for (i, state) in states.into_iter().enumerate() {
            let rx: Arc<Mutex<Receiver<Job<S>>>> = Arc::clone(&rx);
            let restart = restart.clone();
            let counters = Arc::clone(&counters);
            let thread = format!("{name}-{i}");
            std::thread::Builder::new().name(thread.clone()).spawn(move || {
                let mut state = Some(state);
                loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return }; // every sender dropped: shut down
                    let Some(s) = state.as_mut() else { return };
                    if job(s)
                        && let Some(r) = &restart
                    {
                        // Let go of the sessions the panic may have broken before making new ones.
                        drop(state.take());
                        state = Some(counters.restart(r, &thread, Duration::from_secs(1)));
                    }
                }
            })?;
        }
        Ok(Self { tx, threads, skipped: Arc::default(), restarts: counters })
    }

    /// False while a worker is replacing a state it lost to a panic.
    pub fn usable(&self) -> bool {
        self.restarts.usable()
    }

    /// Workers restarted after a panic so far.
    pub fn restarts(&self) -> u64 {
        self.restarts.restarts()
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Jobs skipped because their caller had gone away before a worker took them.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `f` on a worker and waits for its result without blocking the async runtime.
    /// Fails at once with [`PoolError::Busy`] when the queue is full. If the returned future
    /// is dropped (the caller cancelled or timed out) before a worker takes the job, the job
    /// is skipped.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        F: FnOnce(&mut S) -> T + Send + 'static,
        T: Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel::<Result<T, PoolError>>();
        let skipped = Arc::clone(&self.skipped);
        // The caller's span goes with the job, so spans made by the work nest below the
        // caller's and the work shows in its trace.
        let span = tracing::Span::current();
        let job: Job<S> = Box::new(move |state: &mut S| {
            if reply.is_closed() {
                skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return false;
            }
            let result = span.in_scope(|| catch_unwind(AssertUnwindSafe(|| f(state)))).map_err(|_| PoolError::Panicked);
            // Let go of the span before replying: the caller may end it as soon as it has
            // the result.
            drop(span);
            let panicked = result.is_err();
            let _ = reply.send(result);
            panicked
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
        let pool = InferencePool::new(vec![41u32], 1, "test").expect("spawn");
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

        // A job whose caller gave up before a worker took it is skipped, not run.
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let (hold_rx, started_tx) = (Mutex::new(hold_rx), Mutex::new(started_tx));
        let mut blocker = Box::pin(pool.run(move |_| {
            let _ = started_tx.lock().map(|t| t.send(()));
            let _ = hold_rx.lock().map(|r| r.recv());
        }));
        assert!(blocker.as_mut().poll(&mut cx).is_pending());
        started_rx.recv().expect("worker took the blocking job");
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let mut abandoned = Box::pin(pool.run(move |_| flag.store(true, std::sync::atomic::Ordering::SeqCst)));
        assert!(abandoned.as_mut().poll(&mut cx).is_pending());
        drop(abandoned);
        hold_tx.send(()).expect("worker waiting");
        blocker.await.expect("blocker finishes");
        // The worker skips the abandoned job as soon as it takes it from the queue; until it
        // has, the one queue slot is still full.
        let mut after = pool.run(|s| *s).await;
        for _ in 0..200 {
            if after != Err(PoolError::Busy) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
            after = pool.run(|s| *s).await;
        }
        assert_eq!(after, Ok(41));
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(pool.skipped(), 1);
    }

    #[tokio::test]
    async fn a_worker_whose_job_panics_answers_and_restarts_with_a_fresh_state() {
        let made = Arc::new(AtomicU64::new(0));
        let m = Arc::clone(&made);
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate_rx));
        let make = Arc::new(move || {
            // Hold the restart until the test has seen the pool unusable.
            let _ = gate.lock().map(|g| g.recv());
            Ok(100 + m.fetch_add(1, Ordering::SeqCst) as u32)
        });
        let pool = InferencePool::restarting(vec![1u32], 4, "test", Restart { service: "test", role: "worker", make }).expect("spawn");
        assert_eq!(
            pool.run(|s| {
                *s += 1;
                *s
            })
            .await,
            Ok(2)
        );
        let answer = pool.run(|_| -> u32 { panic!("injected") }).await;
        assert_eq!(answer, Err(PoolError::Panicked), "the panicking call is answered, not left hanging");
        let mut waited = 0;
        while pool.usable() {
            assert!(waited < 200, "never marked unusable");
            tokio::time::sleep(Duration::from_millis(5)).await;
            waited += 1;
        }
        gate_tx.send(()).expect("restart waiting");
        assert_eq!(pool.run(|s| *s).await, Ok(100), "the next job sees the fresh state, not the old one");
        assert!(pool.usable());
        assert_eq!(pool.restarts(), 1);
        assert_eq!(made.load(Ordering::SeqCst), 1);
    }
}
