//! `ekyc eval pairs`: verification error rates on labelled photos, the way to calibrate
//! `vision.match_threshold` and the false-match estimates of `facematch.calibration_file`.
//!
//! Words as in ISO/IEC 2382-37: a comparison of two photos of one person is *mated*, of
//! two people *non-mated*; FMR and FNMR are the shares of non-mated comparisons accepted
//! and of mated ones rejected. Every rate comes with its 95 % Clopper-Pearson interval
//! (the rule-of-three bound too when no error was seen), from [`ekyc_vision::stats`].

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::settings::Settings;
use anyhow::{Context, Result, bail};
use ekyc_vision::metrics::{OperatingPoint, ScoredPair, VerificationReport, evaluate};
use ekyc_vision::stats::Rate;
use ekyc_vision::{AnalyzeOptions, VisionError, cosine};
use serde::Serialize;

use crate::faces::load_matching_pipeline;

/// What the JSON output (the calibration file) is; facematch checks it.
pub const CALIBRATION_FORMAT: &str = "ekyc-eval-pairs/2";

/// A pair to compare: two files, whether they show the same person, and the group both
/// belong to (when the CSV names groups and the two agree).
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub a: String,
    pub b: String,
    pub genuine: bool,
    pub group: Option<String>,
}

fn parse_label(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "same" => Some(true),
        "no" | "false" | "0" | "different" => Some(false),
        _ => None,
    }
}

/// Reads either a pairs CSV (`file_x,file_y,label[,group]`) or a labels CSV
/// (`file,identity[,group],...`, every pair of its rows).
pub fn read_pairs(text: &str) -> Result<Vec<Pair>> {
    let rows: Vec<Vec<String>> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(',').map(|c| c.trim().to_string()).collect())
        .collect();
    let Some(first) = rows.first() else { bail!("the CSV has no rows") };
    let header: Vec<String> = first.iter().map(|c| c.to_ascii_lowercase()).collect();
    let column = |name: &str| header.iter().position(|c| c == name);
    let non_empty = |s: Option<&String>| s.filter(|g| !g.is_empty()).cloned();
    if let (Some(fi), Some(ii)) = (column("file"), column("identity")) {
        let gi = column("group");
        let people: Vec<(String, String, Option<String>)> = rows[1..]
            .iter()
            .filter_map(|r| Some((r.get(fi)?.clone(), r.get(ii)?.clone(), gi.and_then(|g| non_empty(r.get(g))))))
            .filter(|(_, id, _)| !id.is_empty())
            .collect();
        let mut pairs = Vec::new();
        for (i, (fa, ia, ga)) in people.iter().enumerate() {
            for (fb, ib, gb) in &people[i + 1..] {
                let group = ga.clone().filter(|g| Some(g) == gb.as_ref());
                pairs.push(Pair { a: fa.clone(), b: fb.clone(), genuine: ia == ib, group });
            }
        }
        return Ok(pairs);
    }
    let mut pairs = Vec::new();
    for (n, r) in rows.iter().enumerate() {
        if r.len() < 3 {
            bail!("line {}: expected file_x,file_y,label[,group]", n + 1);
        }
        match parse_label(&r[2]) {
            Some(genuine) => pairs.push(Pair { a: r[0].clone(), b: r[1].clone(), genuine, group: non_empty(r.get(3)) }),
            None if n == 0 => {} // header
            None => bail!("line {}: label `{}` is not Yes/No, true/false or 1/0", n + 1, r[2]),
        }
    }
    Ok(pairs)
}

/// The JSON output; it is also the calibration file `facematch.calibration_file` reads.
#[derive(Debug, Serialize)]
struct EvalOutput {
    format: &'static str,
    /// The embedder that made the scores: a calibration holds for this model only.
    model_id: String,
    images: usize,
    images_without_face: Vec<String>,
    pairs: usize,
    pairs_skipped: usize,
    seconds: f64,
    milliseconds_per_image: f64,
    #[serde(flatten)]
    report: VerificationReport,
    /// The same measures on the comparisons within each group (both photos in it).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    groups: BTreeMap<String, VerificationReport>,
}

pub fn pairs(settings: &Settings, csv: &Path, dir: &Path, json: bool, target_fmrs: &[f64]) -> Result<()> {
    if let Some(t) = target_fmrs.iter().find(|t| !(**t > 0.0 && **t < 1.0)) {
        bail!("--target-fmr {t}: a target false-match rate lies between 0 and 1 (0.001 = 0.1 %)");
    }
    let text = std::fs::read_to_string(csv).with_context(|| format!("reading {}", csv.display()))?;
    let pairs = read_pairs(&text).with_context(|| csv.display().to_string())?;
    if pairs.is_empty() {
        bail!("{}: no pairs", csv.display());
    }
    let p = load_matching_pipeline(settings)?;
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
    let scored: Vec<(ScoredPair, Option<&str>)> = pairs
        .iter()
        .filter_map(|q| {
            let a = embeddings.get(q.a.as_str())?.as_ref()?;
            let b = embeddings.get(q.b.as_str())?.as_ref()?;
            Some((ScoredPair { score: cosine(a, b), genuine: q.genuine }, q.group.as_deref()))
        })
        .collect();
    let threshold = settings.vision.match_threshold;
    let all: Vec<ScoredPair> = scored.iter().map(|(s, _)| *s).collect();
    let mut by_group: BTreeMap<&str, Vec<ScoredPair>> = BTreeMap::new();
    for (s, g) in &scored {
        if let Some(g) = g {
            by_group.entry(g).or_default().push(*s);
        }
    }
    let result = EvalOutput {
        format: CALIBRATION_FORMAT,
        model_id: settings.vision.embedder.model.id.clone(),
        images: embeddings.len(),
        images_without_face: embeddings.iter().filter(|(_, e)| e.is_none()).map(|(n, _)| (*n).to_string()).collect(),
        pairs: scored.len(),
        pairs_skipped: pairs.len() - scored.len(),
        seconds,
        milliseconds_per_image: seconds * 1000.0 / embeddings.len().max(1) as f64,
        report: evaluate(&all, threshold, target_fmrs),
        groups: by_group.into_iter().map(|(g, s)| (g.to_string(), evaluate(&s, threshold, target_fmrs))).collect(),
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&result)?)?;
    } else {
        print_text(&mut out, &result)?;
    }
    Ok(())
}

/// `12.34 % (5 of 100; 95 % CI 4.11-11.28 %)`, with the rule-of-three bound when no error
/// was seen.
fn rate(r: &Rate) -> String {
    let mut s = format!(
        "{:.2} % ({} of {}; {:.0} % CI {:.2}-{:.2} %)",
        r.rate * 100.0,
        r.errors,
        r.trials,
        r.confidence * 100.0,
        r.lower * 100.0,
        r.upper * 100.0
    );
    if let Some(bound) = r.rule_of_three() {
        s.push_str(&format!(", rule of three <= {:.2} %", bound * 100.0));
    }
    s
}

fn print_point(out: &mut impl Write, indent: &str, title: &str, p: &OperatingPoint) -> std::io::Result<()> {
    writeln!(out, "{indent}{title}: {:.4}", p.threshold)?;
    writeln!(out, "{indent}    FMR  {}", rate(&p.fmr))?;
    writeln!(out, "{indent}    FNMR {}", rate(&p.fnmr))
}

fn print_report(out: &mut impl Write, indent: &str, r: &VerificationReport) -> std::io::Result<()> {
    writeln!(out, "{indent}comparisons: {} mated, {} non-mated", r.genuine_pairs, r.impostor_pairs)?;
    if let (Some(g), Some(i)) = (r.min_genuine, r.max_impostor) {
        writeln!(out, "{indent}lowest mated similarity {g:.4}, highest non-mated similarity {i:.4}")?;
    }
    writeln!(out, "{indent}ROC AUC {:.4}; EER {:.2} % at threshold {:.4}", r.roc_auc, r.eer * 100.0, r.eer_threshold)?;
    print_point(out, indent, "at the configured threshold", &r.at_threshold)?;
    for t in &r.for_target_fmr {
        match &t.point {
            Some(p) => print_point(out, indent, &format!("threshold for FMR {} %", t.target_fmr * 100.0), p)?,
            None => writeln!(out, "{indent}threshold for FMR {} %: none", t.target_fmr * 100.0)?,
        }
        if let Some(note) = &t.note {
            writeln!(out, "{indent}    note: {note}")?;
        }
    }
    Ok(())
}

fn print_text(out: &mut impl Write, o: &EvalOutput) -> std::io::Result<()> {
    writeln!(out, "embedder: {}", o.model_id)?;
    writeln!(
        out,
        "images: {} ({} without a face{})",
        o.images,
        o.images_without_face.len(),
        if o.images_without_face.is_empty() { String::new() } else { format!(": {}", o.images_without_face.join(", ")) }
    )?;
    writeln!(out, "pairs: {} compared, {} skipped for want of a face", o.pairs, o.pairs_skipped)?;
    print_report(out, "", &o.report)?;
    for (g, r) in &o.groups {
        writeln!(out, "group {g} (both photos in it):")?;
        print_report(out, "  ", r)?;
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
        assert!(p.iter().all(|q| q.group.is_none()));
        assert!(read_pairs("a,b,maybe\nc,d,yes\n").is_err() || read_pairs("a,b,yes\nc,d,maybe\n").is_err());

        let l = read_pairs("file,identity,faces\na.jpg,x,1\nb.jpg,x,1\nc.jpg,y,1\nm.jpg,,2\n").expect("parses");
        assert_eq!(l.len(), 3);
        assert_eq!(l.iter().filter(|p| p.genuine).count(), 1);
    }

    #[test]
    fn groups_hold_only_pairs_within_them() {
        let p = read_pairs("a.jpg,b.jpg,yes,east-asian\na.jpg,c.jpg,no,\n").expect("parses");
        assert_eq!(p[0].group.as_deref(), Some("east-asian"));
        assert_eq!(p[1].group, None);

        // Every non-mated pair of the labels file is formed; a pair across groups is in none.
        let l = read_pairs("file,identity,group\na1,a,ea\na2,a,ea\nb1,b,ea\nc1,c,other\nd1,d,other\n").expect("parses");
        assert_eq!(l.len(), 10);
        assert_eq!(l.iter().filter(|p| !p.genuine).count(), 9);
        let in_ea: Vec<&Pair> = l.iter().filter(|p| p.group.as_deref() == Some("ea")).collect();
        assert_eq!(in_ea.len(), 3);
        assert_eq!(l.iter().filter(|p| p.group.as_deref() == Some("other")).count(), 1);
        assert_eq!(l.iter().filter(|p| p.group.is_none()).count(), 6);
    }
}
