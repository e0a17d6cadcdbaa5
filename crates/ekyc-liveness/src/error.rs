//! The service's one error enum and its mapping to gRPC codes, in one place
//! ([`ekyc_runtime::kit::ServiceError::code`]).

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

impl ekyc_runtime::kit::ServiceError for LivenessError {
    fn code(&self) -> tonic::Code {
        match self {
            LivenessError::InvalidArgument(_) => tonic::Code::InvalidArgument,
            LivenessError::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            LivenessError::Busy(_) => tonic::Code::ResourceExhausted,
            LivenessError::Unavailable(_) => tonic::Code::Unavailable,
            LivenessError::DataLoss(_) => tonic::Code::DataLoss,
            LivenessError::Internal(_) | LivenessError::Serve(_) | LivenessError::Io(_) => tonic::Code::Internal,
        }
    }

    fn unavailable(message: String) -> Self {
        LivenessError::Unavailable(message)
    }

    fn busy(message: String) -> Self {
        LivenessError::Busy(message)
    }

    fn internal(message: String) -> Self {
        LivenessError::Internal(message)
    }
}

impl From<LivenessError> for tonic::Status {
    fn from(e: LivenessError) -> Self {
        ekyc_runtime::kit::status(&e)
    }
}
