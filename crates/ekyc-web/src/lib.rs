//! The verification page's HTTP port (`[web]`, default 8080), served wherever the
//! orchestrator runs:
//!
//! - `GET /`: the page, under a strict Content Security Policy (scripts and styles only from
//!   this port, no inline script, Trusted Types for DOM sinks, no framing);
//! - `GET /assets/<name>.<sha256>.<ext>`: its script and style ([`assets`]);
//! - `POST /ekyc.v1.Orchestrator/<Method>`: the orchestrator's API over gRPC-Web (binary and
//!   text), the same service and the same authentication as on its gRPC port: the page
//!   sends the session token it was handed and never holds an API key. Other origins'
//!   pages may call it only when listed in `web.allowed_origins` (CORS);
//! - `POST /demo/session` (only with `web.demo`): starts a session under a key this process
//!   made at start and never shows, and returns only the session id and token ([`demo`]).
//!
//! The port speaks plain HTTP/1.1: browsers give a page the camera only over HTTPS or on
//! `localhost`/`127.0.0.1`, so in production it sits behind the operator's HTTPS proxy or
//! ingress.

pub mod assets;
pub mod config;
pub mod demo;
pub mod error;
pub mod http;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ekyc_orchestrator::Engine;
use ekyc_proto::v1::orchestrator_server::OrchestratorServer;
use tokio::net::TcpListener;

pub use config::WebConfig;
pub use demo::DemoKey;
pub use error::WebError;

/// The page's policy: its own script and style only, no inline code, no plugins, no
/// framing, network calls only to this origin; DOM sinks only through Trusted Types.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
     media-src 'self' blob: mediastream:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; \
     require-trusted-types-for 'script'; trusted-types 'none'";

#[derive(Clone)]
struct Web {
    demo: Option<Arc<demo::Demo>>,
}

/// Serves the page and gRPC-Web for `engine` on `listener` until `shutdown` completes.
/// `demo` is the key made by [`DemoKey::generate`] when `cfg.demo` is on (its hash must be
/// among the engine's API keys).
pub async fn serve(
    engine: Arc<Engine>,
    cfg: WebConfig,
    demo: Option<DemoKey>,
    max_message_bytes: usize,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    let router = router(engine, &cfg, demo, max_message_bytes)?;
    tracing::info!(addr = ?listener.local_addr().ok(), demo = cfg.demo, "web page and gRPC-Web listening");
    let limits = http::Limits {
        header_read_timeout: std::time::Duration::from_millis(cfg.header_read_timeout_ms),
        max_connections: cfg.max_connections,
    };
    http::serve(listener, router, limits, shutdown).await;
    Ok(())
}

/// The routes of the port, for [`serve`] and tests.
pub fn router(engine: Arc<Engine>, cfg: &WebConfig, demo: Option<DemoKey>, max_message_bytes: usize) -> Result<Router, WebError> {
    if cfg.demo != demo.is_some() {
        return Err(WebError::Config("web.demo needs a demo key, and a demo key needs web.demo".into()));
    }
    let max_in_flight = engine.config().max_in_flight;
    let cell = Arc::new(OnceLock::new());
    let _ = cell.set(Arc::clone(&engine));
    let api = OrchestratorServer::new(ekyc_orchestrator::service::OrchestratorService::new(cell))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    let receive = ekyc_runtime::serve::limits_for(max_message_bytes).receive;
    let admitted = ekyc_runtime::admission::Admission::with_receive(api, max_in_flight, receive);
    let grpc_web = tower::ServiceBuilder::new().layer(cors(&cfg.allowed_origins)?).layer(tonic_web::GrpcWebLayer::new()).service(admitted);

    let state = Web { demo: demo.map(|key| Arc::new(demo::Demo::new(engine, key, cfg))) };
    let mut router =
        Router::new().route("/", get(index)).route("/assets/{name}", get(asset)).route_service("/ekyc.v1.Orchestrator/{method}", grpc_web);
    if state.demo.is_some() {
        router = router.route("/demo/session", post(demo::start));
    }
    Ok(router.fallback(not_found).with_state(state))
}

/// CORS for the gRPC-Web routes: the listed origins only, the headers gRPC-Web needs.
fn cors(origins: &[String]) -> Result<tower_http::cors::CorsLayer, WebError> {
    let origins = origins
        .iter()
        .map(|o| HeaderValue::from_str(o).map_err(|_| WebError::Config(format!("web.allowed_origins: {o:?}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let header = |n: &'static str| HeaderName::from_static(n);
    Ok(tower_http::cors::CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, header("x-grpc-web"), header("x-user-agent"), header("grpc-timeout")])
        .expose_headers([header("grpc-status"), header("grpc-message"), header("grpc-status-details-bin")])
        .max_age(std::time::Duration::from_secs(600)))
}

/// Headers every answer of this port carries.
fn hardened(mut r: Response, cache: &'static str) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(HeaderName::from_static("permissions-policy"), HeaderValue::from_static("camera=(self), microphone=(), geolocation=()"));
    h.insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    h.insert(HeaderName::from_static("cross-origin-resource-policy"), HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

async fn index() -> Response {
    let page = assets::page();
    hardened(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page.index.clone()).into_response(), "no-store")
}

async fn asset(request: Request) -> Response {
    match assets::page().asset(request.uri().path()) {
        Some(a) => {
            hardened(([(header::CONTENT_TYPE, a.content_type)], Body::from(a.body)).into_response(), "public, max-age=31536000, immutable")
        }
        None => not_found().await,
    }
}

async fn not_found() -> Response {
    hardened((StatusCode::NOT_FOUND, "not found\n").into_response(), "no-store")
}
