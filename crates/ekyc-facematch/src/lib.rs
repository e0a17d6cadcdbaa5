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
//!
//! Serving (loading off the async runtime, health, admission, metrics, drain on shutdown,
//! errors to statuses) is the runtime's service kit ([`ekyc_runtime::kit`]); this crate
//! gives it its engine (`impl ModelEngine for Engine`), its adapter and its error enum.

pub mod batcher;
pub mod calibration;
pub mod config;
pub mod engine;
pub mod error;
pub mod service;

use std::future::Future;
use std::sync::Arc;

use ekyc_proto::v1::face_match_server::FaceMatchServer;
use ekyc_runtime::ServiceKind;
use ekyc_runtime::kit::{self, Holder, ModelEngine};
use ekyc_runtime::serve::{Listener, ServeLimits, limits_for};
use ekyc_vision::VisionConfig;

pub use config::FacematchConfig;
pub use engine::{Engine, Stats};
pub use error::FacematchError;

/// Which service this crate serves.
pub const KIND: ServiceKind = ServiceKind::Facematch;

impl ModelEngine for Engine {
    const KIND: ServiceKind = KIND;
    type Config = FacematchConfig;
    type Error = FacematchError;
    type Api = FaceMatchServer<service::FaceMatchService>;

    fn start(vision: &VisionConfig, cfg: &FacematchConfig) -> Result<Self, FacematchError> {
        Engine::start(vision, cfg)
    }

    fn max_in_flight(cfg: &FacematchConfig) -> usize {
        cfg.max_in_flight
    }

    fn config(&self) -> &FacematchConfig {
        Engine::config(self)
    }

    fn usable(&self) -> bool {
        Engine::usable(self)
    }

    fn api(engine: Holder<Self>, max_message_bytes: usize) -> Self::Api {
        FaceMatchServer::new(service::FaceMatchService::new(engine))
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }
}

/// Serves on `listener` until `shutdown` completes, loading the models in the background
/// (health NOT_SERVING until they are warm; calls meanwhile get UNAVAILABLE).
pub async fn serve(
    vision: VisionConfig,
    cfg: FacematchConfig,
    max_message_bytes: usize,
    listener: impl Into<Listener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), FacematchError> {
    kit::serve::<Engine>(vision, cfg, max_message_bytes, listener, shutdown).await
}

/// Serves an engine that is already loaded (tests, embedding in other programs).
pub async fn serve_engine(
    engine: Arc<Engine>,
    max_message_bytes: usize,
    listener: impl Into<Listener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), FacematchError> {
    kit::serve_loaded(engine, limits_for(max_message_bytes), listener, shutdown).await
}

/// [`serve_engine`] under explicit server limits (receive deadline, call timeout, ...).
pub async fn serve_engine_with(
    engine: Arc<Engine>,
    limits: ServeLimits,
    listener: impl Into<Listener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), FacematchError> {
    kit::serve_loaded(engine, limits, listener, shutdown).await
}
