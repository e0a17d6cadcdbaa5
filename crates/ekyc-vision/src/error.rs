//! Typed errors of the vision core. Callers map them to their own codes (the services map
//! them to gRPC statuses in one place); nothing here knows about transport.

use thiserror::Error;

/// Why an encoded image was refused. Each variant says what a caller can do about it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("image is empty (0 bytes)")]
    Empty,
    #[error("unsupported image format{}: send JPEG, PNG or WebP", .0.as_ref().map(|f| format!(" ({f})")).unwrap_or_default())]
    UnsupportedFormat(Option<String>),
    #[error("image data is truncated: {0}")]
    Truncated(String),
    #[error("image data is corrupt: {0}")]
    Corrupt(String),
    #[error("image is too large: {0}")]
    TooLarge(String),
    #[error("image is too small: {width}x{height} pixels, at least {min}x{min} needed")]
    TooSmall { width: u32, height: u32, min: u32 },
    /// The process's decode budget had no room in time: not the image's fault; retry.
    #[error("too many images being decoded: {0}")]
    Overloaded(String),
}

impl DecodeError {
    /// The `ekyc.v1.ReasonCode` name services report for this error.
    pub fn reason_code(&self) -> &'static str {
        match self {
            DecodeError::Empty => "IMAGE_EMPTY",
            DecodeError::UnsupportedFormat(_) => "IMAGE_UNSUPPORTED_FORMAT",
            DecodeError::Truncated(_) | DecodeError::Corrupt(_) => "IMAGE_CORRUPT",
            DecodeError::TooLarge(_) => "IMAGE_TOO_LARGE",
            DecodeError::TooSmall { .. } => "IMAGE_TOO_SMALL",
            DecodeError::Overloaded(_) => "OVERLOADED",
        }
    }
}

/// Errors of the face pipeline.
#[derive(Debug, Error)]
pub enum VisionError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// ONNX Runtime could not be found or loaded; the message says how to fix it.
    #[error("ONNX Runtime unavailable: {0}")]
    Runtime(String),
    /// A model file is missing, unreadable, or does not have the expected inputs/outputs.
    #[error("model `{role}` ({path}): {message}")]
    Model { role: &'static str, path: String, message: String },
    /// Inference failed at run time.
    #[error("inference with `{role}` failed: {message}")]
    Inference { role: &'static str, message: String },
    /// The settings are inconsistent.
    #[error("invalid vision configuration: {0}")]
    Config(String),
}

impl VisionError {
    pub(crate) fn inference(role: &'static str, e: impl std::fmt::Display) -> Self {
        VisionError::Inference { role, message: e.to_string() }
    }
}

pub type Result<T, E = VisionError> = std::result::Result<T, E>;
