//! The three networks behind the pipeline, each a thin synchronous wrapper over one ONNX
//! session: tensors in, decoded results out. Sessions are created once and shared; `run`
//! needs exclusive access, so each sits behind a mutex and callers on different threads
//! use different models concurrently.

use std::path::Path;
use std::sync::Mutex;

use image::RgbImage;
use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;
use sha2::{Digest, Sha256};

use crate::config::{ChannelOrder, DetectorConfig, EmbedderConfig, InputSpec, LandmarksConfig, Layout, ModelFile};
use crate::error::{Result, VisionError};
use crate::geometry::{Affine, BBox, Point, umeyama_2d};
use crate::imgops::{FloatImage, warp_affine};
use crate::runtime::open_session;

/// Number of FaceMesh points.
pub const MESH_POINTS: usize = 468;

/// The ArcFace 5-point template for a 112x112 crop (eyes, nose tip, mouth corners; image
/// left before image right).
pub const ARCFACE_TEMPLATE: [[f32; 2]; 5] =
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]];

pub(crate) struct Model {
    role: &'static str,
    session: Mutex<Session>,
    /// Largest batch the model accepts (1 when its batch dimension is fixed).
    max_batch: usize,
}

impl Model {
    pub(crate) fn open(env: &Environment, role: &'static str, file: &ModelFile, path: &Path, threads: usize) -> Result<Model> {
        if let Some(expected) = &file.sha256 {
            let bytes =
                std::fs::read(path).map_err(|e| VisionError::Model { role, path: path.display().to_string(), message: e.to_string() })?;
            let actual = hex::encode(Sha256::digest(&bytes));
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(VisionError::Model {
                    role,
                    path: path.display().to_string(),
                    message: format!("sha256 is {actual}, configured {expected}"),
                });
            }
        }
        let session = open_session(env, role, path, threads)?;
        let batch_dim = session.inputs().first().and_then(|i| i.dtype().tensor_shape().and_then(|s| s.first().copied())).unwrap_or(1);
        let max_batch = if batch_dim < 0 { 64 } else { batch_dim.max(1) as usize };
        Ok(Model { role, session: Mutex::new(session), max_batch })
    }

    /// Runs the model on `images` (all `spec.size` square) and returns the requested outputs
    /// flattened per batch item: `out[k][i]` is output `k` of image `i`.
    pub(crate) fn run(&self, spec: &InputSpec, images: &[FloatImage], outputs: &[&str]) -> Result<Vec<Vec<Vec<f32>>>> {
        let mut result: Vec<Vec<Vec<f32>>> = vec![Vec::with_capacity(images.len()); outputs.len()];
        for chunk in images.chunks(self.max_batch) {
            let tensor = to_tensor(spec, chunk).map_err(|e| VisionError::inference(self.role, e))?;
            let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
            let out = session.run(ort::inputs![tensor]).map_err(|e| VisionError::inference(self.role, e))?;
            for (k, name) in outputs.iter().enumerate() {
                let value = out.get(*name).ok_or_else(|| VisionError::inference(self.role, format!("model has no output `{name}`")))?;
                let (_, data) = value.try_extract_tensor::<f32>().map_err(|e| VisionError::inference(self.role, e))?;
                let per = data.len() / chunk.len();
                result[k].extend(data.chunks_exact(per).map(<[f32]>::to_vec));
            }
        }
        Ok(result)
    }
}

fn to_tensor(spec: &InputSpec, images: &[FloatImage]) -> ort::Result<Tensor<f32>> {
    let s = spec.size;
    let plane = s * s;
    let mut data = vec![0.0f32; images.len() * plane * 3];
    let order: [usize; 3] = match spec.channel_order {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    for (n, img) in images.iter().enumerate() {
        debug_assert_eq!((img.width, img.height), (s, s));
        let base = n * plane * 3;
        for (i, px) in img.data.chunks_exact(3).enumerate() {
            for (c, &src_c) in order.iter().enumerate() {
                let v = (px[src_c] - spec.mean[c]) / spec.std[c];
                let idx = match spec.layout {
                    Layout::Nhwc => base + i * 3 + c,
                    Layout::Nchw => base + c * plane + i,
                };
                data[idx] = v;
            }
        }
    }
    let shape: [usize; 4] = match spec.layout {
        Layout::Nhwc => [images.len(), s, s, 3],
        Layout::Nchw => [images.len(), 3, s, s],
    };
    Tensor::from_array((shape, data))
}

/// A detector hit in image pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub bbox: BBox,
    /// Detector confidence in [0, 1].
    pub score: f32,
    /// BlazeFace keypoints: eye (image left), eye (image right), nose tip, mouth, ear
    /// tragion (image left), ear tragion (image right).
    pub keypoints: Vec<Point>,
}

/// BlazeFace-style detector on the whole image, letterboxed.
pub struct Detector {
    cfg: DetectorConfig,
    model: Model,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector").field("model", &self.cfg.model.id).finish()
    }
}

impl Detector {
    pub fn open(env: &Environment, cfg: &DetectorConfig, path: &Path, threads: usize) -> Result<Self> {
        Ok(Self { cfg: cfg.clone(), model: Model::open(env, "detector", &cfg.model, path, threads)? })
    }

    /// All faces above the score threshold in the image turned clockwise by
    /// `quarter_turns` x 90 degrees, merged by weighted NMS, best first; results are in the
    /// original image's pixels. (BlazeFace finds upright and sideways faces; upside-down
    /// ones need the half turn.)
    pub fn detect(&self, img: &RgbImage, quarter_turns: u8) -> Result<Vec<Detection>> {
        let s = self.cfg.input.size as f64;
        let (w, h) = (f64::from(img.width()), f64::from(img.height()));
        let (tw, th) = if quarter_turns % 2 == 1 { (h, w) } else { (w, h) };
        let r = s / tw.max(th);
        let (pad_x, pad_y) = ((s - tw * r) / 2.0, (s - th * r) / 2.0);
        // input -> turned image (letterbox), then turned -> original (about the centres).
        let to_turned = Affine([1.0 / r, 0.0, -pad_x / r, 0.0, 1.0 / r, -pad_y / r]);
        let angle = -f64::from(quarter_turns) * std::f64::consts::FRAC_PI_2;
        let (sin, cos) = (angle.sin().round(), angle.cos().round());
        let turn_back =
            Affine([cos, -sin, w / 2.0 - (cos * tw / 2.0 - sin * th / 2.0), sin, cos, h / 2.0 - (sin * tw / 2.0 + cos * th / 2.0)]);
        let to_src = turn_back.compose(&to_turned);
        let input = warp_affine(img, &to_src, self.cfg.input.size, self.cfg.input.size);
        let names: Vec<&str> = self.cfg.score_outputs.iter().chain(&self.cfg.regressor_outputs).map(String::as_str).collect();
        let out = self.model.run(&self.cfg.input, std::slice::from_ref(&input), &names)?;
        let n_strides = self.cfg.strides.len();
        let regs = 4 + 2 * self.cfg.keypoints;
        let mut candidates = Vec::new();
        for (k, (&stride, &apc)) in self.cfg.strides.iter().zip(&self.cfg.anchors_per_cell).enumerate() {
            let scores = &out[k][0];
            let reg = &out[n_strides + k][0];
            let grid = self.cfg.input.size / stride;
            if scores.len() != grid * grid * apc || reg.len() != scores.len() * regs {
                return Err(VisionError::inference(
                    "detector",
                    format!(
                        "stride {stride}: {} scores and {} regressors, expected {} anchors",
                        scores.len(),
                        reg.len(),
                        grid * grid * apc
                    ),
                ));
            }
            for (a, &logit) in scores.iter().enumerate() {
                let score = sigmoid(logit.clamp(-100.0, 100.0));
                if score < self.cfg.score_threshold {
                    continue;
                }
                let cell = a / apc;
                let ax = ((cell % grid) as f32 + 0.5) * stride as f32;
                let ay = ((cell / grid) as f32 + 0.5) * stride as f32;
                let v = &reg[a * regs..(a + 1) * regs];
                let (cx, cy) = (ax + v[0], ay + v[1]);
                let back = |x: f32, y: f32| to_src.apply(Point::new(x, y));
                // Quarter turns map boxes to boxes: the corners' hull is exact.
                let bbox = BBox::around([back(cx - v[2] / 2.0, cy - v[3] / 2.0), back(cx + v[2] / 2.0, cy + v[3] / 2.0)]);
                let keypoints = (0..self.cfg.keypoints).map(|i| back(ax + v[4 + 2 * i], ay + v[5 + 2 * i])).collect();
                candidates.push(Detection { bbox, score, keypoints });
            }
        }
        Ok(weighted_nms(candidates, self.cfg.iou_threshold))
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Weighted non-maximum suppression: each cluster of boxes overlapping the best remaining
/// one by more than `iou` is replaced by their score-weighted mean, keeping the best score.
pub fn weighted_nms(mut dets: Vec<Detection>, iou: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    while let Some(top) = dets.first().cloned() {
        let (cluster, rest): (Vec<Detection>, Vec<Detection>) = dets.into_iter().partition(|d| d.bbox.iou(&top.bbox) > iou);
        dets = rest;
        let total: f32 = cluster.iter().map(|d| d.score).sum();
        let mut merged = Detection { bbox: BBox::default(), score: top.score, keypoints: vec![Point::default(); top.keypoints.len()] };
        for d in &cluster {
            let w = d.score / total;
            merged.bbox.x1 += d.bbox.x1 * w;
            merged.bbox.y1 += d.bbox.y1 * w;
            merged.bbox.x2 += d.bbox.x2 * w;
            merged.bbox.y2 += d.bbox.y2 * w;
            for (m, p) in merged.keypoints.iter_mut().zip(&d.keypoints) {
                m.x += p.x * w;
                m.y += p.y * w;
            }
        }
        out.push(merged);
    }
    out
}

/// FaceMesh output mapped back to the image.
#[derive(Debug, Clone, PartialEq)]
pub struct Mesh {
    /// 468 points `[x, y, z]`: x and y in image pixels, z relative depth in the same units.
    pub points: Vec<[f32; 3]>,
    /// The landmarker's face probability in [0, 1].
    pub face_flag: f32,
}

impl Mesh {
    pub fn point(&self, i: usize) -> Point {
        Point::new(self.points[i][0], self.points[i][1])
    }
}

/// Where a FaceMesh crop comes from: a rotated square.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeshCrop {
    pub center: Point,
    /// Side of the square in image pixels.
    pub side: f32,
    /// Rotation of the crop's x axis in the image, radians (clockwise on screen).
    pub angle: f32,
}

/// FaceMesh-style landmarker.
pub struct Landmarker {
    cfg: LandmarksConfig,
    model: Model,
}

impl std::fmt::Debug for Landmarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Landmarker").field("model", &self.cfg.model.id).finish()
    }
}

impl Landmarker {
    pub fn open(env: &Environment, cfg: &LandmarksConfig, path: &Path, threads: usize) -> Result<Self> {
        Ok(Self { cfg: cfg.clone(), model: Model::open(env, "landmarks", &cfg.model, path, threads)? })
    }

    pub fn config(&self) -> &LandmarksConfig {
        &self.cfg
    }

    /// Runs the landmarker on each crop of `img`.
    pub fn run(&self, img: &RgbImage, crops: &[MeshCrop]) -> Result<Vec<Mesh>> {
        let s = self.cfg.input.size;
        let maps: Vec<Affine> = crops
            .iter()
            .map(|c| {
                let k = f64::from(c.side) / s as f64;
                let half = s as f64 / 2.0;
                let (sin, cos) = f64::from(c.angle).sin_cos();
                // src = center + k * R(angle) * (dst - half)
                let tx = f64::from(c.center.x) - k * (cos * half - sin * half);
                let ty = f64::from(c.center.y) - k * (sin * half + cos * half);
                Affine::similarity(k, f64::from(c.angle), tx, ty)
            })
            .collect();
        let inputs: Vec<FloatImage> = maps.iter().map(|m| warp_affine(img, m, s, s)).collect();
        let out = self.model.run(&self.cfg.input, &inputs, &[&self.cfg.mesh_output, &self.cfg.flag_output])?;
        let mut meshes = Vec::with_capacity(crops.len());
        for ((raw, flag), m) in out[0].iter().zip(&out[1]).zip(&maps) {
            if raw.len() != MESH_POINTS * 3 {
                return Err(VisionError::inference(
                    "landmarks",
                    format!("mesh output has {} values, expected {}", raw.len(), MESH_POINTS * 3),
                ));
            }
            let k = m.scale() as f32;
            let points = raw
                .chunks_exact(3)
                .map(|p| {
                    let q = m.apply(Point::new(p[0], p[1]));
                    [q.x, q.y, p[2] * k]
                })
                .collect();
            meshes.push(Mesh { points, face_flag: flag.first().copied().unwrap_or(0.0).clamp(0.0, 1.0) });
        }
        Ok(meshes)
    }
}

/// Face embedder on crops aligned to the ArcFace template.
pub struct Embedder {
    cfg: EmbedderConfig,
    model: Model,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").field("model", &self.cfg.model.id).finish()
    }
}

impl Embedder {
    pub fn open(env: &Environment, cfg: &EmbedderConfig, path: &Path, threads: usize) -> Result<Self> {
        Ok(Self { cfg: cfg.clone(), model: Model::open(env, "embedder", &cfg.model, path, threads)? })
    }

    pub fn config(&self) -> &EmbedderConfig {
        &self.cfg
    }

    /// Largest batch of crops one call runs at once (the model's batch dimension, halved
    /// when mirrors are added).
    pub fn max_batch(&self) -> usize {
        if self.cfg.add_mirror { (self.model.max_batch / 2).max(1) } else { self.model.max_batch }
    }

    /// L2-normalised embeddings of aligned crops (mirrors added when configured).
    pub fn embed(&self, crops: &[FloatImage]) -> Result<Vec<Vec<f32>>> {
        let batch: Vec<FloatImage> =
            if self.cfg.add_mirror { crops.iter().flat_map(|c| [c.clone(), c.mirrored()]).collect() } else { crops.to_vec() };
        let out = self.model.run(&self.cfg.input, &batch, &[&self.cfg.output])?;
        let per = if self.cfg.add_mirror { 2 } else { 1 };
        Ok(out[0]
            .chunks(per)
            .map(|group| {
                let mut v = group[0].clone();
                for other in &group[1..] {
                    v.iter_mut().zip(other).for_each(|(a, b)| *a += b);
                }
                l2_normalize(&mut v);
                v
            })
            .collect())
    }
}

/// Aligns faces for the embedder: the crop whose five points sit on the ArcFace template,
/// scaled to the embedder's input size, with its margin.
#[derive(Debug, Clone)]
pub struct Aligner {
    cfg: EmbedderConfig,
}

impl Aligner {
    pub fn new(cfg: &EmbedderConfig) -> Self {
        Self { cfg: cfg.clone() }
    }

    /// The template fills `1 / margin` of the crop.
    pub fn margin(&self) -> f32 {
        self.cfg.margin
    }

    /// The template points in crop pixels, margin applied.
    pub fn template(&self) -> [Point; 5] {
        let s = self.cfg.input.size as f32;
        let half = s / 2.0;
        ARCFACE_TEMPLATE.map(|[x, y]| {
            let (x, y) = (x * s / 112.0, y * s / 112.0);
            Point::new(half + (x - half) / self.cfg.margin, half + (y - half) / self.cfg.margin)
        })
    }

    /// The aligned crop for five image points (see [`ARCFACE_TEMPLATE`] for their order),
    /// or `None` when the points are degenerate.
    pub fn align(&self, img: &RgbImage, five: &[Point; 5]) -> Option<FloatImage> {
        let to_crop = umeyama_2d(five, &self.template())?;
        let to_src = to_crop.inverse()?;
        Some(warp_affine(img, &to_src, self.cfg.input.size, self.cfg.input.size))
    }
}

pub fn l2_normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Cosine similarity in [-1, 1]; 0 when either vector is zero or the lengths differ.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 { 0.0 } else { (dot / (na.sqrt() * nb.sqrt())).clamp(-1.0, 1.0) }
}
