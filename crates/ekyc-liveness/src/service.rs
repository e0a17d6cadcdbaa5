//! The gRPC adapter: validates requests, calls the engine, maps its verdict to `ekyc.v1`.

use std::sync::Arc;
use std::time::Instant;

use ekyc_proto::v1 as pb;
use ekyc_proto::v1::liveness_server::Liveness;
use ekyc_runtime::convert;
use ekyc_runtime::kit::{Holder, answer};
use tonic::{Request, Response, Status};

use crate::challenge::Pose;
use crate::engine::{Engine, Frame};
use crate::error::LivenessError;
use crate::verify::{Code, Reason, StepOutcome};

#[derive(Debug, Clone)]
pub struct LivenessService {
    engine: Holder<Engine>,
}

impl LivenessService {
    pub fn new(engine: Holder<Engine>) -> Self {
        Self { engine }
    }

    fn engine(&self) -> Result<Arc<Engine>, LivenessError> {
        self.engine.loaded()
    }
}

fn pose_pb(p: Pose) -> pb::PoseStep {
    match p {
        Pose::Frontal => pb::PoseStep::Frontal,
        Pose::TurnLeft => pb::PoseStep::TurnLeft,
        Pose::TurnRight => pb::PoseStep::TurnRight,
        Pose::LookUp => pb::PoseStep::LookUp,
        Pose::LookDown => pb::PoseStep::LookDown,
    }
}

fn code_pb(c: Code) -> pb::ReasonCode {
    use pb::ReasonCode as R;
    match c {
        Code::NoFace => R::NoFace,
        Code::MultipleFaces => R::MultipleFaces,
        Code::FaceTooSmall => R::FaceTooSmall,
        Code::FaceBlurred => R::FaceBlurred,
        Code::PoseNotReached => R::PoseNotReached,
        Code::StepOutOfOrder => R::StepOutOfOrder,
        Code::StepMissing => R::StepMissing,
        Code::FaceChanged => R::FaceChanged,
        Code::ReplayedFrame => R::ReplayedFrame,
        Code::MirroredFrame => R::MirroredFrame,
        Code::Expired => R::Expired,
        Code::AlreadyUsed => R::AlreadyUsed,
        Code::ChallengeInvalid => R::ChallengeInvalid,
        Code::LivenessFailed => R::LivenessFailed,
        Code::CaptureTimeInvalid => R::CaptureTimeInvalid,
        Code::ImageCorrupt => R::ImageCorrupt,
        Code::PresentationAttackSuspected => R::PresentationAttackSuspected,
        Code::PrintAttackSuspected => R::PrintAttackSuspected,
        Code::ScreenReplaySuspected => R::ScreenReplaySuspected,
        Code::RenderedFromStillSuspected => R::RenderedFromStillSuspected,
        Code::PadNotChecked => R::PadNotChecked,
    }
}

fn reason_pb(r: &Reason, step: Option<usize>) -> pb::Reason {
    pb::Reason {
        code: code_pb(r.code) as i32,
        message: r.message.clone(),
        image_index: r.frame_index.map(|i| i as u32),
        step_index: step.map(|s| s as u32),
        face_index: None,
        measured: r.measured,
        limit: r.limit,
        blocking: r.blocking,
    }
}

fn step_pb(o: &StepOutcome, embedder_id: &str) -> pb::StepResult {
    pb::StepResult {
        step_index: o.step_index as u32,
        pose: pose_pb(o.pose) as i32,
        passed: o.passed,
        frame_index: o.frame_index.map(|i| i as u32),
        measured_pose: o.measured.as_ref().map(convert::pose),
        target_angle_deg: o.target,
        reached_angle_deg: o.reached_angle,
        reached: o.reached,
        face: o.face.as_ref().map(|f| pb::Face { embedding: None, ..convert::face(f, embedder_id) }),
        similarity_to_reference: o.similarity,
        frame_sha256: o.sha256.clone(),
        reasons: o.reasons.iter().map(|r| reason_pb(r, Some(o.step_index))).collect(),
        pad_score: o.pad_score,
    }
}

/// The models this service runs: the face models and, with PAD on, the PAD models.
fn models(engine: &Engine) -> Vec<pb::ModelInfo> {
    let mut all = convert::models(engine.vision());
    if engine.config().pad.enabled {
        all.extend(engine.vision().anti_spoofing.models.iter().map(|m| pb::ModelInfo {
            role: "anti_spoofing".into(),
            model_id: m.model.id.clone(),
            sha256: m.model.sha256.clone().unwrap_or_default(),
        }));
    }
    all
}

fn frame(f: pb::Frame) -> Frame {
    Frame {
        bytes: f.image.map(|i| i.data).unwrap_or_default(),
        step_index: f.step_index as usize,
        capture_ms: f.client_capture_unix_ms,
        mirrored: f.mirrored,
    }
}

impl LivenessService {
    async fn do_create(&self, req: pb::CreateChallengeRequest) -> Result<pb::Challenge, LivenessError> {
        let engine = self.engine()?;
        let issued = engine.create(req.step_count as usize, req.client_reference).await?;
        let japanese = req.locale.to_ascii_lowercase().starts_with("ja");
        Ok(pb::Challenge {
            challenge_id: issued.id,
            steps: issued
                .steps
                .iter()
                .enumerate()
                .map(|(i, (pose, target))| {
                    let (ja, en) = pose.instructions();
                    pb::ChallengeStep {
                        index: i as u32,
                        pose: pose_pb(*pose) as i32,
                        target_angle_deg: *target,
                        instruction_ja: ja.into(),
                        instruction_en: en.into(),
                        instruction: if japanese { ja.into() } else { en.into() },
                    }
                })
                .collect(),
            issued_at_unix_ms: issued.issued_ms,
            expires_at_unix_ms: issued.expires_ms,
            locale: if japanese { "ja".into() } else { "en".into() },
            client_reference: issued.client_reference,
        })
    }

    async fn do_check(&self, req: pb::CheckFrameRequest) -> Result<pb::CheckFrameResponse, LivenessError> {
        let engine = self.engine()?;
        let f = req.frame.ok_or_else(|| LivenessError::InvalidArgument("frame: a frame is required".into()))?;
        let checked = engine.check_frame(&req.challenge_id, frame(f), Some(&req.reference_attestation)).await?;
        let embedder_id = engine.vision().embedder.model.id.clone();
        Ok(pb::CheckFrameResponse {
            result: Some(step_pb(&checked.step, &embedder_id)),
            embedding: checked.embedding.map(|values| pb::Embedding { values, model_id: embedder_id }),
            attestation: checked.attestation,
            same_person_threshold: engine.vision().match_threshold,
        })
    }

    async fn do_verify(&self, req: pb::VerifyChallengeRequest) -> Result<pb::VerifyChallengeResponse, LivenessError> {
        let started = Instant::now();
        let engine = self.engine()?;
        let frames: Vec<Frame> = req.frames.into_iter().map(frame).collect();
        let outcome = engine.verify(&req.challenge_id, frames, req.frame_attestations).await?;
        let v = &outcome.verdict;
        let embedder_id = engine.vision().embedder.model.id.clone();
        Ok(pb::VerifyChallengeResponse {
            challenge_id: req.challenge_id,
            passed: v.passed,
            liveness_score: v.score,
            steps: v.steps.iter().map(|s| step_pb(s, &embedder_id)).collect(),
            reasons: v.reasons.iter().map(|r| reason_pb(r, None)).collect(),
            reference_embedding: v.reference_embedding.as_ref().map(|e| pb::Embedding { values: e.clone(), model_id: embedder_id.clone() }),
            frame_digests: v
                .digests
                .iter()
                .map(|(f, s, h)| pb::FrameDigest { frame_index: *f as u32, step_index: *s as u32, sha256: h.clone() })
                .collect(),
            verified_at_unix_ms: outcome.verified_ms,
            models: models(&engine),
            pad: v.pad.as_ref().map(|p| pb::PadResult {
                attack_score: p.attack_score,
                threshold: engine.config().pad.threshold,
                species: p
                    .species
                    .map(|s| serde_json::to_value(s).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default())
                    .unwrap_or_default(),
                shading_spread: p.shading.iter().map(|(_, s)| *s).reduce(f32::max),
                model_ids: engine.vision().anti_spoofing.models.iter().map(|m| m.model.id.clone()).collect(),
            }),
            timing: Some(pb::Timing { queue_ms: 0.0, inference_ms: 0.0, total_ms: started.elapsed().as_secs_f32() * 1000.0 }),
            client_reference: outcome.client_reference,
            same_person_threshold: outcome.match_threshold,
        })
    }
}

#[tonic::async_trait]
impl Liveness for LivenessService {
    async fn create_challenge(&self, request: Request<pb::CreateChallengeRequest>) -> Result<Response<pb::Challenge>, Status> {
        answer(crate::KIND, "CreateChallenge", self.do_create(request.into_inner()).await)
    }

    async fn check_frame(&self, request: Request<pb::CheckFrameRequest>) -> Result<Response<pb::CheckFrameResponse>, Status> {
        answer(crate::KIND, "CheckFrame", self.do_check(request.into_inner()).await)
    }

    async fn verify_challenge(
        &self,
        request: Request<pb::VerifyChallengeRequest>,
    ) -> Result<Response<pb::VerifyChallengeResponse>, Status> {
        answer(crate::KIND, "VerifyChallenge", self.do_verify(request.into_inner()).await)
    }
}
