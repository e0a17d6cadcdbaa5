//! The service's one error enum and its mapping to gRPC codes, in one place
//! ([`ekyc_runtime::kit::ServiceError::code`]). Messages
//! start with the reason code a client can act on, then the field.

use ekyc_vision::VisionError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DocumentError {
    /// The request itself is wrong (the message says which field and how).
    #[error("{0}")]
    InvalidArgument(String),
    /// The worker queue is full: the caller should back off and retry.
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

impl DocumentError {
    /// The error for image `field` that could not be used.
    pub fn image(field: &str, e: VisionError) -> Self {
        match e {
            // The process's decode budget had no room: the image is fine, the server is busy.
            VisionError::Decode(d @ ekyc_vision::DecodeError::Overloaded(_)) => {
                DocumentError::Busy(format!("{}: {field}: {d}", d.reason_code()))
            }
            VisionError::Decode(d) => DocumentError::InvalidArgument(format!("{}: {field}: {d}", d.reason_code())),
            other => DocumentError::Internal(format!("{field}: {other}")),
        }
    }
}

impl ekyc_runtime::kit::ServiceError for DocumentError {
    fn code(&self) -> tonic::Code {
        match self {
            DocumentError::InvalidArgument(_) => tonic::Code::InvalidArgument,
            DocumentError::Busy(_) => tonic::Code::ResourceExhausted,
            DocumentError::Unavailable(_) => tonic::Code::Unavailable,
            DocumentError::Internal(_) | DocumentError::Serve(_) | DocumentError::Io(_) => tonic::Code::Internal,
        }
    }

    fn unavailable(message: String) -> Self {
        DocumentError::Unavailable(message)
    }

    fn busy(message: String) -> Self {
        DocumentError::Busy(message)
    }

    fn internal(message: String) -> Self {
        DocumentError::Internal(message)
    }
}

impl From<DocumentError> for tonic::Status {
    fn from(e: DocumentError) -> Self {
        ekyc_runtime::kit::status(&e)
    }
}
