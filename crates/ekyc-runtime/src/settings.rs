//! Layered settings in one struct: compiled-in defaults, then an optional TOML file, then
//! environment variables `EKYC__SECTION__KEY` (for example `EKYC__VISION__INTRA_THREADS=1`),
//! validated once at start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    /// Port of the Prometheus `/metrics` listener (`ekyc serve`); 0 turns it off.
    pub metrics_port: u16,
    /// Port of a plain gRPC listener serving only `grpc.health.v1.Health`, for Kubernetes'
    /// native gRPC probes when the service port speaks TLS; 0 turns it off.
    pub health_port: u16,
    /// TLS of the gRPC ports served by this process ([`crate::tls`]).
    pub tls: crate::tls::ServerTlsSettings,
    /// Time a request's whole body has to arrive in, in milliseconds, counted from its
    /// headers; a body not in by then is answered DEADLINE_EXCEEDED (reason
    /// REQUEST_TIMEOUT). The admission permit is taken only once the body is in, so slow
    /// uploads cannot hold a service's slots.
    pub receive_timeout_ms: u64,
    /// Longest a whole call may take (receive, queue and work), in milliseconds; the
    /// server ends it with a deadline error after that even if the client set no deadline.
    pub call_timeout_ms: u64,
    /// Most concurrent HTTP/2 streams (calls) one connection may open.
    pub max_concurrent_streams: u32,
    /// HTTP/2 keepalive: ping an idle connection this often, in milliseconds (0: never),
    /// and close it when the ping is not answered within `keepalive_timeout_ms`.
    pub keepalive_interval_ms: u64,
    pub keepalive_timeout_ms: u64,
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
            metrics_port: 9090,
            health_port: 0,
            tls: crate::tls::ServerTlsSettings::default(),
            receive_timeout_ms: 10_000,
            call_timeout_ms: 60_000,
            max_concurrent_streams: 200,
            keepalive_interval_ms: 30_000,
            keepalive_timeout_ms: 10_000,
        }
    }
}

impl ServerSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.max_message_bytes < 1024 {
            return Err(SettingsError::Invalid("server.max_message_bytes must be at least 1024".into()));
        }
        if self.receive_timeout_ms == 0 || self.call_timeout_ms == 0 || self.max_concurrent_streams == 0 {
            return Err(SettingsError::Invalid(
                "server.receive_timeout_ms, server.call_timeout_ms and server.max_concurrent_streams must be at least 1".into(),
            ));
        }
        if self.receive_timeout_ms > self.call_timeout_ms {
            return Err(SettingsError::Invalid("server.receive_timeout_ms must not exceed server.call_timeout_ms".into()));
        }
        for kind in ServiceKind::ALL {
            self.addr(kind)?;
        }
        self.tls.validate().map_err(SettingsError::Invalid)?;
        Ok(())
    }

    pub fn port(&self, kind: ServiceKind) -> u16 {
        match kind {
            ServiceKind::Orchestrator => self.orchestrator_port,
            ServiceKind::Liveness => self.liveness_port,
            ServiceKind::Document => self.document_port,
            ServiceKind::Facematch => self.facematch_port,
        }
    }

    /// Address of the plain health-only port, when one is configured.
    pub fn health_addr(&self) -> Result<Option<SocketAddr>, SettingsError> {
        if self.health_port == 0 {
            return Ok(None);
        }
        format!("{}:{}", self.host, self.health_port)
            .parse()
            .map(Some)
            .map_err(|e| SettingsError::Invalid(format!("server.host `{}`: {e}", self.host)))
    }

    pub fn addr(&self, kind: ServiceKind) -> Result<SocketAddr, SettingsError> {
        format!("{}:{}", self.host, self.port(kind))
            .parse()
            .map_err(|e| SettingsError::Invalid(format!("server.host `{}`: {e}", self.host)))
    }
}

/// Logging and tracing (`[log]`); [`crate::telemetry`] describes what each does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `tracing` filter directive for log lines, e.g. `info` or `ekyc=debug,info`;
    /// `RUST_LOG` overrides it.
    pub filter: String,
    /// One JSON object per line instead of text.
    pub json: bool,
    /// `tracing` filter directive for the spans that make up traces, apart from the log
    /// filter so that quiet logs still give whole traces. A span it leaves out does not carry
    /// trace context, so `off` also stops propagation.
    pub trace_filter: String,
    /// OTLP/gRPC endpoint of a collector (`http://host:4317`) that receives the finished
    /// spans. Unset: spans are still made and trace context still flows between the
    /// services, but nothing leaves the process.
    pub otlp_endpoint: Option<String>,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { filter: "info".into(), json: false, trace_filter: "info".into(), otlp_endpoint: None }
    }
}

impl LogSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        for (name, directive) in [("log.filter", &self.filter), ("log.trace_filter", &self.trace_filter)] {
            tracing_subscriber::EnvFilter::builder()
                .parse(directive)
                .map_err(|e| SettingsError::Invalid(format!("{name} `{directive}`: {e}")))?;
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            let uri: http::Uri = endpoint.parse().map_err(|e| SettingsError::Invalid(format!("log.otlp_endpoint `{endpoint}`: {e}")))?;
            // The exporter is built without TLS: plain gRPC to a collector beside the service.
            if uri.scheme_str() != Some("http") || uri.host().is_none() {
                return Err(SettingsError::Invalid(format!(
                    "log.otlp_endpoint `{endpoint}`: expected http://HOST:PORT (OTLP over gRPC, no TLS)"
                )));
            }
        }
        Ok(())
    }
}

/// Loads a settings struct in layers: `T::default()`, then `file` (or `$EKYC__CONFIG_FILE`)
/// when given, then environment variables `EKYC__SECTION__KEY`. Unknown keys are refused
/// when `T` denies them. Returns the settings and the file they were read from.
pub fn load_layered<T>(file: Option<&Path>) -> Result<(T, Option<PathBuf>), SettingsError>
where
    T: Default + Serialize + serde::de::DeserializeOwned,
{
    let env_file = std::env::var_os("EKYC__CONFIG_FILE").map(PathBuf::from);
    let file = file.map(Path::to_path_buf).or(env_file);
    let defaults = config::Config::try_from(&T::default())?;
    let mut builder = config::Config::builder().add_source(defaults);
    if let Some(f) = &file {
        builder = builder.add_source(config::File::from(f.as_path()).format(config::FileFormat::Toml).required(true));
    }
    builder = builder
        .add_source(config::Environment::with_prefix("EKYC").prefix_separator("__").separator("__").try_parsing(true).ignore_empty(true));
    // The file's own path is not a setting.
    let built = builder.build()?;
    let mut value: config::Value = built.try_deserialize()?;
    if let config::ValueKind::Table(t) = &mut value.kind {
        t.remove("config_file");
    }
    let settings = value.try_deserialize()?;
    Ok((settings, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Demo {
        server: ServerSettings,
        log: LogSettings,
    }

    #[test]
    fn layers_override_in_order() {
        let dir = std::env::temp_dir().join(format!("ekyc-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("ekyc.toml");
        std::fs::write(&file, "[server]\nfacematch_port = 6000\n[log]\njson = true\n").expect("write");
        let (s, from): (Demo, _) = load_layered(Some(&file)).expect("loads");
        assert_eq!(from.as_deref(), Some(file.as_path()));
        assert_eq!(s.server.facematch_port, 6000);
        assert!(s.log.json);
        assert_eq!(s.server.liveness_port, ServerSettings::default().liveness_port);
        std::fs::write(&file, "[server.tls]\ncert_file = \"/tls/tls.crt\"\nkey_file = \"/tls/tls.key\"\n").expect("write");
        let (s, _): (Demo, _) = load_layered(Some(&file)).expect("loads");
        assert_eq!(s.server.tls.cert_file.as_deref(), Some(Path::new("/tls/tls.crt")));
        s.server.validate().expect("server TLS without client CA");
        std::fs::write(&file, "[server]\nno_such_key = 1\n").expect("write");
        assert!(load_layered::<Demo>(Some(&file)).is_err(), "unknown keys are refused");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn server_limits_are_validated() {
        ServerSettings::default().validate().expect("the defaults are valid");
        let receive_after_call = ServerSettings { receive_timeout_ms: 70_000, call_timeout_ms: 60_000, ..Default::default() };
        assert!(receive_after_call.validate().is_err(), "a body may not have longer than the whole call");
        assert!(ServerSettings { receive_timeout_ms: 0, ..Default::default() }.validate().is_err());
        assert!(ServerSettings { max_concurrent_streams: 0, ..Default::default() }.validate().is_err());
    }

    #[test]
    fn log_settings_are_validated() {
        LogSettings::default().validate().expect("the defaults are valid");
        let with = |f: fn(&mut LogSettings)| {
            let mut s = LogSettings::default();
            f(&mut s);
            s.validate()
        };
        with(|s| s.otlp_endpoint = Some("http://otel-collector:4317".into())).expect("a plain gRPC collector");
        assert!(with(|s| s.otlp_endpoint = Some("https://otel-collector:4317".into())).is_err(), "no TLS");
        assert!(with(|s| s.otlp_endpoint = Some("otel-collector:4317".into())).is_err(), "needs a scheme");
        assert!(with(|s| s.trace_filter = "info,[".into()).is_err());
    }
}
