//! A liveness server backed by a real redis-server, and frames synthesised from the
//! development photos.

use std::sync::Arc;

use ekyc_liveness::{Engine, LivenessConfig};
use ekyc_proto::v1 as pb;
use ekyc_proto::v1::liveness_client::LivenessClient;
use ekyc_testkit::redis_server::RedisServer;
use ekyc_vision::VisionConfig;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub struct Server {
    pub engine: Arc<Engine>,
    pub redis: RedisServer,
    pub addr: std::net::SocketAddr,
    _stop: oneshot::Sender<()>,
}

/// The service as these tests run it. They check the pose, identity, replay and sealing
/// rules with frames rendered from a still photo, which are presentation attacks by
/// construction: PAD is not what they test, and they say so (`PadConfig::not_tested`).
/// PAD has its own tests (`pad.rs`).
pub fn config(redis: &RedisServer) -> LivenessConfig {
    LivenessConfig {
        redis_url: Some(redis.url()),
        workers: 2,
        redis_timeout_ms: 500,
        pad: ekyc_liveness::pad::PadConfig::not_tested(),
        ..Default::default()
    }
}

impl Server {
    pub async fn start() -> Server {
        let redis = RedisServer::start();
        Self::start_with(redis, |c| c).await
    }

    pub async fn start_with(redis: RedisServer, tweak: impl FnOnce(LivenessConfig) -> LivenessConfig) -> Server {
        let cfg = tweak(config(&redis));
        let engine =
            tokio::task::spawn_blocking(move || Engine::start(&VisionConfig::default(), &cfg)).await.expect("ran").expect("engine starts");
        let engine = Arc::new(engine);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("port");
        let addr = listener.local_addr().expect("addr");
        let (stop, rx) = oneshot::channel::<()>();
        let e = Arc::clone(&engine);
        tokio::spawn(async move {
            ekyc_liveness::serve_engine(e, 32 << 20, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("serves");
        });
        Server { engine, redis, addr, _stop: stop }
    }

    pub async fn client(&self) -> LivenessClient<Channel> {
        let ch = Channel::from_shared(format!("http://{}", self.addr)).expect("uri").connect().await.expect("connects");
        LivenessClient::new(ch).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20)
    }
}

pub use ekyc_testkit::frames::{answer, frame, good_frames, turned};

pub async fn create(client: &mut LivenessClient<Channel>, steps: u32) -> pb::Challenge {
    client.create_challenge(pb::CreateChallengeRequest { step_count: steps, ..Default::default() }).await.expect("challenge").into_inner()
}

pub async fn verify(client: &mut LivenessClient<Channel>, c: &pb::Challenge, frames: Vec<pb::Frame>) -> pb::VerifyChallengeResponse {
    client
        .verify_challenge(pb::VerifyChallengeRequest { challenge_id: c.challenge_id.clone(), frames, frame_attestations: vec![] })
        .await
        .expect("verdict")
        .into_inner()
}

pub fn codes(r: &pb::VerifyChallengeResponse) -> Vec<pb::ReasonCode> {
    r.reasons.iter().chain(r.steps.iter().flat_map(|s| s.reasons.iter())).filter(|x| x.blocking).map(|x| x.code()).collect()
}

/// A plain Redis command against the test's server (what an attacker with Redis access
/// can do).
pub async fn redis_cmd<T: redis::FromRedisValue>(server: &Server, cmd: redis::Cmd) -> T {
    let r = ekyc_runtime::redis::Redis::new(&server.redis.url(), std::time::Duration::from_secs(2)).expect("url");
    r.run(cmd).await.expect("redis answers")
}

/// Every key and value in Redis.
pub async fn redis_dump(server: &Server) -> Vec<(String, Vec<u8>)> {
    let mut keys_cmd = redis::cmd("KEYS");
    keys_cmd.arg("*");
    let keys: Vec<String> = redis_cmd(server, keys_cmd).await;
    let mut out = Vec::new();
    for k in keys {
        let mut get = redis::cmd("GET");
        get.arg(&k);
        let v: Option<Vec<u8>> = redis_cmd(server, get).await;
        out.push((k, v.unwrap_or_default()));
    }
    out
}

/// Forgets the frames remembered for cross-challenge replays, for tests that send one
/// person's synthesised frames in several challenges to test something else.
pub async fn forget_replays(server: &Server) {
    for (k, _) in redis_dump(server).await {
        if k.starts_with("ekyc:replay:") {
            let mut del = redis::cmd("DEL");
            del.arg(&k);
            let _: i64 = redis_cmd(server, del).await;
        }
    }
}

/// The store key of a challenge id's record.
pub fn record_key(c: &pb::Challenge) -> String {
    format!("ekyc:liveness:challenge:{}", c.challenge_id.split('.').nth(1).expect("a nonce"))
}
