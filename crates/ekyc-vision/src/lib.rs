//! The ekyc face-vision core: a plain-Rust library (no gRPC, no async) that turns encoded
//! photos into faces with boxes, landmarks, head pose, quality and embeddings, using ONNX
//! models run by ONNX Runtime.
//!
//! - [`decode`]: safe decoding with limits checked before decoding; [`budget`]: the
//!   process-wide budget of decoded bytes that decoding reserves from first.
//! - [`FacePipeline`]: the models, loaded once and shared across threads.
//! - [`pose`]: head pose and its sign convention.
//! - [`metrics`]: verification metrics (ROC AUC, EER, TAR at FAR) for calibration.
//! - [`pool`]: a bounded pool of inference threads for async callers.

pub mod antispoof;
pub mod budget;
pub mod canonical;
pub mod config;
pub mod decode;
pub mod error;
pub mod geometry;
pub mod imgops;
pub mod metrics;
pub mod models;
pub mod pipeline;
pub mod pool;
pub mod pose;
pub mod runtime;
pub mod stats;

pub use antispoof::{AntiSpoof, AntiSpoofScore, AntiSpoofingConfig};
pub use budget::DecodeBudget;
pub use canonical::CANONICAL_FACE;
pub use config::VisionConfig;
pub use decode::{DecodeLimits, Decoded, ImageMeta, decode, decode_budgeted, decode_with_meta, probe_dimensions};
pub use error::{DecodeError, Result, VisionError};
pub use geometry::{BBox, Point};
pub use models::cosine;
pub use pipeline::{AnalyzeOptions, Face, FacePipeline, FaceQuality, PreparedFace, StageTimes};
pub use pose::HeadPose;
