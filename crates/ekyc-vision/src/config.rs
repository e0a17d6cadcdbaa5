//! Settings of the vision core, including the model registry: which ONNX file serves which
//! role and how its input is prepared, so an operator can swap in another BlazeFace-style
//! detector, FaceMesh-style landmarker or embedder by configuration alone.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::decode::DecodeLimits;

/// Everything the face pipeline is configured by. Defaults are the shipped models.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct VisionConfig {
    /// Folder that relative model paths resolve against. Default: `$EKYC_MODELS_DIR`, else
    /// a `models/` folder beside or above the executable, else the source tree's `models/`.
    pub models_dir: Option<PathBuf>,
    /// Path of `libonnxruntime.so`. Default: `$ORT_DYLIB_PATH`, else the copy that
    /// `scripts/setup.sh` installs under `.ort/`.
    pub ort_library: Option<PathBuf>,
    /// ONNX Runtime threads per session; 0 means one per available core.
    pub intra_threads: usize,
    /// Limits on encoded images.
    pub limits: DecodeLimits,
    /// Bytes of decoded pixels all decoding threads of the process may hold at once (one
    /// budget per process, shared by every service in it). 256 MiB holds two 40 MP RGB
    /// images; with the models (about 420 MB for facematch) it keeps a service well inside
    /// a 1 Gi pod limit whatever its worker count.
    pub decode_budget_bytes: u64,
    /// How long a decode waits for room in the budget before it fails RESOURCE_EXHAUSTED
    /// (reason OVERLOADED), in milliseconds.
    pub decode_wait_ms: u64,
    pub detector: DetectorConfig,
    pub landmarks: LandmarksConfig,
    pub embedder: EmbedderConfig,
    /// Passive presentation-attack detection models (loaded by the liveness service only).
    pub anti_spoofing: crate::antispoof::AntiSpoofingConfig,
    /// Cosine similarity at or above which two faces are taken as the same person. It
    /// belongs to the embedder: the default 0.43 is for SFace, where public pairs put FMR
    /// 0.1 % among East-Asian non-mated comparisons (see the README's face-matching
    /// section); FaceRes needs about 0.62. Calibrate per deployment with `ekyc eval pairs`.
    pub match_threshold: f32,
    /// Most faces analysed per image (largest first); bounds the work one image can cause.
    pub max_faces: usize,
}

impl Default for VisionConfig {
    fn default() -> Self {
        Self {
            models_dir: None,
            ort_library: None,
            intra_threads: 0,
            limits: DecodeLimits::default(),
            decode_budget_bytes: 256 << 20,
            decode_wait_ms: 1_000,
            detector: DetectorConfig::default(),
            landmarks: LandmarksConfig::default(),
            embedder: EmbedderConfig::default(),
            anti_spoofing: crate::antispoof::AntiSpoofingConfig::default(),
            match_threshold: 0.43,
            max_faces: 16,
        }
    }
}

/// Channel order a model expects.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

/// Tensor layout a model expects.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Nhwc,
    Nchw,
}

/// How 0..255 pixels become model input: `(pixel - mean[c]) / std[c]`, with `c` in the
/// model's channel order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Square input side, in pixels.
    pub size: usize,
    pub channel_order: ChannelOrder,
    pub layout: Layout,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// One ONNX file and how to check it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// Path, absolute or relative to `models_dir`.
    pub path: PathBuf,
    /// Expected SHA-256 (hex); when set, a file that differs is refused at load time.
    pub sha256: Option<String>,
    /// Identifier reported with results (for example in evidence records).
    pub id: String,
}

/// A BlazeFace-style single-shot detector with SSD anchors.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    pub model: ModelFile,
    pub input: InputSpec,
    /// Output names of the score logits, one per stride, in anchor order.
    pub score_outputs: Vec<String>,
    /// Output names of the box and keypoint regressors, one per stride.
    pub regressor_outputs: Vec<String>,
    /// Anchor strides in input pixels, with the anchors per cell of each.
    pub strides: Vec<usize>,
    pub anchors_per_cell: Vec<usize>,
    /// Keypoints regressed per anchor (BlazeFace: 6).
    pub keypoints: usize,
    /// Minimum detector score kept (the first gate).
    pub score_threshold: f32,
    /// IoU above which detections are merged by weighted NMS.
    pub iou_threshold: f32,
    /// When the upright image has no confident face, try it turned by 90, 270 and 180
    /// degrees (sideways or upside-down photos whose EXIF orientation was stripped).
    pub rotations: bool,
    /// Detector score that ends the search over turns.
    pub confident_score: f32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            model: ModelFile {
                path: "blazeface.onnx".into(),
                sha256: Some("31b8a4b01f2ca477bfeb39b427bb79c100ab88fb5a8010fec53f9691e89cdc52".into()),
                id: "blazeface-human-3.3.6".into(),
            },
            input: InputSpec { size: 256, channel_order: ChannelOrder::Rgb, layout: Layout::Nhwc, mean: [127.5; 3], std: [127.5; 3] },
            score_outputs: vec!["Identity:0".into(), "Identity_1:0".into()],
            regressor_outputs: vec!["Identity_2:0".into(), "Identity_3:0".into()],
            strides: vec![16, 32],
            anchors_per_cell: vec![2, 6],
            keypoints: 6,
            score_threshold: 0.65,
            iou_threshold: 0.3,
            rotations: true,
            confident_score: 0.8,
        }
    }
}

/// A FaceMesh-style landmarker: 468 3-D points from a rotated square crop.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LandmarksConfig {
    pub model: ModelFile,
    pub input: InputSpec,
    pub mesh_output: String,
    pub flag_output: String,
    /// Crop side as a multiple of the face box's larger side.
    pub crop_scale: f32,
    /// Minimum face probability from the landmarker (the second gate).
    pub flag_threshold: f32,
    /// Landmark passes: the first crops from the detector, each later one from the
    /// previous mesh.
    pub passes: usize,
    /// Landmark passes where only the five alignment points matter (face matching, see
    /// [`VisionConfig::for_matching`]): the last pass refines the mesh's depth and with it
    /// the head pose, and moves the five points by a fraction of a pixel.
    #[serde(default = "LandmarksConfig::default_match_passes")]
    pub match_passes: usize,
}

impl LandmarksConfig {
    fn default_match_passes() -> usize {
        2
    }
}

impl Default for LandmarksConfig {
    fn default() -> Self {
        Self {
            model: ModelFile {
                path: "facemesh.onnx".into(),
                sha256: Some("8db5552bb0b6570d80be09b431ba3ddf5369c5ee2caa692b082b8fd77fb07825".into()),
                id: "facemesh-human-3.3.6".into(),
            },
            input: InputSpec { size: 192, channel_order: ChannelOrder::Rgb, layout: Layout::Nhwc, mean: [0.0; 3], std: [255.0; 3] },
            mesh_output: "output_mesh".into(),
            flag_output: "output_faceflag".into(),
            crop_scale: 1.5,
            flag_threshold: 0.9,
            passes: 3,
            match_passes: Self::default_match_passes(),
        }
    }
}

/// An embedder fed a crop aligned on the ArcFace 5-point template.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmbedderConfig {
    pub model: ModelFile,
    pub input: InputSpec,
    pub output: String,
    /// The template fills `1 / margin` of the crop (1.25: a 25 % margin).
    pub margin: f32,
    /// Embed the mirrored crop too and add the two embeddings.
    pub add_mirror: bool,
}

/// SHA-256 of `models/sface_int8.onnx` as `models/convert.py sface-int8` writes it.
const SFACE_INT8_SHA256: &str = "6df1381f085137e0b473071eef72949beb4e0df64a0815b70abaff032226e930";

impl Default for EmbedderConfig {
    /// SFace: the stronger of the two shipped embedders on public pairs (see
    /// `models/README.md`), and the one the default `match_threshold` is chosen for.
    fn default() -> Self {
        Self::sface()
    }
}

impl EmbedderConfig {
    /// SFace (OpenCV Zoo, 2021dec), 128-d, converted to float32 by `models/convert.py`.
    /// Prepared as OpenCV's `FaceRecognizerSF` prepares it: the ArcFace template at 112 px
    /// with no margin, RGB 0..255 as float, NCHW (the graph normalises itself).
    pub fn sface() -> Self {
        Self {
            model: ModelFile {
                path: "sface.onnx".into(),
                sha256: Some("8e8cec47264ae4c1f3a2e3961727b68d6207d0876c1f924d8537ed404990bb5a".into()),
                id: "sface-opencv-2021dec-f32".into(),
            },
            input: InputSpec { size: 112, channel_order: ChannelOrder::Rgb, layout: Layout::Nchw, mean: [0.0; 3], std: [1.0; 3] },
            output: "fc1".into(),
            margin: 1.0,
            add_mirror: false,
        }
    }

    /// The embedders this build knows, by model id: what [`EmbedderConfig::by_id`] selects.
    pub fn known() -> Vec<EmbedderConfig> {
        vec![Self::sface(), Self::sface_int8(), Self::faceres()]
    }

    /// The registry entry whose model id is `id`, if any.
    pub fn by_id(id: &str) -> Option<EmbedderConfig> {
        Self::known().into_iter().find(|e| e.model.id == id)
    }

    /// SFace quantised to int8 by `models/convert.py sface-int8` (static QDQ, per-channel
    /// weights, calibrated on aligned crops of the development photos). A different model
    /// from [`EmbedderConfig::sface`]: its own id, so templates embedded by one are refused
    /// by the other (EMBEDDING_MODEL_MISMATCH). Prepared like SFace.
    pub fn sface_int8() -> Self {
        let mut e = Self::sface();
        e.model = ModelFile {
            path: "sface_int8.onnx".into(),
            sha256: Some(SFACE_INT8_SHA256.into()),
            id: "sface-opencv-2021dec-int8-qdq".into(),
        };
        e
    }

    /// HSE FaceRes from `@vladmandic/human` 3.3.6, 1024-d: kept for comparison. Its
    /// similarities are on another scale than SFace's, so selecting it needs its own
    /// `match_threshold` (0.62 separated the development photos).
    pub fn faceres() -> Self {
        Self {
            model: ModelFile {
                path: "faceres.onnx".into(),
                sha256: Some("b46e3c7a4f70b206dfbdb2ceabe7a8b8a69e3389bbdef205b95421bbcce9bbfb".into()),
                id: "faceres-human-3.3.6".into(),
            },
            input: InputSpec {
                size: 224,
                channel_order: ChannelOrder::Bgr,
                layout: Layout::Nhwc,
                mean: [103.939, 116.779, 123.68],
                std: [1.0; 3],
            },
            output: "global_pooling/Mean".into(),
            margin: 1.25,
            add_mirror: true,
        }
    }
}

impl VisionConfig {
    /// Checks the settings for inconsistencies before any model is loaded.
    pub fn validate(&self) -> Result<(), String> {
        let d = &self.detector;
        if d.strides.len() != d.anchors_per_cell.len()
            || d.strides.len() != d.score_outputs.len()
            || d.strides.len() != d.regressor_outputs.len()
        {
            return Err("detector: strides, anchors_per_cell, score_outputs and regressor_outputs must have the same length".into());
        }
        if d.strides.iter().any(|s| *s == 0 || !d.input.size.is_multiple_of(*s)) {
            return Err(format!("detector: every stride must divide the input size {}", d.input.size));
        }
        for (name, spec) in [("detector", &d.input), ("landmarks", &self.landmarks.input), ("embedder", &self.embedder.input)] {
            if spec.size < 16 || spec.size > 1024 {
                return Err(format!("{name}: input size {} is outside 16..=1024", spec.size));
            }
            if spec.std.contains(&0.0) {
                return Err(format!("{name}: std must not be zero"));
            }
        }
        if !(0.0..=1.0).contains(&d.score_threshold) || !(0.0..=1.0).contains(&self.landmarks.flag_threshold) {
            return Err("thresholds must lie in [0, 1]".into());
        }
        if self.decode_budget_bytes < 1 << 20 {
            return Err("decode_budget_bytes must be at least 1 MiB".into());
        }
        if self.embedder.margin < 1.0 {
            return Err("embedder.margin must be at least 1".into());
        }
        self.anti_spoofing.validate()?;
        if self.landmarks.passes == 0 || self.landmarks.match_passes == 0 {
            return Err("landmarks.passes and landmarks.match_passes must be at least 1".into());
        }
        if self.max_faces == 0 {
            return Err("max_faces must be at least 1".into());
        }
        Ok(())
    }

    /// These settings for a pipeline that matches faces and needs no fine head pose:
    /// `landmarks.match_passes` landmark passes instead of `landmarks.passes`. Its faces'
    /// pose is that of the coarser mesh.
    pub fn for_matching(&self) -> VisionConfig {
        let mut cfg = self.clone();
        cfg.landmarks.passes = cfg.landmarks.match_passes;
        cfg
    }

    /// The folder relative model paths resolve against (see [`VisionConfig::models_dir`]).
    pub fn resolved_models_dir(&self) -> PathBuf {
        if let Some(d) = &self.models_dir {
            return d.clone();
        }
        if let Some(d) = std::env::var_os("EKYC_MODELS_DIR") {
            return PathBuf::from(d);
        }
        if let Some(d) = find_upwards_from_exe(Path::new("models/SHA256SUMS")) {
            return d.parent().map(Path::to_path_buf).unwrap_or(d);
        }
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
    }

    pub fn model_path(&self, file: &ModelFile) -> PathBuf {
        if file.path.is_absolute() { file.path.clone() } else { self.resolved_models_dir().join(&file.path) }
    }

    /// Threads per ONNX session after resolving 0 to the core count.
    pub fn threads(&self) -> usize {
        if self.intra_threads > 0 { self.intra_threads } else { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) }
    }
}

/// Looks for `rel` beside the running executable and in each folder above it.
pub(crate) fn find_upwards_from_exe(rel: &Path) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors().skip(1).map(|d| d.join(rel)).find(|p| p.exists())
}
