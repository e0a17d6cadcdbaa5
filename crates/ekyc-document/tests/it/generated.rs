//! Generated ID-document photos across the variations, run through the engine and scored
//! against their truth. Shared by the 200-photo test and the `eval_generated` example.

use std::sync::Arc;
use std::time::Instant;

use ekyc_document::Engine;
use ekyc_document::extract::{Code, ExtractOptions};
use ekyc_testkit::idcard::{Layout, PortraitSource, Scene, random_scene, render};
use ekyc_vision::{AnalyzeOptions, FacePipeline, cosine};

/// The variations, cycled over seeds.
pub const VARIATIONS: [&str; 5] = ["random", "quarter-turn", "passport", "fills-frame", "holder"];

/// The scene of `seed` and its variation's name.
pub fn scene(seed: u64) -> (&'static str, Scene) {
    let v = VARIATIONS[seed as usize % VARIATIONS.len()];
    let base = random_scene(seed);
    let scene = match v {
        "quarter-turn" => Scene { rotation_deg: ((seed / 5) % 4) as f32 * 90.0 + (base.rotation_deg % 6.0), ..base },
        "passport" => Scene { layout: Layout::Passport, ..base },
        "fills-frame" => Scene { fill: 1.0, offset: [0.5, 0.5], ..base },
        "holder" => Scene::with_holder(seed),
        _ => base,
    };
    (v, scene)
}

/// A source photo to print and its own embedding (the identity to match).
pub struct Source {
    pub portrait: PortraitSource,
    pub embedding: Vec<f32>,
}

/// The development photos usable as portraits, with their embeddings.
pub fn sources(pipeline: &FacePipeline) -> Vec<Source> {
    ekyc_testkit::idcard::portrait_sources(pipeline, 40.0)
        .into_iter()
        .map(|portrait| {
            let faces = pipeline.analyze(&portrait.image, AnalyzeOptions { embed: true, largest_only: true }).expect("analyses");
            let embedding = faces.into_iter().next().and_then(|f| f.embedding).expect("the source has a face");
            Source { portrait, embedding }
        })
        .collect()
}

/// One photo's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    pub variation: &'static str,
    pub file: String,
    /// IoU of the portrait's face box in the photo with the truth (0 when none).
    pub iou: f32,
    pub ghost_chosen: bool,
    pub holder_chosen: bool,
    /// Cosine of the extracted portrait's embedding with the source photo's.
    pub similarity: Option<f32>,
    pub found_document: bool,
    pub reasons: Vec<Code>,
    pub ms: f64,
    /// The portrait's measured sharpness and the blur the generator applied (sigma, px).
    pub sharpness: f32,
    pub blur_sigma: f32,
}

/// Renders and extracts `seeds`, `parallel` at a time (rendering on blocking threads, the
/// extraction on the engine's pool).
pub async fn evaluate(engine: Arc<Engine>, sources: Arc<Vec<Source>>, seeds: Vec<u64>, parallel: usize) -> Vec<Outcome> {
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut tasks = Vec::new();
    for seed in seeds {
        let (engine, sources, sem) = (Arc::clone(&engine), Arc::clone(&sources), Arc::clone(&sem));
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.expect("semaphore open");
            let (variation, scene) = scene(seed);
            let idx = seed as usize % sources.len();
            let srcs = Arc::clone(&sources);
            let g = tokio::task::spawn_blocking(move || {
                let s = &srcs[idx].portrait;
                render(&scene, &s.image, s.face)
            })
            .await
            .expect("render");
            let t = Instant::now();
            let r = engine.extract("image", g.jpeg.clone(), ExtractOptions::default()).await.expect("extraction runs");
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let e = &r.extraction;
            let truth = g.portrait.expect("generated scenes have a portrait");
            let src = &sources[idx];
            let (iou, ghost_chosen, holder_chosen, similarity) = match &e.portrait {
                Some(p) => (
                    p.face_box.iou(&truth.face_box),
                    g.ghost.is_some_and(|gh| p.face_box.iou(&gh.face_box) > 0.3),
                    g.holder_face.is_some_and(|h| p.face_box.iou(&h) > 0.3),
                    p.face.embedding.as_ref().map(|emb| cosine(emb, &src.embedding)),
                ),
                None => (0.0, false, false, None),
            };
            Outcome {
                seed,
                variation,
                file: src.portrait.file.clone(),
                iou,
                ghost_chosen,
                holder_chosen,
                similarity,
                found_document: e.document.is_some(),
                reasons: e.reasons.iter().map(|r| r.code).collect(),
                ms,
                sharpness: e.quality.sharpness,
                blur_sigma: g.applied.blur_sigma,
            }
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("evaluation task"));
    }
    out
}

/// The rates over some outcomes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub n: usize,
    /// Portrait found with IoU >= 0.8.
    pub iou_rate: f64,
    pub ghost_chosen: usize,
    pub holder_chosen: usize,
    /// Extracted portrait matches the source identity at the threshold.
    pub match_rate: f64,
    pub document_rate: f64,
}

pub fn rates(outcomes: &[&Outcome], threshold: f32) -> Rates {
    let n = outcomes.len().max(1) as f64;
    Rates {
        n: outcomes.len(),
        iou_rate: outcomes.iter().filter(|o| o.iou >= 0.8).count() as f64 / n,
        ghost_chosen: outcomes.iter().filter(|o| o.ghost_chosen).count(),
        holder_chosen: outcomes.iter().filter(|o| o.holder_chosen).count(),
        match_rate: outcomes.iter().filter(|o| o.similarity.is_some_and(|s| s >= threshold)).count() as f64 / n,
        document_rate: outcomes.iter().filter(|o| o.found_document).count() as f64 / n,
    }
}

/// Prints every miss, then the rates overall and per variation; returns the overall rates.
pub fn report(outcomes: &[Outcome], threshold: f32) -> Rates {
    for o in outcomes.iter().filter(|o| o.iou < 0.8 || o.similarity.is_none_or(|s| s < threshold) || o.ghost_chosen || o.holder_chosen) {
        println!(
            "miss: seed {:3} {:12} {:26} IoU {:.2} similarity {:?} ghost {} holder {} document {} reasons {:?}",
            o.seed, o.variation, o.file, o.iou, o.similarity, o.ghost_chosen, o.holder_chosen, o.found_document, o.reasons
        );
    }
    let line = |name: &str, r: Rates| {
        println!(
            "{name:12} n {:3}  IoU>=0.8 {:5.1} %  identity match {:5.1} %  ghost chosen {}  holder chosen {}  document found {:5.1} %",
            r.n,
            r.iou_rate * 100.0,
            r.match_rate * 100.0,
            r.ghost_chosen,
            r.holder_chosen,
            r.document_rate * 100.0
        );
    };
    for v in VARIATIONS {
        line(v, rates(&outcomes.iter().filter(|o| o.variation == v).collect::<Vec<_>>(), threshold));
    }
    let all = rates(&outcomes.iter().collect::<Vec<_>>(), threshold);
    line("all", all);
    for (lo, hi) in [(0.0, 0.5), (0.5, 1.5), (1.5, 2.6)] {
        let mut s: Vec<f32> =
            outcomes.iter().filter(|o| o.blur_sigma >= lo && o.blur_sigma < hi && o.sharpness > 0.0).map(|o| o.sharpness).collect();
        s.sort_by(f32::total_cmp);
        if !s.is_empty() {
            println!(
                "blur sigma {lo}-{hi}: portrait sharpness min {:.1} p10 {:.1} median {:.1} (n {})",
                s[0],
                s[s.len() / 10],
                s[s.len() / 2],
                s.len()
            );
        }
    }
    let mut ms: Vec<f64> = outcomes.iter().map(|o| o.ms).collect();
    ms.sort_by(f64::total_cmp);
    if !ms.is_empty() {
        println!("extraction time (queue included): median {:.0} ms, max {:.0} ms", ms[ms.len() / 2], ms[ms.len() - 1]);
    }
    all
}
