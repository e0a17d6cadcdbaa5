//! One Redis connection for the services that keep state there (liveness challenges,
//! orchestrator sessions): made on first use and remade after failures, so a service starts
//! and recovers whether or not Redis is up, and every command bounded by a timeout, so an
//! unreachable Redis is an error within that time, never a hang.
//!
//! The password (Redis `AUTH`) comes from a file read at start, never from the URL; `rediss://`
//! speaks TLS, verified against a private CA when one is given. Neither the URL nor the
//! password ever reaches a caller: a failed command is logged here with a correlation id and
//! returned as "<store> unavailable (ref <id>)".

use std::path::PathBuf;
use std::time::Duration;

use redis::IntoConnectionInfo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Largest password or CA file read, in bytes.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Where a Redis is and how to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisSettings {
    /// `redis://host:6379/0` or `rediss://host:6380/0` (TLS), without a password.
    pub url: String,
    /// File holding the password sent with `AUTH` (surrounding whitespace ignored).
    pub password_file: Option<PathBuf>,
    /// PEM CA certificate(s) the server's certificate must chain to (`rediss://` only);
    /// unset: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Timeout of one command (and of connecting), after which it fails.
    pub timeout: Duration,
    /// What this Redis holds, named in errors (`"session store"`).
    pub store: &'static str,
}

impl RedisSettings {
    /// `url` with no password and the system's roots.
    pub fn new(url: &str, timeout: Duration, store: &'static str) -> Self {
        RedisSettings { url: url.to_string(), password_file: None, ca_file: None, timeout, store }
    }
}

/// A lazily connected, self-healing Redis client with a per-command timeout.
#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
    /// `host:port/db` of the server, for logs (never the password).
    server: String,
    authenticated: bool,
    timeout: Duration,
    store: &'static str,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("server", &self.server)
            .field("password", &if self.authenticated { "<redacted>" } else { "<none>" })
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn read_limited(what: &str, path: &std::path::Path) -> Result<Vec<u8>, String> {
    let read = || -> std::io::Result<Vec<u8>> {
        if std::fs::metadata(path)?.len() > MAX_FILE_BYTES {
            return Err(std::io::Error::other(format!("larger than {MAX_FILE_BYTES} bytes")));
        }
        std::fs::read(path)
    };
    read().map_err(|e| format!("reading {what} {}: {e}", path.display()))
}

/// What a client-side error says, without the URL it was made from.
fn describe(e: &redis::RedisError) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.category()),
        None => e.category().to_string(),
    }
}

/// A new correlation id for an error reported to a caller and logged here.
fn correlation_id() -> String {
    let mut b = [0u8; 8];
    // An all-zero id still correlates the log line with the answer well enough.
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

impl Redis {
    /// A client for `url` (`redis://host:6379/0`) without password; nothing is connected
    /// yet.
    pub fn new(url: &str, timeout: Duration) -> Result<Redis, String> {
        Redis::connect(&RedisSettings::new(url, timeout, "store"))
    }

    /// A client for `settings`; nothing is connected yet. Reads the password and CA files
    /// now. The error says what is wrong without repeating the URL or the password.
    pub fn connect(settings: &RedisSettings) -> Result<Redis, String> {
        let info = settings.url.as_str().into_connection_info().map_err(|e| format!("redis url: {}", describe(&e)))?;
        let tls = settings.url.starts_with("rediss://");
        if info.redis_settings().password().is_some() || info.redis_settings().username().is_some() {
            return Err("redis url must not carry credentials: put the password in redis_password_file".into());
        }
        let server = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}/{}", info.redis_settings().db()),
            redis::ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}/{}", info.redis_settings().db()),
            other => format!("{other}"),
        };
        let mut authenticated = false;
        let info = match &settings.password_file {
            Some(f) => {
                let raw = read_limited("redis_password_file", f)?;
                let password = String::from_utf8(raw).map_err(|_| format!("redis_password_file {}: not UTF-8", f.display()))?;
                let password = password.trim();
                if password.is_empty() {
                    return Err(format!("redis_password_file {} is empty", f.display()));
                }
                authenticated = true;
                let redis_settings = info.redis_settings().clone().set_password(password);
                info.set_redis_settings(redis_settings)
            }
            None => info,
        };
        let client = match &settings.ca_file {
            Some(ca) if tls => {
                let root_cert = read_limited("redis_ca_file", ca)?;
                redis::Client::build_with_tls(info, redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) })
            }
            Some(_) => return Err("redis_ca_file needs a rediss:// url".into()),
            None => redis::Client::open(info),
        }
        .map_err(|e| format!("redis client for {server}: {}", describe(&e)))?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn =
            ConnectionManager::new_lazy_with_config(client, cfg).map_err(|e| format!("redis client for {server}: {}", describe(&e)))?;
        Ok(Redis { conn, server, authenticated, timeout: settings.timeout, store: settings.store })
    }

    /// Runs `cmd`. A failure (including no answer within the timeout) is logged here in
    /// detail with a correlation id; the error returned names only the store and that id.
    pub async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, String> {
        let mut conn = self.conn.clone();
        let detail = match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", self.timeout.as_millis()),
        };
        let id = correlation_id();
        metrics::counter!("ekyc_redis_errors_total", "store" => self.store).increment(1);
        tracing::warn!(correlation_id = %id, server = %self.server, store = self.store, error = %detail, "redis command failed");
        Err(format!("{} unavailable (ref {id})", self.store))
    }
}
