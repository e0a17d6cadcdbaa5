//! Encryption at rest of the embeddings a session keeps (AES-256-GCM, a random 96-bit nonce
//! per value, the session id and the value's purpose as associated data, so a sealed value
//! cannot be moved to another session or slot). Embeddings are biometric templates: a copy of
//! the session store must not give them away.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use serde::{Deserialize, Serialize};

/// An embedding as kept in a session: model in clear, vector sealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedEmbedding {
    pub model_id: String,
    /// base64 of nonce (12 bytes) || ciphertext with tag.
    pub sealed: String,
}

#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(AES-256-GCM, key hidden)")
    }
}

impl Sealer {
    /// `key` must be 32 bytes.
    pub fn new(key: &[u8]) -> Result<Sealer, String> {
        let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| format!("session key has {} bytes, 32 needed", key.len()))?;
        Ok(Sealer { cipher })
    }

    pub fn seal(&self, session_id: &str, purpose: &str, model_id: &str, values: &[f32]) -> Result<SealedEmbedding, String> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| format!("no randomness: {e}"))?;
        let msg: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let aad = aad(session_id, purpose, model_id);
        let ct =
            self.cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: &msg, aad: &aad }).map_err(|_| "sealing failed".to_string())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(SealedEmbedding { model_id: model_id.to_string(), sealed: B64.encode(out) })
    }

    pub fn open(&self, session_id: &str, purpose: &str, s: &SealedEmbedding) -> Result<Vec<f32>, String> {
        let raw = B64.decode(&s.sealed).map_err(|_| "sealed embedding is not base64".to_string())?;
        if raw.len() < 12 + 16 {
            return Err("sealed embedding too short".into());
        }
        let (nonce, ct) = raw.split_at(12);
        let aad = aad(session_id, purpose, &s.model_id);
        let msg = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| "sealed embedding does not open with this key (wrong key, session or slot)".to_string())?;
        if msg.len() % 4 != 0 {
            return Err("sealed embedding has a partial value".into());
        }
        Ok(msg.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
}

fn aad(session_id: &str, purpose: &str, model_id: &str) -> Vec<u8> {
    format!("ekyc-session-embedding/v1\0{session_id}\0{purpose}\0{model_id}").into_bytes()
}

/// Cosine similarity of two vectors (they are unit length from the embedder, but do not
/// rely on it); None when the lengths differ or one is zero.
pub fn cosine(a: &[f32], b: &[f32]) -> Option<f32> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        dot += f64::from(*x) * f64::from(*y);
        na += f64::from(*x) * f64::from(*x);
        nb += f64::from(*y) * f64::from(*y);
    }
    (na > 0.0 && nb > 0.0).then(|| (dot / (na.sqrt() * nb.sqrt())) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_open_only_in_their_session_and_slot() {
        let s = Sealer::new(&[7u8; 32]).expect("key");
        let v = vec![0.25f32, -0.5, 1.0];
        let sealed = s.seal("sess-a", "frontal", "faceres@1", &v).expect("seal");
        assert!(!sealed.sealed.contains("0.25"));
        assert_eq!(s.open("sess-a", "frontal", &sealed).expect("opens"), v);
        assert!(s.open("sess-b", "frontal", &sealed).is_err(), "another session");
        assert!(s.open("sess-a", "portrait", &sealed).is_err(), "another slot");
        assert!(Sealer::new(&[8u8; 32]).expect("key").open("sess-a", "frontal", &sealed).is_err(), "another key");
        let again = s.seal("sess-a", "frontal", "faceres@1", &v).expect("seal");
        assert_ne!(again.sealed, sealed.sealed, "fresh nonce each time");
        assert!(Sealer::new(&[1u8; 16]).is_err());
    }

    #[test]
    fn cosine_is_scale_free() {
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]).expect("defined") - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[1.0]).is_none());
        assert!(cosine(&[0.0, 0.0], &[1.0, 0.0]).is_none());
    }
}
