//! All settings of the project in one struct: compiled-in defaults, then an optional TOML
//! file (`--config` or `EKYC__CONFIG_FILE`), then `EKYC__SECTION__KEY` variables, validated
//! once at start-up. Each section belongs to the crate that uses it.

use std::path::{Path, PathBuf};

use ekyc_document::DocumentConfig;
use ekyc_facematch::FacematchConfig;
use ekyc_liveness::LivenessConfig;
use ekyc_orchestrator::OrchestratorConfig;
use ekyc_runtime::{LogSettings, ServerSettings, SettingsError, load_layered};
use ekyc_vision::VisionConfig;
use ekyc_web::WebConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub log: LogSettings,
    pub vision: VisionConfig,
    pub facematch: FacematchConfig,
    pub liveness: LivenessConfig,
    pub document: DocumentConfig,
    pub orchestrator: OrchestratorConfig,
    pub web: WebConfig,
    /// The file these settings were read from, if any.
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
}

impl Settings {
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        let (mut settings, from): (Settings, _) = load_layered(file)?;
        settings.config_file = from;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        self.server.validate()?;
        self.log.validate()?;
        self.vision.validate().map_err(|e| SettingsError::Invalid(format!("vision: {e}")))?;
        self.facematch.validate().map_err(|e| SettingsError::Invalid(format!("facematch: {e}")))?;
        self.liveness.validate().map_err(|e| SettingsError::Invalid(format!("liveness: {e}")))?;
        self.document.validate().map_err(|e| SettingsError::Invalid(format!("document: {e}")))?;
        self.orchestrator.validate().map_err(|e| SettingsError::Invalid(format!("orchestrator: {e}")))?;
        self.web.validate().map_err(|e| SettingsError::Invalid(format!("web: {e}")))?;
        if self.web.demo && !self.web.demo_policy.is_empty() && !self.orchestrator.policies.contains_key(&self.web.demo_policy) {
            return Err(SettingsError::Invalid(format!("web: demo_policy {:?} is not among the policies", self.web.demo_policy)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ekyc-settings-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("ekyc.toml");
        std::fs::write(&file, text).expect("write");
        file
    }

    #[test]
    fn sections_load_and_are_validated() {
        let f = write("ok", "[vision]\nmatch_threshold = 0.7\nintra_threads = 3\n[facematch]\nmax_batch = 4\n");
        let s = Settings::load(Some(&f)).expect("loads");
        assert_eq!((s.vision.match_threshold, s.vision.intra_threads, s.facematch.max_batch), (0.7, 3, 4));
        assert_eq!(s.config_file.as_deref(), Some(f.as_path()));
        let f = write("bad", "[vision]\nmax_faces = 0\n");
        assert!(matches!(Settings::load(Some(&f)), Err(SettingsError::Invalid(_))));
        let f = write("unknown", "[vision]\nno_such_key = 1\n");
        assert!(Settings::load(Some(&f)).is_err());
    }

    #[test]
    fn the_kubernetes_configmap_is_valid() {
        let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/base/configmap.yaml")).expect("configmap");
        let start = yaml.find("ekyc.toml: |").expect("an ekyc.toml entry");
        let toml: String = yaml[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.is_empty() || l.starts_with("    "))
            .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
            .collect();
        assert!(toml.contains("[vision]"), "{toml}");
        let f = write("configmap", &toml);
        Settings::load(Some(&f)).expect("the shipped ConfigMap's settings load");
    }

    #[test]
    fn the_readme_example_is_valid() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).expect("README");
        let start = readme.find("```toml\n").expect("a TOML example") + "```toml\n".len();
        let end = start + readme[start..].find("```").expect("closed block");
        let f = write("readme", &readme[start..end]);
        let s = Settings::load(Some(&f)).expect("the README's settings load");
        assert_eq!(s.vision, VisionConfig::default(), "the README shows the defaults");
        assert_eq!(s.server, ServerSettings::default());
        assert_eq!(s.log, LogSettings::default());
        assert_eq!(s.facematch, FacematchConfig::default());
        assert_eq!(s.liveness, LivenessConfig::default());
        assert_eq!(s.document, DocumentConfig::default());
        assert_eq!(s.orchestrator, OrchestratorConfig::default());
        assert_eq!(s.web, WebConfig::default());
    }

    /// The Kubernetes manifests agree with the settings: every `EKYC__...` variable a
    /// Deployment sets names a real setting (unknown keys are refused), no service listens
    /// on loopback, and the container ports, probes, Service ports, metrics annotations and
    /// the orchestrator's backend endpoints match the ports and health names the settings give.
    #[test]
    fn the_kubernetes_manifests_agree_with_the_settings() {
        use ekyc_runtime::ServiceKind;
        use serde_yaml::Value;
        let base = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/base");
        let str_of = |v: &Value| v.as_str().map(str::to_string).or_else(|| v.as_u64().map(|n| n.to_string())).unwrap_or_default();
        for kind in ServiceKind::ALL {
            let text = std::fs::read_to_string(format!("{base}/{}.yaml", kind.name())).expect("manifest");
            let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text).map(|d| Value::deserialize(d).expect("YAML")).collect();
            let of_kind = |k: &str| docs.iter().find(|d| d["kind"] == k).unwrap_or_else(|| panic!("{}: no {k}", kind.name())).clone();
            let deployment = of_kind("Deployment");
            let pod = &deployment["spec"]["template"];
            let c = &pod["spec"]["containers"][0];
            let at = |what: &str| format!("{}: {what}", kind.name());

            // The environment as the settings loader reads it (valueFrom: a whole number).
            let mut env = std::collections::HashMap::new();
            for e in c["env"].as_sequence().expect("env") {
                let name = str_of(&e["name"]);
                assert!(name.starts_with("EKYC__"), "{}", at(&name));
                if name == "EKYC__CONFIG_FILE" {
                    continue;
                }
                let value = if e["valueFrom"].is_null() { str_of(&e["value"]) } else { "1".to_string() };
                env.insert(name, value);
            }
            let settings: Settings = config::Config::builder()
                .add_source(config::Config::try_from(&Settings::default()).expect("defaults"))
                .add_source(
                    config::Environment::with_prefix("EKYC")
                        .prefix_separator("__")
                        .separator("__")
                        .try_parsing(true)
                        .source(Some(env.clone())),
                )
                .build()
                .and_then(|b| b.try_deserialize())
                .unwrap_or_else(|e| panic!("{}", at(&format!("the environment {env:?} is not valid settings: {e}"))));

            let host: std::net::IpAddr = settings.server.host.parse().expect("server.host");
            assert!(!host.is_loopback(), "{}", at("binds loopback: unreachable from kubelet and the other pods"));
            let ports: Vec<(String, u64)> = c["ports"]
                .as_sequence()
                .expect("ports")
                .iter()
                .map(|p| (str_of(&p["name"]), p["containerPort"].as_u64().expect("containerPort")))
                .collect();
            let port = |name: &str| ports.iter().find(|(n, _)| n == name).map(|(_, p)| *p).unwrap_or_else(|| panic!("{}", at(name)));
            assert_eq!(port("grpc"), u64::from(settings.server.port(kind)), "{}", at("gRPC port"));
            assert_eq!(port("grpc-health"), u64::from(settings.server.health_port), "{}", at("health port"));
            assert_eq!(port("metrics"), u64::from(settings.server.metrics_port), "{}", at("metrics port"));
            assert_eq!(
                str_of(&pod["metadata"]["annotations"]["prometheus.io/port"]),
                settings.server.metrics_port.to_string(),
                "{}",
                at("scrape port")
            );
            for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                let grpc = &c[probe]["grpc"];
                assert_eq!(grpc["port"].as_u64(), Some(u64::from(settings.server.health_port)), "{}", at(probe));
                let service = str_of(&grpc["service"]);
                let expected = match probe {
                    "livenessProbe" => "",
                    "startupProbe" if kind == ServiceKind::Orchestrator => "",
                    _ => kind.grpc_name(),
                };
                assert_eq!(service, expected, "{}", at(probe));
            }
            let service = of_kind("Service");
            let grpc = service["spec"]["ports"].as_sequence().expect("ports").iter().find(|p| p["name"] == "grpc").cloned().expect("grpc");
            assert_eq!(grpc["port"].as_u64(), Some(u64::from(settings.server.port(kind))), "{}", at("Service port"));

            if kind == ServiceKind::Orchestrator {
                let b = &settings.orchestrator.backends;
                for (backend, cfg) in
                    [(ServiceKind::Liveness, &b.liveness), (ServiceKind::Document, &b.document), (ServiceKind::Facematch, &b.facematch)]
                {
                    let expected = format!("https://{}:{}", backend.name(), ServerSettings::default().port(backend));
                    assert_eq!(cfg.endpoint, expected, "{}", at("backend endpoint: the backend's headless Service and port"));
                }
            }
        }
    }
}
