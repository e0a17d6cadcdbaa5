//! Where challenges live until they are used: Redis in a cluster, or this process on one
//! machine, behind one trait. `take` is atomic: of two concurrent verifications of one
//! challenge, exactly one gets it. The values are opaque sealed records (see
//! [`crate::engine`]): nothing a store holds can be read or altered without the keyring.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store cannot be reached; the message says which and why.
    #[error("challenge store unavailable: {0}")]
    Unavailable(String),
    /// The in-process store holds as many open challenges as it may.
    #[error("{0} open challenges: the in-process store is full")]
    Full(usize),
}

/// Challenge storage keyed by nonce.
pub trait ChallengeStore: Send + Sync + std::fmt::Debug {
    /// Stores `value` for `ttl`; a nonce is never reused, so an existing key is an error.
    fn put<'a>(&'a self, nonce: &'a str, value: Vec<u8>, ttl: Duration) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Removes and returns the value, atomically; `None` when absent or expired.
    fn take<'a>(&'a self, nonce: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>>;
    /// Returns the value without removing it; `None` when absent or expired.
    fn peek<'a>(&'a self, nonce: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>>;
}

/// In-process store for a single machine, holding at most `capacity` challenges. Expiry
/// works from a queue in insertion order (every challenge of one store has the same
/// lifetime), so each call does O(1) amortised work, never a scan of the whole map.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Memory>,
}

#[derive(Debug)]
struct Memory {
    map: HashMap<String, (Vec<u8>, Instant)>,
    /// Nonces in insertion order with their expiry; one whose nonce is gone is skipped.
    order: VecDeque<(String, Instant)>,
    capacity: usize,
}

impl Memory {
    fn expire(&mut self, now: Instant) {
        while let Some((nonce, until)) = self.order.front() {
            if *until > now && self.map.contains_key(nonce) {
                break;
            }
            if *until <= now && self.map.get(nonce).is_some_and(|(_, u)| u == until) {
                self.map.remove(nonce);
            }
            self.order.pop_front();
        }
    }
}

impl MemoryStore {
    pub fn new(capacity: usize) -> MemoryStore {
        MemoryStore { inner: Mutex::new(Memory { map: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1) }) }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Memory>, StoreError> {
        let mut m = self.inner.lock().map_err(|_| StoreError::Unavailable("in-process store poisoned".into()))?;
        m.expire(Instant::now());
        Ok(m)
    }

    /// Challenges held now (expired ones may linger until a call reaches them).
    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.map.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ChallengeStore for MemoryStore {
    fn put<'a>(&'a self, nonce: &'a str, value: Vec<u8>, ttl: Duration) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut m = self.lock()?;
            if m.map.len() >= m.capacity {
                return Err(StoreError::Full(m.capacity));
            }
            if m.map.contains_key(nonce) {
                return Err(StoreError::Unavailable("challenge nonce collision".into()));
            }
            let until = Instant::now() + ttl;
            m.map.insert(nonce.to_string(), (value, until));
            m.order.push_back((nonce.to_string(), until));
            Ok(())
        })
    }

    fn take<'a>(&'a self, nonce: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move {
            let mut m = self.lock()?;
            Ok(m.map.remove(nonce).filter(|(_, until)| *until > Instant::now()).map(|(v, _)| v))
        })
    }

    fn peek<'a>(&'a self, nonce: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move {
            let m = self.lock()?;
            Ok(m.map.get(nonce).filter(|(_, until)| *until > Instant::now()).map(|(v, _)| v.clone()))
        })
    }
}

/// Redis store: `SET key value PX ttl NX` and `GETDEL key`, each bounded by a timeout.
/// The connection is made on first use and remade after failures, so the service starts
/// and recovers whether or not Redis is up.
#[derive(Debug)]
pub struct RedisStore {
    redis: ekyc_runtime::redis::Redis,
}

impl RedisStore {
    pub fn new(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        Ok(Self { redis: ekyc_runtime::redis::Redis::new(url, timeout).map_err(StoreError::Unavailable)? })
    }

    /// A store on a Redis client made already (password, TLS), which others may share.
    pub fn on_redis(redis: ekyc_runtime::redis::Redis) -> Self {
        Self { redis }
    }

    fn key(nonce: &str) -> String {
        format!("ekyc:liveness:challenge:{nonce}")
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StoreError> {
        self.redis.run(cmd).await.map_err(StoreError::Unavailable)
    }
}

impl ChallengeStore for RedisStore {
    fn put<'a>(&'a self, nonce: &'a str, value: Vec<u8>, ttl: Duration) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(Self::key(nonce)).arg(value).arg("PX").arg(ttl.as_millis().max(1) as u64).arg("NX");
            let ok: Option<String> = self.run(cmd).await?;
            ok.map(|_| ()).ok_or_else(|| StoreError::Unavailable("challenge nonce collision in redis".into()))
        })
    }

    fn take<'a>(&'a self, nonce: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("GETDEL");
            cmd.arg(Self::key(nonce));
            self.run(cmd).await
        })
    }

    fn peek<'a>(&'a self, nonce: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("GET");
            cmd.arg(Self::key(nonce));
            self.run(cmd).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_takes_once_and_expires() {
        let s = MemoryStore::new(2);
        s.put("a", b"x".to_vec(), Duration::from_secs(10)).await.expect("put");
        assert_eq!(s.take("a").await.expect("take"), Some(b"x".to_vec()));
        assert_eq!(s.take("a").await.expect("take"), None);
        s.put("b", b"y".to_vec(), Duration::from_millis(1)).await.expect("put");
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(s.take("b").await.expect("take"), None);
        // Bounded: a full store refuses new challenges until some expire or are used.
        s.put("c", b"1".to_vec(), Duration::from_millis(1)).await.expect("put");
        s.put("d", b"2".to_vec(), Duration::from_secs(10)).await.expect("put");
        assert_eq!(s.put("e", b"3".to_vec(), Duration::from_secs(10)).await, Err(StoreError::Full(2)));
        tokio::time::sleep(Duration::from_millis(5)).await;
        s.put("e", b"3".to_vec(), Duration::from_secs(10)).await.expect("the expired one made room");
        assert_eq!(s.len(), 2);
        assert_eq!(s.peek("d").await.expect("peek"), Some(b"2".to_vec()));
    }
}
