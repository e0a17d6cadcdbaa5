//! One pipeline shared by every test in this binary, and image helpers.

use std::io::Cursor;
use std::sync::OnceLock;

use ekyc_vision::{AnalyzeOptions, Face, FacePipeline, VisionConfig};
use image::{ImageFormat, RgbImage};

pub fn pipeline() -> &'static FacePipeline {
    static P: OnceLock<FacePipeline> = OnceLock::new();
    P.get_or_init(|| FacePipeline::new(VisionConfig::default()).expect("models load (run scripts/setup.sh first)"))
}

pub fn decode(bytes: &[u8]) -> RgbImage {
    pipeline().decode(bytes).expect("decodes")
}

pub fn faces(img: &RgbImage) -> Vec<Face> {
    pipeline().analyze(img, AnalyzeOptions::default()).expect("analysis runs")
}

pub fn largest(img: &RgbImage) -> Face {
    pipeline()
        .analyze(img, AnalyzeOptions { embed: true, largest_only: true })
        .expect("analysis runs")
        .into_iter()
        .next()
        .expect("a face is found")
}

pub fn encode(img: &image::DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encodes");
    out.into_inner()
}

/// Signed difference of two angles in degrees, in (-180, 180].
pub fn angle_diff(a: f32, b: f32) -> f32 {
    let mut d = (a - b) % 360.0;
    if d > 180.0 {
        d -= 360.0;
    }
    if d <= -180.0 {
        d += 360.0;
    }
    d
}
