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
//!
//! Serving (loading off the async runtime, health, admission, metrics, drain on shutdown,
//! errors to statuses) is the runtime's service kit ([`ekyc_runtime::kit`]); this crate
//! gives it its engine (`impl ModelEngine for Engine`), its adapter and its error enum.

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
use std::sync::Arc;

use ekyc_proto::v1::liveness_server::LivenessServer;
use ekyc_runtime::ServiceKind;
use ekyc_runtime::kit::{self, Holder, ModelEngine};
use ekyc_runtime::serve::{Listener, limits_for};
use ekyc_vision::VisionConfig;

pub use config::LivenessConfig;
pub use engine::Engine;
pub use error::LivenessError;

/// Which service this crate serves.
pub const KIND: ServiceKind = ServiceKind::Liveness;

impl ModelEngine for Engine {
    const KIND: ServiceKind = KIND;
    type Config = LivenessConfig;
    type Error = LivenessError;
    type Api = LivenessServer<service::LivenessService>;

    fn start(vision: &VisionConfig, cfg: &LivenessConfig) -> Result<Self, LivenessError> {
        Engine::start(vision, cfg)
    }

    fn max_in_flight(cfg: &LivenessConfig) -> usize {
        cfg.max_in_flight
    }

    fn config(&self) -> &LivenessConfig {
        Engine::config(self)
    }

    fn usable(&self) -> bool {
        Engine::usable(self)
    }

    fn api(engine: Holder<Self>, max_message_bytes: usize) -> Self::Api {
        LivenessServer::new(service::LivenessService::new(engine))
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }
}

/// Serves on `listener` until `shutdown` completes, loading the models in the background
/// (health NOT_SERVING until they are warm; calls meanwhile get UNAVAILABLE).
pub async fn serve(
    vision: VisionConfig,
    cfg: LivenessConfig,
    max_message_bytes: usize,
    listener: impl Into<Listener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LivenessError> {
    kit::serve::<Engine>(vision, cfg, max_message_bytes, listener, shutdown).await
}

/// Serves an engine that is already loaded (tests, embedding in other programs).
pub async fn serve_engine(
    engine: Arc<Engine>,
    max_message_bytes: usize,
    listener: impl Into<Listener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LivenessError> {
    kit::serve_loaded(engine, limits_for(max_message_bytes), listener, shutdown).await
}
