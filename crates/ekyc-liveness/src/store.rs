//! Where challenges live until they are used: Redis in a cluster, or this process on one
//! machine, behind one trait. `take` is atomic: of two concurrent verifications of one
//! challenge, exactly one gets it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store cannot be reached; the message says which and why.
    #[error("challenge store unavailable: {0}")]
    Unavailable(String),
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

/// In-process store for a single machine.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
}

impl ChallengeStore for MemoryStore {
    fn put<'a>(&'a self, nonce: &'a str, value: Vec<u8>, ttl: Duration) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut map = self.map.lock().map_err(|_| StoreError::Unavailable("in-process store poisoned".into()))?;
            let now = Instant::now();
            map.retain(|_, (_, until)| *until > now);
            map.insert(nonce.to_string(), (value, now + ttl));
            Ok(())
        })
    }

    fn take<'a>(&'a self, nonce: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move {
            let mut map = self.map.lock().map_err(|_| StoreError::Unavailable("in-process store poisoned".into()))?;
            Ok(map.remove(nonce).filter(|(_, until)| *until > Instant::now()).map(|(v, _)| v))
        })
    }

    fn peek<'a>(&'a self, nonce: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move {
            let map = self.map.lock().map_err(|_| StoreError::Unavailable("in-process store poisoned".into()))?;
            Ok(map.get(nonce).filter(|(_, until)| *until > Instant::now()).map(|(v, _)| v.clone()))
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

    /// A store on the Redis `settings` describe (password, TLS).
    pub fn connect(settings: &ekyc_runtime::redis::RedisSettings) -> Result<Self, StoreError> {
        Ok(Self { redis: ekyc_runtime::redis::Redis::connect(settings).map_err(StoreError::Unavailable)? })
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
        let s = MemoryStore::default();
        s.put("a", b"x".to_vec(), Duration::from_secs(10)).await.expect("put");
        assert_eq!(s.take("a").await.expect("take"), Some(b"x".to_vec()));
        assert_eq!(s.take("a").await.expect("take"), None);
        s.put("b", b"y".to_vec(), Duration::from_millis(1)).await.expect("put");
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(s.take("b").await.expect("take"), None);
    }
}
