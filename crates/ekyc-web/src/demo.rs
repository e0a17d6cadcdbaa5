//! Demo sessions (`web.demo`): the page asks this port for a session and gets its id and
//! token, nothing more. The sessions are started under an API key made at start-up in this
//! process's memory (a random secret, configured on the orchestrator like any other key by
//! its salted hash, limited to `web.demo_policy` and `web.demo_sessions_per_minute`); the
//! secret never leaves the process. The call must come from this port's own page or an
//! allowed origin, as JSON (so a cross-site form cannot post it).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ekyc_orchestrator::Engine;
use ekyc_orchestrator::auth::{ApiKeyConfig, Call};
use ekyc_proto::v1::StartSessionRequest;
use serde::{Deserialize, Serialize};

use crate::{Web, WebConfig, WebError, hardened};

/// The key demo sessions are started under. Its secret is never printed or logged.
pub struct DemoKey {
    secret: String,
}

impl std::fmt::Debug for DemoKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DemoKey(..)")
    }
}

impl DemoKey {
    /// A fresh key and the orchestrator's entry for it (add it to `orchestrator.api_keys`).
    pub fn generate(cfg: &WebConfig) -> Result<(DemoKey, ApiKeyConfig), WebError> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|e| WebError::Config(format!("no randomness: {e}")))?;
        let secret = hex::encode(b);
        let policies = if cfg.demo_policy.is_empty() { Vec::new() } else { vec![cfg.demo_policy.clone()] };
        let mut entry = ApiKeyConfig::for_secret("web-demo", &secret, policies).map_err(|e| WebError::Config(e.to_string()))?;
        entry.sessions_per_minute = cfg.demo_sessions_per_minute;
        Ok((DemoKey { secret }, entry))
    }
}

pub(crate) struct Demo {
    engine: Arc<Engine>,
    key: DemoKey,
    policy: String,
    allowed_origins: Vec<String>,
}

impl Demo {
    pub(crate) fn new(engine: Arc<Engine>, key: DemoKey, cfg: &WebConfig) -> Self {
        Self { engine, key, policy: cfg.demo_policy.clone(), allowed_origins: cfg.allowed_origins.clone() }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartDemo {
    /// Language of the challenge's instructions, `ja` or `en`.
    #[serde(default)]
    locale: String,
}

#[derive(Serialize)]
struct Started {
    session_id: String,
    session_token: String,
}

pub(crate) async fn start(State(web): State<Web>, headers: HeaderMap, Json(body): Json<StartDemo>) -> Response {
    let Some(demo) = web.demo else { return crate::not_found().await };
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let own = [format!("http://{host}"), format!("https://{host}")];
        if !own.iter().any(|o| o == origin) && !demo.allowed_origins.iter().any(|o| o == origin) {
            return refuse(StatusCode::FORBIDDEN, "this origin may not start demo sessions");
        }
    }
    let locale = if body.locale.starts_with("ja") { "ja" } else { "en" };
    let request = StartSessionRequest { policy: demo.policy.clone(), client_reference: None, locale: locale.into() };
    let started = async {
        let caller = demo.engine.authenticate(Some(&format!("Bearer {}", demo.key.secret)))?;
        demo.engine.auth().authorize(&caller, Call::StartSession, None)?;
        demo.engine.start_session(&caller, request).await
    };
    match started.await {
        Ok(s) => {
            let r = Json(Started { session_id: s.session_id, session_token: s.session_token }).into_response();
            hardened(r, "no-store")
        }
        Err(e) => {
            let status = tonic::Status::from(e);
            let code = match status.code() {
                tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
                tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            tracing::warn!(code = ?status.code(), message = status.message(), "demo session not started");
            refuse(code, status.message())
        }
    }
}

fn refuse(code: StatusCode, message: &str) -> Response {
    hardened((code, Json(serde_json::json!({ "error": message }))).into_response(), "no-store")
}
