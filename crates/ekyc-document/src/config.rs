//! Settings of the document service (`[document]` in the layered settings): the thresholds
//! behind its reason codes and the limits on its work.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DocumentConfig {
    /// Threads that analyse photos, each with its own ONNX sessions; 0 means one per core.
    pub workers: usize,
    /// Photos waiting for a worker, beyond which calls are refused RESOURCE_EXHAUSTED.
    pub worker_queue: usize,
    /// Requests in flight (admission limit); more are refused RESOURCE_EXHAUSTED at once.
    pub max_in_flight: usize,
    /// Outline confidence in [0, 1] below which no document is reported.
    pub min_document_score: f32,
    /// PORTRAIT_TOO_SMALL below this face size, in pixels of the original photo.
    pub min_portrait_size_px: f32,
    /// BLUR below this sharpness (variance of the Laplacian on the aligned face crop, the
    /// scale of FaceQuality.sharpness).
    pub min_sharpness: f32,
    /// BLUR also when the photo's blur, measured across the document's outline, exceeds
    /// this Gaussian sigma in photo pixels (whatever the portrait's size).
    pub max_blur_px: f32,
    /// GLARE above this fraction of the face's pixels blown out to white, in [0, 1].
    pub max_glare_fraction: f32,
    /// With no portrait found, GLARE above this fraction of the whole document blown out
    /// (the portrait may be under it).
    pub max_document_glare_fraction: f32,
    /// DOCUMENT_CUT_OFF above this fraction of the document's area outside the photo.
    pub max_cut_off_fraction: f32,
    /// A second face on the document at most this fraction of the portrait's size is its
    /// ghost copy; a larger one is another face.
    pub ghost_max_size_ratio: f32,
    /// GHOST_PORTRAIT_MISMATCH when the ghost's similarity to the portrait is below this
    /// cosine (lower than the match threshold: the ghost is small and faint).
    pub ghost_min_similarity: f32,
    /// With no document found, a face at least this fraction of the photo's shorter side
    /// makes the photo a selfie (LOOKS_LIKE_SELFIE).
    pub selfie_min_face_fraction: f32,
    /// Longer side of the rectified document, in pixels (it follows the photo's own
    /// resolution up to this).
    pub max_rectified_side: u32,
    /// Shorter side of the rectified document at least, in pixels (small documents are
    /// enlarged so the face detector sees the portrait).
    pub min_rectified_height: u32,
    /// Crop around the portrait's face: side of the square crop over the face box's
    /// longer side.
    pub portrait_crop_scale: f32,
}

impl Default for DocumentConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            worker_queue: 32,
            max_in_flight: 8,
            min_document_score: 0.45,
            min_portrait_size_px: 40.0,
            min_sharpness: 10.0,
            max_blur_px: 4.0,
            max_glare_fraction: 0.2,
            max_document_glare_fraction: 0.03,
            max_cut_off_fraction: 0.05,
            ghost_max_size_ratio: 0.75,
            ghost_min_similarity: 0.3,
            selfie_min_face_fraction: 0.1,
            max_rectified_side: 1600,
            min_rectified_height: 480,
            portrait_crop_scale: 2.0,
        }
    }
}

impl DocumentConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.worker_queue == 0 || self.max_in_flight == 0 {
            return Err("worker_queue and max_in_flight must be at least 1".into());
        }
        let unit = [
            ("min_document_score", self.min_document_score),
            ("max_glare_fraction", self.max_glare_fraction),
            ("max_cut_off_fraction", self.max_cut_off_fraction),
            ("max_document_glare_fraction", self.max_document_glare_fraction),
            ("ghost_max_size_ratio", self.ghost_max_size_ratio),
            ("selfie_min_face_fraction", self.selfie_min_face_fraction),
        ];
        if let Some((name, v)) = unit.iter().find(|(_, v)| !(0.0..=1.0).contains(v)) {
            return Err(format!("{name} must be in [0, 1], not {v}"));
        }
        if !(-1.0..=1.0).contains(&self.ghost_min_similarity) {
            return Err("ghost_min_similarity must be a cosine in [-1, 1]".into());
        }
        if self.min_portrait_size_px < 0.0 || self.min_sharpness < 0.0 || self.max_blur_px <= 0.0 {
            return Err("min_portrait_size_px and min_sharpness must not be negative, max_blur_px must be positive".into());
        }
        if self.min_rectified_height < 64 || self.max_rectified_side < 2 * self.min_rectified_height {
            return Err("min_rectified_height must be at least 64 and max_rectified_side at least twice it".into());
        }
        if !(1.2..=4.0).contains(&self.portrait_crop_scale) {
            return Err("portrait_crop_scale must be in [1.2, 4]".into());
        }
        Ok(())
    }

    /// Worker threads after resolving 0 to the core count.
    pub fn worker_threads(&self) -> usize {
        if self.workers > 0 { self.workers } else { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) }
    }
}
