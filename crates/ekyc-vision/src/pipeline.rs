//! The face pipeline: detect (BlazeFace, any quarter turn) → landmarks in passes (FaceMesh) → gates →
//! five alignment points → head pose → aligned crop and quality → embedding (FaceRes).
//!
//! Stages are public so a service can batch the expensive last stage across requests:
//! [`FacePipeline::prepare`] does everything up to the aligned crop, and
//! [`Embedder::embed`](crate::models::Embedder::embed) takes crops from many images at once.

use std::time::{Duration, Instant};

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::budget::DecodeBudget;
use crate::config::VisionConfig;
use crate::decode::{Decoded, ImageMeta, decode_budgeted};
use crate::error::{Result, VisionError};
use crate::geometry::{BBox, Point};
use crate::imgops::{FloatImage, laplacian_variance};
use crate::models::{Aligner, Detection, Detector, Embedder, Landmarker, Mesh, MeshCrop};
use crate::pose::{self, HeadPose};
use crate::runtime;

/// Eye contour rings of FaceMesh: the eye on the image's left (the person's right eye in an
/// unmirrored image) and its mirror image.
pub const EYE_RING_IMAGE_LEFT: [usize; 16] = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246];
pub const EYE_RING_IMAGE_RIGHT: [usize; 16] = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466];
/// Nose tip and mouth corners (image left, image right).
pub const NOSE_TIP: usize = 1;
pub const MOUTH_IMAGE_LEFT: usize = 61;
pub const MOUTH_IMAGE_RIGHT: usize = 291;

/// Per-face quality measures.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct FaceQuality {
    /// Shorter side of the face box, in pixels (compared against minimum face sizes).
    pub face_size_px: f32,
    /// Distance between the eye centres, in pixels.
    pub inter_eye_px: f32,
    /// Variance of the Laplacian of the aligned crop's face region (squared grey levels;
    /// higher is sharper). Measured at the embedder's resolution, so a small face upscaled
    /// to it scores low too.
    pub sharpness: f32,
    /// Mean luma of the aligned face region in [0, 1].
    pub brightness: f32,
    /// Fraction of the face's landmarks that fall outside the image, in [0, 1].
    pub outside_fraction: f32,
}

/// One face found in an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Face {
    /// Detector box in image pixels.
    pub bbox: BBox,
    /// Detector score in [0, 1].
    pub score: f32,
    /// Landmarker face probability in [0, 1].
    pub face_flag: f32,
    /// Eye (image left), eye (image right), nose tip, mouth corner (image left), mouth
    /// corner (image right), in image pixels.
    pub landmarks: [Point; 5],
    pub pose: HeadPose,
    pub quality: FaceQuality,
    /// L2-normalised embedding, when asked for.
    pub embedding: Option<Vec<f32>>,
    /// The 468 FaceMesh points (x, y in image pixels; z relative depth in pixels).
    #[serde(skip)]
    pub mesh: Vec<[f32; 3]>,
}

/// What to analyse.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnalyzeOptions {
    /// Compute embeddings.
    pub embed: bool,
    /// Keep only the largest face.
    pub largest_only: bool,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        Self { embed: true, largest_only: false }
    }
}

/// Wall time spent in each stage of one analysis (decoding is the caller's), summed over
/// the faces and detector turns of the image: what `ekyc faces --timings` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StageTimes {
    /// The detector, every quarter turn tried included.
    pub detect: Duration,
    /// The landmark passes and the gates.
    pub mesh: Duration,
    /// The five points and the warp onto the embedder's template.
    pub align: Duration,
    /// Head pose and the quality measures.
    pub quality: Duration,
    /// The embedder (mirrors included when configured).
    pub embed: Duration,
}

impl StageTimes {
    /// The stages' names, in pipeline order, with their times.
    pub fn stages(&self) -> [(&'static str, Duration); 5] {
        [("detect", self.detect), ("mesh", self.mesh), ("align", self.align), ("quality", self.quality), ("embed", self.embed)]
    }
}

/// Adds the time since `*mark` to `slot` and moves the mark to now.
fn lap(mark: &mut Instant, slot: &mut Duration) {
    let now = Instant::now();
    *slot += now - *mark;
    *mark = now;
}

/// A face ready for the embedder: its description and its aligned crop.
#[derive(Debug, Clone)]
pub struct PreparedFace {
    pub face: Face,
    pub crop: FloatImage,
}

/// The loaded models and settings. Create once and share (`Arc`); every method takes
/// `&self` and may be called from several threads.
#[derive(Debug)]
pub struct FacePipeline {
    cfg: VisionConfig,
    detector: Detector,
    landmarker: Landmarker,
    aligner: Aligner,
    /// Absent in a pipeline built by [`FacePipeline::without_embedder`].
    embedder: Option<Embedder>,
    /// The process-wide decode budget every decode reserves from.
    budget: std::sync::Arc<DecodeBudget>,
}

impl FacePipeline {
    /// Loads ONNX Runtime and the three models.
    pub fn new(cfg: VisionConfig) -> Result<Self> {
        let mut p = Self::without_embedder(cfg)?;
        p.embedder = Some(Self::open_embedder(&p.cfg)?);
        Ok(p)
    }

    /// Detector and landmarker only: everything up to the aligned crop ([`Self::prepare`]),
    /// for workers whose crops are embedded elsewhere (a batching embedder thread).
    pub fn without_embedder(cfg: VisionConfig) -> Result<Self> {
        cfg.validate().map_err(VisionError::Config)?;
        let env = runtime::environment(cfg.ort_library.as_deref())?;
        let threads = cfg.threads();
        let detector = Detector::open(env, &cfg.detector, &cfg.model_path(&cfg.detector.model), threads)?;
        let landmarker = Landmarker::open(env, &cfg.landmarks, &cfg.model_path(&cfg.landmarks.model), threads)?;
        let budget = DecodeBudget::process(cfg.decode_budget_bytes, std::time::Duration::from_millis(cfg.decode_wait_ms));
        Ok(Self { aligner: Aligner::new(&cfg.embedder), cfg, detector, landmarker, embedder: None, budget })
    }

    /// A new embedder session as configured (one per embedding thread).
    pub fn open_embedder(cfg: &VisionConfig) -> Result<Embedder> {
        let env = runtime::environment(cfg.ort_library.as_deref())?;
        Embedder::open(env, &cfg.embedder, &cfg.model_path(&cfg.embedder.model), cfg.threads())
    }

    /// The passive presentation-attack models as configured (`[vision.anti_spoofing]`).
    pub fn open_anti_spoof(cfg: &VisionConfig) -> Result<crate::antispoof::AntiSpoof> {
        let env = runtime::environment(cfg.ort_library.as_deref())?;
        crate::antispoof::AntiSpoof::open(env, &cfg.anti_spoofing, |f| cfg.model_path(f), cfg.threads())
    }

    pub fn config(&self) -> &VisionConfig {
        &self.cfg
    }

    /// The embedder, unless built [`without_embedder`](Self::without_embedder).
    pub fn embedder(&self) -> Option<&Embedder> {
        self.embedder.as_ref()
    }

    /// Model identifiers (detector, landmarks, embedder) for audit records.
    pub fn model_ids(&self) -> [&str; 3] {
        [&self.cfg.detector.model.id, &self.cfg.landmarks.model.id, &self.cfg.embedder.model.id]
    }

    /// Decodes an encoded image under the configured limits and the process's decode
    /// budget (reserved while decoding; the returned image no longer counts).
    pub fn decode(&self, bytes: &[u8]) -> Result<RgbImage> {
        Ok(self.decode_reserved(bytes)?.image)
    }

    /// [`Self::decode`], with the image's format and orientation.
    pub fn decode_with_meta(&self, bytes: &[u8]) -> Result<(RgbImage, ImageMeta)> {
        let d = self.decode_reserved(bytes)?;
        Ok((d.image, d.meta))
    }

    /// Decodes under the process's decode budget; the result holds its pixels' share of the
    /// budget until dropped. Blocks up to `decode_wait_ms` for room.
    pub fn decode_reserved(&self, bytes: &[u8]) -> Result<Decoded> {
        Ok(decode_budgeted(bytes, &self.cfg.limits, &self.budget)?)
    }

    /// The decode budget this pipeline reserves from.
    pub fn decode_budget(&self) -> &std::sync::Arc<DecodeBudget> {
        &self.budget
    }

    /// Runs every model once on synthetic input so the first real request does not pay
    /// for ONNX Runtime's first-run set-up.
    pub fn warm_up(&self) -> Result<()> {
        let img = RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128]));
        for quarter_turns in [0, 1] {
            self.detector.detect(&img, quarter_turns)?;
        }
        let crop = MeshCrop { center: Point::new(160.0, 120.0), side: 150.0, angle: 0.0 };
        self.landmarker.run(&img, &[crop])?;
        if let Some(e) = &self.embedder {
            let five = [
                Point::new(130.0, 100.0),
                Point::new(190.0, 100.0),
                Point::new(160.0, 130.0),
                Point::new(135.0, 160.0),
                Point::new(185.0, 160.0),
            ];
            if let Some(c) = self.aligner.align(&img, &five) {
                e.embed(&[c])?;
            }
        }
        Ok(())
    }

    /// Decodes and analyses an encoded image.
    pub fn analyze_bytes(&self, bytes: &[u8], opts: AnalyzeOptions) -> Result<Vec<Face>> {
        self.analyze(&self.decode(bytes)?, opts)
    }

    /// Every face that passes both gates, largest first.
    pub fn analyze(&self, img: &RgbImage, opts: AnalyzeOptions) -> Result<Vec<Face>> {
        self.analyze_timed(img, opts, &mut StageTimes::default())
    }

    /// [`Self::analyze`], adding each stage's wall time to `times`.
    pub fn analyze_timed(&self, img: &RgbImage, opts: AnalyzeOptions, times: &mut StageTimes) -> Result<Vec<Face>> {
        let prepared = self.prepare_timed(img, opts.largest_only, times)?;
        if !opts.embed {
            return Ok(prepared.into_iter().map(|p| p.face).collect());
        }
        let embedder = self.embedder.as_ref().ok_or_else(|| VisionError::Config("this pipeline was built without an embedder".into()))?;
        let mut mark = Instant::now();
        let crops: Vec<FloatImage> = prepared.iter().map(|p| p.crop.clone()).collect();
        let embeddings = if crops.is_empty() { Vec::new() } else { embedder.embed(&crops)? };
        lap(&mut mark, &mut times.embed);
        Ok(prepared.into_iter().zip(embeddings).map(|(p, e)| Face { embedding: Some(e), ..p.face }).collect())
    }

    /// Everything but the embedding: faces with pose and quality, and their aligned crops.
    pub fn prepare(&self, img: &RgbImage, largest_only: bool) -> Result<Vec<PreparedFace>> {
        self.prepare_timed(img, largest_only, &mut StageTimes::default())
    }

    /// [`Self::prepare`], adding each stage's wall time to `times`.
    pub fn prepare_timed(&self, img: &RgbImage, largest_only: bool, times: &mut StageTimes) -> Result<Vec<PreparedFace>> {
        let meshed = self.detect_and_mesh_timed(img, times)?;
        let take = if largest_only { 1 } else { self.cfg.max_faces };
        let mut out = Vec::new();
        let mut mark = Instant::now();
        for (det, mesh) in meshed.into_iter().take(take) {
            let landmarks = five_points(&mesh);
            let crop = self.aligner.align(img, &landmarks);
            lap(&mut mark, &mut times.align);
            let Some(crop) = crop else { continue };
            let quality = quality(img, &det.bbox, &mesh, &landmarks, &crop, self.aligner.margin());
            let face = Face {
                bbox: det.bbox,
                score: det.score,
                face_flag: mesh.face_flag,
                landmarks,
                pose: pose::estimate(&mesh),
                quality,
                embedding: None,
                mesh: mesh.points,
            };
            lap(&mut mark, &mut times.quality);
            out.push(PreparedFace { face, crop });
        }
        Ok(out)
    }

    /// Detection and landmark passes, gated, largest face first.
    ///
    /// Photos whose EXIF orientation was stripped can be sideways or upside down. When the
    /// upright image yields no gated face with a detector score of at least
    /// `detector.confident_score`, and `detector.rotations` is set, the image is also tried
    /// turned by a quarter, three quarters and half a turn; the turn whose best gated face
    /// scores highest wins.
    pub fn detect_and_mesh(&self, img: &RgbImage) -> Result<Vec<(Detection, Mesh)>> {
        self.detect_and_mesh_timed(img, &mut StageTimes::default())
    }

    fn detect_and_mesh_timed(&self, img: &RgbImage, times: &mut StageTimes) -> Result<Vec<(Detection, Mesh)>> {
        let top = |faces: &[(Detection, Mesh)]| faces.iter().map(|(d, _)| d.score).fold(0.0f32, f32::max);
        let turns: &[u8] = if self.cfg.detector.rotations { &[0, 1, 3, 2] } else { &[0] };
        let mut best: Vec<(Detection, Mesh)> = Vec::new();
        for &quarter_turns in turns {
            let mut mark = Instant::now();
            let dets = self.detector.detect(img, quarter_turns)?;
            lap(&mut mark, &mut times.detect);
            let found = self.mesh_and_gate(img, dets)?;
            lap(&mut mark, &mut times.mesh);
            if top(&found) > top(&best) {
                best = found;
            }
            if top(&best) >= self.cfg.detector.confident_score {
                break;
            }
        }
        Ok(best)
    }

    fn mesh_and_gate(&self, img: &RgbImage, mut dets: Vec<Detection>) -> Result<Vec<(Detection, Mesh)>> {
        dets.sort_by(|a, b| b.bbox.area().total_cmp(&a.bbox.area()));
        dets.truncate(self.cfg.max_faces * 2);
        if dets.is_empty() {
            return Ok(Vec::new());
        }
        let scale = self.landmarker.config().crop_scale;
        let first: Vec<MeshCrop> = dets
            .iter()
            .map(|d| {
                // Level the crop by the eyes-to-mouth axis (it points down the face at any
                // rotation, where the eye order alone is ambiguous upside down).
                let (l, r, mouth) = (d.keypoints[0], d.keypoints[1], d.keypoints[3]);
                let mid = Point::new((l.x + r.x) / 2.0, (l.y + r.y) / 2.0);
                let angle = (mouth.y - mid.y).atan2(mouth.x - mid.x) - std::f32::consts::FRAC_PI_2;
                MeshCrop { center: d.bbox.center(), side: scale * d.bbox.width().max(d.bbox.height()), angle }
            })
            .collect();
        let mut meshes = self.landmarker.run(img, &first)?;
        for _ in 1..self.landmarker.config().passes.max(1) {
            let next: Vec<MeshCrop> = meshes.iter().map(|m| crop_from_mesh(m, scale)).collect();
            meshes = self.landmarker.run(img, &next)?;
        }
        let flag_min = self.landmarker.config().flag_threshold;
        let mut kept: Vec<(Detection, Mesh)> = dets.into_iter().zip(meshes).filter(|(_, m)| m.face_flag >= flag_min).collect();
        // Two detections can converge on one face after refinement; keep the first.
        let mut unique: Vec<(Detection, Mesh)> = Vec::with_capacity(kept.len());
        for (d, m) in kept.drain(..) {
            let b = BBox::around(m.points.iter().map(|p| Point::new(p[0], p[1])));
            if unique.iter().all(|(_, u)| BBox::around(u.points.iter().map(|p| Point::new(p[0], p[1]))).iou(&b) < 0.5) {
                unique.push((d, m));
            }
        }
        unique.truncate(self.cfg.max_faces);
        Ok(unique)
    }
}

/// The next pass's crop: eyes levelled from mesh points 33 → 263, around the mesh's box in
/// that levelled frame.
fn crop_from_mesh(m: &Mesh, scale: f32) -> MeshCrop {
    let (l, r) = (m.point(33), m.point(263));
    let angle = (r.y - l.y).atan2(r.x - l.x);
    let (sin, cos) = angle.sin_cos();
    // Rotate by -angle into the levelled frame, take the box there, map its centre back.
    let lev = BBox::around(m.points.iter().map(|p| Point::new(p[0] * cos + p[1] * sin, -p[0] * sin + p[1] * cos)));
    let c = lev.center();
    MeshCrop { center: Point::new(c.x * cos - c.y * sin, c.x * sin + c.y * cos), side: scale * lev.width().max(lev.height()), angle }
}

/// The five alignment points from the mesh (see [`Face::landmarks`]).
pub fn five_points(m: &Mesh) -> [Point; 5] {
    let ring_mean = |ring: &[usize]| {
        let (sx, sy) = ring.iter().fold((0.0, 0.0), |(x, y), &i| (x + m.points[i][0], y + m.points[i][1]));
        Point::new(sx / ring.len() as f32, sy / ring.len() as f32)
    };
    [
        ring_mean(&EYE_RING_IMAGE_LEFT),
        ring_mean(&EYE_RING_IMAGE_RIGHT),
        m.point(NOSE_TIP),
        m.point(MOUTH_IMAGE_LEFT),
        m.point(MOUTH_IMAGE_RIGHT),
    ]
}

fn quality(img: &RgbImage, bbox: &BBox, mesh: &Mesh, five: &[Point; 5], crop: &FloatImage, margin: f32) -> FaceQuality {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let outside = mesh.points.iter().filter(|p| p[0] < 0.0 || p[1] < 0.0 || p[0] >= w || p[1] >= h).count();
    // The face region of the aligned crop: the part the template spans, without the margin.
    let s = crop.width;
    let inner = ((s as f32) / margin).round() as usize;
    let off = (s - inner.min(s)) / 2;
    let luma = crop.luma();
    let region: Vec<f32> = (off..off + inner).flat_map(|y| luma[y * s + off..y * s + off + inner].iter().copied()).collect();
    let brightness = region.iter().sum::<f32>() / region.len().max(1) as f32 / 255.0;
    FaceQuality {
        face_size_px: bbox.width().min(bbox.height()),
        inter_eye_px: five[0].dist(five[1]),
        sharpness: laplacian_variance(&region, inner, inner),
        brightness,
        outside_fraction: outside as f32 / mesh.points.len() as f32,
    }
}
