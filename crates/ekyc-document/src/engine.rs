//! The document engine, a plain-Rust core with no gRPC: each photo is decoded and analysed
//! on a bounded pool of worker threads, each owning its own face models; a full queue is
//! refused at once, and work for a caller that went away is dropped before it starts. The
//! pool is the kit's ([`ekyc_runtime::kit::Workers`]), which exports its queue depth.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ekyc_runtime::kit::Workers;
use ekyc_vision::pool::InferencePool;
use ekyc_vision::{FacePipeline, ImageMeta, VisionConfig, VisionError};
use sha2::{Digest, Sha256};

use crate::config::DocumentConfig;
use crate::error::DocumentError;
use crate::extract::{ExtractOptions, Extraction, extract};

/// The result for one photo.
#[derive(Debug, Clone)]
pub struct PhotoResult {
    pub width: u32,
    pub height: u32,
    pub meta: ImageMeta,
    /// SHA-256 of the encoded bytes, lower-case hex.
    pub sha256: String,
    pub extraction: Extraction,
    /// Time waiting for a worker.
    pub queue: Duration,
    /// Time decoding and analysing.
    pub inference: Duration,
}

/// The loaded models and threads. Create once, share with `Arc`.
#[derive(Debug)]
pub struct Engine {
    cfg: DocumentConfig,
    vision: VisionConfig,
    workers: Workers<FacePipeline, DocumentError>,
    photos: AtomicU64,
}

impl Engine {
    /// Loads the models (blocking: call it off the async runtime), warms every session up
    /// and starts the threads.
    pub fn start(vision: &VisionConfig, cfg: &DocumentConfig) -> Result<Engine, DocumentError> {
        cfg.validate().map_err(|e| DocumentError::InvalidArgument(format!("document settings: {e}")))?;
        let load = |e: VisionError| DocumentError::Internal(format!("loading models: {e}"));
        // `vision.intra_threads` per worker session as set; 0: one, as the workers already
        // spread over the cores.
        let worker_vision = VisionConfig { intra_threads: vision.intra_threads.max(1), ..vision.clone() };
        let make_worker = move || -> Result<FacePipeline, VisionError> {
            let p = FacePipeline::new(worker_vision.clone())?;
            p.warm_up()?;
            Ok(p)
        };
        let mut pipelines = Vec::new();
        for _ in 0..cfg.worker_threads() {
            pipelines.push(make_worker().map_err(load)?);
        }
        // A worker whose job panics is restarted with fresh sessions (health NOT_SERVING meanwhile).
        let restart = ekyc_vision::pool::Restart {
            service: "document",
            role: "worker",
            make: Arc::new(move || make_worker().map_err(|e| e.to_string())),
        };
        let workers =
            Workers::new(crate::KIND, "document", InferencePool::restarting(pipelines, cfg.worker_queue, "document-worker", restart)?);
        Ok(Engine { cfg: cfg.clone(), vision: vision.clone(), workers, photos: AtomicU64::new(0) })
    }

    /// False while a worker that panicked is being restarted; health follows it.
    pub fn usable(&self) -> bool {
        self.workers.usable()
    }

    pub fn config(&self) -> &DocumentConfig {
        &self.cfg
    }

    pub fn vision(&self) -> &VisionConfig {
        &self.vision
    }

    /// Photos the workers have analysed.
    pub fn photos_analysed(&self) -> u64 {
        self.photos.load(Ordering::Relaxed)
    }

    /// Finds the document and its portrait in one encoded photo. `field` names it in error
    /// messages (e.g. `image`).
    pub async fn extract(&self, field: &str, bytes: Vec<u8>, opts: ExtractOptions) -> Result<PhotoResult, DocumentError> {
        let submitted = Instant::now();
        let cfg = self.cfg.clone();
        let (started, result) = self
            .workers
            .run(field, move |p: &mut FacePipeline| {
                let started = Instant::now();
                let run = || -> Result<_, VisionError> {
                    let sha256 = hex::encode(Sha256::digest(&bytes));
                    let (img, meta) = p.decode_with_meta(&bytes)?;
                    let extraction = extract(p, &cfg, &img, opts)?;
                    Ok((img.width(), img.height(), meta, sha256, extraction))
                };
                (started, run())
            })
            .await?;
        let (width, height, meta, sha256, extraction) = result.map_err(|e| DocumentError::image(field, e))?;
        self.photos.fetch_add(1, Ordering::Relaxed);
        let queue = started.saturating_duration_since(submitted);
        let inference = started.elapsed();
        metrics::histogram!("ekyc_document_queue_seconds").record(queue.as_secs_f64());
        metrics::histogram!("ekyc_inference_seconds", "model" => "document").record(inference.as_secs_f64());
        Ok(PhotoResult { width, height, meta, sha256, extraction, queue, inference })
    }
}
