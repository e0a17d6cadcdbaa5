//! The `ekyc` binary as a user runs it: real models, real photos, exit codes and one-line
//! errors.

use std::path::PathBuf;
use std::process::{Command, Output};

use ekyc_testkit::dataset::{faces_dir, photo};
use serde_json::Value;

fn ekyc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ekyc")).args(args).output().expect("ekyc runs")
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("valid JSON on stdout")
}

fn path(file: &str) -> String {
    photo(file).path().display().to_string()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ekyc-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The error is one line on stderr starting with `error:` and the exit code is non-zero.
fn assert_one_line_error(out: &Output, needle: &str) {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
}

#[test]
fn compare_decides_same_and_different_people() {
    let same = json(&ekyc(&["compare", &path("obama_1.jpg"), &path("obama_3.jpg"), "--json"]));
    assert_eq!(same["same_person"], true);
    let diff = json(&ekyc(&["compare", &path("obama_1.jpg"), &path("biden_2.jpg"), "--json"]));
    assert_eq!(diff["same_person"], false);
    assert!(same["similarity"].as_f64() > diff["similarity"].as_f64());
    // The configured threshold is the one reported (the compiled-in default for SFace).
    let configured = f64::from(ekyc_vision::VisionConfig::default().match_threshold);
    assert!(same["threshold"].as_f64().is_some_and(|t| (t - configured).abs() < 1e-6), "{same}");
    let text = ekyc(&["compare", &path("rose_leslie_1.jpg"), &path("rose_leslie_2.jpg")]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("same person"));
}

#[test]
fn faces_lists_every_face_with_pose_and_quality() {
    let out = ekyc(&["faces", &path("multi_two_people.jpg"), &path("obama_2.jpg"), "--json", "--embed"]);
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["faces"].as_array().map(Vec::len), Some(2));
    let face = &lines[1]["faces"][0];
    assert_eq!(face["landmarks"].as_array().map(Vec::len), Some(5));
    assert!(face["pose"]["yaw"].as_f64().is_some_and(|y| y < -8.0), "{face}");
    assert!(face["quality"]["face_size_px"].as_f64().is_some_and(|s| s > 100.0));
    assert_eq!(face["embedding"].as_array().map(Vec::len), Some(128));
    let plain = ekyc(&["faces", &path("obama_1.jpg")]);
    let text = String::from_utf8_lossy(&plain.stdout);
    assert!(text.contains("1 face(s)") && text.contains("yaw") && !text.contains("embedding"), "{text}");
}

#[test]
fn faces_timings_report_every_stage_per_image_and_over_all() {
    let out =
        ekyc(&["faces", "--timings", "--repeat", "3", "--for-matching", "--json", &path("obama_1.jpg"), &path("multi_two_people.jpg")]);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    // Two images, the summary over both, and the set-up line.
    assert_eq!(lines.len(), 4, "{lines:?}");
    let stages = ["decode", "detect", "mesh", "align", "quality", "embed"];
    for (line, faces) in lines[..3].iter().zip([1, 2, 3]) {
        assert_eq!(line["faces"], faces, "{line}");
        assert_eq!(line["runs"], 3, "{line}");
        let got: Vec<(&str, f64)> = line["stages_ms"]
            .as_array()
            .expect("stages")
            .iter()
            .map(|p| (p[0].as_str().expect("name"), p[1].as_f64().expect("ms")))
            .collect();
        assert_eq!(got.iter().map(|(n, _)| *n).collect::<Vec<_>>(), stages, "{line}");
        // Every stage ran (the models take milliseconds; quality is tiny but not free).
        assert!(got.iter().all(|(_, ms)| *ms > 0.0), "{line}");
        // The whole includes the stages: its median cannot be below the largest stage's.
        let total = line["total_ms"].as_f64().expect("total");
        assert!(got.iter().all(|(_, ms)| *ms <= total), "{line}");
    }
    // Face matching's two landmark passes are what ran.
    assert!(
        lines[3]["setup"].as_str().is_some_and(|s| s.contains("2 landmark passes") && s.contains("median ms of 3 runs")),
        "{}",
        lines[3]
    );
    let refused = ekyc(&["faces", "--repeat", "3", &path("obama_1.jpg")]);
    assert!(!refused.status.success(), "--repeat without --timings is refused");
}

#[test]
fn eval_pairs_reports_metrics_from_labels_and_from_pairs() {
    let dir = faces_dir();
    let labels = dir.join("labels.csv");
    let r = json(&ekyc(&["eval", "pairs", &labels.display().to_string(), &dir.display().to_string(), "--json"]));
    assert_eq!(r["roc_auc"].as_f64(), Some(1.0));
    assert_eq!(r["model_id"].as_str(), Some("sface-opencv-2021dec-f32"), "the calibration names its embedder");
    assert_eq!(r["at_threshold"]["fmr"]["errors"].as_u64(), Some(0));
    assert_eq!(r["at_threshold"]["fnmr"]["errors"].as_u64(), Some(0));
    assert_eq!(r["images_without_face"].as_array().map(Vec::len), Some(0));
    let genuine = r["genuine_pairs"].as_u64().expect("count");
    let impostor = r["impostor_pairs"].as_u64().expect("count");
    assert_eq!(genuine + impostor, r["pairs"].as_u64().expect("count"));
    // FMR 1 % is resolvable from the labels' non-mated pairs only when there are 300.
    let one = &r["for_target_fmr"][0];
    assert_eq!(one["target_fmr"].as_f64(), Some(0.01));
    assert!(one["point"]["threshold"].as_f64().is_some());
    assert_eq!(one["note"].is_null(), impostor >= 300);
    assert!(r["for_target_fmr"][1]["note"].as_str().is_some_and(|n| n.contains("at least 3000")));

    let tmp = temp_dir("pairs");
    let csv = tmp.join("pairs.csv");
    std::fs::write(&csv, "file_x,file_y,label\nobama_1.jpg,obama_2.jpg,Yes\nobama_1.jpg,biden_1.jpg,No\nrose_leslie_1.jpg,rose_leslie_2.jpg,1\nkit_harington_1.jpg,alex_lacamoire_1.png,false\n").expect("write");
    let r = json(&ekyc(&["eval", "pairs", &csv.display().to_string(), &dir.display().to_string(), "--json"]));
    assert_eq!((r["genuine_pairs"].as_u64(), r["impostor_pairs"].as_u64()), (Some(2), Some(2)));
    assert_eq!(r["roc_auc"].as_f64(), Some(1.0));
    let text = ekyc(&["eval", "pairs", &csv.display().to_string(), &dir.display().to_string(), "--target-fmr", "0.05"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("ROC AUC") && text.contains("EER") && text.contains("threshold for FMR 5 %"), "{text}");
    assert!(text.contains("FMR  0.00 % (0 of 2; 95 % CI 0.00-84.19 %)"), "{text}");
    // A group column: each group is reported on the pairs within it.
    let grouped = tmp.join("grouped.csv");
    std::fs::write(&grouped, "obama_1.jpg,obama_2.jpg,yes,g1\nobama_1.jpg,biden_1.jpg,no,g1\nrose_leslie_1.jpg,rose_leslie_2.jpg,yes,g2\nkit_harington_1.jpg,alex_lacamoire_1.png,no,\n").expect("write");
    let r = json(&ekyc(&["eval", "pairs", &grouped.display().to_string(), &dir.display().to_string(), "--json"]));
    assert_eq!((r["genuine_pairs"].as_u64(), r["impostor_pairs"].as_u64()), (Some(2), Some(2)));
    assert_eq!((r["groups"]["g1"]["genuine_pairs"].as_u64(), r["groups"]["g1"]["impostor_pairs"].as_u64()), (Some(1), Some(1)));
    assert_eq!((r["groups"]["g2"]["genuine_pairs"].as_u64(), r["groups"]["g2"]["impostor_pairs"].as_u64()), (Some(1), Some(0)));
    let bad = ekyc(&["eval", "pairs", &csv.display().to_string(), &dir.display().to_string(), "--target-fmr", "5"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("between 0 and 1"));
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn errors_are_one_clear_line_and_a_failure_exit() {
    let tmp = temp_dir("errors");
    let text = tmp.join("notes.jpg");
    std::fs::write(&text, "this is not a photo").expect("write");
    assert_one_line_error(&ekyc(&["faces", &text.display().to_string()]), "unsupported image format");
    assert_one_line_error(&ekyc(&["faces", "/nonexistent/photo.jpg"]), "reading /nonexistent/photo.jpg");

    let blank = tmp.join("blank.png");
    image::RgbImage::from_pixel(200, 200, image::Rgb([200, 200, 200])).save(&blank).expect("write");
    assert_one_line_error(&ekyc(&["compare", &blank.display().to_string(), &path("obama_1.jpg")]), "no face found");

    let bad_csv = tmp.join("bad.csv");
    std::fs::write(&bad_csv, "a.jpg,b.jpg,yes\nc.jpg,d.jpg,perhaps\n").expect("write");
    assert_one_line_error(&ekyc(&["eval", "pairs", &bad_csv.display().to_string(), "."]), "line 2");

    let bad_cfg = tmp.join("bad.toml");
    std::fs::write(&bad_cfg, "[vision]\nmatch_threshold = \"high\"\n").expect("write");
    assert_one_line_error(&ekyc(&["--config", &bad_cfg.display().to_string(), "faces", &path("obama_1.jpg")]), "settings");
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn serve_refuses_an_unknown_service() {
    let out = ekyc(&["serve", "--service", "billing"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown service `billing`"));
}

/// Runs `ekyc serve ARGS` with models that cannot load, on free ports; its exit status, or
/// None when it was still running after a minute (and was killed).
fn serve_without_models(args: &[&str], name: &str) -> (Option<std::process::ExitStatus>, String) {
    let tmp = temp_dir(name);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ekyc"))
        .arg("serve")
        .args(args)
        .env("EKYC__VISION__MODELS_DIR", tmp.join("no-models"))
        .env("EKYC__ORCHESTRATOR__KEYS_DIR", tmp.join("keys"))
        .env("EKYC__SERVER__METRICS_PORT", "0")
        .env("EKYC__SERVER__ORCHESTRATOR_PORT", "0")
        .env("EKYC__SERVER__LIVENESS_PORT", "0")
        .env("EKYC__SERVER__DOCUMENT_PORT", "0")
        .env("EKYC__SERVER__FACEMATCH_PORT", "0")
        // The page's fixed port (8080) is not what these tests are about.
        .env("EKYC__WEB__ENABLED", "false")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ekyc runs");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("waits") {
            break Some(s);
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    let _ = std::fs::remove_dir_all(tmp);
    (status, err)
}

#[test]
fn serve_exits_non_zero_when_models_cannot_load() {
    // Kubernetes restarts a container that exits; one that answers "still loading" forever
    // would never be restarted.
    let (status, err) = serve_without_models(&["--service", "facematch"], "serve-facematch");
    let status = status.unwrap_or_else(|| panic!("still serving after a minute; stderr: {err}"));
    assert!(!status.success(), "{err}");
    assert!(err.contains("error: facematch") && err.contains("cannot start"), "{err}");
    let (status, err) = serve_without_models(&[], "serve-all");
    let status = status.unwrap_or_else(|| panic!("all in one still serving after a minute; stderr: {err}"));
    assert!(!status.success(), "{err}");
    assert!(err.contains("cannot start"), "{err}");
}
