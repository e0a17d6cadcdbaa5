//! The shipped models are intact and the configuration refuses altered ones.

use std::path::PathBuf;

use ekyc_vision::config::EmbedderConfig;
use ekyc_vision::{VisionConfig, VisionError};
use sha2::{Digest, Sha256};

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

#[test]
fn model_files_match_their_published_sha256() {
    let sums = std::fs::read_to_string(models_dir().join("SHA256SUMS")).expect("SHA256SUMS");
    let cfg = VisionConfig::default();
    let (faceres, sface_int8) = (EmbedderConfig::faceres(), EmbedderConfig::sface_int8());
    let mut configured = vec![&cfg.detector.model, &cfg.landmarks.model, &cfg.embedder.model, &faceres.model, &sface_int8.model];
    configured.extend(cfg.anti_spoofing.models.iter().map(|m| &m.model));
    let mut checked = 0;
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (hash, file) = line.split_once("  ").expect("sha256sum format");
        let bytes = std::fs::read(models_dir().join(file)).expect("model file present");
        assert_eq!(hex::encode(Sha256::digest(&bytes)), hash, "{file} differs from SHA256SUMS");
        let m = configured.iter().find(|m| m.path.to_str() == Some(file)).expect("every shipped model is configured");
        assert_eq!(m.sha256.as_deref(), Some(hash), "{file}: the registry pins another hash");
        checked += 1;
    }
    assert_eq!(checked, 7, "five face models and two anti-spoofing models");
    assert_eq!(cfg.embedder, EmbedderConfig::sface(), "SFace is the default embedder");
}

#[test]
fn every_embedder_in_the_registry_is_found_by_its_own_id() {
    let known = EmbedderConfig::known();
    for e in &known {
        assert_eq!(EmbedderConfig::by_id(&e.model.id).as_ref(), Some(e), "{}", e.model.id);
        // Templates of one model must never be compared with another's: ids and files differ.
        for other in known.iter().filter(|o| *o != e) {
            assert_ne!(other.model.id, e.model.id);
            assert_ne!(other.model.path, e.model.path);
        }
    }
    assert!(EmbedderConfig::by_id("no-such-model").is_none());
    // The int8 SFace is prepared exactly as the float one; only the file and id differ.
    let (f32, int8) = (EmbedderConfig::sface(), EmbedderConfig::sface_int8());
    assert_eq!((&f32.input, &f32.output, f32.margin, f32.add_mirror), (&int8.input, &int8.output, int8.margin, int8.add_mirror));
}

#[test]
fn the_int8_embedder_loads_and_stays_close_to_the_float_one() {
    let img = crate::common::decode(&ekyc_testkit::dataset::photo("obama_1.jpg").bytes());
    let embed = |embedder: EmbedderConfig| {
        let cfg = VisionConfig { embedder, intra_threads: 1, ..VisionConfig::default() };
        let p = ekyc_vision::FacePipeline::new(cfg).expect("loads");
        p.analyze(&img, ekyc_vision::AnalyzeOptions { embed: true, largest_only: true }).expect("runs")[0]
            .embedding
            .clone()
            .expect("embedding")
    };
    let (a, b) = (embed(EmbedderConfig::sface()), embed(EmbedderConfig::sface_int8()));
    // convert.py printed a smallest cosine of 0.978 over the calibration crops; a broken
    // quantisation (a wrong scale, a lost layer) lands far below.
    assert!(ekyc_vision::cosine(&a, &b) > 0.97, "cosine {}", ekyc_vision::cosine(&a, &b));
}

#[test]
fn a_model_with_another_hash_is_refused() {
    let mut cfg = VisionConfig::default();
    cfg.embedder.model.sha256 = Some("00".repeat(32));
    match ekyc_vision::FacePipeline::new(cfg) {
        Err(VisionError::Model { role, message, .. }) => {
            assert_eq!(role, "embedder");
            assert!(message.contains("sha256"), "{message}");
        }
        other => panic!("expected a model error, got {other:?}"),
    }
}

#[test]
fn a_missing_runtime_library_says_how_to_fix_it() {
    let err = ekyc_vision::runtime::find_library(Some(std::path::Path::new("/nonexistent/libonnxruntime.so"))).expect_err("missing");
    assert!(err.contains("scripts/setup.sh") && err.contains("ORT_DYLIB_PATH"), "{err}");
}
