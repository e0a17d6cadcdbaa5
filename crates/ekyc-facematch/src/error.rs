//! The service's one error enum and its mapping to gRPC codes, in one place
//! ([`ekyc_runtime::kit::ServiceError::code`]). Messages
//! start with the reason code a client can act on, then the field and index.

use ekyc_vision::VisionError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FacematchError {
    /// The request itself is wrong (the message says which field and how).
    #[error("{0}")]
    InvalidArgument(String),
    /// A queue is full: the caller should back off and retry.
    #[error("{0}")]
    Busy(String),
    /// Models still loading, or the engine has shut down.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or a broken model: not the caller's fault.
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Serve(#[from] ekyc_runtime::serve::ServeError),
    #[error("starting threads: {0}")]
    Io(#[from] std::io::Error),
}

impl FacematchError {
    /// The error for image `field` (e.g. `images[3]`) that could not be used.
    pub fn image(field: &str, e: VisionError) -> Self {
        match e {
            VisionError::Decode(d @ ekyc_vision::DecodeError::Overloaded(_)) => {
                FacematchError::Busy(format!("{}: {field}: {d}", d.reason_code()))
            }
            VisionError::Decode(d) => FacematchError::InvalidArgument(format!("{}: {field}: {d}", d.reason_code())),
            other => FacematchError::Internal(format!("{field}: {other}")),
        }
    }
}

impl ekyc_runtime::kit::ServiceError for FacematchError {
    fn code(&self) -> tonic::Code {
        match self {
            FacematchError::InvalidArgument(_) => tonic::Code::InvalidArgument,
            FacematchError::Busy(_) => tonic::Code::ResourceExhausted,
            FacematchError::Unavailable(_) => tonic::Code::Unavailable,
            FacematchError::Internal(_) | FacematchError::Serve(_) | FacematchError::Io(_) => tonic::Code::Internal,
        }
    }

    fn unavailable(message: String) -> Self {
        FacematchError::Unavailable(message)
    }

    fn busy(message: String) -> Self {
        FacematchError::Busy(message)
    }

    fn internal(message: String) -> Self {
        FacematchError::Internal(message)
    }
}

impl From<FacematchError> for tonic::Status {
    fn from(e: FacematchError) -> Self {
        ekyc_runtime::kit::status(&e)
    }
}
