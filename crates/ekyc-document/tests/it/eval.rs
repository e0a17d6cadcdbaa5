//! The acceptance evaluation: 200 generated photos across the variations (random scenes,
//! quarter turns, passport pages, documents filling the frame, the holder's face beside
//! the card). `cargo test -p ekyc-document --test it eval -- --nocapture` prints the rates;
//! `cargo run --release -p ekyc-document --example eval_generated -- 200` reproduces them.

use std::time::Instant;

use ekyc_vision::VisionConfig;

use crate::common::{engine, sources};
use crate::generated::{VARIATIONS, evaluate, report};

const PHOTOS: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portraits_are_found_matched_and_never_the_ghost_or_holder() {
    let (engine, sources) = tokio::task::spawn_blocking(|| (engine(), sources())).await.expect("loaded");
    let t = Instant::now();
    // One photo rendering while each worker extracts another.
    let parallel = engine.config().worker_threads() + 1;
    let outcomes = evaluate(engine, sources, (0..PHOTOS).collect(), parallel).await;
    let threshold = VisionConfig::default().match_threshold;
    let all = report(&outcomes, threshold);
    println!("{} photos in {:.1} s", outcomes.len(), t.elapsed().as_secs_f64());
    assert_eq!(all.n as u64, PHOTOS);
    assert!(VARIATIONS.iter().all(|v| outcomes.iter().filter(|o| o.variation == *v).count() >= 30));
    assert!(all.iou_rate >= 0.95, "main portrait found (IoU >= 0.8) in only {:.1} %", all.iou_rate * 100.0);
    assert!(all.match_rate >= 0.95, "identity matched in only {:.1} %", all.match_rate * 100.0);
    assert_eq!(all.ghost_chosen, 0, "the ghost portrait was chosen");
    assert_eq!(all.holder_chosen, 0, "the holder's face was chosen");
}
