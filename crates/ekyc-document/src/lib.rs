//! The `document` gRPC service: Finds an ID document in a photo and extracts its portrait with quality checks.
//!
//! For now a skeleton: it serves standard gRPC health and reflection, with its own service
//! name reported NOT_SERVING because the API is not implemented yet.

use std::future::Future;

use ekyc_runtime::ServiceKind;
use ekyc_runtime::serve::{ServeError, serve_health_only};
use tokio::net::TcpListener;

/// Which service this crate serves.
pub const KIND: ServiceKind = ServiceKind::Document;

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    serve_health_only(KIND, listener, shutdown).await
}
