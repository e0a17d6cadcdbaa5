//! The orchestrator's secrets: the key sealing session embeddings and the Ed25519 key
//! signing evidence records. Configured explicitly (a cluster: every replica the same), or
//! on one machine created at first start in `keys_dir` and reused after.

use std::path::Path;

use ekyc_evidence::EvidenceKey;

use crate::config::OrchestratorConfig;
use crate::error::OrchestratorError;

/// The keys an engine needs.
#[derive(Debug)]
pub struct Keys {
    pub session_key: Vec<u8>,
    pub evidence_key: EvidenceKey,
}

/// Where each key came from, for the start-up log (fingerprints, never the keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyNotes(pub Vec<String>);

impl Keys {
    /// Fresh random keys held in memory only (tests).
    pub fn ephemeral() -> Result<Keys, OrchestratorError> {
        Ok(Keys { session_key: random32()?, evidence_key: EvidenceKey::generate() })
    }

    /// The configured keys, or those in `keys_dir` (created when absent).
    pub fn resolve(cfg: &OrchestratorConfig) -> Result<(Keys, KeyNotes), OrchestratorError> {
        let mut notes = Vec::new();
        let session_key = match (&cfg.session_key, &cfg.session_key_file) {
            (Some(k), _) => {
                notes.push("session key: from settings".to_string());
                decode_key(k)?
            }
            (None, Some(f)) => {
                notes.push(format!("session key: {}", f.display()));
                decode_key(&std::fs::read_to_string(f).map_err(|e| OrchestratorError::Config(format!("reading {}: {e}", f.display())))?)?
            }
            (None, None) => {
                let path = cfg.keys_dir.join("session.key");
                let (k, created) = load_or_create_session_key(&path)?;
                notes.push(format!("session key: {} ({})", path.display(), if created { "created" } else { "existing" }));
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
        Ok((Keys { session_key, evidence_key }, KeyNotes(notes)))
    }
}

fn random32() -> Result<Vec<u8>, OrchestratorError> {
    let mut k = vec![0u8; 32];
    getrandom::fill(&mut k).map_err(|e| OrchestratorError::Internal(format!("no randomness: {e}")))?;
    Ok(k)
}

fn decode_key(hex_key: &str) -> Result<Vec<u8>, OrchestratorError> {
    let k = hex::decode(hex_key.trim()).map_err(|e| OrchestratorError::Config(format!("session key must be hex: {e}")))?;
    if k.len() != 32 {
        return Err(OrchestratorError::Config(format!("session key has {} bytes, 32 needed", k.len())));
    }
    Ok(k)
}

fn load_or_create_session_key(path: &Path) -> Result<(Vec<u8>, bool), OrchestratorError> {
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|e| OrchestratorError::Config(format!("reading {}: {e}", path.display())))?;
        return Ok((decode_key(&text)?, false));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| OrchestratorError::Config(format!("creating {}: {e}", dir.display())))?;
    }
    let key = random32()?;
    write_private(path, &hex::encode(&key)).map_err(|e| OrchestratorError::Config(format!("writing {}: {e}", path.display())))?;
    Ok((key, true))
}

/// Writes a secret readable by its owner only (on Unix), never replacing an existing file.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
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
        assert!(notes.0.iter().any(|n| n.contains("created")), "{notes:?}");
        let (b, notes) = Keys::resolve(&cfg).expect("reused");
        assert!(notes.0.iter().all(|n| !n.contains("created")), "{notes:?}");
        assert_eq!(a.session_key, b.session_key);
        assert_eq!(a.evidence_key.kid(), b.evidence_key.kid());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("session.key")).expect("file").permissions().mode();
            assert_eq!(mode & 0o077, 0, "only the owner may read the key");
        }
        let bad = OrchestratorConfig { session_key: Some("abcd".into()), ..cfg };
        assert!(Keys::resolve(&bad).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
