//! Safe image decoding: JPEG, PNG and WebP into 8-bit RGB with EXIF orientation applied.
//!
//! Limits are checked from the header before any pixel is decoded, so a small file that
//! claims a huge canvas (a decompression bomb) is refused without allocating it. Under a
//! [`DecodeBudget`] ([`decode_budgeted`]), the memory a decode will hold is reserved from the
//! header first, and the result keeps its share until it is dropped.
//!
//! PNGs are decoded row by row straight to 8-bit RGB (16-bit samples stripped, palettes and
//! grey expanded as each row arrives), so a 16-bit RGBA PNG needs 3 bytes a pixel, not the
//! 8 + 4 + 3 of decoding it whole and converting after. Interlaced PNGs, JPEG and WebP take
//! the `image` crate's whole-image path, and reserve for it.

use std::io::Cursor;
use std::sync::Arc;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage, metadata::Orientation};
use serde::{Deserialize, Serialize};

use crate::budget::{DecodeBudget, Reservation};
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
    decode_inner(bytes, limits, None).map(|(img, meta, _)| (img, meta))
}

/// Decoded pixels that hold their share of a [`DecodeBudget`] until dropped.
#[derive(Debug)]
pub struct Decoded {
    pub image: RgbImage,
    pub meta: ImageMeta,
    reservation: Reservation,
}

impl Decoded {
    /// Budget bytes this image holds (its RGB pixels).
    pub fn reserved_bytes(&self) -> u64 {
        self.reservation.bytes()
    }
}

impl std::ops::Deref for Decoded {
    type Target = RgbImage;
    fn deref(&self) -> &RgbImage {
        &self.image
    }
}

/// [`decode_with_meta`] under `budget`: reserves the most memory the decode will hold
/// (from the header, before decoding), waiting briefly for room or failing
/// [`DecodeError::Overloaded`]; an image whose decode needs more than the whole budget fails
/// [`DecodeError::TooLarge`]. After decoding only the RGB result stays reserved.
pub fn decode_budgeted(bytes: &[u8], limits: &DecodeLimits, budget: &Arc<DecodeBudget>) -> Result<Decoded, DecodeError> {
    let (image, meta, reservation) = decode_inner(bytes, limits, Some(budget))?;
    let reservation = reservation.expect("decode_inner reserves whenever it is given a budget; this is a bug");
    Ok(Decoded { image, meta, reservation })
}

fn rgb_bytes(w: u32, h: u32) -> u64 {
    u64::from(w) * u64::from(h) * 3
}

fn decode_inner(
    bytes: &[u8],
    limits: &DecodeLimits,
    budget: Option<&Arc<DecodeBudget>>,
) -> Result<(RgbImage, ImageMeta, Option<Reservation>), DecodeError> {
    let (format, mut decoder) = open(bytes, limits)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let meta = ImageMeta { content_type: format.to_mime_type(), exif_orientation: orientation.to_exif() };
    let (w, h) = decoder.dimensions();
    let reorients = orientation != Orientation::NoTransforms;
    if format == ImageFormat::Png {
        drop(decoder);
        let reader = png_reader(bytes, limits)?;
        if !reader.info().interlaced {
            // One RGB buffer, and a second while a turn is applied.
            let need = rgb_bytes(w, h) * if reorients { 2 } else { 1 };
            let mut reservation = budget.map(|b| b.reserve(need)).transpose()?;
            let mut img = DynamicImage::ImageRgb8(png_rows_to_rgb(reader, w, h)?);
            img.apply_orientation(orientation);
            if let Some(r) = &mut reservation {
                r.shrink_to(rgb_bytes(w, h));
            }
            return Ok((img.into_rgb8(), meta, reservation));
        }
        let (_, d) = open(bytes, limits)?;
        decoder = d;
    }
    // The whole-image path: the native buffer, a copy while turning, and the conversions.
    let native = decoder.total_bytes();
    let color = decoder.color_type();
    let px = u64::from(w) * u64::from(h);
    let mut need = native + if reorients { native } else { 0 };
    if color != image::ColorType::Rgb8 {
        need += px * 3 + if color.has_alpha() { px * 4 } else { 0 };
    }
    let mut reservation = budget.map(|b| b.reserve(need)).transpose()?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(map_image_error)?;
    if format == ImageFormat::Jpeg && jpeg_is_truncated(bytes) {
        // The JPEG decoder fills missing scan data with grey instead of failing.
        return Err(DecodeError::Truncated("JPEG ends before its end-of-image marker".into()));
    }
    img.apply_orientation(orientation);
    let rgb = to_rgb(img);
    if let Some(r) = &mut reservation {
        r.shrink_to(rgb_bytes(rgb.width(), rgb.height()));
    }
    Ok((rgb, meta, reservation))
}

fn png_reader<'a>(bytes: &'a [u8], limits: &DecodeLimits) -> Result<png::Reader<Cursor<&'a [u8]>>, DecodeError> {
    let cap = usize::try_from(limits.max_pixels.saturating_mul(12)).unwrap_or(usize::MAX);
    let mut d = png::Decoder::new_with_limits(Cursor::new(bytes), png::Limits { bytes: cap });
    d.set_transformations(png::Transformations::normalize_to_color8());
    d.read_info().map_err(map_png_error)
}

/// Decodes a non-interlaced PNG one row at a time into 8-bit RGB, compositing any alpha
/// over white as [`to_rgb`] does.
fn png_rows_to_rgb(mut reader: png::Reader<Cursor<&[u8]>>, w: u32, h: u32) -> Result<RgbImage, DecodeError> {
    let (color, depth) = reader.output_color_type();
    if depth != png::BitDepth::Eight {
        return Err(DecodeError::UnsupportedFormat(Some(format!("PNG decoded to {depth:?}-bit samples"))));
    }
    let channels = match color {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err(DecodeError::UnsupportedFormat(Some("PNG palette was not expanded".into()))),
    };
    let mut out = RgbImage::new(w, h);
    let row_len = w as usize * 3;
    for y in 0..h as usize {
        let row = reader.next_row().map_err(map_png_error)?.ok_or_else(|| DecodeError::Truncated("PNG ends before its last row".into()))?;
        let src = row.data();
        if src.len() < w as usize * channels {
            return Err(DecodeError::Corrupt("PNG row shorter than its width".into()));
        }
        let dst = &mut out.as_mut()[y * row_len..(y + 1) * row_len];
        for (o, p) in dst.chunks_exact_mut(3).zip(src.chunks_exact(channels)) {
            let (rgb, a) = match channels {
                1 => ([p[0]; 3], 255),
                2 => ([p[0]; 3], p[1]),
                3 => ([p[0], p[1], p[2]], 255),
                _ => ([p[0], p[1], p[2]], p[3]),
            };
            let a = u32::from(a);
            for c in 0..3 {
                o[c] = if a == 255 { rgb[c] } else { ((u32::from(rgb[c]) * a + 255 * (255 - a) + 127) / 255) as u8 };
            }
        }
    }
    Ok(out)
}

fn map_png_error(e: png::DecodingError) -> DecodeError {
    match e {
        png::DecodingError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => DecodeError::Truncated(io.to_string()),
        png::DecodingError::LimitsExceeded => DecodeError::TooLarge("PNG decoding limits exceeded".into()),
        other => {
            let msg = other.to_string();
            let lower = msg.to_ascii_lowercase();
            if lower.contains("eof") || lower.contains("end of") || lower.contains("truncat") || lower.contains("no more data") {
                DecodeError::Truncated(msg)
            } else {
                DecodeError::Corrupt(msg)
            }
        }
    }
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

    fn png16(w: u32, h: u32, alpha: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let enc = image::codecs::png::PngEncoder::new(&mut out);
        let px = |x: u32, y: u32, c: u32| ((x * 977 + y * 131 + c * 20011) % 65536) as u16;
        let (ct, ch) = if alpha { (image::ExtendedColorType::Rgba16, 4) } else { (image::ExtendedColorType::Rgb16, 3) };
        let mut raw = Vec::with_capacity((w * h * ch * 2) as usize);
        for y in 0..h {
            for x in 0..w {
                for c in 0..ch {
                    raw.extend_from_slice(&px(x, y, c).to_be_bytes());
                }
            }
        }
        image::ImageEncoder::write_image(enc, &raw, w, h, ct).expect("encodes");
        out
    }

    #[test]
    fn sixteen_bit_pngs_decode_row_by_row_to_the_same_pixels() {
        let limits = DecodeLimits::default();
        for alpha in [false, true] {
            let bytes = png16(97, 61, alpha);
            let budget = DecodeBudget::new(1 << 20, std::time::Duration::ZERO);
            let ours = decode_budgeted(&bytes, &limits, &budget).expect("decodes");
            assert_eq!(ours.reserved_bytes(), 97 * 61 * 3, "only the RGB result stays reserved");
            let theirs = to_rgb(image::load_from_memory(&bytes).expect("image decodes"));
            assert_eq!(ours.dimensions(), theirs.dimensions());
            let worst = ours.as_raw().iter().zip(theirs.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
            assert!(worst <= 1, "alpha {alpha}: differs by {worst} levels");
            drop(ours);
            assert_eq!(budget.stats().in_use, 0, "released on drop");
        }
    }

    #[test]
    fn decodes_past_the_budget_wait_then_refuse_and_larger_than_it_refuse_at_once() {
        let limits = DecodeLimits::default();
        let bytes = png16(200, 100, true);
        let one = 200 * 100 * 3;
        let budget = DecodeBudget::new(one + one / 2, std::time::Duration::from_millis(30));
        let held = decode_budgeted(&bytes, &limits, &budget).expect("the first fits");
        assert!(matches!(decode_budgeted(&bytes, &limits, &budget), Err(DecodeError::Overloaded(_))));
        assert_eq!(budget.stats().in_use, one, "the refused decode reserved nothing");
        drop(held);
        decode_budgeted(&bytes, &limits, &budget).expect("fits again once the first is dropped");
        let small = DecodeBudget::new(one - 1, std::time::Duration::from_secs(5));
        let started = std::time::Instant::now();
        let err = decode_budgeted(&bytes, &limits, &small).expect_err("larger than the whole budget");
        assert_eq!(err.reason_code(), "IMAGE_TOO_LARGE");
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "refused without waiting");
    }
}
