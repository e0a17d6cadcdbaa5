//! TLS on the gRPC ports (rustls through tonic): the settings (`[server.tls]`), the server
//! side (certificate chain and key from PEM files; with a client CA, mutual TLS plus a check
//! that the client certificate names an allowed client), the plain health-only port that
//! Kubernetes' native gRPC probes need (kubelet probes speak neither TLS nor client
//! certificates), and the client side used to call a TLS backend.
//!
//! The client-name check runs as a tower layer ([`ClientNameLayer`]) before any handler:
//! a caller whose certificate chains to the client CA but names no allowed client gets
//! PERMISSION_DENIED; a caller without a certificate, or with one from another CA, fails the
//! handshake and never reaches the layer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::{Deserialize, Deserializer, Serialize};
use tokio::net::TcpListener;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Longest a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Largest PEM file read (certificate chains, keys, CA bundles), in bytes.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
    Invalid(String),
    #[error("reading {what} {path}: {source}")]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("TLS configuration: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// TLS of this process's gRPC ports (`[server.tls]`). Off unless `cert_file` is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerTlsSettings {
    /// PEM certificate chain (leaf first) presented by the server.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// PEM CA certificate(s) client certificates must chain to. Set: mutual TLS, a client
    /// without such a certificate fails the handshake.
    pub client_ca_file: Option<PathBuf>,
    /// Names (SAN DNS or URI, or the subject CN) of the clients allowed in; required with
    /// `client_ca_file`. A comma-separated string is accepted (environment variables).
    #[serde(deserialize_with = "names")]
    pub allowed_client_names: Vec<String>,
}

fn names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Names {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Names::deserialize(d)? {
        Names::One(s) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect(),
        Names::Many(v) => v.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
    })
}

impl ServerTlsSettings {
    /// True when the ports serve TLS.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    pub fn validate(&self) -> Result<(), String> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), Some(_)) | (None, None) => {}
            _ => return Err("server.tls.cert_file and server.tls.key_file go together".into()),
        }
        if !self.enabled() && (self.client_ca_file.is_some() || !self.allowed_client_names.is_empty()) {
            return Err("server.tls.client_ca_file and allowed_client_names need server.tls.cert_file".into());
        }
        match (&self.client_ca_file, self.allowed_client_names.is_empty()) {
            (Some(_), true) => Err("server.tls.client_ca_file needs server.tls.allowed_client_names".into()),
            (None, false) => Err("server.tls.allowed_client_names needs server.tls.client_ca_file".into()),
            _ => Ok(()),
        }
    }

    /// Reads the certificate, key and client CA; `None` when TLS is off.
    pub fn load(&self) -> Result<Option<ServerTls>, TlsError> {
        self.validate().map_err(TlsError::Invalid)?;
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            return Ok(None);
        };
        let identity = Identity::from_pem(read_pem("server.tls.cert_file", cert)?, read_pem("server.tls.key_file", key)?);
        let mut config = ServerTlsConfig::new().identity(identity).timeout(HANDSHAKE_TIMEOUT);
        let mut allowed = None;
        if let Some(ca) = &self.client_ca_file {
            config = config.client_ca_root(Certificate::from_pem(read_pem("server.tls.client_ca_file", ca)?)).client_auth_optional(false);
            allowed = Some(Arc::from(self.allowed_client_names.clone()));
        }
        Ok(Some(ServerTls { config, allowed }))
    }
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let read = || -> std::io::Result<Vec<u8>> {
        let len = std::fs::metadata(path)?.len();
        if len > MAX_PEM_BYTES {
            return Err(std::io::Error::other(format!("larger than {MAX_PEM_BYTES} bytes")));
        }
        std::fs::read(path)
    };
    read().map_err(|source| TlsError::Read { what, path: path.to_path_buf(), source })
}

/// Server TLS, loaded: the rustls configuration and, with mutual TLS, the allowed client
/// names.
#[derive(Clone)]
pub struct ServerTls {
    config: ServerTlsConfig,
    allowed: Option<Arc<[String]>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration holds the private key: only say what kind of TLS this is.
        f.debug_struct("ServerTls").field("mutual", &self.allowed.is_some()).field("allowed_client_names", &self.allowed).finish()
    }
}

impl ServerTls {
    pub(crate) fn config(&self) -> ServerTlsConfig {
        self.config.clone()
    }

    /// The layer enforcing the allowed client names (a pass-through without mutual TLS).
    pub fn client_names(&self) -> ClientNameLayer {
        ClientNameLayer { allowed: self.allowed.clone() }
    }
}

/// Where a gRPC server listens and how: the TCP listener, TLS on it or not, and optionally
/// a second, plain listener serving only `grpc.health.v1.Health` for Kubernetes probes.
/// A bare `TcpListener` converts into a plain one.
#[derive(Debug)]
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<ServerTls>,
    pub health: Option<TcpListener>,
}

impl From<TcpListener> for Listener {
    fn from(tcp: TcpListener) -> Self {
        Listener { tcp, tls: None, health: None }
    }
}

impl Listener {
    /// `tcp` served with `tls`, and health alone in plain gRPC on `health`.
    pub fn new(tcp: TcpListener, tls: Option<ServerTls>, health: Option<TcpListener>) -> Self {
        Listener { tcp, tls, health }
    }
}

/// Refuses calls whose client certificate names none of the allowed clients, before any
/// handler runs: PERMISSION_DENIED, or UNAUTHENTICATED when the connection carries no
/// client certificate at all. Without mutual TLS it lets everything through.
#[derive(Debug, Clone, Default)]
pub struct ClientNameLayer {
    allowed: Option<Arc<[String]>>,
}

impl<S> tower::Layer<S> for ClientNameLayer {
    type Service = ClientNames<S>;
    fn layer(&self, inner: S) -> ClientNames<S> {
        ClientNames { inner, allowed: self.allowed.clone() }
    }
}

/// The service of [`ClientNameLayer`].
#[derive(Debug, Clone)]
pub struct ClientNames<S> {
    inner: S,
    allowed: Option<Arc<[String]>>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for ClientNames<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: Default,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = futures::future::Either<S::Future, std::future::Ready<Result<http::Response<RB>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let Some(allowed) = &self.allowed else {
            return futures::future::Either::Left(self.inner.call(req));
        };
        let certs = req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>().and_then(TlsConnectInfo::peer_certs);
        let refusal = match certs.as_deref().and_then(|c| c.first()) {
            None => Some(tonic::Status::unauthenticated("a client certificate is required")),
            Some(leaf) => {
                let names = certificate_names(leaf.as_ref());
                if names.iter().any(|n| allowed.iter().any(|a| a == n)) {
                    None
                } else {
                    tracing::warn!(client_names = ?names, path = req.uri().path(), "client certificate names no allowed client");
                    Some(tonic::Status::permission_denied("this client is not allowed to call this service"))
                }
            }
        };
        match refusal {
            None => futures::future::Either::Left(self.inner.call(req)),
            Some(status) => futures::future::Either::Right(std::future::ready(Ok(status.into_http()))),
        }
    }
}

/// The names a certificate gives its subject: SAN DNS names and URIs, then the subject's
/// common names. Empty when the DER does not parse.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(s) | x509_parser::extensions::GeneralName::URI(s) => {
                    names.push((*s).to_string())
                }
                _ => {}
            }
        }
    }
    for cn in cert.subject().iter_common_name() {
        if let Ok(s) = cn.as_str() {
            names.push(s.to_string());
        }
    }
    names
}

/// How to call a TLS backend (`orchestrator.backends.<name>.tls`): the CA its certificate
/// chains to, this client's certificate and key for mutual TLS, and the name to verify when
/// it differs from the endpoint's host.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTlsSettings {
    /// PEM CA certificate(s) the server's chain must end in; required for `https://`.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain this client presents (mutual TLS); goes with `key_file`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Name the server certificate must carry; unset: the endpoint's host.
    pub server_name: Option<String>,
}

impl ClientTlsSettings {
    /// True when any TLS setting is given.
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some() || self.server_name.is_some()
    }

    /// Checks the settings for an endpoint (`http://` or `https://`); `at` names the
    /// settings in the message.
    pub fn validate(&self, at: &str, endpoint: &str) -> Result<(), String> {
        if endpoint.starts_with("https://") {
            if self.ca_file.is_none() {
                return Err(format!("{at}: an https:// endpoint needs tls.ca_file"));
            }
        } else if self.is_set() {
            return Err(format!("{at}: tls settings are given but the endpoint is not https://"));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(format!("{at}: tls.cert_file and tls.key_file go together"));
        }
        Ok(())
    }

    /// The tonic client configuration; `None` when no TLS is configured.
    pub fn load(&self) -> Result<Option<ClientTlsConfig>, TlsError> {
        let Some(ca) = &self.ca_file else {
            return Ok(None);
        };
        let mut config =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem("tls.ca_file", ca)?)).timeout(HANDSHAKE_TIMEOUT);
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            config = config.identity(Identity::from_pem(read_pem("tls.cert_file", cert)?, read_pem("tls.key_file", key)?));
        }
        if let Some(name) = &self.server_name {
            config = config.domain_name(name.clone());
        }
        Ok(Some(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_settings_are_validated() {
        let p = |s: &str| Some(PathBuf::from(s));
        ServerTlsSettings::default().validate().expect("off is valid");
        let tls = ServerTlsSettings { cert_file: p("c"), key_file: p("k"), ..Default::default() };
        tls.validate().expect("server TLS");
        assert!(ServerTlsSettings { key_file: None, ..tls.clone() }.validate().is_err(), "cert without key");
        let mutual = ServerTlsSettings { client_ca_file: p("ca"), allowed_client_names: vec!["orchestrator".into()], ..tls.clone() };
        mutual.validate().expect("mutual TLS");
        assert!(ServerTlsSettings { allowed_client_names: vec![], ..mutual.clone() }.validate().is_err(), "mTLS needs names");
        assert!(ServerTlsSettings { client_ca_file: None, ..mutual.clone() }.validate().is_err(), "names need a CA");
        assert!(ServerTlsSettings { cert_file: None, key_file: None, ..mutual }.validate().is_err(), "mTLS needs TLS");
    }

    #[test]
    fn client_settings_are_validated() {
        let tls = ClientTlsSettings { ca_file: Some("ca".into()), ..Default::default() };
        tls.validate("b", "https://facematch:50054").expect("https with a CA");
        assert!(ClientTlsSettings::default().validate("b", "https://facematch:50054").is_err(), "https needs a CA");
        ClientTlsSettings::default().validate("b", "http://127.0.0.1:50054").expect("plain");
        assert!(tls.validate("b", "http://facematch:50054").is_err(), "TLS settings on a plain endpoint");
        let half = ClientTlsSettings { cert_file: Some("c".into()), ..tls };
        assert!(half.validate("b", "https://facematch:50054").is_err(), "cert without key");
    }

    #[test]
    fn names_accept_a_list_or_a_comma_separated_string() {
        let s: ServerTlsSettings = toml::from_str("allowed_client_names = \"orchestrator, ekyc-orchestrator\"").expect("parses");
        assert_eq!(s.allowed_client_names, ["orchestrator", "ekyc-orchestrator"]);
        let s: ServerTlsSettings = toml::from_str("allowed_client_names = [\"orchestrator\"]").expect("parses");
        assert_eq!(s.allowed_client_names, ["orchestrator"]);
    }
}
