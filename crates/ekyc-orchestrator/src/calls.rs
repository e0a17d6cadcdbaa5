//! Measuring evidence: the calls to the three backends for one session, each returning
//! what came back without storing anything, and the mapping of backend failures to what the
//! public caller may see (a reason code and a reference, never the backend's own text for
//! failures of its infrastructure).

use std::time::SystemTime;

use ekyc_proto::v1::{
    CheckFrameRequest, DocumentCheck, Embedding, ExtractPortraitRequest, Frame, FrameCheck, ModelInfo, ReasonCode, RevocationStatus,
    SignatureCheck, SignatureEvidence,
};
use ekyc_signature::{Revocation, SignatureInput, ToBeSigned};
use sha2::{Digest, Sha256};

use crate::clients::BackendError;
use crate::decide::reason;
use crate::engine::{Engine, Result};
use crate::error::OrchestratorError;
use crate::policy::Policy;
use crate::session::Session;

/// A measured frame not yet stored.
pub(crate) struct MeasuredFrame {
    pub step_index: u32,
    pub check: FrameCheck,
    pub attestation: Vec<u8>,
    pub embedding: Option<Embedding>,
    pub sha256: String,
    /// The same-person threshold the liveness service applies (one threshold for a frame
    /// judged on arrival and for the challenge's verdict).
    pub same_person_threshold: f32,
}

/// A measured document photo not yet stored.
pub(crate) struct MeasuredDocument {
    pub check: DocumentCheck,
    pub embedding: Option<Embedding>,
    pub models: Vec<ModelInfo>,
}

impl Engine {
    /// Whether this document photo was received in an earlier session (and remembers it
    /// for this one): a keyed digest, never the photo or its plain hash.
    async fn document_seen_before(&self, s: &Session, bytes: &[u8]) -> Result<bool> {
        if self.cfg.document_replay_window_s == 0 {
            return Ok(false);
        }
        let keys = self.sessions.keys();
        let digest = keys.digest("document-bytes", bytes);
        let owner = keys.digest("document-owner", s.id.as_bytes());
        let window = std::time::Duration::from_secs(self.cfg.document_replay_window_s);
        match self.replay.check_and_remember(&[digest], &owner, window).await {
            Ok(seen) => Ok(seen.is_some()),
            Err(e) => {
                let reference = crate::error::correlation_id();
                tracing::warn!(reference = %reference, error = %e, "replay memory unavailable");
                Err(OrchestratorError::Unavailable(format!("BACKEND_UNAVAILABLE: the replay memory is unavailable (ref {reference})")))
            }
        }
    }

    /// Measures a frame with the liveness service; `reference` is the kept frontal frame's
    /// attestation for a later step (empty for none), so the step is judged from the same
    /// reference as at Finish.
    pub(crate) async fn measure_frame(&self, s: &Session, frame: Frame, reference: Vec<u8>) -> Result<MeasuredFrame> {
        let challenge = s.challenge();
        let step_index = frame.step_index;
        let sha256 = frame.image.as_ref().map(|i| hex::encode(Sha256::digest(&i.data))).unwrap_or_default();
        let reference_attestation = if step_index > 0 { reference } else { Vec::new() };
        let resp = self
            .backends
            .check_frame(CheckFrameRequest { challenge_id: challenge.challenge_id.clone(), frame: Some(frame), reference_attestation })
            .await
            .map_err(|e| backend_error(e, "frame"))?;
        let r = resp.result.unwrap_or_default();
        let mut face = r.face.clone();
        if let Some(f) = &mut face {
            f.embedding = None;
        }
        let check = FrameCheck {
            step_index,
            pose: r.pose,
            step_satisfied: r.passed,
            measured_pose: r.measured_pose,
            target_angle_deg: r.target_angle_deg,
            reached_angle_deg: r.reached_angle_deg,
            face,
            similarity_to_reference: None,
            frame_sha256: if r.frame_sha256.is_empty() { sha256.clone() } else { r.frame_sha256.clone() },
            reasons: r.reasons,
        };
        Ok(MeasuredFrame {
            step_index,
            check,
            attestation: resp.attestation,
            embedding: resp.embedding,
            sha256,
            same_person_threshold: resp.same_person_threshold,
        })
    }

    pub(crate) async fn measure_document(&self, s: &Session, image: ekyc_proto::v1::Image, type_hint: i32) -> Result<MeasuredDocument> {
        let sha256 = hex::encode(Sha256::digest(&image.data));
        let seen_before = self.document_seen_before(s, &image.data).await?;
        let resp = self
            .backends
            .extract_portrait(ExtractPortraitRequest { image: Some(image), return_rectified_document: false, type_hint })
            .await
            .map_err(|e| backend_error(e, "document"))?;
        let mut portrait_face = resp.portrait_face.clone();
        let embedding = portrait_face.as_mut().and_then(|f| f.embedding.take());
        let blocking = resp.reasons.iter().any(|r| r.blocking);
        let usable = resp.found_document && resp.found_portrait && !blocking && embedding.is_some();
        let mut check = DocumentCheck {
            found_document: resp.found_document,
            found_portrait: resp.found_portrait,
            usable,
            document_type: resp.document_type,
            quality: resp.quality,
            portrait_face,
            image_sha256: sha256,
            reasons: resp.reasons,
        };
        if seen_before {
            check.reasons.push(reason(
                ReasonCode::DocumentSeenBefore,
                "this document photo (the same bytes) was received in an earlier session",
                false,
            ));
        }
        Ok(MeasuredDocument { check, embedding, models: resp.models })
    }

    /// Checks a signature over the session's to-be-signed bytes, with the certificate
    /// profile the session's policy requires.
    pub(crate) async fn check_signature(&self, s: &Session, ev: SignatureEvidence) -> Result<SignatureCheck> {
        if ev.certificate_chain.is_empty() {
            return Err(OrchestratorError::InvalidArgument(
                "CERT_UNTRUSTED: signature.certificate_chain: at least the signer's certificate (DER)".into(),
            ));
        }
        if ev.signature.is_empty() {
            return Err(OrchestratorError::InvalidArgument("SIGNATURE_INVALID: signature.signature: no bytes".into()));
        }
        let trust = std::sync::Arc::clone(&self.trust);
        let expected = s.to_be_signed.clone();
        let profile = self.policy(s)?.rules.signature_profile.clone();
        let claimed = ev.signed_data.clone();
        let (chain, signature, algorithm) = (ev.certificate_chain, ev.signature, ev.signature_algorithm);
        // RSA and ECDSA verification is CPU work: off the async threads.
        let verdict = tokio::task::spawn_blocking(move || {
            let input = SignatureInput { chain: &chain, signature: &signature, algorithm: &algorithm, signed_data: claimed.as_deref() };
            trust.verify(&input, &expected, profile.as_deref(), SystemTime::now())
        })
        .await
        .map_err(|e| OrchestratorError::Internal(format!("signature check did not finish: {e}")))?
        .map_err(|e| OrchestratorError::InvalidArgument(format!("SIGNATURE_INVALID: signature: {e}")))?;
        let reasons = verdict
            .failures
            .iter()
            .map(|f| {
                let code = ReasonCode::from_name(f.kind.reason_code()).unwrap_or(ReasonCode::SignatureInvalid);
                reason(code, f.message.clone(), true)
            })
            .collect();
        Ok(SignatureCheck {
            valid: verdict.valid,
            issuer: verdict.issuer,
            serial_hex: verdict.serial_hex,
            not_before_unix_ms: verdict.not_before_unix_ms,
            not_after_unix_ms: verdict.not_after_unix_ms,
            certificate_sha256: verdict.certificate_sha256,
            trust_anchor: verdict.trust_anchor.unwrap_or_default(),
            revocation: match verdict.revocation {
                Revocation::NotChecked => RevocationStatus::Unspecified,
                Revocation::Good => RevocationStatus::Good,
                Revocation::Revoked => RevocationStatus::Revoked,
                Revocation::Unknown => RevocationStatus::Unknown,
            } as i32,
            reasons,
            profile: verdict.profile.unwrap_or_default(),
        })
    }
}

pub(crate) fn backend_error(e: BackendError, what: &str) -> OrchestratorError {
    match &e {
        // The challenge behind the session expired or was used at the liveness service.
        BackendError::Status { status, .. } if status.code() == tonic::Code::FailedPrecondition => {
            if status.message().starts_with("EXPIRED") {
                OrchestratorError::FailedPrecondition(format!(
                    "SESSION_EXPIRED: {what}: the session's challenge expired; start a new session"
                ))
            } else {
                OrchestratorError::FailedPrecondition(crate::clients::input_message(status).unwrap_or_else(|| e.describe()))
            }
        }
        _ => e.into(),
    }
}

/// The bytes a signer must sign for a session (see StartSessionResponse.to_be_signed).
pub(crate) fn to_be_signed(issuer: &str, session_id: &str, policy: &Policy, nonce: &[u8], expires_at_unix_ms: i64) -> Vec<u8> {
    ToBeSigned {
        issuer: issuer.to_string(),
        session_id: session_id.to_string(),
        policy: policy.name.clone(),
        policy_version: policy.version.clone(),
        nonce: nonce.to_vec(),
        expires_at_unix_ms,
    }
    .to_bytes()
}
