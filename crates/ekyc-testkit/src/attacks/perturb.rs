//! Per-frame perturbation: what an attacker does to frames rendered from one still so that
//! no two frames share bytes or pixels, and what a real camera would do anyway. Each frame
//! gets a small shift (whole and sub-pixel, bilinear, the frame size kept), fresh
//! sensor-like noise (shot noise growing with brightness plus read noise, independent per
//! pixel and channel) and a new JPEG encoding at a random quality.

use image::RgbImage;

use super::camera::{Plane, encode_srgb};
use crate::headturn::{TurnError, encode_jpeg};
use crate::idcard::Rng;

/// One frame's perturbation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perturbation {
    /// Shift of the content, pixels (x right, y down); at least 0.3 px in each axis.
    pub shift: (f32, f32),
    /// Shot noise: variance per unit of linear signal.
    pub shot: f32,
    /// Read noise, linear standard deviation.
    pub read: f32,
    pub jpeg_quality: u8,
}

impl Perturbation {
    /// Drawn from `seed`: shift 0.3-3 px each way, noise of a webcam at indoor gain,
    /// JPEG quality 70-95.
    pub fn random(seed: u64) -> Perturbation {
        let mut r = Rng::new(seed ^ 0x7065_7274_7572);
        let mut shift = || {
            let m = r.range(0.3, 3.0);
            if r.chance(0.5) { m } else { -m }
        };
        let shift = (shift(), shift());
        Perturbation { shift, shot: 1.0 / r.range(1000.0, 5000.0), read: r.range(0.001, 0.004), jpeg_quality: r.range(70.0, 96.0) as u8 }
    }

    /// The perturbed image before encoding; `seed` draws the noise.
    pub fn apply(&self, img: &RgbImage, seed: u64) -> RgbImage {
        let mut rng = Rng::new(seed ^ 0x006e_6f69_7365);
        let src = Plane::from_srgb(img);
        let mut out = Plane::new(src.w, src.h, [0.0; 3]);
        for y in 0..src.h {
            for x in 0..src.w {
                let p = src.bilinear(x as f32 + 0.5 - self.shift.0, y as f32 + 0.5 - self.shift.1);
                out.px[y * src.w + x] = p.map(|v| {
                    let sigma = (self.shot * v + self.read * self.read).sqrt();
                    v + sigma * rng.normal()
                });
            }
        }
        let raw: Vec<u8> = out.px.iter().flat_map(|p| p.map(encode_srgb)).collect();
        RgbImage::from_raw(img.width(), img.height(), raw).expect("w * h * 3 bytes: this is a bug")
    }
}

/// `img` shifted, re-noised and JPEG-encoded afresh, all drawn from `seed`.
pub fn perturb(img: &RgbImage, seed: u64) -> Result<Vec<u8>, TurnError> {
    let p = Perturbation::random(seed);
    encode_jpeg(&p.apply(img, seed), p.jpeg_quality)
}
