//! Prints, for every challenge of a labelled set (the CSV that `ekyc-pad-set` writes), the
//! challenge-level PAD verdict: the attack score, the species named, the mean of the frames'
//! scores, the shading cue's score and the shading spread of each turned step, to see how
//! the cues separate bona fide challenges from renderings on one's own captures. Release
//! build:
//!
//! ```text
//! cargo run --release -p ekyc-liveness --example pad_challenges -- SET/labels.csv
//! ```

use std::collections::BTreeMap;

use ekyc_liveness::LivenessConfig;
use ekyc_liveness::challenge::Pose;
use ekyc_liveness::pad::PadEvaluator;
use ekyc_vision::VisionConfig;

/// A challenge's label (`species,method`) and its frames (step, pose, encoded image).
type Challenge = (String, Vec<(usize, Pose, Vec<u8>)>);

fn main() {
    let csv = std::path::PathBuf::from(std::env::args().nth(1).expect("labels.csv"));
    let dir = csv.parent().expect("folder").to_path_buf();
    let vision = VisionConfig { intra_threads: 1, ..VisionConfig::default() };
    let pad = PadEvaluator::new(&vision, &LivenessConfig::default()).expect("models");
    let text = std::fs::read_to_string(&csv).expect("csv");
    let mut challenges: BTreeMap<String, Challenge> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        if c.len() < 7 || c[4].is_empty() {
            continue;
        }
        let pose: Pose = serde_json::from_value(serde_json::Value::String(c[6].to_string())).expect("pose");
        let bytes = std::fs::read(dir.join(c[0])).expect("frame");
        let entry = challenges.entry(c[4].to_string()).or_insert_with(|| (format!("{},{}", c[2], c[3]), Vec::new()));
        entry.1.push((c[5].parse().expect("step"), pose, bytes));
    }
    println!("species,method,challenge,attack_score,species_named,frames_mean,shading_score,shading_per_step");
    for (id, (label, mut frames)) in challenges {
        frames.sort_by_key(|f| f.0);
        let frames: Vec<(Pose, Vec<u8>)> = frames.into_iter().map(|(_, p, b)| (p, b)).collect();
        let p = pad.challenge(&frames).expect("scored");
        let steps = p.shading.iter().map(|(s, x)| format!("{s}:{x:.3}")).collect::<Vec<_>>().join(" ");
        let mean = p.frames.iter().map(|f| f.attack_score).sum::<f32>() / p.frames.len().max(1) as f32;
        let shading = p.shading_score.map(|s| format!("{s:.3}")).unwrap_or_default();
        let named = p.species.map(|s| s.describe()).unwrap_or("-");
        println!("{label},{id},{:.3},{named},{mean:.3},{shading},{steps}", p.attack_score);
    }
}
