//! Shared runtime of the ekyc services: the one layered settings struct, logging and
//! tracing, trace-context propagation across the services, and the gRPC serving scaffold
//! (health, reflection, message limits, graceful shutdown, a span per RPC) that every
//! service uses the same way, and the kit the three model services are built on ([`kit`]).

pub mod admission;
pub mod convert;
pub mod cpu;
pub mod kit;
pub mod redis;
pub mod replay;
pub mod seal;
pub mod serve;
pub mod settings;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod trace;

pub use settings::{LogSettings, ServerSettings, ServiceKind, SettingsError, load_layered};
