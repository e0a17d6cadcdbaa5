//! Small geometry kit: points, boxes, 2-D affine and projective maps, the Umeyama similarity
//! fit used for face alignment, and Horn's weighted 3-D rotation fit used for head pose.
//!
//! Image coordinates are continuous pixels after EXIF orientation: origin at the top-left
//! corner of the top-left pixel, x to the right, y down; pixel (i, j) covers [i, i+1) x [j, j+1).

use serde::{Deserialize, Serialize};

/// A point in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

impl Point {
    pub const fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }
    pub fn dist(self, o: Point) -> f32 {
        ((self.x - o.x).powi(2) + (self.y - o.y).powi(2)).sqrt()
    }
}

/// An axis-aligned box in pixels: `x1 <= x2`, `y1 <= y2`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BBox {
    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }
    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }
    pub fn center(&self) -> Point {
        Point::new((self.x1 + self.x2) * 0.5, (self.y1 + self.y2) * 0.5)
    }
    pub fn iou(&self, o: &BBox) -> f32 {
        let ix = (self.x2.min(o.x2) - self.x1.max(o.x1)).max(0.0);
        let iy = (self.y2.min(o.y2) - self.y1.max(o.y1)).max(0.0);
        let inter = ix * iy;
        let union = self.area() + o.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
    /// Fraction of this box's area that lies outside `[0, w) x [0, h)`.
    pub fn fraction_outside(&self, w: f32, h: f32) -> f32 {
        let a = self.area();
        if a <= 0.0 {
            return 0.0;
        }
        let inside = BBox { x1: self.x1.max(0.0), y1: self.y1.max(0.0), x2: self.x2.min(w), y2: self.y2.min(h) };
        (1.0 - inside.area() / a).clamp(0.0, 1.0)
    }
    /// Corners: top-left, top-right, bottom-right, bottom-left (clockwise on screen).
    pub fn corners(&self) -> [Point; 4] {
        [Point::new(self.x1, self.y1), Point::new(self.x2, self.y1), Point::new(self.x2, self.y2), Point::new(self.x1, self.y2)]
    }
    /// The smallest box holding all points.
    pub fn around(points: impl IntoIterator<Item = Point>) -> BBox {
        let mut b = BBox { x1: f32::MAX, y1: f32::MAX, x2: f32::MIN, y2: f32::MIN };
        for p in points {
            b.x1 = b.x1.min(p.x);
            b.y1 = b.y1.min(p.y);
            b.x2 = b.x2.max(p.x);
            b.y2 = b.y2.max(p.y);
        }
        b
    }
}

/// A 2-D affine map `p -> A p + t`, stored row-major as `[a, b, tx, c, d, ty]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine(pub [f64; 6]);

impl Affine {
    pub const IDENTITY: Affine = Affine([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);

    /// Scale `s`, rotation `theta` (radians, clockwise on screen since y points down), then
    /// translation.
    pub fn similarity(s: f64, theta: f64, tx: f64, ty: f64) -> Affine {
        let (sin, cos) = theta.sin_cos();
        Affine([s * cos, -s * sin, tx, s * sin, s * cos, ty])
    }

    pub fn apply(&self, p: Point) -> Point {
        let m = &self.0;
        let (x, y) = (f64::from(p.x), f64::from(p.y));
        Point::new((m[0] * x + m[1] * y + m[2]) as f32, (m[3] * x + m[4] * y + m[5]) as f32)
    }

    /// `self` after `first`: `(self ∘ first)(p) = self(first(p))`.
    pub fn compose(&self, first: &Affine) -> Affine {
        let a = &self.0;
        let b = &first.0;
        Affine([
            a[0] * b[0] + a[1] * b[3],
            a[0] * b[1] + a[1] * b[4],
            a[0] * b[2] + a[1] * b[5] + a[2],
            a[3] * b[0] + a[4] * b[3],
            a[3] * b[1] + a[4] * b[4],
            a[3] * b[2] + a[4] * b[5] + a[5],
        ])
    }

    pub fn det(&self) -> f64 {
        self.0[0] * self.0[4] - self.0[1] * self.0[3]
    }

    /// The inverse map, or `None` when the map is degenerate.
    pub fn inverse(&self) -> Option<Affine> {
        let m = &self.0;
        let det = self.det();
        if det.abs() < 1e-12 || !det.is_finite() {
            return None;
        }
        let (a, b, c, d) = (m[4] / det, -m[1] / det, -m[3] / det, m[0] / det);
        Some(Affine([a, b, -(a * m[2] + b * m[5]), c, d, -(c * m[2] + d * m[5])]))
    }

    /// Linear scale factor of the map (square root of the absolute determinant).
    pub fn scale(&self) -> f64 {
        self.det().abs().sqrt()
    }
}

/// A plane projective map `p -> (H [x y 1]^T)` dehomogenised, row-major 3x3: how a flat
/// document seen at an angle maps onto the photo, and back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Homography(pub [f64; 9]);

impl Homography {
    /// The map taking `src[i]` to `dst[i]` (four points, no three collinear), or `None` when
    /// the points are degenerate.
    pub fn from_points(src: &[Point; 4], dst: &[Point; 4]) -> Option<Homography> {
        // Unknowns h0..h7 with h8 = 1; two equations per pair.
        let mut a = [[0.0f64; 9]; 8];
        for i in 0..4 {
            let (x, y) = (f64::from(src[i].x), f64::from(src[i].y));
            let (u, v) = (f64::from(dst[i].x), f64::from(dst[i].y));
            a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
            a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
        }
        // Gaussian elimination with partial pivoting on the augmented 8x9 system.
        for col in 0..8 {
            let pivot = (col..8).max_by(|&r, &s| a[r][col].abs().total_cmp(&a[s][col].abs()))?;
            if a[pivot][col].abs() < 1e-12 {
                return None;
            }
            a.swap(col, pivot);
            for r in 0..8 {
                if r != col {
                    let f = a[r][col] / a[col][col];
                    for c in col..9 {
                        a[r][c] -= f * a[col][c];
                    }
                }
            }
        }
        let mut h = [0.0; 9];
        for i in 0..8 {
            h[i] = a[i][8] / a[i][i];
        }
        h[8] = 1.0;
        h.iter().all(|v| v.is_finite()).then_some(Homography(h))
    }

    pub fn apply(&self, p: Point) -> Point {
        let h = &self.0;
        let (x, y) = (f64::from(p.x), f64::from(p.y));
        let w = h[6] * x + h[7] * y + h[8];
        Point::new(((h[0] * x + h[1] * y + h[2]) / w) as f32, ((h[3] * x + h[4] * y + h[5]) / w) as f32)
    }

    pub fn inverse(&self) -> Option<Homography> {
        let m = &self.0;
        let c = [
            m[4] * m[8] - m[5] * m[7],
            m[2] * m[7] - m[1] * m[8],
            m[1] * m[5] - m[2] * m[4],
            m[5] * m[6] - m[3] * m[8],
            m[0] * m[8] - m[2] * m[6],
            m[2] * m[3] - m[0] * m[5],
            m[3] * m[7] - m[4] * m[6],
            m[1] * m[6] - m[0] * m[7],
            m[0] * m[4] - m[1] * m[3],
        ];
        let det = m[0] * c[0] + m[1] * c[3] + m[2] * c[6];
        if det.abs() < 1e-15 || !det.is_finite() {
            return None;
        }
        Some(Homography(c.map(|v| v / det)))
    }

    /// `self` after `first`: `(self ∘ first)(p) = self(first(p))`.
    pub fn compose(&self, first: &Homography) -> Homography {
        let (a, b) = (&self.0, &first.0);
        let mut r = [0.0; 9];
        for i in 0..3 {
            for j in 0..3 {
                r[i * 3 + j] = (0..3).map(|k| a[i * 3 + k] * b[k * 3 + j]).sum();
            }
        }
        Homography(r)
    }

    /// The images of a rectangle's corners: top-left, top-right, bottom-right, bottom-left.
    pub fn quad(&self, r: &BBox) -> [Point; 4] {
        r.corners().map(|p| self.apply(p))
    }
}

/// Least-squares similarity transform (scale, rotation, translation; no reflection) taking
/// `src` points onto `dst` points (Umeyama 1991). Returns `None` for degenerate input.
pub fn umeyama_2d(src: &[Point], dst: &[Point]) -> Option<Affine> {
    if src.len() != dst.len() || src.len() < 2 {
        return None;
    }
    let n = src.len() as f64;
    let mean = |ps: &[Point]| {
        let (sx, sy) = ps.iter().fold((0.0, 0.0), |(a, b), p| (a + f64::from(p.x), b + f64::from(p.y)));
        (sx / n, sy / n)
    };
    let (msx, msy) = mean(src);
    let (mdx, mdy) = mean(dst);
    // With complex numbers: dst ≈ z * src + t, z = sum(conj(s) d) / sum(|s|^2).
    let (mut re, mut im, mut var) = (0.0, 0.0, 0.0);
    for (s, d) in src.iter().zip(dst) {
        let (sx, sy) = (f64::from(s.x) - msx, f64::from(s.y) - msy);
        let (dx, dy) = (f64::from(d.x) - mdx, f64::from(d.y) - mdy);
        re += sx * dx + sy * dy;
        im += sx * dy - sy * dx;
        var += sx * sx + sy * sy;
    }
    if var < 1e-12 {
        return None;
    }
    let (a, b) = (re / var, im / var);
    Some(Affine([a, -b, mdx - (a * msx - b * msy), b, a, mdy - (b * msx + a * msy)]))
}

/// A 3x3 rotation matrix, row-major.
pub type Mat3 = [[f64; 3]; 3];

/// Weighted least-squares rotation `R` (and uniform scale) that best maps the centred
/// `model` points onto the centred `observed` points, by Horn's quaternion method.
/// Returns the rotation; reflections are impossible by construction.
pub fn fit_rotation(model: &[[f64; 3]], observed: &[[f64; 3]], weights: &[f64]) -> Mat3 {
    let wsum: f64 = weights.iter().sum::<f64>().max(1e-12);
    let centroid = |ps: &[[f64; 3]]| {
        let mut c = [0.0; 3];
        for (p, w) in ps.iter().zip(weights) {
            for k in 0..3 {
                c[k] += w * p[k];
            }
        }
        c.map(|v| v / wsum)
    };
    let cm = centroid(model);
    let co = centroid(observed);
    // Cross-covariance S[a][b] = sum w * m_a * o_b.
    let mut s = [[0.0f64; 3]; 3];
    for ((m, o), w) in model.iter().zip(observed).zip(weights) {
        for a in 0..3 {
            for b in 0..3 {
                s[a][b] += w * (m[a] - cm[a]) * (o[b] - co[b]);
            }
        }
    }
    let (sxx, sxy, sxz) = (s[0][0], s[0][1], s[0][2]);
    let (syx, syy, syz) = (s[1][0], s[1][1], s[1][2]);
    let (szx, szy, szz) = (s[2][0], s[2][1], s[2][2]);
    let n = [
        [sxx + syy + szz, syz - szy, szx - sxz, sxy - syx],
        [syz - szy, sxx - syy - szz, sxy + syx, szx + sxz],
        [szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy],
        [sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz],
    ];
    let q = largest_eigenvector_4(n);
    quat_to_mat(q)
}

fn quat_to_mat([w, x, y, z]: [f64; 4]) -> Mat3 {
    [
        [w * w + x * x - y * y - z * z, 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
        [2.0 * (x * y + w * z), w * w - x * x + y * y - z * z, 2.0 * (y * z - w * x)],
        [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), w * w - x * x - y * y + z * z],
    ]
}

/// Eigenvector of the largest eigenvalue of a symmetric 4x4 matrix (cyclic Jacobi).
fn largest_eigenvector_4(mut a: [[f64; 4]; 4]) -> [f64; 4] {
    let mut v = [[0.0f64; 4]; 4];
    for (i, row) in v.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for _sweep in 0..50 {
        let off: f64 = (0..4).flat_map(|i| (0..4).map(move |j| (i, j))).filter(|(i, j)| i != j).map(|(i, j)| a[i][j] * a[i][j]).sum();
        if off < 1e-22 {
            break;
        }
        for p in 0..3 {
            for q in (p + 1)..4 {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..4 {
                    let (akp, akq) = (a[k][p], a[k][q]);
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for k in 0..4 {
                    let (apk, aqk) = (a[p][k], a[q][k]);
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    let best = (0..4).max_by(|&i, &j| a[i][i].total_cmp(&a[j][j])).unwrap_or(0);
    let mut q = [v[0][best], v[1][best], v[2][best], v[3][best]];
    let norm = q.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
    q.iter_mut().for_each(|x| *x /= norm);
    q
}

pub fn mat_mul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut r = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            r[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    r
}

pub fn mat_vec(a: &Mat3, v: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|i| a[i][0] * v[0] + a[i][1] * v[1] + a[i][2] * v[2])
}

pub fn transpose(a: &Mat3) -> Mat3 {
    [[a[0][0], a[1][0], a[2][0]], [a[0][1], a[1][1], a[2][1]], [a[0][2], a[1][2], a[2][2]]]
}

/// Rotation about the y axis (image-down axis) by `a` radians.
pub fn rot_y(a: f64) -> Mat3 {
    let (s, c) = a.sin_cos();
    [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
}

/// Rotation about the x axis (image-right axis) by `a` radians.
pub fn rot_x(a: f64) -> Mat3 {
    let (s, c) = a.sin_cos();
    [[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]]
}

/// Rotation about the z axis (the camera axis) by `a` radians; clockwise on screen.
pub fn rot_z(a: f64) -> Mat3 {
    let (s, c) = a.sin_cos();
    [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn umeyama_recovers_a_similarity() {
        let t = Affine::similarity(1.7, 0.3, 12.0, -4.0);
        let src = [Point::new(0.0, 0.0), Point::new(10.0, 2.0), Point::new(3.0, 9.0), Point::new(-4.0, 5.0)];
        let dst: Vec<Point> = src.iter().map(|p| t.apply(*p)).collect();
        let fit = umeyama_2d(&src, &dst).expect("non-degenerate");
        for (a, b) in fit.0.iter().zip(t.0.iter()) {
            assert!((a - b).abs() < 1e-6, "{fit:?} vs {t:?}");
        }
        let inv = fit.inverse().expect("invertible");
        let p = inv.apply(fit.apply(Point::new(3.0, 4.0)));
        assert!((p.x - 3.0).abs() < 1e-4 && (p.y - 4.0).abs() < 1e-4);
    }

    #[test]
    fn homography_maps_four_points_and_inverts() {
        let src = [Point::new(0.0, 0.0), Point::new(100.0, 0.0), Point::new(100.0, 60.0), Point::new(0.0, 60.0)];
        let dst = [Point::new(12.0, 30.0), Point::new(140.0, 22.0), Point::new(150.0, 110.0), Point::new(5.0, 95.0)];
        let h = Homography::from_points(&src, &dst).expect("non-degenerate");
        for (s, d) in src.iter().zip(&dst) {
            assert!(h.apply(*s).dist(*d) < 1e-3);
        }
        let back = h.inverse().expect("invertible").compose(&h);
        let p = back.apply(Point::new(37.0, 21.0));
        assert!(p.dist(Point::new(37.0, 21.0)) < 1e-3, "{p:?}");
        let degenerate = [Point::new(0.0, 0.0), Point::new(1.0, 1.0), Point::new(2.0, 2.0), Point::new(3.0, 3.0)];
        assert!(Homography::from_points(&src, &degenerate).is_none_or(|h| h.inverse().is_none()));
    }

    #[test]
    fn horn_recovers_a_rotation() {
        let r = mat_mul(&rot_y(0.4), &mat_mul(&rot_x(-0.2), &rot_z(0.1)));
        let model: Vec<[f64; 3]> = (0..20)
            .map(|i| {
                let f = f64::from(i);
                [f.sin() * 3.0, (f * 0.7).cos() * 2.0, (f * 1.3).sin()]
            })
            .collect();
        let obs: Vec<[f64; 3]> = model.iter().map(|p| mat_vec(&r, *p).map(|v| v * 2.5 + 7.0)).collect();
        let fit = fit_rotation(&model, &obs, &vec![1.0; model.len()]);
        for i in 0..3 {
            for j in 0..3 {
                assert!((fit[i][j] - r[i][j]).abs() < 1e-9, "{fit:?} vs {r:?}");
            }
        }
    }
}
