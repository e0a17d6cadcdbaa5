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
    let faceres = EmbedderConfig::faceres();
    let mut configured = vec![&cfg.detector.model, &cfg.landmarks.model, &cfg.embedder.model, &faceres.model];
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
    assert_eq!(checked, 6, "four face models and two anti-spoofing models");
    assert_eq!(cfg.embedder, EmbedderConfig::sface(), "SFace is the default embedder");
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
