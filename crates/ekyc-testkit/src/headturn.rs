//! Synthesised head turns: a photo's face re-rendered as if the person had turned their
//! head by a chosen yaw and pitch, for liveness tests and the load generator (real photos of
//! one person at chosen angles are scarce).
//!
//! How a frame is made:
//! 1. The face's 468 FaceMesh points are fitted rigidly to the canonical frontal face
//!    ([`ekyc_vision::CANONICAL_FACE`]), giving its rotation `R0 = Rz(roll)·Ry(-yaw)·Rx(-pitch)`
//!    (the convention of [`ekyc_vision::pose`]), scale and position ([`HeadFit`]).
//! 2. The target rotation keeps the roll and adds the turn to the head's own angles:
//!    `R1 = Rz(roll)·Ry(-(yaw + d_yaw))·Rx(-(pitch + d_pitch))`, so yaw turns about the
//!    head's vertical axis (tilted with the roll, as a neck turns) and pitch nods about the
//!    head's left-right axis. The mesh is rotated by `R1·R0ᵀ` about a pivot
//!    [`PIVOT_BEHIND_NOSE`] face widths straight behind the nose tip (between the ears, over
//!    the top of the spine), so the face swings as a head does instead of spinning about its
//!    nose.
//! 3. The points are lifted into 3-D and projected through a pinhole camera
//!    [`TurnOptions::camera_distance`] face widths away (3 by default, about 42 cm for an
//!    adult face: a selfie at arm's length or a laptop webcam), looking straight at the head
//!    (principal point at the pivot, so faces off-centre in cropped photos are not viewed
//!    obliquely). FaceMesh depth is in the same pixel units as x and y. An infinite distance
//!    gives an orthographic projection, under which the turned mesh measures exactly
//!    `yaw + d_yaw`, `pitch + d_pitch`, `roll`. Perspective matters: near features (nose,
//!    brows) sweep further across the image than far ones (the outline), and FaceMesh and
//!    the pipeline's pose fit read an orthographic render at only about three quarters of
//!    its angle, but a render at selfie distance at nearly all of it.
//! 4. The image is warped piecewise-affinely, triangle by triangle, from the original mesh
//!    positions to the turned ones, with bilinear sampling. The triangles, computed once,
//!    are a Delaunay triangulation of the canonical face unwrapped onto a cylinder about the
//!    pivot's vertical axis, and a band joining the face's outline to a ring of
//!    [`RING_POINTS`] anchors on an ellipse [`ANCHOR_SCALE`] times the face's size. The
//!    anchors stay where they are, so the band (hair, ears, neck, background) stretches or
//!    compresses smoothly and every pixel outside the ring is left untouched. The ring sits
//!    at the pivot's depth: a head's silhouette is about as far back as its centre of
//!    rotation, and points there move along the line of sight, not across the image, when
//!    the head turns.
//! 5. Occlusion: each output pixel takes the nearest front-facing face triangle covering it
//!    (a z-buffer on the turned mesh's depth), else the surrounding band, else a face
//!    triangle that now faces away (slivers at the silhouette).
//!
//! Limits: the texture of skin hidden in the photo (the far cheek of a turned face, the side
//! of the face beside the ear) is stretched from the few pixels the photo has of it, which
//! shows as streaks at large turns; lighting moves with the face.
//!
//! Rendering is deterministic (same input, same bytes).

use std::io::Cursor;
use std::sync::OnceLock;

use ekyc_vision::geometry::{Mat3, fit_rotation, mat_mul, mat_vec, rot_x, rot_y, rot_z, transpose};
use ekyc_vision::pose::from_rotation;
use ekyc_vision::{AnalyzeOptions, CANONICAL_FACE, FacePipeline, HeadPose, VisionError};
use image::RgbImage;
use thiserror::Error;

/// Number of FaceMesh points.
pub const MESH_POINTS: usize = 468;
/// How far behind the nose tip the head turns, in face widths (the distance between the
/// mesh's outermost cheek points 234 and 454, about 14 cm on an adult): 0.8 face widths is
/// about 11 cm, the depth of the top of the spine behind the nose tip. The pivot is level
/// with the nose tip.
pub const PIVOT_BEHIND_NOSE: f64 = 0.8;
/// Size of the ring of fixed anchors relative to the canonical mesh's extent (half width
/// and half height about its centre).
pub const ANCHOR_SCALE: f64 = 1.8;
/// Number of fixed anchors on the ring.
pub const RING_POINTS: usize = 48;
/// Default camera distance in face widths (see [`TurnOptions::camera_distance`]).
pub const DEFAULT_CAMERA_DISTANCE: f64 = 3.0;

/// FaceMesh's face outline, in order around the face.
pub(crate) const FACE_OVAL: [usize; 36] = [
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132,
    93, 234, 127, 162, 21, 54, 103, 67, 109,
];
const NOSE_TIP: usize = 1;
const CHEEK_IMAGE_LEFT: usize = 234;
const CHEEK_IMAGE_RIGHT: usize = 454;

/// Why frames could not be made from a photo.
#[derive(Debug, Error)]
pub enum TurnError {
    #[error(transparent)]
    Vision(#[from] VisionError),
    #[error("no face found in the photo")]
    NoFace,
    #[error("encoding JPEG: {0}")]
    Encode(String),
}

/// How a turn is rendered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TurnOptions {
    /// Distance from the camera to the face (the mesh's centroid), in face widths; infinite
    /// (or any value that is not finite and positive) projects orthographically. On the
    /// development photos the pipeline reads about 0.75 of an orthographic turn and about
    /// 0.97 of one rendered at the default 3 face widths (see the module docs).
    pub camera_distance: f64,
}

impl TurnOptions {
    /// A camera infinitely far away: no perspective.
    pub const ORTHOGRAPHIC: TurnOptions = TurnOptions { camera_distance: f64::INFINITY };
}

impl Default for TurnOptions {
    fn default() -> Self {
        Self { camera_distance: DEFAULT_CAMERA_DISTANCE }
    }
}

/// The triangulation shared by every frame: face triangles over the 468 mesh points and
/// band triangles joining the face's outline to the ring (vertex indices `>= 468`).
#[derive(Debug)]
struct Topology {
    /// Face triangles are positive (clockwise on screen, y down) on the unwrapped canonical
    /// face and band triangles on the frontal one, so a face triangle whose turned image is
    /// negative faces away from the camera (and a band triangle has folded).
    triangles: Vec<[usize; 3]>,
    /// The ring's anchors in canonical coordinates.
    ring: Vec<[f64; 3]>,
    /// The centre of rotation in canonical coordinates.
    pivot: [f64; 3],
}

fn canonical(i: usize) -> [f64; 3] {
    CANONICAL_FACE[i].map(f64::from)
}

/// Centre and half extents of a set of 2-D points.
fn extent(points: impl Iterator<Item = [f64; 2]>) -> ([f64; 2], [f64; 2]) {
    let (mut x1, mut y1, mut x2, mut y2) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for [x, y] in points {
        x1 = x1.min(x);
        x2 = x2.max(x);
        y1 = y1.min(y);
        y2 = y2.max(y);
    }
    ([(x1 + x2) / 2.0, (y1 + y2) / 2.0], [(x2 - x1) / 2.0, (y2 - y1) / 2.0])
}

/// `RING_POINTS` points on the ellipse with this centre and half axes scaled by
/// `ANCHOR_SCALE`, starting at angle 0.
fn ellipse(centre: [f64; 2], half: [f64; 2]) -> impl Iterator<Item = [f64; 2]> {
    (0..RING_POINTS).map(move |k| {
        let t = std::f64::consts::TAU * k as f64 / RING_POINTS as f64;
        [centre[0] + ANCHOR_SCALE * half[0] * t.cos(), centre[1] + ANCHOR_SCALE * half[1] * t.sin()]
    })
}

fn topology() -> &'static Topology {
    static TOPOLOGY: OnceLock<Topology> = OnceLock::new();
    TOPOLOGY.get_or_init(|| {
        let face_width = canonical(CHEEK_IMAGE_RIGHT)[0] - canonical(CHEEK_IMAGE_LEFT)[0];
        let nose = canonical(NOSE_TIP);
        let pivot = [0.0, nose[1], nose[2] + PIVOT_BEHIND_NOSE * face_width];
        let (centre, half) = extent((0..MESH_POINTS).map(|i| [canonical(i)[0], canonical(i)[1]]));
        let ring: Vec<[f64; 3]> = ellipse(centre, half).map(|[x, y]| [x, y, pivot[2]]).collect();

        // The face: Delaunay on the canonical face unwrapped onto a cylinder about the
        // pivot's vertical axis (arc length, height). In the frontal projection the side of
        // the cheek folds onto the outline (points 447, 366 and 401 project within 0.03 units
        // of the outline points 454 and 323 but lie 0.4 units in front of them), so Delaunay
        // there joins points that are not neighbours on the skin and turned faces tear at the
        // cheek. Unwrapped, the outline is the outermost ring of points and every triangle
        // lies on the surface; triangles outside the outline (across its hollows) are dropped.
        let unwrapped: Vec<[f64; 2]> = (0..MESH_POINTS).map(|i| unwrap(canonical(i), pivot)).collect();
        let outline: Vec<[f64; 2]> = FACE_OVAL.iter().map(|&i| unwrapped[i]).collect();
        let mut triangles: Vec<[usize; 3]> = delaunay(&unwrapped)
            .into_iter()
            .filter(|t| {
                let [a, b, c] = t.map(|i| unwrapped[i]);
                inside(&outline, [(a[0] + b[0] + c[0]) / 3.0, (a[1] + b[1] + c[1]) / 3.0])
            })
            .collect();
        // The band: Delaunay on the frontal outline and the ring, where the image's band
        // lies, so its triangles are well shaped in the image and seldom fold when the
        // outline moves; only triangles that reach the ring belong to it.
        let frontal: Vec<[f64; 2]> =
            FACE_OVAL.iter().map(|&i| [canonical(i)[0], canonical(i)[1]]).chain(ring.iter().map(|r| [r[0], r[1]])).collect();
        let index = |k: usize| if k < FACE_OVAL.len() { FACE_OVAL[k] } else { MESH_POINTS + k - FACE_OVAL.len() };
        triangles.extend(delaunay(&frontal).into_iter().filter(|t| t.iter().any(|&k| k >= FACE_OVAL.len())).map(|t| t.map(index)));
        Topology { triangles, ring, pivot }
    })
}

/// A canonical point unwrapped onto the cylinder about the vertical axis through `pivot`
/// whose radius is the nose tip's distance: (arc length, height).
fn unwrap(p: [f64; 3], pivot: [f64; 3]) -> [f64; 2] {
    let radius = pivot[2] - canonical(NOSE_TIP)[2];
    [radius * p[0].atan2(pivot[2] - p[2]), p[1]]
}

/// Delaunay triangles of `points`, each positive (clockwise on screen), degenerate ones
/// dropped.
fn delaunay(points: &[[f64; 2]]) -> Vec<[usize; 3]> {
    let input: Vec<delaunator::Point> = points.iter().map(|p| delaunator::Point { x: p[0], y: p[1] }).collect();
    delaunator::triangulate(&input)
        .triangles
        .chunks_exact(3)
        .filter_map(|t| {
            let [a, b, c] = [t[0], t[1], t[2]];
            let area = cross(points[a], points[b], points[c]);
            if area.abs() < 1e-12 {
                None
            } else if area > 0.0 {
                Some([a, b, c])
            } else {
                Some([a, c, b])
            }
        })
        .collect()
}

/// Whether `p` lies inside the closed polygon `poly` (even-odd rule).
fn inside(poly: &[[f64; 2]], p: [f64; 2]) -> bool {
    let mut odd = false;
    for (k, a) in poly.iter().enumerate() {
        let b = poly[(k + 1) % poly.len()];
        if (a[1] > p[1]) != (b[1] > p[1]) && p[0] < a[0] + (p[1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1]) {
            odd = !odd;
        }
    }
    odd
}

/// Twice the signed area of the triangle `a b c` (positive when clockwise on screen).
fn cross(a: [f64; 2], b: [f64; 2], c: [f64; 2]) -> f64 {
    (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
}

/// A rigid fit of a mesh to the canonical face: `mesh ≈ scale · rotation · canonical +
/// translation` (orthographic, as the pipeline's head pose).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadFit {
    pub rotation: Mat3,
    /// Pixels per canonical unit.
    pub scale: f64,
    pub translation: [f64; 3],
}

impl HeadFit {
    /// Fits `mesh` (468 FaceMesh points in image pixels, as in `Face::mesh`).
    ///
    /// # Panics
    /// When `mesh` does not hold exactly 468 points.
    pub fn of(mesh: &[[f32; 3]]) -> HeadFit {
        assert_eq!(mesh.len(), MESH_POINTS, "a FaceMesh mesh has {MESH_POINTS} points");
        let model: Vec<[f64; 3]> = (0..MESH_POINTS).map(canonical).collect();
        let observed: Vec<[f64; 3]> = mesh.iter().map(|p| p.map(f64::from)).collect();
        let rotation = fit_rotation(&model, &observed, &vec![1.0; MESH_POINTS]);
        let (cm, co) = (centroid(&model), centroid(&observed));
        let (mut num, mut den) = (0.0, 0.0);
        for (m, o) in model.iter().zip(&observed) {
            let rm = mat_vec(&rotation, [m[0] - cm[0], m[1] - cm[1], m[2] - cm[2]]);
            num += (0..3).map(|k| rm[k] * (o[k] - co[k])).sum::<f64>();
            den += (0..3).map(|k| (m[k] - cm[k]).powi(2)).sum::<f64>();
        }
        let scale = num / den.max(1e-12);
        let rcm = mat_vec(&rotation, cm);
        let translation = [0, 1, 2].map(|k| co[k] - scale * rcm[k]);
        HeadFit { rotation, scale, translation }
    }

    /// The head pose this fit implies (the pipeline's `Face::pose` for the same mesh).
    pub fn pose(&self) -> HeadPose {
        from_rotation(&self.rotation)
    }

    /// A canonical point in image coordinates.
    pub fn place(&self, p: [f64; 3]) -> [f64; 3] {
        let r = mat_vec(&self.rotation, p);
        [0, 1, 2].map(|k| self.scale * r[k] + self.translation[k])
    }

    /// The rotation, in camera axes, that turns this head by `d_yaw_deg` and `d_pitch_deg`
    /// about its own axes and keeps its roll (apply it about the pivot).
    pub fn turn(&self, d_yaw_deg: f32, d_pitch_deg: f32) -> Mat3 {
        let r = &self.rotation;
        // R0 = Rz(roll)·Ry(b)·Rx(a), decomposed as in `ekyc_vision::pose`.
        let b = (-r[2][0]).clamp(-1.0, 1.0).asin();
        let a = r[2][1].atan2(r[2][2]);
        let roll = r[1][0].atan2(r[0][0]);
        let target =
            mat_mul(&rot_z(roll), &mat_mul(&rot_y(b - f64::from(d_yaw_deg).to_radians()), &rot_x(a - f64::from(d_pitch_deg).to_radians())));
        mat_mul(&target, &transpose(r))
    }

    /// The centre of rotation in image coordinates (see [`PIVOT_BEHIND_NOSE`]).
    pub fn pivot(&self) -> [f64; 3] {
        self.place(topology().pivot)
    }

    /// The face width (outline point 234 to 454 on the canonical face) in pixels.
    pub fn face_width_px(&self) -> f64 {
        self.scale * (canonical(CHEEK_IMAGE_RIGHT)[0] - canonical(CHEEK_IMAGE_LEFT)[0])
    }
}

fn centroid(points: &[[f64; 3]]) -> [f64; 3] {
    let n = points.len().max(1) as f64;
    let mut c = [0.0; 3];
    for p in points {
        for k in 0..3 {
            c[k] += p[k] / n;
        }
    }
    c
}

/// The mesh turned by `d_yaw_deg` and `d_pitch_deg` (see the module docs): where the face's
/// points land in the rendered frame (x, y in pixels; z relative depth in pixels).
///
/// # Panics
/// When `mesh` does not hold exactly 468 points.
pub fn turn_mesh(mesh: &[[f32; 3]], d_yaw_deg: f32, d_pitch_deg: f32, options: &TurnOptions) -> Vec<[f32; 3]> {
    turned_points(&HeadFit::of(mesh), mesh, d_yaw_deg, d_pitch_deg, options).into_iter().map(|p| p.map(|v| v as f32)).collect()
}

fn turned_points(fit: &HeadFit, mesh: &[[f32; 3]], d_yaw_deg: f32, d_pitch_deg: f32, options: &TurnOptions) -> Vec<[f64; 3]> {
    assert!(d_yaw_deg.is_finite() && d_pitch_deg.is_finite(), "turn angles must be finite");
    let d = fit.turn(d_yaw_deg, d_pitch_deg);
    let pivot = fit.pivot();
    let z_ref = centroid(&mesh.iter().map(|p| p.map(f64::from)).collect::<Vec<_>>())[2];
    // Camera coordinates in pixels at the face's depth: the camera at the origin looking
    // down +z at the pivot, the mesh's centroid `distance` pixels away. FaceMesh's x and y
    // are the perspective image; its z is depth at the face's scale.
    let distance = options.camera_distance * fit.face_width_px();
    let perspective = distance.is_finite() && distance > 0.0;
    let lift = |p: [f64; 3]| -> [f64; 3] {
        let z = p[2] - z_ref;
        if perspective {
            let depth = distance + z;
            [(p[0] - pivot[0]) * depth / distance, (p[1] - pivot[1]) * depth / distance, depth]
        } else {
            [p[0] - pivot[0], p[1] - pivot[1], z]
        }
    };
    let project = |q: [f64; 3]| -> [f64; 3] {
        if perspective {
            [pivot[0] + q[0] * distance / q[2], pivot[1] + q[1] * distance / q[2], q[2] - distance + z_ref]
        } else {
            [pivot[0] + q[0], pivot[1] + q[1], q[2] + z_ref]
        }
    };
    let c = lift(pivot);
    mesh.iter()
        .map(|p| {
            let q = lift(p.map(f64::from));
            let v = mat_vec(&d, [q[0] - c[0], q[1] - c[1], q[2] - c[2]]);
            project([v[0] + c[0], v[1] + c[1], v[2] + c[2]])
        })
        .collect()
}

/// How far outside a triangle (in barycentric terms) a pixel centre may lie and still be
/// painted by it: pixels on a shared edge belong to both triangles, and the slack closes
/// rounding cracks.
const SLACK: f64 = 1e-7;

/// Which layer a triangle paints in; lower wins where triangles overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    /// Face triangles facing the camera.
    Front = 0,
    /// The band between the face and the fixed ring.
    Band = 1,
    /// Face triangles that face away after the turn (slivers at the silhouette).
    Back = 2,
    /// Band triangles turned inside out (rare: a handful over all the test turns).
    Folded = 3,
}

/// `img` with the face whose FaceMesh points are `mesh` turned by `d_yaw_deg` (positive:
/// to the person's own left, nose towards the image's right) and `d_pitch_deg` (positive:
/// looking up), in degrees, about the head's own axes, seen by the default camera
/// ([`TurnOptions::default`]). A zero turn returns the image unchanged.
///
/// # Panics
/// When `mesh` does not hold exactly 468 points or an angle is not finite.
pub fn render_turn(img: &RgbImage, mesh: &[[f32; 3]], d_yaw_deg: f32, d_pitch_deg: f32) -> RgbImage {
    render_turn_with(img, mesh, d_yaw_deg, d_pitch_deg, &TurnOptions::default())
}

/// [`render_turn`] with explicit options.
pub fn render_turn_with(img: &RgbImage, mesh: &[[f32; 3]], d_yaw_deg: f32, d_pitch_deg: f32, options: &TurnOptions) -> RgbImage {
    let fit = HeadFit::of(mesh);
    let topo = topology();
    let moved = turned_points(&fit, mesh, d_yaw_deg, d_pitch_deg, options);
    // Source and destination positions and destination depth of every vertex; the ring's
    // anchors do not move.
    let mut src: Vec<[f64; 2]> = mesh.iter().map(|p| [f64::from(p[0]), f64::from(p[1])]).collect();
    let mut dst: Vec<[f64; 2]> = moved.iter().map(|p| [p[0], p[1]]).collect();
    let mut depth: Vec<f64> = moved.iter().map(|p| p[2]).collect();
    let ring_depth = fit.pivot()[2];
    for r in &topo.ring {
        let p = fit.place(*r);
        src.push([p[0], p[1]]);
        dst.push([p[0], p[1]]);
        depth.push(ring_depth);
    }

    let mut out = img.clone();
    let (w, h) = (img.width() as usize, img.height() as usize);
    // The region any triangle can touch, clipped to the image.
    let (mut bx1, mut by1, mut bx2, mut by2) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for p in &dst {
        bx1 = bx1.min(p[0]);
        by1 = by1.min(p[1]);
        bx2 = bx2.max(p[0]);
        by2 = by2.max(p[1]);
    }
    let clamp_x = |v: f64| v.clamp(0.0, w as f64) as usize;
    let clamp_y = |v: f64| v.clamp(0.0, h as f64) as usize;
    let (rx1, ry1, rx2, ry2) = (clamp_x(bx1.floor()), clamp_y(by1.floor()), clamp_x(bx2.ceil() + 1.0), clamp_y(by2.ceil() + 1.0));
    if rx2 <= rx1 || ry2 <= ry1 {
        return out;
    }
    let rw = rx2 - rx1;
    // Per pixel of the region: the winning (layer, depth) and its triangle.
    let mut best: Vec<(Layer, f32)> = vec![(Layer::Folded, f32::INFINITY); rw * (ry2 - ry1)];
    let mut winner: Vec<u32> = vec![u32::MAX; rw * (ry2 - ry1)];

    for (ti, t) in topo.triangles.iter().enumerate() {
        if t.iter().all(|&i| i >= MESH_POINTS) {
            continue; // anchors only: the identity map
        }
        let [a, b, c] = t.map(|i| dst[i]);
        let area = cross(a, b, c);
        if area.abs() < 1e-9 {
            continue;
        }
        let band = t.iter().any(|&i| i >= MESH_POINTS);
        let layer = match (band, area > 0.0) {
            (false, true) => Layer::Front,
            (false, false) => Layer::Back,
            (true, true) => Layer::Band,
            (true, false) => Layer::Folded,
        };
        let [za, zb, zc] = t.map(|i| depth[i]);
        let y_lo = clamp_y((a[1].min(b[1]).min(c[1]) - 0.5).ceil()).max(ry1);
        let y_hi = clamp_y((a[1].max(b[1]).max(c[1]) - 0.5).floor() + 1.0).min(ry2);
        // Along a row the barycentric coordinates are linear in x: `l = slope * x + offset`.
        let slopes = [-(c[1] - b[1]) / area, -(a[1] - c[1]) / area];
        let slopes = [slopes[0], slopes[1], -slopes[0] - slopes[1]];
        for py in y_lo..y_hi {
            let y = py as f64 + 0.5;
            // The row's span of pixel centres inside the triangle, a pixel wider each side
            // so that the per-pixel test below alone decides the edges.
            let la0 = cross(b, c, [0.0, y]) / area;
            let lb0 = cross(c, a, [0.0, y]) / area;
            let (mut lo, mut hi) = (rx1 as f64, rx2 as f64);
            for (slope, offset) in slopes.into_iter().zip([la0, lb0, 1.0 - la0 - lb0]) {
                let bound = (-SLACK - offset) / slope;
                if slope > 0.0 {
                    lo = lo.max(bound);
                } else if slope < 0.0 {
                    hi = hi.min(bound);
                } else if offset < -SLACK {
                    hi = lo - 1.0;
                }
            }
            if hi < lo {
                continue;
            }
            let x_lo = clamp_x((lo - 1.5).ceil()).max(rx1);
            let x_hi = clamp_x((hi + 0.5).floor() + 1.0).min(rx2);
            for px in x_lo..x_hi {
                let x = px as f64 + 0.5;
                let (la, lb) = (la0 + slopes[0] * x, lb0 + slopes[1] * x);
                let lc = 1.0 - la - lb;
                if la < -SLACK || lb < -SLACK || lc < -SLACK {
                    continue;
                }
                let z = (la * za + lb * zb + lc * zc) as f32;
                let k = (py - ry1) * rw + (px - rx1);
                if (layer, z) < best[k] {
                    best[k] = (layer, z);
                    winner[k] = ti as u32;
                }
            }
        }
    }

    // Each triangle's map from output pixels to source points, `src = m · (x, y, 1)`.
    let maps: Vec<[f32; 6]> = topo
        .triangles
        .iter()
        .map(|t| {
            let (from, to) = (t.map(|i| dst[i]), t.map(|i| src[i]));
            if cross(from[0], from[1], from[2]).abs() < 1e-9 { [0.0; 6] } else { affine(from, to).map(|v| v as f32) }
        })
        .collect();
    let sampler = Bilinear { raw: img.as_raw(), w, h };
    let out_raw: &mut [u8] = &mut out;
    for py in ry1..ry2 {
        let y = py as f32 + 0.5;
        let row = &winner[(py - ry1) * rw..(py - ry1 + 1) * rw];
        let out_row = &mut out_raw[py * w * 3..(py + 1) * w * 3];
        for (px, &ti) in (rx1..rx2).zip(row) {
            let Some(m) = maps.get(ti as usize) else { continue };
            let x = px as f32 + 0.5;
            let rgb = sampler.at(m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]);
            out_row[px * 3..px * 3 + 3].copy_from_slice(&rgb);
        }
    }
    out
}

/// The affine map taking triangle `from` onto triangle `to`, as `[a, b, c, d, e, f]` with
/// `x' = a x + b y + c`, `y' = d x + e y + f`. `from` must not be degenerate.
fn affine(from: [[f64; 2]; 3], to: [[f64; 2]; 3]) -> [f64; 6] {
    let [a, b, c] = from;
    let area = cross(a, b, c);
    // Barycentric coordinates are linear: la = cross(b, c, p) / area, and so on.
    let bary = |p: [f64; 2], q: [f64; 2]| [-(q[1] - p[1]) / area, (q[0] - p[0]) / area, (p[0] * q[1] - p[1] * q[0]) / area];
    let (la, lb) = (bary(b, c), bary(c, a));
    let lc = [-la[0] - lb[0], -la[1] - lb[1], 1.0 - la[2] - lb[2]];
    let row = |k: usize| [0, 1, 2].map(|j| la[j] * to[0][k] + lb[j] * to[1][k] + lc[j] * to[2][k]);
    let (x, y) = (row(0), row(1));
    [x[0], x[1], x[2], y[0], y[1], y[2]]
}

/// Bilinear sampling of an RGB image, `w` x `h` pixels, with clamped edges.
struct Bilinear<'a> {
    raw: &'a [u8],
    w: usize,
    h: usize,
}

impl Bilinear<'_> {
    /// The colour at continuous point `(x, y)` (pixel centres at half-integers).
    #[inline]
    fn at(&self, x: f32, y: f32) -> [u8; 3] {
        // Clamped to be non-negative, so truncation is floor (and avoids a libm call).
        let fx = (x - 0.5).clamp(0.0, (self.w - 1) as f32);
        let fy = (y - 0.5).clamp(0.0, (self.h - 1) as f32);
        let (x0, y0) = (fx as usize, fy as usize);
        let (ax, ay) = (fx - x0 as f32, fy - y0 as f32);
        let dx = if x0 + 1 < self.w { 3 } else { 0 };
        let dy = if y0 + 1 < self.h { self.w * 3 } else { 0 };
        let i = (y0 * self.w + x0) * 3;
        let (r0, r1) = (&self.raw[i..i + dx + 3], &self.raw[i + dy..i + dy + dx + 3]);
        [0, 1, 2].map(|c| {
            let (p00, p10, p01, p11) = (f32::from(r0[c]), f32::from(r0[c + dx]), f32::from(r1[c]), f32::from(r1[c + dx]));
            let top = p00 + (p10 - p00) * ax;
            let bot = p01 + (p11 - p01) * ax;
            // Non-negative, so adding a half and truncating rounds to nearest.
            (top + (bot - top) * ay + 0.5) as u8
        })
    }
}

/// A photo's largest face, ready to be turned.
#[derive(Debug, Clone)]
pub struct TurnableFace {
    pub image: RgbImage,
    /// The face's FaceMesh points (as in `Face::mesh`).
    pub mesh: Vec<[f32; 3]>,
    /// The face's pose as the pipeline measured it.
    pub pose: HeadPose,
}

impl TurnableFace {
    /// Decodes `bytes` and finds the largest face.
    pub fn from_bytes(pipeline: &FacePipeline, bytes: &[u8]) -> Result<TurnableFace, TurnError> {
        let image = pipeline.decode(bytes)?;
        Self::from_image(pipeline, image)
    }

    /// Finds the largest face of `image`.
    pub fn from_image(pipeline: &FacePipeline, image: RgbImage) -> Result<TurnableFace, TurnError> {
        let face =
            pipeline.analyze(&image, AnalyzeOptions { embed: false, largest_only: true })?.into_iter().next().ok_or(TurnError::NoFace)?;
        Ok(TurnableFace { image, mesh: face.mesh, pose: face.pose })
    }

    /// The face turned by `d_yaw_deg` and `d_pitch_deg` from its pose in the photo.
    pub fn turned(&self, d_yaw_deg: f32, d_pitch_deg: f32) -> RgbImage {
        render_turn(&self.image, &self.mesh, d_yaw_deg, d_pitch_deg)
    }

    /// [`Self::turned`] with explicit options.
    pub fn turned_with(&self, d_yaw_deg: f32, d_pitch_deg: f32, options: &TurnOptions) -> RgbImage {
        render_turn_with(&self.image, &self.mesh, d_yaw_deg, d_pitch_deg, options)
    }

    /// The face turned to the absolute pose `yaw_deg`, `pitch_deg` (roll kept).
    pub fn posed(&self, yaw_deg: f32, pitch_deg: f32) -> RgbImage {
        self.turned(yaw_deg - self.pose.yaw, pitch_deg - self.pose.pitch)
    }
}

/// JPEG bytes of `img` at `quality` (1-100). Deterministic.
pub fn encode_jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>, TurnError> {
    let mut out = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100))
        .encode_image(img)
        .map_err(|e| TurnError::Encode(e.to_string()))?;
    Ok(out.into_inner())
}

/// JPEG frames (quality 92) of the photo's largest face turned by each `(d_yaw, d_pitch)`,
/// in degrees, from its pose in the photo: input for liveness challenges and load tests.
pub fn turned_frames(pipeline: &FacePipeline, photo: &[u8], turns: &[(f32, f32)]) -> Result<Vec<Vec<u8>>, TurnError> {
    let face = TurnableFace::from_bytes(pipeline, photo)?;
    turns.iter().map(|&(d_yaw, d_pitch)| encode_jpeg(&face.turned(d_yaw, d_pitch), 92)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical face placed in an image: scaled, rolled, posed, shifted.
    fn posed_mesh(yaw: f64, pitch: f64, roll: f64) -> Vec<[f32; 3]> {
        let r = mat_mul(&rot_z(roll.to_radians()), &mat_mul(&rot_y(-yaw.to_radians()), &rot_x(-pitch.to_radians())));
        (0..MESH_POINTS)
            .map(|i| {
                let p = mat_vec(&r, canonical(i));
                [(80.0 * p[0] + 300.0) as f32, (80.0 * p[1] + 300.0) as f32, (80.0 * p[2] + 5.0) as f32]
            })
            .collect()
    }

    #[test]
    fn triangulation_covers_the_face_and_the_ring() {
        let t = topology();
        assert!(t.triangles.len() > 2 * MESH_POINTS, "{} triangles", t.triangles.len());
        let used: std::collections::BTreeSet<usize> = t.triangles.iter().flatten().copied().collect();
        // Delaunay drops exact duplicates only; the canonical face has none.
        assert_eq!(used.len(), MESH_POINTS + RING_POINTS);
    }

    #[test]
    fn face_and_band_meet_along_the_outline_without_gaps() {
        let t = topology();
        let (face, band): (Vec<[usize; 3]>, Vec<[usize; 3]>) = t.triangles.iter().partition(|tri| tri.iter().all(|&i| i < MESH_POINTS));
        for tri in &band {
            for &i in tri.iter().filter(|&&i| i < MESH_POINTS) {
                assert!(FACE_OVAL.contains(&i), "band triangle {tri:?} reaches inside the outline at point {i}");
            }
        }
        for k in 0..FACE_OVAL.len() {
            let (a, b) = (FACE_OVAL[k], FACE_OVAL[(k + 1) % FACE_OVAL.len()]);
            for (what, set) in [("face", &face), ("band", &band)] {
                assert!(set.iter().any(|tri| tri.contains(&a) && tri.contains(&b)), "outline edge {a}-{b} missing from the {what}");
            }
        }
        // The band tiles the ring's polygon less the outline's, in the frontal plane.
        let frontal = |i: usize| {
            if i < MESH_POINTS { [canonical(i)[0], canonical(i)[1]] } else { [t.ring[i - MESH_POINTS][0], t.ring[i - MESH_POINTS][1]] }
        };
        let polygon_area =
            |ps: Vec<[f64; 2]>| (0..ps.len()).map(|k| cross([0.0, 0.0], ps[k], ps[(k + 1) % ps.len()])).sum::<f64>().abs() / 2.0;
        let band_area: f64 = band.iter().map(|tri| cross(frontal(tri[0]), frontal(tri[1]), frontal(tri[2])) / 2.0).sum();
        let want = polygon_area((0..RING_POINTS).map(|k| frontal(MESH_POINTS + k)).collect())
            - polygon_area(FACE_OVAL.iter().map(|&i| frontal(i)).collect());
        assert!((band_area - want).abs() < 1e-9 * want, "band area {band_area} vs {want}");
        // The face tiles the outline's polygon on the unwrapped cylinder.
        let flat = |i: usize| unwrap(canonical(i), t.pivot);
        let face_area: f64 = face.iter().map(|tri| cross(flat(tri[0]), flat(tri[1]), flat(tri[2])) / 2.0).sum();
        let want = polygon_area(FACE_OVAL.iter().map(|&i| flat(i)).collect());
        assert!((face_area - want).abs() < 1e-9 * want, "face area {face_area} vs {want}");
    }

    #[test]
    fn turning_the_mesh_adds_to_yaw_and_pitch_and_keeps_roll() {
        for (yaw, pitch, roll) in [(0.0, 0.0, 0.0), (-20.0, 5.0, 10.0), (15.0, -8.0, -25.0)] {
            let mesh = posed_mesh(yaw, pitch, roll);
            let fit = HeadFit::of(&mesh);
            assert!((fit.scale - 80.0).abs() < 1e-3, "{}", fit.scale);
            for (dy, dp) in [(25.0f32, 0.0f32), (-25.0, 0.0), (0.0, 20.0), (0.0, -20.0), (15.0, -10.0)] {
                let p = HeadFit::of(&turn_mesh(&mesh, dy, dp, &TurnOptions::ORTHOGRAPHIC)).pose();
                assert!((f64::from(p.yaw) - (yaw + f64::from(dy))).abs() < 1e-3, "{p:?}");
                assert!((f64::from(p.pitch) - (pitch + f64::from(dp))).abs() < 1e-3, "{p:?}");
                assert!((f64::from(p.roll) - roll).abs() < 1e-3, "{p:?}");
            }
        }
    }

    #[test]
    fn turning_left_moves_the_nose_to_the_image_right_and_looking_up_moves_it_up() {
        let mesh = posed_mesh(0.0, 0.0, 0.0);
        let left = turn_mesh(&mesh, 20.0, 0.0, &TurnOptions::default());
        assert!(left[NOSE_TIP][0] > mesh[NOSE_TIP][0] + 20.0, "{:?} -> {:?}", mesh[NOSE_TIP], left[NOSE_TIP]);
        let up = turn_mesh(&mesh, 0.0, 20.0, &TurnOptions::default());
        assert!(up[NOSE_TIP][1] < mesh[NOSE_TIP][1] - 20.0, "{:?} -> {:?}", mesh[NOSE_TIP], up[NOSE_TIP]);
        // About a pivot behind the face, the whole face swings with the nose.
        let centre = |m: &[[f32; 3]]| m.iter().map(|p| p[0]).sum::<f32>() / m.len() as f32;
        assert!(centre(&left) > centre(&mesh) + 10.0);
    }

    #[test]
    fn perspective_turns_match_a_pinhole_camera() {
        // A canonical head 3 face widths in front of a pinhole camera whose axis passes
        // through the pivot, and the same head truly turned about its pivot.
        let (s, distance) = (80.0, 3.0);
        let f = distance * s * (canonical(CHEEK_IMAGE_RIGHT)[0] - canonical(CHEEK_IMAGE_LEFT)[0]);
        let r0 = mat_mul(&rot_z(0.1), &mat_mul(&rot_y(-0.2), &rot_x(0.05)));
        let rp = mat_vec(&r0, topology().pivot);
        let mean = centroid(&(0..MESH_POINTS).map(|i| mat_vec(&r0, canonical(i))).collect::<Vec<_>>());
        let t = [-s * rp[0], -s * rp[1], f - s * mean[2]];
        let world: Vec<[f64; 3]> =
            (0..MESH_POINTS).map(|i| mat_vec(&r0, canonical(i))).map(|p| [0, 1, 2].map(|k| s * p[k] + t[k])).collect();
        let image_of = |p: [f64; 3]| [300.0 + f * p[0] / p[2], 300.0 + f * p[1] / p[2], p[2] - f];
        let mesh: Vec<[f32; 3]> = world.iter().map(|p| image_of(*p).map(|v| v as f32)).collect();
        let options = TurnOptions { camera_distance: distance };
        for (dy, dp) in [(25.0f32, 0.0f32), (-20.0, 10.0), (0.0, -20.0)] {
            let d = HeadFit { rotation: r0, scale: s, translation: t }.turn(dy, dp);
            let pivot = [0, 1, 2].map(|k| s * rp[k] + t[k]);
            let turned = turn_mesh(&mesh, dy, dp, &options);
            let worst = world
                .iter()
                .zip(&turned)
                .map(|(p, q)| {
                    let v = mat_vec(&d, [0, 1, 2].map(|k| p[k] - pivot[k]));
                    let want = image_of([0, 1, 2].map(|k| v[k] + pivot[k]));
                    (f64::from(q[0]) - want[0]).hypot(f64::from(q[1]) - want[1])
                })
                .fold(0.0, f64::max);
            // The face is 210 px wide; the orthographic fit of a perspective mesh is close.
            assert!(worst < 2.0, "turn ({dy}, {dp}): off by {worst:.2} px");
            let ortho = turn_mesh(&mesh, dy, dp, &TurnOptions::ORTHOGRAPHIC);
            let differs = turned.iter().zip(&ortho).map(|(a, b)| (a[0] - b[0]).hypot(a[1] - b[1])).fold(0.0, f32::max);
            assert!(differs > 5.0, "perspective should move near points further ({differs:.2} px)");
        }
    }

    fn test_image() -> RgbImage {
        RgbImage::from_fn(600, 600, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * 7 + y * 3) % 256) as u8]))
    }

    #[test]
    fn zero_turn_is_the_identity_and_far_pixels_never_change() {
        let img = test_image();
        let mesh = posed_mesh(-10.0, 5.0, 8.0);
        assert_eq!(render_turn(&img, &mesh, 0.0, 0.0), img);
        let turned = render_turn(&img, &mesh, 25.0, -15.0);
        assert_ne!(turned, img);
        // The ring's half axes are 1.8 x 1.32 and 1.8 x 1.62 canonical units (190 and 233 px),
        // shifted a little by the pose.
        let mut outside = 0;
        for (x, y, p) in img.enumerate_pixels() {
            let (dx, dy) = (f64::from(x) - 300.0, f64::from(y) - 300.0);
            if (dx / 230.0).powi(2) + (dy / 270.0).powi(2) > 1.0 {
                outside += 1;
                assert_eq!(turned.get_pixel(x, y), p, "({x}, {y}) outside the ring changed");
            }
        }
        assert!(outside > 50_000, "{outside}");
        assert_eq!(render_turn(&img, &mesh, 25.0, -15.0), turned, "deterministic");
    }
}
