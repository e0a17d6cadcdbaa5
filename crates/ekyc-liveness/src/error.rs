//! The service's one error enum and its mapping to gRPC statuses.

use thiserror::Error;

use crate::store::StoreError;

#[derive(Debug, Error)]
pub enum LivenessError {
    #[error("{0}")]
    InvalidArgument(String),
    /// The challenge cannot be used any more (the message starts with the reason code).
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Unavailable(String),
    /// A stored record does not open or disagrees with its id (the message starts with
    /// the reason code, CHALLENGE_CORRUPT).
    #[error("{0}")]
    DataLoss(String),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Serve(#[from] ekyc_runtime::serve::ServeError),
    #[error("starting threads: {0}")]
    Io(#[from] std::io::Error),
}

impl From<StoreError> for LivenessError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => LivenessError::Unavailable(format!("BACKEND_UNAVAILABLE: {m}")),
            StoreError::Full(n) => LivenessError::Busy(format!("OVERLOADED: {n} challenges are open; retry after a short backoff")),
        }
    }
}

impl From<LivenessError> for tonic::Status {
    fn from(e: LivenessError) -> Self {
        match e {
            LivenessError::InvalidArgument(m) => tonic::Status::invalid_argument(m),
            LivenessError::FailedPrecondition(m) => tonic::Status::failed_precondition(m),
            LivenessError::Busy(m) => tonic::Status::resource_exhausted(m),
            LivenessError::Unavailable(m) => tonic::Status::unavailable(m),
            LivenessError::DataLoss(m) => tonic::Status::data_loss(m),
            other => tonic::Status::internal(other.to_string()),
        }
    }
}
