//! Pixel operations the models need: anti-aliased affine warps (crops, letterboxing,
//! alignment) and perspective warps (document rectification), grayscale, mirroring and the
//! simple statistics behind the quality measures.

use image::RgbImage;

use crate::geometry::{Affine, Homography, Point};

/// An RGB image with `f32` samples in 0..=255, interleaved, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl FloatImage {
    pub fn zeros(width: usize, height: usize) -> Self {
        Self { width, height, data: vec![0.0; width * height * 3] }
    }

    /// The image mirrored left to right.
    pub fn mirrored(&self) -> FloatImage {
        let mut out = FloatImage::zeros(self.width, self.height);
        for y in 0..self.height {
            for x in 0..self.width {
                let s = (y * self.width + x) * 3;
                let d = (y * self.width + (self.width - 1 - x)) * 3;
                out.data[d..d + 3].copy_from_slice(&self.data[s..s + 3]);
            }
        }
        out
    }

    /// Luma (BT.601) per pixel, 0..=255.
    pub fn luma(&self) -> Vec<f32> {
        self.data.chunks_exact(3).map(|p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]).collect()
    }

    pub fn to_rgb8(&self) -> RgbImage {
        let buf = self.data.iter().map(|v| v.round().clamp(0.0, 255.0) as u8).collect();
        RgbImage::from_raw(self.width as u32, self.height as u32, buf).expect("buffer length matches dimensions: this is a bug")
    }
}

trait Pixels {
    fn dims(&self) -> (usize, usize);
    fn px(&self, x: usize, y: usize) -> [f32; 3];
}

impl Pixels for RgbImage {
    fn dims(&self) -> (usize, usize) {
        (self.width() as usize, self.height() as usize)
    }
    #[inline]
    fn px(&self, x: usize, y: usize) -> [f32; 3] {
        let i = (y * self.width() as usize + x) * 3;
        let r = &self.as_raw()[i..i + 3];
        [f32::from(r[0]), f32::from(r[1]), f32::from(r[2])]
    }
}

impl Pixels for FloatImage {
    fn dims(&self) -> (usize, usize) {
        (self.width, self.height)
    }
    #[inline]
    fn px(&self, x: usize, y: usize) -> [f32; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

/// Renders the `out_w` x `out_h` image whose pixel centre `(u + 0.5, v + 0.5)` shows the
/// source point `dst_to_src(u + 0.5, v + 0.5)`, sampled bilinearly; outside the source is
/// black. When the map shrinks by more than 2x, the needed source region is first
/// area-averaged by an integer factor so the result does not alias.
pub fn warp_affine(src: &RgbImage, dst_to_src: &Affine, out_w: usize, out_h: usize) -> FloatImage {
    let s = dst_to_src.scale();
    if s <= 2.0 || !s.is_finite() {
        return sample(src, dst_to_src, out_w, out_h);
    }
    let k = s.floor() as usize;
    let corners = [(0.0, 0.0), (out_w as f32, 0.0), (0.0, out_h as f32), (out_w as f32, out_h as f32)]
        .map(|(x, y)| dst_to_src.apply(Point::new(x, y)));
    let (sw, sh) = (src.width() as f32, src.height() as f32);
    let fold = |f: fn(f32, f32) -> f32, init: f32, g: fn(&Point) -> f32| corners.iter().map(g).fold(init, f);
    // Round the region out to whole blocks so block edges stay on the source grid.
    let x1 = ((fold(f32::min, f32::MAX, |p| p.x) - 1.0).max(0.0) as usize / k) * k;
    let y1 = ((fold(f32::min, f32::MAX, |p| p.y) - 1.0).max(0.0) as usize / k) * k;
    let x2 = (fold(f32::max, f32::MIN, |p| p.x) + 1.0).clamp(0.0, sw) as usize;
    let y2 = (fold(f32::max, f32::MIN, |p| p.y) + 1.0).clamp(0.0, sh) as usize;
    if x2 <= x1 || y2 <= y1 {
        return FloatImage::zeros(out_w, out_h);
    }
    let small = block_average(src, x1, y1, x2, y2, k);
    let kf = k as f64;
    let to_small = Affine([1.0 / kf, 0.0, -(x1 as f64) / kf, 0.0, 1.0 / kf, -(y1 as f64) / kf]);
    sample(&small, &to_small.compose(dst_to_src), out_w, out_h)
}

fn sample<P: Pixels>(src: &P, m: &Affine, out_w: usize, out_h: usize) -> FloatImage {
    let (w, h) = src.dims();
    let mut out = FloatImage::zeros(out_w, out_h);
    let get = |x: i64, y: i64| -> [f32; 3] {
        if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 { [0.0; 3] } else { src.px(x as usize, y as usize) }
    };
    let a = &m.0;
    for v in 0..out_h {
        let vc = v as f64 + 0.5;
        for u in 0..out_w {
            let uc = u as f64 + 0.5;
            let sx = a[0] * uc + a[1] * vc + a[2] - 0.5;
            let sy = a[3] * uc + a[4] * vc + a[5] - 0.5;
            if !(sx > -1.0 && sy > -1.0 && sx < w as f64 && sy < h as f64) {
                continue;
            }
            let x0 = sx.floor();
            let y0 = sy.floor();
            let fx = (sx - x0) as f32;
            let fy = (sy - y0) as f32;
            let (x0, y0) = (x0 as i64, y0 as i64);
            let p00 = get(x0, y0);
            let p10 = get(x0 + 1, y0);
            let p01 = get(x0, y0 + 1);
            let p11 = get(x0 + 1, y0 + 1);
            let o = (v * out_w + u) * 3;
            for c in 0..3 {
                let top = p00[c] + (p10[c] - p00[c]) * fx;
                let bot = p01[c] + (p11[c] - p01[c]) * fx;
                out.data[o + c] = top + (bot - top) * fy;
            }
        }
    }
    out
}

/// Renders the `out_w` x `out_h` image whose pixel centre `(u + 0.5, v + 0.5)` shows the
/// source point `dst_to_src(u + 0.5, v + 0.5)`, sampled bilinearly; outside the source is
/// black. For rectifying a document seen at an angle. When the map shrinks by more than 2x
/// on average, the source is first area-averaged by an integer factor so the result does
/// not alias.
pub fn warp_perspective(src: &RgbImage, dst_to_src: &Homography, out_w: usize, out_h: usize) -> FloatImage {
    // Mean linear scale: the source quad's area over the output's.
    let q = dst_to_src.quad(&crate::geometry::BBox { x1: 0.0, y1: 0.0, x2: out_w as f32, y2: out_h as f32 });
    let area2: f32 = (0..4).map(|i| q[i].x * q[(i + 1) % 4].y - q[(i + 1) % 4].x * q[i].y).sum();
    let s = f64::from((area2.abs() / 2.0 / (out_w * out_h).max(1) as f32).sqrt());
    if s <= 2.0 || !s.is_finite() {
        return sample_projective(src, dst_to_src, out_w, out_h);
    }
    let k = s.floor() as usize;
    let small = block_average(src, 0, 0, src.width() as usize, src.height() as usize, k);
    let kf = k as f64;
    let to_small = Homography([1.0 / kf, 0.0, 0.0, 0.0, 1.0 / kf, 0.0, 0.0, 0.0, 1.0]);
    sample_projective(&small, &to_small.compose(dst_to_src), out_w, out_h)
}

fn sample_projective<P: Pixels>(src: &P, m: &Homography, out_w: usize, out_h: usize) -> FloatImage {
    let (w, h) = src.dims();
    let mut out = FloatImage::zeros(out_w, out_h);
    let get = |x: i64, y: i64| -> [f32; 3] {
        if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 { [0.0; 3] } else { src.px(x as usize, y as usize) }
    };
    let a = &m.0;
    for v in 0..out_h {
        let vc = v as f64 + 0.5;
        for u in 0..out_w {
            let uc = u as f64 + 0.5;
            let d = a[6] * uc + a[7] * vc + a[8];
            if d.abs() < 1e-12 {
                continue;
            }
            let sx = (a[0] * uc + a[1] * vc + a[2]) / d - 0.5;
            let sy = (a[3] * uc + a[4] * vc + a[5]) / d - 0.5;
            if !(sx > -1.0 && sy > -1.0 && sx < w as f64 && sy < h as f64) {
                continue;
            }
            let x0 = sx.floor();
            let y0 = sy.floor();
            let fx = (sx - x0) as f32;
            let fy = (sy - y0) as f32;
            let (x0, y0) = (x0 as i64, y0 as i64);
            let p00 = get(x0, y0);
            let p10 = get(x0 + 1, y0);
            let p01 = get(x0, y0 + 1);
            let p11 = get(x0 + 1, y0 + 1);
            let o = (v * out_w + u) * 3;
            for c in 0..3 {
                let top = p00[c] + (p10[c] - p00[c]) * fx;
                let bot = p01[c] + (p11[c] - p01[c]) * fx;
                out.data[o + c] = top + (bot - top) * fy;
            }
        }
    }
    out
}

/// Averages `k` x `k` blocks of the source region `[x1, x2) x [y1, y2)`; blocks cut by the
/// region's right or bottom edge average the pixels they have.
fn block_average(src: &RgbImage, x1: usize, y1: usize, x2: usize, y2: usize, k: usize) -> FloatImage {
    let ow = (x2 - x1).div_ceil(k);
    let oh = (y2 - y1).div_ceil(k);
    let mut out = FloatImage::zeros(ow, oh);
    let stride = src.width() as usize * 3;
    let raw = src.as_raw();
    // Integer sums, one output row at a time: exact, so the result is what summing in f32
    // gives (every partial sum is an integer below 2^24), at a fraction of the cost.
    let mut acc = vec![0u32; ow * 3];
    for oy in 0..oh {
        let (ya, yb) = (y1 + oy * k, (y1 + (oy + 1) * k).min(y2));
        acc.fill(0);
        for y in ya..yb {
            let row = &raw[y * stride + x1 * 3..y * stride + x2 * 3];
            for (block, a) in row.chunks(k * 3).zip(acc.chunks_exact_mut(3)) {
                let (mut r, mut g, mut b) = (0u32, 0u32, 0u32);
                for p in block.chunks_exact(3) {
                    r += u32::from(p[0]);
                    g += u32::from(p[1]);
                    b += u32::from(p[2]);
                }
                a[0] += r;
                a[1] += g;
                a[2] += b;
            }
        }
        let rows = yb - ya;
        for (ox, (a, o)) in acc.chunks_exact(3).zip(out.data[oy * ow * 3..(oy + 1) * ow * 3].chunks_exact_mut(3)).enumerate() {
            let count = (rows * k.min(x2 - x1 - ox * k)) as f32;
            for c in 0..3 {
                o[c] = a[c] as f32 / count;
            }
        }
    }
    out
}

/// Variance of the 4-neighbour Laplacian over the interior of a luma plane: a standard,
/// cheap sharpness measure (higher is sharper; units are squared grey levels).
pub fn laplacian_variance(luma: &[f32], width: usize, height: usize) -> f32 {
    if width < 3 || height < 3 {
        return 0.0;
    }
    let mut sum = 0.0f64;
    let mut sum2 = 0.0f64;
    let mut n = 0.0f64;
    for y in 1..height - 1 {
        for x in 1..width - 1 {
            let i = y * width + x;
            let l = f64::from(luma[i - 1] + luma[i + 1] + luma[i - width] + luma[i + width] - 4.0 * luma[i]);
            sum += l;
            sum2 += l * l;
            n += 1.0;
        }
    }
    let mean = sum / n;
    (sum2 / n - mean * mean) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Block averaging the plain way: every pixel added in f32 to its block, then divided.
    fn block_average_reference(src: &RgbImage, x1: usize, y1: usize, x2: usize, y2: usize, k: usize) -> FloatImage {
        let (ow, oh) = ((x2 - x1).div_ceil(k), (y2 - y1).div_ceil(k));
        let mut out = FloatImage::zeros(ow, oh);
        let mut cnt = vec![0u32; ow * oh];
        for y in y1..y2 {
            for x in x1..x2 {
                let o = (y - y1) / k * ow + (x - x1) / k;
                let p = src.get_pixel(x as u32, y as u32).0;
                (0..3).for_each(|c| out.data[o * 3 + c] += f32::from(p[c]));
                cnt[o] += 1;
            }
        }
        for (i, c) in cnt.iter().enumerate() {
            (0..3).for_each(|ch| out.data[i * 3 + ch] /= *c as f32);
        }
        out
    }

    #[test]
    fn block_average_equals_the_plain_sum_bit_for_bit() {
        // Pseudo-random pixels; regions whose sides are not multiples of k (ragged blocks).
        let mut state = 12345u32;
        let img = RgbImage::from_fn(203, 151, |_, _| {
            let mut next = || {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            };
            image::Rgb([next(), next(), next()])
        });
        for (x1, y1, x2, y2, k) in [(0, 0, 203, 151, 7), (5, 3, 200, 150, 3), (10, 20, 11, 22, 4), (0, 0, 203, 151, 64)] {
            assert_eq!(block_average(&img, x1, y1, x2, y2, k), block_average_reference(&img, x1, y1, x2, y2, k), "k={k}");
        }
    }

    #[test]
    fn identity_warp_reproduces_pixels() {
        let img = RgbImage::from_fn(8, 6, |x, y| image::Rgb([(x * 30) as u8, (y * 40) as u8, 7]));
        let out = warp_affine(&img, &Affine::IDENTITY, 8, 6);
        assert_eq!(out.to_rgb8(), img);
    }

    #[test]
    fn perspective_warp_agrees_with_the_affine_warp_on_affine_maps() {
        let img = RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, ((x * y) % 256) as u8]));
        let a = Affine([0.8, 0.1, 3.0, -0.05, 0.9, 2.0]);
        let h = Homography([0.8, 0.1, 3.0, -0.05, 0.9, 2.0, 0.0, 0.0, 1.0]);
        assert_eq!(warp_perspective(&img, &h, 30, 20), warp_affine(&img, &a, 30, 20));
    }

    #[test]
    fn strong_shrink_averages_instead_of_aliasing() {
        // A one-pixel checkerboard shrunk 8x must come out mid-grey, not black or white.
        let img = RgbImage::from_fn(64, 64, |x, y| if (x + y) % 2 == 0 { image::Rgb([255; 3]) } else { image::Rgb([0; 3]) });
        let m = Affine([8.0, 0.0, 0.0, 0.0, 8.0, 0.0]);
        let out = warp_affine(&img, &m, 8, 8);
        for v in &out.data[3 * 9..3 * 54] {
            assert!((v - 127.5).abs() < 20.0, "{v}");
        }
    }
}
