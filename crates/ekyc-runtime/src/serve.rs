//! The serving scaffold every service uses: standard gRPC health (the empty name is SERVING
//! while the process runs; the service's own name stays NOT_SERVING until it is ready),
//! reflection, a trace span per RPC that continues the caller's trace ([`crate::trace`]),
//! and graceful shutdown on a signal or a future. TLS, mutual TLS with the client-name
//! check, and the plain health port come with the [`Listener`] ([`crate::tls`]).

use std::future::Future;
use std::sync::{Arc, OnceLock};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::RoutesBuilder;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::settings::ServiceKind;
pub use crate::tls::Listener;
use crate::trace::ServerTraceLayer;

/// Health and reflection for `kind`, ready to serve; the caller adds its own service to
/// `routes` and flips readiness through the returned reporter.
pub async fn scaffold(kind: ServiceKind) -> Result<(RoutesBuilder, HealthReporter), tonic_reflection::server::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status("", ServingStatus::Serving).await;
    reporter.set_service_status(kind.grpc_name(), ServingStatus::NotServing).await;
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
    serve_traced(ServerTraceLayer::new(), listener.into(), routes, health, shutdown).await
}

async fn serve_traced(
    trace: ServerTraceLayer,
    listener: Listener,
    routes: RoutesBuilder,
    health: &HealthReporter,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let Listener { tcp, tls, health: health_port } = listener;
    let probes = health_port.map(|l| tokio::spawn(serve_health_port(l, health.clone())));
    let result = secured(tls.as_ref())?
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
    serve_traced(ServerTraceLayer::for_service(kind), listener, routes, &health, shutdown).await?;
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

/// Serves a model-backed API: health and reflection at once, the service's own health name
/// NOT_SERVING until its engine is loaded and warm (calls meanwhile see an empty `cell`),
/// the API behind an admission limit of `max_in_flight`, until `shutdown` completes.
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
    let listener = listener.into();
    let (mut routes, health) = scaffold(kind).await?;
    let probes = health.clone();
    let loader = match engine {
        Engine::Ready(e) => {
            let _ = cell.set(e);
            health.set_service_status(kind.grpc_name(), ServingStatus::Serving).await;
            None
        }
        Engine::Load(load) => Some(tokio::spawn(async move {
            match tokio::task::spawn_blocking(load).await {
                Ok(Ok(e)) => {
                    let _ = cell.set(Arc::new(e));
                    health.set_service_status(kind.grpc_name(), ServingStatus::Serving).await;
                    tracing::info!(service = kind.name(), "models loaded and warm: serving");
                }
                Ok(Err(e)) => tracing::error!(service = kind.name(), error = %e, "cannot start; staying NOT_SERVING"),
                Err(e) => tracing::error!(service = kind.name(), error = %e, "start-up panicked; staying NOT_SERVING"),
            }
        })),
    };
    routes.add_service(crate::admission::Admission::new(api, max_in_flight));
    tracing::info!(service = kind.name(), addr = ?listener.tcp.local_addr().ok(), tls = ?listener.tls, "listening");
    let result = serve_traced(ServerTraceLayer::for_service(kind), listener, routes, &probes, shutdown).await;
    if let Some(l) = loader {
        l.abort();
    }
    Ok(result?)
}
