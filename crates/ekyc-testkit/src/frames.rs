//! Challenge frames for tests: a development photo's face turned to answer each pose step,
//! as JPEG bytes, cached per process so a suite synthesises each turn once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use ekyc_proto::v1 as pb;
use ekyc_vision::{FacePipeline, VisionConfig};

use crate::dataset::photo;
use crate::headturn::{TurnableFace, encode_jpeg};

/// The face pipeline the frames are fitted with (loaded once per process).
pub fn pipeline() -> &'static FacePipeline {
    static P: OnceLock<FacePipeline> = OnceLock::new();
    P.get_or_init(|| FacePipeline::new(VisionConfig::default()).expect("the face models load (run ./scripts/setup.sh)"))
}

/// JPEG (quality 92) of `file`'s face turned by `yaw` and `pitch` degrees from its pose in
/// the photo.
pub fn turned(file: &str, yaw: f32, pitch: f32) -> Vec<u8> {
    type FrameCache = Mutex<HashMap<(String, i32, i32), Vec<u8>>>;
    static CACHE: OnceLock<FrameCache> = OnceLock::new();
    static FACES: OnceLock<Mutex<HashMap<String, Arc<TurnableFace>>>> = OnceLock::new();
    let key = (file.to_string(), (yaw * 10.0) as i32, (pitch * 10.0) as i32);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(b) = cache.lock().expect("cache").get(&key) {
        return b.clone();
    }
    let face = {
        let mut faces = FACES.get_or_init(Default::default).lock().expect("faces");
        Arc::clone(
            faces
                .entry(file.to_string())
                .or_insert_with(|| Arc::new(TurnableFace::from_bytes(pipeline(), &photo(file).bytes()).expect("a turnable face"))),
        )
    };
    let bytes = encode_jpeg(&face.turned(yaw, pitch), 92).expect("jpeg");
    cache.lock().expect("cache").insert(key, bytes.clone());
    bytes
}

/// The turn that answers `pose` for a person, by `angle` degrees.
pub fn answer(file: &str, pose: pb::PoseStep, angle: f32) -> Vec<u8> {
    match pose {
        pb::PoseStep::Frontal => turned(file, 0.0, 0.0),
        pb::PoseStep::TurnLeft => turned(file, angle, 0.0),
        pb::PoseStep::TurnRight => turned(file, -angle, 0.0),
        pb::PoseStep::LookUp => turned(file, 0.0, angle),
        pb::PoseStep::LookDown => turned(file, 0.0, -angle),
        pb::PoseStep::Unspecified => panic!("unspecified pose"),
    }
}

/// A frame for step `step` holding `bytes`.
pub fn frame(bytes: Vec<u8>, step: usize) -> pb::Frame {
    pb::Frame {
        image: Some(pb::Image { data: bytes, content_type: None }),
        step_index: step as u32,
        client_capture_unix_ms: None,
        mirrored: false,
    }
}

/// Frames answering every step of `c` correctly with `file`'s face.
pub fn good_frames(c: &pb::Challenge, file: &str) -> Vec<pb::Frame> {
    c.steps.iter().map(|s| frame(answer(file, s.pose(), 25.0), s.index as usize)).collect()
}

/// A phone photo (JPEG) of a synthetic ID card printed with `file`'s face: the scene of
/// `seed` without the degradations a user would be asked to fix (no heavy blur, no glare,
/// nothing cut off).
pub fn id_card_photo(file: &str, seed: u64) -> Vec<u8> {
    id_card_from_bytes(&photo(file).bytes(), seed)
}

/// [`id_card_photo`] for a photo given as encoded bytes.
pub fn id_card_from_bytes(photo_bytes: &[u8], seed: u64) -> Vec<u8> {
    use crate::idcard::{random_scene, render};
    let p = pipeline();
    let image = p.decode(photo_bytes).expect("decodes");
    let faces = p.analyze(&image, ekyc_vision::AnalyzeOptions { embed: false, largest_only: true }).expect("analyses");
    let face = faces.first().expect("the photo has a face").bbox;
    let mut scene = random_scene(seed);
    scene.glare = None;
    scene.cut_off = None;
    scene.blur_sigma = scene.blur_sigma.min(0.8);
    scene.noise_sigma = scene.noise_sigma.min(4.0);
    scene.jpeg_quality = scene.jpeg_quality.max(85);
    render(&scene, &image, face).jpeg
}
