//! Safe image decoding: JPEG, PNG and WebP into 8-bit RGB with EXIF orientation applied.
//!
//! Limits are checked from the header before any pixel is decoded, so a small file that
//! claims a huge canvas (a decompression bomb) is refused without allocating it.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage, metadata::Orientation};
use serde::{Deserialize, Serialize};

use crate::error::DecodeError;

/// Limits applied to every encoded image before and while decoding it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeLimits {
    /// Largest encoded size accepted, in bytes.
    pub max_bytes: usize,
    /// Largest width accepted, in pixels.
    pub max_width: u32,
    /// Largest height accepted, in pixels.
    pub max_height: u32,
    /// Largest pixel count (width x height) accepted.
    pub max_pixels: u64,
    /// Smallest width and height accepted, in pixels: nothing smaller can hold a usable face.
    pub min_side: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_bytes: 15 * 1024 * 1024,
            max_width: 8192,
            max_height: 8192,
            // 40 MP: above any phone camera in 2026 at 4:3 (50 MP sensors bin to 12.5 MP).
            max_pixels: 40_000_000,
            min_side: 32,
        }
    }
}

/// Width and height of an encoded image, read from its header only.
pub fn probe_dimensions(bytes: &[u8], limits: &DecodeLimits) -> Result<(u32, u32), DecodeError> {
    let (_, decoder) = open(bytes, limits)?;
    Ok(decoder.dimensions())
}

/// What decoding found out about an image besides its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageMeta {
    /// MIME type of the encoded bytes, e.g. `image/jpeg`.
    pub content_type: &'static str,
    /// The EXIF orientation that was applied (1..=8; 1 when the image had none).
    pub exif_orientation: u8,
}

/// Decodes `bytes` into RGB, applying EXIF orientation; grayscale, 16-bit and alpha images
/// become 8-bit RGB (alpha is composited over white).
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, DecodeError> {
    decode_with_meta(bytes, limits).map(|(img, _)| img)
}

/// [`decode`], also returning the format and the orientation applied.
pub fn decode_with_meta(bytes: &[u8], limits: &DecodeLimits) -> Result<(RgbImage, ImageMeta), DecodeError> {
    let (format, mut decoder) = open(bytes, limits)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let meta = ImageMeta { content_type: format.to_mime_type(), exif_orientation: orientation.to_exif() };
    let mut img = DynamicImage::from_decoder(decoder).map_err(map_image_error)?;
    if format == ImageFormat::Jpeg && jpeg_is_truncated(bytes) {
        // The JPEG decoder fills missing scan data with grey instead of failing.
        return Err(DecodeError::Truncated("JPEG ends before its end-of-image marker".into()));
    }
    img.apply_orientation(orientation);
    Ok((to_rgb(img), meta))
}

fn open<'a>(bytes: &'a [u8], limits: &DecodeLimits) -> Result<(ImageFormat, Box<dyn ImageDecoder + 'a>), DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(DecodeError::TooLarge(format!("{} bytes encoded, the limit is {} bytes", bytes.len(), limits.max_bytes)));
    }
    let format = image::guess_format(bytes).map_err(|_| DecodeError::UnsupportedFormat(None))?;
    if !matches!(format, ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP) {
        return Err(DecodeError::UnsupportedFormat(Some(format!("{format:?}"))));
    }
    let reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut decoder = reader.into_decoder().map_err(map_image_error)?;
    let (w, h) = decoder.dimensions();
    check_dimensions(w, h, limits)?;
    let mut lim = image::Limits::default();
    lim.max_image_width = Some(limits.max_width);
    lim.max_image_height = Some(limits.max_height);
    // 16-bit RGBA is 8 bytes a pixel; allow that plus the RGB copy we make after.
    lim.max_alloc = Some(limits.max_pixels.saturating_mul(12));
    decoder.set_limits(lim).map_err(map_image_error)?;
    Ok((format, Box::new(decoder)))
}

fn check_dimensions(w: u32, h: u32, limits: &DecodeLimits) -> Result<(), DecodeError> {
    if w > limits.max_width || h > limits.max_height || u64::from(w) * u64::from(h) > limits.max_pixels {
        return Err(DecodeError::TooLarge(format!(
            "{w}x{h} pixels, the limits are {}x{} and {} pixels in all",
            limits.max_width, limits.max_height, limits.max_pixels
        )));
    }
    if w < limits.min_side || h < limits.min_side {
        return Err(DecodeError::TooSmall { width: w, height: h, min: limits.min_side });
    }
    Ok(())
}

fn map_image_error(e: image::ImageError) -> DecodeError {
    use image::ImageError as E;
    match e {
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => DecodeError::Truncated(io.to_string()),
        E::Unsupported(u) => DecodeError::UnsupportedFormat(Some(u.to_string())),
        E::Limits(l) => DecodeError::TooLarge(l.to_string()),
        E::Decoding(d) => {
            let msg = d.to_string();
            let lower = msg.to_ascii_lowercase();
            if lower.contains("eof")
                || lower.contains("not enough bytes")
                || lower.contains("end of")
                || lower.contains("truncat")
                || lower.contains("exhausted")
            {
                DecodeError::Truncated(msg)
            } else {
                DecodeError::Corrupt(msg)
            }
        }
        other => DecodeError::Corrupt(other.to_string()),
    }
}

/// A JPEG is complete when an end-of-image marker follows its last start-of-scan marker.
/// Entropy-coded data never contains an unescaped 0xFF 0xDA or 0xFF 0xD9, so the last SOS
/// found is the main image's last scan, even when an EXIF thumbnail precedes it.
fn jpeg_is_truncated(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(i) => !bytes[i..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => true,
    }
}

fn to_rgb(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u32::from(p[3]);
        for c in 0..3 {
            o[c] = ((u32::from(p[c]) * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_check_sees_missing_eoi() {
        assert!(jpeg_is_truncated(&[0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 3]));
        assert!(!jpeg_is_truncated(&[0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 0xFF, 0xD9]));
        // A thumbnail's EOI before the main scan does not count.
        assert!(jpeg_is_truncated(&[0xFF, 0xD9, 0xFF, 0xDA, 1, 2]));
    }
}
