//! The presentation-attack generators on real development photos, checked with the real
//! face models: prints lose chroma, AM halftone prints carry their screen's frequency,
//! screen replays with a bezel show the device's dark frame, the attacks stay faces the
//! pipeline finds, everything is deterministic in its seed, and `perturb` makes every
//! frame new while keeping its face.

use std::sync::OnceLock;

use ekyc_testkit::attacks::print::Halftone;
use ekyc_testkit::attacks::{PrintParams, ScreenParams, perturb, print, print_with, screen_replay, screen_with};
use ekyc_testkit::dataset::photo;
use ekyc_testkit::headturn::TurnableFace;
use ekyc_vision::{AnalyzeOptions, BBox, Face, FacePipeline, VisionConfig};
use image::RgbImage;

fn pipeline() -> &'static FacePipeline {
    static P: OnceLock<FacePipeline> = OnceLock::new();
    P.get_or_init(|| FacePipeline::new(VisionConfig::default()).expect("models load (run scripts/setup.sh first)"))
}

fn largest(img: &RgbImage) -> Option<Face> {
    pipeline().analyze(img, AnalyzeOptions { embed: false, largest_only: true }).expect("analysis runs").into_iter().next()
}

fn source(file: &str) -> (RgbImage, Face) {
    let img = pipeline().decode(&photo(file).bytes()).expect("decodes");
    let face = largest(&img).expect("the photo's face");
    (img, face)
}

/// Mean chroma (max - min channel, 0..1) of the colour seen over blocks of a sixteenth of
/// the face's width, over the central half of `b`: the saturation an eye sees, not that of
/// single halftone dots.
fn chroma(img: &RgbImage, b: BBox) -> f32 {
    let block = (b.width() / 16.0).max(1.0) as u32;
    let (x1, y1) = ((b.center().x - b.width() / 4.0).max(0.0) as u32, (b.center().y - b.height() / 4.0).max(0.0) as u32);
    let (x2, y2) =
        (((b.center().x + b.width() / 4.0) as u32).min(img.width()), ((b.center().y + b.height() / 4.0) as u32).min(img.height()));
    let (mut sum, mut n) = (0.0, 0);
    for by in (y1..y2.saturating_sub(block)).step_by(block as usize) {
        for bx in (x1..x2.saturating_sub(block)).step_by(block as usize) {
            let mut mean = [0.0f32; 3];
            for y in by..by + block {
                for x in bx..bx + block {
                    let p = img.get_pixel(x, y).0;
                    for c in 0..3 {
                        mean[c] += f32::from(p[c]) / (255.0 * (block * block) as f32);
                    }
                }
            }
            sum += mean.iter().copied().fold(0.0, f32::max) - mean.iter().copied().fold(1.0, f32::min);
            n += 1;
        }
    }
    sum / n.max(1) as f32
}

const PHOTOS: [&str; 4] = ["obama_1.jpg", "biden_2.jpg", "kit_harington_2.jpg", "rose_leslie_2.jpg"];

#[test]
fn prints_and_replays_are_faces_and_prints_lose_chroma() {
    let mut missed = Vec::new();
    for file in PHOTOS {
        let (img, face) = source(file);
        let original = chroma(&img, face.bbox);
        for seed in 0..4 {
            let p = print(&img, face.bbox, seed);
            match largest(&p.image) {
                Some(f) => {
                    let printed = chroma(&p.image, f.bbox);
                    assert!(printed < 0.9 * original, "{file} seed {seed} ({}): chroma {printed:.3} vs {original:.3}", p.method);
                }
                None => missed.push(format!("{file} print {seed}")),
            }
            let s = screen_replay(&img, face.bbox, seed);
            if largest(&s.image).is_none() {
                missed.push(format!("{file} screen {seed}"));
            }
        }
    }
    // An attack the pipeline cannot see is no attack on liveness at all; a few may fail
    // like a badly held print would, most must not.
    assert!(missed.len() <= 2, "no face found in {missed:?}");
}

/// Power of the luminance spectrum of a `n` x `n` patch at each integer radius (cycles per
/// patch), DC removed.
fn radial_spectrum(img: &RgbImage, cx: u32, cy: u32, n: usize) -> Vec<f64> {
    let lum: Vec<f64> = (0..n * n)
        .map(|k| {
            let p = img.get_pixel(cx - n as u32 / 2 + (k % n) as u32, cy - n as u32 / 2 + (k / n) as u32).0;
            0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])
        })
        .collect();
    let mean = lum.iter().sum::<f64>() / (n * n) as f64;
    // Separable DFT: rows, then columns, with a Hann window against edge leakage.
    let win: Vec<f64> = (0..n).map(|i| 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos()).collect();
    let mut rows = vec![(0.0, 0.0); n * n];
    for y in 0..n {
        for u in 0..n {
            let (mut re, mut im) = (0.0, 0.0);
            for x in 0..n {
                let a = -std::f64::consts::TAU * (u * x) as f64 / n as f64;
                let v = (lum[y * n + x] - mean) * win[x] * win[y];
                re += v * a.cos();
                im += v * a.sin();
            }
            rows[y * n + u] = (re, im);
        }
    }
    let mut power = vec![0.0; n];
    let mut count = vec![0usize; n];
    for u in 0..n {
        for v in 0..n {
            let (mut re, mut im) = (0.0, 0.0);
            for y in 0..n {
                let a = -std::f64::consts::TAU * (v * y) as f64 / n as f64;
                let (r, i) = rows[y * n + u];
                re += r * a.cos() - i * a.sin();
                im += r * a.sin() + i * a.cos();
            }
            let (fu, fv) = (if u > n / 2 { u as f64 - n as f64 } else { u as f64 }, if v > n / 2 { v as f64 - n as f64 } else { v as f64 });
            let r = fu.hypot(fv).round() as usize;
            if r < n {
                power[r] += re * re + im * im;
                count[r] += 1;
            }
        }
    }
    power.iter().zip(&count).map(|(p, &c)| p / c.max(1) as f64).collect()
}

/// Power at radius `r` against the mean of the radii 0.7 r and 1.4 r around it.
fn peak_ratio(spectrum: &[f64], r: usize) -> f64 {
    let at = |k: usize| spectrum[k - 1..=k + 1].iter().sum::<f64>() / 3.0;
    at(r) / ((at(r * 7 / 10) + at(r * 14 / 10)) / 2.0)
}

#[test]
fn an_am_halftone_print_carries_its_screen_frequency() {
    let (img, face) = source("obama_1.jpg");
    let n = 128;
    let period = 4.0;
    let mut params = PrintParams::random(0);
    params.halftone = Halftone::Am { period_px: period };
    params.frame = (640, 480);
    params.face_width = 0.4;
    params.face_centre = (0.5, 0.5);
    params.camera.blur_sigma = 0.5;
    let am = print_with(&img, face.bbox, &params, 0);
    params.halftone = Halftone::ErrorDiffusion { dot_px: 0.5 };
    let ed = print_with(&img, face.bbox, &params, 0);
    let r = (n as f32 / period).round() as usize;
    let (am_peak, ed_peak) = (peak_ratio(&radial_spectrum(&am, 320, 240, n), r), peak_ratio(&radial_spectrum(&ed, 320, 240, n), r));
    // The same face region straight from the photo, scaled as the print shows it.
    let scale = 0.4 * 640.0 / face.bbox.width();
    let photo = image::imageops::resize(
        &img,
        (img.width() as f32 * scale) as u32,
        (img.height() as f32 * scale) as u32,
        image::imageops::FilterType::Triangle,
    );
    let c = face.bbox.center();
    let photo_peak = peak_ratio(&radial_spectrum(&photo, (c.x * scale) as u32, (c.y * scale) as u32, n), r);
    assert!(
        am_peak > 3.0 && am_peak > 2.0 * ed_peak && am_peak > 2.0 * photo_peak,
        "peak at {r} cycles: AM {am_peak:.2}, error diffusion {ed_peak:.2}, photo {photo_peak:.2}"
    );
}

#[test]
fn a_screen_replay_with_a_bezel_shows_the_dark_frame() {
    let (img, face) = source("biden_2.jpg");
    let mut p = ScreenParams::random(0);
    let mut bezel = p.bezel.expect("even seeds frame the device");
    bezel.finger_radius = 0.0;
    bezel.colour = [0.02; 3];
    p.bezel = Some(bezel);
    p.glare = 0.0;
    p.perspective = 0.0;
    let shot = screen_with(&img, face.bbox, &p, 0);
    let (rw, rh) = (p.resolution.0 as f32, p.resolution.1 as f32);
    let (sin, cos) = p.rotation_deg.to_radians().sin_cos();
    let camera = |u: f32, v: f32| {
        let (du, dv) = ((u - rw / 2.0) * p.pitch(), (v - rh / 2.0) * p.pitch());
        (
            (p.screen_centre.0 * p.frame.0 as f32 + cos * du - sin * dv) as u32,
            (p.screen_centre.1 * p.frame.1 as f32 + sin * du + cos * dv) as u32,
        )
    };
    let luma = |(x, y): (u32, u32)| {
        let mut s = 0.0;
        for dy in 0..3 {
            for dx in 0..3 {
                let q = shot.get_pixel(x + dx - 1, y + dy - 1).0;
                s += (f32::from(q[0]) + f32::from(q[1]) + f32::from(q[2])) / 3.0;
            }
        }
        s / 9.0
    };
    let half = bezel.width / 2.0;
    for (side, at) in
        [("left", (-half, rh / 2.0)), ("right", (rw + half, rh / 2.0)), ("top", (rw / 2.0, -half)), ("bottom", (rw / 2.0, rh + half))]
    {
        let point = camera(at.0, at.1);
        assert!(point.0 > 0 && point.1 > 0 && point.0 < p.frame.0 - 1 && point.1 < p.frame.1 - 1, "{side} bezel outside the frame");
        assert!(luma(point) < 60.0, "{side} bezel at {point:?} is not dark: {:.0}", luma(point));
    }
    let face_in_shot = largest(&shot).expect("the face on the screen");
    let (fx, fy) = (face_in_shot.bbox.center().x, face_in_shot.bbox.center().y);
    let (l, r) = (camera(0.0, rh / 2.0), camera(rw, rh / 2.0));
    assert!(fx > l.0 as f32 && fx < r.0 as f32, "the face ({fx}, {fy}) is on the screen between x {} and {}", l.0, r.0);
}

#[test]
fn attacks_are_deterministic_in_their_seed() {
    let (img, face) = source("rose_leslie_2.jpg");
    assert_eq!(print(&img, face.bbox, 5), print(&img, face.bbox, 5));
    assert_ne!(print(&img, face.bbox, 5).image, print(&img, face.bbox, 7).image);
    assert_eq!(screen_replay(&img, face.bbox, 4), screen_replay(&img, face.bbox, 4));
    assert_eq!(perturb(&img, 3).expect("jpeg"), perturb(&img, 3).expect("jpeg"));
}

#[test]
fn perturb_makes_every_frame_new_and_keeps_its_face() {
    let face = TurnableFace::from_bytes(pipeline(), &photo("kit_harington_2.jpg").bytes()).expect("a face");
    let frame = face.turned(20.0, 0.0);
    let reference = largest(&frame).expect("the rendered face");
    let decoded: Vec<(Vec<u8>, RgbImage)> = (1..=3)
        .map(|seed| {
            let bytes = perturb(&frame, seed).expect("jpeg");
            let img = image::load_from_memory(&bytes).expect("decodes").to_rgb8();
            (bytes, img)
        })
        .collect();
    for (i, (bytes, img)) in decoded.iter().enumerate() {
        assert_eq!(img.dimensions(), frame.dimensions());
        let same = img.pixels().zip(frame.pixels()).filter(|(a, b)| a == b).count();
        assert!(same * 10 < frame.pixels().len(), "frame {i}: {same} pixels unchanged");
        for (other, _) in &decoded[i + 1..] {
            assert_ne!(bytes, other);
        }
        let f = largest(img).expect("the face survives perturbation");
        assert!((f.pose.yaw - reference.pose.yaw).abs() < 3.0, "yaw {} vs {}", f.pose.yaw, reference.pose.yaw);
        assert!((f.pose.pitch - reference.pose.pitch).abs() < 3.0, "pitch {} vs {}", f.pose.pitch, reference.pose.pitch);
    }
    for (a, b) in [(0, 1), (1, 2)] {
        let same = decoded[a].1.pixels().zip(decoded[b].1.pixels()).filter(|(p, q)| p == q).count();
        assert!(same * 10 < frame.pixels().len(), "frames {a} and {b} share {same} pixels");
    }
}
