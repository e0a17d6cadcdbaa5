//! The `document` gRPC service: finds an identity document (ID-1 card, passport data page)
//! in a phone photo, rectifies it to a flat, upright view and extracts its portrait, with
//! the quality measures and reasons a reviewer needs.
//!
//! - [`quad`]: the document's outline by classical means (edges, lines, quadrilaterals).
//! - [`extract`]: the extraction as a plain function of a decoded photo.
//! - [`engine`]: the plain-Rust core (worker pool, admission of work).
//! - [`service`]: the thin gRPC adapter; [`error`]: the one error enum and its statuses.
//!
//! The server listens at once; health reports the service NOT_SERVING until the models are
//! loaded and warmed up, and calls meanwhile get UNAVAILABLE. Admission control bounds the
//! requests in flight; past it calls get RESOURCE_EXHAUSTED at once.
//!
//! Serving (loading off the async runtime, health, admission, metrics, drain on shutdown,
//! errors to statuses) is the runtime's service kit ([`ekyc_runtime::kit`]); this crate
//! gives it its engine (`impl ModelEngine for Engine`), its adapter and its error enum.

pub mod config;
pub mod engine;
pub mod error;
pub mod extract;
pub mod quad;
pub mod service;

use std::future::Future;
use std::sync::Arc;

use ekyc_proto::v1::document_server::DocumentServer;
use ekyc_runtime::ServiceKind;
use ekyc_runtime::kit::{self, Holder, ModelEngine};
use ekyc_runtime::serve::{Listener, limits_for};
use ekyc_vision::VisionConfig;

pub use config::DocumentConfig;
pub use engine::{Engine, PhotoResult};
pub use error::DocumentError;
pub use extract::{DocumentKind, ExtractOptions, Extraction};

/// Which service this crate serves.
pub const KIND: ServiceKind = ServiceKind::Document;

impl ModelEngine for Engine {
    const KIND: ServiceKind = KIND;
    type Config = DocumentConfig;
    type Error = DocumentError;
    type Api = DocumentServer<service::DocumentService>;

    fn start(vision: &VisionConfig, cfg: &DocumentConfig) -> Result<Self, DocumentError> {
        Engine::start(vision, cfg)
    }

    fn max_in_flight(cfg: &DocumentConfig) -> usize {
        cfg.max_in_flight
    }

    fn config(&self) -> &DocumentConfig {
        Engine::config(self)
    }

    fn usable(&self) -> bool {
        Engine::usable(self)
    }

    fn api(engine: Holder<Self>, max_message_bytes: usize) -> Self::Api {
        DocumentServer::new(service::DocumentService::new(engine))
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }
}

/// Serves on `listener` until `shutdown` completes, loading the models in the background
/// (health NOT_SERVING until they are warm; calls meanwhile get UNAVAILABLE).
pub async fn serve(
    vision: VisionConfig,
    cfg: DocumentConfig,
    max_message_bytes: usize,
    listener: impl Into<Listener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DocumentError> {
    kit::serve::<Engine>(vision, cfg, max_message_bytes, listener, shutdown).await
}

/// Serves an engine that is already loaded (tests, embedding in other programs).
pub async fn serve_engine(
    engine: Arc<Engine>,
    max_message_bytes: usize,
    listener: impl Into<Listener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DocumentError> {
    kit::serve_loaded(engine, limits_for(max_message_bytes), listener, shutdown).await
}
