//! Settings of the facematch service (`[facematch]` in the layered settings). Defaults were
//! chosen by measurement on a 2-core machine; `loadtest/RESULTS.md` has the numbers.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FacematchConfig {
    /// Threads that decode images and run detection and landmarks, each with its own ONNX
    /// sessions; 0 means one per core.
    pub workers: usize,
    /// Images waiting for a worker, beyond which calls are refused RESOURCE_EXHAUSTED.
    pub worker_queue: usize,
    /// ONNX Runtime threads per worker session.
    pub worker_intra_threads: usize,
    /// Embedding threads, each owning one embedder session.
    pub embed_sessions: usize,
    /// ONNX Runtime threads per embedder session.
    pub embed_intra_threads: usize,
    /// Most face crops embedded in one run (1 turns dynamic batching off).
    pub max_batch: usize,
    /// How long the first crop of a batch waits for others, in milliseconds.
    pub max_batch_wait_ms: u64,
    /// Crops waiting for the embedder.
    pub embed_queue: usize,
    /// Requests in flight (admission limit); more are refused RESOURCE_EXHAUSTED at once.
    /// Size it as throughput x acceptable queueing: 8 at about 24 images/s on 2 cores
    /// bounds an admitted call's wait to about a third of a second.
    pub max_in_flight: usize,
    /// Images accepted in one Embed call.
    pub max_images_per_request: usize,
    /// Quality gates: a face failing one is reported but not embedded or compared.
    pub min_face_size_px: f32,
    /// Minimum sharpness (variance of the Laplacian on the aligned crop).
    pub min_sharpness: f32,
    /// Most of the face (fraction of its landmarks) allowed outside the image.
    pub max_outside_fraction: f32,
    /// Accepted mean brightness of the face, in [0, 1].
    pub min_brightness: f32,
    pub max_brightness: f32,
    /// Largest |yaw| or |pitch| of a usable face, in degrees.
    pub max_pose_deg: f32,
    /// Calibration table: the JSON written by `ekyc eval pairs --json` on the operator's own
    /// photos. Without one, Compare reports no false-match estimate.
    pub calibration_file: Option<PathBuf>,
    /// Name of that calibration, reported with every score (default: the file name).
    pub calibration_id: Option<String>,
}

impl Default for FacematchConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            worker_queue: 64,
            worker_intra_threads: 1,
            embed_sessions: 1,
            embed_intra_threads: 1,
            max_batch: 1,
            max_batch_wait_ms: 2,
            embed_queue: 256,
            max_in_flight: 8,
            max_images_per_request: 16,
            min_face_size_px: 32.0,
            min_sharpness: 10.0,
            max_outside_fraction: 0.25,
            min_brightness: 0.12,
            max_brightness: 0.92,
            max_pose_deg: 50.0,
            calibration_file: None,
            calibration_id: None,
        }
    }
}

impl FacematchConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.worker_queue == 0 || self.embed_queue == 0 || self.max_in_flight == 0 || self.max_images_per_request == 0 {
            return Err("worker_queue, embed_queue, max_in_flight and max_images_per_request must be at least 1".into());
        }
        if self.embed_sessions == 0 || self.max_batch == 0 || self.worker_intra_threads == 0 || self.embed_intra_threads == 0 {
            return Err("embed_sessions, max_batch and the intra-thread counts must be at least 1".into());
        }
        if self.min_brightness >= self.max_brightness {
            return Err("min_brightness must be below max_brightness".into());
        }
        Ok(())
    }

    /// Worker threads after resolving 0 to the core count.
    pub fn worker_threads(&self) -> usize {
        if self.workers > 0 { self.workers } else { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) }
    }
}
