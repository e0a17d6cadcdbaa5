//! The service kit: what the three model services (liveness, document, facematch) share,
//! written once. A service crate keeps its engine, its gRPC adapter and its one error enum.
//! The kit adds the rest:
//!
//! - [`ModelEngine`]: the few facts the kit needs about an engine: how to load it, its
//!   admission limit, whether it can answer now, and its gRPC server.
//! - [`serve`] and [`serve_loaded`]: health and reflection at once, models loaded off the
//!   async runtime (health NOT_SERVING until they are warm, and again while a crashed model
//!   thread restarts), admission, the metrics layer, traces and drain on shutdown, through
//!   [`crate::serve::serve_api_with`].
//! - [`Holder`]: where the adapter finds the engine; before it is loaded a call gets
//!   UNAVAILABLE.
//! - [`ServiceError`] and [`answer`]: each crate's error enum says its gRPC code in one
//!   `match`; the kit turns errors into statuses and counts every answer in
//!   `ekyc_requests_total{service,method,code}`.
//! - [`Workers`]: the inference pool with its queue depth,
//!   `ekyc_queue_depth{service,queue="workers"}` (jobs waiting for a worker thread), and its
//!   refusals turned into the crate's errors.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use ekyc_vision::VisionConfig;
use ekyc_vision::pool::{InferencePool, PoolError};

use crate::serve::{ApiOptions, Engine as Loading, Listener, ServeError, ServeLimits, limits_for, serve_api_with};
use crate::settings::ServiceKind;

/// A service's error enum as gRPC sees it. The crate writes its one mapping to status codes
/// in [`ServiceError::code`], and `impl From<ItsError> for tonic::Status` calls [`status`].
pub trait ServiceError: std::fmt::Display + From<ServeError> + Send + 'static {
    /// The gRPC code of this error.
    fn code(&self) -> tonic::Code;
    /// A call the service cannot take now (models loading, workers shut down): UNAVAILABLE.
    fn unavailable(message: String) -> Self;
    /// Back off and retry (a full queue): RESOURCE_EXHAUSTED.
    fn busy(message: String) -> Self;
    /// Not the caller's fault (a worker that panicked): INTERNAL.
    fn internal(message: String) -> Self;
}

/// The status for `e`: its code and its message (for bad input, the reason code first).
pub fn status<E: ServiceError>(e: &E) -> tonic::Status {
    tonic::Status::new(e.code(), e.to_string())
}

/// The gRPC answer of a call of `method` on `service`, counted in
/// `ekyc_requests_total{service,method,code}`.
pub fn answer<T, E: ServiceError>(
    service: ServiceKind,
    method: &'static str,
    result: Result<T, E>,
) -> Result<tonic::Response<T>, tonic::Status> {
    let code = match &result {
        Ok(_) => tonic::Code::Ok,
        Err(e) => e.code(),
    };
    metrics::counter!("ekyc_requests_total", "service" => service.grpc_name(), "method" => method, "code" => crate::admission::code_name(code))
        .increment(1);
    result.map(tonic::Response::new).map_err(|e| status(&e))
}

/// What the kit needs to know about a model service's engine.
pub trait ModelEngine: Sized + Send + Sync + 'static {
    /// The service it serves.
    const KIND: ServiceKind;
    /// The service's settings (`[facematch]`, ...).
    type Config: Send + 'static;
    /// The crate's one error enum.
    type Error: ServiceError;
    /// The generated gRPC server around the crate's adapter.
    type Api: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static;

    /// Loads and warms the models and starts the threads. Blocking: the kit calls it off
    /// the async runtime.
    fn start(vision: &VisionConfig, cfg: &Self::Config) -> Result<Self, Self::Error>;
    /// Requests admitted at once (the admission limit) under `cfg`.
    fn max_in_flight(cfg: &Self::Config) -> usize;
    /// The settings the engine runs with.
    fn config(&self) -> &Self::Config;
    /// False while the engine cannot answer (a model thread restarting); health follows it.
    fn usable(&self) -> bool;
    /// The gRPC server whose adapter finds the engine in `engine`, with messages up to
    /// `max_message_bytes` both ways.
    fn api(engine: Holder<Self>, max_message_bytes: usize) -> Self::Api;
}

/// Where a service's adapter finds its engine: empty until the models are loaded.
pub struct Holder<E>(Arc<OnceLock<Arc<E>>>);

impl<E> Holder<E> {
    /// The engine, once loaded.
    pub fn get(&self) -> Option<Arc<E>> {
        self.0.get().cloned()
    }
}

impl<E: ModelEngine> Holder<E> {
    /// The engine, or UNAVAILABLE while the models are still loading.
    pub fn loaded(&self) -> Result<Arc<E>, E::Error> {
        self.get().ok_or_else(|| E::Error::unavailable("the face models are still loading; retry shortly".into()))
    }
}

impl<E> Default for Holder<E> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<E> Clone for Holder<E> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<E> std::fmt::Debug for Holder<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() { "Holder(loaded)" } else { "Holder(loading)" })
    }
}

/// Serves `E`'s API on `listener` until `shutdown` completes, loading the models in the
/// background: health NOT_SERVING and calls UNAVAILABLE until they are warm; models that
/// cannot load end serving with [`ServeError::Load`] (so the process exits non-zero).
pub async fn serve<E: ModelEngine>(
    vision: VisionConfig,
    cfg: E::Config,
    max_message_bytes: usize,
    listener: impl Into<Listener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), E::Error> {
    let holder = Holder::<E>::default();
    let api = E::api(holder.clone(), max_message_bytes);
    let max_in_flight = E::max_in_flight(&cfg);
    let load = move || E::start(&vision, &cfg);
    let options = ApiOptions { limits: limits_for(max_message_bytes), usable: Some(E::usable) };
    serve_api_with(E::KIND, holder.0, Loading::Load(load), api, max_in_flight, options, listener, shutdown).await?;
    Ok(())
}

/// Serves an engine that is already loaded (tests, embedding in other programs) under
/// `limits`.
pub async fn serve_loaded<E: ModelEngine>(
    engine: Arc<E>,
    limits: ServeLimits,
    listener: impl Into<Listener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), E::Error> {
    let holder = Holder::<E>::default();
    let api = E::api(holder.clone(), limits.receive.max_message_bytes);
    let max_in_flight = E::max_in_flight(engine.config());
    let options = ApiOptions { limits, usable: Some(E::usable) };
    serve_api_with(E::KIND, holder.0, Loading::ready(engine), api, max_in_flight, options, listener, shutdown).await?;
    Ok(())
}

/// A model service's inference pool ([`InferencePool`]: bounded, refuses when full, skips
/// work whose caller went away), with its queue depth in
/// `ekyc_queue_depth{service,queue="workers"}`: jobs handed to the pool that no worker has
/// started yet. A job leaves the count when a worker takes it, when the full queue refuses
/// it, or when it is skipped. Refusals come back as the service's error `E`.
pub struct Workers<S, E> {
    pool: InferencePool<S>,
    service: ServiceKind,
    /// What the workers work on, for messages: "face", "document".
    noun: &'static str,
    queued: Arc<AtomicUsize>,
    error: std::marker::PhantomData<fn() -> E>,
}

impl<S, E> std::fmt::Debug for Workers<S, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("service", &self.service.name())
            .field("pool", &self.pool)
            .field("queued", &self.queued.load(Ordering::SeqCst))
            .finish()
    }
}

/// One job counted in the queue until dropped.
struct Queued {
    gauge: metrics::Gauge,
    queued: Arc<AtomicUsize>,
}

impl Queued {
    fn enter(service: ServiceKind, queued: &Arc<AtomicUsize>) -> Self {
        let gauge = metrics::gauge!("ekyc_queue_depth", "service" => service.grpc_name(), "queue" => "workers");
        queued.fetch_add(1, Ordering::SeqCst);
        gauge.increment(1.0);
        Queued { gauge, queued: Arc::clone(queued) }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.queued.fetch_sub(1, Ordering::SeqCst);
        self.gauge.decrement(1.0);
    }
}

impl<S: Send + 'static, E: ServiceError> Workers<S, E> {
    pub fn new(service: ServiceKind, noun: &'static str, pool: InferencePool<S>) -> Self {
        // The series exists from the start (at 0), so dashboards see it before the first
        // call. Not set: pools of one service in one process (tests) share the series.
        metrics::gauge!("ekyc_queue_depth", "service" => service.grpc_name(), "queue" => "workers").increment(0.0);
        Self { pool, service, noun, queued: Arc::default(), error: std::marker::PhantomData }
    }

    /// Runs `f` on a worker; `field` names the input in the error of a job that panicked.
    /// A full queue is the crate's busy error at once, a pool shut down its unavailable
    /// error.
    pub async fn run<T, F>(&self, field: &str, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut S) -> T + Send + 'static,
        T: Send + 'static,
    {
        let waiting = Queued::enter(self.service, &self.queued);
        let noun = self.noun;
        self.pool
            .run(move |state: &mut S| {
                drop(waiting);
                f(state)
            })
            .await
            .map_err(|e| match e {
                PoolError::Busy => E::busy(format!("all {noun} workers are busy and their queue is full; retry after a short backoff")),
                PoolError::Closed => E::unavailable(format!("the {noun} workers have shut down")),
                PoolError::Panicked if field.is_empty() => E::internal(format!("a {noun} worker failed")),
                PoolError::Panicked => E::internal(format!("{field}: a {noun} worker failed")),
            })
    }

    /// Jobs waiting for a worker now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// False while a worker is replacing a state it lost to a panic.
    pub fn usable(&self) -> bool {
        self.pool.usable()
    }

    /// Workers restarted after a panic so far.
    pub fn restarts(&self) -> u64 {
        self.pool.restarts()
    }

    /// Jobs skipped because their caller had gone away before a worker took them.
    pub fn skipped(&self) -> u64 {
        self.pool.skipped()
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum DemoError {
        #[error("{0}")]
        Busy(String),
        #[error("{0}")]
        Unavailable(String),
        #[error("{0}")]
        Internal(String),
        #[error(transparent)]
        Serve(#[from] ServeError),
    }

    impl ServiceError for DemoError {
        fn code(&self) -> tonic::Code {
            match self {
                DemoError::Busy(_) => tonic::Code::ResourceExhausted,
                DemoError::Unavailable(_) => tonic::Code::Unavailable,
                DemoError::Internal(_) | DemoError::Serve(_) => tonic::Code::Internal,
            }
        }
        fn unavailable(m: String) -> Self {
            DemoError::Unavailable(m)
        }
        fn busy(m: String) -> Self {
            DemoError::Busy(m)
        }
        fn internal(m: String) -> Self {
            DemoError::Internal(m)
        }
    }

    /// Polls `fut` once, so that it hands its job to the pool.
    fn poll_once<F: Future + Unpin>(fut: &mut F) -> std::task::Poll<F::Output> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        std::pin::Pin::new(fut).poll(&mut cx)
    }

    fn submit<F: Future + Unpin>(fut: &mut F) {
        assert!(poll_once(fut).is_pending(), "the job waits for the worker");
    }

    /// The value of `ekyc_queue_depth{service="ekyc.v1.Document",queue="workers"}` in a
    /// Prometheus exposition.
    fn depth(exposition: &str) -> Option<f64> {
        exposition
            .lines()
            .find(|l| l.starts_with("ekyc_queue_depth{") && l.contains("service=\"ekyc.v1.Document\"") && l.contains("queue=\"workers\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[tokio::test]
    async fn the_queue_depth_counts_jobs_until_a_worker_takes_them() {
        let workers: Workers<u32, DemoError> =
            Workers::new(ServiceKind::Document, "test", InferencePool::new(vec![0u32], 3, "kit-test").expect("spawn"));
        // Hold the one worker inside a job.
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let hold_rx = std::sync::Mutex::new(hold_rx);
        let mut blocker = Box::pin(workers.run("", move |_| {
            let _ = started_tx.send(());
            let _ = hold_rx.lock().map(|r| r.recv());
        }));
        submit(&mut blocker);
        started_rx.recv().expect("the worker took the blocking job");
        assert_eq!(workers.queued(), 0, "a running job is not queued");

        // The gauge as the metrics endpoint renders it, from a recorder of this test's own.
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let exposition = recorder.handle();
        let mut first = Box::pin(workers.run("", |s: &mut u32| *s + 1));
        let mut second = Box::pin(workers.run("", |s: &mut u32| *s + 2));
        let mut gone = Box::pin(workers.run("", |s: &mut u32| *s + 3));
        let mut refused = Box::pin(workers.run("", |s: &mut u32| *s));
        let refused = metrics::with_local_recorder(&recorder, || {
            submit(&mut first);
            submit(&mut second);
            submit(&mut gone);
            assert_eq!(depth(&exposition.render()), Some(3.0), "{}", exposition.render());
            // The queue holds three: a fourth is refused at once and leaves the count.
            poll_once(&mut refused)
        });
        match refused {
            std::task::Poll::Ready(Err(DemoError::Busy(m))) => assert!(m.contains("queue is full"), "{m}"),
            other => panic!("expected busy at once, got {other:?}"),
        }
        assert_eq!(workers.queued(), 3);
        assert_eq!(depth(&exposition.render()), Some(3.0));
        // A caller that goes away: its job stays queued until a worker skips it.
        drop(gone);
        assert_eq!(workers.queued(), 3);
        hold_tx.send(()).expect("the worker waits");
        blocker.await.expect("the blocker ends");
        assert_eq!(first.await.expect("runs"), 1);
        assert_eq!(second.await.expect("runs"), 2);
        // The skipped job is taken after the two others.
        for _ in 0..200 {
            if workers.queued() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(workers.queued(), 0, "every job left the queue");
        assert_eq!(depth(&exposition.render()), Some(0.0), "{}", exposition.render());
        assert_eq!(workers.skipped(), 1);
    }

    #[tokio::test]
    async fn a_panicking_job_is_internal_and_names_its_field() {
        let workers: Workers<u32, DemoError> =
            Workers::new(ServiceKind::Document, "test", InferencePool::new(vec![0u32], 1, "kit-test").expect("spawn"));
        let failed = workers.run::<(), _>("image", |_| panic!("broken model")).await;
        match failed {
            Err(e @ DemoError::Internal(_)) => {
                assert_eq!(e.to_string(), "image: a test worker failed");
                let status = status(&e);
                assert_eq!(status.code(), tonic::Code::Internal);
            }
            other => panic!("expected internal, got {other:?}"),
        }
        assert_eq!(workers.queued(), 0);
    }

    #[test]
    fn an_answer_carries_the_crate_s_code_and_message() {
        let ok = answer::<u8, DemoError>(ServiceKind::Document, "ExtractPortrait", Ok(7)).expect("ok");
        assert_eq!(ok.into_inner(), 7);
        let refused = answer::<u8, DemoError>(ServiceKind::Document, "ExtractPortrait", Err(DemoError::busy("OVERLOADED: full".into())))
            .expect_err("an error");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(refused.message(), "OVERLOADED: full");
    }
}
