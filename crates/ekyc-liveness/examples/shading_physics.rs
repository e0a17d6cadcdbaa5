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
use ekyc_liveness::pad::{PadEvaluator, ShadingProfile, region_frames, shading_spread};
use ekyc_vision::{CANONICAL_FACE, VisionConfig};

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
    let (sy, cy) = yaw_deg.to_radians().sin_cos();
    let (sp, cp) = pitch_deg.to_radians().sin_cos();
    let a = [n[0] * cy + n[2] * sy, n[1], -n[0] * sy + n[2] * cy];
    [a[0], a[1] * cp - a[2] * sp, a[1] * sp + a[2] * cp]
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
    // Per challenge, per turned step: the measured profiles and the measured turn.
    let mut measured: Vec<Vec<(ShadingProfile, ShadingProfile, f32, f32)>> = Vec::new();
    for frames in challenges.values_mut() {
        frames.sort_by_key(|f| f.0);
        let cues: Vec<_> =
            frames.iter().map(|(_, pose, path)| (*pose, pad.measure(&std::fs::read(path).expect("frame")).expect("measured"))).collect();
        let Some((Pose::Frontal, Some((head0, cues0)))) = cues.first() else { continue };
        let steps: Vec<_> = cues[1..]
            .iter()
            .filter_map(|(pose, m)| {
                let (head, c) = m.as_ref()?;
                let (dy, dp) = (head.yaw - head0.yaw, head.pitch - head0.pitch);
                (*pose != Pose::Frontal && dy.abs().max(dp.abs()) >= cfg.pad.shading_min_turn_deg)
                    .then(|| (cues0.shading.clone(), c.shading.clone(), dy, dp))
            })
            .collect();
        if !steps.is_empty() {
            measured.push(steps);
        }
    }
    // The cue's statistic: the largest spread over the turned steps.
    let score = |add: &dyn Fn(usize, f32, f32) -> f32| -> Vec<f32> {
        let mut v: Vec<f32> = measured
            .iter()
            .filter_map(|steps| {
                steps
                    .iter()
                    .filter_map(|(a, b, dy, dp)| {
                        // The frontal profile plus the scaled measured change plus the added one.
                        let moved = ShadingProfile(
                            a.0.iter()
                                .zip(&b.0)
                                .enumerate()
                                .map(|(r, (x, y))| {
                                    if *x == i16::MIN || *y == i16::MIN {
                                        i16::MIN
                                    } else {
                                        let change = noise_scale * f32::from(*y - *x) / 1024.0 + add(r, *dy, *dp);
                                        x.saturating_add((change * 1024.0).round() as i16)
                                    }
                                })
                                .collect(),
                        );
                        shading_spread(a, &moved)
                    })
                    .reduce(f32::max)
            })
            .collect();
        v.sort_by(f32::total_cmp);
        v
    };
    let q = |v: &[f32], p: f32| v[((v.len() - 1) as f32 * p).round() as usize];
    let below = |v: &[f32], t: f32| v.iter().filter(|x| **x < t).count() as f32 / v.len() as f32 * 100.0;
    let thresholds = [0.03f32, 0.045, 0.06, 0.08];
    println!(
        "{} challenges rendered from a still, {} turned steps, measured noise x{noise_scale}",
        measured.len(),
        measured.iter().map(Vec::len).sum::<usize>()
    );
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
    row("renderings (measured: noise only)", &score(&|_, _, _| 0.0));
    for light in &LIGHTS {
        let v = score(&|r, dy, dp| log_brightness(turn(normals[r], dy, dp), light) - log_brightness(normals[r], light));
        row(&format!("real turn, simulated: {}", light.name), &v);
    }
}
