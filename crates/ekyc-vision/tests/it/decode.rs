//! Bad and unusual encoded images: each gets its typed error or the right pixels, never a
//! panic.

use ekyc_testkit::bad_images::png_claiming;
use ekyc_testkit::dataset::photo;
use ekyc_vision::{DecodeError, DecodeLimits, decode};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

use crate::common::{self, encode};

fn limits() -> DecodeLimits {
    DecodeLimits::default()
}

#[test]
fn empty_bytes() {
    assert_eq!(decode(&[], &limits()), Err(DecodeError::Empty));
}

#[test]
fn text_is_an_unsupported_format() {
    let err = decode(b"name,identity\nthis is not an image\n", &limits()).expect_err("refused");
    assert_eq!(err, DecodeError::UnsupportedFormat(None));
    assert!(err.to_string().contains("JPEG, PNG or WebP"), "{err}");
}

#[test]
fn gif_and_bmp_are_unsupported_formats() {
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x00\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
    assert!(matches!(decode(gif, &limits()), Err(DecodeError::UnsupportedFormat(Some(_)))));
    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&[0u8; 64]);
    assert!(matches!(decode(&bmp, &limits()), Err(DecodeError::UnsupportedFormat(Some(_)))));
}

#[test]
fn truncated_jpeg() {
    let bytes = photo("obama_1.jpg").bytes();
    for cut in [bytes.len() / 2, bytes.len() - 200, 1000] {
        let err = decode(&bytes[..cut], &limits()).expect_err("refused");
        assert!(matches!(err, DecodeError::Truncated(_)), "cut at {cut}: {err:?}");
    }
}

#[test]
fn truncated_png() {
    let bytes = photo("alex_lacamoire_1.png").bytes();
    let err = decode(&bytes[..bytes.len() / 2], &limits()).expect_err("refused");
    assert!(matches!(err, DecodeError::Truncated(_) | DecodeError::Corrupt(_)), "{err:?}");
}

#[test]
fn corrupt_png() {
    let mut bytes = photo("alex_lacamoire_1.png").bytes();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5A;
    }
    assert!(matches!(decode(&bytes, &limits()), Err(DecodeError::Corrupt(_))));
}

#[test]
fn one_pixel_image_is_too_small() {
    let png = encode(&DynamicImage::ImageRgb8(RgbImage::from_pixel(1, 1, Rgb([9, 9, 9]))), ImageFormat::Png);
    assert_eq!(decode(&png, &limits()), Err(DecodeError::TooSmall { width: 1, height: 1, min: 32 }));
}

#[test]
fn decompression_bomb_header_is_refused_before_decoding() {
    let bomb = png_claiming(30_000, 30_000);
    assert!(bomb.len() < 100);
    let err = decode(&bomb, &limits()).expect_err("refused");
    assert!(matches!(err, DecodeError::TooLarge(_)), "{err:?}");
    assert!(err.to_string().contains("30000x30000"), "{err}");
    // Within width and height limits but over the pixel budget.
    let tight = DecodeLimits { max_pixels: 1_000_000, ..limits() };
    assert!(matches!(decode(&png_claiming(2000, 2000), &tight), Err(DecodeError::TooLarge(_))));
}

#[test]
fn too_many_bytes_are_refused() {
    let small = DecodeLimits { max_bytes: 10_000, ..limits() };
    let err = decode(&photo("obama_1.jpg").bytes(), &small).expect_err("refused");
    assert!(matches!(err, DecodeError::TooLarge(_)), "{err:?}");
}

#[test]
fn grayscale_sixteen_bit_and_alpha_become_rgb() {
    let rgb = common::decode(&photo("obama_6_small.jpg").bytes());
    let dynamic = DynamicImage::ImageRgb8(rgb.clone());

    let gray = decode(&encode(&DynamicImage::ImageLuma8(dynamic.to_luma8()), ImageFormat::Png), &limits()).expect("gray decodes");
    assert_eq!(gray.dimensions(), rgb.dimensions());
    assert!(gray.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));

    let deep = decode(&encode(&DynamicImage::ImageRgb16(dynamic.to_rgb16()), ImageFormat::Png), &limits()).expect("16-bit decodes");
    assert!(deep.pixels().zip(rgb.pixels()).all(|(a, b)| (0..3).all(|c| a[c].abs_diff(b[c]) <= 1)));

    let mut rgba = dynamic.to_rgba8();
    rgba.get_pixel_mut(0, 0)[3] = 0; // fully transparent: shows white
    let flat = decode(&encode(&DynamicImage::ImageRgba8(rgba), ImageFormat::Png), &limits()).expect("RGBA decodes");
    assert_eq!(flat.get_pixel(0, 0), &Rgb([255, 255, 255]));
    assert_eq!(flat.get_pixel(5, 5), rgb.get_pixel(5, 5));

    let webp = decode(&encode(&dynamic, ImageFormat::WebP), &limits()).expect("lossless WebP decodes");
    assert_eq!(webp, rgb);
}

/// Inserts an EXIF APP1 segment with the given orientation right after the JPEG's SOI.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"II*\0".to_vec();
    tiff.extend_from_slice(&8u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&0x0112u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes());
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes());
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied() {
    let upright = common::decode(&photo("obama_6_small.jpg").bytes());
    let reference = common::largest(&upright);
    // Stored sideways (rotated 90 degrees counter-clockwise) with orientation 6, which
    // tells viewers to rotate it 90 degrees clockwise for display.
    let stored = DynamicImage::ImageRgb8(image::imageops::rotate270(&upright));
    let jpeg = with_exif_orientation(&encode(&stored, ImageFormat::Jpeg), 6);
    let shown = common::decode(&jpeg);
    assert_eq!(shown.dimensions(), upright.dimensions());
    let face = common::largest(&shown);
    assert!(common::angle_diff(face.pose.roll, reference.pose.roll).abs() < 3.0, "{:?} vs {:?}", face.pose, reference.pose);
    assert!(face.bbox.iou(&reference.bbox) > 0.8);
}
