//! `ekyc faces` (and its per-stage `--timings`) and `ekyc compare`.

use std::io::Write;
use std::path::Path;

use crate::settings::Settings;
use anyhow::{Context, Result};
use ekyc_vision::{AnalyzeOptions, Face, FacePipeline, cosine};
use serde::Serialize;

pub fn load_pipeline(settings: &Settings) -> Result<FacePipeline> {
    FacePipeline::new(settings.vision.clone()).context("loading the face models")
}

/// The pipeline as face matching runs it ([`ekyc_vision::VisionConfig::for_matching`]):
/// `ekyc compare` and `ekyc eval pairs` use it, so they score as facematch does.
pub fn load_matching_pipeline(settings: &Settings) -> Result<FacePipeline> {
    FacePipeline::new(settings.vision.for_matching()).context("loading the face models")
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
    let p = load_matching_pipeline(settings)?;
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

/// One image's timings: the median of each stage over the runs, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageTimings {
    pub image: String,
    pub width: u32,
    pub height: u32,
    /// Faces found (the same in every run: the pipeline is deterministic).
    pub faces: usize,
    pub runs: usize,
    /// Median milliseconds per stage, in pipeline order: decode, detect, mesh, align,
    /// quality, embed.
    pub stages_ms: Vec<(String, f64)>,
    /// Median of the runs' whole time (decode to embedding), which is not the sum of the
    /// stages' medians.
    pub total_ms: f64,
}

/// The stages `ekyc faces --timings` reports, in order.
pub const STAGES: [&str; 6] = ["decode", "detect", "mesh", "align", "quality", "embed"];

/// Median of `v` (the mean of the middle two for an even count); `NaN` when empty.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 }
}

/// One run's stage times and whole time, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    pub stages_ms: [f64; 6],
    pub total_ms: f64,
}

/// Times one decode and analysis (embedding included) of `bytes`.
pub fn time_one(p: &FacePipeline, bytes: &[u8]) -> Result<(Run, usize, (u32, u32))> {
    let start = std::time::Instant::now();
    let img = p.decode(bytes)?;
    let decode = start.elapsed();
    let mut t = ekyc_vision::StageTimes::default();
    let faces = p.analyze_timed(&img, AnalyzeOptions { embed: true, largest_only: false }, &mut t)?;
    let total_ms = start.elapsed().as_secs_f64() * 1000.0;
    let mut stages_ms = [0.0; 6];
    stages_ms[0] = decode.as_secs_f64() * 1000.0;
    for (slot, (_, d)) in stages_ms[1..].iter_mut().zip(t.stages()) {
        *slot = d.as_secs_f64() * 1000.0;
    }
    Ok((Run { stages_ms, total_ms }, faces.len(), (img.width(), img.height())))
}

/// Per-stage medians of `runs`.
pub fn summarise(image: String, (width, height): (u32, u32), faces: usize, runs: &[Run]) -> ImageTimings {
    let stages_ms = STAGES
        .iter()
        .enumerate()
        .map(|(k, name)| (name.to_string(), median(&runs.iter().map(|r| r.stages_ms[k]).collect::<Vec<_>>())))
        .collect();
    let total_ms = median(&runs.iter().map(|r| r.total_ms).collect::<Vec<_>>());
    ImageTimings { image, width, height, faces, runs: runs.len(), stages_ms, total_ms }
}

/// Across images: the median of the per-image medians, per stage and in all.
pub fn across(images: &[ImageTimings]) -> ImageTimings {
    let stages_ms = STAGES
        .iter()
        .enumerate()
        .map(|(k, name)| (name.to_string(), median(&images.iter().map(|i| i.stages_ms[k].1).collect::<Vec<_>>())))
        .collect();
    ImageTimings {
        image: format!("all {} images (median of the per-image medians)", images.len()),
        width: 0,
        height: 0,
        faces: images.iter().map(|i| i.faces).sum(),
        runs: images.first().map_or(0, |i| i.runs),
        stages_ms,
        total_ms: median(&images.iter().map(|i| i.total_ms).collect::<Vec<_>>()),
    }
}

/// `ekyc faces --timings`: every image decoded and analysed `repeat` times (after one
/// untimed warm-up run), the median per stage printed per image and over all images.
pub fn timings(settings: &Settings, images: &[std::path::PathBuf], repeat: usize, json: bool) -> Result<()> {
    let p = load_pipeline(settings)?;
    let mut out = std::io::stdout().lock();
    let v = &settings.vision;
    let setup = format!(
        "median ms of {repeat} runs; {} ONNX thread(s) per session; {} landmark passes; embedder {}{}",
        v.threads(),
        v.landmarks.passes,
        v.embedder.model.id,
        if v.embedder.add_mirror { " with mirror" } else { "" }
    );
    if !json {
        writeln!(out, "# {setup}")?;
        let head: Vec<String> = STAGES.iter().map(|s| format!("{s:>8}")).collect();
        writeln!(out, "{:<40} {:>9} {:>5} {} {:>8}", "image", "size", "faces", head.join(""), "total")?;
    }
    let mut all = Vec::with_capacity(images.len());
    for path in images {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        time_one(&p, &bytes).with_context(|| path.display().to_string())?;
        let mut runs = Vec::with_capacity(repeat);
        let mut shape = (0, (0, 0));
        for _ in 0..repeat {
            let (run, faces, size) = time_one(&p, &bytes).with_context(|| path.display().to_string())?;
            shape = (faces, size);
            runs.push(run);
        }
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        let t = summarise(name, shape.1, shape.0, &runs);
        write_timings(&mut out, &t, json)?;
        all.push(t);
    }
    if all.len() > 1 {
        write_timings(&mut out, &across(&all), json)?;
    }
    if json {
        writeln!(out, "{}", serde_json::json!({ "setup": setup }))?;
    }
    Ok(())
}

fn write_timings(out: &mut impl Write, t: &ImageTimings, json: bool) -> Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string(t)?)?;
        return Ok(());
    }
    let size = if t.width > 0 { format!("{}x{}", t.width, t.height) } else { String::new() };
    let cols: Vec<String> = t.stages_ms.iter().map(|(_, ms)| format!("{ms:>8.2}")).collect();
    writeln!(out, "{:<40} {:>9} {:>5} {} {:>8.2}", t.image, size, t.faces, cols.join(""), t.total_ms)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn summaries_take_each_stage_and_the_total_separately() {
        let run =
            |base: f64, total: f64| Run { stages_ms: [base, base + 1.0, base + 2.0, base + 3.0, base + 4.0, base + 5.0], total_ms: total };
        // The total's median comes from the totals, not from the stages.
        let t = summarise("a.jpg".into(), (640, 480), 1, &[run(1.0, 30.0), run(3.0, 10.0), run(2.0, 20.0)]);
        let names: Vec<&str> = t.stages_ms.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, STAGES);
        assert_eq!(t.stages_ms.iter().map(|(_, v)| *v).collect::<Vec<_>>(), vec![2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
        assert_eq!((t.total_ms, t.runs, t.faces), (20.0, 3, 1));
        let u = summarise("b.jpg".into(), (64, 48), 2, &[run(10.0, 50.0)]);
        let both = across(&[t, u.clone(), u]);
        assert_eq!(both.stages_ms[0].1, 10.0);
        assert_eq!((both.total_ms, both.faces), (50.0, 5));
    }
}
