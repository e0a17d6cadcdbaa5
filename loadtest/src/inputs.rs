//! The inputs of the session load test, made once before the run: a JPEG frame per
//! challenge pose and a phone photo of an ID card, and enough distinct copies of each frame
//! that no session sends a frame another session sent.
//!
//! The frames are a development photo's face re-rendered at each pose by the test kit's
//! head-turn renderer, as `scripts/demo.sh` makes them (`../shared/faces/labels.csv` names
//! identities, not head poses, so no real photo answers a given turn). They are not genuine
//! captures: liveness PAD may judge them rendered from a still, which is fine for a load
//! test as long as every stage runs (the report gives the decision mix).
//!
//! Why copies: the liveness service refuses a frame whose bytes or decoded pixels it has
//! received in an earlier challenge (REPLAYED_FRAME), after analysing it. A load test that
//! resent one file would measure replays, not verifications. Each copy is the rendered
//! frame plus low-amplitude pseudo-random noise (at most ±[`NOISE`] per channel, seeded per
//! run and copy, like a camera's sensor noise), encoded afresh: different bytes and
//! different pixels, the same face. Its aligned face crop still hashes alike, which the
//! service reports as a non-blocking REPLAYED_FRAME warning (counted in the report).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use ekyc_proto::v1::PoseStep;
use image::RgbImage;

/// JPEG quality of the frames (as the demo's).
pub const JPEG_QUALITY: u8 = 92;
/// Largest noise added to a channel of a frame copy.
pub const NOISE: i16 = 2;
/// Turn angles answering each pose, in degrees (as the demo's: 25° turns, 20° looks;
/// the policies ask for 15° and 10°).
pub const TURN_DEG: f32 = 25.0;
pub const LOOK_DEG: f32 = 20.0;

/// The four poses after the frontal step, and the frontal one.
pub const POSES: [PoseStep; 5] = [PoseStep::Frontal, PoseStep::TurnLeft, PoseStep::TurnRight, PoseStep::LookUp, PoseStep::LookDown];

/// `(d_yaw, d_pitch)` that answers `pose` (yaw > 0: the user's own left; pitch > 0: up).
pub fn turn_for(pose: PoseStep) -> (f32, f32) {
    match pose {
        PoseStep::Frontal | PoseStep::Unspecified => (0.0, 0.0),
        PoseStep::TurnLeft => (TURN_DEG, 0.0),
        PoseStep::TurnRight => (-TURN_DEG, 0.0),
        PoseStep::LookUp => (0.0, LOOK_DEG),
        PoseStep::LookDown => (0.0, -LOOK_DEG),
    }
}

/// How many copies of a pose's frame `sessions` sessions of `steps` steps can need: the
/// frontal step comes once per session; a turn or look at most every other step after it
/// (the service never asks for the same pose twice in a row).
pub fn copies_needed(pose: PoseStep, sessions: u64, steps: u32) -> u64 {
    if pose == PoseStep::Frontal { sessions } else { sessions * u64::from(steps.saturating_sub(1).div_ceil(2)) }
}

/// 64 pseudo-random bits from `x` (SplitMix64's finaliser): cheap, and good enough to
/// decorrelate neighbouring pixels.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `base` with every channel of every pixel moved by a value in `-NOISE..=NOISE` drawn from
/// `seed` (clamped to 0..=255).
pub fn with_noise(base: &RgbImage, seed: u64) -> RgbImage {
    let mut out = base.clone();
    let span = (2 * NOISE + 1) as u64;
    for (i, v) in out.as_mut().iter_mut().enumerate() {
        let r = (mix(seed ^ mix(i as u64)) % span) as i16 - NOISE;
        *v = (i16::from(*v) + r).clamp(0, 255) as u8;
    }
    out
}

/// JPEG bytes of `img`.
pub fn jpeg(img: &RgbImage) -> anyhow::Result<Vec<u8>> {
    ekyc_testkit::headturn::encode_jpeg(img, JPEG_QUALITY).context("encoding a frame")
}

/// Copies of each pose's frame, handed out in turn; past the last copy they start over
/// (then sessions send frames the service has seen: counted as reuses).
#[derive(Debug)]
pub struct FramePool {
    frames: BTreeMap<i32, Vec<Vec<u8>>>,
    next: BTreeMap<i32, AtomicUsize>,
}

impl FramePool {
    /// A pool from the encoded copies of each pose; every pose needs at least one.
    pub fn new(copies: BTreeMap<PoseStep, Vec<Vec<u8>>>) -> anyhow::Result<Self> {
        let mut frames = BTreeMap::new();
        for (pose, v) in copies {
            anyhow::ensure!(!v.is_empty(), "no frame for pose {}", pose.as_str_name());
            frames.insert(pose as i32, v);
        }
        let next = frames.keys().map(|&k| (k, AtomicUsize::new(0))).collect();
        Ok(Self { frames, next })
    }

    /// The next copy of the frame for `pose`, and whether it was handed out before.
    pub fn take(&self, pose: PoseStep) -> Option<(Vec<u8>, bool)> {
        let v = self.frames.get(&(pose as i32))?;
        let i = self.next.get(&(pose as i32))?.fetch_add(1, Ordering::Relaxed);
        Some((v[i % v.len()].clone(), i >= v.len()))
    }

    /// Copies of each pose's frame.
    pub fn copies(&self) -> BTreeMap<&'static str, usize> {
        self.frames
            .iter()
            .map(|(&k, v)| (PoseStep::try_from(k).map_or("?", |p| p.as_str_name()).trim_start_matches("POSE_STEP_"), v.len()))
            .collect()
    }
}

/// Everything a session sends.
#[derive(Debug)]
pub struct Inputs {
    pub frames: FramePool,
    /// The document photo (JPEG).
    pub document: Vec<u8>,
    /// Pixels of one frame, for the report.
    pub frame_size: (u32, u32),
}

/// Renders the frames of `selfie`'s face at each pose, `copies(pose)` noisy copies of each
/// (on `threads` threads), and a phone photo of an ID card printed with `card_face`.
pub fn make(selfie: &Path, card_face: &Path, copies: impl Fn(PoseStep) -> u64, seed: u64, threads: usize) -> anyhow::Result<Inputs> {
    use ekyc_testkit::frames::{id_card_from_bytes, pipeline};
    use ekyc_testkit::headturn::TurnableFace;
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let face = TurnableFace::from_bytes(pipeline(), &read(selfie)?).with_context(|| format!("finding the face in {}", selfie.display()))?;
    let mut rendered = Vec::new();
    for pose in POSES {
        let (yaw, pitch) = turn_for(pose);
        rendered.push((pose, face.turned(yaw, pitch), copies(pose).max(1)));
    }
    let frame_size = rendered[0].1.dimensions();
    let mut out: BTreeMap<PoseStep, Vec<Vec<u8>>> = BTreeMap::new();
    for (pose, base, n) in &rendered {
        let threads = threads.clamp(1, 64) as u64;
        let parts: Vec<anyhow::Result<Vec<Vec<u8>>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        (t..*n).step_by(threads as usize).map(|i| jpeg(&with_noise(base, mix(seed ^ mix(*pose as u64) ^ i)))).collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a frame encoder thread panicked, which is a bug")).collect()
        });
        let mut v = Vec::with_capacity(*n as usize);
        for p in parts {
            v.extend(p?);
        }
        out.insert(*pose, v);
    }
    let document = id_card_from_bytes(&read(card_face)?, 11);
    Ok(Inputs { frames: FramePool::new(out)?, document, frame_size })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, ((x + y) % 256) as u8]))
    }

    fn decode(bytes: &[u8]) -> RgbImage {
        image::load_from_memory(bytes).expect("a JPEG we encoded decodes").to_rgb8()
    }

    #[test]
    fn noise_is_bounded_seeded_and_different_per_seed() {
        let base = gradient(64, 48);
        let a = with_noise(&base, 1);
        assert_eq!(a, with_noise(&base, 1), "the same seed gives the same copy");
        assert_ne!(a, with_noise(&base, 2));
        let mut changed = 0;
        for (p, q) in base.as_raw().iter().zip(a.as_raw()) {
            assert!((i16::from(*p) - i16::from(*q)).abs() <= NOISE);
            changed += usize::from(p != q);
        }
        // Five equally likely values, one of them 0 (a little more at the clamped ends).
        let share = changed as f64 / base.as_raw().len() as f64;
        assert!((0.7..0.9).contains(&share), "{share} of the channels changed");
    }

    #[test]
    fn copies_differ_in_bytes_and_decoded_pixels() {
        // What the replay memory keys on: the bytes, and the decoded pixels.
        let base = gradient(160, 120);
        let copies: Vec<Vec<u8>> = (0..4).map(|i| jpeg(&with_noise(&base, i)).expect("encodes")).collect();
        for i in 0..copies.len() {
            for j in i + 1..copies.len() {
                assert_ne!(copies[i], copies[j]);
                assert_ne!(decode(&copies[i]), decode(&copies[j]), "copies {i} and {j} decode to the same pixels");
            }
        }
    }

    #[test]
    fn copies_needed_per_pose() {
        // Three steps: frontal, then two different turns: each pose at most once.
        assert_eq!(copies_needed(PoseStep::Frontal, 100, 3), 100);
        assert_eq!(copies_needed(PoseStep::TurnLeft, 100, 3), 100);
        assert_eq!(copies_needed(PoseStep::LookUp, 100, 2), 100);
        // Five steps: frontal, then four, never the same twice in a row: a pose at most twice.
        assert_eq!(copies_needed(PoseStep::TurnRight, 100, 5), 200);
        assert_eq!(copies_needed(PoseStep::Frontal, 100, 5), 100);
    }

    #[test]
    fn the_pool_hands_out_each_copy_once_then_counts_reuse() {
        let pool = FramePool::new(BTreeMap::from([
            (PoseStep::Frontal, vec![b"f0".to_vec(), b"f1".to_vec()]),
            (PoseStep::TurnLeft, vec![b"l0".to_vec()]),
        ]))
        .expect("every pose has a frame");
        assert_eq!(pool.take(PoseStep::Frontal), Some((b"f0".to_vec(), false)));
        assert_eq!(pool.take(PoseStep::TurnLeft), Some((b"l0".to_vec(), false)));
        assert_eq!(pool.take(PoseStep::Frontal), Some((b"f1".to_vec(), false)));
        assert_eq!(pool.take(PoseStep::Frontal), Some((b"f0".to_vec(), true)), "past the last copy: reused");
        assert_eq!(pool.take(PoseStep::LookUp), None, "no frame for a pose the pool was not given");
        assert_eq!(pool.copies().get("FRONTAL"), Some(&2));
        assert!(FramePool::new(BTreeMap::from([(PoseStep::Frontal, vec![])])).is_err());
    }

    #[test]
    fn turns_answer_their_poses() {
        assert_eq!(turn_for(PoseStep::Frontal), (0.0, 0.0));
        assert!(turn_for(PoseStep::TurnLeft).0 > 15.0, "the user's own left is yaw > 0, past the 15° target");
        assert!(turn_for(PoseStep::TurnRight).0 < -15.0);
        assert!(turn_for(PoseStep::LookUp).1 > 10.0);
        assert!(turn_for(PoseStep::LookDown).1 < -10.0);
    }
}
