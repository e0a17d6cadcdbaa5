//! The orchestrator's one error enum and its mapping to gRPC statuses. Messages start with
//! the reason code a client switches on (`SESSION_EXPIRED: ...`, `EVIDENCE_MISSING: ...`,
//! `BACKEND_UNAVAILABLE: ...`).

use thiserror::Error;

use crate::store::StoreError;

#[derive(Debug, Error)]
pub enum OrchestratorError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    /// Wrong state for the call (expired, finished, cancelled, evidence missing).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Another call holds the session (a Finish under way); retry shortly.
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    Busy(String),
    /// A backend or the session store cannot be reached or was too slow.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Serve(#[from] ekyc_runtime::serve::ServeError),
}

impl From<StoreError> for OrchestratorError {
    fn from(e: StoreError) -> Self {
        OrchestratorError::Unavailable(format!("BACKEND_UNAVAILABLE: {e}"))
    }
}

impl From<OrchestratorError> for tonic::Status {
    fn from(e: OrchestratorError) -> Self {
        match e {
            OrchestratorError::InvalidArgument(m) => tonic::Status::invalid_argument(m),
            OrchestratorError::NotFound(m) => tonic::Status::not_found(m),
            OrchestratorError::FailedPrecondition(m) => tonic::Status::failed_precondition(m),
            OrchestratorError::Aborted(m) => tonic::Status::aborted(m),
            OrchestratorError::Busy(m) => tonic::Status::resource_exhausted(m),
            OrchestratorError::Unavailable(m) => tonic::Status::unavailable(m),
            other => tonic::Status::internal(other.to_string()),
        }
    }
}
