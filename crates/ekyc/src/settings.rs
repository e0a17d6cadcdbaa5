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
    }
}
