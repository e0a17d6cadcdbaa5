//! Settings of the orchestrator (`[orchestrator]` in the layered settings): where the three
//! backends are and how to call them, where sessions live, the keys, the trust anchors for
//! signature evidence, and the policies.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ekyc_signature::TrustConfig;
use serde::{Deserialize, Serialize};

use crate::auth::ApiKeyConfig;
use crate::policy::PolicyConfig;

/// How to call one backend service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BackendConfig {
    /// gRPC endpoint, e.g. `http://liveness:50052`.
    pub endpoint: String,
    /// Deadline of one call including retries and waiting for a concurrency slot, in ms.
    pub timeout_ms: u64,
    /// TCP connect timeout, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Calls in flight to this backend from this replica; more wait (within the deadline).
    pub max_concurrency: usize,
    /// Extra attempts of idempotent calls that failed UNAVAILABLE or RESOURCE_EXHAUSTED.
    pub retries: u32,
    /// How often the endpoint's host is resolved again and each replica's health checked,
    /// in milliseconds: a new replica gets calls, and a dead one stops getting them, within
    /// about this long ([`crate::discovery`]).
    pub discovery_interval_ms: u64,
    /// TLS of an `https://` endpoint: the CA, this client's certificate (mutual TLS) and
    /// the server name to verify. Required for `https://`, refused for `http://`.
    pub tls: ekyc_runtime::tls::ClientTlsSettings,
}

impl BackendConfig {
    fn local(port: u16) -> Self {
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            timeout_ms: 10_000,
            connect_timeout_ms: 1_000,
            max_concurrency: 16,
            retries: 2,
            discovery_interval_ms: 2_000,
            tls: ekyc_runtime::tls::ClientTlsSettings::default(),
        }
    }
}

/// The three backends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Backends {
    pub liveness: BackendConfig,
    pub document: BackendConfig,
    pub facematch: BackendConfig,
}

impl Default for Backends {
    fn default() -> Self {
        Self { liveness: BackendConfig::local(50052), document: BackendConfig::local(50053), facematch: BackendConfig::local(50054) }
    }
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self::local(0)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OrchestratorConfig {
    pub backends: Backends,
    /// Redis holding the sessions (`redis://host:6379/0`); unset keeps them in this process
    /// (one machine only).
    pub redis_url: Option<String>,
    /// Timeout of one Redis command, in milliseconds.
    pub redis_timeout_ms: u64,
    /// File holding the Redis password (`AUTH`), read at start; never put it in the URL.
    pub redis_password_file: Option<PathBuf>,
    /// PEM CA certificate(s) of a `rediss://` Redis with a private CA.
    pub redis_ca_file: Option<PathBuf>,
    /// The state keys (an `ekyc_runtime::seal` key file: `KID HEXKEY` a line, the first
    /// seals, all open): seal every session record and tag session tokens. Unset: read from
    /// (or created in) `keys_dir/state.keys`.
    pub state_keys_file: Option<PathBuf>,
    /// Who may call (salted hashes; see [`crate::auth`]). Empty: one development key is
    /// created in `keys_dir/api-key` at first start and allowed everything (one machine).
    pub api_keys: Vec<ApiKeyConfig>,
    /// Ed25519 key signing the evidence records (PKCS#8 PEM file). Unset: read from (or
    /// created in) `keys_dir`.
    pub evidence_key_file: Option<PathBuf>,
    /// Folder for keys generated at first start (one machine). Replicas of a cluster must
    /// share their keys: configure them explicitly there.
    pub keys_dir: PathBuf,
    /// Issuer named in evidence records (`iss`).
    pub issuer: String,
    /// How long an ended session (finished, expired, cancelled) stays readable after it
    /// expires, in seconds, so that clients can fetch the result; then it is purged.
    pub retain_after_expiry_s: u64,
    /// Frames accepted per challenge step in one session. A camera page sends a few a second
    /// while the person turns (the web page about three), a chat bot one at a time; each costs
    /// one face analysis in the liveness service.
    pub max_frames_per_step: u32,
    /// Document photos accepted in one session (AddDocument and Verify together).
    pub max_documents_per_session: u32,
    /// Signatures accepted in one session.
    pub max_signatures_per_session: u32,
    /// Sessions the in-process store holds at most (without `redis_url`).
    pub max_sessions_in_memory: usize,
    /// How long a keyed digest (HMAC-SHA-256 under the state keys) of every document photo
    /// is remembered, in seconds (30 days; 0: off), so that the same photo in a later
    /// session is reported (DOCUMENT_SEEN_BEFORE, a warning). In Redis with `redis_url`,
    /// else in this process (at most `replay_capacity` digests).
    pub document_replay_window_s: u64,
    pub replay_capacity: usize,
    /// Calls in flight (admission limit).
    pub max_in_flight: usize,
    /// Policy used when a session names none.
    pub default_policy: String,
    /// The policies offered, by name.
    pub policies: BTreeMap<String, PolicyConfig>,
    /// Trust anchors and revocation lists for signature evidence.
    pub signature: TrustConfig,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            backends: Backends::default(),
            redis_url: None,
            redis_timeout_ms: 1000,
            redis_password_file: None,
            redis_ca_file: None,
            state_keys_file: None,
            api_keys: Vec::new(),
            evidence_key_file: None,
            keys_dir: PathBuf::from(ekyc_evidence::DEFAULT_KEYS_DIR),
            issuer: "ekyc".into(),
            retain_after_expiry_s: 600,
            max_frames_per_step: 60,
            max_documents_per_session: 5,
            max_signatures_per_session: 5,
            max_sessions_in_memory: 100_000,
            document_replay_window_s: 30 * 24 * 3600,
            replay_capacity: 1_000_000,
            max_in_flight: 64,
            default_policy: "low-risk".into(),
            policies: crate::policy::builtin(),
            signature: TrustConfig::default(),
        }
    }
}

impl OrchestratorConfig {
    /// How to reach the session Redis, when one is configured.
    pub fn redis(&self) -> Option<ekyc_runtime::redis::RedisSettings> {
        self.redis_url.as_ref().map(|url| ekyc_runtime::redis::RedisSettings {
            url: url.clone(),
            password_file: self.redis_password_file.clone(),
            ca_file: self.redis_ca_file.clone(),
            timeout: std::time::Duration::from_millis(self.redis_timeout_ms),
            store: "session store",
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        if !self.policies.contains_key(&self.default_policy) {
            return Err(format!("default_policy {:?} is not among the policies", self.default_policy));
        }
        for (name, p) in &self.policies {
            if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                return Err(format!("policy name {name:?}: 1 to 64 characters of A-Z a-z 0-9 - _ ."));
            }
            p.validate().map_err(|e| format!("policies.{name}: {e}"))?;
        }
        for (name, b) in
            [("liveness", &self.backends.liveness), ("document", &self.backends.document), ("facematch", &self.backends.facematch)]
        {
            if !(b.endpoint.starts_with("http://") || b.endpoint.starts_with("https://")) {
                return Err(format!("backends.{name}.endpoint must start with http:// or https://"));
            }
            if b.timeout_ms == 0 || b.max_concurrency == 0 || b.connect_timeout_ms == 0 || b.discovery_interval_ms == 0 {
                return Err(format!(
                    "backends.{name}: timeout_ms, connect_timeout_ms, max_concurrency and discovery_interval_ms must be at least 1"
                ));
            }
            b.tls.validate(&format!("backends.{name}"), &b.endpoint)?;
        }
        if self.redis_url.is_none() && (self.redis_password_file.is_some() || self.redis_ca_file.is_some()) {
            return Err("redis_password_file and redis_ca_file need redis_url".into());
        }
        if self.max_frames_per_step == 0
            || self.max_in_flight == 0
            || self.max_documents_per_session == 0
            || self.max_signatures_per_session == 0
            || self.max_sessions_in_memory == 0
            || self.replay_capacity == 0
        {
            return Err(
                "max_frames_per_step, max_documents_per_session, max_signatures_per_session, max_sessions_in_memory, replay_capacity and max_in_flight \
                 must be at least 1"
                    .into(),
            );
        }
        for k in &self.api_keys {
            k.validate()?;
            for p in &k.policies {
                if !self.policies.contains_key(p) {
                    return Err(format!("api_keys.{}: policy {p:?} is not among the policies", k.name));
                }
            }
        }
        self.signature.validate().map_err(|e| format!("signature: {e}"))?;
        ekyc_signature::ToBeSigned::validate_issuer(&self.issuer).map_err(|e| format!("issuer: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_backends_need_a_ca_and_http_stays_plain() {
        OrchestratorConfig::default().validate().expect("plain loopback defaults");
        let mut cfg = OrchestratorConfig::default();
        cfg.backends.facematch.endpoint = "https://facematch:50054".into();
        let e = cfg.validate().expect_err("https:// without a CA");
        assert!(e.contains("backends.facematch") && e.contains("ca_file"), "{e}");
        cfg.backends.facematch.tls.ca_file = Some("/etc/ekyc/client-tls/ca.crt".into());
        cfg.validate().expect("https:// with a CA");
        cfg.backends.facematch.tls.cert_file = Some("/etc/ekyc/client-tls/tls.crt".into());
        assert!(cfg.validate().is_err(), "a client certificate without its key");
        cfg.backends.facematch.tls.key_file = Some("/etc/ekyc/client-tls/tls.key".into());
        cfg.validate().expect("mutual TLS");
        cfg.backends.facematch.endpoint = "http://facematch:50054".into();
        assert!(cfg.validate().is_err(), "TLS settings on a plain endpoint");
    }

    #[test]
    fn redis_password_file_needs_a_redis() {
        let cfg = OrchestratorConfig { redis_password_file: Some("/etc/ekyc/redis/password".into()), ..Default::default() };
        assert!(cfg.validate().is_err());
        let cfg = OrchestratorConfig { redis_url: Some("redis://redis:6379".into()), ..cfg };
        cfg.validate().expect("valid");
        let redis = cfg.redis().expect("a Redis");
        assert_eq!(redis.password_file.as_deref(), Some(std::path::Path::new("/etc/ekyc/redis/password")));
    }
}
