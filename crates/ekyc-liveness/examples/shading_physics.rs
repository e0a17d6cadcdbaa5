//! How far the shading cue can separate renderings from real head turns: a simulation on
//! measured noise. For every challenge rendered from a still in a labelled set (the CSV
//! that `ekyc-pad-set` writes), it measures each turned step's change of region brightness
//! against the frontal frame, as the shading cue does. A rendering keeps the photo's
//! shading, so that change is pure measurement noise (face-mesh landmarks placed a little
//! differently on each frame). It then adds, region by region, the change that the same
//! turn (the measured yaw and pitch) makes on a Lambertian face (the canonical face's
//! normals) under fixed lights, from flat to directional, and scores both with the cue's own
//! statistic (the largest per-step spread). The added change is what a real head turning in
//! that light would show on top of the same noise; it is a model, not a capture: skin is not
//! Lambertian, and real rooms have several lights.
//!
//! ```text
//! cargo run --release -p ekyc-liveness --example shading_physics -- SET/labels.csv [NOISE_SCALE]
//! ```
//!
//! `NOISE_SCALE` (default 1) multiplies the measured noise, to see what better registration
//! would buy.

use std::collections::BTreeMap;

use ekyc_liveness::LivenessConfig;
use ekyc_liveness::challenge::Pose;
use ekyc_liveness::pad::{ChallengeFrame, FrameCues, PadEvaluator, ShadingProfile, challenge, region_frames};
use ekyc_vision::geometry::{mat_mul, mat_vec, rot_x, rot_y};
use ekyc_vision::{CANONICAL_FACE, HeadPose, VisionConfig};

/// A light environment: the share of light coming from everywhere (ambient), the rest from
/// one direction in front of the face, raised by `elevation_deg`.
struct Light {
    name: &'static str,
    ambient: f32,
    elevation_deg: f32,
}

const LIGHTS: [Light; 6] = [
    Light { name: "directional, at the camera (ambient 0.3)", ambient: 0.3, elevation_deg: 0.0 },
    Light { name: "directional, 45 deg above (ambient 0.3)", ambient: 0.3, elevation_deg: 45.0 },
    Light { name: "half ambient, 45 deg above (0.5)", ambient: 0.5, elevation_deg: 45.0 },
    Light { name: "mostly ambient, 45 deg above (0.7)", ambient: 0.7, elevation_deg: 45.0 },
    Light { name: "diffuse, 45 deg above (0.8)", ambient: 0.8, elevation_deg: 45.0 },
    Light { name: "very diffuse, 45 deg above (0.9)", ambient: 0.9, elevation_deg: 45.0 },
];

/// The normal of each shading region on the canonical face, facing the camera, in camera
/// axes (x right, y down, z towards the camera).
fn region_normals() -> Vec<[f32; 3]> {
    let c = |i: usize| [CANONICAL_FACE[i][0], CANONICAL_FACE[i][1], -CANONICAL_FACE[i][2]];
    region_frames()
        .iter()
        .map(|&[i, jx, jy]| {
            let (o, a, b) = (c(i), c(jx), c(jy));
            let u = [a[0] - o[0], a[1] - o[1], a[2] - o[2]];
            let v = [b[0] - o[0], b[1] - o[1], b[2] - o[2]];
            let mut n = [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]];
            let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt().max(1e-9);
            let sign = if n[2] < 0.0 { -1.0 } else { 1.0 };
            n.iter_mut().for_each(|x| *x *= sign / len);
            n
        })
        .collect()
}

/// A normal turned by `yaw` (about the vertical axis) then `pitch` (positive: looking up).
fn turn(n: [f32; 3], yaw_deg: f32, pitch_deg: f32) -> [f32; 3] {
    let r = mat_mul(&rot_x(f64::from(pitch_deg).to_radians()), &rot_y(f64::from(yaw_deg).to_radians()));
    mat_vec(&r, n.map(f64::from)).map(|v| v as f32)
}

fn log_brightness(n: [f32; 3], light: &Light) -> f32 {
    let (se, ce) = light.elevation_deg.to_radians().sin_cos();
    let l = [0.0, -se, ce];
    let lambert = (n[0] * l[0] + n[1] * l[1] + n[2] * l[2]).max(0.0);
    (light.ambient + (1.0 - light.ambient) * lambert).ln()
}

fn main() {
    let csv = std::path::PathBuf::from(std::env::args().nth(1).expect("labels.csv"));
    let noise_scale: f32 = std::env::args().nth(2).map_or(1.0, |s| s.parse().expect("NOISE_SCALE is a number"));
    let dir = csv.parent().expect("folder").to_path_buf();
    let vision = VisionConfig { intra_threads: 1, ..VisionConfig::default() };
    let cfg = LivenessConfig::default();
    let pad = PadEvaluator::new(&vision, &cfg).expect("models");
    let text = std::fs::read_to_string(&csv).expect("csv");
    let mut challenges: BTreeMap<String, Vec<(usize, Pose, std::path::PathBuf)>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        if c.len() < 7 || c[4].is_empty() || c[2] != "rendered_still" {
            continue;
        }
        let pose: Pose = serde_json::from_value(serde_json::Value::String(c[6].to_string())).expect("pose");
        challenges.entry(c[4].to_string()).or_default().push((c[5].parse().expect("step"), pose, dir.join(c[0])));
    }
    let normals = region_normals();
    // Per challenge, its frames with a face, in step order: step, pose, head pose, cues.
    let mut measured: Vec<Vec<(usize, Pose, HeadPose, FrameCues)>> = Vec::new();
    for frames in challenges.values_mut() {
        frames.sort_by_key(|f| f.0);
        let mut with_face = Vec::new();
        for (step, pose, path) in frames.iter() {
            if let Some((head, cues)) = pad.measure(&std::fs::read(path).expect("frame")).expect("measured") {
                with_face.push((*step, *pose, head, cues));
            }
        }
        if with_face.first().is_some_and(|f| f.1 == Pose::Frontal) {
            measured.push(with_face);
        }
    }
    // Each challenge scored by the cue itself (`pad::challenge`, which picks the turned
    // steps), each turned frame's profile replaced by the frontal one plus the scaled
    // measured change plus `add(region, d_yaw, d_pitch)`; the statistic is the largest
    // per-step spread. Returns the sorted statistics and the number of steps scored.
    let score = |add: &dyn Fn(usize, f32, f32) -> f32| -> (Vec<f32>, usize) {
        let (mut v, mut steps) = (Vec::new(), 0);
        for frames in &measured {
            let (_, _, head0, cues0) = &frames[0];
            let moved: Vec<FrameCues> = frames
                .iter()
                .map(|(_, _, head, cues)| {
                    let (dy, dp) = (head.yaw - head0.yaw, head.pitch - head0.pitch);
                    let profile = cues0
                        .shading
                        .0
                        .iter()
                        .zip(&cues.shading.0)
                        .enumerate()
                        .map(|(r, (x, y))| {
                            if *x == i16::MIN || *y == i16::MIN {
                                i16::MIN
                            } else {
                                let change = noise_scale * f32::from(*y - *x) / 1024.0 + add(r, dy, dp);
                                x.saturating_add((change * 1024.0).round() as i16)
                            }
                        })
                        .collect();
                    FrameCues { shading: ShadingProfile(profile), ..cues.clone() }
                })
                .collect();
            let chosen: Vec<ChallengeFrame<'_>> = frames
                .iter()
                .zip(&moved)
                .map(|((step, pose, head, _), cues)| ChallengeFrame { step: *step, pose: *pose, head: *head, cues })
                .collect();
            let verdict = challenge(&chosen, &cfg.pad);
            steps += verdict.shading.len();
            if let Some(largest) = verdict.shading.iter().map(|(_, s)| *s).reduce(f32::max) {
                v.push(largest);
            }
        }
        v.sort_by(f32::total_cmp);
        (v, steps)
    };
    let q = |v: &[f32], p: f32| v[((v.len() - 1) as f32 * p).round() as usize];
    let below = |v: &[f32], t: f32| v.iter().filter(|x| **x < t).count() as f32 / v.len() as f32 * 100.0;
    let thresholds = [0.03f32, 0.045, 0.06, 0.08];
    let (renderings, steps) = score(&|_, _, _| 0.0);
    println!("{} challenges rendered from a still, {steps} turned steps, measured noise x{noise_scale}", renderings.len());
    println!("largest per-step spread (the shading cue's statistic): p10 / p50 / p90, and % below each threshold");
    println!("{:<66} {:>6} {:>6} {:>6}   {}", "", "p10", "p50", "p90", thresholds.map(|t| format!("<{t:<6}")).join(" "));
    let row = |name: &str, v: &[f32]| {
        println!(
            "{:<66} {:>6.3} {:>6.3} {:>6.3}   {}",
            name,
            q(v, 0.1),
            q(v, 0.5),
            q(v, 0.9),
            thresholds.map(|t| format!("{:>5.1} %", below(v, t))).join(" ")
        )
    };
    row("renderings (measured: noise only)", &renderings);
    for light in &LIGHTS {
        let (v, _) = score(&|r, dy, dp| log_brightness(turn(normals[r], dy, dp), light) - log_brightness(normals[r], light));
        row(&format!("real turn, simulated: {}", light.name), &v);
    }
}
