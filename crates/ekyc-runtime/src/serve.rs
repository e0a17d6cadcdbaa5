//! The serving scaffold every service uses: standard gRPC health (the empty name is SERVING
//! while the process runs; the service's own name stays NOT_SERVING until it is ready),
//! reflection, and graceful shutdown on a signal or a future.

use std::future::Future;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::RoutesBuilder;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::settings::ServiceKind;

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

/// Serves `routes` on `listener` until `shutdown` completes.
pub async fn run(listener: TcpListener, routes: RoutesBuilder, shutdown: impl Future<Output = ()>) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .tcp_nodelay(true)
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
    run(listener, routes, shutdown).await?;
    Ok(())
}
