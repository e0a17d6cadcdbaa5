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

pub mod config;
pub mod engine;
pub mod error;
pub mod extract;
pub mod quad;
pub mod service;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use ekyc_proto::v1::document_server::DocumentServer;
use ekyc_runtime::ServiceKind;
use ekyc_runtime::serve::{ApiOptions, Engine as ServeEngine, limits_for, serve_api_with};
use ekyc_vision::VisionConfig;
use tokio::net::TcpListener;

pub use config::DocumentConfig;
pub use engine::{Engine, PhotoResult};
pub use error::DocumentError;
pub use extract::{DocumentKind, ExtractOptions, Extraction};

/// Which service this crate serves.
pub const KIND: ServiceKind = ServiceKind::Document;

/// Serves on `listener` until `shutdown` completes, loading the models in the background
/// (health NOT_SERVING until they are warm; calls meanwhile get UNAVAILABLE).
pub async fn serve(
    vision: VisionConfig,
    cfg: DocumentConfig,
    max_message_bytes: usize,
    listener: impl Into<ekyc_runtime::serve::Listener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DocumentError> {
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
) -> Result<(), DocumentError> {
    let cell = Arc::new(OnceLock::new());
    let api = api(Arc::clone(&cell), max_message_bytes);
    let max_in_flight = engine.config().max_in_flight;
    let options = ApiOptions { limits: limits_for(max_message_bytes), usable: Some(Engine::usable) };
    serve_api_with(KIND, cell, ServeEngine::ready(engine), api, max_in_flight, options, listener, shutdown).await?;
    Ok(())
}

fn api(cell: Arc<OnceLock<Arc<Engine>>>, max_message_bytes: usize) -> DocumentServer<service::DocumentService> {
    DocumentServer::new(service::DocumentService::new(cell))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes)
}
