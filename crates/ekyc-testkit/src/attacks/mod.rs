//! Presentation attacks for the liveness service's presentation-attack detection (PAD)
//! tests and `ekyc eval pad`: what a camera sees when someone presents a copy of a person's
//! face instead of the person. Every generator models how the attack works physically
//! (printer, paper, display, glass, hand, camera), never what a detector looks at, is
//! deterministic in its seed, and draws its parameters per seed within realistic ranges.
//!
//! - [`print`]: a photo printed on paper and held to the camera (species `print`).
//! - [`screen`]: a photo shown on a phone, tablet or monitor (species `screen_replay`).
//! - Renderings from one still photo (species `rendered_still`): [`crate::headturn`]
//!   (piecewise-affine warp over the face mesh) and [`crate::splat`] (3-D point splatting
//!   over a dense depth map) turn a photo's face to each pose of a challenge. **Every frame
//!   rendered from a still photo is an attack**, in tests, in sets and in the demo: it is
//!   exactly what someone holding a social-media photo of the person can make.
//! - [`perturb`]: fresh noise, a small shift and a new JPEG encoding per frame, so that no
//!   two frames share bytes or pixels (for every species, notably renderings).
//! - [`camera`]: the camera model the attacks are filmed with.
//!
//! The sets these make are synthetic: they are derived from the development photos, and
//! real attacks (real printers, screens and cameras) differ from any model of them; a
//! detector must be checked on real captures too.

pub mod camera;
pub mod perturb;
pub mod print;
pub mod screen;

use image::RgbImage;

pub use perturb::{Perturbation, perturb};
pub use print::{PrintParams, print, print_with};
pub use screen::{ScreenParams, screen_replay, screen_with};

use crate::headturn::{TurnError, encode_jpeg};

/// A camera's view of an attack, before its JPEG encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Attack {
    pub image: RgbImage,
    /// How the attack was made, e.g. `am_halftone` or `bezel` (the `method` column of a set).
    pub method: &'static str,
    /// The quality of the camera's JPEG encoder.
    pub jpeg_quality: u8,
}

impl Attack {
    /// The frame as the camera delivers it: JPEG at the camera's quality.
    pub fn jpeg(&self) -> Result<Vec<u8>, TurnError> {
        encode_jpeg(&self.image, self.jpeg_quality)
    }
}
