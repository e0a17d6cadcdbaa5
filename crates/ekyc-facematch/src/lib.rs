//! The `facematch` gRPC service: detects, aligns and embeds faces in batches of images and
//! compares faces or embeddings, with a calibrated false-match estimate.
//!
//! - [`engine`]: the plain-Rust core (worker pool, batching embedder, quality gates).
//! - [`batcher`]: dynamic batching of face crops across requests.
//! - [`calibration`]: similarity to estimated false-match rate.
//! - [`service`]: the thin gRPC adapter; [`error`]: the one error enum and its statuses.
//!
//! The server listens at once; health reports the service NOT_SERVING until the models are
//! loaded and warmed up, and calls meanwhile get UNAVAILABLE. Admission control bounds the
//! requests in flight; past it calls get RESOURCE_EXHAUSTED at once.

pub mod batcher;
pub mod calibration;
pub mod config;
pub mod engine;
pub mod error;
pub mod service;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use ekyc_proto::v1::face_match_server::FaceMatchServer;
use ekyc_runtime::ServiceKind;
use ekyc_runtime::admission::Admission;
use ekyc_runtime::serve::{run, scaffold};
use ekyc_vision::VisionConfig;
use tokio::net::TcpListener;
use tonic_health::ServingStatus;

pub use config::FacematchConfig;
pub use engine::{Engine, Stats};
pub use error::FacematchError;

/// Which service this crate serves.
pub const KIND: ServiceKind = ServiceKind::Facematch;

/// Serves on `listener` until `shutdown` completes, loading the models in the background.
pub async fn serve(
    vision: VisionConfig,
    cfg: FacematchConfig,
    max_message_bytes: usize,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), FacematchError> {
    let cell = Arc::new(OnceLock::new());
    let (routes, health) = scaffold(KIND).await?;
    let loader = {
        let cell = Arc::clone(&cell);
        let health = health.clone();
        let cfg = cfg.clone();
        tokio::spawn(async move {
            match tokio::task::spawn_blocking(move || Engine::start(&vision, &cfg)).await {
                Ok(Ok(engine)) => {
                    let _ = cell.set(Arc::new(engine));
                    health.set_service_status(KIND.grpc_name(), ServingStatus::Serving).await;
                    tracing::info!(service = KIND.name(), "models loaded and warm: serving");
                }
                Ok(Err(e)) => tracing::error!(service = KIND.name(), error = %e, "cannot load the models; staying NOT_SERVING"),
                Err(e) => tracing::error!(service = KIND.name(), error = %e, "model loading panicked; staying NOT_SERVING"),
            }
        })
    };
    let result = serve_routes(cell, &cfg, max_message_bytes, routes, listener, shutdown).await;
    loader.abort();
    result
}

/// Serves an engine that is already loaded (tests and embedding in other programs).
pub async fn serve_engine(
    engine: Arc<Engine>,
    max_message_bytes: usize,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), FacematchError> {
    let cfg = engine.config().clone();
    let cell = Arc::new(OnceLock::from(engine));
    let (routes, health) = scaffold(KIND).await?;
    health.set_service_status(KIND.grpc_name(), ServingStatus::Serving).await;
    serve_routes(cell, &cfg, max_message_bytes, routes, listener, shutdown).await
}

async fn serve_routes(
    cell: Arc<OnceLock<Arc<Engine>>>,
    cfg: &FacematchConfig,
    max_message_bytes: usize,
    mut routes: tonic::service::RoutesBuilder,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), FacematchError> {
    let api = FaceMatchServer::new(service::FaceMatchService::new(cell))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    routes.add_service(Admission::new(api, cfg.max_in_flight));
    tracing::info!(service = KIND.name(), addr = ?listener.local_addr().ok(), "listening");
    run(listener, routes, shutdown).await?;
    Ok(())
}
