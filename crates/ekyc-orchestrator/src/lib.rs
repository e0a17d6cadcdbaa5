//! The `orchestrator` gRPC service, what chat bots and web front ends talk to. It runs a
//! verification session under a named policy: issues the liveness challenge and a nonce,
//! sends each image to the service that measures it (liveness, document, facematch) and
//! keeps only what comes back (scores, digests, sealed attestations, embeddings until the
//! decision) in a sealed session record, then fuses the evidence into an assurance score, a
//! decision (accept / review / reject) with reason codes, and a signed evidence record.
//!
//! - [`config`] and [`policy`]: settings and policies; [`keys`]: the secrets; [`auth`]: who
//!   may call what (API keys, session tokens, rates).
//! - [`decide`]: the decision as a pure function; [`record`]: the evidence payload.
//! - [`session`]: what a session keeps; [`sessions`]: sealed in a [`store`].
//! - [`clients`]: the backends, with deadlines, retries and limits; [`calls`]: measuring
//!   evidence with them.
//! - [`engine`]: the plain-Rust core, with [`evidence`] (what is kept), [`finish`] (the
//!   finish/claim protocol) and [`progress`] (what the client sees); [`service`]: the thin
//!   gRPC adapter; [`error`]: the one error enum and its statuses.

pub mod auth;
pub mod calls;
pub mod clients;
pub mod config;
pub mod decide;
pub mod discovery;
pub mod engine;
pub mod error;
pub mod evidence;
pub mod finish;
pub mod keys;
pub mod policy;
pub mod progress;
pub mod record;
pub mod service;
pub mod session;
pub mod sessions;
pub mod store;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use ekyc_proto::v1::orchestrator_server::OrchestratorServer;
use ekyc_runtime::ServiceKind;
use ekyc_runtime::serve::{Engine as ServeEngine, serve_api};

pub use config::OrchestratorConfig;
pub use engine::Engine;
pub use error::OrchestratorError;
pub use keys::Keys;

/// Which service this crate serves.
pub const KIND: ServiceKind = ServiceKind::Orchestrator;

/// Serves `engine` on `listener` (plain, or TLS with its health port) until `shutdown`
/// completes.
pub async fn serve(
    engine: Arc<Engine>,
    max_message_bytes: usize,
    listener: impl Into<ekyc_runtime::serve::Listener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), OrchestratorError> {
    let cell = Arc::new(OnceLock::new());
    let api = OrchestratorServer::new(service::OrchestratorService::new(Arc::clone(&cell)))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    let max_in_flight = engine.config().max_in_flight;
    serve_api(KIND, cell, ServeEngine::ready(engine), api, max_in_flight, listener, shutdown).await?;
    Ok(())
}
