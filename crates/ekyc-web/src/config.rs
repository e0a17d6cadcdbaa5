//! `[web]`: the page's HTTP port, which origins may call gRPC-Web from other pages, and the
//! demo switch.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Serve the page and gRPC-Web on `port` wherever the orchestrator runs.
    pub enabled: bool,
    /// The HTTP port of the page and of gRPC-Web (on `server.host`).
    pub port: u16,
    /// Other origins whose pages may call gRPC-Web here (CORS), exactly as the browser sends
    /// them: `https://city.example.jp`, no path, no trailing slash. Empty: only this port's
    /// own page. `*` is refused: it would let any site drive sessions whose token it holds.
    pub allowed_origins: Vec<String>,
    /// Let the page start its own sessions under a key only this process holds. Off by
    /// default and warned about at start: anyone who can reach the page can then start
    /// sessions (within `demo_sessions_per_minute`). In production the operator's back end
    /// calls StartSession with its API key and hands the page the session id and token.
    pub demo: bool,
    /// The policy demo sessions run under; empty = the default policy.
    pub demo_policy: String,
    /// Demo sessions the whole page may start per minute.
    pub demo_sessions_per_minute: u32,
    /// How long a client may take to send a request's headers, counted from the connection
    /// or from the previous answer (an idle kept-alive connection), milliseconds; then the
    /// connection is closed.
    pub header_read_timeout_ms: u64,
    /// Open connections the port keeps at once; one past it is closed at once.
    pub max_connections: u32,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 8080,
            allowed_origins: Vec::new(),
            demo: false,
            demo_policy: String::new(),
            demo_sessions_per_minute: 30,
            header_read_timeout_ms: 10_000,
            max_connections: 1024,
        }
    }
}

impl WebConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.enabled && self.port == 0 {
            return Err("port must be set when the page is enabled".into());
        }
        for o in &self.allowed_origins {
            valid_origin(o).map_err(|e| format!("allowed_origins: {o:?}: {e}"))?;
        }
        if self.header_read_timeout_ms == 0 || self.max_connections == 0 {
            return Err("header_read_timeout_ms and max_connections must be at least 1".into());
        }
        if self.demo && self.demo_sessions_per_minute == 0 {
            return Err("demo_sessions_per_minute must be at least 1 with demo on".into());
        }
        Ok(())
    }
}

/// An origin as browsers send it: scheme, host and optional port, nothing else.
fn valid_origin(o: &str) -> Result<(), &'static str> {
    let rest = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://")).ok_or("must start with https:// or http://")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '*', '@', ' ']) {
        return Err("must be scheme://host[:port] with no path, wildcard or credentials");
    }
    http::HeaderValue::from_str(o).map_err(|_| "not a valid header value")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_exact() {
        let with = |o: &str| WebConfig { allowed_origins: vec![o.into()], ..WebConfig::default() }.validate();
        assert!(with("https://city.example.jp").is_ok());
        assert!(with("http://127.0.0.1:3000").is_ok());
        for bad in ["*", "https://*.example.jp", "https://city.example.jp/", "city.example.jp", "https://a@b", "ftp://x"] {
            assert!(with(bad).is_err(), "{bad} accepted");
        }
        assert!(WebConfig::default().validate().is_ok());
        assert!(WebConfig { port: 0, ..WebConfig::default() }.validate().is_err());
    }
}
