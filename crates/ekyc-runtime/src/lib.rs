//! Shared runtime of the ekyc services: the one layered settings struct, logging, and the
//! gRPC serving scaffold (health, reflection, message limits, graceful shutdown) that every
//! service uses the same way.

pub mod serve;
pub mod settings;
pub mod telemetry;

pub use settings::{ServerSettings, ServiceKind, Settings, SettingsError};
