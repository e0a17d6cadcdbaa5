//! Admission control as a tower layer, applied the same way to every API service: first the
//! request's whole body is received, bounded in size (`server.max_message_bytes`) and in
//! time (`server.receive_timeout_ms`); only then is one of the service's in-flight permits
//! taken and the inner service called with the buffered body. So a client that trickles its
//! upload holds a connection stream, never a permit: slow uploads cannot lock a service out.
//!
//! - A body not in by the deadline: DEADLINE_EXCEEDED, message `REQUEST_TIMEOUT: ...`.
//! - A body larger than the limit: RESOURCE_EXHAUSTED, before any of it is decoded.
//! - No free permit once the body is in: RESOURCE_EXHAUSTED, message `OVERLOADED: ...`, at
//!   once, so an overloaded service sheds load instead of queueing without bound.
//!
//! Wrap only the API service, so health checks and reflection are never refused.
//!
//! Metrics, the same for every service: `ekyc_request_duration_seconds{service,method,code}`
//! (a histogram of admitted calls: its `_count` is the requests by method and status) and
//! `ekyc_in_flight{service}` (calls holding a permit) against `ekyc_admission_limit{service}`; refusals here are counted in
//! `ekyc_requests_total` like the services count their own answers.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body as _, Frame};
use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::Service;

/// What the layer bounds besides the permits: how long the body may take to arrive and how
/// large it may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveLimits {
    pub timeout: Duration,
    /// Largest gRPC message; the body may be five bytes longer (the message's frame header).
    pub max_message_bytes: usize,
}

impl Default for ReceiveLimits {
    fn default() -> Self {
        let s = crate::settings::ServerSettings::default();
        Self { timeout: Duration::from_millis(s.receive_timeout_ms), max_message_bytes: s.max_message_bytes }
    }
}

/// Wraps `inner` so that its requests are received in full first and at most `limit` of
/// them run at once.
#[derive(Debug, Clone)]
pub struct Admission<S> {
    inner: S,
    permits: Arc<Semaphore>,
    limit: usize,
    receive: ReceiveLimits,
}

impl<S: NamedService> Admission<S> {
    /// `limit` requests in flight, bodies received under the default [`ReceiveLimits`].
    pub fn new(inner: S, limit: usize) -> Self {
        Self::with_receive(inner, limit, ReceiveLimits::default())
    }

    pub fn with_receive(inner: S, limit: usize, receive: ReceiveLimits) -> Self {
        let limit = limit.max(1);
        metrics::gauge!("ekyc_admission_limit", "service" => S::NAME).set(limit as f64);
        Self { inner, permits: Arc::new(Semaphore::new(limit)), limit, receive }
    }

    /// Requests running now (received and admitted).
    pub fn in_flight(&self) -> usize {
        self.limit - self.permits.available_permits()
    }
}

impl<S: NamedService> NamedService for Admission<S> {
    const NAME: &'static str = S::NAME;
}

/// Why a body was not received.
enum Refused {
    Timeout,
    TooLarge,
    Broken(tonic::Status),
}

/// Reads `body` to its end, keeping at most `max` bytes of data; trailers are kept.
async fn receive(mut body: Body, max: usize) -> Result<(Bytes, Option<http::HeaderMap>), Refused> {
    let mut data = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(Refused::Broken)?;
        match frame.into_data() {
            Ok(chunk) => {
                if data.len() + chunk.len() > max {
                    return Err(Refused::TooLarge);
                }
                data.extend_from_slice(&chunk);
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    Ok((data.freeze(), trailers))
}

/// A body that is already in memory: its data in one frame, then its trailers.
struct Buffered {
    data: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl http_body::Body for Buffered {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

impl<S> Service<http::Request<Body>> for Admission<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible> + NamedService + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let method = req.uri().path().rsplit('/').next().unwrap_or("").to_string();
        // The clone that was polled ready serves this call; keep a fresh clone for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let permits = Arc::clone(&self.permits);
        let (limit, receive_limits) = (self.limit, self.receive);
        Box::pin(async move {
            let refuse = |status: tonic::Status, code: &'static str| {
                metrics::counter!("ekyc_requests_total", "service" => S::NAME, "method" => method.clone(), "code" => code).increment(1);
                Ok(status.into_http())
            };
            let (parts, body) = req.into_parts();
            let max_body = receive_limits.max_message_bytes.saturating_add(5);
            let received = match tokio::time::timeout(receive_limits.timeout, receive(body, max_body)).await {
                Ok(r) => r,
                Err(_) => Err(Refused::Timeout),
            };
            let (data, trailers) = match received {
                Ok(r) => r,
                Err(Refused::Timeout) => {
                    metrics::counter!("ekyc_receive_timeouts_total", "service" => S::NAME).increment(1);
                    return refuse(
                        tonic::Status::deadline_exceeded(format!(
                            "REQUEST_TIMEOUT: the request did not arrive in full within {} ms",
                            receive_limits.timeout.as_millis()
                        )),
                        "DEADLINE_EXCEEDED",
                    );
                }
                Err(Refused::TooLarge) => {
                    return refuse(
                        tonic::Status::resource_exhausted(format!(
                            "the request is larger than the limit of {} bytes",
                            receive_limits.max_message_bytes
                        )),
                        "RESOURCE_EXHAUSTED",
                    );
                }
                Err(Refused::Broken(status)) => {
                    let code = status.code();
                    return refuse(tonic::Status::new(code, format!("receiving the request: {}", status.message())), "CANCELLED");
                }
            };
            let Ok(permit) = permits.try_acquire_owned() else {
                return refuse(
                    tonic::Status::resource_exhausted(format!(
                        "OVERLOADED: {} is at its limit of {limit} requests in flight; retry after a short backoff",
                        S::NAME
                    )),
                    "RESOURCE_EXHAUSTED",
                );
            };
            let req = http::Request::from_parts(parts, Body::new(Buffered { data: Some(data), trailers }));
            let in_flight = InFlight::enter(S::NAME);
            let started = std::time::Instant::now();
            let response = inner.call(req).await;
            drop(in_flight);
            drop(permit);
            // A unary error is answered trailers-only (grpc-status in the headers); a success
            // sends its status in the trailers, after this point.
            let code = response
                .as_ref()
                .ok()
                .and_then(|r| r.headers().get("grpc-status"))
                .and_then(|v| v.to_str().ok())
                .map_or("OK", |v| v.parse::<i32>().map_or("UNKNOWN", |c| code_name(tonic::Code::from_i32(c))));
            metrics::histogram!("ekyc_request_duration_seconds", "service" => S::NAME, "method" => method, "code" => code)
                .record(started.elapsed().as_secs_f64());
            response
        })
    }
}

/// Counts a call in `ekyc_in_flight{service}` until dropped (also when the caller goes away).
struct InFlight(metrics::Gauge);

impl InFlight {
    fn enter(service: &'static str) -> Self {
        let g = metrics::gauge!("ekyc_in_flight", "service" => service);
        g.increment(1.0);
        InFlight(g)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The status code's name as gRPC spells it (`RESOURCE_EXHAUSTED`), for metric labels.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
