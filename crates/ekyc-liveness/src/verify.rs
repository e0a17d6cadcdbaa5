//! The liveness verdict, a pure function of the challenge and the analysed frames, so every
//! rule is easy to test and audit:
//!
//! - step 0 is the frontal reference: one face, |yaw| and |pitch| within `frontal_max_deg`;
//! - each other step must reach its angle relative to the reference (a turn to the user's
//!   left raises yaw; a look up raises pitch), with one large, sharp face;
//! - every step's face must match the reference face (embedding similarity at least the
//!   face-match threshold), else FACE_CHANGED;
//! - no frame may repeat another (same bytes, same pixels, or the same picture cropped or
//!   rescaled: aligned face crops correlating at `duplicate_correlation` or more), and none
//!   may be the mirror image of another (a mirrored photo must not pass as the opposite
//!   turn);
//! - no frame may have been seen in an earlier challenge (`FrameAnalysis::replayed`, set by
//!   the engine from the replay memory): REPLAYED_FRAME fails its step;
//! - the frames used must come in step order (by client capture time when every frame has
//!   one, else by their order in the request) and within the challenge's lifetime.
//!
//! - presentation-attack detection ([`crate::pad`]) on the frames the steps used: an attack
//!   score at or above `pad.threshold` fails the challenge (PRESENTATION_ATTACK_SUSPECTED,
//!   and the species when it can be told).
//!
//! Score, a confidence in [0, 1]: 0 after a hard failure (replay, mirror, order, identity);
//! otherwise the smaller of (a) the mean over the turned steps of `min(1, reached / target)`
//! times the identity margin `0.5 + 0.5 (similarity - threshold) / (0.9 - threshold)`
//! (clamped to [0, 1]) and (b) PAD's bona fide confidence `1 - attack score`; halved when the
//! challenge did not pass.

use ekyc_vision::{Face, HeadPose, cosine};

use crate::challenge::Pose;
use crate::config::LivenessConfig;

/// Reason codes of the verdict (mapped to `ekyc.v1.ReasonCode` by the service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    NoFace,
    MultipleFaces,
    FaceTooSmall,
    FaceBlurred,
    PoseNotReached,
    StepOutOfOrder,
    StepMissing,
    FaceChanged,
    ReplayedFrame,
    MirroredFrame,
    Expired,
    AlreadyUsed,
    ChallengeInvalid,
    LivenessFailed,
    CaptureTimeInvalid,
    ImageCorrupt,
    /// PAD found an attack; the species, when told, follows as its own reason.
    PresentationAttackSuspected,
    PrintAttackSuspected,
    ScreenReplaySuspected,
    RenderedFromStillSuspected,
    /// PAD was switched off (`liveness.pad.enabled = false`): a warning on every verdict.
    PadNotChecked,
}

/// One reason, with what was measured against what limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub code: Code,
    pub message: String,
    pub blocking: bool,
    pub frame_index: Option<usize>,
    pub measured: Option<f64>,
    pub limit: Option<f64>,
}

impl Reason {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), blocking: true, frame_index: None, measured: None, limit: None }
    }
    fn warning(mut self) -> Self {
        self.blocking = false;
        self
    }
    fn at(mut self, frame: usize) -> Self {
        self.frame_index = Some(frame);
        self
    }
    fn values(mut self, measured: f64, limit: f64) -> Self {
        self.measured = Some(measured);
        self.limit = Some(limit);
        self
    }
}

/// A frame as the request gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameInput {
    pub step_index: usize,
    pub capture_ms: Option<i64>,
}

/// What the workers measured on a frame. `faces` are largest first; the embedding and the
/// crop patterns (the "crop pattern": a 48x48 grey correlation vector, not a digital signature) belong to the largest face.
#[derive(Debug, Clone, Default)]
pub struct FrameAnalysis {
    /// SHA-256 of the bytes as received, and of the decoded RGB pixels, lower-case hex.
    pub sha256: String,
    pub pixels_sha256: String,
    /// The frame could not be decoded (only possible past the header checks).
    pub corrupt: Option<String>,
    pub faces: Vec<Face>,
    pub embedding: Option<Vec<f32>>,
    /// Zero-mean, unit-norm grey levels of the aligned face crop, and of its mirror image.
    pub crop_pattern: Option<Vec<f32>>,
    pub crop_pattern_mirrored: Option<Vec<f32>>,
    /// Perceptual hash of the aligned face crop (see [`crate::perceptual`]).
    pub face_hash: Option<crate::perceptual::FaceHash>,
    /// The frame (its bytes or its pixels) was seen in an earlier challenge.
    pub replayed: bool,
    /// Its face crop's perceptual hash was seen in an earlier challenge (other bytes and
    /// pixels): a re-encoded copy, or the same person in the same setting.
    pub resembles_earlier: bool,
    /// What presentation-attack detection measured on the main face.
    pub pad: Option<crate::pad::FrameCues>,
    /// When the service received the frame (CheckFrame), Unix ms; `None` for frames sent
    /// with VerifyChallenge itself, which arrive after every checked one.
    pub checked_ms: Option<i64>,
}

/// The challenge as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ChallengeSpec {
    pub steps: Vec<Pose>,
    /// Per step: the angle to reach (turns, looks) or the largest allowed (frontal), degrees.
    pub targets: Vec<f32>,
    pub issued_ms: i64,
    pub expires_ms: i64,
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    pub step_index: usize,
    pub pose: Pose,
    pub passed: bool,
    pub frame_index: Option<usize>,
    pub measured: Option<HeadPose>,
    pub target: f32,
    /// Angle reached in the step's direction relative to the reference (frontal step:
    /// max(|yaw|, |pitch|)), degrees.
    pub reached_angle: f32,
    pub reached: bool,
    pub face: Option<Face>,
    pub similarity: Option<f32>,
    pub sha256: String,
    pub reasons: Vec<Reason>,
    /// PAD attack score of the step's frame alone (see [`crate::pad::judge_frame`]).
    pub pad_score: Option<f32>,
}

/// The verdict on a challenge.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub passed: bool,
    pub score: f32,
    pub steps: Vec<StepOutcome>,
    pub reasons: Vec<Reason>,
    pub reference_embedding: Option<Vec<f32>>,
    /// `(frame index, step index, sha256)` of every frame received.
    pub digests: Vec<(usize, usize, String)>,
    /// Presentation-attack detection on the frames the steps used (`None` when PAD is off
    /// or no step had a face).
    pub pad: Option<crate::pad::ChallengePad>,
}

impl Verdict {
    /// A challenge refused before any frame was looked at.
    pub fn rejected(reason: Reason) -> Verdict {
        Verdict {
            passed: false,
            score: 0.0,
            steps: Vec::new(),
            reasons: vec![reason],
            reference_embedding: None,
            digests: Vec::new(),
            pad: None,
        }
    }
}

fn reached_angle(pose: Pose, face: &HeadPose, reference: Option<&HeadPose>) -> f32 {
    let (ry, rp) = reference.map_or((0.0, 0.0), |r| (r.yaw, r.pitch));
    match pose {
        Pose::Frontal => face.yaw.abs().max(face.pitch.abs()),
        Pose::TurnLeft => face.yaw - ry,
        Pose::TurnRight => ry - face.yaw,
        Pose::LookUp => face.pitch - rp,
        Pose::LookDown => rp - face.pitch,
    }
}

fn correlation(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() { 0.0 } else { a.iter().zip(b).map(|(x, y)| x * y).sum() }
}

/// Judges step `s` on frame `frame` (an index into `frames`), with the reference pose and
/// embedding from the frontal step when known. [`verify`] calls it for every step;
/// `Liveness.CheckFrame` calls it on one frame with the zero pose as a provisional
/// reference.
#[allow(clippy::too_many_arguments)]
pub fn judge_step(
    spec: &ChallengeSpec,
    s: usize,
    frame: Option<usize>,
    frames: &[(FrameInput, FrameAnalysis)],
    reference: Option<&HeadPose>,
    reference_embedding: Option<&[f32]>,
    cfg: &LivenessConfig,
    threshold: f32,
) -> StepOutcome {
    let pose = spec.steps[s];
    let target = spec.targets.get(s).copied().unwrap_or(cfg.turn_deg);
    let mut out = StepOutcome {
        step_index: s,
        pose,
        passed: false,
        frame_index: frame,
        measured: None,
        target,
        reached_angle: 0.0,
        reached: false,
        face: None,
        similarity: None,
        sha256: frame.map(|i| frames[i].1.sha256.clone()).unwrap_or_default(),
        reasons: Vec::new(),
        pad_score: frame.and_then(|i| frames[i].1.pad.as_ref()).map(|c| crate::pad::judge_frame(c, &cfg.pad).attack_score),
    };
    let Some(fi) = frame else {
        out.reasons.push(Reason::new(Code::StepMissing, format!("no frame answers step {s} ({pose:?})")));
        return out;
    };
    let (input, a) = &frames[fi];
    if a.replayed {
        out.reasons.push(Reason::new(Code::ReplayedFrame, format!("frame {fi} was already received in an earlier challenge")).at(fi));
    } else if a.resembles_earlier {
        let r = Reason::new(
            Code::ReplayedFrame,
            format!("frame {fi}'s face crop has the perceptual hash of a frame received in an earlier challenge (a re-encoded copy?)"),
        )
        .at(fi);
        out.reasons.push(if cfg.face_hash_replay_blocks { r } else { r.warning() });
    }
    if let Some(why) = &a.corrupt {
        out.reasons.push(Reason::new(Code::ImageCorrupt, format!("frame {fi}: {why}")).at(fi));
        return out;
    }
    let Some(face) = a.faces.first() else {
        out.reasons.push(Reason::new(Code::NoFace, format!("frame {fi}: no face found")).at(fi));
        return out;
    };
    for other in &a.faces[1..] {
        let ratio = other.quality.face_size_px / face.quality.face_size_px.max(1.0);
        let r = Reason::new(Code::MultipleFaces, format!("frame {fi}: another face {:.0} % the size of the main one", ratio * 100.0))
            .at(fi)
            .values(f64::from(ratio), f64::from(cfg.other_face_ratio));
        out.reasons.push(if ratio >= cfg.other_face_ratio { r } else { r.warning() });
    }
    if face.quality.face_size_px < cfg.min_face_size_px {
        out.reasons.push(
            Reason::new(
                Code::FaceTooSmall,
                format!("frame {fi}: face is {:.0} px, at least {:.0} px needed", face.quality.face_size_px, cfg.min_face_size_px),
            )
            .at(fi)
            .values(f64::from(face.quality.face_size_px), f64::from(cfg.min_face_size_px)),
        );
    }
    if face.quality.sharpness < cfg.min_sharpness {
        out.reasons.push(
            Reason::new(
                Code::FaceBlurred,
                format!("frame {fi}: face sharpness {:.1}, at least {:.1} needed", face.quality.sharpness, cfg.min_sharpness),
            )
            .at(fi)
            .values(f64::from(face.quality.sharpness), f64::from(cfg.min_sharpness)),
        );
    }
    if let Some(t) = input.capture_ms
        && (t < spec.issued_ms - cfg.clock_skew_ms || t > spec.expires_ms + cfg.clock_skew_ms)
    {
        out.reasons.push(
            Reason::new(Code::CaptureTimeInvalid, format!("frame {fi}: captured at {t} ms, outside the challenge's lifetime")).at(fi),
        );
    }
    out.measured = Some(face.pose);
    out.face = Some(face.clone());
    let reference_pose = if s == 0 { None } else { reference };
    out.reached_angle = reached_angle(pose, &face.pose, reference_pose);
    out.reached = if s == 0 { out.reached_angle <= target } else { reference_pose.is_some() && out.reached_angle >= target };
    if !out.reached {
        let msg = if s == 0 {
            format!("frame {fi}: head turned {:.1} degrees, the frontal step allows at most {target:.0}", out.reached_angle)
        } else if reference_pose.is_none() {
            format!("frame {fi}: no frontal reference to measure the turn against")
        } else {
            format!("frame {fi}: {pose:?} reached {:.1} degrees, at least {target:.0} needed", out.reached_angle)
        };
        out.reasons.push(Reason::new(Code::PoseNotReached, msg).at(fi).values(f64::from(out.reached_angle), f64::from(target)));
    }
    if s > 0
        && let (Some(e), Some(r)) = (&a.embedding, reference_embedding)
    {
        let sim = cosine(e, r);
        out.similarity = Some(sim);
        if sim < threshold {
            out.reasons.push(
                Reason::new(
                    Code::FaceChanged,
                    format!("frame {fi}: the face differs from the frontal frame's (similarity {sim:.3} < {threshold:.3})"),
                )
                .at(fi)
                .values(f64::from(sim), f64::from(threshold)),
            );
        }
    }
    out.passed = !out.reasons.iter().any(|r| r.blocking) && out.face.is_some() && out.reached;
    out
}

fn is_species(c: Code) -> bool {
    matches!(c, Code::PrintAttackSuspected | Code::ScreenReplaySuspected | Code::RenderedFromStillSuspected)
}

/// Judges `frames` against `spec`; `threshold` is the face-match threshold.
pub fn verify(spec: &ChallengeSpec, frames: &[(FrameInput, FrameAnalysis)], cfg: &LivenessConfig, threshold: f32) -> Verdict {
    let digests = frames.iter().enumerate().map(|(i, (f, a))| (i, f.step_index, a.sha256.clone())).collect();
    let mut overall: Vec<Reason> = Vec::new();

    // The frame chosen for each step: among those answering it and showing a face, the one
    // reaching furthest (for the reference, the most frontal one).
    let choose = |step: usize, reference: Option<&HeadPose>| -> Option<usize> {
        let candidates: Vec<usize> = (0..frames.len()).filter(|&i| frames[i].0.step_index == step).collect();
        let with_face: Vec<usize> = candidates.iter().copied().filter(|&i| !frames[i].1.faces.is_empty()).collect();
        let score = |i: usize| {
            let a = reached_angle(spec.steps[step], &frames[i].1.faces[0].pose, reference);
            if step == 0 { -a } else { a }
        };
        with_face.into_iter().max_by(|&a, &b| score(a).total_cmp(&score(b))).or_else(|| candidates.last().copied())
    };
    let reference_frame = choose(0, None);
    let reference = reference_frame.and_then(|i| frames[i].1.faces.first().map(|f| (i, f.pose)));
    let reference_embedding = reference_frame.and_then(|i| frames[i].1.embedding.clone());

    let mut steps = Vec::with_capacity(spec.steps.len());
    for s in 0..spec.steps.len() {
        let frame = if s == 0 { reference_frame } else { choose(s, reference.as_ref().map(|(_, p)| p)) };
        steps.push(judge_step(spec, s, frame, frames, reference.as_ref().map(|(_, p)| p), reference_embedding.as_deref(), cfg, threshold));
    }

    // Replays: identical bytes or pixels anywhere; near-duplicates and mirror images among
    // the frames the steps use.
    for j in 0..frames.len() {
        for i in 0..j {
            let (a, b) = (&frames[i].1, &frames[j].1);
            if a.sha256 == b.sha256 || (!a.pixels_sha256.is_empty() && a.pixels_sha256 == b.pixels_sha256) {
                overall.push(Reason::new(Code::ReplayedFrame, format!("frame {j} repeats frame {i}")).at(j));
            }
        }
    }
    let used: Vec<(usize, usize)> = steps.iter().filter_map(|o| o.frame_index.map(|f| (o.step_index, f))).collect();
    // Frames seen in an earlier challenge that no step chose (those chosen fail their step).
    for (i, (_, a)) in frames.iter().enumerate() {
        if a.replayed && !used.iter().any(|&(_, f)| f == i) {
            overall.push(Reason::new(Code::ReplayedFrame, format!("frame {i} was already received in an earlier challenge")).at(i));
        }
    }
    for (n, &(sb, fb)) in used.iter().enumerate() {
        for &(sa, fa) in &used[..n] {
            if fa == fb {
                continue;
            }
            let (a, b) = (&frames[fa].1, &frames[fb].1);
            let (Some(pat_a), Some(mir_a), Some(pat_b)) = (&a.crop_pattern, &a.crop_pattern_mirrored, &b.crop_pattern) else { continue };
            let same = correlation(pat_a, pat_b);
            let mirrored = correlation(mir_a, pat_b);
            let limit = f64::from(cfg.duplicate_correlation);
            let already = overall.iter().any(|r| r.code == Code::ReplayedFrame && r.frame_index == Some(fb));
            if same >= cfg.duplicate_correlation && !already {
                overall.push(
                    Reason::new(
                        Code::ReplayedFrame,
                        format!("frame {fb} (step {sb}) is the picture of frame {fa} (step {sa}) again, correlation {same:.3}"),
                    )
                    .at(fb)
                    .values(f64::from(same), limit),
                );
            } else if mirrored >= cfg.duplicate_correlation && !already {
                overall.push(
                    Reason::new(
                        Code::MirroredFrame,
                        format!("frame {fb} (step {sb}) is the mirror image of frame {fa} (step {sa}), correlation {mirrored:.3}"),
                    )
                    .at(fb)
                    .values(f64::from(mirrored), limit),
                );
            }
        }
    }

    // Order: the frames used must follow the steps in the order they were taken: client
    // capture times when every frame has one; else the times the service received them
    // (CheckFrame, sealed in the attestation; frames sent with VerifyChallenge come after
    // every checked one, in request order).
    let all_timed = frames.iter().all(|(f, _)| f.capture_ms.is_some());
    let position = |i: usize| {
        if all_timed { (frames[i].0.capture_ms.unwrap_or(0), i) } else { (frames[i].1.checked_ms.unwrap_or(i64::MAX), i) }
    };
    if used.windows(2).any(|w| position(w[1].1) <= position(w[0].1)) {
        overall.push(Reason::new(
            Code::StepOutOfOrder,
            format!("the frames do not follow the steps in {} order", if all_timed { "capture-time" } else { "arrival" }),
        ));
    }

    // Presentation-attack detection on the frames the steps used, reference first.
    let pad = if cfg.pad.enabled {
        let chosen: Vec<crate::pad::ChallengeFrame<'_>> = steps
            .iter()
            .filter_map(|o| {
                let i = o.frame_index?;
                let cues = frames[i].1.pad.as_ref()?;
                Some(crate::pad::ChallengeFrame { step: o.step_index, pose: o.pose, head: o.measured?, cues })
            })
            .collect();
        (!chosen.is_empty()).then(|| crate::pad::challenge(&chosen, &cfg.pad))
    } else {
        overall.push(
            Reason::new(Code::PadNotChecked, "presentation-attack detection is switched off (liveness.pad.enabled = false)").warning(),
        );
        None
    };
    if let Some(p) = &pad
        && p.attack_score >= cfg.pad.threshold
    {
        let what = p.species.map_or("a presentation attack", crate::pad::Species::describe);
        overall.push(
            Reason::new(Code::PresentationAttackSuspected, format!("the frames look like {what} (attack score {:.2})", p.attack_score))
                .values(f64::from(p.attack_score), f64::from(cfg.pad.threshold)),
        );
        if let Some(species) = p.species {
            let code = match species {
                crate::pad::Species::Print => Code::PrintAttackSuspected,
                crate::pad::Species::ScreenReplay => Code::ScreenReplaySuspected,
                crate::pad::Species::RenderedStill => Code::RenderedFromStillSuspected,
            };
            overall.push(
                Reason::new(code, format!("suspected {}", species.describe()))
                    .values(f64::from(p.attack_score), f64::from(cfg.pad.threshold)),
            );
        }
    }

    let hard = overall.iter().any(|r| r.blocking && r.code != Code::PresentationAttackSuspected && !is_species(r.code))
        || steps.iter().any(|o| {
            o.reasons.iter().any(|r| r.blocking && matches!(r.code, Code::FaceChanged | Code::ReplayedFrame | Code::MirroredFrame))
        });
    let attack = overall.iter().any(|r| r.code == Code::PresentationAttackSuspected);
    let passed = !hard && !attack && steps.iter().all(|o| o.passed);
    if !passed {
        overall.push(Reason::new(Code::LivenessFailed, "the challenge was not completed: see the reasons"));
    }
    let score = if hard {
        0.0
    } else {
        // Per turned step: how far the pose got towards its target, times the identity
        // margin (0.5 at the same-person threshold, 1 at a similarity of 0.9 or more).
        let per_step: Vec<f32> = steps
            .iter()
            .skip(1)
            .map(|o| {
                let pose = (o.reached_angle / o.target).clamp(0.0, 1.0);
                let id = o.similarity.map_or(0.0, |s| (0.5 + 0.5 * (s - threshold) / (0.9 - threshold).max(0.05)).clamp(0.0, 1.0));
                pose * id
            })
            .collect();
        let mean = if per_step.is_empty() { 0.0 } else { per_step.iter().sum::<f32>() / per_step.len() as f32 };
        let bona_fide = pad.as_ref().map_or(1.0, |p| 1.0 - p.attack_score);
        let s = mean.min(bona_fide);
        if passed { s } else { s * 0.5 }
    };
    Verdict { passed, score, steps, reasons: overall, reference_embedding, digests, pad }
}
