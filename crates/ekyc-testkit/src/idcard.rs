//! Synthetic phone photos of photo-ID documents that know the truth: where the card lies in
//! the photo, where its main printed portrait and its semi-transparent "ghost" copy are, and
//! which degradations were applied. For the document service's tests.
//!
//! How a photo is made ([`render`]):
//! 1. The upright card is drawn at a base resolution ([`Layout::card_size`]: 856 x 540 px for
//!    an ID-1 card, 1000 x 704 px for a passport data page): a soft two-colour gradient, a
//!    guilloche-like pattern of crossing wavy sine lines, coloured bands, a title bar, rows of
//!    dark rectangles imitating printed characters, a card-number block, and for passports two
//!    MRZ-like lines at the bottom. The main portrait (a crop of the source photo around its
//!    face, 3:4, optionally grayscale or desaturated with reduced contrast as printing does) is
//!    placed on the right for ID cards and on the left for passports; a smaller ghost copy is
//!    alpha-blended elsewhere.
//! 2. The card is mapped into the photo by a homography: its corners are moved independently
//!    (perspective tilt), then rotated in plane by [`Scene::rotation_deg`], scaled and placed.
//!    Every photo pixel is mapped back onto the card and sampled bilinearly (from a pre-shrunk
//!    copy when the card is reduced), over a textured background; edges and rounded corners
//!    are anti-aliased.
//! 3. A lighting gradient, optional glare (an additive elliptical highlight), Gaussian blur,
//!    Gaussian noise and JPEG compression follow, in that order.
//!
//! Coordinates follow [`ekyc_vision::geometry`]: continuous pixels, origin at the top-left
//! corner of the top-left pixel, y down. Card coordinates are pixels of the upright card at its
//! base resolution. Everything is drawn from the scene's seed by a SplitMix64 generator: the
//! same scene and inputs give byte-identical JPEGs.

use ekyc_vision::geometry::{BBox, Point};
use ekyc_vision::{AnalyzeOptions, FacePipeline};
use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{Rgb, RgbImage};

use crate::dataset::photos;

// ---------------------------------------------------------------------------------------
// Random numbers
// ---------------------------------------------------------------------------------------

/// SplitMix64: small, fast, deterministic on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
    pub fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------------------
// Geometry (the homography lives in the vision core, shared with the document service)
// ---------------------------------------------------------------------------------------

pub use ekyc_vision::geometry::Homography;

fn rect_corners(r: &BBox) -> [Point; 4] {
    r.corners()
}

/// Whether `p` lies inside the convex quadrilateral `q` (either winding).
pub fn point_in_quad(q: &[Point; 4], p: Point) -> bool {
    let mut sign = 0.0f32;
    for i in 0..4 {
        let (a, b) = (q[i], q[(i + 1) % 4]);
        let cross = (b.x - a.x) * (p.y - a.y) - (b.y - a.y) * (p.x - a.x);
        if cross != 0.0 {
            if sign != 0.0 && cross.signum() != sign {
                return false;
            }
            sign = cross.signum();
        }
    }
    true
}

/// Twice the signed area of a polygon in image coordinates: positive when its points run
/// clockwise on screen (y down).
pub fn signed_area2(q: &[Point]) -> f32 {
    (0..q.len())
        .map(|i| {
            let (a, b) = (q[i], q[(i + 1) % q.len()]);
            a.x * b.y - b.x * a.y
        })
        .sum()
}

// ---------------------------------------------------------------------------------------
// Scenes
// ---------------------------------------------------------------------------------------

/// The kind of document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// ID-1 card (85.6 x 54 mm): My Number card, driving licence, residence card. Portrait on
    /// the right.
    IdCard,
    /// Passport data page (about 125 x 88 mm). Portrait on the left, MRZ at the bottom.
    Passport,
}

impl Layout {
    /// The card's base resolution in pixels.
    pub fn card_size(self) -> (u32, u32) {
        match self {
            Layout::IdCard => (856, 540),
            Layout::Passport => (1000, 704),
        }
    }
}

/// What lies under the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    /// Wood-like stripes with grain.
    Wood,
    /// A fine weave with per-pixel noise.
    Fabric,
    /// A plain table colour with soft blotches.
    Table,
}

/// How the main portrait is cropped and printed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PortraitStyle {
    /// Printed height as a fraction of the card height.
    pub height_frac: f32,
    /// Vertical position in the free band, 0 (top) to 1 (bottom).
    pub vertical_pos: f32,
    /// Crop height divided by the source face box's height (head-and-shoulders margin).
    pub margin: f32,
    pub grayscale: bool,
    /// 1 keeps the colours, 0 is grey.
    pub saturation: f32,
    /// Contrast kept by the print, 1 unchanged.
    pub contrast: f32,
}

/// Where the ghost goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GhostPlacement {
    /// Bottom corner on the text side (bottom-left of ID cards, bottom-right of passports).
    Corner,
    /// Just beside the main portrait, towards the text, in its lower half.
    BesidePortrait,
}

/// The semi-transparent ghost copy of the portrait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GhostStyle {
    /// Height as a fraction of the main portrait's height.
    pub size_frac: f32,
    pub alpha: f32,
    pub grayscale: bool,
    pub placement: GhostPlacement,
}

/// An additive elliptical highlight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Glare {
    /// Centred on the main portrait (else on the text side of the card).
    pub over_portrait: bool,
    /// Peak added brightness as a fraction of 255 (above 1 saturates a wide core).
    pub strength: f32,
    /// Radius along the major axis as a fraction of the target's size (portrait or card).
    pub size: f32,
    /// Minor/major axis ratio.
    pub aspect: f32,
    pub angle_deg: f32,
    /// Offset of the centre, in fractions of the target's size.
    pub offset: [f32; 2],
}

/// Every variation of one photo. Build with [`random_scene`] or the special constructors and
/// adjust fields freely before [`render`].
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// Seeds the card's details (text widths, pattern phases), the background and the noise.
    pub seed: u64,
    pub layout: Layout,
    /// Photo width and height in pixels.
    pub photo_size: (u32, u32),
    pub background: Background,
    pub background_colour: [u8; 3],
    /// Hue in degrees of the card's pattern and bands.
    pub card_hue: f32,
    /// `None`: an empty card (no portrait, no ghost).
    pub portrait: Option<PortraitStyle>,
    /// Ignored without a portrait.
    pub ghost: Option<GhostStyle>,
    /// In-plane rotation: the direction of the upright card's top edge (top-left to
    /// top-right) in the photo, degrees, clockwise on screen (atan2 of dy, dx in image
    /// coordinates), before the perspective tilt.
    pub rotation_deg: f32,
    /// Independent moves of the corners TL, TR, BR, BL on the card, as fractions of the card's
    /// width (x) and height (y); up to about 0.12 is a tilt of about 20 degrees.
    pub corner_jitter: [[f32; 2]; 4],
    /// Size of the card's bounding box relative to the largest that fits the photo, (0, 1].
    pub fill: f32,
    /// Where the card sits in the photo's free space, each 0..1.
    pub offset: [f32; 2],
    /// When set, the card is enlarged and pushed over the border, away from the portrait,
    /// until this fraction of its area lies outside the photo.
    pub cut_off: Option<f32>,
    /// Lighting gradient: strength (multiplicative, +-) and direction in degrees.
    pub lighting: [f32; 2],
    pub blur_sigma: f32,
    pub noise_sigma: f32,
    pub glare: Option<Glare>,
    pub jpeg_quality: u8,
    /// A person beside the card: the portrait source's own face photo (head and shoulders,
    /// feathered into the background, no frame), as when the holder holds the card up next
    /// to their face. A document service must not take it for the portrait.
    pub holder: Option<Holder>,
}

/// The holder's face beside the card.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Holder {
    /// The holder's face height over the printed portrait's face height in the photo.
    pub face_ratio: f32,
    /// Vertical position of the face in the free space, 0 (top) to 1 (bottom).
    pub vertical_pos: f32,
}

/// A random scene: every variation drawn from `seed`.
pub fn random_scene(seed: u64) -> Scene {
    let mut r = Rng::new(seed ^ 0x1D_CA4D);
    let layout = if r.chance(0.7) { Layout::IdCard } else { Layout::Passport };
    let photo_size = if r.chance(0.65) { (1280, 960) } else { (960, 1280) };
    let background = match (r.unit() * 3.0) as u32 {
        0 => Background::Wood,
        1 => Background::Fabric,
        _ => Background::Table,
    };
    let background_colour = [r.range(40.0, 220.0) as u8, r.range(40.0, 200.0) as u8, r.range(30.0, 190.0) as u8];
    let card_hue = r.range(0.0, 360.0);
    let grayscale = r.chance(0.3);
    let portrait = Some(PortraitStyle {
        height_frac: match layout {
            Layout::IdCard => r.range(0.35, 0.45),
            Layout::Passport => r.range(0.45, 0.55),
        },
        vertical_pos: r.range(0.2, 0.8),
        margin: r.range(1.7, 2.2),
        grayscale,
        saturation: if grayscale { 0.0 } else { r.range(0.55, 1.0) },
        contrast: r.range(0.75, 1.0),
    });
    let ghost = if r.chance(0.85) {
        Some(GhostStyle {
            size_frac: r.range(0.4, 0.55),
            alpha: r.range(0.25, 0.45),
            grayscale: r.chance(0.8),
            placement: if r.chance(0.5) { GhostPlacement::Corner } else { GhostPlacement::BesidePortrait },
        })
    } else {
        None
    };
    // Rotation: a third near a quarter turn (phone held sideways or card turned), the rest any
    // angle with a bias towards upright.
    let rotation_deg = if r.chance(0.35) {
        let quarter = (r.unit() * 4.0).floor() * 90.0;
        quarter + r.range(-8.0, 8.0)
    } else if r.chance(0.5) {
        r.range(-15.0, 15.0)
    } else {
        r.range(-180.0, 180.0)
    };
    let tilt = r.range(0.0, 0.12);
    let mut corner_jitter = [[0.0; 2]; 4];
    for c in &mut corner_jitter {
        *c = [r.range(-tilt, tilt), r.range(-tilt, tilt)];
    }
    let fill = r.range(0.45, 1.0);
    let offset = [r.unit(), r.unit()];
    let lighting = [r.range(-0.25, 0.25), r.range(0.0, 360.0)];
    let blur_sigma = if r.chance(0.4) { 0.0 } else { r.range(0.0, 2.5) };
    let noise_sigma = r.range(0.0, 8.0);
    let glare = if r.chance(0.45) {
        let over = r.chance(0.4);
        Some(Glare {
            over_portrait: over,
            strength: r.range(0.25, 0.7),
            size: if over { r.range(0.3, 0.8) } else { r.range(0.1, 0.25) },
            aspect: r.range(0.4, 1.0),
            angle_deg: r.range(0.0, 180.0),
            offset: [r.range(-0.2, 0.2), r.range(-0.2, 0.2)],
        })
    } else {
        None
    };
    let jpeg_quality = r.range(40.0, 95.99) as u8;
    Scene {
        seed,
        layout,
        photo_size,
        background,
        background_colour,
        card_hue,
        portrait,
        ghost,
        rotation_deg,
        corner_jitter,
        fill,
        offset,
        cut_off: None,
        lighting,
        blur_sigma,
        noise_sigma,
        glare,
        jpeg_quality,
        holder: None,
    }
}

impl Scene {
    /// A card with no portrait and no ghost (for NO_PORTRAIT tests); the rest as
    /// [`random_scene`].
    pub fn empty_card(seed: u64) -> Scene {
        Scene { portrait: None, ghost: None, ..random_scene(seed) }
    }
    /// A random scene blurred with sigma 6 px.
    pub fn heavy_blur(seed: u64) -> Scene {
        Scene { blur_sigma: 6.0, ..random_scene(seed) }
    }
    /// A random scene with a strong glare centred on the portrait, saturating most of it.
    pub fn saturating_glare(seed: u64) -> Scene {
        let glare = Glare { over_portrait: true, strength: 2.5, size: 1.0, aspect: 0.9, angle_deg: 0.0, offset: [0.0, 0.0] };
        Scene { glare: Some(glare), ..random_scene(seed) }
    }
    /// A random scene whose card lies 30-50 % outside the photo (on the side away from the
    /// portrait, which stays mostly visible).
    /// A random scene with the holder's own face beside the card: the card is smaller and
    /// pushed to one side of a landscape photo, upright within 15 degrees or at a quarter
    /// turn, and the holder's face (1.5 to 3 times the printed one) fills the other side.
    pub fn with_holder(seed: u64) -> Scene {
        let mut r = Rng::new(seed ^ 0x401D);
        let base = random_scene(seed);
        let quarter = if r.chance(0.3) { (r.unit() * 4.0).floor() * 90.0 } else { 0.0 };
        Scene {
            photo_size: (1280, 960),
            fill: r.range(0.5, 0.62),
            offset: [if r.chance(0.5) { 0.0 } else { 1.0 }, r.range(0.2, 0.8)],
            rotation_deg: quarter + r.range(-15.0, 15.0),
            holder: Some(Holder { face_ratio: r.range(1.5, 3.0), vertical_pos: r.range(0.2, 0.6) }),
            ..base
        }
    }
    pub fn cut_off(seed: u64) -> Scene {
        let frac = Rng::new(seed ^ 0xC07).range(0.3, 0.5);
        Scene { cut_off: Some(frac), ..random_scene(seed) }
    }
}

// ---------------------------------------------------------------------------------------
// Truth
// ---------------------------------------------------------------------------------------

/// Where a printed portrait (main or ghost) lies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    /// The printed rectangle on the upright card (card pixels).
    pub card_rect: BBox,
    /// That rectangle in the photo: its TL, TR, BR, BL (of the upright card).
    pub quad: [Point; 4],
    /// The quad's axis-aligned bounding box in photo pixels.
    pub bbox: BBox,
    /// The source photo's face box as printed, on the card.
    pub face_card_rect: BBox,
    /// The face box in the photo (quad, TL TR BR BL of the upright card).
    pub face_quad: [Point; 4],
    /// The face quad's axis-aligned bounding box in the photo.
    pub face_bbox: BBox,
    /// A rotation-free face box in the photo: centred on the face quad's centre, with the
    /// quad's mean side lengths (what an upright face detector would draw on the
    /// rectified face). Compare detections with this one.
    pub face_box: BBox,
    /// Fraction of the printed rectangle outside the photo.
    pub fraction_outside: f32,
}

/// The degradations that were applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Applied {
    pub blur_sigma: f32,
    pub noise_sigma: f32,
    pub glare: bool,
    pub glare_over_portrait: bool,
    pub glare_strength: f32,
    pub jpeg_quality: u8,
    pub rotation_deg: f32,
    pub cut_off: bool,
}

/// A generated photo and its truth.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The photo as JPEG.
    pub jpeg: Vec<u8>,
    /// The JPEG decoded.
    pub image: RgbImage,
    pub layout: Layout,
    /// The card's base resolution (card pixel coordinates range over it).
    pub card_size: (u32, u32),
    /// Card pixels to photo pixels.
    pub card_to_photo: Homography,
    /// The card's corners in the photo: top-left, top-right, bottom-right, bottom-left of the
    /// upright card (clockwise on screen). ID cards have rounded corners (radius 3.7 % of the
    /// width); these are the corners of the card's bounding rectangle, as a document detector
    /// fitting lines to the edges would report.
    pub corners: [Point; 4],
    /// The main portrait, absent on an empty card.
    pub portrait: Option<Region>,
    pub ghost: Option<Region>,
    /// Fraction of the card's area outside the photo.
    pub card_fraction_outside: f32,
    /// The holder's face box in the photo, when the scene has a holder.
    pub holder_face: Option<BBox>,
    pub applied: Applied,
}

impl Generated {
    /// Whether a photo point lies on the card.
    pub fn on_card(&self, p: Point) -> bool {
        point_in_quad(&self.corners, p)
    }
}

/// A face to print: the decoded development photo and its face box.
#[derive(Debug, Clone)]
pub struct PortraitSource {
    pub file: String,
    pub identity: String,
    pub image: RgbImage,
    pub face: BBox,
}

/// The whole single-face development photos with an identity whose face box is at least
/// `min_face_px` high, each analysed once (largest face) to find the box.
pub fn portrait_sources(pipeline: &FacePipeline, min_face_px: f32) -> Vec<PortraitSource> {
    let mut out = Vec::new();
    for p in photos().into_iter().filter(|p| p.is_whole_single_face()) {
        let Some(identity) = p.identity.clone() else { continue };
        let image = pipeline.decode(&p.bytes()).unwrap_or_else(|e| panic!("{}: {e}", p.file));
        let faces =
            pipeline.analyze(&image, AnalyzeOptions { embed: false, largest_only: true }).unwrap_or_else(|e| panic!("{}: {e}", p.file));
        if let Some(f) = faces.first()
            && f.bbox.height() >= min_face_px
        {
            out.push(PortraitSource { file: p.file.clone(), identity, image, face: f.bbox });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Drawing helpers
// ---------------------------------------------------------------------------------------

/// A float RGB canvas (0..255).
struct Canvas {
    w: usize,
    h: usize,
    px: Vec<[f32; 3]>,
}

impl Canvas {
    fn new(w: usize, h: usize, c: [f32; 3]) -> Self {
        Canvas { w, h, px: vec![c; w * h] }
    }
    fn blend(&mut self, x: usize, y: usize, c: [f32; 3], a: f32) {
        let p = &mut self.px[y * self.w + x];
        for k in 0..3 {
            p[k] += (c[k] - p[k]) * a;
        }
    }
    /// Fills a rectangle (clipped) with colour `c` at opacity `a`, anti-aliased horizontally
    /// and vertically by pixel coverage.
    fn rect(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, c: [f32; 3], a: f32) {
        let (x1, y1) = (x1.max(0.0), y1.max(0.0));
        let (x2, y2) = (x2.min(self.w as f32), y2.min(self.h as f32));
        if x2 <= x1 || y2 <= y1 {
            return;
        }
        for y in y1.floor() as usize..(y2.ceil() as usize).min(self.h) {
            let cy = (y2.min(y as f32 + 1.0) - y1.max(y as f32)).clamp(0.0, 1.0);
            for x in x1.floor() as usize..(x2.ceil() as usize).min(self.w) {
                let cx = (x2.min(x as f32 + 1.0) - x1.max(x as f32)).clamp(0.0, 1.0);
                self.blend(x, y, c, a * cx * cy);
            }
        }
    }
    fn to_rgb(&self) -> RgbImage {
        RgbImage::from_fn(self.w as u32, self.h as u32, |x, y| {
            let p = self.px[y as usize * self.w + x as usize];
            Rgb(p.map(|v| v.round().clamp(0.0, 255.0) as u8))
        })
    }
}

fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h = h.rem_euclid(360.0) / 60.0;
    let c = v * s;
    let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [(r + m) * 255.0, (g + m) * 255.0, (b + m) * 255.0]
}

fn lerp3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

/// Lattice value noise in [0, 1), smooth, from a seed.
pub(crate) fn value_noise(seed: u64, x: f32, y: f32) -> f32 {
    let (fx, fy) = (x.floor(), y.floor());
    let (ix, iy) = (fx as i64, fy as i64);
    let (tx, ty) = (x - fx, y - fy);
    let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
    let h = |i: i64, j: i64| {
        (mix64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (j as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)) >> 40) as f32
            / (1u64 << 24) as f32
    };
    let a = h(ix, iy) + (h(ix + 1, iy) - h(ix, iy)) * sx;
    let b = h(ix, iy + 1) + (h(ix + 1, iy + 1) - h(ix, iy + 1)) * sx;
    a + (b - a) * sy
}

pub(crate) fn fbm(seed: u64, x: f32, y: f32) -> f32 {
    0.5 * value_noise(seed, x, y) + 0.3 * value_noise(seed ^ 1, 2.03 * x, 2.03 * y) + 0.2 * value_noise(seed ^ 2, 4.1 * x, 4.1 * y)
}

/// Rows of dark rectangles imitating characters, from `x` to at most `x + width`.
fn text_run(c: &mut Canvas, r: &mut Rng, x: f32, y: f32, width: f32, size: f32, colour: [f32; 3]) {
    let mut cx = x;
    let end = x + width;
    loop {
        let w = size * r.range(0.45, 0.95);
        if cx + w > end {
            break;
        }
        // Some glyphs are split into strokes.
        if r.chance(0.35) {
            let s = w * 0.3;
            c.rect(cx, y, cx + s, y + size, colour, 0.9);
            c.rect(cx + w - s, y, cx + w, y + size, colour, 0.9);
            c.rect(cx, y + size * 0.45, cx + w, y + size * 0.6, colour, 0.9);
        } else {
            c.rect(cx, y + size * r.range(0.0, 0.15), cx + w, y + size * r.range(0.85, 1.0), colour, 0.85);
        }
        cx += w + size * 0.18;
        if r.chance(0.12) {
            cx += size * 0.6;
        }
    }
}

/// Crops the source around its face into a 3:4 portrait of `out_w` x `out_h`; returns it and
/// the face box in the portrait's pixels.
fn crop_portrait(src: &RgbImage, face: BBox, margin: f32, out_w: u32, out_h: u32) -> (RgbImage, BBox) {
    let (sw, sh) = (src.width() as f32, src.height() as f32);
    let aspect = out_w as f32 / out_h as f32;
    let mut ch = face.height().max(face.width() / aspect * 0.8) * margin;
    ch = ch.min(sh).min(sw / aspect).max(4.0);
    let cw = ch * aspect;
    let fc = face.center();
    // The face centre sits a little above the crop's middle, then the crop is moved inside.
    let x1 = (fc.x - cw / 2.0).clamp(0.0, (sw - cw).max(0.0));
    let y1 = (fc.y - ch * 0.47).clamp(0.0, (sh - ch).max(0.0));
    let (ix, iy) = (x1.floor() as u32, y1.floor() as u32);
    let iw = (cw.round() as u32).clamp(1, src.width() - ix);
    let ih = (ch.round() as u32).clamp(1, src.height() - iy);
    let crop = image::imageops::crop_imm(src, ix, iy, iw, ih).to_image();
    let img = image::imageops::resize(&crop, out_w, out_h, FilterType::Triangle);
    let (kx, ky) = (out_w as f32 / iw as f32, out_h as f32 / ih as f32);
    let fb = BBox {
        x1: (face.x1 - ix as f32) * kx,
        y1: (face.y1 - iy as f32) * ky,
        x2: (face.x2 - ix as f32) * kx,
        y2: (face.y2 - iy as f32) * ky,
    };
    (img, fb)
}

/// Grayscale/desaturation and contrast reduction as printing does.
fn print_look(img: &RgbImage, saturation: f32, contrast: f32) -> Vec<[f32; 3]> {
    img.pixels()
        .map(|p| {
            let c = [p[0] as f32, p[1] as f32, p[2] as f32];
            let l = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
            c.map(|v| {
                let s = l + (v - l) * saturation;
                128.0 + (s - 128.0) * contrast + 8.0 * (1.0 - contrast)
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The card
// ---------------------------------------------------------------------------------------

struct CardTruth {
    portrait: Option<(BBox, BBox)>,
    ghost: Option<(BBox, BBox)>,
}

fn draw_card(scene: &Scene, src: &RgbImage, face: BBox) -> (Canvas, CardTruth) {
    let (w, h) = scene.layout.card_size();
    let (wf, hf) = (w as f32, h as f32);
    let mut r = Rng::new(scene.seed ^ 0xCA4D);
    let hue = scene.card_hue;
    let light_a = hsv(hue, r.range(0.04, 0.14), 0.97);
    let light_b = hsv(hue + r.range(20.0, 70.0), r.range(0.05, 0.18), 0.93);
    let mut c = Canvas::new(w as usize, h as usize, light_a);

    // Gradient and guilloche.
    let (gdx, gdy) = (r.range(-1.0, 1.0), r.range(-1.0, 1.0));
    let line_col = hsv(hue + r.range(-30.0, 30.0), r.range(0.3, 0.6), 0.75);
    let (p1, p2) = (r.range(9.0, 16.0), r.range(9.0, 16.0));
    let (a1, a2) = (r.range(0.6, 1.6), r.range(0.6, 1.6));
    let (q1, q2) = (r.range(60.0, 140.0), r.range(60.0, 140.0));
    let (ph1, ph2) = (r.range(0.0, 6.3), r.range(0.0, 6.3));
    let tau = std::f32::consts::TAU;
    for y in 0..h as usize {
        for x in 0..w as usize {
            let (xf, yf) = (x as f32, y as f32);
            let t = (0.5 + 0.5 * (gdx * (xf / wf - 0.5) + gdy * (yf / hf - 0.5))).clamp(0.0, 1.0);
            let mut col = lerp3(light_a, light_b, t);
            let l1 = (tau * (xf / p1 + a1 * (tau * yf / q1 + ph1).sin())).sin();
            let l2 = (tau * (yf / p2 + a2 * (tau * xf / q2 + ph2).sin() + xf / (p2 * 3.0))).sin();
            let line = ((l1 - 0.9) * 10.0).clamp(0.0, 1.0) * 0.3 + ((l2 - 0.92) * 12.0).clamp(0.0, 1.0) * 0.22;
            col = lerp3(col, line_col, line);
            c.px[y * w as usize + x] = col;
        }
    }
    // Coloured bands.
    let band_col = hsv(hue + r.range(-40.0, 40.0), r.range(0.3, 0.7), 0.85);
    for _ in 0..(1 + (r.unit() * 2.0) as u32) {
        let y = r.range(0.15, 0.85) * hf;
        let bh = r.range(0.02, 0.08) * hf;
        c.rect(0.0, y, wf, y + bh, band_col, r.range(0.15, 0.35));
    }
    // Title bar.
    let title_h = r.range(0.09, 0.13) * hf;
    let title_col = hsv(hue + r.range(-20.0, 20.0), r.range(0.5, 0.85), r.range(0.45, 0.75));
    c.rect(0.0, 0.0, wf, title_h, title_col, 0.9);
    let tsize = title_h * 0.45;
    let title_w = r.range(0.3, 0.6) * wf;
    text_run(&mut c, &mut r, 0.04 * wf, title_h * 0.28, title_w, tsize, [245.0, 245.0, 245.0]);

    let margin = 0.035 * wf;
    let mrz_h = if scene.layout == Layout::Passport { 0.2 * hf } else { 0.0 };
    let top = title_h + 0.04 * hf;
    let bottom = hf - mrz_h - 0.05 * hf;

    // Main portrait rectangle.
    let portrait_rect = scene.portrait.map(|st| {
        let ph = st.height_frac * hf;
        let pw = ph * 0.78;
        let y1 = top + (bottom - top - ph).max(0.0) * st.vertical_pos;
        let x1 = match scene.layout {
            Layout::IdCard => wf - margin - pw,
            Layout::Passport => margin,
        };
        BBox { x1, y1, x2: x1 + pw, y2: y1 + ph }
    });
    // Text area: the side away from the portrait.
    let (tx1, tx2) = match (scene.layout, portrait_rect) {
        (Layout::IdCard, Some(p)) => (margin, p.x1 - 0.04 * wf),
        (Layout::Passport, Some(p)) => (p.x2 + 0.04 * wf, wf - margin),
        (Layout::IdCard, None) => (margin, wf * 0.7),
        (Layout::Passport, None) => (wf * 0.3, wf - margin),
    };

    // Ghost (drawn under the text, as on real cards).
    let mut truth = CardTruth { portrait: None, ghost: None };
    if let (Some(st), Some(pr)) = (scene.portrait, portrait_rect) {
        let margin_crop = st.margin;
        if let Some(g) = scene.ghost {
            let gh = pr.height() * g.size_frac;
            let gw = gh * 0.78;
            let (x1, y1) = match (g.placement, scene.layout) {
                (GhostPlacement::Corner, Layout::IdCard) => (margin, bottom + 0.03 * hf - gh),
                (GhostPlacement::Corner, Layout::Passport) => (wf - margin - gw, bottom + 0.03 * hf - gh),
                (GhostPlacement::BesidePortrait, Layout::IdCard) => (pr.x1 - 0.02 * wf - gw, pr.y2 - gh),
                (GhostPlacement::BesidePortrait, Layout::Passport) => (pr.x2 + 0.02 * wf, pr.y2 - gh),
            };
            let y1 = y1.max(top);
            let (gimg, gface) = crop_portrait(src, face, margin_crop, gw.round() as u32, gh.round() as u32);
            let sat = if g.grayscale { 0.0 } else { st.saturation };
            let look = print_look(&gimg, sat, st.contrast * 0.9);
            paste(&mut c, &look, gimg.width() as usize, gimg.height() as usize, x1.round(), y1.round(), g.alpha);
            let rect = BBox { x1: x1.round(), y1: y1.round(), x2: x1.round() + gimg.width() as f32, y2: y1.round() + gimg.height() as f32 };
            truth.ghost = Some((rect, offset_box(gface, rect.x1, rect.y1)));
        }
    }

    // Text rows.
    let dark = [r.range(10.0, 50.0), r.range(10.0, 50.0), r.range(10.0, 60.0)];
    let label = lerp3(dark, light_a, 0.45);
    let row_h = r.range(0.075, 0.095) * hf;
    let mut y = top;
    let rows_end = bottom - 0.1 * hf;
    while y + row_h < rows_end {
        let size = row_h * r.range(0.38, 0.5);
        let label_w = r.range(0.08, 0.14) * wf;
        text_run(&mut c, &mut r, tx1, y + row_h * 0.3, label_w.min(tx2 - tx1), size * 0.7, label);
        let vx = tx1 + label_w + 0.02 * wf;
        if vx < tx2 {
            let value_w = (tx2 - vx) * r.range(0.4, 1.0);
            text_run(&mut c, &mut r, vx, y + row_h * 0.2, value_w, size, dark);
        }
        y += row_h;
    }
    // Card number block.
    let nb_y = bottom - 0.08 * hf;
    let nb_w = (tx2 - tx1) * r.range(0.55, 0.9);
    c.rect(tx1 - 4.0, nb_y - 4.0, tx1 + nb_w + 4.0, nb_y + 0.07 * hf, [250.0, 250.0, 250.0], 0.5);
    text_run(&mut c, &mut r, tx1, nb_y + 0.01 * hf, nb_w, 0.045 * hf, dark);

    // MRZ.
    if scene.layout == Layout::Passport {
        let zy = hf - mrz_h;
        c.rect(0.0, zy, wf, hf, [248.0, 248.0, 244.0], 0.85);
        let cell = (wf - 2.0 * margin) / 44.0;
        for line in 0..2 {
            let ly = zy + mrz_h * (0.22 + 0.4 * line as f32);
            for k in 0..44 {
                let x = margin + k as f32 * cell;
                // '<' fillers are thin; others full glyph boxes.
                if r.chance(0.25) {
                    c.rect(x + cell * 0.3, ly + mrz_h * 0.12, x + cell * 0.7, ly + mrz_h * 0.17, dark, 0.9);
                } else {
                    c.rect(x + cell * 0.12, ly, x + cell * 0.82, ly + mrz_h * 0.28, dark, 0.9);
                }
            }
        }
    }

    // Main portrait last, opaque, with a thin frame.
    if let (Some(st), Some(pr)) = (scene.portrait, portrait_rect) {
        let (pimg, pface) = crop_portrait(src, face, st.margin, pr.width().round() as u32, pr.height().round() as u32);
        let sat = if st.grayscale { 0.0 } else { st.saturation };
        let look = print_look(&pimg, sat, st.contrast);
        let (x1, y1) = (pr.x1.round(), pr.y1.round());
        c.rect(x1 - 2.0, y1 - 2.0, x1 + pimg.width() as f32 + 2.0, y1 + pimg.height() as f32 + 2.0, lerp3(dark, light_a, 0.6), 0.8);
        paste(&mut c, &look, pimg.width() as usize, pimg.height() as usize, x1, y1, 1.0);
        let rect = BBox { x1, y1, x2: x1 + pimg.width() as f32, y2: y1 + pimg.height() as f32 };
        truth.portrait = Some((rect, offset_box(pface, x1, y1)));
    }
    (c, truth)
}

fn offset_box(b: BBox, dx: f32, dy: f32) -> BBox {
    BBox { x1: b.x1 + dx, y1: b.y1 + dy, x2: b.x2 + dx, y2: b.y2 + dy }
}

fn paste(c: &mut Canvas, img: &[[f32; 3]], iw: usize, ih: usize, x0: f32, y0: f32, alpha: f32) {
    let (x0, y0) = (x0 as i64, y0 as i64);
    for y in 0..ih {
        for x in 0..iw {
            let (cx, cy) = (x0 + x as i64, y0 + y as i64);
            if cx >= 0 && cy >= 0 && (cx as usize) < c.w && (cy as usize) < c.h {
                c.blend(cx as usize, cy as usize, img[y * iw + x], alpha);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The photo
// ---------------------------------------------------------------------------------------

/// The card-to-photo homography of a scene and the similarity scale (photo px per card px).
fn placement(scene: &Scene, portrait_centre: Option<Point>) -> (Homography, f32) {
    let (w, h) = scene.layout.card_size();
    let (wf, hf) = (w as f32, h as f32);
    let (pw, ph) = (scene.photo_size.0 as f32, scene.photo_size.1 as f32);
    let card = [Point::new(0.0, 0.0), Point::new(wf, 0.0), Point::new(wf, hf), Point::new(0.0, hf)];
    // Jittered corners relative to the card centre, rotated.
    let th = scene.rotation_deg.to_radians();
    let (s, co) = th.sin_cos();
    let rot = |p: Point| Point::new(p.x * co - p.y * s, p.x * s + p.y * co);
    let local: [Point; 4] = std::array::from_fn(|i| {
        let j = scene.corner_jitter[i];
        rot(Point::new(card[i].x - wf / 2.0 + j[0] * wf, card[i].y - hf / 2.0 + j[1] * hf))
    });
    let bb = BBox::around(local);
    let fit = (pw / bb.width()).min(ph / bb.height());
    let mut scale = fit * scene.fill.clamp(0.05, 1.0);
    if scene.cut_off.is_some() {
        scale = fit * 1.1;
    }
    let centre_for = |scale: f32, t: Point| -> [Point; 4] { local.map(|p| Point::new(p.x * scale + t.x, p.y * scale + t.y)) };
    let slack = (pw - bb.width() * scale, ph - bb.height() * scale);
    let mut t = Point::new(
        -bb.x1 * scale + slack.0.max(0.0) * scene.offset[0] + slack.0.min(0.0) * 0.5,
        -bb.y1 * scale + slack.1.max(0.0) * scene.offset[1] + slack.1.min(0.0) * 0.5,
    );
    let homog = |dst: &[Point; 4]| Homography::from_points(&card, dst).expect("a convex quad from a rotated, slightly moved rectangle");
    if let Some(target) = scene.cut_off {
        // Push away from the portrait (or along a seeded direction) until `target` is outside.
        let centre_card = Point::new(wf / 2.0, hf / 2.0);
        let from = portrait_centre.unwrap_or_else(|| {
            let a = (mix64(scene.seed) % 360) as f32;
            Point::new(centre_card.x - a.to_radians().cos(), centre_card.y - a.to_radians().sin())
        });
        let d = rot(Point::new(centre_card.x - from.x, centre_card.y - from.y));
        let n = (d.x * d.x + d.y * d.y).sqrt().max(1e-6);
        let dir = Point::new(d.x / n, d.y / n);
        let base = Point::new(pw / 2.0 - (bb.x1 + bb.x2) / 2.0 * scale, ph / 2.0 - (bb.y1 + bb.y2) / 2.0 * scale);
        let (mut lo, mut hi) = (0.0f32, pw + ph);
        for _ in 0..30 {
            let mid = (lo + hi) / 2.0;
            let tt = Point::new(base.x + dir.x * mid, base.y + dir.y * mid);
            let f = fraction_outside(&homog(&centre_for(scale, tt)), wf, hf, pw, ph);
            if f < target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        t = Point::new(base.x + dir.x * lo, base.y + dir.y * lo);
    }
    (homog(&centre_for(scale, t)), scale)
}

/// Fraction of the card rectangle `[0, w) x [0, h)` mapped outside the photo, on a grid.
fn fraction_outside(hm: &Homography, w: f32, h: f32, pw: f32, ph: f32) -> f32 {
    let (nx, ny) = (64, 40);
    let mut out = 0;
    for j in 0..ny {
        for i in 0..nx {
            let p = hm.apply(Point::new((i as f32 + 0.5) / nx as f32 * w, (j as f32 + 0.5) / ny as f32 * h));
            if p.x < 0.0 || p.y < 0.0 || p.x >= pw || p.y >= ph {
                out += 1;
            }
        }
    }
    out as f32 / (nx * ny) as f32
}

fn region(hm: &Homography, rect: BBox, face: BBox, pw: f32, ph: f32) -> Region {
    let quad = hm.quad(&rect);
    let face_quad = hm.quad(&face);
    let bbox = BBox::around(quad);
    let fq = face_quad;
    let centre = Point::new(fq.iter().map(|p| p.x).sum::<f32>() / 4.0, fq.iter().map(|p| p.y).sum::<f32>() / 4.0);
    let fw = (fq[0].dist(fq[1]) + fq[3].dist(fq[2])) / 2.0;
    let fh = (fq[0].dist(fq[3]) + fq[1].dist(fq[2])) / 2.0;
    let face_box = BBox { x1: centre.x - fw / 2.0, y1: centre.y - fh / 2.0, x2: centre.x + fw / 2.0, y2: centre.y + fh / 2.0 };
    let inner = Homography::from_points(&rect_corners(&BBox { x1: 0.0, y1: 0.0, x2: 1.0, y2: 1.0 }), &quad)
        .expect("the printed rectangle's image is a convex quad");
    Region {
        card_rect: rect,
        quad,
        bbox,
        face_card_rect: face,
        face_quad,
        face_bbox: BBox::around(face_quad),
        face_box,
        fraction_outside: fraction_outside(&inner, 1.0, 1.0, pw, ph),
    }
}

/// Signed distance (card px) to a rounded rectangle's edge, negative inside.
fn rounded_rect_sdf(x: f32, y: f32, w: f32, h: f32, radius: f32) -> f32 {
    let qx = (x - w / 2.0).abs() - (w / 2.0 - radius);
    let qy = (y - h / 2.0).abs() - (h / 2.0 - radius);
    let outside = (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt();
    outside + qx.max(qy).min(0.0) - radius
}

fn background(scene: &Scene) -> Canvas {
    let (pw, ph) = (scene.photo_size.0 as usize, scene.photo_size.1 as usize);
    let base = scene.background_colour.map(|v| v as f32);
    let mut c = Canvas::new(pw, ph, base);
    let seed = scene.seed ^ 0xB6;
    let mut r = Rng::new(seed);
    let ang = r.range(0.0, std::f32::consts::PI);
    let (sa, ca) = ang.sin_cos();
    let freq = r.range(0.02, 0.06);
    let weave = r.range(3.0, 7.0);
    let dark = base.map(|v| v * 0.55);
    for y in 0..ph {
        for x in 0..pw {
            let (xf, yf) = (x as f32, y as f32);
            let col = match scene.background {
                Background::Wood => {
                    let (u, v) = (xf * ca + yf * sa, -xf * sa + yf * ca);
                    let warp = 4.0 * fbm(seed, u * 0.004, v * 0.03);
                    let stripes = 0.5 + 0.5 * (v * freq + warp).sin();
                    let grain = 0.9 + 0.2 * value_noise(seed ^ 7, u * 0.02, v * 0.8);
                    lerp3(dark, base, stripes.powf(1.5)).map(|c| c * grain)
                }
                Background::Fabric => {
                    let wv = (xf * std::f32::consts::TAU / weave).sin() * (yf * std::f32::consts::TAU / weave).sin();
                    let n = (mix64(seed ^ ((y * pw + x) as u64)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                    let lo = fbm(seed, xf * 0.01, yf * 0.01) - 0.5;
                    base.map(|c| c * (1.0 + 0.08 * wv + 0.12 * n + 0.2 * lo))
                }
                Background::Table => {
                    let lo = fbm(seed, xf * 0.004, yf * 0.004) - 0.5;
                    base.map(|c| c * (1.0 + 0.15 * lo))
                }
            };
            c.px[y * pw + x] = col;
        }
    }
    c
}

fn sample_bilinear(img: &RgbImage, x: f32, y: f32) -> [f32; 3] {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (fx, fy) = (x - 0.5, y - 0.5);
    let (x0, y0) = (fx.floor(), fy.floor());
    let (tx, ty) = (fx - x0, fy - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let get = |i: i64, j: i64| {
        let p = img.get_pixel(i.clamp(0, w - 1) as u32, j.clamp(0, h - 1) as u32);
        [p[0] as f32, p[1] as f32, p[2] as f32]
    };
    let a = lerp3(get(x0, y0), get(x0 + 1, y0), tx);
    let b = lerp3(get(x0, y0 + 1), get(x0 + 1, y0 + 1), tx);
    lerp3(a, b, ty)
}

fn gaussian_blur(c: &mut Canvas, sigma: f32) {
    if sigma < 0.05 {
        return;
    }
    let rad = (3.0 * sigma).ceil() as i64;
    let k: Vec<f32> = (-rad..=rad).map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp()).collect();
    let sum: f32 = k.iter().sum();
    let k: Vec<f32> = k.iter().map(|v| v / sum).collect();
    let (w, h) = (c.w as i64, c.h as i64);
    let mut tmp = vec![[0.0f32; 3]; c.px.len()];
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0.0f32; 3];
            for (i, kv) in k.iter().enumerate() {
                let sx = (x + i as i64 - rad).clamp(0, w - 1);
                let p = c.px[(y * w + sx) as usize];
                for ch in 0..3 {
                    acc[ch] += kv * p[ch];
                }
            }
            tmp[(y * w + x) as usize] = acc;
        }
    }
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0.0f32; 3];
            for (i, kv) in k.iter().enumerate() {
                let sy = (y + i as i64 - rad).clamp(0, h - 1);
                let p = tmp[(sy * w + x) as usize];
                for ch in 0..3 {
                    acc[ch] += kv * p[ch];
                }
            }
            c.px[(y * w + x) as usize] = acc;
        }
    }
}

/// Pastes the source's head and shoulders beside `card` (on the side with more room), its
/// face `face_h` high (shrunk to fit), feathered by an elliptical mask so no frame shows.
/// Returns the face box in the photo.
fn draw_holder(photo: &mut Canvas, src: &RgbImage, face: BBox, card: &BBox, face_h: f32, vertical_pos: f32) -> BBox {
    let (pw, ph) = (photo.w as f32, photo.h as f32);
    let gap = 0.02 * pw;
    let (x_lo, x_hi) = if card.center().x < pw / 2.0 { (card.x2 + gap, pw) } else { (0.0, card.x1 - gap) };
    let free_w = (x_hi - x_lo).max(8.0);
    // Head and shoulders: 2.6 face heights high, 2.0 wide, face a little above the middle.
    let face_h = face_h.min(free_w / 2.0).min(ph / 2.8).max(8.0);
    let k = face_h / face.height().max(1.0);
    let (cw, ch) = (2.0 * face_h, 2.6 * face_h);
    let cx = (x_lo + x_hi) / 2.0;
    let cy = (ch / 2.0 + (ph - ch) * vertical_pos).clamp(ch * 0.4, ph - ch * 0.4);
    let fc = face.center();
    // Photo point -> source point: scale by 1/k about the face centre.
    let (x1, x2) = ((cx - cw / 2.0).max(0.0) as usize, ((cx + cw / 2.0) as usize).min(photo.w));
    let (y1, y2) = ((cy - ch / 2.0).max(0.0) as usize, ((cy + ch / 2.0) as usize).min(photo.h));
    let face_cy = cy - 0.1 * ch;
    // Pre-shrink the source so the bilinear sampling does not alias.
    let f = (k * 1.25).min(1.0);
    let small;
    let src = if f < 0.99 {
        small = image::imageops::resize(
            src,
            ((src.width() as f32 * f) as u32).max(2),
            ((src.height() as f32 * f) as u32).max(2),
            FilterType::Triangle,
        );
        &small
    } else {
        src
    };
    let fx = if f < 0.99 { f } else { 1.0 };
    for y in y1..y2 {
        for x in x1..x2 {
            let (dx, dy) = ((x as f32 + 0.5 - cx) / (cw / 2.0), (y as f32 + 0.5 - cy) / (ch / 2.0));
            let r = (dx * dx + dy * dy).sqrt();
            let a = ((1.0 - r) / 0.25).clamp(0.0, 1.0);
            if a <= 0.0 {
                continue;
            }
            let sx = (fc.x + (x as f32 + 0.5 - cx) / k) * fx;
            let sy = (fc.y + (y as f32 + 0.5 - face_cy) / k) * fx;
            if sx < 0.0 || sy < 0.0 || sx >= src.width() as f32 || sy >= src.height() as f32 {
                continue;
            }
            photo.blend(x, y, sample_bilinear(src, sx, sy), a);
        }
    }
    let (hw, hh) = (face.width() * k / 2.0, face.height() * k / 2.0);
    BBox { x1: cx - hw, y1: face_cy - hh, x2: cx + hw, y2: face_cy + hh }
}

/// Builds the photo of `scene`, printing the face `face_box` of `portrait_source` (ignored
/// for an empty card).
pub fn render(scene: &Scene, portrait_source: &RgbImage, face_box: BBox) -> Generated {
    let (cw, ch) = scene.layout.card_size();
    let (cwf, chf) = (cw as f32, ch as f32);
    let (pw, ph) = (scene.photo_size.0 as f32, scene.photo_size.1 as f32);
    let (card, truth) = draw_card(scene, portrait_source, face_box);
    let card_img = card.to_rgb();
    let portrait_centre = truth.portrait.map(|(r, _)| r.center());
    let (hm, scale) = placement(scene, portrait_centre);
    let inv = hm.inverse().expect("the card's homography is invertible");

    // Pre-shrink the card when it is reduced, so the bilinear sampling does not alias.
    let f = (scale * 1.25).min(1.0);
    let sampled = if f < 0.99 {
        image::imageops::resize(&card_img, ((cwf * f).round() as u32).max(2), ((chf * f).round() as u32).max(2), FilterType::Triangle)
    } else {
        card_img
    };
    let (kx, ky) = (sampled.width() as f32 / cwf, sampled.height() as f32 / chf);
    let radius = match scene.layout {
        Layout::IdCard => 0.037 * cwf,
        Layout::Passport => 6.0,
    };

    let mut photo = background(scene);
    let holder_face = match (scene.holder, truth.portrait) {
        (Some(hd), Some((_, face))) => {
            let card_box = BBox::around(hm.quad(&BBox { x1: 0.0, y1: 0.0, x2: cwf, y2: chf }));
            let printed = region(&hm, face, face, pw, ph).face_box.height();
            Some(draw_holder(&mut photo, portrait_source, face_box, &card_box, printed * hd.face_ratio, hd.vertical_pos))
        }
        _ => None,
    };
    let (w, h) = (photo.w, photo.h);
    let (lg, ld) = (scene.lighting[0], scene.lighting[1].to_radians());
    let (ls, lc) = ld.sin_cos();
    for y in 0..h {
        for x in 0..w {
            let p = Point::new(x as f32 + 0.5, y as f32 + 0.5);
            let q = inv.apply(p);
            let d = rounded_rect_sdf(q.x, q.y, cwf, chf, radius);
            let a = (0.5 - d * scale).clamp(0.0, 1.0);
            if a > 0.0 {
                let col = sample_bilinear(&sampled, q.x * kx, q.y * ky);
                photo.blend(x, y, col, a);
            }
            let light = 1.0 + lg * ((p.x / pw - 0.5) * lc + (p.y / ph - 0.5) * ls);
            let px = &mut photo.px[y * w + x];
            *px = px.map(|v| v * light);
        }
    }

    let portrait = truth.portrait.map(|(r, f)| region(&hm, r, f, pw, ph));
    let ghost = truth.ghost.map(|(r, f)| region(&hm, r, f, pw, ph));

    // Glare.
    let mut glare_on_portrait = false;
    if let Some(g) = scene.glare {
        let (centre, size) = match (g.over_portrait, &portrait) {
            (true, Some(p)) => {
                glare_on_portrait = true;
                let b = p.bbox;
                let s = b.width().max(b.height());
                (Point::new(b.center().x + g.offset[0] * s, b.center().y + g.offset[1] * s), s)
            }
            _ => {
                // On the text side of the card.
                let u = match scene.layout {
                    Layout::IdCard => 0.3,
                    Layout::Passport => 0.7,
                };
                let c = hm.apply(Point::new((u + g.offset[0]) * cwf, (0.5 + g.offset[1]) * chf));
                let cb = BBox::around(hm.quad(&BBox { x1: 0.0, y1: 0.0, x2: cwf, y2: chf }));
                (c, cb.width().max(cb.height()))
            }
        };
        let rx = (g.size * size * 0.5).max(1.0);
        let ry = (rx * g.aspect).max(1.0);
        let (sa, ca) = g.angle_deg.to_radians().sin_cos();
        for y in 0..h {
            for x in 0..w {
                let (dx, dy) = (x as f32 + 0.5 - centre.x, y as f32 + 0.5 - centre.y);
                let (u, v) = ((dx * ca + dy * sa) / rx, (-dx * sa + dy * ca) / ry);
                let r2 = u * u + v * v;
                if r2 < 9.0 {
                    let add = 255.0 * g.strength * (-2.0 * r2).exp();
                    let px = &mut photo.px[y * w + x];
                    *px = px.map(|c| c + add);
                }
            }
        }
    }

    gaussian_blur(&mut photo, scene.blur_sigma);
    if scene.noise_sigma > 0.0 {
        let mut r = Rng::new(scene.seed ^ 0x4015E);
        for p in &mut photo.px {
            for c in p.iter_mut() {
                *c += scene.noise_sigma * r.normal();
            }
        }
    }

    let rgb = photo.to_rgb();
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, scene.jpeg_quality.clamp(1, 100))
        .encode_image(&rgb)
        .expect("encoding an RGB image to JPEG in memory cannot fail");
    let image = image::load_from_memory(&jpeg).expect("the JPEG just written decodes").to_rgb8();

    let corners = hm.quad(&BBox { x1: 0.0, y1: 0.0, x2: cwf, y2: chf });
    let card_fraction_outside = fraction_outside(&hm, cwf, chf, pw, ph);
    Generated {
        jpeg,
        image,
        layout: scene.layout,
        card_size: (cw, ch),
        card_to_photo: hm,
        corners,
        portrait,
        ghost,
        card_fraction_outside,
        holder_face,
        applied: Applied {
            blur_sigma: scene.blur_sigma,
            noise_sigma: scene.noise_sigma,
            glare: scene.glare.is_some(),
            glare_over_portrait: glare_on_portrait,
            glare_strength: scene.glare.map_or(0.0, |g| g.strength),
            jpeg_quality: scene.jpeg_quality,
            rotation_deg: scene.rotation_deg,
            cut_off: scene.cut_off.is_some(),
        },
    }
}
