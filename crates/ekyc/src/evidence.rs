//! `ekyc evidence verify`: checks that a saved evidence record is exactly the one the
//! orchestrator signed, with its public key (PEM or JWKS; by default the one the orchestrator
//! wrote to `./ekyc-keys`), and prints what it decided.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ekyc_evidence::{DEFAULT_KEYS_DIR, EvidencePublicKey, PUBLIC_KEY_FILE};
use serde_json::Value;

/// A record that verified: the key that signed it and what it says.
#[derive(Debug)]
pub struct Checked {
    pub kid: String,
    pub payload: Value,
}

/// Verifies the record in `file` and prints a one-line summary, or the payload as JSON.
pub fn verify(file: &Path, key: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let checked = check(file, key)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&checked.payload)?);
    } else {
        println!("{}", summary(&checked));
    }
    Ok(())
}

/// Reads and verifies the record; the error says why it is not acceptable.
pub fn check(file: &Path, key: Option<&Path>) -> anyhow::Result<Checked> {
    let key_path = key.map_or_else(|| PathBuf::from(DEFAULT_KEYS_DIR).join(PUBLIC_KEY_FILE), Path::to_path_buf);
    let key = read_key(&key_path).with_context(|| {
        if key.is_none() {
            format!("public key {} (pass --key PUBLIC.pem or --key JWKS.json)", key_path.display())
        } else {
            format!("public key {}", key_path.display())
        }
    })?;
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let jws = record_jws(&text).with_context(|| file.display().to_string())?;
    let payload = ekyc_evidence::verify(&jws, &key).with_context(|| format!("evidence record {} is not acceptable", file.display()))?;
    let kid = ekyc_evidence::record_kid(&jws).unwrap_or_else(|| key.kid());
    Ok(Checked { kid, payload })
}

/// The compact JWS in a file that holds either the JWS itself or a JSON object with an
/// `evidence_jws` field (what `ekyc verify` saves).
fn record_jws(text: &str) -> anyhow::Result<String> {
    let text = text.trim();
    if !text.starts_with('{') {
        return Ok(text.to_string());
    }
    let value: Value = serde_json::from_str(text).context("not valid JSON")?;
    match value.get("evidence_jws").and_then(Value::as_str) {
        Some(jws) if !jws.is_empty() => Ok(jws.to_string()),
        _ => bail!(
            "a JSON file must have a non-empty \"evidence_jws\" string; the record may be missing because the session was not finished"
        ),
    }
}

/// An SPKI PEM public key, or a JWK / JWKS when the file is JSON.
fn read_key(path: &Path) -> anyhow::Result<EvidencePublicKey> {
    let text = std::fs::read_to_string(path).context("cannot read it")?;
    let key =
        if text.trim_start().starts_with('{') { EvidencePublicKey::from_jwk_json(&text)? } else { EvidencePublicKey::from_pem(&text)? };
    Ok(key)
}

/// `evidence record OK: kid=..., decision=..., policy=..., session=...`, each field read
/// from the payload when present ("-" when not).
pub fn summary(c: &Checked) -> String {
    let p = &c.payload;
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let field = |candidates: &[&Value]| candidates.iter().find(|v| !v.is_null()).map_or_else(|| "-".to_string(), |v| text(v));
    let policy = match &p["policy"] {
        Value::Object(o) => match (o.get("name"), o.get("version")) {
            (Some(name), Some(version)) if !version.is_null() => format!("{} (version {})", text(name), text(version)),
            (Some(name), _) => text(name),
            _ => p["policy"].to_string(),
        },
        other => field(&[other, &p["policy_name"]]),
    };
    let session =
        field(&[&p["session"]["id"], &p["session_id"], if p["session"].is_string() { &p["session"] } else { &Value::Null }, &p["jti"]]);
    format!("evidence record OK: kid={}, decision={}, policy={policy}, session={session}", c.kid, field(&[&p["decision"]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekyc_evidence::EvidenceKey;
    use serde_json::json;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ekyc-evidence-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    fn payload() -> Value {
        json!({"session": {"id": "s-42"}, "policy": {"name": "counter", "version": 3}, "decision": "APPROVED"})
    }

    #[test]
    fn verifies_a_record_or_its_json_wrapper_and_refuses_a_tampered_one() {
        let dir = temp_dir("unit");
        let key = EvidenceKey::generate();
        let pem = dir.join("public.pem");
        std::fs::write(&pem, key.public().to_pem()).expect("write key");
        let jws = ekyc_evidence::sign(&key, &payload()).expect("signs");

        let bare = dir.join("record.jws");
        std::fs::write(&bare, format!("{jws}\n")).expect("write");
        let c = check(&bare, Some(&pem)).expect("verifies");
        assert_eq!(c.payload, payload());
        assert_eq!(
            summary(&c),
            format!("evidence record OK: kid={}, decision=APPROVED, policy=counter (version 3), session=s-42", key.kid())
        );

        let wrapped = dir.join("evidence-s-42.json");
        std::fs::write(&wrapped, json!({"session_id": "s-42", "evidence_jws": jws}).to_string()).expect("write");
        let jwks = dir.join("jwks.json");
        std::fs::write(&jwks, key.public().jwks().to_string()).expect("write");
        assert_eq!(check(&wrapped, Some(&jwks)).expect("verifies").payload, payload());

        // One changed payload character.
        let dot = jws.find('.').expect("dot") + 5;
        let mut tampered = jws.clone().into_bytes();
        tampered[dot] = if tampered[dot] == b'A' { b'B' } else { b'A' };
        std::fs::write(&bare, tampered).expect("write");
        let e = format!("{:#}", check(&bare, Some(&pem)).expect_err("tampered"));
        assert!(e.contains("not acceptable") && e.contains("record.jws"), "{e}");

        let other = dir.join("other.pem");
        std::fs::write(&other, EvidenceKey::generate().public().to_pem()).expect("write");
        let e = format!("{:#}", check(&wrapped, Some(&other)).expect_err("wrong key"));
        assert!(e.contains(&key.kid()), "names the key the record needs: {e}");

        std::fs::write(&wrapped, json!({"session_id": "s-42"}).to_string()).expect("write");
        assert!(format!("{:#}", check(&wrapped, Some(&pem)).expect_err("no jws")).contains("evidence_jws"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn summary_reads_the_fields_it_finds_and_dashes_the_rest() {
        let c = |payload: Value| Checked { kid: "k".into(), payload };
        assert_eq!(summary(&c(json!({}))), "evidence record OK: kid=k, decision=-, policy=-, session=-");
        assert_eq!(
            summary(&c(json!({"decision": "REJECTED", "policy": "basic", "session_id": "s1"}))),
            "evidence record OK: kid=k, decision=REJECTED, policy=basic, session=s1"
        );
        assert_eq!(
            summary(&c(json!({"jti": "s2", "policy": {"name": "p"}}))),
            "evidence record OK: kid=k, decision=-, policy=p, session=s2"
        );
    }
}
