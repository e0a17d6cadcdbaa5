//! A liveness server backed by a real redis-server, and frames synthesised from the
//! development photos.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use ekyc_liveness::{Engine, LivenessConfig};
use ekyc_proto::v1 as pb;
use ekyc_proto::v1::liveness_client::LivenessClient;
use ekyc_testkit::dataset::photo;
use ekyc_testkit::headturn::{TurnableFace, encode_jpeg};
use ekyc_testkit::redis_server::RedisServer;
use ekyc_vision::{FacePipeline, VisionConfig};
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
    LivenessConfig {
        redis_url: Some(redis.url()),
        hmac_key: Some("ab".repeat(32)),
        workers: 2,
        redis_timeout_ms: 500,
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

fn library() -> &'static FacePipeline {
    static P: OnceLock<FacePipeline> = OnceLock::new();
    P.get_or_init(|| FacePipeline::new(VisionConfig::default()).expect("models load"))
}

/// JPEG frames of `file`'s face turned by each `(yaw, pitch)`, cached across tests.
pub fn turned(file: &str, yaw: f32, pitch: f32) -> Vec<u8> {
    type FrameCache = std::sync::Mutex<HashMap<(String, i32, i32), Vec<u8>>>;
    static CACHE: OnceLock<FrameCache> = OnceLock::new();
    static FACES: OnceLock<std::sync::Mutex<HashMap<String, Arc<TurnableFace>>>> = OnceLock::new();
    let key = (file.to_string(), (yaw * 10.0) as i32, (pitch * 10.0) as i32);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(b) = cache.lock().expect("cache").get(&key) {
        return b.clone();
    }
    let face = {
        let mut faces = FACES.get_or_init(Default::default).lock().expect("faces");
        Arc::clone(
            faces
                .entry(file.to_string())
                .or_insert_with(|| Arc::new(TurnableFace::from_bytes(library(), &photo(file).bytes()).expect("a turnable face"))),
        )
    };
    let bytes = encode_jpeg(&face.turned(yaw, pitch), 92).expect("jpeg");
    cache.lock().expect("cache").insert(key, bytes.clone());
    bytes
}

/// The turn that answers `pose` for a person, by `angle` degrees.
pub fn answer(file: &str, pose: pb::PoseStep, angle: f32) -> Vec<u8> {
    match pose {
        pb::PoseStep::Frontal => turned(file, 0.0, 0.0),
        pb::PoseStep::TurnLeft => turned(file, angle, 0.0),
        pb::PoseStep::TurnRight => turned(file, -angle, 0.0),
        pb::PoseStep::LookUp => turned(file, 0.0, angle),
        pb::PoseStep::LookDown => turned(file, 0.0, -angle),
        pb::PoseStep::Unspecified => panic!("unspecified pose"),
    }
}

pub fn frame(bytes: Vec<u8>, step: usize) -> pb::Frame {
    pb::Frame {
        image: Some(pb::Image { data: bytes, content_type: None }),
        step_index: step as u32,
        client_capture_unix_ms: None,
        mirrored: false,
    }
}

/// Frames answering every step of `c` correctly with `file`'s face.
pub fn good_frames(c: &pb::Challenge, file: &str) -> Vec<pb::Frame> {
    c.steps.iter().map(|s| frame(answer(file, s.pose(), 25.0), s.index as usize)).collect()
}

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
