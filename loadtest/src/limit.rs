//! The `limit` mode: how many images per second the face pipeline itself can do on this
//! machine, in process, with no gRPC and no queue: the ceiling a service's throughput is
//! compared with.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use ekyc_vision::{AnalyzeOptions, FacePipeline, VisionConfig};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::schedule::Window;
use crate::stats::{Latency, histogram, record};

#[derive(Debug, Clone)]
pub struct LimitSpec {
    pub images: Vec<PathBuf>,
    pub threads: usize,
    /// Pipelines (model sets) loaded; threads share them round-robin. One by default: a
    /// single shared pipeline, as a service holds it.
    pub pipelines: usize,
    pub intra_threads: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub largest_only: bool,
    pub models_dir: Option<PathBuf>,
}

/// One image file as the pipeline saw it.
#[derive(Debug, Clone, Serialize)]
pub struct ImageFacts {
    pub file: String,
    pub bytes: usize,
    pub width: u32,
    pub height: u32,
    pub faces: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct LimitSummary {
    pub mode: &'static str,
    pub threads: usize,
    pub pipelines: usize,
    pub intra_threads: usize,
    pub largest_face_only: bool,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub images: Vec<ImageFacts>,
    /// Images started inside the measured window (the latency samples).
    pub images_measured: u64,
    /// Images finished inside the measured window, per second: the limit.
    pub images_per_s: f64,
    /// The same, per thread.
    pub per_thread_images_per_s: Vec<f64>,
    /// Decode + analyze (detect, landmarks, embed) of one image.
    pub latency: Option<Latency>,
    /// Decoding alone.
    pub decode_latency: Option<Latency>,
}

struct ThreadStats {
    total: Histogram<u64>,
    decode: Histogram<u64>,
    measured: u64,
    done_in_window: u64,
}

pub fn run(spec: &LimitSpec) -> anyhow::Result<LimitSummary> {
    if spec.images.is_empty() {
        bail!("no images given (--images FILE...)");
    }
    if spec.threads == 0 || spec.pipelines == 0 {
        bail!("--threads and --pipelines must be at least 1");
    }
    let files: Vec<(String, Vec<u8>)> = spec
        .images
        .iter()
        .map(|p| Ok((p.display().to_string(), std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)))
        .collect::<anyhow::Result<_>>()?;
    let cfg = VisionConfig { intra_threads: spec.intra_threads, models_dir: spec.models_dir.clone(), ..Default::default() };
    eprintln!("loading {} face pipeline(s) with {} intra-op thread(s) per model...", spec.pipelines, cfg.threads());
    let pipelines: Vec<Arc<FacePipeline>> = (0..spec.pipelines)
        .map(|_| FacePipeline::new(cfg.clone()).map(Arc::new).context("loading the face models"))
        .collect::<anyhow::Result<_>>()?;
    let opts = AnalyzeOptions { embed: true, largest_only: spec.largest_only };

    // One pass over every image: checks it decodes, says how many faces it has (an image
    // without a face skips the embedder and is cheaper than a real one), and warms up.
    let mut images = Vec::with_capacity(files.len());
    for (name, bytes) in &files {
        let img = pipelines[0].decode(bytes).with_context(|| format!("decoding {name}"))?;
        let faces = pipelines[0].analyze(&img, opts).with_context(|| format!("analysing {name}"))?;
        if faces.is_empty() {
            eprintln!("warning: {name} has no face: it measures detection only, not the embedder");
        }
        images.push(ImageFacts { file: name.clone(), bytes: bytes.len(), width: img.width(), height: img.height(), faces: faces.len() });
    }

    let window = Window::new(spec.warmup, spec.duration);
    eprintln!(
        "running {} thread(s) for {:.1} s warm-up + {:.1} s measured...",
        spec.threads,
        spec.warmup.as_secs_f64(),
        spec.duration.as_secs_f64()
    );
    let start = Instant::now();
    let stats: Vec<ThreadStats> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..spec.threads)
            .map(|t| {
                let pipeline = Arc::clone(&pipelines[t % pipelines.len()]);
                let files = &files;
                scope.spawn(move || worker(&pipeline, files, t, opts, start, window))
            })
            .collect();
        handles.into_iter().map(|h| h.join().map_err(|_| anyhow!("a limit thread panicked"))?).collect::<anyhow::Result<Vec<_>>>()
    })?;

    let mut total = histogram(3);
    let mut decode = histogram(3);
    for s in &stats {
        total.add(&s.total).context("merging histograms with equal bounds")?;
        decode.add(&s.decode).context("merging histograms with equal bounds")?;
    }
    let secs = window.length().as_secs_f64();
    let per_thread: Vec<f64> = stats.iter().map(|s| s.done_in_window as f64 / secs).collect();
    Ok(LimitSummary {
        mode: "limit",
        threads: spec.threads,
        pipelines: spec.pipelines,
        intra_threads: cfg.threads(),
        largest_face_only: spec.largest_only,
        warmup_s: spec.warmup.as_secs_f64(),
        duration_s: secs,
        images,
        images_measured: stats.iter().map(|s| s.measured).sum(),
        images_per_s: per_thread.iter().sum(),
        per_thread_images_per_s: per_thread,
        latency: Latency::of(&total),
        decode_latency: Latency::of(&decode),
    })
}

/// Decodes and analyses the images round-robin (thread `t` starts at image `t`) until the
/// end of the window.
fn worker(
    pipeline: &FacePipeline,
    files: &[(String, Vec<u8>)],
    t: usize,
    opts: AnalyzeOptions,
    start: Instant,
    window: Window,
) -> anyhow::Result<ThreadStats> {
    let mut s = ThreadStats { total: histogram(3), decode: histogram(3), measured: 0, done_in_window: 0 };
    let mut i = t % files.len();
    loop {
        let t0 = Instant::now();
        let at = t0 - start;
        if at >= window.end {
            break;
        }
        let (name, bytes) = &files[i];
        let img = pipeline.decode(bytes).with_context(|| format!("decoding {name}"))?;
        let t1 = Instant::now();
        pipeline.analyze(&img, opts).with_context(|| format!("analysing {name}"))?;
        let t2 = Instant::now();
        if window.contains_send(at) {
            s.measured += 1;
            record(&mut s.total, t2 - t0);
            record(&mut s.decode, t1 - t0);
        }
        if window.contains_completion(t2 - start) {
            s.done_in_window += 1;
        }
        i = (i + 1) % files.len();
    }
    Ok(s)
}
