//! The `liveness` gRPC service: Random head-pose challenges (kept in Redis) and verification of the frames that answer them.
//!
//! For now a skeleton: it serves standard gRPC health and reflection, with its own service
//! name reported NOT_SERVING because the API is not implemented yet.

use std::future::Future;

use ekyc_runtime::ServiceKind;
use ekyc_runtime::serve::{ServeError, serve_health_only};
use tokio::net::TcpListener;

/// Which service this crate serves.
pub const KIND: ServiceKind = ServiceKind::Liveness;

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    serve_health_only(KIND, listener, shutdown).await
}
