//! The `orchestrator` gRPC service: Drives a verification session, calls the other services and fuses their evidence into a decision.
//!
//! For now a skeleton: it serves standard gRPC health and reflection, with its own service
//! name reported NOT_SERVING because the API is not implemented yet.

use std::future::Future;

use ekyc_runtime::ServiceKind;
use ekyc_runtime::serve::{ServeError, serve_health_only};
use tokio::net::TcpListener;

/// Which service this crate serves.
pub const KIND: ServiceKind = ServiceKind::Orchestrator;

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    serve_health_only(KIND, listener, shutdown).await
}
