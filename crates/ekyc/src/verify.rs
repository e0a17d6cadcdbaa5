//! `ekyc verify`: the reference client and operator's smoke test. Starts a session under a
//! policy, answers the random challenge with the photo given for each requested pose, adds
//! the document (and a signature over the session's to-be-signed bytes when a certificate
//! and key are given), finishes, prints the decision and reasons, and saves the signed
//! evidence record. It starts the session with the operator's API key and makes every
//! other call with the session token, as a browser or chat client would.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use ekyc_proto::reason_name;
use ekyc_proto::v1 as pb;
use ekyc_proto::v1::orchestrator_client::OrchestratorClient;
use ring::rand::SystemRandom;
use ring::signature::{self as rs, KeyPair as _};
use serde_json::json;

/// Photos for each pose, the document and the optional signing material.
#[derive(Debug)]
pub struct VerifyArgs {
    pub server: String,
    /// The operator's API key (StartSession only).
    pub api_key: String,
    pub policy: String,
    pub front: PathBuf,
    pub left: Option<PathBuf>,
    pub right: Option<PathBuf>,
    pub up: Option<PathBuf>,
    pub down: Option<PathBuf>,
    pub document: PathBuf,
    pub cert_chain: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_reference: Option<String>,
    pub out_dir: PathBuf,
    pub json: bool,
    pub max_message_bytes: usize,
}

/// `msg` with `authorization: Bearer <credential>`.
pub fn authed<T>(msg: T, credential: &str) -> Result<tonic::Request<T>> {
    let mut r = tonic::Request::new(msg);
    let value = format!("Bearer {credential}").parse().map_err(|_| anyhow!("the API key or token is not valid header text"))?;
    r.metadata_mut().insert("authorization", value);
    Ok(r)
}

/// The API key: `EKYC_API_KEY`, else the file (by default the development key that
/// `ekyc serve` creates at first start).
pub fn api_key(file: &Path) -> Result<String> {
    if let Ok(k) = std::env::var("EKYC_API_KEY")
        && !k.trim().is_empty()
    {
        return Ok(k.trim().to_string());
    }
    let text = std::fs::read_to_string(file).with_context(|| {
        format!("reading the API key from {} (set EKYC_API_KEY or --api-key-file; `ekyc serve` creates one at first start)", file.display())
    })?;
    Ok(text.trim().to_string())
}

fn image(path: &Path) -> Result<pb::Image> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(pb::Image { data, content_type: None })
}

fn reasons_line(rs: &[pb::Reason]) -> String {
    rs.iter().map(|r| format!("{}{}", reason_name(r.code), if r.blocking { "" } else { " (warning)" })).collect::<Vec<_>>().join(", ")
}

/// Signs `data` with a PKCS#8 private key (PEM): RSA gives RSA_PKCS1_SHA256 (as the My
/// Number card's JPKI signature), P-256 ECDSA_P256_SHA256, P-384 ECDSA_P384_SHA384, Ed25519
/// ED25519.
pub fn sign(key_pem: &[u8], data: &[u8]) -> Result<(String, Vec<u8>)> {
    let der = pem_blocks(key_pem)?
        .into_iter()
        .find(|(label, _)| label.contains("PRIVATE KEY"))
        .map(|(_, d)| d)
        .ok_or_else(|| anyhow!("no PRIVATE KEY block in the key file"))?;
    let rng = SystemRandom::new();
    if let Ok(k) = rs::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
        let _ = k.public_key();
        return Ok(("ED25519".into(), k.sign(data).as_ref().to_vec()));
    }
    for (alg, name) in
        [(&rs::ECDSA_P256_SHA256_ASN1_SIGNING, "ECDSA_P256_SHA256"), (&rs::ECDSA_P384_SHA384_ASN1_SIGNING, "ECDSA_P384_SHA384")]
    {
        if let Ok(k) = rs::EcdsaKeyPair::from_pkcs8(alg, &der, &rng) {
            let sig = k.sign(&rng, data).map_err(|_| anyhow!("ECDSA signing failed"))?;
            return Ok((name.into(), sig.as_ref().to_vec()));
        }
    }
    let k = rs::RsaKeyPair::from_pkcs8(&der).map_err(|e| anyhow!("the key is neither Ed25519, P-256, P-384 nor RSA in PKCS#8: {e}"))?;
    let mut sig = vec![0u8; k.public().modulus_len()];
    k.sign(&rs::RSA_PKCS1_SHA256, &rng, data, &mut sig).map_err(|_| anyhow!("RSA signing failed"))?;
    Ok(("RSA_PKCS1_SHA256".into(), sig))
}

fn pem_blocks(text: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    x509_parser::pem::Pem::iter_from_buffer(text).map(|p| p.map(|p| (p.label, p.contents)).map_err(|e| anyhow!("PEM: {e}"))).collect()
}

pub fn verify(a: &VerifyArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("starting the async runtime")?;
    rt.block_on(run(a))
}

async fn run(a: &VerifyArgs) -> Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(a.server.clone())
        .with_context(|| format!("server address {:?}", a.server))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .connect()
        .await
        .with_context(|| format!("connecting to {}", a.server))?;
    let mut c =
        OrchestratorClient::new(channel).max_encoding_message_size(a.max_message_bytes).max_decoding_message_size(a.max_message_bytes);
    let status = |s: tonic::Status| anyhow!("{:?}: {}", s.code(), s.message());

    let started = c
        .start_session(authed(
            pb::StartSessionRequest { policy: a.policy.clone(), client_reference: a.client_reference.clone(), locale: String::new() },
            &a.api_key,
        )?)
        .await
        .map_err(status)
        .context("StartSession")?
        .into_inner();
    let id = started.session_id.clone();
    // From here on the session token, never the API key.
    let token = started.session_token.clone();
    let challenge = started.challenge.clone().unwrap_or_default();
    if !a.json {
        let poses: Vec<&str> = challenge.steps.iter().map(|s| pose_name(s.pose)).collect();
        println!(
            "session {id} under policy {} ({}); challenge: {}",
            a.policy_name(&started),
            started.policy.as_ref().map_or("", |p| p.version.as_str()),
            poses.join(" -> ")
        );
    }
    for step in &challenge.steps {
        let path = a.photo_for(step.pose)?;
        let frame = pb::Frame { image: Some(image(path)?), step_index: step.index, client_capture_unix_ms: None, mirrored: false };
        let p = c
            .add_frame(authed(pb::AddFrameRequest { session_id: id.clone(), frame: Some(frame) }, &token)?)
            .await
            .map_err(status)
            .with_context(|| format!("AddFrame step {}", step.index))?
            .into_inner();
        if !a.json
            && let Some(pb::session_progress::Added::Frame(f)) = &p.added
        {
            let pose = f.measured_pose.unwrap_or_default();
            println!(
                "  step {} {:<10} {} yaw {:+.1} pitch {:+.1} (reached {:.1} of {:.1} deg){}",
                step.index,
                pose_name(step.pose),
                if f.step_satisfied { "ok  " } else { "FAIL" },
                pose.yaw_deg,
                pose.pitch_deg,
                f.reached_angle_deg,
                f.target_angle_deg,
                if f.reasons.is_empty() { String::new() } else { format!("  [{}]", reasons_line(&f.reasons)) }
            );
        }
    }
    let p = c
        .add_document(authed(pb::AddDocumentRequest { session_id: id.clone(), image: Some(image(&a.document)?), type_hint: 0 }, &token)?)
        .await
        .map_err(status)
        .context("AddDocument")?
        .into_inner();
    if !a.json
        && let Some(pb::session_progress::Added::Document(d)) = &p.added
    {
        println!(
            "  document   {}{}",
            if d.usable { "ok" } else { "NOT USABLE" },
            if d.reasons.is_empty() { String::new() } else { format!("  [{}]", reasons_line(&d.reasons)) }
        );
    }
    match (&a.cert_chain, &a.key) {
        (Some(chain), Some(key)) => {
            let chain_pem = std::fs::read(chain).with_context(|| format!("reading {}", chain.display()))?;
            let certs: Vec<Vec<u8>> = pem_blocks(&chain_pem)?.into_iter().filter(|(l, _)| l == "CERTIFICATE").map(|(_, d)| d).collect();
            if certs.is_empty() {
                bail!("{}: no CERTIFICATE block", chain.display());
            }
            let key_pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
            let (algorithm, signature) = sign(&key_pem, &started.to_be_signed)?;
            let ev = pb::SignatureEvidence {
                certificate_chain: certs,
                signature,
                signature_algorithm: algorithm,
                signed_data: Some(started.to_be_signed.clone()),
            };
            let p = c
                .add_signature(authed(pb::AddSignatureRequest { session_id: id.clone(), signature: Some(ev) }, &token)?)
                .await
                .map_err(status)
                .context("AddSignature")?
                .into_inner();
            if !a.json
                && let Some(pb::session_progress::Added::Signature(s)) = &p.added
            {
                println!(
                    "  signature  {} {}{}",
                    if s.valid { "valid" } else { "INVALID" },
                    s.issuer,
                    if s.reasons.is_empty() { String::new() } else { format!("  [{}]", reasons_line(&s.reasons)) }
                );
            }
        }
        (None, None) => {}
        _ => bail!("--cert-chain and --key go together"),
    }
    let r = c.finish(authed(pb::FinishRequest { session_id: id.clone() }, &token)?).await.map_err(status).context("Finish")?.into_inner();
    let evidence = r.evidence.clone().unwrap_or_default();
    std::fs::create_dir_all(&a.out_dir).with_context(|| format!("creating {}", a.out_dir.display()))?;
    let file = a.out_dir.join(format!("evidence-{id}.json"));
    let record =
        json!({ "session_id": id, "evidence_jws": evidence.evidence_jws, "key_id": evidence.key_id, "algorithm": evidence.algorithm });
    std::fs::write(&file, serde_json::to_string_pretty(&record)? + "\n").with_context(|| format!("writing {}", file.display()))?;
    let decision =
        pb::Decision::try_from(r.decision).map_or("UNSPECIFIED", |d| d.as_str_name()).trim_start_matches("DECISION_").to_string();
    if a.json {
        let factors: Vec<_> = r
            .factors
            .iter()
            .map(|f| {
                json!({
                    "kind": pb::FactorKind::try_from(f.kind).map_or("?", |k| k.as_str_name()).trim_start_matches("FACTOR_KIND_"),
                    "score": f.score, "contribution": f.contribution, "passed": f.passed, "required": f.required,
                    "similarity": f.similarity, "reasons": f.reasons.iter().map(|x| reason_name(x.code)).collect::<Vec<_>>(),
                })
            })
            .collect();
        let out = json!({
            "session_id": r.session_id, "decision": decision, "assurance_score": r.assurance_score,
            "policy": r.policy_name, "policy_version": r.policy_version, "factors": factors,
            "reasons": r.reasons.iter().map(|x| json!({"code": reason_name(x.code), "message": x.message, "blocking": x.blocking})).collect::<Vec<_>>(),
            "evidence_file": file,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("decision {decision}, assurance {:.3}", r.assurance_score);
        for f in &r.factors {
            println!(
                "  {:<22} score {:.3} x weight {:.3} = {:.3} {}{}",
                pb::FactorKind::try_from(f.kind).map_or("?", |k| k.as_str_name()).trim_start_matches("FACTOR_KIND_"),
                f.score,
                f.weight,
                f.contribution,
                if f.passed { "passed" } else { "FAILED" },
                f.similarity.map_or(String::new(), |s| format!(" (similarity {s:.3})"))
            );
        }
        for x in &r.reasons {
            println!("  reason {}: {}", reason_name(x.code), x.message);
        }
        println!("evidence record: {}", file.display());
    }
    Ok(())
}

fn pose_name(p: i32) -> &'static str {
    match pb::PoseStep::try_from(p) {
        Ok(pb::PoseStep::Frontal) => "frontal",
        Ok(pb::PoseStep::TurnLeft) => "turn-left",
        Ok(pb::PoseStep::TurnRight) => "turn-right",
        Ok(pb::PoseStep::LookUp) => "look-up",
        Ok(pb::PoseStep::LookDown) => "look-down",
        _ => "unknown",
    }
}

impl VerifyArgs {
    fn photo_for(&self, pose: i32) -> Result<&Path> {
        let (p, flag) = match pb::PoseStep::try_from(pose) {
            Ok(pb::PoseStep::Frontal) => (Some(&self.front), "--front"),
            Ok(pb::PoseStep::TurnLeft) => (self.left.as_ref(), "--left"),
            Ok(pb::PoseStep::TurnRight) => (self.right.as_ref(), "--right"),
            Ok(pb::PoseStep::LookUp) => (self.up.as_ref(), "--up"),
            Ok(pb::PoseStep::LookDown) => (self.down.as_ref(), "--down"),
            _ => bail!("the challenge asks for an unknown pose {pose}"),
        };
        p.map(PathBuf::as_path).ok_or_else(|| anyhow!("the challenge asks for {}: pass {flag} with a photo of that pose", pose_name(pose)))
    }

    fn policy_name(&self, s: &pb::StartSessionResponse) -> String {
        s.policy.as_ref().map_or_else(|| self.policy.clone(), |p| p.name.clone())
    }
}
