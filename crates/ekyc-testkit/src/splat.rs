//! A second, independent way to render a still photo's face at another head pose: forward
//! 3-D point splatting over a dense depth map. Like [`crate::headturn`] it exists to make
//! attacks: **every frame rendered from a still photo is an attack** (species
//! `rendered_still`), whatever renderer made it.
//!
//! How a frame is made ([`render_splat_with`]):
//! 1. The head's pose, scale and pivot come from a rigid fit of the 468 FaceMesh points to
//!    the canonical face ([`HeadFit`]); the turn is the same head rotation as in
//!    [`crate::headturn`] (yaw about the head's vertical axis, pitch about its left-right
//!    axis, roll kept) about the pivot behind the nose.
//! 2. **A dense depth map.** Inside the face's outline, each pixel's depth is interpolated
//!    from the mesh's z over a Delaunay triangulation of the mesh points as they lie in the
//!    photo (nearest surface where triangles overlap). Outside the outline, in a band out
//!    to [`SplatOptions::band`] times the outline's radius (hair, ears, neck), depth eases
//!    from the outline's depth to the pivot's and the share of the turn a pixel takes eases
//!    from 1 to 0, so the head carries its surroundings and the background beyond the band
//!    stays where it is.
//! 3. **Forward splatting.** Every pixel of the head region, sampled 2 x 2 per pixel, is
//!    lifted to 3-D through a pinhole camera [`SplatOptions::camera_distance`] face widths
//!    away, rotated about the pivot, projected back and written to the nearest output pixel
//!    through a z-buffer (the nearer surface wins).
//! 4. **Holes** (skin the photo never showed, stretched regions) are filled push-pull: a
//!    pyramid of averages of the written pixels fills each empty pixel from the finest
//!    level that has data around it.
//!
//! Unlike the head-turn renderer (inverse mapping, piecewise-affine triangles, bilinear
//! sampling, a fixed ring of anchors), this maps forward, point by point, with a per-pixel
//! depth, so its traces (splat aliasing, push-pull smears, a smooth band) are its own.
//! Rendering is deterministic.

use ekyc_vision::geometry::{Mat3, mat_vec};
use image::RgbImage;

use crate::headturn::{DEFAULT_CAMERA_DISTANCE, FACE_OVAL, HeadFit, MESH_POINTS, TurnableFace};

/// How a splatted turn is rendered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplatOptions {
    /// Distance from the camera to the face, in face widths (as
    /// [`crate::headturn::TurnOptions::camera_distance`]).
    pub camera_distance: f64,
    /// Outer edge of the band that moves with the head, as a multiple of the outline's
    /// distance from the face's centre in each direction.
    pub band: f64,
}

impl Default for SplatOptions {
    fn default() -> Self {
        SplatOptions { camera_distance: DEFAULT_CAMERA_DISTANCE, band: 1.7 }
    }
}

/// Directions around the face's centre at which the outline is tabulated.
const BINS: usize = 720;
/// Levels of partial turn in the band.
const LEVELS: usize = 32;

/// The face's outline seen from its centre: radius and depth per direction.
struct Outline {
    centre: [f64; 2],
    radius: Vec<f64>,
    depth: Vec<f64>,
}

impl Outline {
    fn new(mesh: &[[f32; 3]]) -> Outline {
        let poly: Vec<[f64; 3]> = FACE_OVAL.iter().map(|&i| mesh[i].map(f64::from)).collect();
        let n = poly.len() as f64;
        let centre = [poly.iter().map(|p| p[0]).sum::<f64>() / n, poly.iter().map(|p| p[1]).sum::<f64>() / n];
        let mut radius = vec![0.0; BINS];
        let mut depth = vec![0.0; BINS];
        for b in 0..BINS {
            let angle = std::f64::consts::TAU * b as f64 / BINS as f64;
            let d = [angle.cos(), angle.sin()];
            // The outermost crossing of the ray with the outline.
            for k in 0..poly.len() {
                let (a, e) = (poly[k], poly[(k + 1) % poly.len()]);
                let (ex, ey) = (e[0] - a[0], e[1] - a[1]);
                let det = d[0] * (-ey) - d[1] * (-ex);
                if det.abs() < 1e-12 {
                    continue;
                }
                let (rx, ry) = (a[0] - centre[0], a[1] - centre[1]);
                let t = (rx * (-ey) - ry * (-ex)) / det;
                let s = (d[0] * ry - d[1] * rx) / det;
                if (0.0..=1.0).contains(&s) && t > radius[b] {
                    radius[b] = t;
                    depth[b] = a[2] + s * (e[2] - a[2]);
                }
            }
        }
        Outline { centre, radius, depth }
    }

    /// Distance from the centre, and the outline's radius and depth in that direction.
    fn polar(&self, x: f64, y: f64) -> (f64, f64, f64) {
        let (dx, dy) = (x - self.centre[0], y - self.centre[1]);
        let f = dy.atan2(dx).rem_euclid(std::f64::consts::TAU) / std::f64::consts::TAU * BINS as f64;
        let (b0, a) = (f.floor() as usize % BINS, f - f.floor());
        let b1 = (b0 + 1) % BINS;
        (dx.hypot(dy), self.radius[b0] * (1.0 - a) + self.radius[b1] * a, self.depth[b0] * (1.0 - a) + self.depth[b1] * a)
    }
}

/// `img` with the face whose FaceMesh points are `mesh` turned by `d_yaw_deg` (positive: the
/// person's own left) and `d_pitch_deg` (positive: up), splatted with the default options.
///
/// # Panics
/// When `mesh` does not hold exactly 468 points or an angle is not finite.
pub fn render_splat(img: &RgbImage, mesh: &[[f32; 3]], d_yaw_deg: f32, d_pitch_deg: f32) -> RgbImage {
    render_splat_with(img, mesh, d_yaw_deg, d_pitch_deg, &SplatOptions::default())
}

/// [`render_splat`] with explicit options.
pub fn render_splat_with(img: &RgbImage, mesh: &[[f32; 3]], d_yaw_deg: f32, d_pitch_deg: f32, options: &SplatOptions) -> RgbImage {
    assert_eq!(mesh.len(), MESH_POINTS, "a FaceMesh mesh has {MESH_POINTS} points");
    assert!(d_yaw_deg.is_finite() && d_pitch_deg.is_finite(), "turn angles must be finite");
    let fit = HeadFit::of(mesh);
    let turns: Vec<Mat3> =
        (0..=LEVELS).map(|k| fit.turn(d_yaw_deg * k as f32 / LEVELS as f32, d_pitch_deg * k as f32 / LEVELS as f32)).collect();
    let pivot = fit.pivot();
    let z_ref = mesh.iter().map(|p| f64::from(p[2])).sum::<f64>() / mesh.len() as f64;
    let distance = options.camera_distance * fit.face_width_px();
    let perspective = distance.is_finite() && distance > 0.0;
    let outline = Outline::new(mesh);
    let (w, h) = (img.width() as usize, img.height() as usize);

    // The head region: every pixel within the band, clipped to the image.
    let reach = outline.radius.iter().fold(0.0f64, |m, &r| m.max(r)) * options.band + 2.0;
    let clip = |v: f64, hi: usize| v.clamp(0.0, hi as f64) as usize;
    let (x1, x2) = (clip((outline.centre[0] - reach).floor(), w), clip((outline.centre[0] + reach).ceil(), w));
    let (y1, y2) = (clip((outline.centre[1] - reach).floor(), h), clip((outline.centre[1] + reach).ceil(), h));
    if x2 <= x1 || y2 <= y1 {
        return img.clone();
    }
    let rw = x2 - x1;
    let rh = y2 - y1;
    let in_region = |x: f64, y: f64| {
        let (r, ro, _) = outline.polar(x, y);
        r < ro * options.band
    };

    let face_depth = mesh_depth(mesh, (x1, y1, rw, rh));
    let sampler = crate::attacks::camera::Plane::from_srgb(img);
    let lift = |x: f64, y: f64, z: f64| -> [f64; 3] {
        let z = z - z_ref;
        if perspective {
            let depth = distance + z;
            [(x - pivot[0]) * depth / distance, (y - pivot[1]) * depth / distance, depth]
        } else {
            [x - pivot[0], y - pivot[1], z]
        }
    };
    let c = lift(pivot[0], pivot[1], pivot[2]);

    let mut zbuf = vec![f64::INFINITY; rw * rh];
    let mut colour = vec![[0.0f32; 3]; rw * rh];
    for py in y1..y2 {
        for px in x1..x2 {
            for (sx, sy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                let (x, y) = (px as f64 + sx, py as f64 + sy);
                let (r, ro, zo) = outline.polar(x, y);
                let outer = ro * options.band;
                if r >= outer {
                    continue;
                }
                let (z, share) = if r <= ro {
                    let k = (py - y1) * rw + (px - x1);
                    (if face_depth[k].is_finite() { face_depth[k] } else { zo }, 1.0)
                } else {
                    let t = (r - ro) / (outer - ro);
                    let s = t * t * (3.0 - 2.0 * t);
                    (zo + (pivot[2] - zo) * s, 1.0 - s)
                };
                let turn = &turns[(share * LEVELS as f64).round() as usize];
                let q = lift(x, y, z);
                let v = mat_vec(turn, [q[0] - c[0], q[1] - c[1], q[2] - c[2]]);
                let v = [v[0] + c[0], v[1] + c[1], v[2] + c[2]];
                let (ox, oy) = if perspective {
                    (pivot[0] + v[0] * distance / v[2], pivot[1] + v[1] * distance / v[2])
                } else {
                    (pivot[0] + v[0], pivot[1] + v[1])
                };
                let (ix, iy) = (ox.floor(), oy.floor());
                if ix < x1 as f64 || iy < y1 as f64 || ix >= x2 as f64 || iy >= y2 as f64 {
                    continue;
                }
                let k = (iy as usize - y1) * rw + (ix as usize - x1);
                if v[2] < zbuf[k] {
                    zbuf[k] = v[2];
                    colour[k] = sampler.bilinear(x as f32, y as f32);
                }
            }
        }
    }
    let filled = push_pull(&colour, &zbuf.iter().map(|z| z.is_finite()).collect::<Vec<_>>(), rw, rh);

    let mut out = img.clone();
    for py in y1..y2 {
        for px in x1..x2 {
            if !in_region(px as f64 + 0.5, py as f64 + 0.5) {
                continue;
            }
            let v = filled[(py - y1) * rw + (px - x1)];
            out.put_pixel(px as u32, py as u32, image::Rgb(v.map(crate::attacks::camera::encode_srgb)));
        }
    }
    out
}

/// The mesh's depth at every pixel centre of the region `(x1, y1, w, h)` that a triangle of
/// the mesh (Delaunay over its image positions) covers; infinite elsewhere.
fn mesh_depth(mesh: &[[f32; 3]], (x1, y1, w, h): (usize, usize, usize, usize)) -> Vec<f64> {
    let points: Vec<delaunator::Point> = mesh.iter().map(|p| delaunator::Point { x: f64::from(p[0]), y: f64::from(p[1]) }).collect();
    let tri = delaunator::triangulate(&points);
    let mut depth = vec![f64::INFINITY; w * h];
    for t in tri.triangles.chunks_exact(3) {
        let [a, b, c] = [t[0], t[1], t[2]].map(|i| mesh[i].map(f64::from));
        let area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]);
        if area.abs() < 1e-9 {
            continue;
        }
        let lo_x = (a[0].min(b[0]).min(c[0]).floor().max(x1 as f64) as usize).max(x1);
        let hi_x = (a[0].max(b[0]).max(c[0]).ceil().max(0.0) as usize).min(x1 + w);
        let lo_y = (a[1].min(b[1]).min(c[1]).floor().max(y1 as f64) as usize).max(y1);
        let hi_y = (a[1].max(b[1]).max(c[1]).ceil().max(0.0) as usize).min(y1 + h);
        for py in lo_y..hi_y {
            for px in lo_x..hi_x {
                let (x, y) = (px as f64 + 0.5, py as f64 + 0.5);
                let la = ((b[0] - x) * (c[1] - y) - (b[1] - y) * (c[0] - x)) / area;
                let lb = ((c[0] - x) * (a[1] - y) - (c[1] - y) * (a[0] - x)) / area;
                let lc = 1.0 - la - lb;
                if la < -1e-9 || lb < -1e-9 || lc < -1e-9 {
                    continue;
                }
                let z = la * a[2] + lb * b[2] + lc * c[2];
                let k = (py - y1) * w + (px - x1);
                depth[k] = depth[k].min(z);
            }
        }
    }
    depth
}

/// Fills the pixels not `known` from a pyramid of averages of the known ones (push-pull).
fn push_pull(colour: &[[f32; 3]], known: &[bool], w: usize, h: usize) -> Vec<[f32; 3]> {
    // Level 0: weighted colours; each coarser level sums 2 x 2 blocks.
    let mut levels: Vec<(Vec<[f32; 4]>, usize, usize)> =
        vec![(colour.iter().zip(known).map(|(c, &k)| if k { [c[0], c[1], c[2], 1.0] } else { [0.0; 4] }).collect(), w, h)];
    while levels.last().is_some_and(|(_, lw, lh)| *lw > 1 || *lh > 1) {
        let (prev, pw, ph) = levels.last().expect("a level");
        let (nw, nh) = (pw.div_ceil(2), ph.div_ceil(2));
        let mut next = vec![[0.0f32; 4]; nw * nh];
        for y in 0..*ph {
            for x in 0..*pw {
                let (s, d) = (prev[y * pw + x], &mut next[(y / 2) * nw + x / 2]);
                for k in 0..4 {
                    d[k] += s[k];
                }
            }
        }
        levels.push((next, nw, nh));
    }
    // Down the pyramid: an empty cell takes its parent's average.
    for l in (0..levels.len() - 1).rev() {
        let (upper, uw, _) = {
            let (v, uw, uh) = &levels[l + 1];
            (v.clone(), *uw, *uh)
        };
        let (cur, cw, ch) = &mut levels[l];
        for y in 0..*ch {
            for x in 0..*cw {
                let c = &mut cur[y * *cw + x];
                if c[3] <= 0.0 {
                    let p = upper[(y / 2) * uw + x / 2];
                    if p[3] > 0.0 {
                        *c = [p[0] / p[3], p[1] / p[3], p[2] / p[3], 1.0];
                    }
                }
            }
        }
    }
    levels[0].0.iter().map(|c| if c[3] > 0.0 { [c[0] / c[3], c[1] / c[3], c[2] / c[3]] } else { [0.0; 3] }).collect()
}

impl TurnableFace {
    /// The face turned by `d_yaw_deg` and `d_pitch_deg` from its pose in the photo, by point
    /// splatting (an attack frame, like every rendering from a still).
    pub fn splatted(&self, d_yaw_deg: f32, d_pitch_deg: f32) -> RgbImage {
        render_splat(&self.image, &self.mesh, d_yaw_deg, d_pitch_deg)
    }
}
