//! One Redis connection for the services that keep state there (liveness challenges,
//! orchestrator sessions): made on first use and remade after failures, so a service starts
//! and recovers whether or not Redis is up, and every command bounded by a timeout, so an
//! unreachable Redis is an error within that time, never a hang.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// A lazily connected, self-healing Redis client with a per-command timeout.
#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
    url: String,
    timeout: Duration,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("url", &self.url).field("timeout", &self.timeout).finish()
    }
}

impl Redis {
    /// A client for `url` (`redis://host:6379/0`); nothing is connected yet. The error says
    /// what is wrong with the URL.
    pub fn new(url: &str, timeout: Duration) -> Result<Redis, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis url `{url}`: {e}"))?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, cfg).map_err(|e| format!("redis {url}: {e}"))?;
        Ok(Redis { conn, url: url.to_string(), timeout })
    }

    /// Runs `cmd`; the error names the server and what went wrong (including no answer
    /// within the timeout).
    pub async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, String> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("redis at {}: {e}", self.url)),
            Err(_) => Err(format!("redis at {} did not answer within {} ms", self.url, self.timeout.as_millis())),
        }
    }
}
