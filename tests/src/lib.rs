//! Helpers for the end-to-end tests: start services in-process on `127.0.0.1:0` and connect
//! the real tonic clients to them, shutting them down when the handle drops.

use std::net::SocketAddr;

use ekyc_facematch::FacematchConfig;
use ekyc_runtime::ServiceKind;
use ekyc_vision::VisionConfig;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// A running service; dropping it shuts the server down.
#[derive(Debug)]
pub struct Running {
    pub kind: ServiceKind,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).expect("valid uri").connect().await.expect("connects over loopback")
    }

    /// Stops the server and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task ends cleanly");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Starts `kind` on a free loopback port (an orchestrator with default settings and keys
/// of its own, whose backends need not be running).
pub async fn start(kind: ServiceKind) -> Running {
    match kind {
        ServiceKind::Orchestrator => orchestrator(Default::default()).await.0,
        other => spawn_backend(other, None).await,
    }
}

// ---------------------------------------------------------------------------------------
// A whole cluster: the three model-backed services and Redis shared by a test binary, an
// orchestrator per test.
// ---------------------------------------------------------------------------------------

/// Liveness, document and facematch serving on loopback from a runtime of their own (so
/// they outlive any one test's runtime), with a real redis-server for the challenges and
/// sessions. Started once per test binary.
#[derive(Debug)]
pub struct Backends {
    pub liveness: SocketAddr,
    pub document: SocketAddr,
    pub facematch: SocketAddr,
    pub redis_url: String,
}

/// The shared backends (started on first use; model loading takes a few seconds).
pub fn backends() -> &'static Backends {
    static B: std::sync::OnceLock<Backends> = std::sync::OnceLock::new();
    B.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("e2e-backends".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
                rt.block_on(async move {
                    let redis = ekyc_testkit::redis_server::RedisServer::start();
                    let liveness = spawn_backend(ServiceKind::Liveness, Some(redis.url())).await;
                    let document = spawn_backend(ServiceKind::Document, None).await;
                    let facematch = spawn_backend(ServiceKind::Facematch, None).await;
                    for r in [&liveness, &document, &facematch] {
                        wait_ready(r).await;
                    }
                    tx.send(Backends {
                        liveness: liveness.addr,
                        document: document.addr,
                        facematch: facematch.addr,
                        redis_url: redis.url(),
                    })
                    .expect("test thread waits");
                    // Serve until the test process exits.
                    let _keep = (redis, liveness, document, facematch);
                    std::future::pending::<()>().await;
                });
            })
            .expect("backend thread");
        rx.recv().expect("backends start")
    })
}

/// The liveness settings the end-to-end tests use: one key file for every liveness
/// instance of the test process (so instances sharing a Redis verify each other's
/// challenges) and Redis. The cross-challenge replay memory is off: the tests send the
/// same synthesised frames in many sessions.
pub fn liveness_config(redis_url: Option<String>) -> ekyc_liveness::LivenessConfig {
    static KEYS: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let keys_file = KEYS
        .get_or_init(|| {
            let path = std::env::temp_dir().join(format!("ekyc-e2e-liveness-{}.keys", std::process::id()));
            ekyc_runtime::seal::Keyring::load_or_create(&path).expect("a liveness key file");
            path
        })
        .clone();
    // The suite drives whole sessions with frames rendered from a still photo (presentation
    // attacks by construction) to test the decision logic, not PAD: it says so. Every
    // verdict carries PAD_NOT_CHECKED, and `orchestrator_config` offers the policies with
    // `require_pad = false`. PAD's own end-to-end test (pad.rs) turns it on.
    ekyc_liveness::LivenessConfig {
        redis_url,
        keys_file: Some(keys_file),
        replay_window_s: 0,
        workers: 2,
        pad: ekyc_liveness::pad::PadConfig::not_tested(),
        ..Default::default()
    }
}

/// Starts one model-backed service on a free port of the current runtime.
pub async fn spawn_backend(kind: ServiceKind, redis_url: Option<String>) -> Running {
    spawn(kind, liveness_config(redis_url)).await
}

/// Starts a liveness service with settings of the test's own.
pub async fn spawn_liveness(cfg: ekyc_liveness::LivenessConfig) -> Running {
    spawn(ServiceKind::Liveness, cfg).await
}

async fn spawn(kind: ServiceKind, liveness: ekyc_liveness::LivenessConfig) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds a free port");
    let addr = listener.local_addr().expect("bound address");
    let (stop, rx) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = rx.await;
    };
    let task = tokio::spawn(async move {
        let r = match kind {
            ServiceKind::Liveness => {
                ekyc_liveness::serve(VisionConfig::default(), liveness, 32 << 20, listener, shutdown).await.map_err(|e| e.to_string())
            }
            ServiceKind::Document => ekyc_document::serve(VisionConfig::default(), Default::default(), 32 << 20, listener, shutdown)
                .await
                .map_err(|e| e.to_string()),
            ServiceKind::Facematch => {
                ekyc_facematch::serve(VisionConfig::default(), FacematchConfig::default(), 32 << 20, listener, shutdown)
                    .await
                    .map_err(|e| e.to_string())
            }
            ServiceKind::Orchestrator => Err("use orchestrator()".to_string()),
        };
        r.expect("server runs");
    });
    Running { kind, addr, stop: Some(stop), task: Some(task) }
}

/// Waits until `r` reports SERVING under its own name (models loaded and warm).
pub async fn wait_ready(r: &Running) {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    let mut health = tonic_health::pb::health_client::HealthClient::new(r.channel().await);
    for _ in 0..2400 {
        let s = health.check(HealthCheckRequest { service: r.kind.grpc_name().into() }).await.map(|x| x.into_inner().status());
        if matches!(s, Ok(ServingStatus::Serving)) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{:?} never became ready", r.kind);
}

/// Orchestrator settings pointing at `b`, sessions in its Redis, short deadlines. The
/// document replay memory is off: the tests send the same synthesised cards in many
/// sessions (`trust.rs` turns it on where it is tested).
pub fn orchestrator_config(b: &Backends) -> ekyc_orchestrator::OrchestratorConfig {
    let mut cfg =
        ekyc_orchestrator::OrchestratorConfig { redis_url: Some(b.redis_url.clone()), document_replay_window_s: 0, ..Default::default() };
    cfg.backends.liveness.endpoint = format!("http://{}", b.liveness);
    cfg.backends.document.endpoint = format!("http://{}", b.document);
    cfg.backends.facematch.endpoint = format!("http://{}", b.facematch);
    // Not testing PAD (see `liveness_config`): the built-in policies as they are, except
    // that they accept a verdict without PAD.
    for p in cfg.policies.values_mut() {
        p.require_pad = false;
    }
    cfg
}

/// The API key every test orchestrator accepts (allowed every policy).
pub const TEST_API_KEY: &str = "ek_end-to-end-suite-key-0123456789abcdef0123456789";

/// The state keys every test replica shares (as a cluster's replicas do).
pub fn test_state_keys() -> ekyc_runtime::seal::Keyring {
    ekyc_runtime::seal::Keyring::new(vec![("test-2026".into(), [0x5e; 32])]).expect("valid key")
}

/// A channel whose calls carry [`TEST_API_KEY`].
pub type Authed =
    tonic::service::interceptor::InterceptedService<Channel, fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>>;

/// Adds `authorization: Bearer TEST_API_KEY`.
pub fn with_api_key(mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    r.metadata_mut().insert("authorization", format!("Bearer {TEST_API_KEY}").parse().expect("ASCII"));
    Ok(r)
}

/// An orchestrator client that authenticates with [`TEST_API_KEY`].
pub fn authed(channel: Channel) -> ekyc_proto::v1::orchestrator_client::OrchestratorClient<Authed> {
    ekyc_proto::v1::orchestrator_client::OrchestratorClient::with_interceptor(channel, with_api_key as fn(_) -> _)
        .max_decoding_message_size(32 << 20)
        .max_encoding_message_size(32 << 20)
}

/// An orchestrator serving `cfg` on a free port of the current runtime: the state keys every
/// test replica shares (as a cluster's replicas do), [`TEST_API_KEY`] as its one caller, an
/// evidence key of its own; returns it with its engine (for the evidence key).
pub async fn orchestrator(cfg: ekyc_orchestrator::OrchestratorConfig) -> (Running, std::sync::Arc<ekyc_orchestrator::Engine>) {
    orchestrator_with_keys(cfg, Vec::new()).await
}

/// [`orchestrator`] admitting `more` API keys beside [`TEST_API_KEY`] (e.g. the page's demo
/// key).
pub async fn orchestrator_with_keys(
    cfg: ekyc_orchestrator::OrchestratorConfig,
    more: Vec<ekyc_orchestrator::auth::ApiKeyConfig>,
) -> (Running, std::sync::Arc<ekyc_orchestrator::Engine>) {
    let mut api_keys = vec![ekyc_orchestrator::auth::ApiKeyConfig::for_secret("e2e", TEST_API_KEY, Vec::new()).expect("key config")];
    api_keys.extend(more);
    let keys = ekyc_orchestrator::Keys { state: test_state_keys(), evidence_key: ekyc_evidence::EvidenceKey::generate(), api_keys };
    let engine = std::sync::Arc::new(ekyc_orchestrator::Engine::new(cfg, keys, 32 << 20).expect("engine"));
    let r = serve_orchestrator(std::sync::Arc::clone(&engine)).await;
    (r, engine)
}

/// Serves an existing orchestrator engine on a free port.
pub async fn serve_orchestrator(engine: std::sync::Arc<ekyc_orchestrator::Engine>) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds a free port");
    let addr = listener.local_addr().expect("bound address");
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        ekyc_orchestrator::serve(engine, 32 << 20, listener, async move {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
    });
    Running { kind: ServiceKind::Orchestrator, addr, stop: Some(stop), task: Some(task) }
}
