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

pub fn config(redis: &RedisServer) -> LivenessConfig {
    LivenessConfig { redis_url: Some(redis.url()), workers: 2, redis_timeout_ms: 500, ..Default::default() }
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
