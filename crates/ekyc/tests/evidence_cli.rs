//! `ekyc evidence verify` as a user runs it: a good record (bare JWS, or the JSON `ekyc
//! verify` saves) with the default key directory or `--key`, and a tampered record, which
//! must fail with one line on stderr and a non-zero exit code. Needs no models.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ekyc_evidence::EvidenceKey;
use serde_json::{Value, json};

fn ekyc_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ekyc")).current_dir(dir).args(args).output().expect("ekyc runs")
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ekyc-cli-evidence-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn payload() -> Value {
    json!({"typ": "ekyc-evidence/v1", "session": {"id": "sess-7"}, "policy": {"name": "counter", "version": 2}, "decision": "APPROVED"})
}

#[test]
fn verify_accepts_an_intact_record_and_refuses_a_tampered_one() {
    let dir = temp_dir("verify");
    // The orchestrator's keys directory in the working directory: the default.
    let (key, created) = EvidenceKey::load_or_create(&dir.join(ekyc_evidence::DEFAULT_KEYS_DIR)).expect("keys");
    assert!(created);
    let jws = ekyc_evidence::sign(&key, &payload()).expect("signs");
    std::fs::write(dir.join("evidence-sess-7.json"), json!({"session_id": "sess-7", "evidence_jws": jws}).to_string()).expect("write");

    let ok = ekyc_in(&dir, &["evidence", "verify", "evidence-sess-7.json"]);
    assert!(ok.status.success(), "stderr: {}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim_end(),
        format!("evidence record OK: kid={}, decision=APPROVED, policy=counter (version 2), session=sess-7", key.kid())
    );

    let as_json = ekyc_in(&dir, &["evidence", "verify", "evidence-sess-7.json", "--json", "--key", "ekyc-keys/evidence-jwks.json"]);
    assert!(as_json.status.success(), "stderr: {}", String::from_utf8_lossy(&as_json.stderr));
    let printed: Value = serde_json::from_slice(&as_json.stdout).expect("JSON on stdout");
    assert_eq!(printed, payload());

    // One character of the signature changed.
    let mut tampered = jws.into_bytes();
    let i = tampered.len() - 10;
    tampered[i] = if tampered[i] == b'x' { b'y' } else { b'x' };
    std::fs::write(dir.join("tampered.jws"), &tampered).expect("write");
    let bad = ekyc_in(&dir, &["evidence", "verify", "tampered.jws"]);
    assert!(!bad.status.success());
    assert!(bad.stdout.is_empty(), "nothing printed as OK");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: ") && err.contains("tampered.jws") && err.contains("does not verify"), "{err}");

    // No key where the default points: says how to give one.
    let elsewhere = temp_dir("nokey");
    std::fs::write(elsewhere.join("r.jws"), &tampered).expect("write");
    let nokey = ekyc_in(&elsewhere, &["evidence", "verify", "r.jws"]);
    assert!(!nokey.status.success());
    assert!(String::from_utf8_lossy(&nokey.stderr).contains("--key"), "{}", String::from_utf8_lossy(&nokey.stderr));

    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&elsewhere).ok();
}
