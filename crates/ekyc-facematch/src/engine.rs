//! The facematch engine, a plain-Rust core with no gRPC: images are decoded, detected,
//! landmarked and aligned on a bounded pool of worker threads (each owning its detector and
//! landmark sessions); crops then go to the batching embedder. Every queue is bounded and a
//! full one is refused at once; work for a caller that went away is dropped before
//! inference. Decoding reserves from the process-wide decode budget, and the decoded image
//! holds its share until the worker is done with it.
//!
//! A worker or embedder thread that panics answers its call INTERNAL, is restarted with
//! fresh sessions and counted; [`Engine::usable`] is false meanwhile (health NOT_SERVING).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ekyc_runtime::kit::Workers;
use ekyc_vision::pool::{InferencePool, Restart};
use ekyc_vision::{Face, FacePipeline, ImageMeta, VisionConfig, VisionError};
use sha2::{Digest, Sha256};

use crate::batcher::Batcher;
use crate::calibration::Calibration;
use crate::config::FacematchConfig;
use crate::error::FacematchError;

/// What to compute for an image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmbedOptions {
    pub largest_only: bool,
    /// Minimum face size in pixels; 0 means the configured default.
    pub min_face_size_px: f32,
    pub embeddings: bool,
}

/// Why a face is not usable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaceIssue {
    TooSmall { size_px: f32, min: f32 },
    Blurred { sharpness: f32, min: f32 },
    CutOff { outside: f32, max: f32 },
    TooDark { brightness: f32, min: f32 },
    TooBright { brightness: f32, max: f32 },
    PoseTooLarge { angle_deg: f32, max: f32 },
}

/// One face with its verdict.
#[derive(Debug, Clone)]
pub struct FaceResult {
    /// The face; its embedding is set when it is usable and embeddings were asked for.
    pub face: Face,
    pub usable: bool,
    pub issues: Vec<FaceIssue>,
}

/// The result for one image.
#[derive(Debug, Clone)]
pub struct ImageResult {
    pub width: u32,
    pub height: u32,
    pub meta: ImageMeta,
    /// SHA-256 of the encoded bytes, lower-case hex.
    pub sha256: String,
    /// Largest first.
    pub faces: Vec<FaceResult>,
    /// Time waiting for a worker and for the embedder.
    pub queue: Duration,
    /// Time in decoding and the models.
    pub inference: Duration,
}

/// Counters for tests and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Images a worker decoded and analysed.
    pub images: u64,
    /// Images skipped by the workers because their caller had gone away.
    pub images_skipped: u64,
    /// Crops embedded, and the batches they ran in.
    pub crops: u64,
    pub batches: u64,
    /// Crops dropped before embedding because their caller had gone away.
    pub crops_skipped: u64,
}

/// The loaded models and threads. Create once, share with `Arc`.
#[derive(Debug)]
pub struct Engine {
    cfg: FacematchConfig,
    vision: VisionConfig,
    workers: Workers<FacePipeline, FacematchError>,
    batcher: Batcher,
    calibration: Option<Calibration>,
    dimension: usize,
    images: std::sync::atomic::AtomicU64,
    /// Test-only fault injection: the next worker job panics.
    #[cfg(feature = "fault-injection")]
    panic_next_worker: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Test-only: how much longer a restart takes with fault injection compiled in.
#[cfg(feature = "fault-injection")]
pub const INJECTED_RESTART_DELAY: Duration = Duration::from_millis(600);

/// With fault injection compiled in, a restart takes [`INJECTED_RESTART_DELAY`] longer, so a
/// test sees the NOT_SERVING window however fast the models load; otherwise nothing.
fn injected_restart_delay() {
    #[cfg(feature = "fault-injection")]
    std::thread::sleep(INJECTED_RESTART_DELAY);
}

/// Which thread [`Engine::inject_panic`] makes panic.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Worker,
    Embedder,
}

impl Engine {
    /// Loads the models (blocking: call it off the async runtime), warms every session up
    /// and starts the threads.
    pub fn start(vision: &VisionConfig, cfg: &FacematchConfig) -> Result<Engine, FacematchError> {
        cfg.validate().map_err(|e| FacematchError::InvalidArgument(format!("facematch settings: {e}")))?;
        let load = |e: VisionError| FacematchError::Internal(format!("loading models: {e}"));
        let calibration = match &cfg.calibration_file {
            Some(path) => {
                Some(Calibration::load(path, cfg.calibration_id.as_deref(), &vision.embedder.model.id).map_err(FacematchError::Internal)?)
            }
            None => None,
        };
        // Matching needs the five points, not a fine head pose: `landmarks.match_passes`.
        let worker_cfg = VisionConfig { intra_threads: cfg.worker_intra_threads, ..vision.for_matching() };
        let make_worker = move || -> Result<FacePipeline, VisionError> {
            let p = FacePipeline::without_embedder(worker_cfg.clone())?;
            p.warm_up()?;
            Ok(p)
        };
        let mut pipelines = Vec::new();
        for _ in 0..cfg.worker_threads() {
            pipelines.push(make_worker().map_err(load)?);
        }
        let embed_cfg = VisionConfig { intra_threads: cfg.embed_intra_threads, ..vision.clone() };
        let make_embedder = move || -> Result<(ekyc_vision::models::Embedder, usize), VisionError> {
            let e = FacePipeline::open_embedder(&embed_cfg)?;
            let probe = ekyc_vision::imgops::FloatImage::zeros(embed_cfg.embedder.input.size, embed_cfg.embedder.input.size);
            let dimension = e.embed(&[probe])?.first().map_or(0, Vec::len);
            Ok((e, dimension))
        };
        let mut embedders = Vec::new();
        let mut dimension = 0;
        for _ in 0..cfg.embed_sessions {
            let (e, d) = make_embedder().map_err(load)?;
            dimension = d;
            embedders.push(e);
        }
        let worker_restart = Restart {
            service: "facematch",
            role: "worker",
            make: std::sync::Arc::new(move || {
                injected_restart_delay();
                make_worker().map_err(|e| e.to_string())
            }),
        };
        let embedder_restart = Restart {
            service: "facematch",
            role: "embedder",
            make: std::sync::Arc::new(move || {
                injected_restart_delay();
                make_embedder().map(|(e, _)| e).map_err(|e| e.to_string())
            }),
        };
        let workers =
            Workers::new(crate::KIND, "face", InferencePool::restarting(pipelines, cfg.worker_queue, "facematch-worker", worker_restart)?);
        let batcher =
            Batcher::start(embedders, cfg.max_batch, Duration::from_millis(cfg.max_batch_wait_ms), cfg.embed_queue, embedder_restart)?;
        Ok(Engine {
            cfg: cfg.clone(),
            vision: vision.clone(),
            workers,
            batcher,
            calibration,
            dimension,
            images: Default::default(),
            #[cfg(feature = "fault-injection")]
            panic_next_worker: Default::default(),
        })
    }

    /// Whether every model thread has its sessions: false while one that panicked is being
    /// restarted. Health follows it.
    pub fn usable(&self) -> bool {
        self.workers.usable() && self.batcher.usable()
    }

    /// Model threads restarted after a panic so far: (workers, embedders).
    pub fn restarts(&self) -> (u64, u64) {
        (self.workers.restarts(), self.batcher.restarts())
    }

    /// Test-only: the next job of `role` panics, for real, on its model thread.
    #[cfg(feature = "fault-injection")]
    pub fn inject_panic(&self, role: Role) {
        match role {
            Role::Worker => self.panic_next_worker.store(true, Ordering::SeqCst),
            Role::Embedder => self.batcher.inject_panic(),
        }
    }

    pub fn config(&self) -> &FacematchConfig {
        &self.cfg
    }

    pub fn vision(&self) -> &VisionConfig {
        &self.vision
    }

    /// Length of the embeddings this engine produces.
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    pub fn calibration(&self) -> Option<&Calibration> {
        self.calibration.as_ref()
    }

    pub fn stats(&self) -> Stats {
        let b = self.batcher.stats();
        Stats {
            images: self.images.load(Ordering::Relaxed),
            images_skipped: self.workers.skipped(),
            crops: b.crops.load(Ordering::Relaxed),
            batches: b.batches.load(Ordering::Relaxed),
            crops_skipped: b.skipped.load(Ordering::Relaxed),
        }
    }

    /// Analyses one encoded image. `field` names it in error messages (e.g. `images[2]`).
    pub async fn embed_image(&self, field: &str, bytes: Vec<u8>, opts: EmbedOptions) -> Result<ImageResult, FacematchError> {
        let submitted = Instant::now();
        #[cfg(feature = "fault-injection")]
        let inject = std::sync::Arc::clone(&self.panic_next_worker);
        let prepared = self
            .workers
            .run(field, move |p: &mut FacePipeline| {
                #[cfg(feature = "fault-injection")]
                if inject.swap(false, Ordering::SeqCst) {
                    panic!("injected worker panic (fault-injection feature)");
                }
                let _span = tracing::info_span!("facematch.prepare", bytes = bytes.len()).entered();
                let started = Instant::now();
                let sha256 = hex::encode(Sha256::digest(&bytes));
                // Holds its share of the decode budget until the faces are prepared.
                let img = p.decode_reserved(&bytes)?;
                let faces = p.prepare(&img, opts.largest_only)?;
                Ok::<_, VisionError>((started, started.elapsed(), img.width(), img.height(), img.meta, sha256, faces))
            })
            .await?
            .map_err(|e| FacematchError::image(field, e))?;
        let (started, prep_time, width, height, meta, sha256, prepared) = prepared;
        self.images.fetch_add(1, Ordering::Relaxed);
        let mut queue = started.saturating_duration_since(submitted);
        metrics::histogram!("ekyc_facematch_queue_seconds", "stage" => "prepare").record(queue.as_secs_f64());
        metrics::histogram!("ekyc_inference_seconds", "model" => "decode+detector+landmarks").record(prep_time.as_secs_f64());
        let mut inference = prep_time;

        let min_size = if opts.min_face_size_px > 0.0 { opts.min_face_size_px } else { self.cfg.min_face_size_px };
        let mut faces = Vec::with_capacity(prepared.len());
        let mut pending = Vec::new();
        for (i, p) in prepared.into_iter().enumerate() {
            let issues = self.issues(&p.face, min_size);
            let usable = issues.is_empty();
            if usable && opts.embeddings {
                pending.push((i, self.batcher.submit(p.crop)?));
            }
            faces.push(FaceResult { face: p.face, usable, issues });
        }
        let mut slowest_batch = Duration::ZERO;
        let mut longest_wait = Duration::ZERO;
        for (i, rx) in pending {
            let embedded = rx
                .await
                .map_err(|_| FacematchError::Internal(format!("{field}: the embedder stopped before answering")))?
                .map_err(|e| FacematchError::Internal(format!("{field}: embedding failed: {e}")))?;
            longest_wait = longest_wait.max(embedded.queue);
            slowest_batch = slowest_batch.max(embedded.inference);
            faces[i].face.embedding = Some(embedded.embedding);
        }
        queue += longest_wait;
        inference += slowest_batch;
        Ok(ImageResult { width, height, meta, sha256, faces, queue, inference })
    }

    /// The quality gates a face fails.
    pub fn issues(&self, face: &Face, min_size: f32) -> Vec<FaceIssue> {
        let q = &face.quality;
        let c = &self.cfg;
        let mut out = Vec::new();
        if q.face_size_px < min_size {
            out.push(FaceIssue::TooSmall { size_px: q.face_size_px, min: min_size });
        }
        if q.sharpness < c.min_sharpness {
            out.push(FaceIssue::Blurred { sharpness: q.sharpness, min: c.min_sharpness });
        }
        if q.outside_fraction > c.max_outside_fraction {
            out.push(FaceIssue::CutOff { outside: q.outside_fraction, max: c.max_outside_fraction });
        }
        if q.brightness < c.min_brightness {
            out.push(FaceIssue::TooDark { brightness: q.brightness, min: c.min_brightness });
        }
        if q.brightness > c.max_brightness {
            out.push(FaceIssue::TooBright { brightness: q.brightness, max: c.max_brightness });
        }
        let angle = face.pose.yaw.abs().max(face.pose.pitch.abs());
        if angle > c.max_pose_deg {
            out.push(FaceIssue::PoseTooLarge { angle_deg: angle, max: c.max_pose_deg });
        }
        out
    }

    /// Checks an embedding a client sent: its model, length and values. An embedding that
    /// does not name its model is refused like one of another model: cosines between
    /// different models' embeddings mean nothing, and a length check alone cannot tell two
    /// models of one dimension apart.
    pub fn check_embedding(&self, field: &str, values: &[f32], model_id: &str) -> Result<(), FacematchError> {
        let ours = &self.vision.embedder.model.id;
        if model_id.is_empty() {
            return Err(FacematchError::InvalidArgument(format!(
                "EMBEDDING_MODEL_MISMATCH: {field}: no model_id; this server compares only embeddings made by `{ours}`"
            )));
        }
        if model_id != ours {
            return Err(FacematchError::InvalidArgument(format!(
                "EMBEDDING_MODEL_MISMATCH: {field}: made by `{model_id}`, this server embeds with `{ours}`; embeddings of different models cannot be compared"
            )));
        }
        if values.len() != self.dimension {
            return Err(FacematchError::InvalidArgument(format!(
                "EMBEDDING_INVALID: {field}: {} values, `{ours}` embeddings have {}",
                values.len(),
                self.dimension
            )));
        }
        if values.iter().any(|v| !v.is_finite()) || values.iter().all(|v| *v == 0.0) {
            return Err(FacematchError::InvalidArgument(format!("EMBEDDING_INVALID: {field}: values must be finite and not all zero")));
        }
        Ok(())
    }
}
