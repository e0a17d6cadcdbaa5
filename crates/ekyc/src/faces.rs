//! `ekyc faces` and `ekyc compare`.

use std::io::Write;
use std::path::Path;

use crate::settings::Settings;
use anyhow::{Context, Result};
use ekyc_vision::{AnalyzeOptions, Face, FacePipeline, cosine};
use serde::Serialize;

pub fn load_pipeline(settings: &Settings) -> Result<FacePipeline> {
    FacePipeline::new(settings.vision.clone()).context("loading the face models")
}

pub fn analyze_file(p: &FacePipeline, path: &Path, opts: AnalyzeOptions) -> Result<Vec<Face>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    p.analyze_bytes(&bytes, opts).with_context(|| path.display().to_string())
}

#[derive(Serialize)]
struct ImageFaces<'a> {
    image: String,
    width: u32,
    height: u32,
    /// Decoding plus analysis.
    milliseconds: f64,
    decode_milliseconds: f64,
    faces: &'a [Face],
}

pub fn faces(settings: &Settings, images: &[std::path::PathBuf], json: bool, embed: bool) -> Result<()> {
    let p = load_pipeline(settings)?;
    let opts = AnalyzeOptions { embed, largest_only: false };
    let mut out = std::io::stdout().lock();
    for path in images {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let start = std::time::Instant::now();
        let img = p.decode(&bytes).with_context(|| path.display().to_string())?;
        let decode_ms = start.elapsed().as_secs_f64() * 1000.0;
        let faces = p.analyze(&img, opts).with_context(|| path.display().to_string())?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        if json {
            let record = ImageFaces {
                image: path.display().to_string(),
                width: img.width(),
                height: img.height(),
                milliseconds: ms,
                decode_milliseconds: decode_ms,
                faces: &faces,
            };
            writeln!(out, "{}", serde_json::to_string(&record)?)?;
            continue;
        }
        writeln!(
            out,
            "{} ({}x{}): {} face(s) in {ms:.1} ms (decode {decode_ms:.1} ms)",
            path.display(),
            img.width(),
            img.height(),
            faces.len()
        )?;
        for (i, f) in faces.iter().enumerate() {
            let b = &f.bbox;
            writeln!(
                out,
                "  face {i}: box ({:.0},{:.0})-({:.0},{:.0}) score {:.3} flag {:.3}",
                b.x1, b.y1, b.x2, b.y2, f.score, f.face_flag
            )?;
            let pts: Vec<String> = f.landmarks.iter().map(|p| format!("({:.1},{:.1})", p.x, p.y)).collect();
            writeln!(out, "    points {}", pts.join(" "))?;
            writeln!(out, "    yaw {:+.1} pitch {:+.1} roll {:+.1} deg", f.pose.yaw, f.pose.pitch, f.pose.roll)?;
            let q = &f.quality;
            writeln!(
                out,
                "    quality: size {:.0} px, eyes {:.1} px, sharpness {:.1}, brightness {:.2}, outside {:.0} %",
                q.face_size_px,
                q.inter_eye_px,
                q.sharpness,
                q.brightness,
                q.outside_fraction * 100.0
            )?;
            if let Some(e) = &f.embedding {
                let head: Vec<String> = e.iter().take(8).map(|v| format!("{v:.4}")).collect();
                writeln!(out, "    embedding ({} dims): [{}, ...]", e.len(), head.join(", "))?;
            }
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct Comparison {
    image_a: String,
    image_b: String,
    similarity: f32,
    threshold: f32,
    same_person: bool,
}

pub fn compare(settings: &Settings, a: &Path, b: &Path, json: bool) -> Result<()> {
    let p = load_pipeline(settings)?;
    let opts = AnalyzeOptions { embed: true, largest_only: true };
    let largest = |path: &Path| -> Result<Vec<f32>> {
        let faces = analyze_file(&p, path, opts)?;
        faces.into_iter().next().and_then(|f| f.embedding).with_context(|| format!("{}: no face found", path.display()))
    };
    let (ea, eb) = (largest(a)?, largest(b)?);
    let mut out = std::io::stdout().lock();
    let similarity = cosine(&ea, &eb);
    let threshold = settings.vision.match_threshold;
    let c = Comparison {
        image_a: a.display().to_string(),
        image_b: b.display().to_string(),
        similarity,
        threshold,
        same_person: similarity >= threshold,
    };
    if json {
        writeln!(out, "{}", serde_json::to_string(&c)?)?;
    } else {
        writeln!(
            out,
            "similarity {:.4} (threshold {:.2}): {}",
            c.similarity,
            c.threshold,
            if c.same_person { "same person" } else { "different people" }
        )?;
    }
    Ok(())
}
