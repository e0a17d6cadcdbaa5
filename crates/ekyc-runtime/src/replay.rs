//! Replay memory across sessions: remembers keyed digests (HMAC-SHA-256 from
//! [`Keyring::digest`], never raw hashes) of what was received (frames, face crops,
//! document photos) for a window, each under an owner (the keyed digest of the challenge or
//! session it arrived in), so the same picture arriving under another owner is recognised
//! as a replay while a re-send within its own owner is not.
//!
//! Two backends behind one type:
//! - Redis (one cluster-wide memory): key `ekyc:replay:<hex digest>`, value the owner sealed
//!   with [`Keyring::seal`]`("replay", <hex digest>, 1, owner)`, written `SET NX PX window`
//!   and read back when it exists. A value that does not open (altered, moved between keys,
//!   sealed by an unknown key) counts as seen: the memory fails closed.
//! - In process (one machine): a map bounded by `capacity`, whose entries expire in
//!   insertion order, so each call does O(1) amortised expiry work; when full, the oldest
//!   entries are forgotten first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::redis::Redis;
use crate::seal::Keyring;

/// Why the memory could not answer. A caller must treat this as "cannot tell", never as
/// "not seen".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("replay memory unavailable: {0}")]
    Unavailable(String),
}

/// A digest remembered in process: its owner and when it is forgotten.
#[derive(Debug)]
struct Entry {
    owner: [u8; 32],
    until: Instant,
}

#[derive(Debug)]
struct Local {
    map: HashMap<[u8; 32], Entry>,
    /// Digests in insertion order with their expiry; an item whose expiry no longer matches
    /// the map's entry is stale (the digest was forgotten and remembered again).
    order: VecDeque<([u8; 32], Instant)>,
    capacity: usize,
}

impl Local {
    /// Drops expired entries from the front: O(1) amortised, as every entry is pushed once.
    fn expire(&mut self, now: Instant) {
        while let Some(&(d, until)) = self.order.front() {
            let live = self.map.get(&d).is_some_and(|e| e.until == until);
            if live && until > now {
                break;
            }
            self.order.pop_front();
            if live {
                self.map.remove(&d);
            }
        }
    }

    /// Forgets the oldest entries until one more fits.
    fn make_room(&mut self) {
        while self.map.len() >= self.capacity {
            let Some((d, until)) = self.order.pop_front() else { break };
            if self.map.get(&d).is_some_and(|e| e.until == until) {
                self.map.remove(&d);
            }
        }
    }
}

#[derive(Debug)]
enum Backend {
    Redis(Redis),
    Local(Mutex<Local>),
}

/// Remembers digests for a window; see the module docs.
#[derive(Debug)]
pub struct ReplayMemory {
    backend: Backend,
    keyring: Arc<Keyring>,
}

impl ReplayMemory {
    /// A memory in Redis; owners are sealed with `keyring`.
    pub fn redis(redis: Redis, keyring: Arc<Keyring>) -> ReplayMemory {
        ReplayMemory { backend: Backend::Redis(redis), keyring }
    }

    /// A memory in this process holding at most `capacity` digests (at least 1).
    pub fn in_process(capacity: usize, keyring: Arc<Keyring>) -> ReplayMemory {
        let local = Local { map: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1) };
        ReplayMemory { backend: Backend::Local(Mutex::new(local)), keyring }
    }

    fn key(digest: &[u8; 32]) -> (String, String) {
        let hex = hex::encode(digest);
        (format!("ekyc:replay:{hex}"), hex)
    }

    /// Remembers every digest under `owner` for `window` (a digest already remembered keeps
    /// its first owner and expiry) and returns the index of the first digest that was
    /// already remembered under another owner.
    pub async fn check_and_remember(&self, digests: &[[u8; 32]], owner: &[u8; 32], window: Duration) -> Result<Option<usize>, ReplayError> {
        match &self.backend {
            Backend::Local(local) => {
                let mut l = local.lock().map_err(|_| ReplayError::Unavailable("in-process replay memory poisoned".into()))?;
                let now = Instant::now();
                let mut first = None;
                for (i, d) in digests.iter().enumerate() {
                    l.expire(now);
                    match l.map.get(d) {
                        Some(e) if e.until > now => {
                            if &e.owner != owner && first.is_none() {
                                first = Some(i);
                            }
                        }
                        _ => {
                            l.make_room();
                            let until = now + window;
                            l.map.insert(*d, Entry { owner: *owner, until });
                            l.order.push_back((*d, until));
                        }
                    }
                }
                Ok(first)
            }
            Backend::Redis(redis) => {
                let mut first = None;
                for (i, d) in digests.iter().enumerate() {
                    let (key, hex) = Self::key(d);
                    let sealed = self.keyring.seal("replay", &hex, 1, owner).map_err(|e| ReplayError::Unavailable(e.to_string()))?;
                    let mut set = redis::cmd("SET");
                    set.arg(&key).arg(sealed).arg("NX").arg("PX").arg(window.as_millis().clamp(1, u128::from(u64::MAX)) as u64);
                    let created: Option<String> = redis.run(set).await.map_err(ReplayError::Unavailable)?;
                    if created.is_some() || first.is_some() {
                        continue;
                    }
                    if self.owned_elsewhere(redis, &key, &hex, owner).await? {
                        first = Some(i);
                    }
                }
                Ok(first)
            }
        }
    }

    /// The index of the first digest remembered under another owner, remembering nothing
    /// (for probes: near variants of a perceptual hash).
    pub async fn seen_elsewhere(&self, digests: &[[u8; 32]], owner: &[u8; 32]) -> Result<Option<usize>, ReplayError> {
        match &self.backend {
            Backend::Local(local) => {
                let mut l = local.lock().map_err(|_| ReplayError::Unavailable("in-process replay memory poisoned".into()))?;
                let now = Instant::now();
                l.expire(now);
                Ok(digests.iter().position(|d| l.map.get(d).is_some_and(|e| e.until > now && &e.owner != owner)))
            }
            Backend::Redis(redis) => {
                if digests.is_empty() {
                    return Ok(None);
                }
                // One round trip for all the probes.
                let mut mget = redis::cmd("MGET");
                for d in digests {
                    mget.arg(Self::key(d).0);
                }
                let values: Vec<Option<Vec<u8>>> = redis.run(mget).await.map_err(ReplayError::Unavailable)?;
                Ok(digests.iter().zip(&values).position(|(d, v)| v.as_deref().is_some_and(|v| self.foreign(&hex::encode(d), v, owner))))
            }
        }
    }

    /// Whether a stored value names an owner other than `owner`; one that does not open
    /// counts as another owner (fail closed).
    fn foreign(&self, hex: &str, value: &[u8], owner: &[u8; 32]) -> bool {
        self.keyring.open("replay", hex, 1, value).map_or(true, |o| o.as_slice() != owner.as_slice())
    }

    /// Whether `key` holds an owner other than `owner`; a value that does not open is
    /// another owner (fail closed), an absent one is not.
    async fn owned_elsewhere(&self, redis: &Redis, key: &str, hex: &str, owner: &[u8; 32]) -> Result<bool, ReplayError> {
        let mut get = redis::cmd("GET");
        get.arg(key);
        let value: Option<Vec<u8>> = redis.run(get).await.map_err(ReplayError::Unavailable)?;
        Ok(value.is_some_and(|v| self.foreign(hex, &v, owner)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[tokio::test]
    async fn in_process_memory_tells_owners_apart_expires_and_stays_bounded() {
        let m = ReplayMemory::in_process(3, Arc::new(Keyring::ephemeral().expect("keys")));
        let w = Duration::from_secs(60);
        assert_eq!(m.check_and_remember(&[d(1), d(2)], &d(100), w).await, Ok(None));
        assert_eq!(m.check_and_remember(&[d(1), d(2)], &d(100), w).await, Ok(None), "same owner: not a replay");
        assert_eq!(m.check_and_remember(&[d(3), d(2)], &d(101), w).await, Ok(Some(1)), "another owner");
        assert_eq!(m.seen_elsewhere(&[d(9), d(1)], &d(101)).await, Ok(Some(1)));
        assert_eq!(m.seen_elsewhere(&[d(9)], &d(101)).await, Ok(None));
        // Capacity 3: a fourth digest pushes out the oldest.
        assert_eq!(m.check_and_remember(&[d(4)], &d(102), w).await, Ok(None));
        assert_eq!(m.seen_elsewhere(&[d(1)], &d(103)).await, Ok(None), "the oldest was forgotten");
        let short = Duration::from_millis(5);
        assert_eq!(m.check_and_remember(&[d(5)], &d(104), short).await, Ok(None));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(m.seen_elsewhere(&[d(5)], &d(105)).await, Ok(None), "expired");
        if let Backend::Local(l) = &m.backend {
            let l = l.lock().expect("lock");
            assert!(l.map.len() <= 3 && l.order.len() <= 4, "{} {}", l.map.len(), l.order.len());
        }
    }
}
