//! Who may call what. Every call carries `authorization: Bearer <credential>`:
//!
//! - an **API key**, held by the operator's back end (chat bot server, web back end): any
//!   call on any session, StartSession only under the policies the key's settings name and
//!   within its rate. Keys are configured as salted SHA-256 hashes with a name
//!   (`[[orchestrator.api_keys]]`), never in clear; `ekyc api-key` makes one.
//! - a **session token**, returned by StartSession for the browser or chat client: only
//!   AddFrame, AddDocument, AddSignature, GetSession, Finish and Verify on its own session,
//!   until the session expires. It is `st1.<session id>.<expiry ms>.<tag>`, the tag a keyed
//!   digest (HMAC-SHA-256 under the state keys) of id and expiry, so no token is stored and
//!   any replica can check it.
//!
//! Missing or unknown credentials: UNAUTHENTICATED `CALLER_UNAUTHENTICATED`. Valid ones that
//! do not allow the call: PERMISSION_DENIED `CALLER_NOT_PERMITTED`. Too many sessions
//! started by one key: RESOURCE_EXHAUSTED `RATE_LIMITED`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ekyc_runtime::seal::Keyring;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::OrchestratorError;

type Result<T> = std::result::Result<T, OrchestratorError>;

/// One API key as configured: its name, salt and hash, what it may do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who holds the key, for logs and metrics (not secret).
    pub name: String,
    /// Random salt, hex (at least 16 bytes).
    pub salt: String,
    /// SHA-256 of the salt's bytes followed by the key's UTF-8 bytes, lower-case hex.
    pub sha256: String,
    /// Policies this key may start sessions under; empty = every policy.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Sessions this key may start per minute (a token bucket of this size refilled at this
    /// rate); 0 = no StartSession at all.
    #[serde(default = "default_sessions_per_minute")]
    pub sessions_per_minute: u32,
}

fn default_sessions_per_minute() -> u32 {
    120
}

impl ApiKeyConfig {
    /// The configuration entry for `secret` under `name`, with a fresh salt.
    pub fn for_secret(name: &str, secret: &str, policies: Vec<String>) -> Result<ApiKeyConfig> {
        let salt = random_bytes(16)?;
        Ok(ApiKeyConfig {
            name: name.to_string(),
            sha256: hex::encode(key_hash(&salt, secret)),
            salt: hex::encode(salt),
            policies,
            sessions_per_minute: default_sessions_per_minute(),
        })
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.name.is_empty() || self.name.len() > 64 {
            return Err("api_keys: name must be 1 to 64 bytes".into());
        }
        let salt = hex::decode(&self.salt).map_err(|_| format!("api_keys.{}: salt must be hex", self.name))?;
        if salt.len() < 16 {
            return Err(format!("api_keys.{}: salt must be at least 16 bytes", self.name));
        }
        match hex::decode(&self.sha256) {
            Ok(h) if h.len() == 32 => Ok(()),
            _ => Err(format!("api_keys.{}: sha256 must be 64 hex digits", self.name)),
        }
    }
}

/// A new random API key (`ek_` and 32 random bytes, URL-safe base64).
pub fn new_api_key() -> Result<String> {
    Ok(format!("ek_{}", B64URL.encode(random_bytes(32)?)))
}

fn key_hash(salt: &[u8], secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret.as_bytes());
    h.finalize().into()
}

/// `n` bytes from the operating system's RNG.
pub(crate) fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| OrchestratorError::Internal(format!("no randomness: {e}")))?;
    Ok(b)
}

/// Equality that takes the same time wherever the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The calls, as far as authorisation tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    ListPolicies,
    StartSession,
    AddFrame,
    AddDocument,
    AddSignature,
    GetSession,
    Finish,
    Verify,
    CancelSession,
}

impl Call {
    /// Whether a session token may make this call (on its own session).
    fn allowed_for_token(self) -> bool {
        matches!(self, Call::AddFrame | Call::AddDocument | Call::AddSignature | Call::GetSession | Call::Finish | Call::Verify)
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The holder of the configured API key with this index.
    ApiKey(usize),
    /// The holder of this session's token.
    Session(String),
}

struct Key {
    cfg: ApiKeyConfig,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

/// Token buckets of StartSession per API key.
#[derive(Debug, Default)]
struct Buckets(HashMap<usize, (f64, Instant)>);

/// The orchestrator's authentication and authorisation.
pub struct Auth {
    keys: Vec<Key>,
    buckets: Mutex<Buckets>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.keys.iter().map(|k| k.cfg.name.as_str()).collect();
        f.debug_struct("Auth").field("api_keys", &names).finish_non_exhaustive()
    }
}

const TOKEN_PREFIX: &str = "st1";
const TOKEN_PURPOSE: &str = "session-token";

impl Auth {
    pub fn new(keys: &[ApiKeyConfig]) -> std::result::Result<Auth, String> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            k.validate()?;
            if out.iter().any(|o: &Key| o.cfg.name == k.name) {
                return Err(format!("api_keys: name {:?} appears twice", k.name));
            }
            let salt = hex::decode(&k.salt).map_err(|_| format!("api_keys.{}: salt must be hex", k.name))?;
            let hash = hex::decode(&k.sha256).map_err(|_| format!("api_keys.{}: sha256 must be hex", k.name))?;
            out.push(Key { cfg: k.clone(), salt, hash });
        }
        if out.is_empty() {
            return Err("no API key configured: nobody could call the orchestrator".into());
        }
        Ok(Auth { keys: out, buckets: Mutex::new(Buckets::default()) })
    }

    /// The name of the API key a caller holds (for logs and metrics); "session" for tokens.
    pub fn name(&self, caller: &Caller) -> &str {
        match caller {
            Caller::ApiKey(i) => &self.keys[*i].cfg.name,
            Caller::Session(_) => "session-token",
        }
    }

    /// The token for `session_id`, valid until `expires_at_ms`.
    pub fn issue_token(keys: &Keyring, session_id: &str, expires_at_ms: i64) -> String {
        let tag = keys.digest(TOKEN_PURPOSE, token_data(session_id, expires_at_ms).as_bytes());
        format!("{TOKEN_PREFIX}.{session_id}.{expires_at_ms}.{}", B64URL.encode(tag))
    }

    /// Who the `authorization` value names, or why nobody.
    pub fn authenticate(&self, keys: &Keyring, authorization: Option<&str>, now_ms: i64) -> Result<Caller> {
        let unauthenticated = |why: &str| OrchestratorError::Unauthenticated(format!("CALLER_UNAUTHENTICATED: {why}"));
        let value = authorization.ok_or_else(|| unauthenticated("send `authorization: Bearer <API key or session token>`"))?;
        let credential = value
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|c| !c.is_empty() && c.len() <= 512)
            .ok_or_else(|| unauthenticated("the authorization value must be `Bearer <API key or session token>`"))?;
        if let Some(rest) = credential.strip_prefix("st1.") {
            let mut parts = rest.split('.');
            let (Some(id), Some(exp), Some(tag), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
                return Err(unauthenticated("malformed session token"));
            };
            let exp: i64 = exp.parse().map_err(|_| unauthenticated("malformed session token"))?;
            let tag = B64URL.decode(tag).map_err(|_| unauthenticated("malformed session token"))?;
            let data = token_data(id, exp);
            if !keys.digests(TOKEN_PURPOSE, data.as_bytes()).iter().any(|d| same(d, &tag)) {
                return Err(unauthenticated("the session token is not one this server issued"));
            }
            if now_ms >= exp {
                return Err(unauthenticated("the session token has expired with its session; start a new session"));
            }
            return Ok(Caller::Session(id.to_string()));
        }
        self.keys
            .iter()
            .position(|k| same(&key_hash(&k.salt, credential), &k.hash))
            .map(Caller::ApiKey)
            .ok_or_else(|| unauthenticated("unknown API key"))
    }

    /// Whether `caller` may make `call` on `session_id` (for calls on a session).
    pub fn authorize(&self, caller: &Caller, call: Call, session_id: Option<&str>) -> Result<()> {
        match caller {
            Caller::ApiKey(_) => Ok(()),
            Caller::Session(own) => {
                if call == Call::ListPolicies {
                    return Ok(());
                }
                if !call.allowed_for_token() {
                    return Err(OrchestratorError::PermissionDenied(format!(
                        "CALLER_NOT_PERMITTED: a session token may not call {call:?}; that needs the operator's API key"
                    )));
                }
                if session_id.is_none_or(|s| !same(s.as_bytes(), own.as_bytes())) {
                    return Err(OrchestratorError::PermissionDenied(
                        "CALLER_NOT_PERMITTED: this session token belongs to another session".into(),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Whether `caller` may start a session under `policy` now; takes one from its bucket.
    pub fn admit_start(&self, caller: &Caller, policy: &str) -> Result<()> {
        let Caller::ApiKey(i) = caller else {
            return Err(OrchestratorError::PermissionDenied(
                "CALLER_NOT_PERMITTED: StartSession needs the operator's API key, not a session token".into(),
            ));
        };
        let cfg = &self.keys[*i].cfg;
        if !cfg.policies.is_empty() && !cfg.policies.iter().any(|p| p == policy) {
            return Err(OrchestratorError::PermissionDenied(format!(
                "CALLER_NOT_PERMITTED: API key {:?} may not start sessions under policy {policy:?}",
                cfg.name
            )));
        }
        let rate = f64::from(cfg.sessions_per_minute);
        let mut b = self.buckets.lock().map_err(|_| OrchestratorError::Internal("rate limiter poisoned".into()))?;
        let now = Instant::now();
        let (tokens, last) = b.0.entry(*i).or_insert((rate, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate / 60.0).min(rate);
        *last = now;
        if *tokens < 1.0 {
            metrics::counter!("ekyc_rate_limited_total", "service" => "orchestrator", "api_key" => cfg.name.clone()).increment(1);
            return Err(OrchestratorError::Busy(format!(
                "RATE_LIMITED: API key {:?} may start {} sessions a minute; retry later",
                cfg.name, cfg.sessions_per_minute
            )));
        }
        *tokens -= 1.0;
        Ok(())
    }
}

fn token_data(session_id: &str, expires_at_ms: i64) -> String {
    format!("{session_id}\0{expires_at_ms}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(policies: Vec<String>, rate: u32) -> (Auth, String) {
        let secret = new_api_key().expect("key");
        let mut cfg = ApiKeyConfig::for_secret("bot", &secret, policies).expect("cfg");
        cfg.sessions_per_minute = rate;
        (Auth::new(&[cfg]).expect("auth"), secret)
    }

    #[test]
    fn api_keys_are_checked_against_their_salted_hash() {
        let (a, secret) = auth(vec![], 10);
        let keys = Keyring::ephemeral().expect("keys");
        assert_eq!(a.authenticate(&keys, Some(&format!("Bearer {secret}")), 0).expect("known"), Caller::ApiKey(0));
        for bad in [None, Some("Bearer "), Some(secret.as_str()), Some("Bearer ek_wrong"), Some("Basic abc")] {
            let e = a.authenticate(&keys, bad, 0).expect_err("refused");
            assert!(matches!(e, OrchestratorError::Unauthenticated(ref m) if m.starts_with("CALLER_UNAUTHENTICATED")), "{e:?}");
        }
        assert!(!format!("{a:?}").contains(&secret));
    }

    #[test]
    fn session_tokens_open_their_own_session_only_and_expire() {
        let (a, _) = auth(vec![], 10);
        let keys = Keyring::ephemeral().expect("keys");
        let t = Auth::issue_token(&keys, "s_abc", 1_000);
        let caller = a.authenticate(&keys, Some(&format!("Bearer {t}")), 999).expect("valid");
        assert_eq!(caller, Caller::Session("s_abc".into()));
        a.authorize(&caller, Call::AddFrame, Some("s_abc")).expect("own session");
        assert!(matches!(a.authorize(&caller, Call::AddFrame, Some("s_other")), Err(OrchestratorError::PermissionDenied(_))));
        assert!(matches!(a.authorize(&caller, Call::CancelSession, Some("s_abc")), Err(OrchestratorError::PermissionDenied(_))));
        assert!(matches!(a.admit_start(&caller, "low-risk"), Err(OrchestratorError::PermissionDenied(_))));
        assert!(matches!(a.authenticate(&keys, Some(&format!("Bearer {t}")), 1_000), Err(OrchestratorError::Unauthenticated(_))));
        // Moving the token to another session or stretching its life breaks its tag.
        for forged in [t.replace("s_abc", "s_abd"), t.replace(".1000.", ".9000.")] {
            assert!(matches!(a.authenticate(&keys, Some(&format!("Bearer {forged}")), 0), Err(OrchestratorError::Unauthenticated(_))));
        }
        let other_server = Keyring::ephemeral().expect("keys");
        assert!(a.authenticate(&other_server, Some(&format!("Bearer {t}")), 0).is_err(), "another deployment's keys");
    }

    #[test]
    fn policies_and_rate_are_enforced_per_key() {
        let (a, _) = auth(vec!["low-risk".into()], 2);
        let me = Caller::ApiKey(0);
        assert!(matches!(a.admit_start(&me, "resident-certificate"), Err(OrchestratorError::PermissionDenied(_))));
        a.admit_start(&me, "low-risk").expect("1");
        a.admit_start(&me, "low-risk").expect("2");
        let e = a.admit_start(&me, "low-risk").expect_err("bucket empty");
        assert!(matches!(e, OrchestratorError::Busy(ref m) if m.starts_with("RATE_LIMITED")), "{e:?}");
    }

    #[test]
    fn configuration_is_validated() {
        assert!(Auth::new(&[]).is_err());
        let good = ApiKeyConfig::for_secret("a", "x", vec![]).expect("cfg");
        assert!(Auth::new(&[good.clone(), good.clone()]).is_err(), "duplicate names");
        assert!(Auth::new(&[ApiKeyConfig { salt: "00".into(), ..good.clone() }]).is_err(), "short salt");
        assert!(Auth::new(&[ApiKeyConfig { sha256: "zz".into(), ..good }]).is_err());
    }
}
