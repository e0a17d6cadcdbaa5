//! Conversions between the vision core's types and the `ekyc.v1` messages, shared by every
//! service so a face looks the same whichever service reports it.

use ekyc_proto::v1 as pb;
use ekyc_vision::{BBox, Face, FaceQuality, HeadPose, Point, VisionConfig};

pub fn point(p: Point) -> pb::Point2 {
    pb::Point2 { x: p.x, y: p.y }
}

pub fn bbox(b: &BBox) -> pb::BoundingBox {
    pb::BoundingBox { x1: b.x1, y1: b.y1, x2: b.x2, y2: b.y2 }
}

pub fn pose(p: &HeadPose) -> pb::HeadPose {
    pb::HeadPose { yaw_deg: p.yaw, pitch_deg: p.pitch, roll_deg: p.roll }
}

pub fn quality(q: &FaceQuality) -> pb::FaceQuality {
    pb::FaceQuality {
        face_size_px: q.face_size_px,
        inter_eye_px: q.inter_eye_px,
        sharpness: q.sharpness,
        brightness: q.brightness,
        outside_fraction: q.outside_fraction,
    }
}

/// The face as a message; its embedding (if any) is tagged with `embedder_id`.
pub fn face(f: &Face, embedder_id: &str) -> pb::Face {
    let [l, r, n, ml, mr] = f.landmarks;
    pb::Face {
        bbox: Some(bbox(&f.bbox)),
        detection_score: f.score,
        face_flag: f.face_flag,
        landmarks: Some(pb::Landmarks {
            eye_image_left: Some(point(l)),
            eye_image_right: Some(point(r)),
            nose_tip: Some(point(n)),
            mouth_image_left: Some(point(ml)),
            mouth_image_right: Some(point(mr)),
        }),
        pose: Some(pose(&f.pose)),
        quality: Some(quality(&f.quality)),
        embedding: f.embedding.as_ref().map(|v| pb::Embedding { values: v.clone(), model_id: embedder_id.to_string() }),
    }
}

/// The models of a pipeline, for results and audit records.
pub fn models(cfg: &VisionConfig) -> Vec<pb::ModelInfo> {
    [("detector", &cfg.detector.model), ("landmarks", &cfg.landmarks.model), ("embedder", &cfg.embedder.model)]
        .into_iter()
        .map(|(role, m)| pb::ModelInfo { role: role.into(), model_id: m.id.clone(), sha256: m.sha256.clone().unwrap_or_default() })
        .collect()
}

/// A reason with its code and message.
pub fn reason(code: pb::ReasonCode, message: impl Into<String>, blocking: bool) -> pb::Reason {
    pb::Reason { code: code as i32, message: message.into(), blocking, ..Default::default() }
}
