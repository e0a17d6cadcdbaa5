//! `ekyc eval pairs`: verification metrics on a deployment's own labelled photos, the way
//! to calibrate `vision.match_threshold` and the false-match estimates.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::settings::Settings;
use anyhow::{Context, Result, bail};
use ekyc_vision::metrics::{ScoredPair, VerificationReport, evaluate};
use ekyc_vision::{AnalyzeOptions, VisionError, cosine};
use serde::Serialize;

use crate::faces::load_pipeline;

/// A pair to compare: two files and whether they show the same person.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub a: String,
    pub b: String,
    pub genuine: bool,
}

fn parse_label(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "same" => Some(true),
        "no" | "false" | "0" | "different" => Some(false),
        _ => None,
    }
}

/// Reads either a pairs CSV (`file_x,file_y,label`) or a labels CSV (`file,identity,...`).
pub fn read_pairs(text: &str) -> Result<Vec<Pair>> {
    let rows: Vec<Vec<String>> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(',').map(|c| c.trim().to_string()).collect())
        .collect();
    let Some(first) = rows.first() else { bail!("the CSV has no rows") };
    let header: Vec<String> = first.iter().map(|c| c.to_ascii_lowercase()).collect();
    if let (Some(fi), Some(ii)) = (header.iter().position(|c| c == "file"), header.iter().position(|c| c == "identity")) {
        let people: Vec<(String, String)> =
            rows[1..].iter().filter_map(|r| Some((r.get(fi)?.clone(), r.get(ii)?.clone()))).filter(|(_, id)| !id.is_empty()).collect();
        let mut pairs = Vec::new();
        for (i, (fa, ia)) in people.iter().enumerate() {
            for (fb, ib) in &people[i + 1..] {
                pairs.push(Pair { a: fa.clone(), b: fb.clone(), genuine: ia == ib });
            }
        }
        return Ok(pairs);
    }
    let mut pairs = Vec::new();
    for (n, r) in rows.iter().enumerate() {
        if r.len() < 3 {
            bail!("line {}: expected file_x,file_y,label", n + 1);
        }
        match parse_label(&r[2]) {
            Some(genuine) => pairs.push(Pair { a: r[0].clone(), b: r[1].clone(), genuine }),
            None if n == 0 => {} // header
            None => bail!("line {}: label `{}` is not Yes/No, true/false or 1/0", n + 1, r[2]),
        }
    }
    Ok(pairs)
}

#[derive(Debug, Serialize)]
struct EvalOutput {
    images: usize,
    images_without_face: Vec<String>,
    pairs: usize,
    pairs_skipped: usize,
    seconds: f64,
    milliseconds_per_image: f64,
    #[serde(flatten)]
    report: VerificationReport,
}

pub fn pairs(settings: &Settings, csv: &Path, dir: &Path, json: bool) -> Result<()> {
    let text = std::fs::read_to_string(csv).with_context(|| format!("reading {}", csv.display()))?;
    let pairs = read_pairs(&text).with_context(|| csv.display().to_string())?;
    if pairs.is_empty() {
        bail!("{}: no pairs", csv.display());
    }
    let p = load_pipeline(settings)?;
    let start = Instant::now();
    let mut embeddings: BTreeMap<&str, Option<Vec<f32>>> = BTreeMap::new();
    for name in pairs.iter().flat_map(|q| [q.a.as_str(), q.b.as_str()]) {
        if embeddings.contains_key(name) {
            continue;
        }
        let path: PathBuf = dir.join(name);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let faces = match p.analyze_bytes(&bytes, AnalyzeOptions { embed: true, largest_only: true }) {
            Ok(f) => f,
            Err(VisionError::Decode(e)) => bail!("{}: {e}", path.display()),
            Err(e) => return Err(e).context(path.display().to_string()),
        };
        embeddings.insert(name, faces.into_iter().next().and_then(|f| f.embedding));
    }
    let seconds = start.elapsed().as_secs_f64();
    let scored: Vec<ScoredPair> = pairs
        .iter()
        .filter_map(|q| {
            let a = embeddings.get(q.a.as_str())?.as_ref()?;
            let b = embeddings.get(q.b.as_str())?.as_ref()?;
            Some(ScoredPair { score: cosine(a, b), genuine: q.genuine })
        })
        .collect();
    let report = evaluate(&scored, settings.vision.match_threshold, &[0.01, 0.001]);
    let result = EvalOutput {
        images: embeddings.len(),
        images_without_face: embeddings.iter().filter(|(_, e)| e.is_none()).map(|(n, _)| (*n).to_string()).collect(),
        pairs: scored.len(),
        pairs_skipped: pairs.len() - scored.len(),
        seconds,
        milliseconds_per_image: seconds * 1000.0 / embeddings.len().max(1) as f64,
        report,
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&result)?)?;
    } else {
        print_text(&mut out, &result)?;
    }
    Ok(())
}

fn print_text(out: &mut impl Write, o: &EvalOutput) -> std::io::Result<()> {
    let r = &o.report;
    writeln!(
        out,
        "images: {} ({} without a face{})",
        o.images,
        o.images_without_face.len(),
        if o.images_without_face.is_empty() { String::new() } else { format!(": {}", o.images_without_face.join(", ")) }
    )?;
    writeln!(
        out,
        "pairs: {} evaluated ({} genuine, {} impostor), {} skipped for want of a face",
        o.pairs, r.genuine_pairs, r.impostor_pairs, o.pairs_skipped
    )?;
    if let (Some(g), Some(i)) = (r.min_genuine, r.max_impostor) {
        writeln!(out, "lowest genuine similarity {g:.4}, highest impostor similarity {i:.4}")?;
    }
    writeln!(out, "accuracy at best threshold {:.4}: {:.2} %", r.best_threshold, r.best_accuracy * 100.0)?;
    writeln!(
        out,
        "accuracy at configured threshold {:.4}: {:.2} % (FAR {:.2} %, FRR {:.2} %)",
        r.configured_threshold,
        r.configured_accuracy * 100.0,
        r.configured_far * 100.0,
        r.configured_frr * 100.0
    )?;
    writeln!(out, "ROC AUC: {:.4}", r.roc_auc)?;
    writeln!(out, "EER: {:.2} % at threshold {:.4}", r.eer * 100.0, r.eer_threshold)?;
    for t in &r.tar_at_far {
        match (t.tar, t.threshold, &t.note) {
            (Some(tar), Some(th), _) => writeln!(out, "TAR at FAR {} %: {:.2} % (threshold {th:.4})", t.far * 100.0, tar * 100.0)?,
            (_, _, Some(note)) => writeln!(out, "TAR at FAR {} %: not resolved ({note})", t.far * 100.0)?,
            _ => {}
        }
    }
    writeln!(out, "time: {:.2} s, {:.1} ms per image", o.seconds, o.milliseconds_per_image)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_csv_shapes() {
        let p = read_pairs("file_x,file_y,label\na.jpg,b.jpg,Yes\na.jpg,c.jpg,0\nb.jpg,c.jpg,false\n").expect("parses");
        assert_eq!(p.len(), 3);
        assert!(p[0].genuine && !p[1].genuine && !p[2].genuine);
        assert!(read_pairs("a,b,maybe\nc,d,yes\n").is_err() || read_pairs("a,b,yes\nc,d,maybe\n").is_err());

        let l = read_pairs("file,identity,faces\na.jpg,x,1\nb.jpg,x,1\nc.jpg,y,1\nm.jpg,,2\n").expect("parses");
        assert_eq!(l.len(), 3);
        assert_eq!(l.iter().filter(|p| p.genuine).count(), 1);
    }
}
