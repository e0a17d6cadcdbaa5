//! The `facematch` gRPC service: detects, aligns and embeds faces in batches of images and
//! compares faces or embeddings, with a calibrated false-match estimate.
//!
//! - [`engine`]: the plain-Rust core (worker pool, batching embedder, quality gates).
//! - [`batcher`]: dynamic batching of face crops across requests.
//! - [`calibration`]: similarity to estimated false-match rate.
//! - [`service`]: the thin gRPC adapter; [`error`]: the one error enum and its statuses.
//!
//! The server listens at once; health reports the service NOT_SERVING until the models are
//! loaded and warmed up, and calls meanwhile get UNAVAILABLE; models that cannot load end
//! [`serve`] with an error (so the process exits non-zero). Health is NOT_SERVING again
//! while a model thread that panicked is restarted. Admission control bounds the requests in
//! flight, once each request's body is in; past it calls get RESOURCE_EXHAUSTED at once.

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
use ekyc_runtime::serve::{ApiOptions, Engine as ServeEngine, ServeLimits, serve_api_with};
use ekyc_vision::VisionConfig;
use tokio::net::TcpListener;

pub use config::FacematchConfig;
pub use engine::{Engine, Stats};
pub use error::FacematchError;

/// Which service this crate serves.
pub const KIND: ServiceKind = ServiceKind::Facematch;

/// Serves on `listener` until `shutdown` completes, loading the models in the background
/// (health NOT_SERVING until they are warm; calls meanwhile get UNAVAILABLE).
pub async fn serve(
    vision: VisionConfig,
    cfg: FacematchConfig,
    max_message_bytes: usize,
    listener: impl Into<ekyc_runtime::serve::Listener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), FacematchError> {
    let cell = Arc::new(OnceLock::new());
    let api = api(Arc::clone(&cell), max_message_bytes);
    let max_in_flight = cfg.max_in_flight;
    let load = move || Engine::start(&vision, &cfg);
    serve_api_with(
        KIND,
        cell,
        ServeEngine::Load(load),
        api,
        max_in_flight,
        options(ekyc_runtime::serve::limits_for(max_message_bytes)),
        listener,
        shutdown,
    )
    .await?;
    Ok(())
}

fn options(limits: ServeLimits) -> ApiOptions<Engine> {
    ApiOptions { limits, usable: Some(Engine::usable) }
}

/// Serves an engine that is already loaded (tests, embedding in other programs).
pub async fn serve_engine(
    engine: Arc<Engine>,
    max_message_bytes: usize,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), FacematchError> {
    serve_engine_with(engine, ekyc_runtime::serve::limits_for(max_message_bytes), listener, shutdown).await
}

/// [`serve_engine`] under explicit server limits (receive deadline, call timeout, ...).
pub async fn serve_engine_with(
    engine: Arc<Engine>,
    limits: ServeLimits,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), FacematchError> {
    let cell = Arc::new(OnceLock::new());
    let api = api(Arc::clone(&cell), limits.receive.max_message_bytes);
    let max_in_flight = engine.config().max_in_flight;
    serve_api_with(KIND, cell, ServeEngine::ready(engine), api, max_in_flight, options(limits), listener, shutdown).await?;
    Ok(())
}

fn api(cell: Arc<OnceLock<Arc<Engine>>>, max_message_bytes: usize) -> FaceMatchServer<service::FaceMatchService> {
    FaceMatchServer::new(service::FaceMatchService::new(cell))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes)
}
