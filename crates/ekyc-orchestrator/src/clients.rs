//! The orchestrator's clients of liveness, document and facematch. Every call has a
//! deadline (sent as `grpc-timeout` and enforced here, including time spent waiting for a
//! concurrency slot), only idempotent calls are retried (on UNAVAILABLE or
//! RESOURCE_EXHAUSTED, with backoff, within the same deadline), each backend has its own
//! concurrency limit, and the W3C trace context of the current span travels in the metadata.
//! Channels connect lazily and reconnect by themselves: a backend that is down when the
//! orchestrator starts is simply unavailable until it comes up. `https://` endpoints speak
//! TLS verified against `backends.<name>.tls.ca_file`, presenting this orchestrator's client
//! certificate when one is configured (the backends' mutual TLS).

use std::future::Future;
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

fn channel(name: &str, cfg: &BackendConfig) -> Result<Svc, OrchestratorError> {
    let mut endpoint = Endpoint::from_shared(cfg.endpoint.clone())
        .map_err(|e| OrchestratorError::Config(format!("backends.{name}.endpoint {:?}: {e}", cfg.endpoint)))?;
    // https:// with the configured CA (and client certificate: mutual TLS); http:// plain.
    if let Some(tls) = cfg.tls.load().map_err(|e| OrchestratorError::Config(format!("backends.{name}.tls: {e}")))? {
        endpoint = endpoint.tls_config(tls).map_err(|e| OrchestratorError::Config(format!("backends.{name}.tls: {e}")))?;
    }
    let endpoint = endpoint
        .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10));
    let limited = ConcurrencyLimit::new(endpoint.connect_lazy(), cfg.max_concurrency);
    Ok(InterceptedService::new(limited, trace_context as Interceptor))
}

impl Backends {
    /// Clients for the configured endpoints; nothing is connected yet.
    pub fn new(cfg: &BackendsConfig, max_message_bytes: usize) -> Result<Backends, OrchestratorError> {
        let backend = |name: &'static str, c: &BackendConfig| -> Result<(Svc, Duration, u32), OrchestratorError> {
            Ok((channel(name, c)?, Duration::from_millis(c.timeout_ms), c.retries))
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
    async {
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
    .await
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
}
