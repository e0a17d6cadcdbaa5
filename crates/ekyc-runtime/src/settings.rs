//! Layered settings in one struct: compiled-in defaults, then an optional TOML file, then
//! environment variables `EKYC__SECTION__KEY` (for example `EKYC__VISION__INTRA_THREADS=1`),
//! validated once at start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ekyc_vision::VisionConfig;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("reading settings: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid settings: {0}")]
    Invalid(String),
}

/// The four services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    Orchestrator,
    Liveness,
    Document,
    Facematch,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 4] = [ServiceKind::Orchestrator, ServiceKind::Liveness, ServiceKind::Document, ServiceKind::Facematch];

    /// Fully qualified gRPC service name, as used by health checks.
    pub fn grpc_name(self) -> &'static str {
        match self {
            ServiceKind::Orchestrator => "ekyc.v1.Orchestrator",
            ServiceKind::Liveness => "ekyc.v1.Liveness",
            ServiceKind::Document => "ekyc.v1.Document",
            ServiceKind::Facematch => "ekyc.v1.FaceMatch",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Orchestrator => "orchestrator",
            ServiceKind::Liveness => "liveness",
            ServiceKind::Document => "document",
            ServiceKind::Facematch => "facematch",
        }
    }
}

impl std::str::FromStr for ServiceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ServiceKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown service `{s}`: expected orchestrator, liveness, document or facematch"))
    }
}

/// Where and how the gRPC servers listen.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address the servers bind to.
    pub host: String,
    pub orchestrator_port: u16,
    pub liveness_port: u16,
    pub document_port: u16,
    pub facematch_port: u16,
    /// Largest gRPC message accepted, in bytes; larger ones get RESOURCE_EXHAUSTED before
    /// any image work.
    pub max_message_bytes: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            orchestrator_port: 50051,
            liveness_port: 50052,
            document_port: 50053,
            facematch_port: 50054,
            max_message_bytes: 32 * 1024 * 1024,
        }
    }
}

impl ServerSettings {
    pub fn port(&self, kind: ServiceKind) -> u16 {
        match kind {
            ServiceKind::Orchestrator => self.orchestrator_port,
            ServiceKind::Liveness => self.liveness_port,
            ServiceKind::Document => self.document_port,
            ServiceKind::Facematch => self.facematch_port,
        }
    }

    pub fn addr(&self, kind: ServiceKind) -> Result<SocketAddr, SettingsError> {
        format!("{}:{}", self.host, self.port(kind))
            .parse()
            .map_err(|e| SettingsError::Invalid(format!("server.host `{}`: {e}", self.host)))
    }
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `tracing` filter directive, e.g. `info` or `ekyc=debug,info`.
    pub filter: String,
    /// One JSON object per line instead of text.
    pub json: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { filter: "info".into(), json: false }
    }
}

/// All settings of the project.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The file these settings were read from, if any (also `EKYC__CONFIG_FILE`).
    pub config_file: Option<PathBuf>,
    pub server: ServerSettings,
    pub log: LogSettings,
    pub vision: VisionConfig,
}

impl Settings {
    /// Defaults, then `file` (or `$EKYC__CONFIG_FILE`) if given, then `EKYC__*` variables.
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        let env_file = std::env::var_os("EKYC__CONFIG_FILE").map(PathBuf::from);
        let file = file.map(Path::to_path_buf).or(env_file);
        let defaults = config::Config::try_from(&Settings::default())?;
        let mut builder = config::Config::builder().add_source(defaults);
        if let Some(f) = &file {
            builder = builder.add_source(config::File::from(f.as_path()).format(config::FileFormat::Toml).required(true));
        }
        builder = builder.add_source(config::Environment::with_prefix("EKYC").prefix_separator("__").separator("__").try_parsing(true));
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        settings.config_file = file;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        self.vision.validate().map_err(|e| SettingsError::Invalid(format!("vision: {e}")))?;
        if self.server.max_message_bytes < 1024 {
            return Err(SettingsError::Invalid("server.max_message_bytes must be at least 1024".into()));
        }
        for kind in ServiceKind::ALL {
            self.server.addr(kind)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_override_in_order() {
        let dir = std::env::temp_dir().join(format!("ekyc-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("ekyc.toml");
        std::fs::write(&file, "[vision]\nmatch_threshold = 0.7\nintra_threads = 3\n[server]\nfacematch_port = 6000\n").expect("write");
        let s = Settings::load(Some(&file)).expect("loads");
        assert_eq!(s.vision.match_threshold, 0.7);
        assert_eq!(s.vision.intra_threads, 3);
        assert_eq!(s.server.facematch_port, 6000);
        assert_eq!(s.server.liveness_port, ServerSettings::default().liveness_port);

        std::fs::write(&file, "[vision]\nno_such_key = 1\n").expect("write");
        assert!(Settings::load(Some(&file)).is_err(), "unknown keys are refused");
        std::fs::write(&file, "[vision]\nmatch_threshold = 0.7\nmax_faces = 0\n").expect("write");
        assert!(matches!(Settings::load(Some(&file)), Err(SettingsError::Invalid(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_readme_example_is_valid() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).expect("README");
        let start = readme.find("```toml\n").expect("a TOML example") + "```toml\n".len();
        let end = start + readme[start..].find("```").expect("closed block");
        let dir = std::env::temp_dir().join(format!("ekyc-readme-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("ekyc.toml");
        std::fs::write(&file, &readme[start..end]).expect("write");
        let s = Settings::load(Some(&file)).expect("the README's settings load");
        assert_eq!(s.vision, VisionConfig::default(), "the README shows the defaults");
        assert_eq!(s.server, ServerSettings::default());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
