//! Latency of verifying a 3-step challenge over gRPC on loopback (client to verdict), with
//! frames synthesised from a development photo. Release build:
//!
//! ```text
//! cargo run --release -p ekyc-liveness --example verify_latency -- [RUNS] [PHOTO] [REDIS_URL]
//! ```
//!
//! Without REDIS_URL the in-process store is used. `EKYC_PAD=off` switches
//! presentation-attack detection off (to measure what it costs). Prints the median, p90 and
//! max of a whole 3-step VerifyChallenge and of one CheckFrame.

use std::sync::Arc;
use std::time::Instant;

use ekyc_liveness::{Engine, LivenessConfig};
use ekyc_proto::v1 as pb;
use ekyc_proto::v1::liveness_client::LivenessClient;
use ekyc_testkit::headturn::{TurnableFace, encode_jpeg};
use ekyc_vision::{FacePipeline, VisionConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20);
    let photo = args.next().unwrap_or_else(|| "../shared/faces/obama_1.jpg".into());
    let redis_url = args.next();
    let pad_on = std::env::var("EKYC_PAD").map_or(true, |v| v != "off");
    let mut cfg = LivenessConfig { redis_url: redis_url.clone(), replay_window_s: 0, ..Default::default() };
    cfg.pad.enabled = pad_on;
    let engine = Arc::new(tokio::task::spawn_blocking(move || Engine::start(&VisionConfig::default(), &cfg)).await??);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(ekyc_liveness::serve_engine(engine, 32 << 20, listener, std::future::pending()));
    let mut client = LivenessClient::connect(format!("http://{addr}")).await?;

    let pipeline = FacePipeline::new(VisionConfig::default())?;
    let face = TurnableFace::from_bytes(&pipeline, &std::fs::read(&photo)?)?;
    let frame_for = |pose: pb::PoseStep| -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let (y, p) = match pose {
            pb::PoseStep::TurnLeft => (25.0, 0.0),
            pb::PoseStep::TurnRight => (-25.0, 0.0),
            pb::PoseStep::LookUp => (0.0, 20.0),
            pb::PoseStep::LookDown => (0.0, -20.0),
            _ => (0.0, 0.0),
        };
        Ok(encode_jpeg(&face.turned(y, p), 92)?)
    };
    let mut times = Vec::with_capacity(runs);
    let mut checks = Vec::with_capacity(runs);
    let mut passed = 0;
    for run in 0..=runs {
        let c = client.create_challenge(pb::CreateChallengeRequest { step_count: 3, ..Default::default() }).await?.into_inner();
        let mut frames = Vec::new();
        for s in &c.steps {
            frames.push(pb::Frame {
                image: Some(pb::Image { data: frame_for(s.pose())?, content_type: None }),
                step_index: s.index,
                ..Default::default()
            });
        }
        let start = Instant::now();
        client
            .check_frame(pb::CheckFrameRequest {
                challenge_id: c.challenge_id.clone(),
                frame: Some(frames[0].clone()),
                ..Default::default()
            })
            .await?;
        let check_ms = start.elapsed().as_secs_f64() * 1000.0;
        let start = Instant::now();
        let r = client
            .verify_challenge(pb::VerifyChallengeRequest { challenge_id: c.challenge_id, frames, frame_attestations: vec![] })
            .await?
            .into_inner();
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        if run > 0 {
            // The first run pays connection and allocator warm-up.
            times.push(ms);
            checks.push(check_ms);
            passed += usize::from(r.passed);
        }
    }
    times.sort_by(f64::total_cmp);
    checks.sort_by(f64::total_cmp);
    let pct = |v: &[f64], p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "PAD {}: 3-step VerifyChallenge over gRPC ({} store, {photo}): median {:.1} ms, p90 {:.1} ms, max {:.1} ms over {runs} runs; {passed} passed",
        if pad_on { "on" } else { "off" },
        if redis_url.is_some() { "redis" } else { "in-process" },
        pct(&times, 0.5),
        pct(&times, 0.9),
        pct(&times, 1.0)
    );
    println!(
        "PAD {}: one CheckFrame: median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        if pad_on { "on" } else { "off" },
        pct(&checks, 0.5),
        pct(&checks, 0.9),
        pct(&checks, 1.0)
    );
    Ok(())
}
