//! The progress projection: what a client sees of a session (state, steps, kept checks,
//! what is missing, whether Finish can be called), computed from the stored session alone.

use ekyc_proto::v1::{
    Challenge, DocumentCheck, EvidenceKind, FrameCheck, MissingEvidence, PoseStep, ReasonCode, SessionProgress, SessionState,
    SignatureCheck, StepStatus, session_progress,
};

use crate::decide::reason;
use crate::engine::{Engine, Result};
use crate::policy::Policy;
use crate::session::{Phase, Session};
use crate::store::now_ms;

/// What an Add* call measured, for the progress it answers with.
pub(crate) enum Added {
    Frame(FrameCheck),
    Document(DocumentCheck),
    Signature(SignatureCheck),
}

impl Engine {
    pub(crate) fn progress(&self, s: &Session, added: Option<Added>) -> Result<SessionProgress> {
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
            to_be_signed: s.to_be_signed.clone(),
        })
    }
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
            message: match (r.accept_requires_signature, r.signature_profile.as_deref()) {
                (true, Some("jpki-user-authentication")) => "sign the session's to_be_signed bytes with your My Number card's \
                                                             user-authentication certificate; without it staff must review"
                    .into(),
                (true, _) => "sign the session's to_be_signed bytes with your certificate; without it staff must review".into(),
                (false, _) => "optionally sign the session's to_be_signed bytes with your certificate".into(),
            },
        });
    }
    out
}

pub(crate) fn describe_missing(m: &MissingEvidence) -> String {
    match EvidenceKind::try_from(m.kind) {
        Ok(EvidenceKind::Frames) => format!("frames for steps {:?}", m.step_indexes),
        Ok(EvidenceKind::Document) => "document".into(),
        Ok(EvidenceKind::Signature) => "signature".into(),
        _ => "evidence".into(),
    }
}
