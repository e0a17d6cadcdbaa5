//! The serving scaffold every service uses: standard gRPC health (the empty name is SERVING
//! while the process runs; the service's own name stays NOT_SERVING until it is ready),
//! reflection, a trace span per RPC that continues the caller's trace ([`crate::trace`]),
//! and graceful shutdown on a signal or a future.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::RoutesBuilder;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::settings::ServiceKind;
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
/// continues the caller's trace.
pub async fn run(listener: TcpListener, routes: RoutesBuilder, shutdown: impl Future<Output = ()>) -> Result<(), tonic::transport::Error> {
    serve_traced(ServerTraceLayer::new(), listener, routes, shutdown).await
}

async fn serve_traced(
    trace: ServerTraceLayer,
    listener: TcpListener,
    routes: RoutesBuilder,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .tcp_nodelay(true)
        .layer(trace)
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
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
pub async fn serve_health_only(kind: ServiceKind, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    let (routes, _health) = scaffold(kind).await?;
    tracing::info!(service = kind.name(), addr = ?listener.local_addr().ok(), "serving health and reflection only");
    serve_traced(ServerTraceLayer::for_service(kind), listener, routes, shutdown).await?;
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
    listener: TcpListener,
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
    let (mut routes, health) = scaffold(kind).await?;
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
    tracing::info!(service = kind.name(), addr = ?listener.local_addr().ok(), "listening");
    let result = serve_traced(ServerTraceLayer::for_service(kind), listener, routes, shutdown).await;
    if let Some(l) = loader {
        l.abort();
    }
    Ok(result?)
}
