//! TLS between the services and to Redis, over real loopback connections with certificates
//! from the test PKI (`ekyc_testkit::tls`): a backend with mutual TLS serves the
//! orchestrator's client certificate and refuses a client without one, one from another CA
//! and one naming another client, before its handler runs; its plain health port stays
//! probe-able; a TLS public port refuses plaintext; Redis with `requirepass` works with the
//! password file and fails without it, the error naming neither URL nor password; and
//! `rediss://` with a private CA.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ekyc_proto::v1 as pb;
use ekyc_proto::v1::document_client::DocumentClient;
use ekyc_proto::v1::document_server::{Document, DocumentServer};
use ekyc_runtime::ServiceKind;
use ekyc_runtime::redis::{Redis, RedisSettings};
use ekyc_runtime::serve::{Engine, Listener, serve_api};
use ekyc_runtime::tls::{ClientTlsSettings, ServerTlsSettings};
use ekyc_testkit::redis_server::{RedisServer, free_port};
use ekyc_testkit::tls::{CertFiles, TlsPki};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// A Document service that counts the calls reaching its handler.
#[derive(Debug, Clone, Default)]
struct Counting(Arc<AtomicUsize>);

#[tonic::async_trait]
impl Document for Counting {
    async fn extract_portrait(&self, _: Request<pb::ExtractPortraitRequest>) -> Result<Response<pb::ExtractPortraitResponse>, Status> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(pb::ExtractPortraitResponse::default()))
    }
}

struct Served {
    addr: SocketAddr,
    health: SocketAddr,
    calls: Arc<AtomicUsize>,
    _stop: oneshot::Sender<()>,
}

/// Serves a counting Document API through `serve_api` with `tls`, health alone on a plain port.
async fn serve(tls: &ServerTlsSettings) -> Served {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("binds a free port");
    let probes = TcpListener::bind("127.0.0.1:0").await.expect("binds a free port");
    let (addr, health) = (tcp.local_addr().expect("bound"), probes.local_addr().expect("bound"));
    let listener = Listener::new(tcp, tls.load().expect("TLS material loads"), Some(probes));
    let api = Counting::default();
    let calls = Arc::clone(&api.0);
    let (stop, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let ready = Engine::<(), fn() -> Result<(), String>>::Ready(Arc::new(()));
        let shutdown = async move {
            let _ = rx.await;
        };
        serve_api(ServiceKind::Document, Arc::default(), ready, DocumentServer::new(api), 4, listener, shutdown).await.expect("serves")
    });
    Served { addr, health, calls, _stop: stop }
}

fn client_tls(ca: &std::path::Path, cert: Option<&CertFiles>) -> ClientTlsSettings {
    ClientTlsSettings {
        ca_file: Some(ca.to_path_buf()),
        cert_file: cert.map(|c| c.cert_file.clone()),
        key_file: cert.map(|c| c.key_file.clone()),
        server_name: Some("document".into()),
    }
}

/// One ExtractPortrait call over TLS with `tls`; connection failures count as UNAVAILABLE.
async fn call_tls(addr: SocketAddr, tls: &ClientTlsSettings) -> Result<(), Status> {
    let config = tls.load().expect("client TLS loads").expect("TLS configured");
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .expect("valid uri")
        .tls_config(config)
        .expect("client TLS config")
        .connect_timeout(Duration::from_secs(5));
    let channel = endpoint.connect().await.map_err(|e| Status::unavailable(format!("connect: {e}")))?;
    call(channel).await
}

async fn call(channel: Channel) -> Result<(), Status> {
    let mut req = Request::new(pb::ExtractPortraitRequest::default());
    req.set_timeout(Duration::from_secs(5));
    DocumentClient::new(channel).extract_portrait(req).await.map(|_| ())
}

async fn call_plain(addr: SocketAddr) -> Result<(), Status> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| Status::unavailable(format!("connect: {e}")))?;
    call(channel).await
}

#[tokio::test]
async fn mutual_tls_backend_serves_the_orchestrator_only() {
    let pki = TlsPki::new("ekyc test services CA");
    let other = TlsPki::new("some other CA");
    let server = pki.server("document", &["document", "127.0.0.1"]);
    let orchestrator = pki.client("orchestrator", "orchestrator");
    let intruder = pki.client("intruder", "someone-else");
    let foreign = other.client("foreign", "orchestrator");
    let s = serve(&ServerTlsSettings {
        cert_file: Some(server.cert_file.clone()),
        key_file: Some(server.key_file.clone()),
        client_ca_file: Some(pki.ca_file().to_path_buf()),
        allowed_client_names: vec!["orchestrator".into()],
    })
    .await;

    call_tls(s.addr, &client_tls(pki.ca_file(), Some(&orchestrator))).await.expect("the orchestrator's certificate is served");
    assert_eq!(s.calls.load(Ordering::SeqCst), 1);

    let none = call_tls(s.addr, &client_tls(pki.ca_file(), None)).await.expect_err("no client certificate");
    assert_ne!(none.code(), Code::Ok);
    let from_other_ca = call_tls(s.addr, &client_tls(pki.ca_file(), Some(&foreign))).await.expect_err("a certificate from another CA");
    assert_ne!(from_other_ca.code(), Code::Ok);
    let named_otherwise = call_tls(s.addr, &client_tls(pki.ca_file(), Some(&intruder))).await.expect_err("another client's name");
    assert_eq!(named_otherwise.code(), Code::PermissionDenied, "{named_otherwise:?}");
    let plain = call_plain(s.addr).await.expect_err("plaintext on the TLS port");
    assert_ne!(plain.code(), Code::Ok);
    assert_eq!(s.calls.load(Ordering::SeqCst), 1, "no refused call reached the handler");
    // Failed handshakes do not stop the server.
    call_tls(s.addr, &client_tls(pki.ca_file(), Some(&orchestrator))).await.expect("still serving the orchestrator");
    assert_eq!(s.calls.load(Ordering::SeqCst), 2);

    // Kubelet's gRPC probe: plain gRPC, no certificate, on the health port.
    let channel = Endpoint::from_shared(format!("http://{}", s.health)).expect("valid uri").connect().await.expect("health port");
    let mut health = HealthClient::new(channel);
    for service in ["", "ekyc.v1.Document"] {
        let status = health.check(HealthCheckRequest { service: service.into() }).await.expect("health answers").into_inner().status;
        assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32, "{service:?}");
    }
    // The health port serves health only: the API is not there.
    let channel = Endpoint::from_shared(format!("http://{}", s.health)).expect("valid uri").connect().await.expect("health port");
    let api = call(channel).await.expect_err("no API on the health port");
    assert_eq!(api.code(), Code::Unimplemented);
}

#[tokio::test]
async fn tls_public_port_serves_tls_clients_and_refuses_plaintext() {
    let pki = TlsPki::new("ekyc test public CA");
    let server = pki.server("public", &["document", "127.0.0.1"]);
    let s = serve(&ServerTlsSettings {
        cert_file: Some(server.cert_file.clone()),
        key_file: Some(server.key_file.clone()),
        ..Default::default()
    })
    .await;
    call_tls(s.addr, &client_tls(pki.ca_file(), None)).await.expect("a TLS client without a certificate is served");
    let plain = call_plain(s.addr).await.expect_err("plaintext refused");
    assert_ne!(plain.code(), Code::Ok);
    let untrusted = TlsPki::new("not the server's CA");
    let wrong = call_tls(s.addr, &client_tls(untrusted.ca_file(), None)).await.expect_err("a client that does not trust the server");
    assert_ne!(wrong.code(), Code::Ok);
    assert_eq!(s.calls.load(Ordering::SeqCst), 1);
}

const PASSWORD: &str = "correct-horse-battery-staple-4711";

fn settings(url: String, password_file: Option<PathBuf>, ca_file: Option<PathBuf>) -> RedisSettings {
    RedisSettings { url, password_file, ca_file, timeout: Duration::from_secs(2), store: "session store" }
}

async fn set_get(redis: &Redis) -> Result<String, String> {
    redis.run::<()>(redis::cmd("SET").arg("ekyc:test").arg("v").clone()).await?;
    redis.run::<String>(redis::cmd("GET").arg("ekyc:test").clone()).await
}

#[tokio::test]
async fn redis_auth_works_with_the_password_file_and_fails_without_leaking() {
    let server = RedisServer::start_with(&["--requirepass", PASSWORD]);
    let pki = TlsPki::new("unused");
    let password_file = pki.write("redis-password", &format!("{PASSWORD}\n"));

    let redis = Redis::connect(&settings(server.url(), Some(password_file), None)).expect("client");
    assert_eq!(set_get(&redis).await.expect("authenticated commands work"), "v");
    let debug = format!("{redis:?}");
    assert!(!debug.contains(PASSWORD) && debug.contains("<redacted>"), "{debug}");

    let anonymous = Redis::connect(&settings(server.url(), None, None)).expect("client");
    let err = set_get(&anonymous).await.expect_err("no AUTH: refused");
    assert!(err.starts_with("session store unavailable (ref "), "{err}");
    for secret in [PASSWORD, &server.url(), &server.port().to_string(), "127.0.0.1"] {
        assert!(!err.contains(secret), "the error {err:?} carries {secret:?}");
    }

    let in_url = format!("redis://:{PASSWORD}@127.0.0.1:{}/0", server.port());
    let refused = Redis::connect(&settings(in_url, None, None)).expect_err("a password in the URL is refused");
    assert!(!refused.contains(PASSWORD), "{refused}");
}

#[tokio::test]
async fn rediss_with_a_private_ca() {
    let pki = TlsPki::new("ekyc test redis CA");
    let cert = pki.server("redis", &["127.0.0.1"]);
    let tls_port = free_port();
    let password_file = pki.write("redis-password", PASSWORD);
    let ca = pki.ca_file().to_string_lossy().into_owned();
    let (cert_file, key_file) = (cert.cert_file.to_string_lossy().into_owned(), cert.key_file.to_string_lossy().into_owned());
    let _server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &cert_file,
        "--tls-key-file",
        &key_file,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
        "--requirepass",
        PASSWORD,
    ]);
    let url = format!("rediss://127.0.0.1:{tls_port}/0");
    let redis = Redis::connect(&settings(url.clone(), Some(password_file.clone()), Some(pki.ca_file().to_path_buf()))).expect("client");
    assert_eq!(set_get(&redis).await.expect("TLS with the private CA works"), "v");

    let other = TlsPki::new("not redis's CA");
    let untrusted = Redis::connect(&settings(url, Some(password_file), Some(other.ca_file().to_path_buf()))).expect("client");
    let err = set_get(&untrusted).await.expect_err("a server certificate from another CA is refused");
    assert!(err.starts_with("session store unavailable (ref "), "{err}");
}
