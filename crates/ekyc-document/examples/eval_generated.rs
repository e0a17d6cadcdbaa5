//! The document service's evaluation on generated ID-document photos, as the test runs it:
//! `cargo run --release -p ekyc-document --example eval_generated -- 200 [FIRST [faceres]]`.
//! Prints every miss and the rates overall and per variation. With `faceres`, the portraits
//! are embedded with FaceRes (and its mirror) at its own threshold 0.62 instead of the
//! default SFace at 0.43, to compare the two embedders on document-to-source matching.

#[path = "../tests/it/generated.rs"]
mod generated;

use std::sync::Arc;

use ekyc_document::{DocumentConfig, Engine};
use ekyc_vision::config::EmbedderConfig;
use ekyc_vision::{FacePipeline, VisionConfig};

#[tokio::main]
async fn main() {
    let n: u64 = std::env::args().nth(1).map_or(200, |s| s.parse().expect("COUNT is a number"));
    let first: u64 = std::env::args().nth(2).map_or(0, |s| s.parse().expect("FIRST is a number"));
    let vision = match std::env::args().nth(3).as_deref() {
        None | Some("sface") => VisionConfig::default(),
        Some("faceres") => VisionConfig { embedder: EmbedderConfig::faceres(), match_threshold: 0.62, ..VisionConfig::default() },
        Some(other) => panic!("unknown embedder {other}: sface or faceres"),
    };
    let pipeline = FacePipeline::new(vision.clone()).expect("models load (run scripts/setup.sh)");
    let sources = Arc::new(generated::sources(&pipeline));
    drop(pipeline);
    let engine = Arc::new(Engine::start(&vision, &DocumentConfig::default()).expect("engine starts"));
    let t = std::time::Instant::now();
    let parallel = engine.config().worker_threads() + 1;
    let outcomes = generated::evaluate(Arc::clone(&engine), sources, (first..first + n).collect(), parallel).await;
    generated::report(&outcomes, vision.match_threshold);
    println!("{} photos in {:.1} s", outcomes.len(), t.elapsed().as_secs_f64());
}
