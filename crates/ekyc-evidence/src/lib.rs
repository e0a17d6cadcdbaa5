//! Signed evidence records: the orchestrator signs each decision's evidence as a compact JWS
//! (RFC 7515) with Ed25519 (`alg: "EdDSA"`, RFC 8037), so that anyone holding the public key
//! can later check that a record is the one the service issued, byte for byte. The key id
//! (`kid`) is the RFC 7638 JWK thumbprint of the public key.
//!
//! ```
//! use ekyc_evidence::{EvidenceKey, sign, verify};
//! let key = EvidenceKey::generate();
//! let jws = sign(&key, &serde_json::json!({"decision": "APPROVED"})).expect("signs");
//! let payload = verify(&jws, &key.public()).expect("verifies");
//! assert_eq!(payload["decision"], "APPROVED");
//! ```

mod jws;
mod key;

use std::path::PathBuf;

pub use jws::{JWS_TYPE, record_kid, sign, verify};
pub use key::{EvidenceKey, EvidencePublicKey, JWKS_FILE, PUBLIC_KEY_FILE, SIGNING_KEY_FILE};

/// Where the orchestrator keeps its evidence key files and `ekyc evidence verify` looks for
/// the public key, relative to the working directory.
pub const DEFAULT_KEYS_DIR: &str = "ekyc-keys";

/// Why a key could not be used or a record did not verify.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// A key (PEM, JWK) that cannot be used.
    #[error("evidence key: {0}")]
    Key(String),
    /// A key file that cannot be read or written.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// Not a well-formed compact JWS with a JSON header and payload.
    #[error("evidence record is malformed: {0}")]
    Malformed(String),
    /// A header `alg` other than EdDSA (including "none").
    #[error("evidence record uses algorithm {0:?}; only EdDSA (Ed25519) records are accepted")]
    Algorithm(String),
    /// The record names a key other than the one(s) given.
    #[error("evidence record was signed by key {found}, not by the given key {expected}; use the public key of the service that issued it")]
    WrongKey { found: String, expected: String },
    /// The signature does not match: the record was altered, or forged.
    #[error("evidence record signature does not verify: the record was altered after signing or was not signed by this key")]
    BadSignature,
    /// The payload could not be serialized.
    #[error("evidence payload: {0}")]
    Payload(String),
}
