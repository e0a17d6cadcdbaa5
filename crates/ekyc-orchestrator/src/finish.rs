//! The finish protocol. Face match first (idempotent: an unreachable facematch leaves the
//! session open for a retry); then the session is claimed with compare-and-set (a second
//! Finish meanwhile gets ABORTED, and evidence that arrived meanwhile makes this one retry);
//! then the liveness challenge is consumed (single use, at the liveness service); then the
//! decision, the signed evidence record, and the stored result, with the embeddings and
//! attestations dropped.

use ekyc_proto::v1::{CompareRequest, FaceInput, Reason, ReasonCode, VerificationResult, VerifyChallengeRequest, face_input};

use crate::decide::{self, Evidence, Outcome, reason};
use crate::engine::{Engine, Result};
use crate::error::OrchestratorError;
use crate::evidence::{collecting, frontal_embedding, portrait_embedding};
use crate::policy::Policy;
use crate::progress::describe_missing;
use crate::session::{Phase, Session};
use crate::store::now_ms;

impl Engine {
    /// Decides `s` (a collecting session, possibly with evidence not stored yet) and stores
    /// the result. On an error the stored session keeps its previous evidence.
    pub(crate) async fn finish_session(&self, s: Session) -> Result<VerificationResult> {
        let policy = self.policy(&s)?.clone();
        let progress = self.progress(&s, None)?;
        if !progress.can_finish {
            let what: Vec<String> = progress.missing.iter().filter(|m| m.required).map(describe_missing).collect();
            return Err(OrchestratorError::FailedPrecondition(format!("EVIDENCE_MISSING: {}", what.join(", "))));
        }
        let now = now_ms();
        if s.finishing_until_unix_ms > now {
            return Err(OrchestratorError::Aborted("ABORTED: another call is finishing this session; GetSession shows the result".into()));
        }
        // 1. Face match first: idempotent, so if facematch is down the session stays open.
        let face_match = self.match_faces(&s, &policy).await?;
        // 2. Claim the session (storing the evidence a Verify brought), then consume the
        //    challenge; a second Finish meanwhile is told to wait.
        let hold_ms = (self.cfg.backends.liveness.timeout_ms + 2_000) as i64;
        let evidence_copy = s.clone();
        let (claimed, ()) = self
            .sessions
            .update(&s.id, |cur| {
                collecting(cur, now_ms())?;
                if cur.finishing_until_unix_ms > now_ms() {
                    return Err(OrchestratorError::Aborted(
                        "ABORTED: another call is finishing this session; GetSession shows the result".into(),
                    ));
                }
                let mut next = evidence_copy.clone();
                next.finishing_until_unix_ms = now_ms() + hold_ms;
                // Evidence added by a concurrent Add* call since `s` was read would be lost
                // by writing our copy; refuse instead and let the caller retry.
                if cur.images.len() > next.images.len() || (cur.signature.is_some() && next.signature.is_none()) {
                    return Err(OrchestratorError::Aborted("ABORTED: evidence arrived while finishing; retry Finish".into()));
                }
                *cur = next;
                Ok(())
            })
            .await?;
        let liveness = self.verify_liveness(&claimed).await;
        let (identity, min_sim) = identity_outcome(&claimed, &liveness);
        let document = match claimed.document_check() {
            Some(d) => Outcome::Measured(decide::DocumentQuality { usable: d.usable, reasons: d.reasons.clone() }),
            None => Outcome::Absent,
        };
        let signature = match claimed.signature_check() {
            Some(c) => Outcome::Measured(decide::Signature { valid: c.valid, reasons: c.reasons.clone() }),
            None => Outcome::Absent,
        };
        let evidence = Evidence {
            liveness: liveness.as_ref().map_or_else(|e| Outcome::Unavailable(e.clone()), |(l, _)| Outcome::Measured(l.clone())),
            face_match,
            document,
            identity: if liveness.is_err() { Outcome::Absent } else { identity },
            signature,
        };
        let verdict = decide::decide(&policy, &evidence);
        let decided_at = now_ms();
        let mut models = claimed.model_infos();
        if let Ok((_, resp)) = &liveness {
            for m in &resp.models {
                if !models.contains(m) {
                    models.push(m.clone());
                }
            }
        }
        let mut result = VerificationResult {
            session_id: claimed.id.clone(),
            decision: verdict.decision as i32,
            assurance_score: verdict.score,
            factors: verdict.factors.clone(),
            reasons: verdict.reasons.clone(),
            policy_name: policy.name.clone(),
            policy_version: policy.version.clone(),
            evidence: None,
            decided_at_unix_ms: decided_at,
            client_reference: claimed.client_reference.clone(),
            models,
        };
        let steps = liveness.as_ref().ok().map(|(_, r)| r.steps.clone()).unwrap_or_default();
        let payload = crate::record::payload(&self.cfg.issuer, &claimed, &result, &steps, min_sim);
        let jws = ekyc_evidence::sign(&self.evidence_key, &payload)
            .map_err(|e| OrchestratorError::Internal(format!("signing the evidence record: {e}")))?;
        result.evidence =
            Some(ekyc_proto::v1::EvidenceRecord { evidence_jws: jws, key_id: self.evidence_key.kid(), algorithm: "EdDSA".into() });
        let (stored, ()) = self
            .sessions
            .update(&claimed.id, |cur| {
                cur.phase = Phase::Finished;
                cur.finishing_until_unix_ms = 0;
                cur.set_result(&result);
                // The decision is made: embeddings and attestations are of no further use.
                for st in &mut cur.steps {
                    if let Some(k) = &mut st.kept {
                        k.embedding = None;
                        k.attestation.clear();
                    }
                }
                if let Some(d) = &mut cur.document {
                    d.embedding = None;
                }
                Ok(())
            })
            .await?;
        tracing::info!(session = %self.sessions.log_ref(&stored.id), decision = ?verdict.decision, score = verdict.score, "session finished");
        // Decisions by policy and outcome, and the reasons behind them (bounded label sets:
        // configured policy names, the proto's enums).
        let outcome = verdict.decision.as_str_name();
        metrics::counter!("ekyc_decisions_total", "policy" => policy.name.clone(), "decision" => outcome).increment(1);
        for r in &verdict.reasons {
            let code = ekyc_proto::v1::ReasonCode::try_from(r.code).map_or("UNKNOWN", |c| c.as_str_name());
            metrics::counter!("ekyc_decision_reasons_total", "policy" => policy.name.clone(), "decision" => outcome, "reason" => code)
                .increment(1);
        }
        Ok(result)
    }

    async fn match_faces(&self, s: &Session, policy: &Policy) -> Result<Outcome<decide::FaceMatch>> {
        if !(policy.rules.require_document && policy.rules.require_frames) && (s.document.is_none() || s.steps.is_empty()) {
            return Ok(Outcome::Absent);
        }
        let live = frontal_embedding(s, false);
        let portrait = portrait_embedding(s);
        let (Some(a), Some(b)) = (live.clone(), portrait) else {
            let mut reasons = Vec::new();
            if live.is_none() {
                reasons.push(reason(ReasonCode::NoFace, "no usable face in the frontal frame", true));
            }
            if s.document.as_ref().is_none_or(|d| !d.usable || d.embedding.is_none()) {
                reasons.push(reason(ReasonCode::NoPortrait, "no usable portrait on the document", true));
            }
            return Ok(Outcome::Measured(decide::FaceMatch {
                similarity: None,
                threshold: policy.rules.face_match_threshold.unwrap_or(0.0),
                match_score: None,
                reasons,
            }));
        };
        // Never compare embeddings of two models (a backend upgraded between the frame and
        // the document): their cosine means nothing. Refuse here, with the reason
        // facematch would give, rather than pass a score on.
        if let Err(why) = same_model(&a, &b) {
            return Ok(Outcome::Measured(decide::FaceMatch {
                similarity: None,
                threshold: policy.rules.face_match_threshold.unwrap_or(0.0),
                match_score: None,
                reasons: vec![reason(ReasonCode::EmbeddingModelMismatch, why, true)],
            }));
        }
        let req = CompareRequest {
            a: Some(FaceInput { input: Some(face_input::Input::Embedding(a)) }),
            b: Some(FaceInput { input: Some(face_input::Input::Embedding(b)) }),
        };
        let resp = self.backends.compare(req).await?;
        let threshold = policy.rules.face_match_threshold.unwrap_or(resp.threshold);
        Ok(Outcome::Measured(decide::FaceMatch { similarity: resp.similarity, threshold, match_score: resp.score, reasons: resp.reasons }))
    }

    async fn verify_liveness(
        &self,
        s: &Session,
    ) -> std::result::Result<(decide::Liveness, ekyc_proto::v1::VerifyChallengeResponse), Reason> {
        let challenge = s.challenge();
        let attestations: Vec<Vec<u8>> =
            s.steps.iter().filter_map(|st| st.kept.as_ref()).map(|k| k.attestation.clone()).filter(|a| !a.is_empty()).collect();
        let req = VerifyChallengeRequest { challenge_id: challenge.challenge_id.clone(), frames: vec![], frame_attestations: attestations };
        match self.backends.verify_challenge(req).await {
            Ok(resp) => {
                let pad = resp.pad.as_ref().map(|p| decide::Pad {
                    attack_score: p.attack_score,
                    threshold: p.threshold,
                    reasons: resp
                        .reasons
                        .iter()
                        .filter(|r| {
                            [
                                ReasonCode::PresentationAttackSuspected,
                                ReasonCode::PrintAttackSuspected,
                                ReasonCode::ScreenReplaySuspected,
                                ReasonCode::RenderedFromStillSuspected,
                            ]
                            .contains(&ReasonCode::try_from(r.code).unwrap_or_default())
                        })
                        .cloned()
                        .collect(),
                });
                Ok((decide::Liveness { passed: resp.passed, score: resp.liveness_score, reasons: resp.reasons.clone(), pad }, resp))
            }
            Err(e) if e.is_unavailable() => Err(reason(e.reason_code(), e.describe(), false)),
            Err(e) => Ok((
                decide::Liveness {
                    passed: false,
                    score: 0.0,
                    reasons: vec![reason(ReasonCode::LivenessFailed, e.describe(), true)],
                    pad: None,
                },
                ekyc_proto::v1::VerifyChallengeResponse::default(),
            )),
        }
    }
}

/// The frame's and the portrait's embeddings come from one named model.
fn same_model(frame: &ekyc_proto::v1::Embedding, portrait: &ekyc_proto::v1::Embedding) -> std::result::Result<(), String> {
    if frame.model_id.is_empty() || frame.model_id != portrait.model_id {
        return Err(format!(
            "EMBEDDING_MODEL_MISMATCH: the frame was embedded by `{}` and the portrait by `{}`; embeddings of different models cannot be compared: add the evidence again",
            frame.model_id, portrait.model_id
        ));
    }
    Ok(())
}

/// Identity consistency: frames of one person (from the liveness verdict), and a document
/// whose ghost portrait and other faces agree.
fn identity_outcome(
    s: &Session,
    liveness: &std::result::Result<(decide::Liveness, ekyc_proto::v1::VerifyChallengeResponse), Reason>,
) -> (Outcome<decide::Identity>, Option<f32>) {
    let mut reasons = Vec::new();
    let mut min_sim: Option<f32> = None;
    let mut threshold = 0.0;
    if let Ok((_, resp)) = liveness {
        threshold = resp.same_person_threshold;
        for st in &resp.steps {
            if let Some(sim) = st.similarity_to_reference {
                min_sim = Some(min_sim.map_or(sim, |m: f32| m.min(sim)));
            }
            reasons.extend(st.reasons.iter().filter(|r| r.code == ReasonCode::FaceChanged as i32).cloned());
        }
    }
    if let Some(d) = s.document_check() {
        reasons.extend(
            d.reasons
                .iter()
                .filter(|r| r.code == ReasonCode::GhostPortraitMismatch as i32 || r.code == ReasonCode::OtherFacesPresent as i32)
                .cloned(),
        );
    }
    (Outcome::Measured(decide::Identity { min_frame_similarity: min_sim, threshold, reasons }), min_sim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekyc_proto::v1::Embedding;

    fn e(model_id: &str) -> Embedding {
        Embedding { values: vec![0.5; 128], model_id: model_id.into() }
    }

    #[test]
    fn embeddings_of_two_models_are_never_compared() {
        assert!(same_model(&e("sface-opencv-2021dec-f32"), &e("sface-opencv-2021dec-f32")).is_ok());
        let why = same_model(&e("sface-opencv-2021dec-f32"), &e("faceres-human-3.3.6")).expect_err("two models");
        assert!(why.starts_with("EMBEDDING_MODEL_MISMATCH") && why.contains("faceres-human-3.3.6"), "{why}");
        assert!(same_model(&e(""), &e("")).is_err(), "an unnamed model is no model");
    }
}
