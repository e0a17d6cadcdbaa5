//! The orchestrator's secrets: the state keys sealing session records and tagging session
//! tokens, the Ed25519 key signing evidence records, and who may call (API key hashes).
//! Configured explicitly (a cluster: every replica the same), or on one machine created at
//! first start in `keys_dir` and reused after.

use std::path::Path;

use ekyc_evidence::EvidenceKey;
use ekyc_runtime::seal::Keyring;

use crate::auth::{self, ApiKeyConfig};
use crate::config::OrchestratorConfig;
use crate::error::OrchestratorError;

/// The file holding the development API key (one machine, no `api_keys` configured).
pub const DEV_API_KEY_FILE: &str = "api-key";

/// The keys an engine needs.
#[derive(Debug)]
pub struct Keys {
    pub state: Keyring,
    pub evidence_key: EvidenceKey,
    /// Who may call; never empty.
    pub api_keys: Vec<ApiKeyConfig>,
}

/// Where each key came from, for the start-up log (paths, ids and fingerprints, never the
/// keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyNotes(pub Vec<String>);

impl Keys {
    /// Fresh random state and evidence keys held in memory only, and the given callers
    /// (tests).
    pub fn ephemeral(api_keys: Vec<ApiKeyConfig>) -> Result<Keys, OrchestratorError> {
        let state = Keyring::ephemeral().map_err(|e| OrchestratorError::Internal(e.to_string()))?;
        Ok(Keys { state, evidence_key: EvidenceKey::generate(), api_keys })
    }

    /// The configured keys, or those in `keys_dir` (created when absent).
    pub fn resolve(cfg: &OrchestratorConfig) -> Result<(Keys, KeyNotes), OrchestratorError> {
        let config = |e: ekyc_runtime::seal::SealError| OrchestratorError::Config(e.to_string());
        let mut notes = Vec::new();
        let state = match &cfg.state_keys_file {
            Some(f) => {
                let k = Keyring::from_file(f).map_err(config)?;
                notes.push(format!("state keys: {} (sealing with key id {})", f.display(), k.current_kid()));
                k
            }
            None => {
                let path = cfg.keys_dir.join("state.keys");
                let (k, created) = Keyring::load_or_create(&path).map_err(config)?;
                notes.push(format!(
                    "state keys: {} ({}; sealing with key id {})",
                    path.display(),
                    if created { "created" } else { "existing" },
                    k.current_kid()
                ));
                k
            }
        };
        let evidence_key = match &cfg.evidence_key_file {
            Some(f) => {
                let pem = std::fs::read_to_string(f).map_err(|e| OrchestratorError::Config(format!("reading {}: {e}", f.display())))?;
                let k = EvidenceKey::from_pkcs8_pem(&pem).map_err(|e| OrchestratorError::Config(format!("{}: {e}", f.display())))?;
                notes.push(format!("evidence key: {}", f.display()));
                k
            }
            None => {
                let (k, created) = EvidenceKey::load_or_create(&cfg.keys_dir)
                    .map_err(|e| OrchestratorError::Config(format!("evidence key in {}: {e}", cfg.keys_dir.display())))?;
                notes.push(format!("evidence key: {} ({})", cfg.keys_dir.display(), if created { "created" } else { "existing" }));
                k
            }
        };
        let public = evidence_key.public();
        notes.push(format!("evidence key id {} fingerprint {}", public.kid(), public.fingerprint()));
        let api_keys = if cfg.api_keys.is_empty() {
            let path = cfg.keys_dir.join(DEV_API_KEY_FILE);
            let (secret, created) = load_or_create_dev_key(&path)?;
            notes.push(format!(
                "API key: no api_keys configured, so the development key in {} ({}) may do everything; configure \
                 orchestrator.api_keys for anything but a trial",
                path.display(),
                if created { "created" } else { "existing" }
            ));
            vec![ApiKeyConfig::for_secret("dev", &secret, Vec::new())?]
        } else {
            let names: Vec<&str> = cfg.api_keys.iter().map(|k| k.name.as_str()).collect();
            notes.push(format!("API keys: {}", names.join(", ")));
            cfg.api_keys.clone()
        };
        Ok((Keys { state, evidence_key, api_keys }, KeyNotes(notes)))
    }
}

/// The development API key in `path`, created (readable by its owner only) when absent.
fn load_or_create_dev_key(path: &Path) -> Result<(String, bool), OrchestratorError> {
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|e| OrchestratorError::Config(format!("reading {}: {e}", path.display())))?;
        let key = text.trim().to_string();
        if key.len() < 32 {
            return Err(OrchestratorError::Config(format!("{}: not an API key", path.display())));
        }
        return Ok((key, false));
    }
    let key = auth::new_api_key()?;
    ekyc_runtime::seal::write_private(path, &format!("{key}\n")).map_err(|e| {
        OrchestratorError::Config(format!(
            "no orchestrator.api_keys configured, and the development key cannot be written to {}: {e}; configure \
             [[orchestrator.api_keys]] (`ekyc api-key --name NAME` makes one)",
            path.display()
        ))
    })?;
    Ok((key, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("ekyc-keys-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = OrchestratorConfig { keys_dir: dir.clone(), ..OrchestratorConfig::default() };
        let (a, notes) = Keys::resolve(&cfg).expect("created");
        assert!(notes.0.iter().filter(|n| n.contains("created")).count() >= 3, "{notes:?}");
        let (b, notes) = Keys::resolve(&cfg).expect("reused");
        assert!(notes.0.iter().all(|n| !n.contains("created")), "{notes:?}");
        assert_eq!(a.state.current_kid(), b.state.current_kid());
        let sealed = a.state.seal("k", "i", 1, b"v").expect("seal");
        assert_eq!(b.state.open("k", "i", 1, &sealed).expect("the same key"), b"v");
        assert_eq!(a.evidence_key.kid(), b.evidence_key.kid());
        // The development key file holds the secret; the engine only its salted hash.
        let secret = std::fs::read_to_string(dir.join(DEV_API_KEY_FILE)).expect("dev key");
        let auth = crate::auth::Auth::new(&b.api_keys).expect("auth");
        let keys = Keyring::ephemeral().expect("keys");
        assert!(auth.authenticate(&keys, Some(&format!("Bearer {}", secret.trim())), 0).is_ok());
        assert!(!format!("{:?}", b.api_keys).contains(secret.trim()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in ["state.keys", DEV_API_KEY_FILE] {
                let mode = std::fs::metadata(dir.join(f)).expect("file").permissions().mode();
                assert_eq!(mode & 0o077, 0, "only the owner may read {f}");
            }
        }
        let bad = OrchestratorConfig { state_keys_file: Some(dir.join("missing.keys")), ..cfg };
        assert!(Keys::resolve(&bad).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
