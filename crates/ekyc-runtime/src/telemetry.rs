//! Logging set-up. Images and embeddings are never logged: log lines carry sizes, counts,
//! scores and timings only.

use tracing_subscriber::EnvFilter;

use crate::settings::LogSettings;

/// Installs the global subscriber once; later calls are no-ops. `RUST_LOG` overrides the
/// configured filter.
pub fn init(log: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if log.json { builder.json().try_init() } else { builder.try_init() };
}
