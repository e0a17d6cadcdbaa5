//! Shared runtime of the ekyc services: the one layered settings struct, logging, and the
//! gRPC serving scaffold (health, reflection, message limits, graceful shutdown) that every
//! service uses the same way.

pub mod admission;
pub mod convert;
pub mod serve;
pub mod settings;
pub mod telemetry;

pub use settings::{LogSettings, ServerSettings, ServiceKind, SettingsError, load_layered};
