//! The `liveness` gRPC service: issues random head-pose challenges (single use, short
//! lived, MAC-bound ids, sealed records kept in Redis or in-process) and verifies the
//! frames that answer them: the pose sequence, one live face, the same person throughout,
//! no replayed (in this or an earlier challenge) or mirrored frames. Images are analysed in
//! memory and never stored; the verdict carries SHA-256 digests of the frames for the
//! audit record. All keys derive from one keyring (`liveness.keys_file`).
//!
//! - [`challenge`]: steps and the MAC-bound id; [`store`]: where sealed challenges wait.
//! - [`attestation`]: CheckFrame's measurements, sealed for this service alone.
//! - [`perceptual`]: the face crop's perceptual hash, for replays across challenges.
//! - [`verify`]: the verdict as a pure function; [`engine`]: the plain-Rust core.
//! - [`service`]: the thin gRPC adapter; [`error`]: the one error enum and its statuses.

pub mod attestation;
pub mod challenge;
pub mod config;
pub mod engine;
pub mod error;
pub mod pad;
pub mod perceptual;
pub mod service;
pub mod store;
pub mod verify;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use ekyc_proto::v1::liveness_server::LivenessServer;
use ekyc_runtime::ServiceKind;
use ekyc_runtime::serve::{ApiOptions, Engine as ServeEngine, limits_for, serve_api_with};
use ekyc_vision::VisionConfig;
use tokio::net::TcpListener;

pub use config::LivenessConfig;
pub use engine::Engine;
pub use error::LivenessError;

/// Which service this crate serves.
pub const KIND: ServiceKind = ServiceKind::Liveness;

/// Serves on `listener` until `shutdown` completes, loading the models in the background
/// (health NOT_SERVING until they are warm; calls meanwhile get UNAVAILABLE).
pub async fn serve(
    vision: VisionConfig,
    cfg: LivenessConfig,
    max_message_bytes: usize,
    listener: impl Into<ekyc_runtime::serve::Listener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LivenessError> {
    let cell = Arc::new(OnceLock::new());
    let api = api(Arc::clone(&cell), max_message_bytes);
    let max_in_flight = cfg.max_in_flight;
    let load = move || Engine::start(&vision, &cfg);
    let options = ApiOptions { limits: limits_for(max_message_bytes), usable: Some(Engine::usable) };
    serve_api_with(KIND, cell, ServeEngine::Load(load), api, max_in_flight, options, listener, shutdown).await?;
    Ok(())
}

/// Serves an engine that is already loaded (tests, embedding in other programs).
pub async fn serve_engine(
    engine: Arc<Engine>,
    max_message_bytes: usize,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LivenessError> {
    let cell = Arc::new(OnceLock::new());
    let api = api(Arc::clone(&cell), max_message_bytes);
    let max_in_flight = engine.config().max_in_flight;
    let options = ApiOptions { limits: limits_for(max_message_bytes), usable: Some(Engine::usable) };
    serve_api_with(KIND, cell, ServeEngine::ready(engine), api, max_in_flight, options, listener, shutdown).await?;
    Ok(())
}

fn api(cell: Arc<OnceLock<Arc<Engine>>>, max_message_bytes: usize) -> LivenessServer<service::LivenessService> {
    LivenessServer::new(service::LivenessService::new(cell))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes)
}
