//! The `liveness` gRPC service: issues random head-pose challenges (single use, short
//! lived, HMAC-bound, kept in Redis or in-process) and verifies the frames that answer them:
//! the pose sequence, one live face, the same person throughout, no replayed or mirrored
//! frames. Images are analysed in memory and never stored; the verdict carries SHA-256
//! digests of the frames for the audit record.
//!
//! - [`challenge`]: steps and the HMAC-bound id; [`store`]: where challenges wait.
//! - [`verify`]: the verdict as a pure function; [`engine`]: the plain-Rust core.
//! - [`service`]: the thin gRPC adapter; [`error`]: the one error enum and its statuses.

pub mod challenge;
pub mod config;
pub mod engine;
pub mod error;
pub mod service;
pub mod store;
pub mod verify;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use ekyc_proto::v1::liveness_server::LivenessServer;
use ekyc_runtime::ServiceKind;
use ekyc_runtime::admission::Admission;
use ekyc_runtime::serve::{run, scaffold};
use ekyc_vision::VisionConfig;
use tokio::net::TcpListener;
use tonic_health::ServingStatus;

pub use config::LivenessConfig;
pub use engine::Engine;
pub use error::LivenessError;

/// Which service this crate serves.
pub const KIND: ServiceKind = ServiceKind::Liveness;

/// Serves on `listener` until `shutdown` completes, loading the models in the background
/// (health NOT_SERVING until they are warm).
pub async fn serve(
    vision: VisionConfig,
    cfg: LivenessConfig,
    max_message_bytes: usize,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LivenessError> {
    let cell = Arc::new(OnceLock::new());
    let (routes, health) = scaffold(KIND).await?;
    let loader = {
        let (cell, health, cfg) = (Arc::clone(&cell), health.clone(), cfg.clone());
        tokio::spawn(async move {
            match tokio::task::spawn_blocking(move || Engine::start(&vision, &cfg)).await {
                Ok(Ok(engine)) => {
                    let _ = cell.set(Arc::new(engine));
                    health.set_service_status(KIND.grpc_name(), ServingStatus::Serving).await;
                    tracing::info!(service = KIND.name(), "models loaded and warm: serving");
                }
                Ok(Err(e)) => tracing::error!(service = KIND.name(), error = %e, "cannot start; staying NOT_SERVING"),
                Err(e) => tracing::error!(service = KIND.name(), error = %e, "start-up panicked; staying NOT_SERVING"),
            }
        })
    };
    let result = serve_routes(cell, &cfg, max_message_bytes, routes, listener, shutdown).await;
    loader.abort();
    result
}

/// Serves an engine that is already loaded (tests, embedding).
pub async fn serve_engine(
    engine: Arc<Engine>,
    max_message_bytes: usize,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LivenessError> {
    let cfg = engine.config().clone();
    let cell = Arc::new(OnceLock::from(engine));
    let (routes, health) = scaffold(KIND).await?;
    health.set_service_status(KIND.grpc_name(), ServingStatus::Serving).await;
    serve_routes(cell, &cfg, max_message_bytes, routes, listener, shutdown).await
}

async fn serve_routes(
    cell: Arc<OnceLock<Arc<Engine>>>,
    cfg: &LivenessConfig,
    max_message_bytes: usize,
    mut routes: tonic::service::RoutesBuilder,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LivenessError> {
    let api = LivenessServer::new(service::LivenessService::new(cell))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    routes.add_service(Admission::new(api, cfg.max_in_flight));
    tracing::info!(service = KIND.name(), addr = ?listener.local_addr().ok(), "listening");
    run(listener, routes, shutdown).await?;
    Ok(())
}
