//! Dynamic batching of face crops across requests. Crops from concurrent calls wait in one
//! bounded queue; each embedding thread owns an embedder session, takes what is waiting (up
//! to `max_batch` crops, waiting at most `max_batch_wait_ms` for the first crop's company),
//! drops crops whose caller has gone away, runs the model once and replies to each caller.
//! While one thread runs a batch, the next batch gathers in the queue.
//!
//! A model run that panics answers every crop of its batch with an error (the callers get
//! INTERNAL, never a hang); the thread then drops its session, opens a fresh one and counts
//! the restart (`ekyc_worker_restarts_total{service="facematch",role="embedder"}`).
//! [`Batcher::usable`] is false meanwhile, so health says NOT_SERVING.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ekyc_vision::imgops::FloatImage;
use ekyc_vision::models::Embedder;
use ekyc_vision::pool::{Restart, RestartCounters};
use tokio::sync::oneshot;

use crate::error::FacematchError;

/// One crop to embed and where its embedding goes.
struct Job {
    crop: FloatImage,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Embedded, String>>,
    /// The submitter's span: the embedding shows in the submitter's trace.
    span: tracing::Span,
}

/// An embedding and what it cost.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub embedding: Vec<f32>,
    /// Time the crop waited in the queue.
    pub queue: Duration,
    /// Time of the model run its batch was part of.
    pub inference: Duration,
    pub batch_size: usize,
}

/// Counters, for tests and metrics.
#[derive(Debug, Default)]
pub struct BatchStats {
    pub batches: AtomicU64,
    pub crops: AtomicU64,
    /// Crops dropped before inference because their caller had gone away.
    pub skipped: AtomicU64,
}

/// Handle to the embedding threads; dropping it stops them once the queue drains.
#[derive(Debug)]
pub struct Batcher {
    tx: SyncSender<Job>,
    stats: Arc<BatchStats>,
    restarts: Arc<RestartCounters>,
    /// Test-only fault injection: the next model run panics.
    #[cfg(feature = "fault-injection")]
    panic_next: Arc<std::sync::atomic::AtomicBool>,
}

/// What an embedding thread shares with its siblings.
struct Shared {
    rx: Mutex<Receiver<Job>>,
    stats: Arc<BatchStats>,
    restarts: Arc<RestartCounters>,
    restart: Restart<Embedder>,
    max_wait: Duration,
    #[cfg(feature = "fault-injection")]
    panic_next: Arc<std::sync::atomic::AtomicBool>,
}

impl Batcher {
    /// Starts one thread per embedder; a thread whose model run panics replaces its
    /// embedder with one from `restart.make`.
    pub fn start(
        embedders: Vec<Embedder>,
        max_batch: usize,
        max_wait: Duration,
        queue: usize,
        restart: Restart<Embedder>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<Job>(queue);
        let stats = Arc::new(BatchStats::default());
        let restarts = Arc::new(RestartCounters::default());
        #[cfg(feature = "fault-injection")]
        let panic_next = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let shared = Arc::new(Shared {
            rx: Mutex::new(rx),
            stats: Arc::clone(&stats),
            restarts: Arc::clone(&restarts),
            restart,
            max_wait,
            #[cfg(feature = "fault-injection")]
            panic_next: Arc::clone(&panic_next),
        });
        for (i, embedder) in embedders.into_iter().enumerate() {
            let shared = Arc::clone(&shared);
            let max_batch = max_batch.min(embedder.max_batch()).max(1);
            std::thread::Builder::new().name(format!("embed-{i}")).spawn(move || run(embedder, &shared, max_batch, i))?;
        }
        Ok(Self {
            tx,
            stats,
            restarts,
            #[cfg(feature = "fault-injection")]
            panic_next,
        })
    }

    pub fn stats(&self) -> &BatchStats {
        &self.stats
    }

    /// False while an embedding thread is replacing a session it lost to a panic.
    pub fn usable(&self) -> bool {
        self.restarts.usable()
    }

    /// Embedding threads restarted after a panic so far.
    pub fn restarts(&self) -> u64 {
        self.restarts.restarts()
    }

    /// Test-only: the next model run panics (a real panic on the embedding thread).
    #[cfg(feature = "fault-injection")]
    pub fn inject_panic(&self) {
        self.panic_next.store(true, Ordering::SeqCst);
    }

    /// Queues a crop; the returned receiver yields its embedding. Fails at once when the
    /// queue is full.
    pub fn submit(&self, crop: FloatImage) -> Result<oneshot::Receiver<Result<Embedded, String>>, FacematchError> {
        let (reply, rx) = oneshot::channel();
        self.tx.try_send(Job { crop, enqueued: Instant::now(), reply, span: tracing::Span::current() }).map_err(|e| match e {
            TrySendError::Full(_) => FacematchError::Busy("the embedding queue is full; retry after a short backoff".into()),
            TrySendError::Disconnected(_) => FacematchError::Unavailable("the embedder has shut down".into()),
        })?;
        Ok(rx)
    }
}

fn run(mut embedder: Embedder, shared: &Shared, max_batch: usize, index: usize) {
    let (stats, max_wait) = (&*shared.stats, shared.max_wait);
    loop {
        let mut batch = Vec::with_capacity(max_batch);
        {
            let Ok(rx) = shared.rx.lock() else { return };
            match rx.recv() {
                Ok(job) => batch.push(job),
                Err(_) => return, // the engine is gone
            }
            let until = Instant::now() + max_wait;
            while batch.len() < max_batch {
                // Take what is already waiting without delay, then wait for company.
                match rx.try_recv() {
                    Ok(job) => {
                        batch.push(job);
                        continue;
                    }
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
                    Err(std::sync::mpsc::TryRecvError::Empty) => {}
                }
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match rx.recv_timeout(left) {
                    Ok(job) => batch.push(job),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        let before = batch.len();
        batch.retain(|j| !j.reply.is_closed());
        stats.skipped.fetch_add((before - batch.len()) as u64, Ordering::Relaxed);
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        let n = batch.len();
        // One span per crop, in its submitter's trace, covering the model run it shared;
        // ended (like the submitter's span let go) before the reply.
        let spans: Vec<tracing::Span> = batch
            .iter_mut()
            .map(|j| tracing::info_span!(parent: &std::mem::replace(&mut j.span, tracing::Span::none()), "facematch.embed", batch_size = n))
            .collect();
        let crops: Vec<FloatImage> = batch.iter_mut().map(|j| std::mem::replace(&mut j.crop, FloatImage::zeros(0, 0))).collect();
        let model = &embedder;
        #[cfg(feature = "fault-injection")]
        let inject = shared.panic_next.swap(false, Ordering::SeqCst);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            #[cfg(feature = "fault-injection")]
            if inject {
                panic!("injected embedder panic (fault-injection feature)");
            }
            model.embed(&crops)
        }));
        let inference = started.elapsed();
        drop(spans);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.crops.fetch_add(n as u64, Ordering::Relaxed);
        metrics::histogram!("ekyc_facematch_batch_size").record(n as f64);
        metrics::histogram!("ekyc_inference_seconds", "model" => "embedder").record(inference.as_secs_f64());
        let result = match result {
            Ok(r) => r,
            Err(_) => {
                for job in batch {
                    let _ = job.reply.send(Err("the embedder failed on this batch and is restarting".into()));
                }
                // The session may be broken: replace it before taking more work.
                drop(embedder);
                embedder = shared.restarts.restart(&shared.restart, &format!("embed-{index}"), Duration::from_secs(1));
                continue;
            }
        };
        match result {
            Ok(embeddings) => {
                for (job, embedding) in batch.into_iter().zip(embeddings) {
                    let queue = started.saturating_duration_since(job.enqueued);
                    metrics::histogram!("ekyc_facematch_queue_seconds", "stage" => "embed").record(queue.as_secs_f64());
                    let _ = job.reply.send(Ok(Embedded { embedding, queue, inference, batch_size: n }));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for job in batch {
                    let _ = job.reply.send(Err(msg.clone()));
                }
            }
        }
    }
}
