//! Writes the labelled presentation-attack set for `ekyc eval pad` (see
//! `ekyc_testkit::pad_set`): bona fide development photos, prints, screen replays and
//! challenges rendered from one still, with `labels.csv`.
//!
//! `cargo run --release -p ekyc-testkit --bin ekyc-pad-set -- --faces ../shared/faces --out DIR [--seeds N]`
//!
//! The images are derived from the development photos: write them outside the repository.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use ekyc_testkit::pad_set::{SetOptions, write_set};
use ekyc_vision::{FacePipeline, VisionConfig};

const USAGE: &str = "usage: ekyc-pad-set --faces DIR --out DIR [--seeds N]";

fn parse(args: &[String]) -> Result<SetOptions, String> {
    let (mut faces, mut out, mut seeds) = (None, None, 3u64);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value; {USAGE}"));
        match a.as_str() {
            "--faces" => faces = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--seeds" => seeds = value()?.parse().map_err(|e| format!("--seeds: {e}"))?,
            other => return Err(format!("unknown argument `{other}`; {USAGE}")),
        }
    }
    Ok(SetOptions { faces: faces.ok_or(USAGE)?, out: out.ok_or(USAGE)?, seeds })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let start = Instant::now();
    let result = FacePipeline::new(VisionConfig::default())
        .map_err(|e| format!("loading the face models (run ./scripts/setup.sh): {e}"))
        .and_then(|p| write_set(&p, &options, |line| eprintln!("{line}")).map_err(|e| e.to_string()));
    match result {
        Ok(rows) => {
            let attacks = rows.iter().filter(|r| r.attack).count();
            println!(
                "wrote {} images ({} bona fide, {attacks} attack) and labels.csv to {} in {:.1} s",
                rows.len(),
                rows.len() - attacks,
                options.out.display(),
                start.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
