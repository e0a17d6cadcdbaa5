//! The serving scaffold every service uses: standard gRPC health (the empty name is SERVING
//! while the process runs; the service's own name stays NOT_SERVING until it is ready),
//! reflection, a trace span per RPC that continues the caller's trace ([`crate::trace`]),
//! and graceful shutdown on a signal or a future. TLS, mutual TLS with the client-name
//! check, and the plain health port come with the [`Listener`] ([`crate::tls`]).
//!
//! Every server gets the same HTTP/2 bounds ([`ServeLimits`], from `[server]`): a deadline
//! on the whole call, keepalive pings that close dead connections, and a cap on concurrent
//! streams per connection. API services are also wrapped in [`crate::admission`]: bodies
//! received in full within `server.receive_timeout_ms` before a permit is taken.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::RoutesBuilder;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::settings::ServiceKind;
pub use crate::tls::Listener;
use crate::trace::ServerTraceLayer;

/// The server-side bounds every ekyc server applies (see `[server]` in the settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Body size and receive deadline, checked before admission.
    pub receive: crate::admission::ReceiveLimits,
    /// Longest a whole call may run (`Server::timeout`); a client's shorter `grpc-timeout`
    /// still wins.
    pub call_timeout: Duration,
    /// Most concurrent streams (calls) per HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// HTTP/2 keepalive ping interval (None: off) and how long to wait for its answer.
    pub keepalive_interval: Option<Duration>,
    pub keepalive_timeout: Duration,
}

impl ServeLimits {
    pub fn from_settings(s: &crate::settings::ServerSettings) -> Self {
        Self {
            receive: crate::admission::ReceiveLimits {
                timeout: Duration::from_millis(s.receive_timeout_ms),
                max_message_bytes: s.max_message_bytes,
            },
            call_timeout: Duration::from_millis(s.call_timeout_ms),
            max_concurrent_streams: s.max_concurrent_streams,
            keepalive_interval: (s.keepalive_interval_ms > 0).then(|| Duration::from_millis(s.keepalive_interval_ms)),
            keepalive_timeout: Duration::from_millis(s.keepalive_timeout_ms),
        }
    }
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self::from_settings(&crate::settings::ServerSettings::default())
    }
}

static LIMITS: OnceLock<ServeLimits> = OnceLock::new();

/// Sets the limits of every server this process starts afterwards through [`serve_api`],
/// [`run`] and [`serve_health_only`] (`ekyc serve` calls it once with `[server]`). The first
/// call wins; without one, the defaults apply.
pub fn install_limits(limits: ServeLimits) -> bool {
    LIMITS.set(limits).is_ok()
}

/// The limits installed by [`install_limits`], or the defaults.
pub fn limits() -> ServeLimits {
    LIMITS.get().copied().unwrap_or_default()
}

/// The installed limits with one service's own message size (the body bound of
/// [`crate::admission`] follows the API's `max_decoding_message_size`).
pub fn limits_for(max_message_bytes: usize) -> ServeLimits {
    let mut l = limits();
    l.receive.max_message_bytes = max_message_bytes;
    l
}

/// `ekyc_serving{service}`: 1 while the service's own health name is SERVING, else 0.
fn serving_gauge(kind: ServiceKind, serving: bool) {
    metrics::gauge!("ekyc_serving", "service" => kind.grpc_name()).set(if serving { 1.0 } else { 0.0 });
}

/// Health and reflection for `kind`, ready to serve; the caller adds its own service to
/// `routes` and flips readiness through the returned reporter.
pub async fn scaffold(kind: ServiceKind) -> Result<(RoutesBuilder, HealthReporter), tonic_reflection::server::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status("", ServingStatus::Serving).await;
    reporter.set_service_status(kind.grpc_name(), ServingStatus::NotServing).await;
    serving_gauge(kind, false);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ekyc_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name(kind.grpc_name())
        .with_service_name("grpc.health.v1.Health")
        .build_v1()?;
    let mut routes = RoutesBuilder::default();
    routes.add_service(health).add_service(reflection);
    Ok((routes, reporter))
}

/// Serves `routes` on `listener` until `shutdown` completes, each RPC in a span that
/// continues the caller's trace. A health-only port of the listener serves `health`.
pub async fn run(
    listener: impl Into<Listener>,
    routes: RoutesBuilder,
    health: &HealthReporter,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    serve_traced(ServerTraceLayer::new(), &limits(), listener.into(), routes, health, shutdown).await
}

async fn serve_traced(
    trace: ServerTraceLayer,
    limits: &ServeLimits,
    listener: Listener,
    routes: RoutesBuilder,
    health: &HealthReporter,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let Listener { tcp, tls, health: health_port } = listener;
    let probes = health_port.map(|l| tokio::spawn(serve_health_port(l, health.clone())));
    let result = secured(tls.as_ref())?
        .timeout(limits.call_timeout)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_keepalive_interval(limits.keepalive_interval)
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .layer(trace)
        .layer(tls.as_ref().map(crate::tls::ServerTls::client_names).unwrap_or_default())
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(TcpListenerStream::new(tcp), shutdown)
        .await;
    if let Some(p) = probes {
        p.abort();
    }
    result
}

/// A server builder with TLS (and mutual TLS) when `tls` is given.
fn secured(tls: Option<&crate::tls::ServerTls>) -> Result<Server, tonic::transport::Error> {
    let builder = Server::builder().tcp_nodelay(true);
    match tls {
        Some(tls) => builder.tls_config(tls.config()),
        None => Ok(builder),
    }
}

/// Plain gRPC with only `grpc.health.v1.Health`, for Kubernetes' native gRPC probes (which
/// speak neither TLS nor client certificates): health says SERVING or not, nothing more.
async fn serve_health_port(listener: TcpListener, health: HealthReporter) {
    let service = tonic_health::pb::health_server::HealthServer::new(tonic_health::server::HealthService::from_health_reporter(health));
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "plain health port for probes");
    if let Err(e) = Server::builder().add_service(service).serve_with_incoming(TcpListenerStream::new(listener)).await {
        tracing::error!(?addr, error = %e, "health port stopped");
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("building gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The engine could not be loaded: the process should end (non-zero) so that its
    /// supervisor restarts it, rather than answer "still loading" forever.
    #[error("cannot start: {0}")]
    Load(String),
}

/// Serves health and reflection only, for a service whose API is not implemented yet:
/// its own name stays NOT_SERVING.
pub async fn serve_health_only(
    kind: ServiceKind,
    listener: impl Into<Listener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let listener = listener.into();
    let (routes, health) = scaffold(kind).await?;
    tracing::info!(service = kind.name(), addr = ?listener.tcp.local_addr().ok(), "serving health and reflection only");
    serve_traced(ServerTraceLayer::for_service(kind), &limits(), listener, routes, &health, shutdown).await?;
    Ok(())
}

/// How a service's engine comes to be: loaded already, or loaded in the background by a
/// blocking function (model loading and warm-up) while the server already answers health.
pub enum Engine<E, L> {
    Ready(Arc<E>),
    Load(L),
}

impl<E> Engine<E, fn() -> Result<E, std::convert::Infallible>> {
    /// An engine that is loaded already (tests, embedding in other programs): no loader
    /// type to name.
    pub fn ready(engine: Arc<E>) -> Self {
        Engine::Ready(engine)
    }
}

impl<E, L> std::fmt::Debug for Engine<E, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Ready(_) => "Engine::Ready",
            Engine::Load(_) => "Engine::Load",
        })
    }
}

/// How [`serve_api_with`] serves an API besides the defaults of [`serve_api`].
pub struct ApiOptions<E> {
    pub limits: ServeLimits,
    /// Whether the loaded engine can answer now (for example false while a crashed model
    /// thread restarts); health follows it, checked every [`USABLE_POLL`].
    pub usable: Option<fn(&E) -> bool>,
}

impl<E> Default for ApiOptions<E> {
    fn default() -> Self {
        Self { limits: limits(), usable: None }
    }
}

impl<E> std::fmt::Debug for ApiOptions<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiOptions").field("limits", &self.limits).field("usable", &self.usable.is_some()).finish()
    }
}

/// How often [`ApiOptions::usable`] is checked.
pub const USABLE_POLL: Duration = Duration::from_millis(100);

/// Serves a model-backed API: health and reflection at once, the service's own health name
/// NOT_SERVING until its engine is loaded and warm (calls meanwhile see an empty `cell`),
/// the API behind an admission limit of `max_in_flight`, until `shutdown` completes. An
/// engine that cannot load ends serving with [`ServeError::Load`].
pub async fn serve_api<E, L, LE, S>(
    kind: ServiceKind,
    cell: Arc<OnceLock<Arc<E>>>,
    engine: Engine<E, L>,
    api: S,
    max_in_flight: usize,
    listener: impl Into<Listener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError>
where
    E: Send + Sync + 'static,
    L: FnOnce() -> Result<E, LE> + Send + 'static,
    LE: std::fmt::Display + Send + 'static,
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>, Error = std::convert::Infallible>
        + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    serve_api_with(kind, cell, engine, api, max_in_flight, ApiOptions::default(), listener, shutdown).await
}

/// [`serve_api`] with explicit limits and a health check of the loaded engine.
#[allow(clippy::too_many_arguments)]
pub async fn serve_api_with<E, L, LE, S>(
    kind: ServiceKind,
    cell: Arc<OnceLock<Arc<E>>>,
    engine: Engine<E, L>,
    api: S,
    max_in_flight: usize,
    options: ApiOptions<E>,
    listener: impl Into<Listener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError>
where
    E: Send + Sync + 'static,
    L: FnOnce() -> Result<E, LE> + Send + 'static,
    LE: std::fmt::Display + Send + 'static,
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>, Error = std::convert::Infallible>
        + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let listener = listener.into();
    let (mut routes, health) = scaffold(kind).await?;
    let probes = health.clone();
    let ApiOptions { limits, usable } = options;
    // Ends with the reason the engine cannot be used; pending while it serves.
    let lifecycle = async move {
        let engine = match engine {
            Engine::Ready(e) => e,
            Engine::Load(load) => match tokio::task::spawn_blocking(load).await {
                Ok(Ok(e)) => {
                    tracing::info!(service = kind.name(), "models loaded and warm: serving");
                    Arc::new(e)
                }
                Ok(Err(e)) => {
                    tracing::error!(service = kind.name(), error = %e, "cannot start");
                    return ServeError::Load(e.to_string());
                }
                Err(e) => {
                    tracing::error!(service = kind.name(), error = %e, "start-up panicked");
                    return ServeError::Load(format!("start-up panicked: {e}"));
                }
            },
        };
        let _ = cell.set(Arc::clone(&engine));
        health.set_service_status(kind.grpc_name(), ServingStatus::Serving).await;
        serving_gauge(kind, true);
        let Some(usable) = usable else { return std::future::pending().await };
        let mut serving = true;
        let mut tick = tokio::time::interval(USABLE_POLL);
        loop {
            tick.tick().await;
            let now = usable(&engine);
            if now != serving {
                serving = now;
                let status = if now { ServingStatus::Serving } else { ServingStatus::NotServing };
                tracing::warn!(service = kind.name(), serving = now, "engine usability changed");
                serving_gauge(kind, now);
                health.set_service_status(kind.grpc_name(), status).await;
            }
        }
    };
    routes.add_service(crate::admission::Admission::with_receive(api, max_in_flight, limits.receive));
    tracing::info!(service = kind.name(), addr = ?listener.tcp.local_addr().ok(), tls = ?listener.tls, "listening");
    let server = serve_traced(ServerTraceLayer::for_service(kind), &limits, listener, routes, &probes, shutdown);
    tokio::select! {
        result = server => Ok(result?),
        failed = lifecycle => Err(failed),
    }
}
