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
    /// A stored record failed its integrity check (SESSION_CORRUPT).
    #[error("{0}")]
    Corrupt(String),
    /// No credentials, or unknown ones (CALLER_UNAUTHENTICATED).
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials that do not allow the call (CALLER_NOT_PERMITTED).
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Serve(#[from] ekyc_runtime::serve::ServeError),
}

impl From<StoreError> for OrchestratorError {
    fn from(e: StoreError) -> Self {
        if let StoreError::Full(_) = e {
            return OrchestratorError::Busy(format!("OVERLOADED: {e}; retry later"));
        }
        // The detail may name the store's address: it stays in the server's log.
        let reference = correlation_id();
        tracing::warn!(reference = %reference, error = %e, "session store unavailable");
        OrchestratorError::Unavailable(format!("BACKEND_UNAVAILABLE: the session store is unavailable (ref {reference})"))
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
            OrchestratorError::Corrupt(m) => tonic::Status::data_loss(m),
            OrchestratorError::Unauthenticated(m) => tonic::Status::unauthenticated(m),
            OrchestratorError::PermissionDenied(m) => tonic::Status::permission_denied(m),
            // Internals stay in the server's log; the caller gets a reference to quote.
            other => {
                let reference = correlation_id();
                tracing::error!(reference = %reference, error = %other, "internal error");
                tonic::Status::internal(format!("INTERNAL: an internal error occurred (ref {reference})"))
            }
        }
    }
}

/// A short random id tying a client-visible error to the server's log line.
pub fn correlation_id() -> String {
    let mut b = [0u8; 6];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}
