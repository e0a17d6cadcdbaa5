//! Finding a document's quadrilateral in a photo by classical means (no document-detector
//! model is available): on a downscaled copy, colour gradients are thinned to edges, edges
//! vote for straight lines (a Hough transform guided by each edge's own direction), lines
//! are combined into convex quadrilaterals of two roughly parallel pairs, and each
//! candidate is scored by how much of its outline the edges support, how close its shape
//! is to an ID-1 card or a passport page, its size, and how the faces found in the photo
//! sit in it (a document holds its upright portrait off-centre; a quadrilateral that
//! cuts through a face, or holds a face as a photo frame would, is not a document).
//!
//! The image borders take part as lines of their own, so a document that fills the frame
//! or runs off it is still outlined; such sides are marked, and the caller extends them
//! by the document's known aspect to estimate how much is cut off.

use ekyc_vision::geometry::{Homography, Point};
use image::RgbImage;

/// Longer side of the working copy, in pixels.
const WORK_SIDE: u32 = 480;
/// Line angles in 1-degree bins; an edge votes this many bins either side of its own.
const THETA_BINS: usize = 180;
const VOTE_SPREAD: i64 = 4;
/// Most lines kept for combining into quadrilaterals.
const MAX_LINES: usize = 36;

/// Aspect ratios (long side / short side) of the documents looked for.
pub const ID1_ASPECT: f32 = 85.60 / 53.98;
pub const PASSPORT_ASPECT: f32 = 125.0 / 88.0;

/// A face already found in the photo, as evidence for and against candidate outlines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceHint {
    /// Centre of the face in photo pixels.
    pub centre: Point,
    /// Face size in photo pixels (the shorter side of its box).
    pub size: f32,
    /// Unit vector from the mouth towards the eyes: "up" for the face, in photo pixels.
    pub up: Point,
}

/// One candidate outline.
#[derive(Debug, Clone, PartialEq)]
pub struct Quad {
    /// Corners in photo pixels, clockwise on screen, starting anywhere.
    pub corners: [Point; 4],
    /// Confidence in [0, 1].
    pub score: f32,
    /// Side `i` (corner `i` to `i + 1`) lies on the image border: the document may go on
    /// beyond it.
    pub on_border: [bool; 4],
    /// Fraction of each side's length inside the photo that edges support.
    pub support: [f32; 4],
    /// Index of the face hint the outline holds as its portrait, if any.
    pub portrait_hint: Option<usize>,
    /// The value candidates were ranked by (support, shape, size, faces).
    pub rank: f32,
}

#[derive(Debug, Clone, Copy)]
struct Line {
    /// Normal angle in radians, [0, pi).
    theta: f32,
    /// Signed distance of the line from the origin along the normal, working pixels.
    rho: f32,
    border: bool,
}

impl Line {
    fn normal(&self) -> Point {
        Point::new(self.theta.cos(), self.theta.sin())
    }
    fn intersect(&self, o: &Line) -> Option<Point> {
        let (a1, b1, a2, b2) = (self.theta.cos(), self.theta.sin(), o.theta.cos(), o.theta.sin());
        let det = a1 * b2 - a2 * b1;
        if det.abs() < 1e-4 {
            return None;
        }
        Some(Point::new((self.rho * b2 - o.rho * b1) / det, (a1 * o.rho - a2 * self.rho) / det))
    }
}

/// Angle between two line directions in radians, [0, pi/2].
fn angle_between(a: f32, b: f32) -> f32 {
    let d = (a - b).rem_euclid(std::f32::consts::PI);
    d.min(std::f32::consts::PI - d)
}

/// Thinned edges of the working copy: per pixel, the gradient direction (radians, the
/// direction of increasing brightness) where there is an edge.
struct Edges {
    w: usize,
    h: usize,
    /// `NaN` where there is no edge.
    dir: Vec<f32>,
}

impl Edges {
    fn at(&self, x: i64, y: i64) -> Option<f32> {
        if x < 0 || y < 0 || x >= self.w as i64 || y >= self.h as i64 {
            return None;
        }
        let d = self.dir[y as usize * self.w + x as usize];
        (!d.is_nan()).then_some(d)
    }
}

fn blur3(px: &[[f32; 3]], w: usize, h: usize) -> Vec<[f32; 3]> {
    // Binomial 1-4-6-4-1 / 16, separable: a Gaussian of sigma 1 that tames noise and JPEG
    // blocks before differentiating.
    const K: [f32; 5] = [1.0 / 16.0, 4.0 / 16.0, 6.0 / 16.0, 4.0 / 16.0, 1.0 / 16.0];
    let mut tmp = vec![[0.0f32; 3]; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0.0f32; 3];
            for (k, kv) in K.iter().enumerate() {
                let sx = (x as i64 + k as i64 - 2).clamp(0, w as i64 - 1) as usize;
                let p = px[y * w + sx];
                for c in 0..3 {
                    acc[c] += kv * p[c];
                }
            }
            tmp[y * w + x] = acc;
        }
    }
    let mut out = vec![[0.0f32; 3]; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0.0f32; 3];
            for (k, kv) in K.iter().enumerate() {
                let sy = (y as i64 + k as i64 - 2).clamp(0, h as i64 - 1) as usize;
                let p = tmp[sy * w + x];
                for c in 0..3 {
                    acc[c] += kv * p[c];
                }
            }
            out[y * w + x] = acc;
        }
    }
    out
}

fn edges(small: &RgbImage) -> Edges {
    let (w, h) = (small.width() as usize, small.height() as usize);
    let px: Vec<[f32; 3]> = small.pixels().map(|p| [f32::from(p[0]), f32::from(p[1]), f32::from(p[2])]).collect();
    let px = blur3(&px, w, h);
    // Colour Sobel: per pixel, the channel with the strongest gradient (a card can differ
    // from the table in hue more than in brightness).
    let mut gx = vec![0.0f32; w * h];
    let mut gy = vec![0.0f32; w * h];
    let mut mag = vec![0.0f32; w * h];
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            let p = |dx: i64, dy: i64| px[(y as i64 + dy) as usize * w + (x as i64 + dx) as usize];
            // Strength from all channels; direction from the strongest one (channels can
            // disagree in sign across a colour edge).
            let (mut best, mut bx, mut by, mut total) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
            for c in 0..3 {
                let sx = (p(1, -1)[c] + 2.0 * p(1, 0)[c] + p(1, 1)[c]) - (p(-1, -1)[c] + 2.0 * p(-1, 0)[c] + p(-1, 1)[c]);
                let sy = (p(-1, 1)[c] + 2.0 * p(0, 1)[c] + p(1, 1)[c]) - (p(-1, -1)[c] + 2.0 * p(0, -1)[c] + p(1, -1)[c]);
                let m = sx * sx + sy * sy;
                total += m;
                if m > best {
                    (best, bx, by) = (m, sx / 8.0, sy / 8.0);
                }
            }
            gx[y * w + x] = bx;
            gy[y * w + x] = by;
            mag[y * w + x] = total.sqrt() / 8.0;
        }
    }
    // Non-maximum suppression across the edge, then a threshold relative to the photo's
    // own edge strengths (with an absolute floor for flat photos).
    let mut kept = vec![false; w * h];
    let mut strengths = Vec::new();
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            let i = y * w + x;
            let m = mag[i];
            if m < 2.0 {
                continue;
            }
            let (ax, ay) = (gx[i].abs(), gy[i].abs());
            let (dx, dy): (i64, i64) = if ax > 2.4 * ay {
                (1, 0)
            } else if ay > 2.4 * ax {
                (0, 1)
            } else if (gx[i] > 0.0) == (gy[i] > 0.0) {
                (1, 1)
            } else {
                (1, -1)
            };
            let n1 = mag[(y as i64 + dy) as usize * w + (x as i64 + dx) as usize];
            let n2 = mag[(y as i64 - dy) as usize * w + (x as i64 - dx) as usize];
            if m >= n1 && m > n2 {
                kept[i] = true;
                strengths.push(m);
            }
        }
    }
    strengths.sort_by(f32::total_cmp);
    let threshold = strengths.get(strengths.len() / 2).copied().unwrap_or(0.0).clamp(3.0, 8.0);
    let dir = (0..w * h).map(|i| if kept[i] && mag[i] >= threshold { gy[i].atan2(gx[i]) } else { f32::NAN }).collect();
    Edges { w, h, dir }
}

/// Straight lines, strongest first, by a Hough transform where each edge votes near its own
/// normal direction only.
fn hough_lines(e: &Edges) -> Vec<Line> {
    let diag = ((e.w * e.w + e.h * e.h) as f32).sqrt().ceil() as usize;
    let rho_bins = 2 * diag + 1;
    let mut acc = vec![0u32; THETA_BINS * rho_bins];
    let trig: Vec<(f32, f32)> = (0..THETA_BINS).map(|t| (t as f32).to_radians().sin_cos()).collect();
    for y in 0..e.h {
        for x in 0..e.w {
            let d = e.dir[y * e.w + x];
            if d.is_nan() {
                continue;
            }
            let (xf, yf) = (x as f32 + 0.5, y as f32 + 0.5);
            let centre = (d.to_degrees().rem_euclid(180.0)).round() as i64;
            for k in -VOTE_SPREAD..=VOTE_SPREAD {
                let t = (centre + k).rem_euclid(THETA_BINS as i64) as usize;
                let (s, c) = trig[t];
                let rho = xf * c + yf * s;
                let r = (rho.round() as i64 + diag as i64) as usize;
                acc[t * rho_bins + r] += 1;
            }
        }
    }
    let min_votes = (e.w.min(e.h) as f32 * 0.12).max(15.0) as u32;
    let mut peaks: Vec<(u32, usize, usize)> = Vec::new();
    for t in 0..THETA_BINS {
        for r in 1..rho_bins - 1 {
            let v = acc[t * rho_bins + r];
            if v < min_votes {
                continue;
            }
            // Local maximum in a 3x3 neighbourhood (theta wraps with rho mirrored).
            let mut is_max = true;
            'n: for dt in -1i64..=1 {
                for dr in -1i64..=1 {
                    if dt == 0 && dr == 0 {
                        continue;
                    }
                    let (mut tt, mut rr) = (t as i64 + dt, r as i64 + dr);
                    if tt < 0 || tt >= THETA_BINS as i64 {
                        tt = tt.rem_euclid(THETA_BINS as i64);
                        rr = 2 * diag as i64 - rr;
                    }
                    if rr < 0 || rr >= rho_bins as i64 {
                        continue;
                    }
                    let o = acc[tt as usize * rho_bins + rr as usize];
                    if o > v || (o == v && (dt, dr) < (0, 0)) {
                        is_max = false;
                        break 'n;
                    }
                }
            }
            if is_max {
                peaks.push((v, t, r));
            }
        }
    }
    peaks.sort_by_key(|p| std::cmp::Reverse(p.0));
    let mut lines: Vec<Line> = Vec::new();
    for (_, t, r) in peaks {
        let line = Line { theta: (t as f32).to_radians(), rho: r as f32 - diag as f32, border: false };
        let close = lines.iter().any(|l| {
            let dt = angle_between(l.theta, line.theta);
            // Same orientation: compare distances (mirrored when the angles wrap).
            let same_side = (l.theta - line.theta).abs() < std::f32::consts::FRAC_PI_2;
            let dr = if same_side { (l.rho - line.rho).abs() } else { (l.rho + line.rho).abs() };
            dt <= 4f32.to_radians() && dr <= 6.0
        });
        if !close {
            lines.push(line);
            if lines.len() >= MAX_LINES {
                break;
            }
        }
    }
    lines
}

/// Edge points near the segment `a`-`b` whose direction is perpendicular to it, sampled
/// every working pixel, for refitting the side: the nearest such edge pixel at each step.
fn side_points(e: &Edges, a: Point, b: Point) -> Vec<Point> {
    let len = a.dist(b);
    if len < 4.0 {
        return Vec::new();
    }
    let (tx, ty) = ((b.x - a.x) / len, (b.y - a.y) / len);
    let n = Point::new(-ty, tx);
    let normal = n.y.atan2(n.x);
    let mut points = Vec::new();
    let steps = len.floor() as usize;
    let margin = 2.0;
    for k in 0..steps {
        let t = k as f32 + 0.5;
        let p = Point::new(a.x + tx * t, a.y + ty * t);
        if p.x < margin || p.y < margin || p.x > e.w as f32 - margin || p.y > e.h as f32 - margin {
            continue;
        }
        let mut best: Option<(f32, Point)> = None;
        for off in [-2.0f32, -1.0, 0.0, 1.0, 2.0] {
            let q = Point::new(p.x + n.x * off, p.y + n.y * off);
            if let Some(d) = e.at(q.x.floor() as i64, q.y.floor() as i64)
                && angle_between(d, normal) < 20f32.to_radians()
                && best.is_none_or(|(o, _)| off.abs() < o.abs())
            {
                best = Some((off, Point::new(q.x.floor() + 0.5, q.y.floor() + 0.5)));
            }
        }
        if let Some((_, q)) = best {
            points.push(q);
        }
    }
    points
}

/// Edge support along a whole line, as prefix sums over its length: whether an edge with the
/// line's orientation lies within two working pixels at each step, and whether the step is
/// inside the image. Sides of candidate outlines then cost O(1) each.
struct Profile {
    hits: Vec<u32>,
    inside: Vec<u32>,
    /// Index of the step at t = 0.
    zero: i64,
}

impl Profile {
    fn new(e: &Edges, l: &Line) -> Profile {
        let diag = ((e.w * e.w + e.h * e.h) as f32).sqrt().ceil() as i64 + 2;
        let n = l.normal();
        let d = Point::new(-n.y, n.x);
        let (mut hits, mut inside) = (vec![0u32; (2 * diag + 2) as usize], vec![0u32; (2 * diag + 2) as usize]);
        let margin = 2.0;
        for k in 0..2 * diag + 1 {
            let t = (k - diag) as f32 + 0.5;
            let p = Point::new(n.x * l.rho + d.x * t, n.y * l.rho + d.y * t);
            let i = k as usize + 1;
            let is_in = !(p.x < margin || p.y < margin || p.x > e.w as f32 - margin || p.y > e.h as f32 - margin);
            let hit = is_in
                && [-2.0f32, -1.0, 0.0, 1.0, 2.0].iter().any(|off| {
                    e.at((p.x + n.x * off).floor() as i64, (p.y + n.y * off).floor() as i64)
                        .is_some_and(|g| angle_between(g, l.theta) < 20f32.to_radians())
                });
            hits[i] = hits[i - 1] + u32::from(hit);
            inside[i] = inside[i - 1] + u32::from(is_in);
        }
        Profile { hits, inside, zero: diag }
    }

    /// Support of the segment between the points at `a` and `b` on the line: the supported
    /// fraction of its steps inside the image, or `None` with too few such steps.
    fn support(&self, l: &Line, a: Point, b: Point) -> Option<f32> {
        let n = l.normal();
        let d = Point::new(-n.y, n.x);
        let (ta, tb) = (a.x * d.x + a.y * d.y, b.x * d.x + b.y * d.y);
        let (lo, hi) = (ta.min(tb), ta.max(tb));
        let len = self.hits.len() as i64 - 1;
        let k0 = ((lo.floor() as i64) + self.zero).clamp(0, len) as usize;
        let k1 = ((hi.ceil() as i64) + self.zero).clamp(0, len) as usize;
        let inside = self.inside[k1] - self.inside[k0];
        (inside >= 8).then(|| (self.hits[k1] - self.hits[k0]) as f32 / inside as f32)
    }
}

/// Total-least-squares line through points, as (theta, rho); `None` when too few.
fn fit_line(points: &[Point]) -> Option<(f32, f32)> {
    if points.len() < 6 {
        return None;
    }
    let n = points.len() as f64;
    let (mx, my) = points.iter().fold((0.0, 0.0), |(x, y), p| (x + f64::from(p.x), y + f64::from(p.y)));
    let (mx, my) = (mx / n, my / n);
    let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    for p in points {
        let (dx, dy) = (f64::from(p.x) - mx, f64::from(p.y) - my);
        sxx += dx * dx;
        syy += dy * dy;
        sxy += dx * dy;
    }
    // Direction of largest spread; the normal is perpendicular to it.
    let dir = 0.5 * (2.0 * sxy).atan2(sxx - syy);
    let theta = (dir + std::f64::consts::FRAC_PI_2).rem_euclid(std::f64::consts::PI);
    let rho = mx * theta.cos() + my * theta.sin();
    Some((theta as f32, rho as f32))
}

/// Corners in clockwise screen order (y down), starting from the one with the smallest
/// angle around the centroid.
fn clockwise(mut c: [Point; 4]) -> [Point; 4] {
    let cx = c.iter().map(|p| p.x).sum::<f32>() / 4.0;
    let cy = c.iter().map(|p| p.y).sum::<f32>() / 4.0;
    c.sort_by(|a, b| (a.y - cy).atan2(a.x - cx).total_cmp(&(b.y - cy).atan2(b.x - cx)));
    c
}

fn cross(o: Point, a: Point, b: Point) -> f32 {
    (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x)
}

/// Twice the signed area (positive when clockwise on screen).
pub fn area2(q: &[Point; 4]) -> f32 {
    (0..4).map(|i| q[i].x * q[(i + 1) % 4].y - q[(i + 1) % 4].x * q[i].y).sum()
}

fn is_convex(q: &[Point; 4]) -> bool {
    (0..4).all(|i| cross(q[i], q[(i + 1) % 4], q[(i + 2) % 4]) > 0.0)
}

/// Interior angle at corner `i`, degrees.
fn corner_angle(q: &[Point; 4], i: usize) -> f32 {
    let (p, a, b) = (q[i], q[(i + 3) % 4], q[(i + 1) % 4]);
    let (ux, uy, vx, vy) = (a.x - p.x, a.y - p.y, b.x - p.x, b.y - p.y);
    let c = (ux * vx + uy * vy) / ((ux * ux + uy * uy).sqrt() * (vx * vx + vy * vy).sqrt()).max(1e-6);
    c.clamp(-1.0, 1.0).acos().to_degrees()
}

/// Whether `p` lies inside the convex clockwise quad `q`.
pub fn inside(q: &[Point; 4], p: Point) -> bool {
    (0..4).all(|i| cross(q[i], q[(i + 1) % 4], p) >= 0.0)
}

/// The unit square's corners (TL, TR, BR, BL).
pub const UNIT: [Point; 4] = [Point::new(0.0, 0.0), Point::new(1.0, 0.0), Point::new(1.0, 1.0), Point::new(0.0, 1.0)];

/// How the face hints bear on an outline: a multiplier for its score, and the hint it holds
/// as its portrait.
fn face_factor(q: &[Point; 4], faces: &[FaceHint]) -> (f32, Option<usize>) {
    let Some(to_unit) = Homography::from_points(q, &UNIT) else { return (0.0, None) };
    let mut factor = 1.0f32;
    let mut portrait = None;
    let short = (q[0].dist(q[1]) + q[2].dist(q[3])).min(q[1].dist(q[2]) + q[3].dist(q[0])) / 2.0;
    // Largest first: the portrait is the largest face the outline holds.
    let mut order: Vec<usize> = (0..faces.len()).collect();
    order.sort_by(|&a, &b| faces[b].size.total_cmp(&faces[a].size));
    for i in order {
        let f = faces[i];
        let r = f.size * 0.5;
        let probes = [Point::new(-r, -r), Point::new(r, -r), Point::new(r, r), Point::new(-r, r)];
        let corners_in = probes.iter().filter(|d| inside(q, Point::new(f.centre.x + d.x, f.centre.y + d.y))).count();
        let centre_in = inside(q, f.centre);
        if !centre_in && corners_in == 0 {
            continue;
        }
        if !centre_in || corners_in < 3 {
            // The outline cuts through a face: not a document's edge.
            factor *= 0.25;
            continue;
        }
        if portrait.is_some() {
            continue;
        }
        // A document's portrait is upright on it (its up is across the long axis), a
        // modest share of its height, and off-centre along the long axis.
        let u = to_unit.apply(f.centre);
        let up_end = to_unit.apply(Point::new(f.centre.x + f.up.x * f.size, f.centre.y + f.up.y * f.size));
        let (dx, dy) = (up_end.x - u.x, up_end.y - u.y);
        // In unit coordinates the long axis is x when sides 0 and 2 are the longer ones.
        let horizontal_long = q[0].dist(q[1]) + q[2].dist(q[3]) >= q[1].dist(q[2]) + q[3].dist(q[0]);
        let (along, across, pos) = if horizontal_long { (dx.abs(), dy.abs(), u.x) } else { (dy.abs(), dx.abs(), u.y) };
        let upright = across > along;
        let rel = f.size / short.max(1.0);
        let off_centre = (pos - 0.5).abs() > 0.1;
        if upright && (0.06..=0.5).contains(&rel) && off_centre {
            factor *= 1.6;
            portrait = Some(i);
        } else {
            factor *= 0.35;
        }
    }
    (factor, portrait)
}

/// Candidate document outlines, best first (at most a few), for a photo and the faces
/// already found in it.
pub fn find(photo: &RgbImage, faces: &[FaceHint]) -> Vec<Quad> {
    let (pw, ph) = (photo.width(), photo.height());
    let scale = (WORK_SIDE as f32 / pw.max(ph) as f32).min(1.0);
    let (sw, sh) = (((pw as f32 * scale).round() as u32).max(8), ((ph as f32 * scale).round() as u32).max(8));
    let small = if scale < 1.0 { image::imageops::thumbnail(photo, sw, sh) } else { photo.clone() };
    let (kx, ky) = (sw as f32 / pw as f32, sh as f32 / ph as f32);
    let e = edges(&small);
    let (wf, hf) = (e.w as f32, e.h as f32);
    let mut lines = hough_lines(&e);
    let half_pi = std::f32::consts::FRAC_PI_2;
    lines.extend([
        Line { theta: 0.0, rho: 0.0, border: true },
        Line { theta: 0.0, rho: wf, border: true },
        Line { theta: half_pi, rho: 0.0, border: true },
        Line { theta: half_pi, rho: hf, border: true },
    ]);
    let hints: Vec<FaceHint> = faces
        .iter()
        .map(|f| FaceHint { centre: Point::new(f.centre.x * kx, f.centre.y * ky), size: f.size * kx.min(ky), up: f.up })
        .collect();

    // Roughly parallel pairs (perspective tilts opposite sides apart).
    let mut pairs: Vec<(usize, usize, f32)> = Vec::new();
    for i in 0..lines.len() {
        for j in i + 1..lines.len() {
            if angle_between(lines[i].theta, lines[j].theta) <= 25f32.to_radians()
                && !(lines[i].border && lines[j].border && lines[i].theta != lines[j].theta)
            {
                // Mean direction of the pair, for pairing with a crossing pair.
                let (ti, mut tj) = (lines[i].theta, lines[j].theta);
                if (ti - tj).abs() > half_pi {
                    tj += if tj < ti { std::f32::consts::PI } else { -std::f32::consts::PI };
                }
                pairs.push((i, j, (ti + tj) / 2.0));
            }
        }
    }
    let img_area = wf * hf;
    let mut out: Vec<Quad> = Vec::new();
    let profiles: Vec<Option<Profile>> = lines.iter().map(|l| (!l.border).then(|| Profile::new(&e, l))).collect();
    for (pi, &(a, b, ta)) in pairs.iter().enumerate() {
        for &(c, d, tc) in &pairs[pi + 1..] {
            let cross_angle = angle_between(ta, tc);
            if cross_angle < 60f32.to_radians() {
                continue;
            }
            let borders = [a, b, c, d].iter().filter(|&&k| lines[k].border).count();
            if borders > 2 {
                continue;
            }
            let (Some(p0), Some(p1), Some(p2), Some(p3)) = (
                lines[a].intersect(&lines[c]),
                lines[c].intersect(&lines[b]),
                lines[b].intersect(&lines[d]),
                lines[d].intersect(&lines[a]),
            ) else {
                continue;
            };
            let raw = [p0, p1, p2, p3];
            let slack = 0.04 * wf.max(hf);
            if raw.iter().any(|p| p.x < -slack || p.y < -slack || p.x > wf + slack || p.y > hf + slack) {
                continue;
            }
            let q = clockwise(raw);
            if !is_convex(&q) || area2(&q) / 2.0 < 0.03 * img_area {
                continue;
            }
            if (0..4).any(|i| !(45.0..=135.0).contains(&corner_angle(&q, i))) {
                continue;
            }
            // Which line each side lies on (sides run between consecutive corners).
            let side_line = |i: usize| -> usize {
                let m = Point::new((q[i].x + q[(i + 1) % 4].x) / 2.0, (q[i].y + q[(i + 1) % 4].y) / 2.0);
                *[a, b, c, d]
                    .iter()
                    .min_by(|&&x, &&y| {
                        let dx = (m.x * lines[x].theta.cos() + m.y * lines[x].theta.sin() - lines[x].rho).abs();
                        let dy = (m.x * lines[y].theta.cos() + m.y * lines[y].theta.sin() - lines[y].rho).abs();
                        dx.total_cmp(&dy)
                    })
                    .unwrap_or(&a)
            };
            let mut support = [0.0f32; 4];
            let mut on_border = [false; 4];
            let mut ok = true;
            for i in 0..4 {
                let l = side_line(i);
                if lines[l].border {
                    on_border[i] = true;
                    continue;
                }
                let s = profiles[l].as_ref().and_then(|p| p.support(&lines[l], q[i], q[(i + 1) % 4])).unwrap_or(0.0);
                support[i] = s;
                if s < 0.3 {
                    ok = false;
                    break;
                }
            }
            if !ok {
                continue;
            }
            let lens: [f32; 4] = std::array::from_fn(|i| q[i].dist(q[(i + 1) % 4]));
            // A document's side ends at its corners: a line that runs on past a corner is a
            // longer line (a stripe of the table, or the side of a larger rectangle seen
            // through an inner one, such as the edge past a title bar).
            let mut runs_on = 1.0f32;
            for i in 0..4 {
                if on_border[i] {
                    continue;
                }
                let l = side_line(i);
                let Some(profile) = profiles[l].as_ref() else { continue };
                let (a, b) = (q[i], q[(i + 1) % 4]);
                let d = Point::new((b.x - a.x) / lens[i].max(1e-3), (b.y - a.y) / lens[i].max(1e-3));
                let at = |p: Point, t: f32| Point::new(p.x + d.x * t, p.y + d.y * t);
                let reach = (0.12 * lens[i]).max(10.0);
                for (from, to) in [(at(a, -reach), at(a, -0.03 * lens[i])), (at(b, 0.03 * lens[i]), at(b, reach))] {
                    if let Some(c) = profile.support(&lines[l], from, to) {
                        runs_on *= 1.0 - 0.45 * c;
                    }
                }
            }
            let real: Vec<usize> = (0..4).filter(|&i| !on_border[i]).collect();
            let total: f32 = real.iter().map(|&i| lens[i]).sum();
            let mean_support = real.iter().map(|&i| support[i] * lens[i]).sum::<f32>() / total.max(1.0);
            let (l02, l13) = ((lens[0] + lens[2]) / 2.0, (lens[1] + lens[3]) / 2.0);
            let aspect = l02.max(l13) / l02.min(l13).max(1.0);
            let dev = (aspect / ID1_ASPECT).ln().abs().min((aspect / PASSPORT_ASPECT).ln().abs());
            let aspect_factor = if borders == 0 {
                (-(dev / 0.2).powi(2)).exp()
            } else {
                // The visible part of a cut-off document can be any shape up to the full
                // one; only a much longer one is implausible.
                if aspect <= ID1_ASPECT * 1.25 { 0.8 } else { (-(dev / 0.2).powi(2)).exp() }
            };
            let (ff, portrait_hint) = face_factor(&q, &hints);
            let border_factor = 0.55f32.powi(borders as i32);
            if borders > 0 && (portrait_hint.is_none() || real.iter().any(|&i| support[i] < 0.5)) {
                // Image borders alone do not make a document: only with its portrait.
                continue;
            }
            let area_factor = (area2(&q) / 2.0 / img_area).powf(0.25);
            let score = mean_support * aspect_factor * ff * border_factor * area_factor * runs_on;
            if score <= 0.0 {
                continue;
            }
            out.push(Quad { corners: q, score, on_border, support, portrait_hint, rank: score });
        }
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out.truncate(4);
    // Refit each real side to its edge points, back in photo pixels, and a confidence.
    out.into_iter()
        .map(|mut quad| {
            let q = quad.corners;
            let mut fitted: [Option<(f32, f32)>; 4] = [None; 4];
            for i in 0..4 {
                if !quad.on_border[i] {
                    fitted[i] = fit_line(&side_points(&e, q[i], q[(i + 1) % 4]));
                }
            }
            let line = |i: usize| -> Line {
                match fitted[i] {
                    Some((theta, rho)) => Line { theta, rho, border: false },
                    None => {
                        let (a, b) = (q[i], q[(i + 1) % 4]);
                        let theta = (b.y - a.y).atan2(b.x - a.x) + half_pi;
                        Line { theta, rho: a.x * theta.cos() + a.y * theta.sin(), border: true }
                    }
                }
            };
            let mut refined = q;
            for i in 0..4 {
                // Corner i joins side i-1 and side i.
                if let Some(p) = line((i + 3) % 4).intersect(&line(i))
                    && p.dist(q[i]) < 6.0
                {
                    refined[i] = p;
                }
            }
            quad.corners = refined.map(|p| Point::new(p.x / kx, p.y / ky));
            let portrait_bonus = if quad.portrait_hint.is_some() { 1.0 } else { 0.85 };
            let real = quad.on_border.iter().filter(|b| !**b).count().max(1) as f32;
            let mean_support = quad.support.iter().sum::<f32>() / real;
            quad.score = (mean_support * portrait_bonus * 0.8f32.powi(4 - real as i32)).clamp(0.0, 1.0);
            quad
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_plain_card_on_a_table() {
        let (w, h) = (640u32, 480u32);
        let card = [Point::new(150.0, 120.0), Point::new(480.0, 100.0), Point::new(500.0, 310.0), Point::new(160.0, 330.0)];
        // Anti-aliased by 4x4 supersampling, as a camera would blur the edge.
        let img = RgbImage::from_fn(w, h, |x, y| {
            let n = (0..16)
                .filter(|k| inside(&card, Point::new(x as f32 + (k % 4) as f32 / 4.0 + 0.125, y as f32 + (k / 4) as f32 / 4.0 + 0.125)))
                .count();
            let t = n as f32 / 16.0;
            image::Rgb([90.0 + 145.0 * t, 70.0 + 160.0 * t, 50.0 + 190.0 * t].map(|v| v as u8))
        });
        let found = find(&img, &[]);
        let best = found.first().expect("a quad");
        for c in card {
            let d = best.corners.iter().map(|p| p.dist(c)).fold(f32::MAX, f32::min);
            assert!(d < 4.0, "corner {c:?} off by {d}: {:?}", best.corners);
        }
        assert!(best.score > 0.5, "{best:?}");
    }
}
