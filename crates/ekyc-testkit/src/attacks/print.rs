//! Print attacks: a photo of the person printed on paper and held up to the camera.
//!
//! How a frame is made, following the light ([`print_with`]):
//! 1. **The printer.** The photo's colours are partly desaturated (consumer printing and
//!    cheap colour management lose chroma, never all of it) and turned into cyan, magenta,
//!    yellow and black ink coverages (grey-component replacement moves part of the common
//!    grey into black ink). Each ink is laid down as binary dots: an amplitude-modulated
//!    screen (round dots on a grid rotated per ink, 15/75/0/45 degrees, as offset presses
//!    and laser printers do) or error diffusion (Floyd-Steinberg on the printer's dot grid,
//!    as inkjets do). Dot gain spreads every dot a little.
//! 2. **The paper.** Reflectance is the paper's white times the transmission of each ink
//!    layer present: the gamut and the contrast are those of ink on paper (white at most
//!    the paper's 80-92 %, black at best a few percent), not those of the photo. Paper
//!    fibres add fine grain.
//! 3. **The sheet in the room.** The sheet is bent like a held page (a cylinder about its
//!    vertical axis: the sides recede and shrink, and the shading changes across the
//!    bend), tilted in perspective and rotated, lit unevenly (a gradient across the frame),
//!    sometimes glossy (a broad highlight). Around it: the room, and sometimes the paper's
//!    white border, its edge and the fingers holding it.
//! 4. **The camera** integrates the light over each pixel (3 x 3 samples per pixel, so
//!    halftone dots finer than a pixel alias as they do on a sensor), then blurs, mosaics,
//!    adds noise and demosaics ([`Camera::capture`]).
//!
//! Everything is drawn from the seed; the same source, face and seed give the same pixels.

use ekyc_vision::geometry::{BBox, Homography, Point};
use image::RgbImage;

use super::Attack;
use super::camera::{Camera, Plane, paint_finger, room, skin};
use crate::idcard::Rng;

/// How the inks are laid down.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Halftone {
    /// Round dots on a screen rotated per ink; the screen's period as seen by the camera,
    /// in camera pixels (a magazine photo held close: 2-6 px).
    Am { period_px: f32 },
    /// Error diffusion on a square dot grid; the dot pitch as seen by the camera, in camera
    /// pixels (an inkjet's 300-600 dpi: well under a pixel).
    ErrorDiffusion { dot_px: f32 },
}

/// Everything that varies between print attacks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrintParams {
    /// The camera frame, pixels.
    pub frame: (u32, u32),
    /// The printed face's width as a fraction of the frame's width.
    pub face_width: f32,
    /// Where the face's centre lands, as fractions of the frame.
    pub face_centre: (f32, f32),
    /// In-plane rotation of the sheet, degrees.
    pub rotation_deg: f32,
    /// Perspective: each corner of the sheet moves by up to this fraction of its size.
    pub perspective: f32,
    /// Angle the sheet's width subtends when bent, radians (0: flat).
    pub bend_rad: f32,
    /// White paper border around the photo, as a fraction of the photo's width.
    pub margin: f32,
    /// Chroma kept by the printer (1: all).
    pub saturation: f32,
    /// Reflectance of solid black ink.
    pub ink_black: f32,
    /// Reflectance of the bare paper, per channel.
    pub paper: [f32; 3],
    /// How much dots spread: coverage `a` prints as `a + 4 · dot_gain · a (1 - a)`.
    pub dot_gain: f32,
    pub halftone: Halftone,
    /// Paper fibre texture: relative reflectance variation.
    pub grain: f32,
    /// Light on the sheet at the frame's centre (linear, 1.0 = clipping for a perfect white).
    pub light: f32,
    /// Relative change of the light across the frame (x, y), per frame width or height.
    pub gradient: [f32; 2],
    /// Direction of the light against the sheet's bend axis, radians.
    pub light_angle: f32,
    /// Peak of a broad specular highlight on glossy paper (0: matte).
    pub gloss: f32,
    /// Whether fingers hold the sheet at a visible edge.
    pub fingers: bool,
    pub camera: Camera,
}

impl PrintParams {
    /// Parameters drawn from `seed`; even seeds print with an AM screen, odd ones with
    /// error diffusion.
    pub fn random(seed: u64) -> PrintParams {
        let mut r = Rng::new(seed ^ 0x5052_494e_5400);
        let frame = if r.chance(0.5) { (640, 480) } else { (1280, 720) };
        let halftone = if seed.is_multiple_of(2) {
            Halftone::Am { period_px: r.range(2.2, 6.0) }
        } else {
            Halftone::ErrorDiffusion { dot_px: r.range(0.3, 0.7) }
        };
        let paper_white = r.range(0.80, 0.92);
        let tint = r.range(-0.03, 0.03);
        PrintParams {
            frame,
            face_width: r.range(0.22, 0.42),
            face_centre: (r.range(0.4, 0.6), r.range(0.38, 0.55)),
            rotation_deg: r.range(-6.0, 6.0),
            perspective: r.range(0.0, 0.06),
            bend_rad: if r.chance(0.7) { r.range(0.15, 0.9) } else { 0.0 },
            margin: if r.chance(0.5) { r.range(0.02, 0.08) } else { 0.0 },
            saturation: r.range(0.45, 0.85),
            ink_black: r.range(0.03, 0.09),
            paper: [paper_white * (1.0 + tint), paper_white, paper_white * (1.0 - tint)],
            dot_gain: r.range(0.04, 0.18),
            halftone,
            grain: r.range(0.01, 0.05),
            light: r.range(0.85, 1.15),
            gradient: [r.range(-0.35, 0.35), r.range(-0.35, 0.35)],
            light_angle: r.range(-0.5, 0.5),
            gloss: if r.chance(0.35) { r.range(0.05, 0.25) } else { 0.0 },
            fingers: r.chance(0.6),
            camera: Camera::random(&mut r),
        }
    }

    /// The method name in attack sets: `am_halftone` or `error_diffusion`.
    pub fn method(&self) -> &'static str {
        match self.halftone {
            Halftone::Am { .. } => "am_halftone",
            Halftone::ErrorDiffusion { .. } => "error_diffusion",
        }
    }
}

/// A print attack of `src` whose face is `face` (pixels of `src`), drawn from `seed`.
pub fn print(src: &RgbImage, face: BBox, seed: u64) -> Attack {
    let params = PrintParams::random(seed);
    Attack { image: print_with(src, face, &params, seed), method: params.method(), jpeg_quality: params.camera.jpeg_quality }
}

/// Screen angles of the four inks (cyan, magenta, yellow, black), degrees.
const SCREEN_ANGLES: [f32; 4] = [15.0, 75.0, 0.0, 45.0];
/// Transmission of each ink layer (linear, per channel): cyan absorbs red, magenta green,
/// yellow blue; black is `ink_black` in every channel.
const INK_FILTERS: [[f32; 3]; 3] = [[0.10, 0.72, 0.92], [0.88, 0.14, 0.62], [0.95, 0.88, 0.10]];
/// Camera samples per pixel and axis.
const SUPERSAMPLE: usize = 3;

/// The sheet's geometry: camera pixels to points of the flat sheet (source pixels).
struct SheetMap {
    to_bent: Homography,
    centre: [f32; 2],
    /// Bend radius in source pixels (infinite: flat).
    radius: f32,
    /// Viewing distance in source pixels, for the bend's foreshortening.
    distance: f32,
}

impl SheetMap {
    /// The flat-sheet point seen at camera point `p`, and the sheet's surface angle there
    /// (radians, 0 facing the camera), or `None` beyond the bend's silhouette.
    fn sheet_point(&self, p: Point) -> Option<([f32; 2], f32)> {
        let b = self.to_bent.apply(p);
        let (xr, yr) = (b.x - self.centre[0], b.y - self.centre[1]);
        if !self.radius.is_finite() {
            return Some(([b.x, b.y], 0.0));
        }
        if xr.abs() >= self.radius {
            return None;
        }
        let angle = (xr / self.radius).asin();
        let recede = self.radius * (1.0 - angle.cos());
        let v = yr * (self.distance + recede) / self.distance;
        Some(([self.centre[0] + self.radius * angle, self.centre[1] + v], angle))
    }
}

/// Ink coverages (cyan, magenta, yellow, black) for an sRGB colour in [0, 1].
fn inks(rgb: [f32; 3], saturation: f32, dot_gain: f32) -> [f32; 4] {
    let y = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
    let [c, m, ye] = rgb.map(|v| 1.0 - (y + saturation * (v - y)).clamp(0.0, 1.0));
    let k = 0.7 * c.min(m).min(ye);
    [c - k, m - k, ye - k, k].map(|a| (a + 4.0 * dot_gain * a * (1.0 - a)).clamp(0.0, 1.0))
}

/// Reflectance of paper carrying the inks present (bits 0-3: c, m, y, k).
fn reflectance(present: u8, p: &PrintParams) -> [f32; 3] {
    let mut r = p.paper;
    for (i, f) in INK_FILTERS.iter().enumerate() {
        if present & (1 << i) != 0 {
            for c in 0..3 {
                r[c] *= f[c];
            }
        }
    }
    if present & 8 != 0 {
        r = r.map(|v| v * p.ink_black);
    }
    r
}

/// [`print`] with explicit parameters; `seed` draws the noise and the room.
pub fn print_with(src: &RgbImage, face: BBox, p: &PrintParams, seed: u64) -> RgbImage {
    let mut rng = Rng::new(seed ^ 0x7072_696e_7431);
    let (fw, fh) = (p.frame.0 as f32, p.frame.1 as f32);
    let (sw, sh) = (src.width() as f32, src.height() as f32);
    let margin = p.margin * sw;
    // Camera pixels per source pixel, and the similarity placing the face.
    let scale = p.face_width * fw / face.width().max(1.0);
    let (sin, cos) = p.rotation_deg.to_radians().sin_cos();
    let fc = face.center();
    let place = |u: f32, v: f32| {
        let (du, dv) = ((u - fc.x) * scale, (v - fc.y) * scale);
        Point::new(p.face_centre.0 * fw + cos * du - sin * dv, p.face_centre.1 * fh + sin * du + cos * dv)
    };
    let paper = [
        Point::new(-margin, -margin),
        Point::new(sw + margin, -margin),
        Point::new(sw + margin, sh + margin),
        Point::new(-margin, sh + margin),
    ];
    let size = ((sw + 2.0 * margin) * scale).max((sh + 2.0 * margin) * scale);
    let quad = paper.map(|c| {
        let q = place(c.x, c.y);
        Point::new(q.x + p.perspective * size * rng.range(-1.0, 1.0), q.y + p.perspective * size * rng.range(-1.0, 1.0))
    });
    let to_bent = Homography::from_points(&quad, &paper).expect("a sheet's corners are never collinear: this is a bug");
    let map = SheetMap {
        to_bent,
        centre: [sw / 2.0, sh / 2.0],
        radius: if p.bend_rad > 1e-3 { (sw + 2.0 * margin) / p.bend_rad } else { f32::INFINITY },
        distance: 2.5 * (sw + 2.0 * margin),
    };

    let source = Plane::from_srgb(src);
    let lut_inv = |v: f32| super::camera::encode_srgb(v) as f32 / 255.0;
    let dots = match p.halftone {
        Halftone::ErrorDiffusion { dot_px } => Some(diffuse(&source, p, dot_px / scale, &map, lut_inv)),
        Halftone::Am { .. } => None,
    };
    let period = match p.halftone {
        Halftone::Am { period_px } => period_px / scale,
        Halftone::ErrorDiffusion { .. } => 1.0,
    };
    let screens: [(f32, f32); 4] = SCREEN_ANGLES.map(|a| a.to_radians().sin_cos());
    let room_seed = rng.next_u64();
    let gloss_centre = (rng.range(0.2, 0.8) * fw, rng.range(0.1, 0.6) * fh);
    let gloss_radius = rng.range(0.2, 0.5) * fw;

    let (w, h) = (p.frame.0 as usize, p.frame.1 as usize);
    let mut scene = Plane::new(w, h, [0.0; 3]);
    let inv = 1.0 / (SUPERSAMPLE * SUPERSAMPLE) as f32;
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0.0f32; 3];
            for sy in 0..SUPERSAMPLE {
                for sx in 0..SUPERSAMPLE {
                    let cx = x as f32 + (sx as f32 + 0.5) / SUPERSAMPLE as f32;
                    let cy = y as f32 + (sy as f32 + 0.5) / SUPERSAMPLE as f32;
                    let light = p.light * (1.0 + p.gradient[0] * (cx / fw - 0.5) + p.gradient[1] * (cy / fh - 0.5));
                    let radiance = match map.sheet_point(Point::new(cx, cy)) {
                        Some(([u, v], angle)) if u >= -margin && v >= -margin && u < sw + margin && v < sh + margin => {
                            let refl = if u < 0.0 || v < 0.0 || u >= sw || v >= sh {
                                p.paper
                            } else if let Some(d) = &dots {
                                reflectance(d.at(u, v), p)
                            } else {
                                let rgb = source.bilinear(u, v).map(lut_inv);
                                let cover = inks(rgb, p.saturation, p.dot_gain);
                                let mut present = 0u8;
                                for (i, (s, c)) in screens.iter().enumerate() {
                                    let (ru, rv) = ((c * u + s * v) / period, (-s * u + c * v) / period);
                                    let t = 0.5 - 0.25 * ((std::f32::consts::TAU * ru).cos() + (std::f32::consts::TAU * rv).cos());
                                    if cover[i] > t {
                                        present |= 1 << i;
                                    }
                                }
                                reflectance(present, p)
                            };
                            let fibre = 1.0 + p.grain * (2.0 * crate::idcard::value_noise(room_seed ^ 7, u * 0.7, v * 0.7) - 1.0);
                            let shade = (angle - p.light_angle).cos().max(0.0) / p.light_angle.cos();
                            let dx = (cx - gloss_centre.0) / gloss_radius;
                            let dy = (cy - gloss_centre.1) / gloss_radius;
                            let sheen = p.gloss * (-(dx * dx + dy * dy)).exp();
                            refl.map(|r| r * fibre * shade * light + sheen)
                        }
                        _ => room(room_seed, cx, cy, 0.15 * fw).map(|v| v * light),
                    };
                    for c in 0..3 {
                        acc[c] += radiance[c];
                    }
                }
            }
            scene.px[y * w + x] = acc.map(|v| v * inv);
        }
    }
    if p.fingers {
        hold(&mut scene, &quad, &mut rng);
    }
    p.camera.capture(&scene, &mut rng)
}

/// Fingers over the sheet's edges that the camera sees: a thumb from below over the bottom
/// edge, or fingers from a side.
fn hold(scene: &mut Plane, quad: &[Point; 4], rng: &mut Rng) {
    let (w, h) = (scene.w as f32, scene.h as f32);
    let colour = skin(rng);
    let r = rng.range(0.035, 0.055) * h;
    // Edges: top, right, bottom, left (quad is clockwise from the top-left corner).
    for (a, b, outward) in [(2, 3, [0.0, 1.0]), (1, 2, [1.0, 0.0]), (3, 0, [-1.0, 0.0])] {
        let t = rng.range(0.25, 0.75);
        let (pa, pb) = (quad[a], quad[b]);
        let e = [pa.x + t * (pb.x - pa.x), pa.y + t * (pb.y - pa.y)];
        if e[0] < r || e[1] < r || e[0] > w - r || e[1] > h - r {
            continue;
        }
        let reach = rng.range(1.0, 2.5) * r;
        let inward = [e[0] - outward[0] * reach, e[1] - outward[1] * reach];
        let away = [e[0] + outward[0] * 6.0 * r, e[1] + outward[1] * 6.0 * r];
        paint_finger(scene, away, inward, r, colour);
        return;
    }
}

/// Error-diffused ink dots over the part of the sheet the camera sees.
struct Dots {
    origin: [f32; 2],
    pitch: f32,
    cols: usize,
    rows: usize,
    /// Bits 0-3: cyan, magenta, yellow, black.
    cells: Vec<u8>,
}

impl Dots {
    fn at(&self, u: f32, v: f32) -> u8 {
        let i = ((u - self.origin[0]) / self.pitch).floor();
        let j = ((v - self.origin[1]) / self.pitch).floor();
        if i < 0.0 || j < 0.0 || i >= self.cols as f32 || j >= self.rows as f32 {
            return 0;
        }
        self.cells[j as usize * self.cols + i as usize]
    }
}

/// Floyd-Steinberg per ink on a grid of `pitch` source pixels, over the sheet region the
/// frame can see.
fn diffuse(source: &Plane, p: &PrintParams, pitch: f32, map: &SheetMap, encode: impl Fn(f32) -> f32) -> Dots {
    let (fw, fh) = (p.frame.0 as f32, p.frame.1 as f32);
    let (mut u1, mut v1, mut u2, mut v2) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for j in 0..=16 {
        for i in 0..=16 {
            if let Some(([u, v], _)) = map.sheet_point(Point::new(fw * i as f32 / 16.0, fh * j as f32 / 16.0)) {
                u1 = u1.min(u);
                u2 = u2.max(u);
                v1 = v1.min(v);
                v2 = v2.max(v);
            }
        }
    }
    let pad = 4.0 * pitch;
    let (u1, v1) = ((u1 - pad).max(0.0), (v1 - pad).max(0.0));
    let (u2, v2) = ((u2 + pad).min(source.w as f32), (v2 + pad).min(source.h as f32));
    let pitch = pitch.max(1e-3);
    let cols = (((u2 - u1) / pitch).ceil().max(0.0) as usize).min(8192);
    let rows = (((v2 - v1) / pitch).ceil().max(0.0) as usize).min(8192);
    let mut cells = vec![0u8; cols * rows];
    let mut err = vec![[0.0f32; 4]; 2 * (cols + 2)];
    for j in 0..rows {
        let (cur, next) = if j % 2 == 0 { (0, cols + 2) } else { (cols + 2, 0) };
        for e in &mut err[next..next + cols + 2] {
            *e = [0.0; 4];
        }
        for i in 0..cols {
            let u = u1 + (i as f32 + 0.5) * pitch;
            let v = v1 + (j as f32 + 0.5) * pitch;
            let rgb = source.bilinear(u, v).map(&encode);
            let want = inks(rgb, p.saturation, p.dot_gain);
            let mut bits = 0u8;
            for k in 0..4 {
                let value = want[k] + err[cur + i + 1][k];
                let ink = value > 0.5;
                if ink {
                    bits |= 1 << k;
                }
                let e = value - if ink { 1.0 } else { 0.0 };
                err[cur + i + 2][k] += e * 7.0 / 16.0;
                err[next + i][k] += e * 3.0 / 16.0;
                err[next + i + 1][k] += e * 5.0 / 16.0;
                err[next + i + 2][k] += e * 1.0 / 16.0;
            }
            cells[j * cols + i] = bits;
        }
    }
    Dots { origin: [u1, v1], pitch, cols, rows, cells }
}
