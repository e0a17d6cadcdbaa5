//! One trace across the services: W3C trace context (`traceparent`, `tracestate`) carried
//! in gRPC metadata, a span per RPC on both sides, and the ids of a span for tests and for
//! answers that quote a trace id.
//!
//! **Server side.** [`ServerTraceLayer`] is applied to every server by [`crate::serve::run`]
//! (so by `serve_api`, `serve_health_only` and anything served from [`crate::serve::scaffold`]'s
//! routes). Per RPC it extracts the caller's context from the HTTP/2 headers and runs the
//! call inside a span named after the gRPC path (`ekyc.v1.FaceMatch/Embed`, kind server)
//! whose parent is the caller's span, or a new root trace when the request carries no valid
//! `traceparent`. Its attributes: `rpc.system = "grpc"`, `rpc.service`, `rpc.method`,
//! `ekyc.service` (the serving [`ServiceKind`]'s name, where known) and, once the
//! response ends, `rpc.grpc.status_code`; server errors (UNKNOWN, DEADLINE_EXCEEDED,
//! UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS) set the span's status to error. Handler
//! spans, and work on other threads that captured `tracing::Span::current()`, nest below it.
//! Health checks that carry no `traceparent` (Kubernetes probes, every few seconds) make
//! no span.
//!
//! **Client side.** Two ways to send the current context with outgoing calls:
//!
//! - [`ClientTraceLayer`], a tower layer for `tonic::transport::Channel` that also makes a
//!   client span per call (kind client, same name and attributes), so a call that times out
//!   or never reaches the server still shows in the trace. Put it **outermost**, above
//!   timeouts, concurrency limits and buffers: it must run in the caller's task, where the
//!   caller's span is current.
//!
//!   ```no_run
//!   # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//!   use std::time::Duration;
//!   use ekyc_proto::v1::liveness_client::LivenessClient;
//!   use ekyc_runtime::trace::ClientTraceLayer;
//!
//!   let channel = tonic::transport::Channel::from_static("http://liveness:50052").connect_lazy();
//!   let service = tower::ServiceBuilder::new()
//!       .layer(ClientTraceLayer::new()) // outermost: sees the caller's span
//!       .timeout(Duration::from_secs(5))
//!       .concurrency_limit(64)
//!       .service(channel);
//!   let mut liveness = LivenessClient::new(service);
//!   # let _ = &mut liveness;
//!   # Ok(()) }
//!   ```
//!
//! - [`inject_trace_context`], a tonic interceptor, when no client span is wanted:
//!   `LivenessClient::with_interceptor(channel, ekyc_runtime::trace::inject_trace_context)`
//!   (the channel may be wrapped in tower layers first). The server span's parent is then
//!   the caller's current span.
//!
//! Both use the global propagator that [`crate::telemetry::init`] sets (W3C trace context);
//! before `init` nothing is injected or extracted.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{Status as OtelStatus, TraceContextExt};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::settings::ServiceKind;

/// The trace and span id of a span, lower-case hex (32 and 16 digits), as in `traceparent`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceIds {
    pub trace_id: String,
    pub span_id: String,
}

/// The ids `span` has in its trace; `None` when the span is disabled or no OpenTelemetry
/// layer is installed. Starts the span if it had not started yet.
pub fn ids(span: &Span) -> Option<TraceIds> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| TraceIds { trace_id: sc.trace_id().to_string(), span_id: sc.span_id().to_string() })
}

/// The trace id of the current span, e.g. to quote in an answer or a log line.
pub fn current_trace_id() -> Option<String> {
    ids(&Span::current()).map(|i| i.trace_id)
}

/// Tonic interceptor that adds the current span's trace context to the request metadata:
/// `LivenessClient::with_interceptor(channel, ekyc_runtime::trace::inject_trace_context)`.
/// It never fails; without a current span (or before [`crate::telemetry::init`]) it adds
/// nothing and the server starts a new trace.
pub fn inject_trace_context(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let cx = Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut MetadataInjector(request.metadata_mut())));
    Ok(request)
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (tonic::metadata::MetadataKey::from_bytes(key.as_bytes()), value.parse()) {
            self.0.insert(k, v);
        }
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(key.as_bytes()), http::HeaderValue::from_str(&value)) {
            self.0.insert(k, v);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Which end of a call a span stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Server,
    Client,
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`); anything else keeps the whole path as
/// the service and an empty method.
fn split_path(path: &str) -> (&str, &str) {
    let p = path.strip_prefix('/').unwrap_or(path);
    p.rsplit_once('/').unwrap_or((p, ""))
}

fn rpc_span(role: Role, path: &str, service: Option<ServiceKind>) -> Span {
    let (rpc_service, rpc_method) = split_path(path);
    let name = if rpc_method.is_empty() { rpc_service.to_string() } else { format!("{rpc_service}/{rpc_method}") };
    // The RPC attributes go to OpenTelemetry only, so that log lines inside the call show
    // the span's name and not five fields of it.
    let span = match role {
        Role::Server => tracing::info_span!(
            parent: None, "grpc.server", otel.name = %name, otel.kind = "server", rpc.grpc.status_code = Empty
        ),
        Role::Client => tracing::info_span!(
            "grpc.client", otel.name = %name, otel.kind = "client", rpc.grpc.status_code = Empty
        ),
    };
    span.set_attribute("rpc.system", "grpc");
    span.set_attribute("rpc.service", rpc_service.to_string());
    span.set_attribute("rpc.method", rpc_method.to_string());
    if let Some(kind) = service {
        span.set_attribute("ekyc.service", kind.name());
    }
    span
}

/// Records a gRPC status on `span`: the code always, the span status as error where the
/// OpenTelemetry conventions say so for this end of the call.
fn record_status(span: &Span, role: Role, code: i32) {
    span.record("rpc.grpc.status_code", i64::from(code));
    let error = match role {
        Role::Client => code != 0,
        // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
        Role::Server => matches!(code, 2 | 4 | 12 | 13 | 14 | 15),
    };
    if error {
        span.set_status(OtelStatus::error(format!("gRPC status {code}")));
    } else if code == 0 {
        span.set_status(OtelStatus::Ok);
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.trim().parse().ok()
}

/// Tower layer for servers: a span per RPC whose parent is the caller's trace context.
/// [`crate::serve::run`] applies it; add it yourself only to a `tonic::transport::Server`
/// built without that function: `Server::builder().layer(ServerTraceLayer::new())`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerTraceLayer {
    service: Option<ServiceKind>,
}

impl ServerTraceLayer {
    pub fn new() -> Self {
        Self { service: None }
    }

    /// Also names the serving service in each span (`ekyc.service`), which tells the
    /// services apart when several share one process and so one `service.name`.
    pub fn for_service(kind: ServiceKind) -> Self {
        Self { service: Some(kind) }
    }
}

impl<S> tower::Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> ServerTrace<S> {
        ServerTrace { inner, service: self.service }
    }
}

/// The service [`ServerTraceLayer`] makes.
#[derive(Debug, Clone)]
pub struct ServerTrace<S> {
    inner: S,
    service: Option<ServiceKind>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for ServerTrace<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Error: std::fmt::Display,
    RB: http_body::Body,
{
    type Response = http::Response<TracedBody<RB>>;
    type Error = S::Error;
    type Future = TracedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(request.headers())));
        let remote = parent.span().span_context().is_valid();
        let path = request.uri().path();
        let span = if !remote && path.starts_with("/grpc.health.v1.Health/") {
            None
        } else {
            let span = rpc_span(Role::Server, path, self.service);
            if remote {
                // Before the span is first entered, while its parent can still be set.
                let _ = span.set_parent(parent);
            }
            Some(span)
        };
        let inner = match &span {
            Some(s) => s.in_scope(|| self.inner.call(request)),
            None => self.inner.call(request),
        };
        TracedFuture { inner: Box::pin(inner), span, role: Role::Server }
    }
}

/// Tower layer for clients (`tonic::transport::Channel`, possibly already wrapped): a
/// client span per call, child of the caller's current span, whose context goes to the
/// server in `traceparent`/`tracestate`. Apply it outermost; see the [module](self) docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientTraceLayer;

impl ClientTraceLayer {
    pub fn new() -> Self {
        Self
    }
}

impl<S> tower::Layer<S> for ClientTraceLayer {
    type Service = ClientTrace<S>;

    fn layer(&self, inner: S) -> ClientTrace<S> {
        ClientTrace { inner }
    }
}

/// The service [`ClientTraceLayer`] makes.
#[derive(Debug, Clone)]
pub struct ClientTrace<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for ClientTrace<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Error: std::fmt::Display,
    RB: http_body::Body,
{
    type Response = http::Response<TracedBody<RB>>;
    type Error = S::Error;
    type Future = TracedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let span = rpc_span(Role::Client, request.uri().path(), None);
        let cx = span.context();
        opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut HeaderInjector(request.headers_mut())));
        let inner = span.in_scope(|| self.inner.call(request));
        TracedFuture { inner: Box::pin(inner), span: Some(span), role: Role::Client }
    }
}

/// Response future of [`ServerTrace`] and [`ClientTrace`]: polls the call inside its span
/// and hands the span on to the response body, which ends it.
pub struct TracedFuture<F> {
    inner: Pin<Box<F>>,
    span: Option<Span>,
    role: Role,
}

impl<F> std::fmt::Debug for TracedFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedFuture").field("span", &self.span).finish_non_exhaustive()
    }
}

impl<F, RB, E> Future for TracedFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    E: std::fmt::Display,
    RB: http_body::Body,
{
    type Output = Result<http::Response<TracedBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let polled = match &this.span {
            Some(span) => span.in_scope(|| this.inner.as_mut().poll(cx)),
            None => this.inner.as_mut().poll(cx),
        };
        let result = std::task::ready!(polled);
        let span = this.span.take();
        Poll::Ready(match result {
            Ok(response) => {
                let role = this.role;
                // A trailers-only response (every error status from tonic) has its status
                // in the headers; otherwise it comes in the trailers.
                let status = grpc_status(response.headers());
                if let (Some(span), Some(code)) = (&span, status) {
                    record_status(span, role, code);
                }
                let status_seen = status.is_some();
                Ok(response.map(|body| TracedBody { inner: Box::pin(body), span, role, status_seen }))
            }
            Err(e) => {
                if let Some(span) = &span {
                    span.set_status(OtelStatus::error(e.to_string()));
                }
                Err(e)
            }
        })
    }
}

/// A response body that keeps its call's span open until the body ends (so a span covers
/// a streamed response too), polls the body inside the span, and records the gRPC status
/// from the trailers.
pub struct TracedBody<B> {
    inner: Pin<Box<B>>,
    span: Option<Span>,
    role: Role,
    status_seen: bool,
}

impl<B> std::fmt::Debug for TracedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedBody").field("span", &self.span).finish_non_exhaustive()
    }
}

impl<B: http_body::Body> http_body::Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let polled = match &this.span {
            Some(span) => span.in_scope(|| this.inner.as_mut().poll_frame(cx)),
            None => this.inner.as_mut().poll_frame(cx),
        };
        let frame = std::task::ready!(polled);
        match &frame {
            Some(Ok(f)) => {
                if let Some(trailers) = f.trailers_ref() {
                    if let (Some(span), Some(code)) = (&this.span, grpc_status(trailers)) {
                        record_status(span, this.role, code);
                        this.status_seen = true;
                    }
                    // The trailers end a gRPC response: end the span before they are sent,
                    // so it is finished by the time the other end sees the response.
                    this.span = None;
                }
            }
            Some(Err(_)) => {
                if let Some(span) = this.span.take() {
                    span.set_status(OtelStatus::error("the response body failed"));
                }
            }
            None => {
                if let Some(span) = this.span.take()
                    && !this.status_seen
                    && this.role == Role::Client
                {
                    span.set_status(OtelStatus::error("the response ended without a gRPC status"));
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_paths_split_into_service_and_method() {
        assert_eq!(split_path("/ekyc.v1.FaceMatch/Embed"), ("ekyc.v1.FaceMatch", "Embed"));
        assert_eq!(split_path("/grpc.health.v1.Health/Check"), ("grpc.health.v1.Health", "Check"));
        assert_eq!(split_path("/odd"), ("odd", ""));
    }

    #[test]
    fn status_comes_from_the_grpc_status_header() {
        let mut h = http::HeaderMap::new();
        assert_eq!(grpc_status(&h), None);
        h.insert("grpc-status", http::HeaderValue::from_static("14"));
        assert_eq!(grpc_status(&h), Some(14));
    }
}
