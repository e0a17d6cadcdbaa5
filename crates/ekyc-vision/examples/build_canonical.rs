//! Builds the canonical frontal face used for head pose (`src/canonical.rs`) from FaceMesh
//! output on photos of people facing the camera.
//!
//! ```text
//! cargo run --release -p ekyc-vision --example build_canonical -- ../shared/faces > crates/ekyc-vision/src/canonical.rs
//! ```
//!
//! Method: every single, uncut face in `labels.csv` is meshed; the meshes are centred,
//! scaled to unit RMS and brought together by generalised Procrustes analysis; the mean is
//! turned to the photos' average orientation, its left-right axis is aligned with x by the
//! known symmetric landmark pairs, and it is made exactly symmetric by averaging it with its
//! mirror image. Pitch zero is thus the average head pitch of the photos.

use std::path::PathBuf;

use ekyc_vision::geometry::{Mat3, fit_rotation, mat_vec};
use ekyc_vision::pipeline::{EYE_RING_IMAGE_LEFT, EYE_RING_IMAGE_RIGHT, MOUTH_IMAGE_LEFT, MOUTH_IMAGE_RIGHT};
use ekyc_vision::{FacePipeline, VisionConfig};

type Shape = Vec<[f64; 3]>;

fn normalise(s: &mut Shape) {
    let n = s.len() as f64;
    let c = s.iter().fold([0.0; 3], |a, p| [a[0] + p[0], a[1] + p[1], a[2] + p[2]]).map(|v| v / n);
    s.iter_mut().for_each(|p| *p = [p[0] - c[0], p[1] - c[1], p[2] - c[2]]);
    let rms = (s.iter().map(|p| p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sum::<f64>() / n).sqrt();
    s.iter_mut().for_each(|p| *p = p.map(|v| v / rms));
}

fn rotate(s: &Shape, r: &Mat3) -> Shape {
    s.iter().map(|p| mat_vec(r, *p)).collect()
}

fn mean(shapes: &[Shape]) -> Shape {
    let n = shapes.len() as f64;
    (0..shapes[0].len()).map(|i| [0, 1, 2].map(|k| shapes.iter().map(|s| s[i][k]).sum::<f64>() / n)).collect()
}

/// Rotation log map (axis * angle) and its inverse, to average rotations.
fn log_rot(r: &Mat3) -> [f64; 3] {
    let cos = ((r[0][0] + r[1][1] + r[2][2] - 1.0) / 2.0).clamp(-1.0, 1.0);
    let a = cos.acos();
    if a < 1e-9 {
        return [0.0; 3];
    }
    let k = a / (2.0 * a.sin());
    [(r[2][1] - r[1][2]) * k, (r[0][2] - r[2][0]) * k, (r[1][0] - r[0][1]) * k]
}

fn exp_rot(v: [f64; 3]) -> Mat3 {
    let a = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    if a < 1e-12 {
        return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    }
    let (x, y, z) = (v[0] / a, v[1] / a, v[2] / a);
    let (s, c) = a.sin_cos();
    let t = 1.0 - c;
    [
        [t * x * x + c, t * x * y - s * z, t * x * z + s * y],
        [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
        [t * x * z - s * y, t * y * z + s * x, t * z * z + c],
    ]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: build_canonical FACES_DIR")?);
    let pipeline = FacePipeline::new(VisionConfig::default())?;
    let labels = std::fs::read_to_string(dir.join("labels.csv"))?;
    let mut shapes: Vec<Shape> = Vec::new();
    let mut used = Vec::new();
    for line in labels.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        let (file, faces, notes) = (cols[0], cols.get(2).copied().unwrap_or(""), cols.get(3).copied().unwrap_or(""));
        if faces != "1" || notes.contains("cut") || file.contains("partial") {
            continue;
        }
        let img = pipeline.decode(&std::fs::read(dir.join(file))?)?;
        let meshed = pipeline.detect_and_mesh(&img)?;
        let Some((_, mesh)) = meshed.first() else { continue };
        let mut s: Shape = mesh.points.iter().map(|p| p.map(f64::from)).collect();
        normalise(&mut s);
        shapes.push(s);
        used.push(file.to_string());
    }
    if shapes.len() < 3 {
        return Err("fewer than 3 usable faces".into());
    }
    let w = vec![1.0; shapes[0].len()];

    // Generalised Procrustes analysis.
    let mut m = shapes[0].clone();
    for _ in 0..10 {
        let aligned: Vec<Shape> = shapes.iter().map(|s| rotate(s, &fit_rotation(s, &m, &w))).collect();
        m = mean(&aligned);
        normalise(&mut m);
    }
    // Turn the mean to the photos' average orientation.
    let n = shapes.len() as f64;
    let avg =
        shapes.iter().map(|s| log_rot(&fit_rotation(&m, s, &w))).fold([0.0; 3], |a, v| [a[0] + v[0] / n, a[1] + v[1] / n, a[2] + v[2] / n]);
    m = rotate(&m, &exp_rot(avg));

    // Align the left-right axis with x by the known symmetric pairs.
    let mut pairs: Vec<(usize, usize)> = EYE_RING_IMAGE_LEFT.iter().copied().zip(EYE_RING_IMAGE_RIGHT).collect();
    pairs.push((MOUTH_IMAGE_LEFT, MOUTH_IMAGE_RIGHT));
    let mut axis = [0.0; 3];
    for &(a, b) in &pairs {
        for k in 0..3 {
            axis[k] += m[b][k] - m[a][k];
        }
    }
    let len = (axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2]).sqrt();
    let axis = axis.map(|v| v / len);
    // Minimal rotation taking `axis` to +x: about axis x (+x), by the angle between them.
    let cross = [0.0, axis[2], -axis[1]];
    let sin = (cross[1] * cross[1] + cross[2] * cross[2]).sqrt();
    let angle = sin.atan2(axis[0]);
    let r = if sin < 1e-12 { exp_rot([0.0; 3]) } else { exp_rot(cross.map(|v| v / sin * angle)) };
    m = rotate(&m, &r);
    eprintln!("residual roll/yaw removed: {:.2} deg", angle.to_degrees());

    // Mirror correspondence by nearest neighbour, then symmetrise.
    let mirror = |p: [f64; 3]| [-p[0], p[1], p[2]];
    let cx = pairs.iter().map(|&(a, b)| (m[a][0] + m[b][0]) / 2.0).sum::<f64>() / pairs.len() as f64;
    m.iter_mut().for_each(|p| p[0] -= cx);
    let perm: Vec<usize> = m
        .iter()
        .map(|p| {
            let q = mirror(*p);
            (0..m.len()).min_by(|&i, &j| dist2(m[i], q).total_cmp(&dist2(m[j], q))).unwrap_or(0)
        })
        .collect();
    let involutive = (0..perm.len()).filter(|&i| perm[perm[i]] == i).count();
    for &(a, b) in &pairs {
        if perm[a] != b {
            eprintln!("warning: nearest mirror of {a} is {} (expected {b})", perm[a]);
        }
    }
    eprintln!("mirror map: {involutive} of {} points map back to themselves", perm.len());
    let sym: Shape = (0..m.len())
        .map(|i| {
            let q = mirror(m[perm[i]]);
            [0.5 * (m[i][0] + q[0]), 0.5 * (m[i][1] + q[1]), 0.5 * (m[i][2] + q[2])]
        })
        .collect();

    println!("//! The canonical frontal face for head pose: 468 FaceMesh points (x right, y down,");
    println!("//! z away from the camera; unit RMS radius), generated by");
    println!("//! `cargo run --release -p ekyc-vision --example build_canonical -- ../shared/faces`");
    println!("//! from FaceMesh output on {} photos ({}).", used.len(), used.join(", "));
    println!("//! Exactly left-right symmetric; pitch zero is the photos' average head pitch.");
    println!();
    println!("/// 468 points in FaceMesh order.");
    println!("#[rustfmt::skip]");
    println!("pub const CANONICAL_FACE: [[f32; 3]; 468] = [");
    for p in &sym {
        println!("    [{:.5}, {:.5}, {:.5}],", p[0], p[1], p[2]);
    }
    println!("];");
    Ok(())
}

fn dist2(a: [f64; 3], b: [f64; 3]) -> f64 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)
}
