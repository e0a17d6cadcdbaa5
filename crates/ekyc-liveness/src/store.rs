//! Where challenges live until they are used: Redis in a cluster, or this process on one
//! machine, behind one trait. `take` is atomic: of two concurrent verifications of one
//! challenge, exactly one gets it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
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
pub struct RedisStore {
    conn: ConnectionManager,
    url: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("url", &self.url).finish()
    }
}

impl RedisStore {
    pub fn new(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::Unavailable(format!("redis url `{url}`: {e}")))?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn =
            ConnectionManager::new_lazy_with_config(client, cfg).map_err(|e| StoreError::Unavailable(format!("redis {url}: {e}")))?;
        Ok(Self { conn, url: url.to_string(), timeout })
    }

    fn key(nonce: &str) -> String {
        format!("ekyc:liveness:challenge:{nonce}")
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::Unavailable(format!("redis at {}: {e}", self.url))),
            Err(_) => Err(StoreError::Unavailable(format!("redis at {} did not answer within {} ms", self.url, self.timeout.as_millis()))),
        }
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
