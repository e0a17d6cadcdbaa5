//! The typed session store: a [`Session`] goes into the [`Store`] only as one record sealed
//! with the state keys (AES-256-GCM, [`ekyc_runtime::seal`]) whose associated data binds
//! the record kind, the session id and the revision. Whoever can write to Redis can delete
//! a session, but cannot read it, change any field of it, move it to another id or pass an
//! older revision off as the current one: such a record fails to open and the call is
//! refused with DATA_LOSS `SESSION_CORRUPT`, never decided on.
//!
//! Updates are compare-and-set on the revision, so concurrent calls and replicas never lose
//! each other's evidence.

use std::sync::Arc;

use ekyc_runtime::seal::{Keyring, SealError};

use crate::error::OrchestratorError;
use crate::session::Session;
use crate::store::Store;

type Result<T> = std::result::Result<T, OrchestratorError>;

/// The record kind in the sealed record's associated data.
const KIND: &str = "orchestrator-session";

/// Longest session id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Sessions, sealed, in a store.
#[derive(Debug)]
pub struct Sessions {
    store: Store,
    keys: Arc<Keyring>,
    retain_after_expiry_ms: i64,
}

impl Sessions {
    pub fn new(store: Store, keys: Arc<Keyring>, retain_after_expiry_s: u64) -> Sessions {
        let retain_after_expiry_ms = i64::try_from(retain_after_expiry_s.saturating_mul(1000)).unwrap_or(i64::MAX);
        Sessions { store, keys, retain_after_expiry_ms }
    }

    /// The state keys (also used for session tokens and keyed digests).
    pub fn keys(&self) -> &Arc<Keyring> {
        &self.keys
    }

    /// A name for the session in logs: a keyed digest, never the id itself (ids are bearer
    /// secrets as much as tokens are).
    pub fn log_ref(&self, id: &str) -> String {
        hex::encode(&self.keys.digest("log-session-id", id.as_bytes())[..8])
    }

    fn purge_at(&self, s: &Session) -> i64 {
        s.expires_at_unix_ms.saturating_add(self.retain_after_expiry_ms)
    }

    fn seal(&self, s: &Session, rev: u64) -> Result<Vec<u8>> {
        let plain = serde_json::to_vec(s).map_err(|e| OrchestratorError::Internal(format!("serialising a session: {e}")))?;
        self.keys.seal(KIND, &s.id, rev, &plain).map_err(|e| OrchestratorError::Internal(format!("sealing a session: {e}")))
    }

    /// Stores a new session (revision 1); false when the id exists.
    pub async fn create(&self, s: &Session) -> Result<bool> {
        Ok(self.store.create(&s.id, &self.seal(s, 1)?, self.purge_at(s)).await?)
    }

    /// The session `id` and its revision. NOT_FOUND when unknown or purged; DATA_LOSS
    /// `SESSION_CORRUPT` when the stored record does not open as this session's.
    pub async fn load(&self, id: &str) -> Result<(Session, u64)> {
        if id.is_empty() || id.len() > MAX_ID_BYTES || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(OrchestratorError::InvalidArgument(
                "session_id: the id StartSession returned (URL-safe ASCII, at most 128 bytes)".into(),
            ));
        }
        let stored = self
            .store
            .load(id)
            .await?
            .ok_or_else(|| OrchestratorError::NotFound("session not found: unknown, or purged after it ended".into()))?;
        let plain = self.keys.open(KIND, id, stored.rev, &stored.data).map_err(|e| self.corrupt(id, &e))?;
        let s: Session = serde_json::from_slice(&plain).map_err(|e| {
            // Sealed by us yet unreadable: a record of another version of ekyc.
            tracing::error!(session = %self.log_ref(id), error = %e, "a sealed session record does not parse");
            OrchestratorError::Corrupt("SESSION_CORRUPT: the stored session cannot be read; start a new session".into())
        })?;
        if s.id != id {
            return Err(self.corrupt(id, &SealError::Tampered));
        }
        Ok((s, stored.rev))
    }

    fn corrupt(&self, id: &str, e: &SealError) -> OrchestratorError {
        tracing::warn!(session = %self.log_ref(id), error = %e, "stored session refused");
        metrics::counter!("ekyc_state_corrupt_total", "service" => "orchestrator", "kind" => KIND).increment(1);
        OrchestratorError::Corrupt(
            "SESSION_CORRUPT: the stored session failed its integrity check (altered in the store, or sealed with a key this \
             server does not have); it is never decided on: start a new session"
                .into(),
        )
    }

    /// Applies `change` to the stored session with compare-and-set, reloading and
    /// re-applying when another call got there first.
    pub async fn update<T>(&self, id: &str, mut change: impl FnMut(&mut Session) -> Result<T>) -> Result<(Session, T)> {
        for _ in 0..16 {
            let (mut s, rev) = self.load(id).await?;
            let out = change(&mut s)?;
            let sealed = self.seal(&s, rev + 1)?;
            if self.store.replace(id, rev, &sealed, self.purge_at(&s)).await? {
                return Ok((s, out));
            }
        }
        Err(OrchestratorError::Aborted("ABORTED: the session is being changed by many calls at once; retry".into()))
    }
}
