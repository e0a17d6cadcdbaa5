//! The orchestrator's clients of liveness, document and facematch. Every call has a
//! deadline (sent as `grpc-timeout` and enforced here, including time spent waiting for a
//! concurrency slot), only idempotent calls are retried (on UNAVAILABLE or
//! RESOURCE_EXHAUSTED, with backoff, within the same deadline), each backend has its own
//! concurrency limit, and the W3C trace context of the current span travels in the metadata.
//! Each backend's channel is balanced over all its replicas, found by resolving the
//! endpoint's host again and again and checking each address's health ([`crate::discovery`]);
//! connections are made in the background and remade by themselves: a backend that is down
//! when the orchestrator starts is simply unavailable until it comes up. Every call's
//! latency and outcome go to `ekyc_backend_call_seconds{backend,method,outcome}`. `https://` endpoints speak
//! TLS verified against `backends.<name>.tls.ca_file`, presenting this orchestrator's client
//! certificate when one is configured (the backends' mutual TLS).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ekyc_proto::v1::document_client::DocumentClient;
use ekyc_proto::v1::face_match_client::FaceMatchClient;
use ekyc_proto::v1::liveness_client::LivenessClient;
use ekyc_proto::v1::{
    Challenge, CheckFrameRequest, CheckFrameResponse, CompareRequest, CompareResponse, CreateChallengeRequest, ExtractPortraitRequest,
    ExtractPortraitResponse, VerifyChallengeRequest, VerifyChallengeResponse,
};
use tonic::Code;
use tonic::codegen::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tower::limit::ConcurrencyLimit;
use tracing::Instrument;

use crate::config::{BackendConfig, Backends as BackendsConfig};
use crate::discovery::{self, Resolver, Target};
use crate::error::OrchestratorError;

type Interceptor = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;
type Svc = InterceptedService<ConcurrencyLimit<Channel>, Interceptor>;

/// Adds the current span's trace context to an outgoing request.
fn trace_context(req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    ekyc_runtime::trace::inject_trace_context(req)
}

/// How a backend call failed.
#[derive(Debug, Clone)]
pub enum BackendError {
    /// The backend answered with this status (after any retries).
    Status { backend: &'static str, status: tonic::Status },
    /// No answer within the deadline.
    Timeout { backend: &'static str, ms: u64 },
}

impl BackendError {
    /// True when the backend could not be asked (down, overloaded, too slow), as opposed to
    /// an answer about the request itself.
    pub fn is_unavailable(&self) -> bool {
        match self {
            BackendError::Timeout { .. } => true,
            BackendError::Status { status, .. } => {
                !matches!(status.code(), Code::InvalidArgument | Code::FailedPrecondition | Code::NotFound | Code::OutOfRange)
            }
        }
    }

    /// The reason code naming an unavailable backend.
    pub fn reason_code(&self) -> ekyc_proto::v1::ReasonCode {
        match self {
            BackendError::Timeout { .. } => ekyc_proto::v1::ReasonCode::BackendTimeout,
            BackendError::Status { status, .. } if status.code() == Code::DeadlineExceeded => ekyc_proto::v1::ReasonCode::BackendTimeout,
            BackendError::Status { .. } => ekyc_proto::v1::ReasonCode::BackendUnavailable,
        }
    }

    /// One line for the public caller: code name, backend, the status code and a reference
    /// to the server's log line, which holds the backend's own message (it may name
    /// internals: addresses, stores, files).
    pub fn describe(&self) -> String {
        match self {
            BackendError::Timeout { backend, ms } => format!("BACKEND_TIMEOUT: {backend} did not answer within {ms} ms"),
            BackendError::Status { backend, status } => {
                let reference = crate::error::correlation_id();
                tracing::warn!(reference = %reference, backend, code = ?status.code(), message = status.message(), "backend call failed");
                format!("{}: {backend}: {:?} (ref {reference})", self.reason_code().name(), status.code())
            }
        }
    }
}

/// A backend's message about the caller's own input, passed on only when it is one of ours:
/// it starts with a reason code (`IMAGE_CORRUPT: frame: ...`) and is one short line.
pub fn input_message(status: &tonic::Status) -> Option<String> {
    let m = status.message();
    let code = m.split(':').next()?;
    (m.len() <= 512 && !m.contains('\n') && ekyc_proto::v1::ReasonCode::from_name(code).is_some()).then(|| m.to_string())
}

impl From<BackendError> for OrchestratorError {
    fn from(e: BackendError) -> Self {
        match &e {
            BackendError::Status { status, .. } if status.code() == Code::InvalidArgument => {
                OrchestratorError::InvalidArgument(input_message(status).unwrap_or_else(|| e.describe()))
            }
            BackendError::Status { status, .. } if status.code() == Code::ResourceExhausted => OrchestratorError::Busy(e.describe()),
            _ => OrchestratorError::Unavailable(e.describe()),
        }
    }
}

#[derive(Debug, Clone)]
struct Backend<C> {
    name: &'static str,
    client: C,
    timeout: Duration,
    retries: u32,
}

/// Clients of the three backends.
#[derive(Debug, Clone)]
pub struct Backends {
    liveness: Backend<LivenessClient<Svc>>,
    document: Backend<DocumentClient<Svc>>,
    facematch: Backend<FaceMatchClient<Svc>>,
}

fn channel(name: &'static str, cfg: &BackendConfig, resolver: &Resolver) -> Result<Svc, OrchestratorError> {
    let bad = |e: String| OrchestratorError::Config(format!("backends.{name}.endpoint {:?}: {e}", cfg.endpoint));
    let uri: http::Uri = cfg.endpoint.parse().map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return Err(bad("expected http://HOST:PORT or https://HOST:PORT".into()));
    };
    let scheme = scheme.to_string();
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
    // https:// with the configured CA (and client certificate: mutual TLS), verifying the
    // endpoint's host name (not the replica's address) unless `tls.server_name` says another.
    let tls = cfg.tls.load().map_err(|e| OrchestratorError::Config(format!("backends.{name}.tls: {e}")))?;
    let tls = tls.map(|t| if cfg.tls.server_name.is_none() { t.domain_name(host.clone()) } else { t });
    let (connect_timeout, origin) = (Duration::from_millis(cfg.connect_timeout_ms), uri.clone());
    // Every replica is reached at its address, with the same TLS and HTTP/2 settings.
    let endpoint = Arc::new(move |addr: SocketAddr| {
        let mut e = Endpoint::from_shared(format!("{scheme}://{addr}")).expect("a socket address makes a valid URI");
        if let Some(tls) = &tls {
            e = e.tls_config(tls.clone()).expect("the TLS settings were loaded");
        }
        e.origin(origin.clone())
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10))
    });
    // Fail at start on TLS settings tonic refuses, not in the background task.
    if let Some(tls) = cfg.tls.load().map_err(|e| OrchestratorError::Config(format!("backends.{name}.tls: {e}")))? {
        Endpoint::from_static("https://127.0.0.1")
            .tls_config(tls)
            .map_err(|e| OrchestratorError::Config(format!("backends.{name}.tls: {e}")))?;
    }
    let target = Target {
        backend: name,
        health_name: health_name(name),
        host,
        port,
        endpoint,
        interval: Duration::from_millis(cfg.discovery_interval_ms),
        check_timeout: Duration::from_millis(cfg.connect_timeout_ms.max(200)),
    };
    let limited = ConcurrencyLimit::new(discovery::balanced(target, Arc::clone(resolver)), cfg.max_concurrency);
    Ok(InterceptedService::new(limited, trace_context as Interceptor))
}

/// The gRPC service a backend serves, whose health decides whether a replica gets calls.
fn health_name(backend: &str) -> &'static str {
    match backend {
        "liveness" => ekyc_runtime::ServiceKind::Liveness.grpc_name(),
        "document" => ekyc_runtime::ServiceKind::Document.grpc_name(),
        _ => ekyc_runtime::ServiceKind::Facematch.grpc_name(),
    }
}

impl Backends {
    /// Clients for the configured endpoints, each balanced over the addresses its host
    /// resolves to in DNS ([`crate::discovery`]); connections are made in the background.
    /// Needs a Tokio runtime.
    pub fn new(cfg: &BackendsConfig, max_message_bytes: usize) -> Result<Backends, OrchestratorError> {
        Self::with_resolver(cfg, max_message_bytes, discovery::dns())
    }

    /// [`Backends::new`] with another resolver of the endpoints' hosts.
    pub fn with_resolver(cfg: &BackendsConfig, max_message_bytes: usize, resolver: Resolver) -> Result<Backends, OrchestratorError> {
        let backend = |name: &'static str, c: &BackendConfig| -> Result<(Svc, Duration, u32), OrchestratorError> {
            Ok((channel(name, c, &resolver)?, Duration::from_millis(c.timeout_ms), c.retries))
        };
        let (l, lt, lr) = backend("liveness", &cfg.liveness)?;
        let (d, dt, dr) = backend("document", &cfg.document)?;
        let (f, ft, fr) = backend("facematch", &cfg.facematch)?;
        Ok(Backends {
            liveness: Backend {
                name: "liveness",
                client: LivenessClient::new(l).max_decoding_message_size(max_message_bytes).max_encoding_message_size(max_message_bytes),
                timeout: lt,
                retries: lr,
            },
            document: Backend {
                name: "document",
                client: DocumentClient::new(d).max_decoding_message_size(max_message_bytes).max_encoding_message_size(max_message_bytes),
                timeout: dt,
                retries: dr,
            },
            facematch: Backend {
                name: "facematch",
                client: FaceMatchClient::new(f).max_decoding_message_size(max_message_bytes).max_encoding_message_size(max_message_bytes),
                timeout: ft,
                retries: fr,
            },
        })
    }

    pub async fn create_challenge(&self, req: CreateChallengeRequest) -> Result<Challenge, BackendError> {
        // Not idempotent in the strict sense, but a retried create only leaves an unused
        // challenge behind to expire.
        call(&self.liveness, true, "CreateChallenge", req, |mut c, r| async move { c.create_challenge(r).await }).await
    }

    pub async fn check_frame(&self, req: CheckFrameRequest) -> Result<CheckFrameResponse, BackendError> {
        call(&self.liveness, true, "CheckFrame", req, |mut c, r| async move { c.check_frame(r).await }).await
    }

    /// Consumes the challenge: never retried.
    pub async fn verify_challenge(&self, req: VerifyChallengeRequest) -> Result<VerifyChallengeResponse, BackendError> {
        call(&self.liveness, false, "VerifyChallenge", req, |mut c, r| async move { c.verify_challenge(r).await }).await
    }

    pub async fn extract_portrait(&self, req: ExtractPortraitRequest) -> Result<ExtractPortraitResponse, BackendError> {
        call(&self.document, true, "ExtractPortrait", req, |mut c, r| async move { c.extract_portrait(r).await }).await
    }

    pub async fn compare(&self, req: CompareRequest) -> Result<CompareResponse, BackendError> {
        call(&self.facematch, true, "Compare", req, |mut c, r| async move { c.compare(r).await }).await
    }
}

async fn call<C, Req, Resp, F, Fut>(b: &Backend<C>, idempotent: bool, method: &'static str, req: Req, f: F) -> Result<Resp, BackendError>
where
    C: Clone,
    Req: Clone,
    F: Fn(C, tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
{
    let span = tracing::info_span!("backend call", backend = b.name, method, attempts = tracing::field::Empty);
    let started = Instant::now();
    let result = async {
        let deadline = Instant::now() + b.timeout;
        let timeout = BackendError::Timeout { backend: b.name, ms: b.timeout.as_millis() as u64 };
        let mut attempt = 0u32;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(timeout);
            }
            let mut r = tonic::Request::new(req.clone());
            r.set_timeout(remaining);
            attempt += 1;
            tracing::Span::current().record("attempts", attempt);
            match tokio::time::timeout(remaining, f(b.client.clone(), r)).await {
                Err(_) => return Err(timeout),
                Ok(Ok(resp)) => return Ok(resp.into_inner()),
                Ok(Err(status)) => {
                    let retry = idempotent && attempt <= b.retries && matches!(status.code(), Code::Unavailable | Code::ResourceExhausted);
                    if !retry {
                        // The deadline ran out in the transport (tonic reports its own
                        // grpc-timeout as CANCELLED) or at the server.
                        let spent = deadline.saturating_duration_since(Instant::now()) < Duration::from_millis(5);
                        if status.code() == Code::DeadlineExceeded || (status.code() == Code::Cancelled && spent) {
                            return Err(timeout);
                        }
                        return Err(BackendError::Status { backend: b.name, status });
                    }
                    tracing::debug!(backend = b.name, method, code = ?status.code(), attempt, "retrying");
                    let backoff = Duration::from_millis(50u64 << attempt.min(5));
                    tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now()))).await;
                }
            }
        }
    }
    .instrument(span)
    .await;
    let outcome = match &result {
        Ok(_) => "OK",
        Err(BackendError::Timeout { .. }) => "TIMEOUT",
        Err(BackendError::Status { status, .. }) => ekyc_runtime::admission::code_name(status.code()),
    };
    metrics::histogram!("ekyc_backend_call_seconds", "backend" => b.name, "method" => method, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    result
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ekyc_proto::v1::document_server::{Document, DocumentServer};
    use ekyc_runtime::serve::{Engine, Listener, serve_api};
    use ekyc_runtime::tls::{ClientTlsSettings, ServerTlsSettings};
    use ekyc_testkit::tls::TlsPki;

    use super::*;

    #[derive(Debug, Clone)]
    struct Doc;

    #[tonic::async_trait]
    impl Document for Doc {
        async fn extract_portrait(
            &self,
            _: tonic::Request<ExtractPortraitRequest>,
        ) -> Result<tonic::Response<ExtractPortraitResponse>, tonic::Status> {
            Ok(tonic::Response::new(ExtractPortraitResponse::default()))
        }
    }

    /// The orchestrator's own clients, configured as in the cluster (https://, CA, client
    /// certificate), against a backend with mutual TLS; without the client certificate the
    /// same backend is unavailable to them.
    #[tokio::test]
    async fn backends_call_a_mutual_tls_backend_with_the_client_certificate() {
        let pki = TlsPki::new("ekyc test services CA");
        let server = pki.server("document", &["127.0.0.1"]);
        let client = pki.client("orchestrator", "orchestrator");
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let addr = tcp.local_addr().expect("addr");
        let tls = ServerTlsSettings {
            cert_file: Some(server.cert_file.clone()),
            key_file: Some(server.key_file.clone()),
            client_ca_file: Some(pki.ca_file().to_path_buf()),
            allowed_client_names: vec!["orchestrator".into()],
        };
        let listener = Listener::new(tcp, tls.load().expect("loads"), None);
        let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let ready = Engine::<(), fn() -> Result<(), String>>::Ready(Arc::new(()));
            let shutdown = async move {
                let _ = rx.await;
            };
            serve_api(ekyc_runtime::ServiceKind::Document, Arc::default(), ready, DocumentServer::new(Doc), 4, listener, shutdown)
                .await
                .expect("serves")
        });

        let mut cfg = BackendsConfig::default();
        cfg.document.endpoint = format!("https://{addr}");
        cfg.document.timeout_ms = 3000;
        cfg.document.tls = ClientTlsSettings {
            ca_file: Some(pki.ca_file().to_path_buf()),
            cert_file: Some(client.cert_file.clone()),
            key_file: Some(client.key_file.clone()),
            server_name: None,
        };
        let backends = Backends::new(&cfg, 1 << 20).expect("clients");
        backends.extract_portrait(ExtractPortraitRequest::default()).await.expect("served over mutual TLS");

        cfg.document.tls.cert_file = None;
        cfg.document.tls.key_file = None;
        cfg.document.retries = 0;
        let anonymous = Backends::new(&cfg, 1 << 20).expect("clients");
        let e = anonymous.extract_portrait(ExtractPortraitRequest::default()).await.expect_err("no client certificate");
        assert!(e.is_unavailable(), "{e:?}");
    }

    /// A document backend that counts the calls it answers.
    #[derive(Debug, Clone)]
    struct Counting(Arc<std::sync::atomic::AtomicUsize>);

    #[tonic::async_trait]
    impl Document for Counting {
        async fn extract_portrait(
            &self,
            _: tonic::Request<ExtractPortraitRequest>,
        ) -> Result<tonic::Response<ExtractPortraitResponse>, tonic::Status> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(tonic::Response::new(ExtractPortraitResponse::default()))
        }
    }

    /// Serves a counting document backend on `tcp` until the returned sender is dropped.
    fn replica(tcp: tokio::net::TcpListener) -> (Arc<std::sync::atomic::AtomicUsize>, tokio::sync::oneshot::Sender<()>) {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let api = DocumentServer::new(Counting(Arc::clone(&calls)));
        tokio::spawn(async move {
            let ready = Engine::<(), fn() -> Result<(), String>>::Ready(Arc::new(()));
            let shutdown = async move {
                let _ = rx.await;
            };
            serve_api(ekyc_runtime::ServiceKind::Document, Arc::default(), ready, api, 64, Listener::from(tcp), shutdown)
                .await
                .expect("serves")
        });
        (calls, stop)
    }

    /// Two replicas behind one name, as a headless Service's DNS name is: 127.0.0.1 and
    /// 127.0.0.2 on the same port, over real gRPC. Calls from one client reach both; a
    /// replica that joins later gets calls; one that dies leaves the balancer within seconds.
    #[tokio::test]
    async fn calls_spread_over_the_replicas_a_name_resolves_to() {
        let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let port = first.local_addr().expect("addr").port();
        let second = tokio::net::TcpListener::bind(("127.0.0.2", port)).await.expect("127.0.0.2 on the same port");
        let (a, b) = (first.local_addr().expect("addr"), second.local_addr().expect("addr"));
        let (calls_a, _stop_a) = replica(first);
        let (calls_b, stop_b) = replica(second);
        // The name resolves to what the table holds now, like DNS of a headless Service.
        let table = Arc::new(std::sync::Mutex::new(vec![a]));
        let lookup = Arc::clone(&table);
        let resolver: Resolver = Arc::new(move |host: String, p: u16| {
            let addrs = lookup.lock().expect("table").clone();
            Box::pin(async move {
                assert_eq!((host.as_str(), p), ("document.ekyc.svc", port));
                Ok(addrs)
            })
        });
        let mut cfg = BackendsConfig::default();
        cfg.document.endpoint = format!("http://document.ekyc.svc:{port}");
        cfg.document.discovery_interval_ms = 200;
        cfg.document.timeout_ms = 3000;
        // No retries: a call sent to a dead replica fails, so every success below counts.
        cfg.document.retries = 0;
        let backends = Backends::with_resolver(&cfg, 1 << 20, resolver).expect("clients");
        let count = |c: &Arc<std::sync::atomic::AtomicUsize>| c.load(std::sync::atomic::Ordering::SeqCst);
        let calls = |n: usize| {
            let backends = backends.clone();
            async move {
                for _ in 0..n {
                    backends.extract_portrait(ExtractPortraitRequest::default()).await.expect("served");
                }
            }
        };

        calls(20).await;
        assert_eq!((count(&calls_a), count(&calls_b)), (20, 0), "one replica resolved");

        // Scale-out: the second replica joins at the next rounds.
        table.lock().expect("table").push(b);
        tokio::time::sleep(Duration::from_millis(600)).await;
        calls(100).await;
        let (on_a, on_b) = (count(&calls_a) - 20, count(&calls_b));
        assert_eq!(on_a + on_b, 100);
        // Each replica's share is Binomial(100, 1/2) when calls are spread evenly.
        assert!(on_a >= 25 && on_b >= 25, "calls not spread: {on_a} on {a}, {on_b} on {b}");

        // The second replica dies (its address still resolves, as in DNS until the readiness
        // probe fails): its failed health check takes it out of the balancer.
        drop(stop_b);
        tokio::time::sleep(Duration::from_millis(800)).await;
        let before = count(&calls_a);
        let started = Instant::now();
        for i in 0..40 {
            backends
                .extract_portrait(ExtractPortraitRequest::default())
                .await
                .unwrap_or_else(|e| panic!("call {i} after the replica died: {e:?}"));
        }
        assert_eq!(count(&calls_a) - before, 40, "the survivor answered every call");
        assert_eq!(count(&calls_b), on_b, "nothing reached the dead replica");
        assert!(started.elapsed() < Duration::from_secs(3), "no call waited for the dead replica");
    }
}
