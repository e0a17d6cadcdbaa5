//! The evidence record's payload: everything needed to defend a decision later, and nothing
//! that identifies a face. Policy and version, model versions, challenge steps with the
//! measured angles, SHA-256 of every image received, the signer certificate's digest,
//! issuer and serial (not its subject: a JPKI certificate names the person), factors,
//! scores, decision, reasons and times. Signed as a compact JWS (EdDSA) by the engine;
//! `ekyc evidence verify` checks it offline.

use ekyc_proto::reason_name;
use ekyc_proto::v1::{Decision, FactorKind, PoseStep, RevocationStatus, StepResult, VerificationResult};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::session::Session;

fn reasons(rs: &[ekyc_proto::v1::Reason]) -> Value {
    Value::Array(
        rs.iter()
            .map(|r| {
                let mut o = json!({ "code": reason_name(r.code), "message": r.message, "blocking": r.blocking });
                for (k, v) in [("measured", r.measured), ("limit", r.limit)] {
                    if let Some(v) = v {
                        o[k] = json!(v);
                    }
                }
                if let Some(i) = r.step_index {
                    o["step_index"] = json!(i);
                }
                o
            })
            .collect(),
    )
}

/// The record for a finished session.
pub fn payload(
    issuer: &str,
    s: &Session,
    r: &VerificationResult,
    liveness_steps: &[StepResult],
    min_frame_similarity: Option<f32>,
) -> Value {
    let challenge = s.challenge();
    let steps: Vec<Value> = challenge
        .steps
        .iter()
        .map(|c| {
            let kept = s.steps.get(c.index as usize).and_then(|st| st.kept.as_ref()).map(Session::frame_check);
            let verified = liveness_steps.iter().find(|x| x.step_index == c.index);
            let pose = kept.as_ref().and_then(|k| k.measured_pose);
            json!({
                "index": c.index,
                "pose": PoseStep::try_from(c.pose).map_or("UNSPECIFIED", |p| p.as_str_name()).trim_start_matches("POSE_STEP_"),
                "target_angle_deg": c.target_angle_deg,
                "reached_angle_deg": verified.map(|v| v.reached_angle_deg).or(kept.as_ref().map(|k| k.reached_angle_deg)),
                "measured_pose_deg": pose.map(|p| json!({ "yaw": p.yaw_deg, "pitch": p.pitch_deg, "roll": p.roll_deg })),
                "passed": verified.map(|v| v.passed),
                "similarity_to_reference": verified.and_then(|v| v.similarity_to_reference),
                "frame_sha256": kept.map(|k| k.frame_sha256),
                "frames_received": s.steps.get(c.index as usize).map_or(0, |st| st.frames_received),
            })
        })
        .collect();
    let factors: Vec<Value> = r
        .factors
        .iter()
        .map(|f| {
            json!({
                "kind": FactorKind::try_from(f.kind).map_or("UNSPECIFIED", |k| k.as_str_name()).trim_start_matches("FACTOR_KIND_"),
                "score": f.score,
                "weight": f.weight,
                "contribution": f.contribution,
                "passed": f.passed,
                "required": f.required,
                "similarity": f.similarity,
                "threshold": f.threshold,
                "false_match_rate": f.match_score.as_ref().map(|m| m.false_match_rate),
                "calibration_id": f.match_score.as_ref().map(|m| m.calibration_id.clone()),
                "reasons": reasons(&f.reasons),
            })
        })
        .collect();
    let document = s.document_check().map(|d| {
        json!({
            "image_sha256": d.image_sha256,
            "usable": d.usable,
            "document_type": ekyc_proto::v1::DocumentType::try_from(d.document_type).map_or("UNSPECIFIED", |t| t.as_str_name()).trim_start_matches("DOCUMENT_TYPE_"),
            "quality": d.quality.map(|q| json!({
                "portrait_size_px": q.portrait_size_px, "sharpness": q.sharpness,
                "glare_fraction": q.glare_fraction, "cut_off_fraction": q.cut_off_fraction,
            })),
            "reasons": reasons(&d.reasons),
        })
    });
    let signature = s.signature_check().map(|g| {
        json!({
            "valid": g.valid,
            "issuer": g.issuer,
            "serial_hex": g.serial_hex,
            "certificate_sha256": g.certificate_sha256,
            "not_before_unix_ms": g.not_before_unix_ms,
            "not_after_unix_ms": g.not_after_unix_ms,
            "trust_anchor": g.trust_anchor,
            "revocation": RevocationStatus::try_from(g.revocation).map_or("UNSPECIFIED", |x| x.as_str_name()).trim_start_matches("REVOCATION_STATUS_"),
            "reasons": reasons(&g.reasons),
        })
    });
    let images: Vec<Value> = s
        .images
        .iter()
        .map(|i| json!({ "kind": i.kind, "step_index": i.step_index, "sha256": i.sha256, "received_at_unix_ms": i.received_at_unix_ms }))
        .collect();
    json!({
        "typ": "ekyc-evidence/v1",
        "iss": issuer,
        "iat": r.decided_at_unix_ms / 1000,
        "jti": s.id,
        "session": {
            "id": s.id,
            "client_reference": s.client_reference,
            "created_at_unix_ms": s.created_at_unix_ms,
            "expires_at_unix_ms": s.expires_at_unix_ms,
            "decided_at_unix_ms": r.decided_at_unix_ms,
            "nonce_sha256": hex::encode(Sha256::digest(&s.nonce)),
        },
        "policy": { "name": r.policy_name, "version": r.policy_version },
        "decision": Decision::try_from(r.decision).map_or("UNSPECIFIED", |d| d.as_str_name()).trim_start_matches("DECISION_"),
        "assurance_score": r.assurance_score,
        "factors": factors,
        "reasons": reasons(&r.reasons),
        "challenge": { "id_sha256": hex::encode(Sha256::digest(challenge.challenge_id.as_bytes())), "issued_at_unix_ms": challenge.issued_at_unix_ms, "steps": steps, "min_frame_similarity": min_frame_similarity },
        "images": images,
        "document": document,
        "signature": signature,
        "models": r.models.iter().map(|m| json!({ "role": m.role, "model_id": m.model_id, "sha256": m.sha256 })).collect::<Vec<_>>(),
    })
}
