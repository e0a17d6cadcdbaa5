//! What a session keeps of each piece of evidence, and the rules for keeping it: a frame's
//! check completed with the same-person test against the kept frontal frame, the most
//! recent satisfying frame per step, a worse document photo never replacing a usable one,
//! the per-session caps, and the state a session must be in to accept evidence. Pure
//! functions over [`Session`]: no I/O.

use ekyc_proto::v1::{Embedding, Frame, FrameCheck, ModelInfo, PoseStep, ReasonCode};

use crate::calls::{MeasuredDocument, MeasuredFrame};
use crate::decide::reason;
use crate::engine::Result;
use crate::error::OrchestratorError;
use crate::session::{ImageDigest, KeptDocument, KeptEmbedding, KeptFrame, Phase, Session};
use crate::store::now_ms;

/// What a session keeps of a measured frame: its check completed with the same-person test
/// against the kept frontal frame, the attestation, the embedding, the digest.
pub(crate) fn keep_frame(s: &Session, m: MeasuredFrame) -> (FrameCheck, KeptFrame, ImageDigest) {
    let frontal = frontal_embedding(s, true);
    let check = judge_frame(m.same_person_threshold, s, m.check, m.embedding.as_ref(), frontal.as_ref());
    let embedding = m.embedding.as_ref().and_then(KeptEmbedding::from_proto);
    let kept =
        KeptFrame { check: prost::Message::encode_to_vec(&check), satisfied: check.step_satisfied, attestation: m.attestation, embedding };
    let digest = ImageDigest { kind: "frame".into(), step_index: Some(m.step_index), sha256: m.sha256, received_at_unix_ms: now_ms() };
    (check, kept, digest)
}

/// What a session keeps of a measured document photo.
pub(crate) fn keep_document(d: &MeasuredDocument) -> (KeptDocument, ImageDigest) {
    let embedding = d.embedding.as_ref().and_then(KeptEmbedding::from_proto);
    let kept = KeptDocument { check: prost::Message::encode_to_vec(&d.check), usable: d.check.usable, embedding };
    let digest =
        ImageDigest { kind: "document".into(), step_index: None, sha256: d.check.image_sha256.clone(), received_at_unix_ms: now_ms() };
    (kept, digest)
}

/// The kept frontal frame's embedding; with `satisfied_only`, only when that frame
/// satisfied its step (the reference for the other steps), otherwise whatever frontal frame
/// is kept (for the face match).
pub(crate) fn frontal_embedding(s: &Session, satisfied_only: bool) -> Option<Embedding> {
    let k = s.steps.first()?.kept.as_ref().filter(|k| k.satisfied || !satisfied_only)?;
    k.embedding.as_ref().map(KeptEmbedding::to_proto)
}

/// The attestation of the kept frontal frame when it satisfied its step: the liveness
/// service measures later steps' turns from it (empty when there is none).
pub(crate) fn frontal_attestation(s: &Session) -> Vec<u8> {
    s.steps.first().and_then(|st| st.kept.as_ref()).filter(|k| k.satisfied).map(|k| k.attestation.clone()).unwrap_or_default()
}

/// The portrait's embedding, when the kept document is usable.
pub(crate) fn portrait_embedding(s: &Session) -> Option<Embedding> {
    s.document.as_ref().filter(|d| d.usable)?.embedding.as_ref().map(KeptEmbedding::to_proto)
}

/// Refuses a session that no longer accepts evidence.
pub(crate) fn collecting(s: &Session, now: i64) -> Result<()> {
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

pub(crate) fn validate_frame(s: &Session, f: &Frame, what: &str) -> Result<()> {
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

/// Completes a frame's check with the same-person test against the frontal frame, at the
/// liveness service's own threshold (the one its verdict applies).
pub(crate) fn judge_frame(
    threshold: f32,
    s: &Session,
    mut check: FrameCheck,
    emb: Option<&Embedding>,
    frontal: Option<&Embedding>,
) -> FrameCheck {
    let is_frontal = s.challenge().steps.get(check.step_index as usize).is_some_and(|c| c.pose == PoseStep::Frontal as i32);
    if !is_frontal && let (Some(e), Some(f)) = (emb, frontal) {
        check.similarity_to_reference = cosine(&e.values, &f.values);
    }
    if let Some(sim) = check.similarity_to_reference
        && sim < threshold
    {
        // The liveness service reports it too when it was given the frontal frame's attestation.
        if !check.reasons.iter().any(|r| r.code == ReasonCode::FaceChanged as i32) {
            let mut r = reason(ReasonCode::FaceChanged, "this face is not the one in the frontal frame", true);
            (r.measured, r.limit, r.step_index) = (Some(f64::from(sim)), Some(f64::from(threshold)), Some(check.step_index));
            check.reasons.push(r);
        }
        check.step_satisfied = false;
    }
    check
}

pub(crate) fn too_many_frames(step: usize, max_per_step: u32) -> OrchestratorError {
    OrchestratorError::Busy(format!(
        "SESSION_LIMIT_REACHED: step {step} already received {max_per_step} frames, the most one session accepts per step"
    ))
}

pub(crate) fn apply_frame(s: &mut Session, step: usize, kept: KeptFrame, digest: ImageDigest, max_per_step: u32) -> Result<()> {
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

pub(crate) fn apply_document(s: &mut Session, kept: KeptDocument, digest: ImageDigest, models: &[ModelInfo], max: u32) -> Result<()> {
    if s.documents_received >= max {
        return Err(too_many(max, "document photos"));
    }
    s.documents_received += 1;
    // A worse photo does not replace a usable one.
    if kept.usable || s.document.as_ref().is_none_or(|d| !d.usable) {
        s.document = Some(kept);
    }
    s.images.push(digest);
    s.add_models(models);
    Ok(())
}

/// The per-session cap of `what` was reached.
pub(crate) fn too_many(max: u32, what: &str) -> OrchestratorError {
    OrchestratorError::Busy(format!("SESSION_LIMIT_REACHED: this session already received {max} {what}, the most it accepts"))
}

/// Cosine similarity of two vectors (they are unit length from the embedder, but do not
/// rely on it); None when the lengths differ or one is zero.
pub fn cosine(a: &[f32], b: &[f32]) -> Option<f32> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        dot += f64::from(*x) * f64::from(*y);
        na += f64::from(*x) * f64::from(*x);
        nb += f64::from(*y) * f64::from(*y);
    }
    (na > 0.0 && nb > 0.0).then(|| (dot / (na.sqrt() * nb.sqrt())) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_is_scale_free() {
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]).expect("defined") - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[1.0]).is_none());
        assert!(cosine(&[0.0, 0.0], &[1.0, 0.0]).is_none());
    }
}
