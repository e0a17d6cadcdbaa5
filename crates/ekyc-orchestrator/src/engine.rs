//! The orchestrator's core: sessions step by step or in one call, over the three backends,
//! with the decision from [`crate::decide`] and a signed record from [`crate::record`].
//! Plain async Rust: the gRPC adapter in [`crate::service`] only converts.
//!
//! Every Add* call sends its image to the service that measures it and keeps what comes
//! back; the image itself is dropped when the call returns. Updates are compare-and-set on
//! the stored session, so concurrent calls (or replicas) never lose evidence. `Finish`
//! first compares faces (idempotent, so an unreachable facematch leaves the session open for
//! a retry), then claims the session, then consumes the liveness challenge.

use std::time::SystemTime;

use ekyc_evidence::EvidenceKey;
use ekyc_proto::v1::{
    AddDocumentRequest, AddFrameRequest, AddSignatureRequest, CancelSessionRequest, Challenge, CheckFrameRequest, CompareRequest,
    CreateChallengeRequest, DocumentCheck, Embedding, EvidenceKind, ExtractPortraitRequest, FaceInput, FinishRequest, Frame, FrameCheck,
    GetSessionRequest, ListPoliciesResponse, MissingEvidence, PoseStep, Reason, ReasonCode, RevocationStatus, SessionProgress,
    SessionState, SignatureCheck, SignatureEvidence, StartSessionRequest, StartSessionResponse, StepStatus, VerificationResult,
    VerifyChallengeRequest, VerifyRequest, face_input, session_progress,
};
use ekyc_signature::{Revocation, SignatureInput, TrustStore};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::clients::{BackendError, Backends};
use crate::config::OrchestratorConfig;
use crate::decide::{self, Evidence, Outcome, reason};
use crate::error::OrchestratorError;
use crate::keys::Keys;
use crate::policy::{Policies, Policy};
use crate::seal::{SealedEmbedding, Sealer, cosine};
use crate::session::{ImageDigest, KeptDocument, KeptFrame, KeptSignature, Phase, Session, StepRecord};
use crate::store::{Store, now_ms};

type Result<T> = std::result::Result<T, OrchestratorError>;

/// Longest session id and client reference accepted, in bytes.
const MAX_ID_BYTES: usize = 128;

/// The orchestrator.
#[derive(Debug)]
pub struct Engine {
    cfg: OrchestratorConfig,
    policies: Policies,
    store: Store,
    backends: Backends,
    sealer: Sealer,
    evidence_key: EvidenceKey,
    trust: std::sync::Arc<TrustStore>,
}

/// What an Add* call measured, for the progress it answers with.
enum Added {
    Frame(FrameCheck),
    Document(DocumentCheck),
    Signature(SignatureCheck),
}

/// A measured frame not yet stored.
struct MeasuredFrame {
    step_index: u32,
    check: FrameCheck,
    attestation: Vec<u8>,
    embedding: Option<Embedding>,
    sha256: String,
}

/// A measured document photo not yet stored.
struct MeasuredDocument {
    check: DocumentCheck,
    embedding: Option<Embedding>,
    models: Vec<ekyc_proto::v1::ModelInfo>,
}

impl Engine {
    pub fn new(cfg: OrchestratorConfig, keys: Keys, max_message_bytes: usize) -> Result<Engine> {
        cfg.validate().map_err(OrchestratorError::Config)?;
        let store = match cfg.redis() {
            Some(redis) => Store::redis_with(&redis).map_err(|e| OrchestratorError::Config(e.to_string()))?,
            None => Store::memory(),
        };
        let trust = TrustStore::load(&cfg.signature).map_err(|e| OrchestratorError::Config(format!("signature trust anchors: {e}")))?;
        Ok(Engine {
            policies: Policies::new(&cfg.policies, &cfg.default_policy),
            backends: Backends::new(&cfg.backends, max_message_bytes)?,
            sealer: Sealer::new(&keys.session_key).map_err(OrchestratorError::Config)?,
            evidence_key: keys.evidence_key,
            store,
            trust: std::sync::Arc::new(trust),
            cfg,
        })
    }

    pub fn config(&self) -> &OrchestratorConfig {
        &self.cfg
    }

    /// The public half of the evidence key, for verifying records.
    pub fn evidence_public_key(&self) -> ekyc_evidence::EvidencePublicKey {
        self.evidence_key.public()
    }

    pub fn list_policies(&self) -> ListPoliciesResponse {
        ListPoliciesResponse {
            policies: self.policies.all().map(Policy::summary).collect(),
            default_policy: self.policies.default_name().to_string(),
        }
    }

    fn policy(&self, s: &Session) -> Result<&Policy> {
        self.policies.get(&s.policy).ok_or_else(|| {
            OrchestratorError::FailedPrecondition(format!("EVIDENCE_MISSING: the session's policy {:?} is no longer configured", s.policy))
        })
    }

    // -----------------------------------------------------------------------------------
    // Sessions
    // -----------------------------------------------------------------------------------

    pub async fn start_session(&self, req: StartSessionRequest) -> Result<StartSessionResponse> {
        let policy = self
            .policies
            .get(&req.policy)
            .ok_or_else(|| {
                OrchestratorError::NotFound(format!("policy {:?} is not offered; ListPolicies names those that are", req.policy))
            })?
            .clone();
        if req.client_reference.as_ref().is_some_and(|r| r.len() > MAX_ID_BYTES) {
            return Err(OrchestratorError::InvalidArgument(format!("client_reference: at most {MAX_ID_BYTES} bytes")));
        }
        if req.locale.len() > 35 {
            return Err(OrchestratorError::InvalidArgument("locale: a BCP 47 tag such as \"ja\" (at most 35 bytes)".into()));
        }
        let challenge = self
            .backends
            .create_challenge(CreateChallengeRequest {
                step_count: policy.rules.challenge_steps,
                locale: req.locale.clone(),
                client_reference: req.client_reference.clone(),
            })
            .await?;
        let now = now_ms();
        let ttl_ms = i64::try_from(policy.rules.session_ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX);
        // A session cannot outlive its challenge: its frames would no longer be verifiable.
        let expires =
            now.saturating_add(ttl_ms).min(if challenge.expires_at_unix_ms > 0 { challenge.expires_at_unix_ms } else { i64::MAX });
        let id = format!("s_{}", random_token(24)?);
        let nonce = random_bytes(32)?;
        let session = Session {
            id: id.clone(),
            policy: policy.name.clone(),
            policy_version: policy.version.clone(),
            phase: Phase::Collecting,
            created_at_unix_ms: now,
            expires_at_unix_ms: expires,
            finishing_until_unix_ms: 0,
            client_reference: req.client_reference.clone(),
            nonce: nonce.clone(),
            challenge: challenge.encode_to_vec(),
            steps: vec![StepRecord::default(); challenge.steps.len()],
            document: None,
            documents_received: 0,
            signature: None,
            images: Vec::new(),
            models: Vec::new(),
            result: None,
        };
        if !self.store.create(&id, &session.to_bytes(), self.purge_at(&session)).await? {
            return Err(OrchestratorError::Internal("session id collision; retry".into()));
        }
        tracing::info!(session = %id, policy = %policy.name, steps = challenge.steps.len(), "session started");
        Ok(StartSessionResponse {
            session_id: id,
            challenge: Some(challenge),
            nonce,
            expires_at_unix_ms: expires,
            policy: Some(policy.summary()),
            session_token: String::new(),
            to_be_signed: Vec::new(),
        })
    }

    fn purge_at(&self, s: &Session) -> i64 {
        s.expires_at_unix_ms.saturating_add(i64::try_from(self.cfg.retain_after_expiry_s.saturating_mul(1000)).unwrap_or(i64::MAX))
    }

    async fn load(&self, id: &str) -> Result<(Session, u64)> {
        if id.is_empty() || id.len() > MAX_ID_BYTES || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(OrchestratorError::InvalidArgument(
                "session_id: the id StartSession returned (URL-safe ASCII, at most 128 bytes)".into(),
            ));
        }
        let stored = self
            .store
            .load(id)
            .await?
            .ok_or_else(|| OrchestratorError::NotFound(format!("session {id} not found: unknown, or purged after it ended")))?;
        let s = Session::from_bytes(&stored.data).map_err(OrchestratorError::Internal)?;
        Ok((s, stored.rev))
    }

    /// Loads a session that still accepts evidence.
    async fn load_collecting(&self, id: &str) -> Result<(Session, u64)> {
        let (s, rev) = self.load(id).await?;
        collecting(&s, now_ms())?;
        Ok((s, rev))
    }

    /// Applies `change` to the stored session with compare-and-set, reloading and
    /// re-applying when another call got there first.
    async fn update<T>(&self, id: &str, mut change: impl FnMut(&mut Session) -> Result<T>) -> Result<(Session, T)> {
        for _ in 0..16 {
            let (mut s, rev) = self.load(id).await?;
            let out = change(&mut s)?;
            if self.store.replace(id, rev, &s.to_bytes(), self.purge_at(&s)).await? {
                return Ok((s, out));
            }
        }
        Err(OrchestratorError::Aborted(format!("ABORTED: session {id} is being changed by many calls at once; retry")))
    }

    // -----------------------------------------------------------------------------------
    // Evidence, step by step
    // -----------------------------------------------------------------------------------

    pub async fn add_frame(&self, req: AddFrameRequest) -> Result<SessionProgress> {
        let (s, _) = self.load_collecting(&req.session_id).await?;
        let frame = req.frame.ok_or_else(|| OrchestratorError::InvalidArgument("IMAGE_EMPTY: frame: required".into()))?;
        validate_frame(&s, &frame, "frame")?;
        let step = frame.step_index as usize;
        // Checked again when storing (a concurrent call may have added one); checked here
        // so that a full step costs no backend call.
        if s.steps[step].frames_received >= self.cfg.max_frames_per_step {
            return Err(too_many_frames(step, self.cfg.max_frames_per_step));
        }
        let policy = self.policy(&s)?.clone();
        let measured = self.measure_frame(&s, frame).await?;
        let (check, kept, digest) = self.keep_frame(&policy, &s, measured)?;
        let satisfied = kept.satisfied;
        let (s, ()) = self
            .update(&s.id, |s| {
                collecting(s, now_ms())?;
                apply_frame(s, step, kept.clone(), digest.clone(), self.cfg.max_frames_per_step)
            })
            .await?;
        tracing::info!(session = %s.id, step, satisfied, "frame added");
        self.progress(&s, Some(Added::Frame(check)))
    }

    pub async fn add_document(&self, req: AddDocumentRequest) -> Result<SessionProgress> {
        let (s, _) = self.load_collecting(&req.session_id).await?;
        let image = req.image.ok_or_else(|| OrchestratorError::InvalidArgument("IMAGE_EMPTY: image: required".into()))?;
        if image.data.is_empty() {
            return Err(OrchestratorError::InvalidArgument("IMAGE_EMPTY: image.data: no bytes".into()));
        }
        let measured = self.measure_document(image, req.type_hint).await?;
        let (kept, digest) = self.keep_document(&s.id, &measured)?;
        let (s, ()) = self
            .update(&s.id, |s| {
                collecting(s, now_ms())?;
                apply_document(s, kept.clone(), digest.clone(), &measured.models);
                Ok(())
            })
            .await?;
        tracing::info!(session = %s.id, usable = measured.check.usable, "document added");
        self.progress(&s, Some(Added::Document(measured.check)))
    }

    pub async fn add_signature(&self, req: AddSignatureRequest) -> Result<SessionProgress> {
        let (s, _) = self.load_collecting(&req.session_id).await?;
        let ev = req.signature.ok_or_else(|| OrchestratorError::InvalidArgument("SIGNATURE_MISSING: signature: required".into()))?;
        let check = self.check_signature(&s.nonce, ev).await?;
        let kept = KeptSignature { check: check.encode_to_vec(), valid: check.valid };
        let (s, ()) = self
            .update(&s.id, |s| {
                collecting(s, now_ms())?;
                s.signature = Some(kept.clone());
                Ok(())
            })
            .await?;
        tracing::info!(session = %s.id, valid = check.valid, "signature added");
        self.progress(&s, Some(Added::Signature(check)))
    }

    pub async fn get_session(&self, req: GetSessionRequest) -> Result<SessionProgress> {
        let (s, _) = self.load(&req.session_id).await?;
        self.progress(&s, None)
    }

    pub async fn cancel(&self, req: CancelSessionRequest) -> Result<SessionProgress> {
        let (s, _) = self
            .update(&req.session_id, |s| {
                if s.phase == Phase::Finished {
                    return Err(OrchestratorError::FailedPrecondition(
                        "ALREADY_USED: the session is finished and cannot be cancelled".into(),
                    ));
                }
                // Keep the shell (state, challenge, policy) for GetSession until the purge;
                // drop every piece of evidence now.
                s.phase = Phase::Cancelled;
                s.steps.iter_mut().for_each(|st| *st = StepRecord::default());
                s.document = None;
                s.signature = None;
                s.images.clear();
                s.documents_received = 0;
                Ok(())
            })
            .await?;
        tracing::info!(session = %s.id, "session cancelled");
        self.progress(&s, None)
    }

    // -----------------------------------------------------------------------------------
    // Finishing
    // -----------------------------------------------------------------------------------

    pub async fn finish(&self, req: FinishRequest) -> Result<VerificationResult> {
        let (s, _) = self.load(&req.session_id).await?;
        if s.phase == Phase::Finished {
            return s.result().ok_or_else(|| OrchestratorError::Internal("finished session without a result".into()));
        }
        collecting(&s, now_ms())?;
        self.finish_session(s).await
    }

    pub async fn verify(&self, req: VerifyRequest) -> Result<VerificationResult> {
        let (s, _) = self.load(&req.session_id).await?;
        if s.phase == Phase::Finished {
            return Err(OrchestratorError::FailedPrecondition(
                "ALREADY_USED: the session is already finished; GetSession returns its result".into(),
            ));
        }
        collecting(&s, now_ms())?;
        // Validate everything before any backend is asked or anything stored.
        for (i, f) in req.frames.iter().enumerate() {
            validate_frame(&s, f, &format!("frames[{i}]"))?;
        }
        if let Some(d) = &req.document
            && d.data.is_empty()
        {
            return Err(OrchestratorError::InvalidArgument("IMAGE_EMPTY: document.data: no bytes".into()));
        }
        let mut per_step = vec![0u32; s.steps.len()];
        for f in &req.frames {
            per_step[f.step_index as usize] += 1;
        }
        if let Some((step, n)) = per_step.iter().enumerate().find(|(i, n)| s.steps[*i].frames_received + **n > self.cfg.max_frames_per_step)
        {
            return Err(OrchestratorError::Busy(format!(
                "STEP_MISSING: {n} frames for step {step} exceed the {} a session accepts per step",
                self.cfg.max_frames_per_step
            )));
        }
        let policy = self.policy(&s)?.clone();
        let signature = match req.signature {
            Some(ev) => Some(self.check_signature(&s.nonce, ev).await?),
            None => None,
        };
        // Measure all frames concurrently (the liveness backend's limit bounds it) and the
        // document beside them; nothing is stored until all of them have answered.
        let frames = futures::future::try_join_all(req.frames.into_iter().map(|f| self.measure_frame(&s, f)));
        let document = async {
            match req.document {
                Some(img) => self.measure_document(img, req.document_type_hint).await.map(Some),
                None => Ok(None),
            }
        };
        let (frames, document) = futures::future::try_join(frames, document).await?;

        // Apply in capture order to a copy, exactly as the Add* calls would have.
        let mut next = s.clone();
        for m in frames {
            let step = m.step_index as usize;
            let (_, kept, digest) = self.keep_frame(&policy, &next, m)?;
            apply_frame(&mut next, step, kept, digest, self.cfg.max_frames_per_step)?;
        }
        if let Some(d) = document {
            let (kept, digest) = self.keep_document(&s.id, &d)?;
            apply_document(&mut next, kept, digest, &d.models);
        }
        if let Some(check) = signature {
            next.signature = Some(KeptSignature { valid: check.valid, check: check.encode_to_vec() });
        }
        self.finish_session(next).await
    }

    /// Decides `s` (a collecting session, possibly with evidence not stored yet) and stores
    /// the result. On an error the stored session keeps its previous evidence.
    async fn finish_session(&self, s: Session) -> Result<VerificationResult> {
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
        tracing::info!(session = %stored.id, decision = ?verdict.decision, score = verdict.score, "session finished");
        Ok(result)
    }

    async fn match_faces(&self, s: &Session, policy: &Policy) -> Result<Outcome<decide::FaceMatch>> {
        if !(policy.rules.require_document && policy.rules.require_frames) && (s.document.is_none() || s.steps.is_empty()) {
            return Ok(Outcome::Absent);
        }
        let live = self.frontal_embedding(s, false);
        let portrait = s
            .document
            .as_ref()
            .filter(|d| d.usable)
            .and_then(|d| d.embedding.as_ref())
            .and_then(|e| self.sealer.open(&s.id, "portrait", e).ok().map(|v| Embedding { values: v, model_id: e.model_id.clone() }));
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
            Ok(resp) => Ok((decide::Liveness { passed: resp.passed, score: resp.liveness_score, reasons: resp.reasons.clone() }, resp)),
            Err(e) if e.is_unavailable() => Err(reason(e.reason_code(), e.describe(), false)),
            Err(e) => Ok((
                decide::Liveness { passed: false, score: 0.0, reasons: vec![reason(ReasonCode::LivenessFailed, e.describe(), true)] },
                ekyc_proto::v1::VerifyChallengeResponse::default(),
            )),
        }
    }

    // -----------------------------------------------------------------------------------
    // Measuring (backend calls; nothing stored)
    // -----------------------------------------------------------------------------------

    async fn measure_frame(&self, s: &Session, frame: Frame) -> Result<MeasuredFrame> {
        let challenge = s.challenge();
        let step_index = frame.step_index;
        let sha256 = frame.image.as_ref().map(|i| hex::encode(Sha256::digest(&i.data))).unwrap_or_default();
        let resp = self
            .backends
            .check_frame(CheckFrameRequest { challenge_id: challenge.challenge_id.clone(), frame: Some(frame) })
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
        Ok(MeasuredFrame { step_index, check, attestation: resp.attestation, embedding: resp.embedding, sha256 })
    }

    async fn measure_document(&self, image: ekyc_proto::v1::Image, type_hint: i32) -> Result<MeasuredDocument> {
        let sha256 = hex::encode(Sha256::digest(&image.data));
        let resp = self
            .backends
            .extract_portrait(ExtractPortraitRequest { image: Some(image), return_rectified_document: false, type_hint })
            .await
            .map_err(|e| backend_error(e, "document"))?;
        let mut portrait_face = resp.portrait_face.clone();
        let embedding = portrait_face.as_mut().and_then(|f| f.embedding.take());
        let blocking = resp.reasons.iter().any(|r| r.blocking);
        let usable = resp.found_document && resp.found_portrait && !blocking && embedding.is_some();
        let check = DocumentCheck {
            found_document: resp.found_document,
            found_portrait: resp.found_portrait,
            usable,
            document_type: resp.document_type,
            quality: resp.quality,
            portrait_face,
            image_sha256: sha256,
            reasons: resp.reasons,
        };
        Ok(MeasuredDocument { check, embedding, models: resp.models })
    }

    async fn check_signature(&self, nonce: &[u8], ev: SignatureEvidence) -> Result<SignatureCheck> {
        if ev.certificate_chain.is_empty() {
            return Err(OrchestratorError::InvalidArgument(
                "CERT_UNTRUSTED: signature.certificate_chain: at least the signer's certificate (DER)".into(),
            ));
        }
        if ev.signature.is_empty() {
            return Err(OrchestratorError::InvalidArgument("SIGNATURE_INVALID: signature.signature: no bytes".into()));
        }
        let trust = std::sync::Arc::clone(&self.trust);
        let nonce = nonce.to_vec();
        let claimed = ev.signed_data.clone();
        let (chain, signature, algorithm) = (ev.certificate_chain, ev.signature, ev.signature_algorithm);
        // RSA and ECDSA verification is CPU work: off the async threads.
        let verdict = tokio::task::spawn_blocking(move || {
            let input = SignatureInput { chain: &chain, signature: &signature, algorithm: &algorithm, claimed_nonce: claimed.as_deref() };
            trust.verify(&input, &nonce, SystemTime::now())
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
            profile: String::new(),
        })
    }

    /// What a session keeps of a measured frame: its check completed with the same-person
    /// test against the kept frontal frame, the attestation, the sealed embedding, the
    /// digest.
    fn keep_frame(&self, policy: &Policy, s: &Session, m: MeasuredFrame) -> Result<(FrameCheck, KeptFrame, ImageDigest)> {
        let frontal = self.frontal_embedding(s, true);
        let check = judge_frame(policy, s, m.check, m.embedding.as_ref(), frontal.as_ref());
        let embedding = self.seal_embedding(&s.id, &format!("step-{}", m.step_index), m.embedding.as_ref())?;
        let kept = KeptFrame { check: check.encode_to_vec(), satisfied: check.step_satisfied, attestation: m.attestation, embedding };
        let digest = ImageDigest { kind: "frame".into(), step_index: Some(m.step_index), sha256: m.sha256, received_at_unix_ms: now_ms() };
        Ok((check, kept, digest))
    }

    /// What a session keeps of a measured document photo.
    fn keep_document(&self, session_id: &str, d: &MeasuredDocument) -> Result<(KeptDocument, ImageDigest)> {
        let embedding = self.seal_embedding(session_id, "portrait", d.embedding.as_ref())?;
        let kept = KeptDocument { check: d.check.encode_to_vec(), usable: d.check.usable, embedding };
        let digest =
            ImageDigest { kind: "document".into(), step_index: None, sha256: d.check.image_sha256.clone(), received_at_unix_ms: now_ms() };
        Ok((kept, digest))
    }

    /// The kept frontal frame's embedding; with `satisfied_only`, only when that frame
    /// satisfied its step (the reference for the other steps), otherwise whatever frontal
    /// frame is kept (for the face match).
    fn frontal_embedding(&self, s: &Session, satisfied_only: bool) -> Option<Embedding> {
        let k = s.steps.first()?.kept.as_ref().filter(|k| k.satisfied || !satisfied_only)?;
        let e = k.embedding.as_ref()?;
        self.sealer.open(&s.id, "step-0", e).ok().map(|values| Embedding { values, model_id: e.model_id.clone() })
    }

    fn seal_embedding(&self, session_id: &str, purpose: &str, e: Option<&Embedding>) -> Result<Option<SealedEmbedding>> {
        e.filter(|e| !e.values.is_empty())
            .map(|e| self.sealer.seal(session_id, purpose, &e.model_id, &e.values))
            .transpose()
            .map_err(OrchestratorError::Internal)
    }

    // -----------------------------------------------------------------------------------
    // Progress
    // -----------------------------------------------------------------------------------

    fn progress(&self, s: &Session, added: Option<Added>) -> Result<SessionProgress> {
        let policy = self.policy(s)?;
        let now = now_ms();
        let challenge = s.challenge();
        let state = match s.phase {
            Phase::Finished => SessionState::Finished,
            Phase::Cancelled => SessionState::Cancelled,
            Phase::Collecting if s.expired(now) => SessionState::Expired,
            Phase::Collecting => SessionState::Collecting,
        };
        let steps: Vec<StepStatus> = s
            .steps
            .iter()
            .enumerate()
            .map(|(i, st)| StepStatus {
                step_index: i as u32,
                pose: challenge.steps.get(i).map_or(0, |c| c.pose),
                satisfied: st.kept.as_ref().is_some_and(|k| k.satisfied),
                frames_received: st.frames_received,
                kept_frame: st.kept.as_ref().map(Session::frame_check),
            })
            .collect();
        let missing = missing_evidence(s, policy, &challenge);
        let r = &policy.rules;
        let can_finish = (!r.require_frames || s.steps.iter().all(|st| st.frames_received > 0))
            && (!r.require_document || s.document.is_some())
            && (!r.require_signature || s.signature.is_some());
        let mut reasons = Vec::new();
        if state == SessionState::Expired {
            reasons.push(reason(ReasonCode::SessionExpired, "the session expired before it was finished; start a new one", true));
        }
        Ok(SessionProgress {
            session_id: s.id.clone(),
            state: state as i32,
            added: added.map(|a| match a {
                Added::Frame(f) => session_progress::Added::Frame(f),
                Added::Document(d) => session_progress::Added::Document(d),
                Added::Signature(g) => session_progress::Added::Signature(g),
            }),
            steps,
            kept_document: s.document_check(),
            kept_signature: s.signature_check(),
            missing,
            can_finish: can_finish && state == SessionState::Collecting,
            expires_at_unix_ms: s.expires_at_unix_ms,
            challenge: Some(challenge),
            policy: Some(policy.summary()),
            reasons,
            result: s.result(),
            client_reference: s.client_reference.clone(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------------------

fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| OrchestratorError::Internal(format!("no randomness: {e}")))?;
    Ok(b)
}

fn random_token(n: usize) -> Result<String> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(n)?).replace('_', "-"))
}

/// Refuses a session that no longer accepts evidence.
fn collecting(s: &Session, now: i64) -> Result<()> {
    match s.phase {
        Phase::Finished => {
            Err(OrchestratorError::FailedPrecondition("ALREADY_USED: the session is finished; GetSession returns its result".into()))
        }
        Phase::Cancelled => Err(OrchestratorError::FailedPrecondition("ALREADY_USED: the session was cancelled; start a new one".into())),
        Phase::Collecting if s.expired(now) => Err(OrchestratorError::FailedPrecondition(
            "SESSION_EXPIRED: the session expired before it was finished; start a new one".into(),
        )),
        Phase::Collecting => Ok(()),
    }
}

fn validate_frame(s: &Session, f: &Frame, what: &str) -> Result<()> {
    let Some(img) = &f.image else {
        return Err(OrchestratorError::InvalidArgument(format!("IMAGE_EMPTY: {what}.image: required")));
    };
    if img.data.is_empty() {
        return Err(OrchestratorError::InvalidArgument(format!("IMAGE_EMPTY: {what}.image.data: no bytes")));
    }
    if f.step_index as usize >= s.steps.len() {
        return Err(OrchestratorError::InvalidArgument(format!(
            "STEP_MISSING: {what}.step_index {} is not a step of this session's challenge (0 to {})",
            f.step_index,
            s.steps.len().saturating_sub(1)
        )));
    }
    Ok(())
}

fn backend_error(e: BackendError, what: &str) -> OrchestratorError {
    match &e {
        // The challenge behind the session expired or was used at the liveness service.
        BackendError::Status { status, .. } if status.code() == tonic::Code::FailedPrecondition => {
            if status.message().starts_with("EXPIRED") {
                OrchestratorError::FailedPrecondition(format!(
                    "SESSION_EXPIRED: {what}: the session's challenge expired; start a new session"
                ))
            } else {
                OrchestratorError::FailedPrecondition(status.message().to_string())
            }
        }
        _ => e.into(),
    }
}

/// Completes a frame's check with the same-person test against the frontal frame.
fn judge_frame(policy: &Policy, s: &Session, mut check: FrameCheck, emb: Option<&Embedding>, frontal: Option<&Embedding>) -> FrameCheck {
    let is_frontal = s.challenge().steps.get(check.step_index as usize).is_some_and(|c| c.pose == PoseStep::Frontal as i32);
    if !is_frontal && let (Some(e), Some(f)) = (emb, frontal) {
        check.similarity_to_reference = cosine(&e.values, &f.values);
    }
    if let Some(sim) = check.similarity_to_reference
        && sim < policy.rules.same_person_threshold
    {
        let mut r = reason(ReasonCode::FaceChanged, "this face is not the one in the frontal frame", true);
        (r.measured, r.limit, r.step_index) =
            (Some(f64::from(sim)), Some(f64::from(policy.rules.same_person_threshold)), Some(check.step_index));
        check.reasons.push(r);
        check.step_satisfied = false;
    }
    check
}

fn too_many_frames(step: usize, max_per_step: u32) -> OrchestratorError {
    OrchestratorError::Busy(format!(
        "STEP_MISSING: step {step} already received {max_per_step} frames, the most one session accepts per step"
    ))
}

fn apply_frame(s: &mut Session, step: usize, kept: KeptFrame, digest: ImageDigest, max_per_step: u32) -> Result<()> {
    let st = &mut s.steps[step];
    if st.frames_received >= max_per_step {
        return Err(too_many_frames(step, max_per_step));
    }
    st.frames_received += 1;
    // Keep the most recent satisfying frame, or the most recent one while none satisfies.
    if kept.satisfied || st.kept.as_ref().is_none_or(|k| !k.satisfied) {
        st.kept = Some(kept);
    }
    s.images.push(digest);
    Ok(())
}

fn apply_document(s: &mut Session, kept: KeptDocument, digest: ImageDigest, models: &[ekyc_proto::v1::ModelInfo]) {
    s.documents_received += 1;
    // A worse photo does not replace a usable one.
    if kept.usable || s.document.as_ref().is_none_or(|d| !d.usable) {
        s.document = Some(kept);
    }
    s.images.push(digest);
    s.add_models(models);
}

fn missing_evidence(s: &Session, policy: &Policy, challenge: &Challenge) -> Vec<MissingEvidence> {
    let r = &policy.rules;
    let mut out = Vec::new();
    let unsatisfied: Vec<u32> =
        s.steps.iter().enumerate().filter(|(_, st)| !st.kept.as_ref().is_some_and(|k| k.satisfied)).map(|(i, _)| i as u32).collect();
    if !unsatisfied.is_empty() {
        let poses: Vec<String> = unsatisfied
            .iter()
            .filter_map(|i| challenge.steps.get(*i as usize))
            .map(|c| {
                if c.instruction_en.is_empty() {
                    PoseStep::try_from(c.pose).map_or("?".into(), |p| p.as_str_name().to_lowercase())
                } else {
                    c.instruction_en.clone()
                }
            })
            .collect();
        out.push(MissingEvidence {
            kind: EvidenceKind::Frames as i32,
            step_indexes: unsatisfied,
            required: r.require_frames,
            message: format!("send a photo for each step: {}", poses.join("; ")),
        });
    }
    if !s.document.as_ref().is_some_and(|d| d.usable) {
        out.push(MissingEvidence {
            kind: EvidenceKind::Document as i32,
            step_indexes: vec![],
            required: r.require_document,
            message: "send a photo of your photo-ID, the whole card flat and sharp, without glare".into(),
        });
    }
    if !s.signature.as_ref().is_some_and(|g| g.valid) {
        out.push(MissingEvidence {
            kind: EvidenceKind::Signature as i32,
            step_indexes: vec![],
            required: r.require_signature,
            message: if r.accept_requires_signature {
                "sign the session nonce with your certificate (e.g. the My Number card's signing certificate); without it staff must review"
                    .into()
            } else {
                "optionally sign the session nonce with your certificate".into()
            },
        });
    }
    out
}

fn describe_missing(m: &MissingEvidence) -> String {
    match EvidenceKind::try_from(m.kind) {
        Ok(EvidenceKind::Frames) => format!("frames for steps {:?}", m.step_indexes),
        Ok(EvidenceKind::Document) => "document".into(),
        Ok(EvidenceKind::Signature) => "signature".into(),
        _ => "evidence".into(),
    }
}

/// Identity consistency: frames of one person (from the liveness verdict), and a document
/// whose ghost portrait and other faces agree.
fn identity_outcome(
    s: &Session,
    liveness: &std::result::Result<(decide::Liveness, ekyc_proto::v1::VerifyChallengeResponse), Reason>,
) -> (Outcome<decide::Identity>, Option<f32>) {
    let mut reasons = Vec::new();
    let mut min_sim: Option<f32> = None;
    if let Ok((_, resp)) = liveness {
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
    (Outcome::Measured(decide::Identity { min_frame_similarity: min_sim, reasons }), min_sim)
}
