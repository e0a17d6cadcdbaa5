//! The liveness engine, a plain-Rust core: issues challenges into the store and verifies
//! answers. Cheap checks come first (the id's MAC and expiry, frame count, step indexes,
//! image headers) and do not consume the challenge; then the challenge is taken from the
//! store atomically, so of two concurrent verifications exactly one proceeds; then the
//! frames are analysed on the worker pool, looked up in the replay memory and judged by
//! [`crate::verify`].
//!
//! What the store keeps per challenge is one sealed record
//! (`Keyring::seal("liveness-challenge", nonce, 1, json)`) holding everything that decides
//! a pass: the steps, the angle each must reach, the thresholds applied (face size,
//! sharpness, other faces, duplicate correlation, clock skew, face match) and the issue
//! and expiry times. Whoever can write to the store can delete a challenge but not make
//! one easier: a record that does not open, or disagrees with its id, fails the call with
//! DATA_LOSS `CHALLENGE_CORRUPT`, never a verdict.
//!
//! Every frame received (CheckFrame, or VerifyChallenge with images) is remembered in the
//! replay memory for `replay_window_s` under the keyed digest of its challenge's nonce:
//! the keyed digests of its bytes, of its decoded pixels and of its face crop's perceptual
//! hash ([`crate::perceptual`]). One already remembered under another challenge is
//! REPLAYED_FRAME.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ekyc_runtime::kit::Workers;
use ekyc_runtime::replay::ReplayMemory;
use ekyc_runtime::seal::Keyring;
use ekyc_vision::pool::InferencePool;
use ekyc_vision::{FacePipeline, VisionConfig, VisionError, probe_dimensions};
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::attestation::{self, AttestationError};
use crate::challenge::{ChallengeId, IdError, Pose};
use crate::config::LivenessConfig;
use crate::error::LivenessError;
use crate::store::{ChallengeStore, MemoryStore, RedisStore};
use crate::verify::{ChallengeSpec, Code, FrameAnalysis, FrameInput, Reason, StepOutcome, Verdict, judge_step, verify};

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A challenge as issued to the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Issued {
    pub id: String,
    pub steps: Vec<(Pose, f32)>,
    pub issued_ms: i64,
    pub expires_ms: i64,
    pub client_reference: Option<String>,
}

/// Kind of the sealed challenge records.
const RECORD_KIND: &str = "liveness-challenge";

/// What the store keeps per challenge, sealed: everything that decides a pass.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Record {
    v: u8,
    nonce: String,
    steps: Vec<Pose>,
    /// Per step, degrees: the angle to reach, or for the frontal step the largest allowed.
    targets: Vec<f32>,
    issued_ms: i64,
    expires_ms: i64,
    min_face_size_px: f32,
    min_sharpness: f32,
    other_face_ratio: f32,
    duplicate_correlation: f32,
    clock_skew_ms: i64,
    match_threshold: f32,
    client_reference: Option<String>,
    /// PAD's decision threshold and whether PAD runs, as configured at issue.
    #[serde(default = "default_pad_threshold")]
    pad_threshold: f32,
    #[serde(default = "default_true")]
    pad_enabled: bool,
}

fn default_pad_threshold() -> f32 {
    crate::pad::PadConfig::default().threshold
}

fn default_true() -> bool {
    true
}

/// A challenge as its sealed record says, with the thresholds to apply.
struct Opened {
    spec: ChallengeSpec,
    cfg: LivenessConfig,
    match_threshold: f32,
    client_reference: Option<String>,
}

fn corrupt(detail: &str) -> LivenessError {
    LivenessError::DataLoss(format!("CHALLENGE_CORRUPT: the stored challenge {detail}; it cannot be used"))
}

/// One frame of a verification request.
#[derive(Debug, Clone)]
pub struct Frame {
    pub bytes: Vec<u8>,
    pub step_index: usize,
    pub capture_ms: Option<i64>,
    /// The client says the image is mirrored; it is flipped back before measuring.
    pub mirrored: bool,
}

impl Frame {
    /// What the verdict needs to know about the frame besides its pixels.
    pub fn input(&self) -> FrameInput {
        FrameInput { step_index: self.step_index, capture_ms: self.capture_ms }
    }
}

/// Key-derived values of the replay memory, and its purposes.
const OWNER_PURPOSE: &str = "liveness-replay-owner";
const BYTES_PURPOSE: &str = "liveness-frame-bytes";
const PIXELS_PURPOSE: &str = "liveness-frame-pixels";
const FACE_HASH_PURPOSE: &str = "liveness-face-phash";

/// A verification's outcome and the challenge's client reference.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Verdict,
    /// The same-person threshold the verdict applied (sealed in the challenge).
    pub match_threshold: f32,
    pub client_reference: Option<String>,
    pub verified_ms: i64,
}

/// What `check_frame` found: the step judged on this frame alone (turns measured against
/// the zero pose until the frontal frame is known), the face's embedding, and the signed
/// attestation to pass to `verify` instead of the image.
#[derive(Debug, Clone)]
pub struct Checked {
    pub step: StepOutcome,
    pub embedding: Option<Vec<f32>>,
    pub attestation: Vec<u8>,
}

/// A frame's analysis and the keyed digests the replay memory needs: `remember` (bytes,
/// pixels, face hash) and `probes` (the face hash with its weak bits flipped: looked up,
/// not remembered).
struct Analysed {
    analysis: FrameAnalysis,
    /// Keyed digests to remember: the exact ones (bytes, pixels) first, then the face hash.
    remember: Vec<[u8; 32]>,
    /// How many of `remember` are exact.
    exact: usize,
    /// The face hash with its weak bits flipped, looked up but not remembered.
    probes: Vec<[u8; 32]>,
}

/// Side length of the grey pattern of an aligned face crop, in pixels.
const CROP_PATTERN_SIDE: usize = 48;

/// One analysis worker: the face pipeline and, with PAD on, the passive PAD models.
#[derive(Debug)]
pub struct Worker {
    pub pipeline: FacePipeline,
    /// Whether PAD cues are measured (`liveness.pad.enabled`).
    pub pad_enabled: bool,
    /// The passive PAD models, when any are registered.
    pub pad: Option<ekyc_vision::AntiSpoof>,
}

impl Worker {
    /// Loads the models (blocking) and warms them up.
    pub fn load(vision: &VisionConfig, cfg: &LivenessConfig) -> Result<Worker, VisionError> {
        let pipeline = FacePipeline::new(vision.clone())?;
        pipeline.warm_up()?;
        let pad =
            if cfg.pad.enabled && !vision.anti_spoofing.models.is_empty() { Some(FacePipeline::open_anti_spoof(vision)?) } else { None };
        Ok(Worker { pipeline, pad_enabled: cfg.pad.enabled, pad })
    }
}

#[derive(Debug)]
pub struct Engine {
    cfg: LivenessConfig,
    vision: VisionConfig,
    keys: Arc<Keyring>,
    store: Arc<dyn ChallengeStore>,
    replay: ReplayMemory,
    workers: Workers<Worker, LivenessError>,
    frames_analysed: Arc<std::sync::atomic::AtomicU64>,
}

impl Engine {
    /// Loads the models (blocking: call off the async runtime) and connects the store
    /// lazily (Redis may come up later).
    pub fn start(vision: &VisionConfig, cfg: &LivenessConfig) -> Result<Engine, LivenessError> {
        cfg.validate().map_err(|e| LivenessError::InvalidArgument(format!("liveness settings: {e}")))?;
        let keys = match &cfg.keys_file {
            Some(path) => Keyring::from_file(path).map_err(|e| LivenessError::InvalidArgument(format!("liveness.keys_file: {e}")))?,
            None => {
                tracing::warn!(
                    "liveness.keys_file is not set: using a random key for this process; challenges and attestations will not survive a restart or work across replicas"
                );
                Keyring::ephemeral().map_err(|e| LivenessError::Internal(format!("random key: {e}")))?
            }
        };
        let keys = Arc::new(keys);
        if cfg.replay_window_s == 0 {
            tracing::warn!("liveness.replay_window_s is 0: frames from earlier challenges will not be recognised");
        }
        let (store, replay): (Arc<dyn ChallengeStore>, ReplayMemory) = match cfg.redis() {
            Some(settings) => {
                let redis = ekyc_runtime::redis::Redis::connect(&settings)
                    .map_err(|e| LivenessError::InvalidArgument(format!("liveness.redis_url: {e}")))?;
                // One client (one connection, one password read) for challenges and replays.
                (Arc::new(RedisStore::on_redis(redis.clone())), ReplayMemory::redis(redis, Arc::clone(&keys)))
            }
            None => (Arc::new(MemoryStore::new(cfg.memory_capacity)), ReplayMemory::in_process(cfg.replay_capacity, Arc::clone(&keys))),
        };
        let load = |e: VisionError| LivenessError::Internal(format!("loading models: {e}"));
        let threads = if cfg.workers > 0 { cfg.workers } else { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) };
        // `vision.intra_threads` per worker session as set; 0: one, as the workers already
        // spread over the cores.
        let worker_vision = VisionConfig { intra_threads: vision.intra_threads.max(1), ..vision.clone() };
        let worker_cfg = cfg.clone();
        if cfg.pad.enabled && vision.anti_spoofing.models.is_empty() {
            tracing::warn!("vision.anti_spoofing lists no model: PAD runs on its other cues only");
        }
        if !cfg.pad.enabled {
            tracing::warn!("liveness.pad.enabled is false: presentation attacks (prints, screens, renderings) will not be detected");
        }
        let make_worker = move || Worker::load(&worker_vision, &worker_cfg);
        let mut pipelines = Vec::new();
        for _ in 0..threads {
            pipelines.push(make_worker().map_err(load)?);
        }
        // A worker whose job panics is restarted with fresh sessions (health NOT_SERVING meanwhile).
        let restart = ekyc_vision::pool::Restart {
            service: "liveness",
            role: "worker",
            make: Arc::new(move || make_worker().map_err(|e| e.to_string())),
        };
        let workers =
            Workers::new(crate::KIND, "face", InferencePool::restarting(pipelines, cfg.worker_queue, "liveness-worker", restart)?);
        Ok(Engine { cfg: cfg.clone(), vision: vision.clone(), keys, store, replay, workers, frames_analysed: Arc::default() })
    }

    /// Frames the workers have analysed (for tests: refused challenges cost no image work).
    pub fn frames_analysed(&self) -> u64 {
        self.frames_analysed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// False while a worker that panicked is being restarted; health follows it.
    pub fn usable(&self) -> bool {
        self.workers.usable()
    }

    pub fn config(&self) -> &LivenessConfig {
        &self.cfg
    }

    pub fn vision(&self) -> &VisionConfig {
        &self.vision
    }

    fn target(&self, pose: Pose) -> f32 {
        match pose {
            Pose::Frontal => self.cfg.frontal_max_deg,
            Pose::TurnLeft | Pose::TurnRight => self.cfg.turn_deg,
            Pose::LookUp | Pose::LookDown => self.cfg.look_deg,
        }
    }

    /// Issues a challenge of `steps` steps (0: the configured default).
    pub async fn create(&self, steps: usize, client_reference: Option<String>) -> Result<Issued, LivenessError> {
        let n = if steps == 0 { self.cfg.default_steps } else { steps };
        if !(2..=5).contains(&n) {
            return Err(LivenessError::InvalidArgument(format!("step_count: {n} steps asked for, 2 to 5 allowed")));
        }
        if client_reference.as_ref().is_some_and(|r| r.len() > 128) {
            return Err(LivenessError::InvalidArgument("client_reference: at most 128 bytes".into()));
        }
        let rng = |e: getrandom::Error| LivenessError::Internal(format!("random generator: {e}"));
        let poses = ChallengeId::random_steps(n, &self.cfg.poses).map_err(rng)?;
        let issued_ms = now_ms();
        let id = ChallengeId {
            nonce: ChallengeId::new_nonce().map_err(rng)?,
            issued_ms,
            expires_ms: issued_ms + (self.cfg.ttl_s * 1000) as i64,
            steps: poses,
        };
        let targets: Vec<f32> = id.steps.iter().map(|p| self.target(*p)).collect();
        let record = Record {
            v: 1,
            nonce: id.nonce.clone(),
            steps: id.steps.clone(),
            targets: targets.clone(),
            issued_ms: id.issued_ms,
            expires_ms: id.expires_ms,
            min_face_size_px: self.cfg.min_face_size_px,
            min_sharpness: self.cfg.min_sharpness,
            other_face_ratio: self.cfg.other_face_ratio,
            duplicate_correlation: self.cfg.duplicate_correlation,
            clock_skew_ms: self.cfg.clock_skew_ms,
            match_threshold: self.vision.match_threshold,
            client_reference: client_reference.clone(),
            pad_threshold: self.cfg.pad.threshold,
            pad_enabled: self.cfg.pad.enabled,
        };
        let json = serde_json::to_vec(&record).map_err(|e| LivenessError::Internal(e.to_string()))?;
        let sealed =
            self.keys.seal(RECORD_KIND, &id.nonce, 1, &json).map_err(|e| LivenessError::Internal(format!("sealing the challenge: {e}")))?;
        self.store.put(&id.nonce, sealed, Duration::from_secs(self.cfg.ttl_s)).await?;
        Ok(Issued {
            id: id.encode(&self.keys),
            steps: id.steps.iter().copied().zip(targets).collect(),
            issued_ms,
            expires_ms: id.expires_ms,
            client_reference,
        })
    }

    /// Opens a stored record and checks it against the (authenticated) id.
    fn open_record(&self, parsed: &ChallengeId, sealed: &[u8]) -> Result<Opened, LivenessError> {
        let json = self.keys.open(RECORD_KIND, &parsed.nonce, 1, sealed).map_err(|_| corrupt("does not open (altered or replaced)"))?;
        let r: Record = serde_json::from_slice(&json).map_err(|_| corrupt("is not a challenge record"))?;
        if r.v != 1
            || r.nonce != parsed.nonce
            || r.steps != parsed.steps
            || r.issued_ms != parsed.issued_ms
            || r.expires_ms != parsed.expires_ms
            || r.targets.len() != r.steps.len()
        {
            return Err(corrupt("disagrees with its id"));
        }
        let cfg = LivenessConfig {
            min_face_size_px: r.min_face_size_px,
            min_sharpness: r.min_sharpness,
            other_face_ratio: r.other_face_ratio,
            duplicate_correlation: r.duplicate_correlation,
            clock_skew_ms: r.clock_skew_ms,
            pad: crate::pad::PadConfig { threshold: r.pad_threshold, enabled: r.pad_enabled, ..self.cfg.pad.clone() },
            ..self.cfg.clone()
        };
        let spec = ChallengeSpec { steps: r.steps, targets: r.targets, issued_ms: r.issued_ms, expires_ms: r.expires_ms };
        Ok(Opened { spec, cfg, match_threshold: r.match_threshold, client_reference: r.client_reference })
    }

    /// Looks the frames up in the replay memory and remembers them under this challenge;
    /// marks those already received under another challenge.
    async fn remember(&self, nonce: &str, frames: &mut [Analysed]) -> Result<(), LivenessError> {
        if self.cfg.replay_window_s == 0 {
            return Ok(());
        }
        let owner = self.keys.digest(OWNER_PURPOSE, nonce.as_bytes());
        let window = Duration::from_secs(self.cfg.replay_window_s);
        let unavailable = |e: ekyc_runtime::replay::ReplayError| LivenessError::Unavailable(format!("BACKEND_UNAVAILABLE: {e}"));
        for f in frames.iter_mut() {
            let seen = self.replay.check_and_remember(&f.remember, &owner, window).await.map_err(unavailable)?;
            let near = if seen.is_none() { self.replay.seen_elsewhere(&f.probes, &owner).await.map_err(unavailable)? } else { None };
            match seen {
                Some(i) if i < f.exact => f.analysis.replayed = true,
                Some(_) => f.analysis.resembles_earlier = true,
                None => f.analysis.resembles_earlier = near.is_some(),
            }
            if f.analysis.replayed || f.analysis.resembles_earlier {
                let how = if f.analysis.replayed { "exact" } else { "face-hash" };
                metrics::counter!("ekyc_liveness_replayed_frames_total", "match" => how).increment(1);
            }
        }
        Ok(())
    }

    fn check_header(&self, field: &str, f: &Frame, steps: usize) -> Result<(), LivenessError> {
        if f.step_index >= steps {
            return Err(LivenessError::InvalidArgument(format!(
                "{field}.step_index: {} is not a step of this {steps}-step challenge",
                f.step_index
            )));
        }
        probe_dimensions(&f.bytes, &self.vision.limits)
            .map_err(|e| LivenessError::InvalidArgument(format!("{}: {field}.image: {e}", e.reason_code())))?;
        Ok(())
    }

    /// Measures one frame against its step without consuming the challenge. `reference`,
    /// for a step after the first, is the attestation of the frontal frame the caller keeps:
    /// the turn is then measured from that frame's head pose and the face compared with its
    /// face, as [`Engine::verify`] will judge them; without it the turn is measured from a
    /// straight-ahead pose, which is only provisional.
    pub async fn check_frame(&self, id: &str, frame: Frame, reference: Option<&[u8]>) -> Result<Checked, LivenessError> {
        let parsed = ChallengeId::decode(id, &self.keys).map_err(|_| {
            LivenessError::FailedPrecondition("CHALLENGE_INVALID: the challenge id was altered, forged or not issued here".into())
        })?;
        if now_ms() > parsed.expires_ms {
            return Err(LivenessError::FailedPrecondition("EXPIRED: the challenge has expired".into()));
        }
        self.check_header("frame", &frame, parsed.steps.len())?;
        let s = frame.step_index;
        // The frontal frame the turn is measured from, opened before any image work.
        let reference = match reference.filter(|r| !r.is_empty() && s > 0) {
            None => None,
            Some(bytes) => match attestation::decode(&self.keys, &parsed.nonce, bytes) {
                Ok((input, _)) if input.step_index != 0 => {
                    return Err(LivenessError::InvalidArgument(format!(
                        "reference_attestation: attests a frame of step {}, the reference is the frame of step 0",
                        input.step_index
                    )));
                }
                Ok((_, analysis)) => Some(analysis),
                Err(AttestationError::DoesNotOpen | AttestationError::Malformed) => {
                    return Err(LivenessError::FailedPrecondition(
                        "CHALLENGE_INVALID: reference_attestation was altered, belongs to another challenge or was not issued here".into(),
                    ));
                }
            },
        };
        let Some(stored) = self.store.peek(&parsed.nonce).await? else {
            return Err(LivenessError::FailedPrecondition("ALREADY_USED: the challenge was already used".into()));
        };
        let opened = self.open_record(&parsed, &stored)?;
        let input = frame.input();
        let mut analysed = [self.analyse(frame).await?];
        self.remember(&parsed.nonce, &mut analysed).await?;
        let [Analysed { mut analysis, .. }] = analysed;
        analysis.checked_ms = Some(now_ms());
        let attestation = attestation::encode(&self.keys, &parsed.nonce, &input, &analysis)
            .map_err(|e| LivenessError::Internal(format!("sealing the attestation: {e}")))?;
        let embedding = analysis.embedding.clone();
        let zero = ekyc_vision::HeadPose::default();
        let (reference_pose, reference_embedding) = match &reference {
            // A reference without a face: the turn cannot be measured (PoseNotReached).
            Some(r) => (r.faces.first().map(|f| f.pose), r.embedding.as_deref()),
            None => ((s > 0).then_some(zero), None),
        };
        let frames = [(input, analysis)];
        let step = judge_step(
            &opened.spec,
            s,
            Some(0),
            &frames,
            reference_pose.as_ref(),
            reference_embedding,
            &opened.cfg,
            opened.match_threshold,
        );
        Ok(Checked { step, embedding, attestation })
    }

    /// Verifies `frames` and `attestations` (from `check_frame`) against challenge `id`,
    /// consuming it. Attested frames are numbered after `frames`.
    pub async fn verify(&self, id: &str, frames: Vec<Frame>, attestations: Vec<Vec<u8>>) -> Result<Outcome, LivenessError> {
        let now = now_ms();
        let rejected = |code: Code, msg: &str| {
            Ok(Outcome {
                verdict: Verdict::rejected(Reason::new(code, msg)),
                match_threshold: self.vision.match_threshold,
                client_reference: None,
                verified_ms: now,
            })
        };
        let parsed = match ChallengeId::decode(id, &self.keys) {
            Ok(p) => p,
            Err(IdError::Malformed) => return rejected(Code::ChallengeInvalid, "the challenge id is not one this service issued"),
            Err(IdError::BadMac) => {
                return rejected(Code::ChallengeInvalid, "the challenge id was altered or forged (its HMAC does not verify)");
            }
        };
        if now > parsed.expires_ms {
            return rejected(Code::Expired, &format!("the challenge expired {} s ago", (now - parsed.expires_ms) / 1000));
        }
        let total = frames.len() + attestations.len();
        if total == 0 || total > self.cfg.max_frames {
            return Err(LivenessError::InvalidArgument(format!("frames: {total} frames, 1 to {} allowed", self.cfg.max_frames)));
        }
        for (i, f) in frames.iter().enumerate() {
            self.check_header(&format!("frames[{i}]"), f, parsed.steps.len())?;
        }
        let mut attested = Vec::with_capacity(attestations.len());
        for (i, a) in attestations.iter().enumerate() {
            match attestation::decode(&self.keys, &parsed.nonce, a) {
                Ok((input, _)) if input.step_index >= parsed.steps.len() => {
                    return rejected(Code::ChallengeInvalid, &format!("frame_attestations[{i}] names a step this challenge does not have"));
                }
                Ok(x) => attested.push(x),
                Err(AttestationError::DoesNotOpen | AttestationError::Malformed) => {
                    return rejected(
                        Code::ChallengeInvalid,
                        &format!("frame_attestations[{i}] was altered, belongs to another challenge or was not issued here"),
                    );
                }
            }
        }
        // Consume: from here on, this challenge is used, whatever the outcome.
        let Some(stored) = self.store.take(&parsed.nonce).await? else {
            return rejected(Code::AlreadyUsed, "the challenge was already used");
        };
        let opened = self.open_record(&parsed, &stored)?;
        let inputs: Vec<FrameInput> = frames.iter().map(Frame::input).collect();
        let analyses = join_all(frames.into_iter().map(|f| self.analyse(f))).await;
        let mut fresh = Vec::with_capacity(inputs.len());
        for a in analyses {
            fresh.push(a?);
        }
        self.remember(&parsed.nonce, &mut fresh).await?;
        let mut analysed = Vec::with_capacity(inputs.len() + attested.len());
        analysed.extend(inputs.into_iter().zip(fresh.into_iter().map(|a| a.analysis)));
        analysed.extend(attested);
        let verdict = verify(&opened.spec, &analysed, &opened.cfg, opened.match_threshold);
        let client_reference = opened.client_reference;
        metrics::counter!("ekyc_liveness_verifications_total", "passed" => verdict.passed.to_string()).increment(1);
        Ok(Outcome { verdict, match_threshold: opened.match_threshold, client_reference, verified_ms: now_ms() })
    }

    async fn analyse(&self, frame: Frame) -> Result<Analysed, LivenessError> {
        let counter = Arc::clone(&self.frames_analysed);
        let keys = Arc::clone(&self.keys);
        self.workers
            .run("", move |w: &mut Worker| {
                let _span = tracing::info_span!("liveness.analyse_frame", bytes = frame.bytes.len()).entered();
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let analysis = analyse_frame(w, &frame)?;
                let mut remember = vec![keys.digest(BYTES_PURPOSE, &frame.bytes)];
                if !analysis.pixels_sha256.is_empty() {
                    remember.push(keys.digest(PIXELS_PURPOSE, analysis.pixels_sha256.as_bytes()));
                }
                let exact = remember.len();
                let mut probes = Vec::new();
                if let Some(h) = &analysis.face_hash {
                    let mut all = h.probes().into_iter().map(|v| keys.digest(FACE_HASH_PURPOSE, &v.to_le_bytes()));
                    remember.extend(all.next());
                    probes.extend(all);
                }
                Ok(Analysed { analysis, remember, exact, probes })
            })
            .await?
    }
}

fn analyse_frame(w: &Worker, frame: &Frame) -> Result<FrameAnalysis, LivenessError> {
    let p = &w.pipeline;
    let mut out = FrameAnalysis { sha256: hex::encode(Sha256::digest(&frame.bytes)), ..Default::default() };
    let mut img = match p.decode(&frame.bytes) {
        Ok(img) => img,
        // The process's decode budget had no room: the frame is fine, the server is busy.
        Err(VisionError::Decode(e @ ekyc_vision::DecodeError::Overloaded(_))) => {
            return Err(LivenessError::Busy(format!("{}: {e}", e.reason_code())));
        }
        Err(VisionError::Decode(e)) => {
            out.corrupt = Some(e.to_string());
            return Ok(out);
        }
        Err(e) => return Err(LivenessError::Internal(e.to_string())),
    };
    if frame.mirrored {
        image::imageops::flip_horizontal_in_place(&mut img);
    }
    out.pixels_sha256 = hex::encode(Sha256::digest(img.as_raw()));
    let prepared = p.prepare(&img, false).map_err(|e| LivenessError::Internal(e.to_string()))?;
    if let Some(main) = prepared.first() {
        let embedder = p.embedder().ok_or_else(|| LivenessError::Internal("worker pipeline has no embedder: this is a bug".into()))?;
        out.embedding =
            embedder.embed(std::slice::from_ref(&main.crop)).map_err(|e| LivenessError::Internal(e.to_string()))?.into_iter().next();
        let margin = p.config().embedder.margin;
        out.crop_pattern = Some(crop_pattern(&main.crop, margin, false));
        out.crop_pattern_mirrored = Some(crop_pattern(&main.crop, margin, true));
        out.face_hash = Some(crate::perceptual::FaceHash::of_crop(&main.crop, margin));
        if w.pad_enabled {
            let _span = tracing::info_span!("liveness.pad").entered();
            out.pad = Some(crate::pad::frame_cues(&img, &main.face, w.pad.as_ref()).map_err(|e| LivenessError::Internal(e.to_string()))?);
        }
    }
    out.faces = prepared.into_iter().map(|pf| pf.face).collect();
    Ok(out)
}

/// Zero-mean, unit-norm grey levels of the face region of an aligned crop, downsampled to
/// `CROP_PATTERN_SIDE` squared (optionally mirrored): aligned crops of the same picture
/// correlate near 1 whatever crop or scale it was sent at.
fn crop_pattern(crop: &ekyc_vision::imgops::FloatImage, margin: f32, mirror: bool) -> Vec<f32> {
    let s = crop.width;
    let inner = ((s as f32) / margin) as usize;
    let off = (s - inner.min(s)) / 2;
    let luma = crop.luma();
    let mut sig = vec![0.0f32; CROP_PATTERN_SIDE * CROP_PATTERN_SIDE];
    let mut count = vec![0u32; sig.len()];
    for y in 0..inner {
        for x in 0..inner {
            let (sx, sy) = (x * CROP_PATTERN_SIDE / inner, y * CROP_PATTERN_SIDE / inner);
            let sx = if mirror { CROP_PATTERN_SIDE - 1 - sx } else { sx };
            sig[sy * CROP_PATTERN_SIDE + sx] += luma[(off + y) * s + off + x];
            count[sy * CROP_PATTERN_SIDE + sx] += 1;
        }
    }
    for (v, c) in sig.iter_mut().zip(&count) {
        *v /= (*c).max(1) as f32;
    }
    let mean = sig.iter().sum::<f32>() / sig.len() as f32;
    sig.iter_mut().for_each(|v| *v -= mean);
    let norm = sig.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-6);
    sig.iter_mut().for_each(|v| *v /= norm);
    sig
}
