//! The orchestrator's core: sessions step by step or in one call, over the three backends.
//! Plain async Rust: the gRPC adapter in [`crate::service`] authenticates and converts.
//!
//! Every Add* call sends its image to the service that measures it ([`crate::calls`]) and
//! keeps what comes back ([`crate::evidence`]); the image itself is dropped when the call
//! returns. Sessions live sealed in [`crate::sessions`]; updates are compare-and-set, so
//! concurrent calls (or replicas) never lose evidence. [`crate::finish`] decides;
//! [`crate::progress`] projects a session for the client.

use std::sync::Arc;

use ekyc_evidence::EvidenceKey;
use ekyc_proto::v1::{
    AddDocumentRequest, AddFrameRequest, AddSignatureRequest, CancelSessionRequest, CreateChallengeRequest, FinishRequest,
    GetSessionRequest, ListPoliciesResponse, SessionProgress, SignatureCheck, StartSessionRequest, StartSessionResponse,
    VerificationResult, VerifyRequest,
};
use ekyc_signature::TrustStore;
use prost::Message;

use ekyc_runtime::replay::ReplayMemory;

use crate::auth::{Auth, Caller, random_bytes};
use crate::clients::Backends;
use crate::config::OrchestratorConfig;
use crate::error::OrchestratorError;
use crate::evidence::{
    apply_document, apply_frame, collecting, frontal_attestation, keep_document, keep_frame, too_many, too_many_frames, validate_frame,
};
use crate::keys::Keys;
use crate::policy::{Policies, Policy};
use crate::progress::Added;
use crate::session::{KeptSignature, Phase, Session, StepRecord};
use crate::sessions::{MAX_ID_BYTES, Sessions};
use crate::store::{Store, now_ms};

pub(crate) type Result<T> = std::result::Result<T, OrchestratorError>;

/// The orchestrator.
#[derive(Debug)]
pub struct Engine {
    pub(crate) cfg: OrchestratorConfig,
    pub(crate) policies: Policies,
    pub(crate) sessions: Sessions,
    pub(crate) backends: Backends,
    pub(crate) evidence_key: EvidenceKey,
    pub(crate) trust: Arc<TrustStore>,
    pub(crate) auth: Auth,
    /// Keyed digests of the document photos of earlier sessions.
    pub(crate) replay: ReplayMemory,
}

impl Engine {
    pub fn new(cfg: OrchestratorConfig, keys: Keys, max_message_bytes: usize) -> Result<Engine> {
        cfg.validate().map_err(OrchestratorError::Config)?;
        let keys_state = Arc::new(keys.state);
        let (store, replay) = match cfg.redis() {
            Some(redis) => {
                // One client (one connection, one password read) for sessions and replays.
                let client = ekyc_runtime::redis::Redis::connect(&redis).map_err(OrchestratorError::Config)?;
                (Store::on_redis(client.clone()), ReplayMemory::redis(client, Arc::clone(&keys_state)))
            }
            None => (Store::memory(cfg.max_sessions_in_memory), ReplayMemory::in_process(cfg.replay_capacity, Arc::clone(&keys_state))),
        };
        let trust = TrustStore::load(&cfg.signature).map_err(|e| OrchestratorError::Config(format!("signature trust anchors: {e}")))?;
        Ok(Engine {
            policies: Policies::new(&cfg.policies, &cfg.default_policy),
            backends: Backends::new(&cfg.backends, max_message_bytes)?,
            sessions: Sessions::new(store, keys_state, cfg.retain_after_expiry_s),
            replay,
            auth: Auth::new(&keys.api_keys).map_err(OrchestratorError::Config)?,
            evidence_key: keys.evidence_key,
            trust: Arc::new(trust),
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

    /// Who an `authorization` metadata value names, or UNAUTHENTICATED.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller> {
        self.auth.authenticate(self.sessions.keys(), authorization, now_ms())
    }

    /// The authentication and authorisation rules.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    pub fn list_policies(&self) -> ListPoliciesResponse {
        ListPoliciesResponse {
            policies: self.policies.all().map(Policy::summary).collect(),
            default_policy: self.policies.default_name().to_string(),
        }
    }

    pub(crate) fn policy(&self, s: &Session) -> Result<&Policy> {
        self.policies.get(&s.policy).ok_or_else(|| {
            OrchestratorError::FailedPrecondition(format!("EVIDENCE_MISSING: the session's policy {:?} is no longer configured", s.policy))
        })
    }

    // -----------------------------------------------------------------------------------
    // Sessions
    // -----------------------------------------------------------------------------------

    /// Starts a session for `caller` (an API key: policy permission and rate checked).
    pub async fn start_session(&self, caller: &Caller, req: StartSessionRequest) -> Result<StartSessionResponse> {
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
        self.auth.admit_start(caller, &policy.name)?;
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
        let to_be_signed = crate::calls::to_be_signed(&self.cfg.issuer, &id, &policy, &nonce, expires);
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
            signatures_received: 0,
            to_be_signed: to_be_signed.clone(),
            images: Vec::new(),
            models: Vec::new(),
            result: None,
        };
        if !self.sessions.create(&session).await? {
            return Err(OrchestratorError::Internal("session id collision".into()));
        }
        tracing::info!(
            session = %self.sessions.log_ref(&id),
            api_key = %self.auth.name(caller),
            policy = %policy.name,
            steps = challenge.steps.len(),
            "session started"
        );
        Ok(StartSessionResponse {
            session_token: Auth::issue_token(self.sessions.keys(), &id, expires),
            session_id: id,
            challenge: Some(challenge),
            nonce,
            expires_at_unix_ms: expires,
            policy: Some(policy.summary()),
            to_be_signed,
        })
    }

    /// Loads a session that still accepts evidence.
    async fn load_collecting(&self, id: &str) -> Result<Session> {
        let (s, _) = self.sessions.load(id).await?;
        collecting(&s, now_ms())?;
        Ok(s)
    }

    // -----------------------------------------------------------------------------------
    // Evidence, step by step
    // -----------------------------------------------------------------------------------

    pub async fn add_frame(&self, req: AddFrameRequest) -> Result<SessionProgress> {
        let s = self.load_collecting(&req.session_id).await?;
        let frame = req.frame.ok_or_else(|| OrchestratorError::InvalidArgument("IMAGE_EMPTY: frame: required".into()))?;
        validate_frame(&s, &frame, "frame")?;
        let step = frame.step_index as usize;
        // Checked again when storing (a concurrent call may have added one); checked here
        // so that a full step costs no backend call.
        if s.steps[step].frames_received >= self.cfg.max_frames_per_step {
            return Err(too_many_frames(step, self.cfg.max_frames_per_step));
        }
        self.policy(&s)?;
        let measured = self.measure_frame(&s, frame, frontal_attestation(&s)).await?;
        let (check, kept, digest) = keep_frame(&s, measured);
        let satisfied = kept.satisfied;
        let (s, ()) = self
            .sessions
            .update(&s.id, |s| {
                collecting(s, now_ms())?;
                apply_frame(s, step, kept.clone(), digest.clone(), self.cfg.max_frames_per_step)
            })
            .await?;
        tracing::info!(session = %self.sessions.log_ref(&s.id), step, satisfied, "frame added");
        self.progress(&s, Some(Added::Frame(check)))
    }

    pub async fn add_document(&self, req: AddDocumentRequest) -> Result<SessionProgress> {
        let s = self.load_collecting(&req.session_id).await?;
        let image = req.image.ok_or_else(|| OrchestratorError::InvalidArgument("IMAGE_EMPTY: image: required".into()))?;
        if image.data.is_empty() {
            return Err(OrchestratorError::InvalidArgument("IMAGE_EMPTY: image.data: no bytes".into()));
        }
        let max = self.cfg.max_documents_per_session;
        if s.documents_received >= max {
            return Err(too_many(max, "document photos"));
        }
        let measured = self.measure_document(&s, image, req.type_hint).await?;
        let (kept, digest) = keep_document(&measured);
        let (s, ()) = self
            .sessions
            .update(&s.id, |s| {
                collecting(s, now_ms())?;
                apply_document(s, kept.clone(), digest.clone(), &measured.models, max)
            })
            .await?;
        tracing::info!(session = %self.sessions.log_ref(&s.id), usable = measured.check.usable, "document added");
        self.progress(&s, Some(Added::Document(measured.check)))
    }

    pub async fn add_signature(&self, req: AddSignatureRequest) -> Result<SessionProgress> {
        let s = self.load_collecting(&req.session_id).await?;
        let ev = req.signature.ok_or_else(|| OrchestratorError::InvalidArgument("SIGNATURE_MISSING: signature: required".into()))?;
        let max = self.cfg.max_signatures_per_session;
        if s.signatures_received >= max {
            return Err(too_many(max, "signatures"));
        }
        let check = self.check_signature(&s, ev).await?;
        let (s, ()) = self
            .sessions
            .update(&s.id, |s| {
                collecting(s, now_ms())?;
                apply_signature(s, &check, max)
            })
            .await?;
        tracing::info!(session = %self.sessions.log_ref(&s.id), valid = check.valid, "signature added");
        self.progress(&s, Some(Added::Signature(check)))
    }

    pub async fn get_session(&self, req: GetSessionRequest) -> Result<SessionProgress> {
        let (s, _) = self.sessions.load(&req.session_id).await?;
        self.progress(&s, None)
    }

    pub async fn cancel(&self, req: CancelSessionRequest) -> Result<SessionProgress> {
        let (s, _) = self
            .sessions
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
                Ok(())
            })
            .await?;
        tracing::info!(session = %self.sessions.log_ref(&s.id), "session cancelled");
        self.progress(&s, None)
    }

    // -----------------------------------------------------------------------------------
    // Finishing
    // -----------------------------------------------------------------------------------

    pub async fn finish(&self, req: FinishRequest) -> Result<VerificationResult> {
        let (s, _) = self.sessions.load(&req.session_id).await?;
        if s.phase == Phase::Finished {
            return s.result().ok_or_else(|| OrchestratorError::Internal("finished session without a result".into()));
        }
        collecting(&s, now_ms())?;
        self.finish_session(s).await
    }

    pub async fn verify(&self, req: VerifyRequest) -> Result<VerificationResult> {
        let (s, _) = self.sessions.load(&req.session_id).await?;
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
                "SESSION_LIMIT_REACHED: {n} frames for step {step} exceed the {} a session accepts per step",
                self.cfg.max_frames_per_step
            )));
        }
        self.policy(&s)?;
        let signature = match req.signature {
            Some(ev) => Some(self.check_signature(&s, ev).await?),
            None => None,
        };
        // Measure the frames one after another in request order (the liveness service orders
        // a challenge's steps by when it received their frames, so the request's order is the
        // order it judges) and the document beside them; nothing is stored until all of them
        // have answered.
        let frames = async {
            let mut measured = Vec::with_capacity(req.frames.len());
            let mut reference = frontal_attestation(&s);
            for f in req.frames {
                let m = self.measure_frame(&s, f, reference.clone()).await?;
                // A satisfied frontal frame becomes the reference, as it will be kept.
                if m.step_index == 0 && m.check.step_satisfied {
                    reference = m.attestation.clone();
                }
                measured.push(m);
            }
            Ok::<_, OrchestratorError>(measured)
        };
        let document = async {
            match req.document {
                Some(img) => self.measure_document(&s, img, req.document_type_hint).await.map(Some),
                None => Ok(None),
            }
        };
        let (frames, document) = futures::future::try_join(frames, document).await?;

        // Apply in capture order to a copy, exactly as the Add* calls would have.
        let mut next = s.clone();
        for m in frames {
            let step = m.step_index as usize;
            let (_, kept, digest) = keep_frame(&next, m);
            apply_frame(&mut next, step, kept, digest, self.cfg.max_frames_per_step)?;
        }
        if let Some(d) = document {
            let (kept, digest) = keep_document(&d);
            apply_document(&mut next, kept, digest, &d.models, self.cfg.max_documents_per_session)?;
        }
        if let Some(check) = signature {
            apply_signature(&mut next, &check, self.cfg.max_signatures_per_session)?;
        }
        self.finish_session(next).await
    }
}

// ---------------------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------------------

/// Keeps the most recent signature check, within the session's cap.
fn apply_signature(s: &mut Session, check: &SignatureCheck, max: u32) -> Result<()> {
    if s.signatures_received >= max {
        return Err(too_many(max, "signatures"));
    }
    s.signatures_received += 1;
    s.signature = Some(KeptSignature { check: check.encode_to_vec(), valid: check.valid });
    Ok(())
}

fn random_token(n: usize) -> Result<String> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(n)?).replace('_', "-"))
}
