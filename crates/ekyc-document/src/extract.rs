//! The extraction itself, a plain synchronous function of one decoded photo and one face
//! pipeline (the engine runs it on a worker thread):
//!
//! 1. Faces in the whole photo (any quarter turn): evidence for the outline search, the
//!    holder's face, and the selfie check.
//! 2. Document outlines ([`crate::quad`]); the best is oriented by the upright portrait it
//!    holds (the document's up is its portrait's up), extended by the document's known
//!    aspect where it runs off the photo, and rectified to a flat, upright view.
//! 3. Faces on the rectified document: the largest is the main portrait, smaller ones its
//!    ghost; faces of the photo outside the document are the holder's or others.
//! 4. The portrait crop, its geometry in both images, its quality, and the reasons.
//!
//! When no outline is found but the photo is itself document-shaped around an upright,
//! off-centre portrait (a document filling the frame), the whole photo is taken as the
//! document, with a low document score that says so.

use ekyc_vision::geometry::{BBox, Homography, Point};
use ekyc_vision::imgops::{FloatImage, warp_perspective};
use ekyc_vision::models::{Aligner, Mesh};
use ekyc_vision::{Face, FacePipeline, PreparedFace, VisionError, pose};
use image::RgbImage;

use crate::config::DocumentConfig;
use crate::quad::{self, FaceHint, ID1_ASPECT, PASSPORT_ASPECT, Quad};

/// Kind of identity document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// ID-1 card (85.60 x 53.98 mm).
    IdCard,
    /// Passport data page (125 x 88 mm).
    Passport,
}

impl DocumentKind {
    /// Width over height of the upright document.
    pub fn aspect(self) -> f32 {
        match self {
            DocumentKind::IdCard => ID1_ASPECT,
            DocumentKind::Passport => PASSPORT_ASPECT,
        }
    }
}

/// What the caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ExtractOptions {
    /// Also return the rectified document as PNG.
    pub return_rectified: bool,
    /// The expected kind; a wrong hint does not fail, the detected kind is reported.
    pub kind_hint: Option<DocumentKind>,
}

/// Reason codes of a document result (the `ekyc.v1.ReasonCode` of the same name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    NoDocument,
    NoPortrait,
    PortraitTooSmall,
    Glare,
    Blur,
    DocumentCutOff,
    LooksLikeSelfie,
    GhostPortraitFound,
    OtherFacesPresent,
    GhostPortraitMismatch,
}

/// Why no document or portrait was found, or why quality is reduced.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub code: Code,
    pub message: String,
    pub measured: Option<f64>,
    pub limit: Option<f64>,
    /// This reason alone makes the portrait unusable.
    pub blocking: bool,
    /// Index in [`Extraction::other_faces`].
    pub face_index: Option<usize>,
}

impl Reason {
    fn new(code: Code, message: impl Into<String>, blocking: bool) -> Self {
        Reason { code, message: message.into(), measured: None, limit: None, blocking, face_index: None }
    }
    fn with(mut self, measured: f32, limit: f32) -> Self {
        self.measured = Some(f64::from(measured));
        self.limit = Some(f64::from(limit));
        self
    }
}

/// The document found in the photo.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Confidence in [0, 1]; low (0.2) when the whole photo was taken as the document.
    pub score: f32,
    pub kind: Option<DocumentKind>,
    /// TL, TR, BR, BL of the upright document, in photo pixels (may lie outside the photo
    /// when the document is cut off).
    pub corners: [Point; 4],
    /// Clockwise quarter turns (0, 90, 180, 270) that bring the document upright after
    /// removing perspective.
    pub rotation_deg: u32,
    /// Size of the rectified, upright document in pixels.
    pub rectified_size: (u32, u32),
    /// The whole photo was taken as the document (no outline was found).
    pub whole_photo: bool,
    /// Rectified-document pixels to photo pixels.
    pub to_photo: Homography,
}

/// The main portrait.
#[derive(Debug, Clone, PartialEq)]
pub struct Portrait {
    /// The upright crop, PNG.
    pub png: Vec<u8>,
    pub crop_size: (u32, u32),
    /// The crop's TL, TR, BR, BL in photo pixels.
    pub corners: [Point; 4],
    /// The crop's rectangle in rectified-document pixels.
    pub box_rectified: BBox,
    /// The face in crop pixels, with its embedding.
    pub face: Face,
    /// The face box's corners (TL, TR, BR, BL of the upright face) in photo pixels.
    pub face_quad: [Point; 4],
    /// A rotation-free face box in the photo: centred on `face_quad`, with its mean side
    /// lengths (what an upright detector would draw there).
    pub face_box: BBox,
}

/// What another face is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherKind {
    Ghost,
    Holder,
    Other,
}

/// A face besides the main portrait, in photo pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct OtherFace {
    pub kind: OtherKind,
    pub face: Face,
    pub similarity: Option<f32>,
}

/// Capture quality.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Quality {
    /// The portrait's face size in photo pixels.
    pub portrait_size_px: f32,
    /// Variance of the Laplacian over the portrait's aligned face crop.
    pub sharpness: f32,
    /// Fraction of the face's pixels blown out to white.
    pub glare_fraction: f32,
    /// Fraction of the document's area outside the photo.
    pub cut_off_fraction: f32,
}

/// Everything found in one photo.
#[derive(Debug, Clone, PartialEq)]
pub struct Extraction {
    pub document: Option<Document>,
    pub portrait: Option<Portrait>,
    pub quality: Quality,
    pub other_faces: Vec<OtherFace>,
    pub reasons: Vec<Reason>,
    /// The rectified document as PNG, when asked for and found.
    pub rectified_png: Option<Vec<u8>>,
}

impl Extraction {
    /// Whether a reason with this code is present.
    pub fn has(&self, code: Code) -> bool {
        self.reasons.iter().any(|r| r.code == code)
    }
}

fn encode_png(img: &RgbImage) -> Result<Vec<u8>, VisionError> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).map_err(|e| VisionError::Config(format!("encoding PNG: {e}")))?;
    Ok(out.into_inner())
}

fn mid(a: Point, b: Point) -> Point {
    Point::new((a.x + b.x) / 2.0, (a.y + b.y) / 2.0)
}

/// Unit vector from the mouth towards the eyes.
fn face_up(f: &Face) -> Point {
    let l = f.landmarks;
    let (eyes, mouth) = (mid(l[0], l[1]), mid(l[3], l[4]));
    let (dx, dy) = (eyes.x - mouth.x, eyes.y - mouth.y);
    let n = (dx * dx + dy * dy).sqrt().max(1e-3);
    Point::new(dx / n, dy / n)
}

fn hint(f: &Face) -> FaceHint {
    FaceHint { centre: f.bbox.center(), size: f.bbox.width().min(f.bbox.height()), up: face_up(f) }
}

/// The quad's corners relabelled so that corner 0 is the top-left of the document whose
/// up is closest to `up` (a unit vector in photo pixels).
fn orient(c: &[Point; 4], up: Point) -> ([Point; 4], usize) {
    let best = (0..4)
        .max_by(|&a, &b| {
            let score = |s: usize| {
                let (tl, tr) = (c[s], c[(s + 1) % 4]);
                let (dx, dy) = (tr.x - tl.x, tr.y - tl.y);
                let n = (dx * dx + dy * dy).sqrt().max(1e-3);
                // The upward normal of a rightward top edge (y down).
                (dy / n) * up.x + (-dx / n) * up.y
            };
            score(a).total_cmp(&score(b))
        })
        .unwrap_or(0);
    (std::array::from_fn(|i| c[(best + i) % 4]), best)
}

/// Clockwise quarter turns that bring a document whose top edge runs `tl -> tr` upright.
fn rotation_deg(tl: Point, tr: Point) -> u32 {
    let a = (tr.y - tl.y).atan2(tr.x - tl.x).to_degrees();
    ((-a / 90.0).round() as i32).rem_euclid(4) as u32 * 90
}

/// Fraction of the quad (mapped from the unit square by `h`) outside `w` x `h`.
fn fraction_outside(unit_to_photo: &Homography, w: f32, h: f32) -> f32 {
    let n = 40;
    let mut out = 0;
    for j in 0..n {
        for i in 0..n {
            let p = unit_to_photo.apply(Point::new((i as f32 + 0.5) / n as f32, (j as f32 + 0.5) / n as f32));
            if p.x < 0.0 || p.y < 0.0 || p.x >= w || p.y >= h {
                out += 1;
            }
        }
    }
    out as f32 / (n * n) as f32
}

fn kind_of(aspect: f32) -> Option<DocumentKind> {
    let d_id = (aspect / ID1_ASPECT).ln().abs();
    let d_pp = (aspect / PASSPORT_ASPECT).ln().abs();
    if d_id.min(d_pp) > 0.2 {
        None
    } else if d_id <= d_pp {
        Some(DocumentKind::IdCard)
    } else {
        Some(DocumentKind::Passport)
    }
}

/// A document candidate made ready: upright corners (extended where it runs off the photo),
/// kind, and the rectified image with the faces on it.
struct Rectified {
    corners: [Point; 4],
    kind: Option<DocumentKind>,
    size: (u32, u32),
    to_photo: Homography,
    image: RgbImage,
    faces: Vec<PreparedFace>,
    cut_off: f32,
}

fn rectify(
    p: &FacePipeline,
    cfg: &DocumentConfig,
    photo: &RgbImage,
    quad: &Quad,
    up: Option<Point>,
    hint_kind: Option<DocumentKind>,
) -> Result<Rectified, VisionError> {
    let c = quad.corners;
    let lens: [f32; 4] = std::array::from_fn(|i| c[i].dist(c[(i + 1) % 4]));
    let up = up.unwrap_or_else(|| {
        // No portrait to say where up is: take the longer sides as top and bottom.
        let s = if lens[0] + lens[2] >= lens[1] + lens[3] { 0 } else { 1 };
        let (a, b) = (c[s], c[s + 1]);
        let n = a.dist(b).max(1e-3);
        Point::new((b.y - a.y) / n, -(b.x - a.x) / n)
    });
    let (q, start) = orient(&c, up);
    let border: [bool; 4] = std::array::from_fn(|i| quad.on_border[(start + i) % 4]);
    let (w_vis, h_vis) = ((q[0].dist(q[1]) + q[3].dist(q[2])) / 2.0, (q[0].dist(q[3]) + q[1].dist(q[2])) / 2.0);
    let measured = w_vis / h_vis.max(1.0);
    let any_border = border.iter().any(|b| *b);
    let kind = hint_kind.or_else(|| if any_border { None } else { kind_of(measured) });
    let aspect = kind.map_or(if any_border { ID1_ASPECT } else { measured }, DocumentKind::aspect);

    // Visible part in a frame of `aspect`-shaped units: x in [0, vis_w], y in [0, 1].
    let vis_w = if any_border { measured } else { aspect };
    let unit_vis =
        Homography::from_points(&[Point::new(0.0, 0.0), Point::new(vis_w, 0.0), Point::new(vis_w, 1.0), Point::new(0.0, 1.0)], &q)
            .ok_or_else(|| VisionError::Config("degenerate document outline".into()))?;
    // Extend sides lying on the photo's border until the document has its aspect.
    let (mut x0, mut x1, mut y0, mut y1) = (0.0f32, vis_w, 0.0f32, 1.0f32);
    if any_border {
        if vis_w < aspect * 0.97 {
            let missing = aspect - vis_w;
            match (border[3], border[1]) {
                (true, false) => x0 -= missing,
                (false, true) => x1 += missing,
                (true, true) => {
                    x0 -= missing / 2.0;
                    x1 += missing / 2.0;
                }
                (false, false) => {}
            }
        } else if vis_w > aspect * 1.03 {
            let missing = vis_w / aspect - 1.0;
            match (border[0], border[2]) {
                (true, false) => y0 -= missing,
                (false, true) => y1 += missing,
                (true, true) => {
                    y0 -= missing / 2.0;
                    y1 += missing / 2.0;
                }
                (false, false) => {}
            }
        }
    }
    let full = [Point::new(x0, y0), Point::new(x1, y0), Point::new(x1, y1), Point::new(x0, y1)].map(|pt| unit_vis.apply(pt));
    let full_aspect = (x1 - x0) / (y1 - y0);
    let unit_full = Homography::from_points(&quad::UNIT, &full).ok_or_else(|| VisionError::Config("degenerate document outline".into()))?;
    let cut_off = fraction_outside(&unit_full, photo.width() as f32, photo.height() as f32);

    // Resolution: about the photo's own along the document's height.
    let h_photo = (full[0].dist(full[3]) + full[1].dist(full[2])) / 2.0;
    let max_h = cfg.max_rectified_side as f32 / full_aspect.max(1.0);
    let rh = h_photo.clamp(cfg.min_rectified_height as f32, max_h.max(cfg.min_rectified_height as f32)).round();
    let rw = (rh * full_aspect).round().clamp(16.0, cfg.max_rectified_side as f32 * 2.0);
    let (rw, rh) = (rw as u32, rh as u32);
    let rect = [Point::new(0.0, 0.0), Point::new(rw as f32, 0.0), Point::new(rw as f32, rh as f32), Point::new(0.0, rh as f32)];
    let to_photo = Homography::from_points(&rect, &full).ok_or_else(|| VisionError::Config("degenerate document outline".into()))?;
    let image = warp_perspective(photo, &to_photo, rw as usize, rh as usize).to_rgb8();
    let mut faces = p.prepare(&image, false)?;
    if faces.is_empty() {
        // A second look at each end of the document, where portraits are printed: the
        // face is larger in the detector's input there.
        let (w, h) = (rw as f32, rh as f32);
        for (x0, x1) in [(0.0, 0.6 * w), (0.4 * w, w)] {
            let part = BBox { x1: x0.round(), y1: 0.0, x2: x1.round(), y2: h };
            for f in p.prepare(&crop(&image, &part), false)? {
                faces.push(PreparedFace { face: translate(&f.face, -part.x1, 0.0), crop: f.crop });
            }
        }
        let size = |f: &PreparedFace| f.face.bbox.width().min(f.face.bbox.height());
        faces.sort_by(|a, b| size(b).total_cmp(&size(a)));
    }
    Ok(Rectified { corners: full, kind, size: (rw, rh), to_photo, image, faces, cut_off })
}

/// A face found in the rectified document, mapped into the photo.
fn face_to_photo(f: &Face, h: &Homography) -> Face {
    let local_scale = {
        let c = f.bbox.center();
        let (a, b, d) = (h.apply(c), h.apply(Point::new(c.x + 1.0, c.y)), h.apply(Point::new(c.x, c.y + 1.0)));
        let (ux, uy, vx, vy) = (b.x - a.x, b.y - a.y, d.x - a.x, d.y - a.y);
        (ux * vy - uy * vx).abs().sqrt()
    };
    let mesh: Vec<[f32; 3]> = f
        .mesh
        .iter()
        .map(|m| {
            let q = h.apply(Point::new(m[0], m[1]));
            [q.x, q.y, m[2] * local_scale]
        })
        .collect();
    let pose = if mesh.is_empty() { f.pose } else { pose::estimate(&Mesh { points: mesh.clone(), face_flag: f.face_flag }) };
    let quad = f.bbox.corners().map(|c| h.apply(c));
    let mut quality = f.quality;
    quality.face_size_px = rotation_free_box(&quad).width().min(rotation_free_box(&quad).height());
    quality.inter_eye_px *= local_scale;
    Face {
        bbox: BBox::around(quad),
        score: f.score,
        face_flag: f.face_flag,
        landmarks: f.landmarks.map(|l| h.apply(l)),
        pose,
        quality,
        mesh,
        embedding: f.embedding.clone(),
    }
}

/// A box centred on the quad's centre with its mean side lengths.
fn rotation_free_box(q: &[Point; 4]) -> BBox {
    let cx = q.iter().map(|p| p.x).sum::<f32>() / 4.0;
    let cy = q.iter().map(|p| p.y).sum::<f32>() / 4.0;
    let w = (q[0].dist(q[1]) + q[3].dist(q[2])) / 2.0;
    let h = (q[0].dist(q[3]) + q[1].dist(q[2])) / 2.0;
    BBox { x1: cx - w / 2.0, y1: cy - h / 2.0, x2: cx + w / 2.0, y2: cy + h / 2.0 }
}

/// Fraction of the box's pixels whose every channel is at least `level`.
fn glare_fraction(img: &RgbImage, b: &BBox, level: u8) -> f32 {
    let (x1, y1) = (b.x1.max(0.0) as u32, b.y1.max(0.0) as u32);
    let (x2, y2) = ((b.x2.max(0.0) as u32).min(img.width()), (b.y2.max(0.0) as u32).min(img.height()));
    let (mut n, mut bright) = (0u32, 0u32);
    for y in y1..y2 {
        for x in x1..x2 {
            n += 1;
            if img.get_pixel(x, y).0.iter().all(|&v| v >= level) {
                bright += 1;
            }
        }
    }
    if n == 0 { 0.0 } else { bright as f32 / n as f32 }
}

/// Blur of the photo in photo pixels, measured where it is most reliable: across the
/// document's own outline, a sharp step between document and table in the scene. Profiles
/// across each side give the 10-90 % rise width (2.56 sigma for a Gaussian blur); the
/// median over the positions with enough contrast, as a Gaussian sigma. `None` when the
/// outline has too little contrast to tell.
fn outline_blur(photo: &RgbImage, q: &[Point; 4]) -> Option<f32> {
    let (w, h) = (photo.width() as i64, photo.height() as i64);
    let luma = |x: f32, y: f32| -> Option<f32> {
        let (xi, yi) = (x.floor() as i64, y.floor() as i64);
        if xi < 0 || yi < 0 || xi + 1 >= w || yi + 1 >= h {
            return None;
        }
        let (fx, fy) = (x - xi as f32, y - yi as f32);
        let l = |a: i64, b: i64| {
            let p = photo.get_pixel(a as u32, b as u32);
            0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])
        };
        let top = l(xi, yi) + (l(xi + 1, yi) - l(xi, yi)) * fx;
        let bot = l(xi, yi + 1) + (l(xi + 1, yi + 1) - l(xi, yi + 1)) * fx;
        Some(top + (bot - top) * fy)
    };
    const HALF: usize = 24;
    let mut widths = Vec::new();
    for i in 0..4 {
        let (a, b) = (q[i], q[(i + 1) % 4]);
        let len = a.dist(b).max(1.0);
        let (tx, ty) = ((b.x - a.x) / len, (b.y - a.y) / len);
        let n = Point::new(-ty, tx);
        for k in 0..24 {
            let t = 0.12 + 0.76 * k as f32 / 23.0;
            let c = Point::new(a.x + (b.x - a.x) * t, a.y + (b.y - a.y) * t);
            // Three neighbouring profiles averaged against noise.
            let mut prof = [0.0f32; 2 * HALF + 1];
            let mut ok = true;
            for (j, v) in prof.iter_mut().enumerate() {
                let d = j as f32 - HALF as f32;
                let mut acc = 0.0;
                for s in [-1.5f32, 0.0, 1.5] {
                    match luma(c.x + n.x * d + tx * s, c.y + n.y * d + ty * s) {
                        Some(l) => acc += l,
                        None => ok = false,
                    }
                }
                *v = acc / 3.0;
            }
            if !ok {
                continue;
            }
            let lo = prof[..5].iter().sum::<f32>() / 5.0;
            let hi = prof[prof.len() - 5..].iter().sum::<f32>() / 5.0;
            if (hi - lo).abs() < 25.0 {
                continue;
            }
            let norm: Vec<f32> = prof.iter().map(|v| (v - lo) / (hi - lo)).collect();
            let cross = |level: f32| -> Option<f32> {
                // The crossing nearest the profile's centre (where the outline is).
                (0..norm.len() - 1)
                    .filter(|&j| (norm[j] - level) * (norm[j + 1] - level) <= 0.0 && norm[j] != norm[j + 1])
                    .map(|j| j as f32 + (level - norm[j]) / (norm[j + 1] - norm[j]))
                    .min_by(|x, y| (x - HALF as f32).abs().total_cmp(&(y - HALF as f32).abs()))
            };
            if let (Some(x10), Some(x90)) = (cross(0.1), cross(0.9)) {
                widths.push((x90 - x10).abs());
            }
        }
    }
    if widths.len() < 8 {
        return None;
    }
    widths.sort_by(f32::total_cmp);
    Some(widths[widths.len() / 2] / 2.56)
}

/// A copy of `b` (rounded outwards) from `img`, black outside it.
fn crop(img: &RgbImage, b: &BBox) -> RgbImage {
    let (x0, y0) = (b.x1.floor() as i64, b.y1.floor() as i64);
    let (w, h) = ((b.x2.ceil() as i64 - x0).max(1) as u32, (b.y2.ceil() as i64 - y0).max(1) as u32);
    RgbImage::from_fn(w, h, |x, y| {
        let (sx, sy) = (x0 + i64::from(x), y0 + i64::from(y));
        if sx >= 0 && sy >= 0 && (sx as u32) < img.width() && (sy as u32) < img.height() {
            *img.get_pixel(sx as u32, sy as u32)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}

fn translate(f: &Face, dx: f32, dy: f32) -> Face {
    let mv = |p: Point| Point::new(p.x - dx, p.y - dy);
    Face {
        bbox: BBox { x1: f.bbox.x1 - dx, y1: f.bbox.y1 - dy, x2: f.bbox.x2 - dx, y2: f.bbox.y2 - dy },
        score: f.score,
        face_flag: f.face_flag,
        landmarks: f.landmarks.map(mv),
        pose: f.pose,
        quality: f.quality,
        mesh: f.mesh.iter().map(|m| [m[0] - dx, m[1] - dy, m[2]]).collect(),
        embedding: f.embedding.clone(),
    }
}

/// When no outline was found: is the photo itself a document filling the frame? Returns
/// the outline of the whole photo, oriented by the portrait, if it looks like one.
fn whole_photo(photo: &RgbImage, faces: &[PreparedFace]) -> Option<Quad> {
    let main = faces.first()?;
    let f = &main.face;
    let size = f.bbox.width().min(f.bbox.height());
    if faces.iter().skip(1).any(|o| o.face.bbox.width().min(o.face.bbox.height()) > 0.6 * size) {
        return None;
    }
    let (w, h) = (photo.width() as f32, photo.height() as f32);
    let up = face_up(f);
    // Upright frame: which way the photo's axes run for the portrait.
    let sideways = up.x.abs() > up.y.abs();
    let (uw, uh) = if sideways { (h, w) } else { (w, h) };
    let aspect = uw / uh;
    let c = f.bbox.center();
    let along = if sideways { c.y / h } else { c.x / w };
    let rel = size / uh;
    let document_like = (1.25..=1.85).contains(&aspect) && (along - 0.5).abs() >= 0.12 && (0.1..=0.5).contains(&rel);
    document_like.then(|| Quad {
        corners: [Point::new(0.0, 0.0), Point::new(w, 0.0), Point::new(w, h), Point::new(0.0, h)],
        score: 0.2,
        on_border: [false; 4],
        support: [0.0; 4],
        portrait_hint: Some(0),
        rank: 0.0,
    })
}

/// The answer for a photo without a document: NO_DOCUMENT, and LOOKS_LIKE_SELFIE when a
/// large face is in it.
fn no_document(cfg: &DocumentConfig, photo: &RgbImage, faces: &[PreparedFace]) -> Extraction {
    let mut reasons = vec![Reason::new(Code::NoDocument, "no identity document found in the photo", true)];
    let short = photo.width().min(photo.height()) as f32;
    if let Some(f) = faces.first() {
        let rel = f.face.bbox.width().min(f.face.bbox.height()) / short;
        if rel >= cfg.selfie_min_face_fraction {
            reasons.push(
                Reason::new(
                    Code::LooksLikeSelfie,
                    format!("a face {:.0} % of the photo's size and no document: send a photo of the document", rel * 100.0),
                    true,
                )
                .with(rel, cfg.selfie_min_face_fraction),
            );
        }
    }
    Extraction { document: None, portrait: None, quality: Quality::default(), other_faces: Vec::new(), reasons, rectified_png: None }
}

/// Finds the document and its portrait in a decoded photo.
pub fn extract(p: &FacePipeline, cfg: &DocumentConfig, photo: &RgbImage, opts: ExtractOptions) -> Result<Extraction, VisionError> {
    let embedder = p.embedder().ok_or_else(|| VisionError::Config("the document pipeline needs an embedder".into()))?;
    let photo_faces = p.prepare(photo, false)?;
    let hints: Vec<FaceHint> = photo_faces.iter().map(|f| hint(&f.face)).collect();
    let mut candidates: Vec<Quad> = quad::find(photo, &hints).into_iter().filter(|q| q.score >= cfg.min_document_score).collect();
    let mut whole = false;
    if candidates.is_empty()
        && let Some(q) = whole_photo(photo, &photo_faces)
    {
        candidates.push(q);
        whole = true;
    }

    let mut reasons = Vec::new();
    let mut out = Extraction {
        document: None,
        portrait: None,
        quality: Quality::default(),
        other_faces: Vec::new(),
        reasons: Vec::new(),
        rectified_png: None,
    };
    if candidates.is_empty() {
        return Ok(no_document(cfg, photo, &photo_faces));
    }

    // Try the best outlines until one holds a face (at most three).
    let mut chosen: Option<(Quad, Rectified)> = None;
    for q in candidates.into_iter().take(3) {
        let up = q.portrait_hint.and_then(|i| photo_faces.get(i)).map(|f| face_up(&f.face));
        let mut r = rectify(p, cfg, photo, &q, up, opts.kind_hint)?;
        // Without a portrait to orient by, the document may be upside down or sideways:
        // turn it by its largest face's roll and rectify again.
        if let Some(f) = r.faces.first()
            && f.face.pose.roll.abs() > 45.0
        {
            let turned = face_up(&face_to_photo(&f.face, &r.to_photo));
            r = rectify(p, cfg, photo, &q, Some(turned), opts.kind_hint)?;
        }
        let has_face = !r.faces.is_empty();
        if chosen.is_none() || has_face {
            chosen = Some((q, r));
        }
        if has_face {
            break;
        }
    }
    let Some((quad, r)) = chosen else {
        return Err(VisionError::Config("no document candidate was tried: this is a bug".into()));
    };
    // An outline with no portrait on it in a photo with a large face is a rectangle in a
    // selfie (a door, a window, a shirt front), not a document.
    let short = photo.width().min(photo.height()) as f32;
    let big_face = photo_faces.iter().any(|f| f.face.bbox.width().min(f.face.bbox.height()) / short >= cfg.selfie_min_face_fraction);
    if r.faces.is_empty() && big_face {
        return Ok(no_document(cfg, photo, &photo_faces));
    }

    let tl_tr = (r.corners[0], r.corners[1]);
    out.document = Some(Document {
        score: quad.score,
        kind: r.kind,
        corners: r.corners,
        rotation_deg: rotation_deg(tl_tr.0, tl_tr.1),
        rectified_size: r.size,
        whole_photo: whole,
        to_photo: r.to_photo,
    });
    out.quality.cut_off_fraction = r.cut_off;
    if r.cut_off > cfg.max_cut_off_fraction {
        reasons.push(
            Reason::new(Code::DocumentCutOff, format!("about {:.0} % of the document lies outside the photo", r.cut_off * 100.0), false)
                .with(r.cut_off, cfg.max_cut_off_fraction),
        );
    }
    if opts.return_rectified {
        out.rectified_png = Some(encode_png(&r.image)?);
    }
    let doc_quad = r.corners;

    // The main portrait is the largest face on the document; smaller ones are its ghost.
    let mut doc_faces = r.faces;
    let main = if doc_faces.is_empty() { None } else { Some(doc_faces.remove(0)) };
    // Faces of the photo outside the document: the holder's (the largest) and others.
    let outside: Vec<&PreparedFace> = photo_faces.iter().filter(|f| !quad::inside(&doc_quad, f.face.bbox.center())).collect();
    // Faces on the document are aligned from the photo itself (their landmarks mapped
    // back), so the embedder sees pixels resampled once, not twice.
    let aligner = Aligner::new(&p.config().embedder);
    let from_photo = |f: &PreparedFace| -> FloatImage {
        let five = f.face.landmarks.map(|l| r.to_photo.apply(l));
        aligner.align(photo, &five).unwrap_or_else(|| f.crop.clone())
    };
    let mut crops: Vec<FloatImage> = Vec::new();
    if let Some(m) = &main {
        crops.push(from_photo(m));
    }
    crops.extend(doc_faces.iter().map(from_photo));
    crops.extend(outside.iter().map(|f| f.crop.clone()));
    let embeddings = if crops.is_empty() { Vec::new() } else { embedder.embed(&crops)? };
    let mut emb = embeddings.into_iter();
    let main_embedding = if main.is_some() { emb.next() } else { None };

    let main_size = main.as_ref().map_or(0.0, |m| m.face.bbox.width().min(m.face.bbox.height()));
    for f in &doc_faces {
        let e = emb.next();
        let size = f.face.bbox.width().min(f.face.bbox.height());
        let kind = if size <= cfg.ghost_max_size_ratio * main_size { OtherKind::Ghost } else { OtherKind::Other };
        let similarity = match (&e, &main_embedding) {
            (Some(a), Some(b)) => Some(ekyc_vision::cosine(a, b)),
            _ => None,
        };
        let mut face = face_to_photo(&f.face, &r.to_photo);
        face.embedding = None;
        out.other_faces.push(OtherFace { kind, face, similarity });
    }
    for (k, f) in outside.iter().enumerate() {
        let e = emb.next();
        let similarity = match (&e, &main_embedding) {
            (Some(a), Some(b)) => Some(ekyc_vision::cosine(a, b)),
            _ => None,
        };
        let kind = if k == 0 { OtherKind::Holder } else { OtherKind::Other };
        let mut face = f.face.clone();
        face.embedding = None;
        out.other_faces.push(OtherFace { kind, face, similarity });
    }

    // Blur of the whole photo, from the document's outline (whatever the portrait's size).
    let blur_px = if quad.on_border.iter().all(|b| !b) && !whole { outline_blur(photo, &quad.corners) } else { None };
    let outline_blurred = blur_px.is_some_and(|s| s > cfg.max_blur_px);
    if let Some(sigma) = blur_px.filter(|_| outline_blurred) {
        reasons.push(
            Reason::new(Code::Blur, format!("the photo is blurred by about {sigma:.1} px (measured across the document's edges)"), true)
                .with(sigma, cfg.max_blur_px),
        );
    }
    match main {
        None => {
            reasons.push(Reason::new(Code::NoPortrait, "a document was found but no portrait on it", true));
            // Glare can blow a portrait out entirely: say so when much of the document is.
            let all = BBox { x1: 0.0, y1: 0.0, x2: r.size.0 as f32, y2: r.size.1 as f32 };
            let glare = glare_fraction(&r.image, &all, 235);
            out.quality.glare_fraction = glare;
            if glare > cfg.max_document_glare_fraction {
                reasons.push(
                    Reason::new(
                        Code::Glare,
                        format!("{:.0} % of the document is blown out by glare; the portrait may be under it", glare * 100.0),
                        true,
                    )
                    .with(glare, cfg.max_document_glare_fraction),
                );
            }
        }
        Some(m) => {
            let face = Face { embedding: main_embedding, ..m.face };
            let b = face.bbox;
            let side = cfg.portrait_crop_scale * b.width().max(b.height());
            let c = b.center();
            let crop_box = BBox {
                x1: (c.x - side / 2.0).round(),
                y1: (c.y - side / 2.0).round(),
                x2: (c.x - side / 2.0).round() + side.round(),
                y2: (c.y - side / 2.0).round() + side.round(),
            };
            let crop_img = crop(&r.image, &crop_box);
            let face_quad = b.corners().map(|pt| r.to_photo.apply(pt));
            let face_box = rotation_free_box(&face_quad);
            out.quality.portrait_size_px = face_box.width().min(face_box.height());
            out.quality.sharpness = face.quality.sharpness;
            out.quality.glare_fraction = glare_fraction(&r.image, &b, 235);
            out.portrait = Some(Portrait {
                png: encode_png(&crop_img)?,
                crop_size: crop_img.dimensions(),
                corners: crop_box.corners().map(|pt| r.to_photo.apply(pt)),
                box_rectified: crop_box,
                face: translate(&face, crop_box.x1, crop_box.y1),
                face_quad,
                face_box,
            });
            let q = out.quality;
            if q.portrait_size_px < cfg.min_portrait_size_px {
                reasons.push(
                    Reason::new(
                        Code::PortraitTooSmall,
                        format!("the portrait's face is {:.0} px, at least {:.0} px needed", q.portrait_size_px, cfg.min_portrait_size_px),
                        true,
                    )
                    .with(q.portrait_size_px, cfg.min_portrait_size_px),
                );
            }
            if !outline_blurred && q.sharpness < cfg.min_sharpness {
                reasons.push(
                    Reason::new(
                        Code::Blur,
                        format!("portrait sharpness {:.1}, at least {:.1} needed", q.sharpness, cfg.min_sharpness),
                        true,
                    )
                    .with(q.sharpness, cfg.min_sharpness),
                );
            }
            if q.glare_fraction > cfg.max_glare_fraction {
                reasons.push(
                    Reason::new(
                        Code::Glare,
                        format!("{:.0} % of the portrait's face is blown out by glare", q.glare_fraction * 100.0),
                        true,
                    )
                    .with(q.glare_fraction, cfg.max_glare_fraction),
                );
            }
        }
    }
    for (i, o) in out.other_faces.iter().enumerate() {
        if o.kind == OtherKind::Ghost {
            reasons.push(Reason { face_index: Some(i), ..Reason::new(Code::GhostPortraitFound, "a ghost portrait was found", false) });
            if let Some(s) = o.similarity
                && s < cfg.ghost_min_similarity
            {
                reasons.push(Reason {
                    face_index: Some(i),
                    ..Reason::new(Code::GhostPortraitMismatch, format!("the ghost portrait's similarity to the portrait is {s:.2}"), false)
                        .with(s, cfg.ghost_min_similarity)
                });
            }
        }
    }
    let others = out.other_faces.iter().filter(|o| o.kind != OtherKind::Ghost).count();
    if others > 0 {
        let mut r = Reason::new(Code::OtherFacesPresent, format!("{others} face(s) besides the portrait and its ghost"), false);
        r.measured = Some(others as f64);
        reasons.push(r);
    }
    out.reasons = reasons;
    Ok(out)
}
