//! The camera that films a presentation: light in the scene (linear, [`Plane`]) becomes
//! the 8-bit sRGB frame a webcam or phone delivers. In order: lens blur, the Bayer colour
//! filter (each sensor pixel sees one colour), shot and read noise on the raw values,
//! bilinear demosaicing, and the sRGB tone curve; the JPEG encoder comes after, at
//! [`Camera::jpeg_quality`].
//!
//! The scene renderers (prints, screens) integrate light over each sensor pixel's area
//! themselves (supersampling or exact footprints), so aliasing of fine patterns (halftone
//! dots, a screen's sub-pixels) into moiré happens where it happens in a real camera: at
//! sampling, not in a filter applied afterwards.

use image::RgbImage;

use crate::idcard::Rng;

/// Linear-light RGB, 1.0 = the camera's clipping level at its current exposure.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    pub w: usize,
    pub h: usize,
    pub px: Vec<[f32; 3]>,
}

impl Plane {
    pub fn new(w: usize, h: usize, fill: [f32; 3]) -> Plane {
        Plane { w, h, px: vec![fill; w * h] }
    }

    /// The linear light an sRGB image encodes.
    pub fn from_srgb(img: &RgbImage) -> Plane {
        let lut = srgb_lut();
        let px = img.pixels().map(|p| p.0.map(|v| lut[usize::from(v)])).collect();
        Plane { w: img.width() as usize, h: img.height() as usize, px }
    }

    /// The colour at continuous point `(x, y)` (pixel centres at half-integers), bilinear,
    /// edges clamped.
    pub fn bilinear(&self, x: f32, y: f32) -> [f32; 3] {
        let fx = (x - 0.5).clamp(0.0, (self.w - 1) as f32);
        let fy = (y - 0.5).clamp(0.0, (self.h - 1) as f32);
        let (x0, y0) = (fx as usize, fy as usize);
        let (x1, y1) = ((x0 + 1).min(self.w - 1), (y0 + 1).min(self.h - 1));
        let (ax, ay) = (fx - x0 as f32, fy - y0 as f32);
        let (p00, p10, p01, p11) =
            (self.px[y0 * self.w + x0], self.px[y0 * self.w + x1], self.px[y1 * self.w + x0], self.px[y1 * self.w + x1]);
        [0, 1, 2].map(|c| {
            let top = p00[c] + (p10[c] - p00[c]) * ax;
            let bot = p01[c] + (p11[c] - p01[c]) * ax;
            top + (bot - top) * ay
        })
    }

    /// Separable Gaussian blur, edges clamped.
    pub fn blur(&mut self, sigma: f32) {
        if sigma < 0.05 {
            return;
        }
        let rad = (3.0 * sigma).ceil() as isize;
        let k: Vec<f32> = (-rad..=rad).map(|i| (-((i * i) as f32) / (2.0 * sigma * sigma)).exp()).collect();
        let sum: f32 = k.iter().sum();
        let k: Vec<f32> = k.iter().map(|v| v / sum).collect();
        let (w, h) = (self.w as isize, self.h as isize);
        let mut tmp = vec![[0.0f32; 3]; self.px.len()];
        for y in 0..h {
            for x in 0..w {
                let mut acc = [0.0f32; 3];
                for (i, kv) in k.iter().enumerate() {
                    let sx = (x + i as isize - rad).clamp(0, w - 1);
                    let p = self.px[(y * w + sx) as usize];
                    for c in 0..3 {
                        acc[c] += kv * p[c];
                    }
                }
                tmp[(y * w + x) as usize] = acc;
            }
        }
        for y in 0..h {
            for x in 0..w {
                let mut acc = [0.0f32; 3];
                for (i, kv) in k.iter().enumerate() {
                    let sy = (y + i as isize - rad).clamp(0, h - 1);
                    let p = tmp[(sy * w + x) as usize];
                    for c in 0..3 {
                        acc[c] += kv * p[c];
                    }
                }
                self.px[(y * w + x) as usize] = acc;
            }
        }
    }

    /// 8-bit sRGB, clipped.
    pub fn to_srgb(&self) -> RgbImage {
        let raw: Vec<u8> = self.px.iter().flat_map(|p| p.map(encode_srgb)).collect();
        RgbImage::from_raw(self.w as u32, self.h as u32, raw).expect("w * h * 3 bytes: this is a bug")
    }
}

/// sRGB code value (0..255) to linear light, as a table.
pub fn srgb_lut() -> &'static [f32; 256] {
    static LUT: std::sync::OnceLock<[f32; 256]> = std::sync::OnceLock::new();
    LUT.get_or_init(|| {
        std::array::from_fn(|i| {
            let v = i as f32 / 255.0;
            if v <= 0.04045 { v / 12.92 } else { ((v + 0.055) / 1.055).powf(2.4) }
        })
    })
}

/// Linear light to an 8-bit sRGB code value, clipped.
pub fn encode_srgb(v: f32) -> u8 {
    let v = v.clamp(0.0, 1.0);
    let e = if v <= 0.003_130_8 { 12.92 * v } else { 1.055 * v.powf(1.0 / 2.4) - 0.055 };
    (e * 255.0 + 0.5) as u8
}

/// What a camera does to the light that reaches it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Camera {
    /// Lens blur beyond the pixel's own area, Gaussian sigma in pixels.
    pub blur_sigma: f32,
    /// Shot noise: variance per unit of linear signal (1 / electrons at clipping).
    pub shot: f32,
    /// Read noise, standard deviation in linear units.
    pub read: f32,
    /// Quality of the camera's JPEG encoder (1-100).
    pub jpeg_quality: u8,
}

impl Camera {
    /// A webcam or phone front camera: slightly soft lens, 800-4000 electrons at clipping
    /// after indoor gain, JPEG quality 70-95.
    pub fn random(rng: &mut Rng) -> Camera {
        Camera {
            blur_sigma: rng.range(0.3, 0.8),
            shot: 1.0 / rng.range(800.0, 4000.0),
            read: rng.range(0.001, 0.004),
            jpeg_quality: rng.range(70.0, 96.0) as u8,
        }
    }

    /// The frame the camera delivers for `scene` (before JPEG encoding).
    pub fn capture(&self, scene: &Plane, rng: &mut Rng) -> RgbImage {
        let mut light = scene.clone();
        light.blur(self.blur_sigma);
        let (w, h) = (light.w, light.h);
        // RGGB mosaic: the one channel each sensor pixel sees, with its noise.
        let mut raw = vec![0.0f32; w * h];
        for y in 0..h {
            for x in 0..w {
                let v = light.px[y * w + x][bayer(x, y)].max(0.0);
                let sigma = (self.shot * v + self.read * self.read).sqrt();
                raw[y * w + x] = (v + sigma * rng.normal()).clamp(0.0, 1.0);
            }
        }
        let mut out = Plane::new(w, h, [0.0; 3]);
        for y in 0..h {
            for x in 0..w {
                let mut sum = [0.0f32; 3];
                let mut n = [0.0f32; 3];
                for dy in -1isize..=1 {
                    for dx in -1isize..=1 {
                        let (sx, sy) = (x as isize + dx, y as isize + dy);
                        if sx < 0 || sy < 0 || sx >= w as isize || sy >= h as isize {
                            continue;
                        }
                        let c = bayer(sx as usize, sy as usize);
                        // Bilinear demosaicing: a pixel's own sample, else its nearest ones.
                        let weight = if dx == 0 && dy == 0 {
                            4.0
                        } else if dx == 0 || dy == 0 {
                            2.0
                        } else {
                            1.0
                        };
                        sum[c] += weight * raw[sy as usize * w + sx as usize];
                        n[c] += weight;
                    }
                }
                let own = bayer(x, y);
                out.px[y * w + x] = [0, 1, 2].map(|c| {
                    if c == own {
                        raw[y * w + x]
                    } else if n[c] > 0.0 {
                        sum[c] / n[c]
                    } else {
                        0.0
                    }
                });
            }
        }
        out.to_srgb()
    }
}

/// The colour an RGGB sensor pixel sees.
fn bayer(x: usize, y: usize) -> usize {
    match (x % 2, y % 2) {
        (0, 0) => 0,
        (1, 1) => 2,
        _ => 1,
    }
}

/// A dim room behind the attack: smooth colour blotches at `scale` pixels.
pub fn room(seed: u64, x: f32, y: f32, scale: f32) -> [f32; 3] {
    let n = |k: u64| crate::idcard::fbm(seed ^ k, x / scale, y / scale);
    let base = 0.04 + 0.35 * n(11);
    [base * (0.8 + 0.4 * n(12)), base * (0.8 + 0.4 * n(13)), base * (0.8 + 0.4 * n(14))]
}

/// Skin in linear light, for fingers and hands in front of an attack.
pub fn skin(rng: &mut Rng) -> [f32; 3] {
    let tone = rng.range(0.35, 1.1);
    [0.42 * tone, 0.27 * tone, 0.19 * tone]
}

/// Distance from `p` to the segment `a b`.
pub fn segment_distance(p: [f32; 2], a: [f32; 2], b: [f32; 2]) -> f32 {
    let (vx, vy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = (vx * vx + vy * vy).max(1e-9);
    let t = (((p[0] - a[0]) * vx + (p[1] - a[1]) * vy) / len2).clamp(0.0, 1.0);
    (p[0] - a[0] - t * vx).hypot(p[1] - a[1] - t * vy)
}

/// A finger: a capsule of radius `r` along `a b`, shaded as a cylinder lit from the front.
/// Paints over `plane` where it covers it.
pub fn paint_finger(plane: &mut Plane, a: [f32; 2], b: [f32; 2], r: f32, colour: [f32; 3]) {
    let (x1, x2) = ((a[0].min(b[0]) - r).floor().max(0.0) as usize, ((a[0].max(b[0]) + r).ceil().max(0.0) as usize).min(plane.w));
    let (y1, y2) = ((a[1].min(b[1]) - r).floor().max(0.0) as usize, ((a[1].max(b[1]) + r).ceil().max(0.0) as usize).min(plane.h));
    for y in y1..y2 {
        for x in x1..x2 {
            let d = segment_distance([x as f32 + 0.5, y as f32 + 0.5], a, b);
            // Anti-aliased edge, cosine shading across the finger.
            let cover = (r + 0.5 - d).clamp(0.0, 1.0);
            if cover <= 0.0 {
                continue;
            }
            let shade = 0.35 + 0.65 * (1.0 - (d / r).min(1.0).powi(2)).sqrt();
            let p = &mut plane.px[y * plane.w + x];
            for c in 0..3 {
                p[c] = p[c] * (1.0 - cover) + colour[c] * shade * cover;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finger_covers_its_capsule_only() {
        let mut p = Plane::new(100, 100, [0.0; 3]);
        paint_finger(&mut p, [-50.0, 50.0], [40.0, 50.0], 10.0, [0.5, 0.3, 0.2]);
        assert!(p.px[50 * 100 + 20][0] > 0.3, "{:?}", p.px[50 * 100 + 20]);
        assert_eq!(p.px[50 * 100 + 60], [0.0; 3]);
        assert_eq!(p.px[10 * 100 + 20], [0.0; 3]);
    }
}
