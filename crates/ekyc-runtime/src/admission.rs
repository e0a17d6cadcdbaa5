//! Admission control as a tower layer: a limit on requests in flight for one gRPC service,
//! shared by all its connections. A request that finds no free slot is answered
//! RESOURCE_EXHAUSTED at once, so an overloaded service sheds load instead of queueing
//! without bound, and the requests it admits keep a bounded latency. Wrap only the API
//! service, so health checks and reflection are never refused.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::Service;

/// Wraps `inner` so that at most `limit` of its requests run at once.
#[derive(Debug, Clone)]
pub struct Admission<S> {
    inner: S,
    permits: Arc<Semaphore>,
    limit: usize,
}

impl<S> Admission<S> {
    pub fn new(inner: S, limit: usize) -> Self {
        let limit = limit.max(1);
        Self { inner, permits: Arc::new(Semaphore::new(limit)), limit }
    }

    /// Requests running now.
    pub fn in_flight(&self) -> usize {
        self.limit - self.permits.available_permits()
    }
}

impl<S: NamedService> NamedService for Admission<S> {
    const NAME: &'static str = S::NAME;
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
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            metrics::counter!("ekyc_requests_total", "service" => S::NAME, "method" => method, "code" => "RESOURCE_EXHAUSTED").increment(1);
            let status = tonic::Status::resource_exhausted(format!(
                "{} is at its limit of {} requests in flight; retry after a short backoff",
                S::NAME,
                self.limit
            ));
            return Box::pin(std::future::ready(Ok(status.into_http())));
        };
        // The clone that was polled ready serves this call; keep a fresh clone for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(req).await;
            drop(permit);
            response
        })
    }
}
