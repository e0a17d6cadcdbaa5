//! Settings of the liveness service (`[liveness]` in the layered settings).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::challenge::Pose;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LivenessConfig {
    /// Redis holding the challenges (`redis://host:6379/0`); unset keeps them in this
    /// process (one machine only: replicas would not see each other's challenges).
    pub redis_url: Option<String>,
    /// Timeout of one Redis command, in milliseconds; past it the call fails UNAVAILABLE.
    pub redis_timeout_ms: u64,
    /// File holding the Redis password (`AUTH`), read at start; never put it in the URL.
    pub redis_password_file: Option<PathBuf>,
    /// PEM CA certificate(s) of a `rediss://` Redis with a private CA.
    pub redis_ca_file: Option<PathBuf>,
    /// Key file of the liveness keyring (`ekyc_runtime::seal::Keyring` format: `KID HEXKEY`
    /// a line, current key first, previous keys after it). From it are derived the MAC of
    /// challenge ids, the sealing of stored challenges and of frame attestations, and the
    /// keyed digests of the replay memory. Unset: `Keyring::ephemeral()`, a random key for
    /// this process only, so challenges and attestations do not survive a restart, replicas
    /// cannot verify each other's, and replays are recognised only by this process.
    pub keys_file: Option<PathBuf>,
    /// Lifetime of a challenge, in seconds: long enough for a chat user sending one photo per
    /// message, minutes apart; single use and the frame checks guard against replays.
    pub ttl_s: u64,
    /// Steps per challenge including the frontal first step (2..=5), when the caller does
    /// not ask for a number.
    pub default_steps: usize,
    /// Poses the random steps are drawn from (after the frontal first step).
    pub poses: Vec<Pose>,
    /// Yaw a turn must reach relative to the frontal frame, in degrees.
    pub turn_deg: f32,
    /// Pitch a look up/down must reach relative to the frontal frame, in degrees.
    pub look_deg: f32,
    /// Largest |yaw| and |pitch| of the frontal frame, in degrees.
    pub frontal_max_deg: f32,
    /// Smallest face (shorter side of its box), in pixels.
    pub min_face_size_px: f32,
    /// Smallest sharpness (variance of the Laplacian on the aligned crop).
    pub min_sharpness: f32,
    /// Another face at least this fraction of the main face's size makes a frame ambiguous
    /// (MULTIPLE_FACES, blocking); smaller ones are only reported.
    pub other_face_ratio: f32,
    /// Normalised correlation of two aligned face crops at or above which two frames are
    /// the same picture (REPLAYED_FRAME), or one the mirror of the other (MIRRORED_FRAME).
    pub duplicate_correlation: f32,
    /// Frames accepted in one verification.
    pub max_frames: usize,
    /// Allowed difference between client capture times and the challenge's lifetime, ms.
    pub clock_skew_ms: i64,
    /// Decoding/analysis worker threads (0: one per core) and their queue.
    pub workers: usize,
    pub worker_queue: usize,
    /// Verifications in flight (admission limit).
    pub max_in_flight: usize,
    /// Open challenges the in-process store holds at most (without `redis_url`); past it,
    /// new challenges are refused RESOURCE_EXHAUSTED until some expire or are used.
    pub memory_capacity: usize,
    /// How long frames are remembered to recognise them in a later challenge
    /// (REPLAYED_FRAME), in seconds: 30 days by default. Only keyed digests are kept, in
    /// Redis (`redis_url`, the same as the challenges') or in this process. 0 turns the
    /// memory off (test rigs that send one picture in many challenges; never in
    /// production: the service then logs a warning at start).
    pub replay_window_s: u64,
    /// Digests the in-process replay memory holds at most (without `redis_url`); past it the
    /// oldest are forgotten first. About 100 bytes each.
    pub replay_capacity: usize,
    /// Whether a frame whose aligned face crop only *resembles* one from an earlier
    /// challenge (same perceptual hash, other bytes and pixels: a re-encoded or re-noised
    /// copy) fails its step. Off by default: the hash of an aligned face is close to a face
    /// template, so the same person photographed again in the same setting can match it, and
    /// a genuine retry would then be refused for the whole `replay_window_s`; the match is
    /// still reported as a warning (REPLAYED_FRAME, not blocking). Frames whose bytes or
    /// decoded pixels were seen before always fail.
    pub face_hash_replay_blocks: bool,
    /// Presentation-attack detection (`[liveness.pad]`).
    pub pad: crate::pad::PadConfig,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            redis_timeout_ms: 1000,
            redis_password_file: None,
            redis_ca_file: None,
            keys_file: None,
            ttl_s: 600,
            default_steps: 3,
            poses: vec![Pose::TurnLeft, Pose::TurnRight, Pose::LookUp, Pose::LookDown],
            turn_deg: 15.0,
            look_deg: 10.0,
            frontal_max_deg: 15.0,
            min_face_size_px: 64.0,
            min_sharpness: 10.0,
            other_face_ratio: 0.5,
            duplicate_correlation: 0.97,
            max_frames: 10,
            clock_skew_ms: 30_000,
            workers: 0,
            worker_queue: 64,
            max_in_flight: 16,
            memory_capacity: 100_000,
            replay_window_s: 30 * 24 * 3600,
            replay_capacity: 1_000_000,
            face_hash_replay_blocks: false,
            pad: crate::pad::PadConfig::default(),
        }
    }
}

impl LivenessConfig {
    /// How to reach the challenge Redis, when one is configured.
    pub fn redis(&self) -> Option<ekyc_runtime::redis::RedisSettings> {
        self.redis_url.as_ref().map(|url| ekyc_runtime::redis::RedisSettings {
            url: url.clone(),
            password_file: self.redis_password_file.clone(),
            ca_file: self.redis_ca_file.clone(),
            timeout: std::time::Duration::from_millis(self.redis_timeout_ms),
            store: "challenge store",
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.redis_url.is_none() && (self.redis_password_file.is_some() || self.redis_ca_file.is_some()) {
            return Err("redis_password_file and redis_ca_file need redis_url".into());
        }
        if !(2..=5).contains(&self.default_steps) {
            return Err("default_steps must be 2 to 5".into());
        }
        if self.poses.len() < 2 || self.poses.contains(&Pose::Frontal) {
            return Err("poses must list at least two of turn_left, turn_right, look_up, look_down".into());
        }
        if self.ttl_s == 0 || self.max_frames == 0 || self.max_in_flight == 0 || self.worker_queue == 0 {
            return Err("ttl_s, max_frames, max_in_flight and worker_queue must be at least 1".into());
        }
        if self.turn_deg <= 0.0 || self.look_deg <= 0.0 || self.frontal_max_deg <= 0.0 {
            return Err("angles must be positive".into());
        }
        if self.memory_capacity == 0 || self.replay_capacity == 0 {
            return Err("memory_capacity and replay_capacity must be at least 1".into());
        }
        self.pad.validate()?;
        Ok(())
    }
}
