//! Prints the PAD cues measured on the development photos and on head turns rendered from
//! them (with and without re-noising, shifting and re-encoding each frame), to see how the
//! cues separate bona fide frames from renderings. Release build:
//!
//! ```text
//! cargo run --release -p ekyc-liveness --example pad_probe -- ../shared/faces
//! ```

use std::path::PathBuf;

use ekyc_liveness::pad::{FrameCues, frame_cues, shading_profile_with, shading_spread};
use ekyc_testkit::headturn::{TurnableFace, encode_jpeg};
use ekyc_vision::{AnalyzeOptions, Face, FacePipeline, VisionConfig};
use image::RgbImage;

fn analyse(p: &FacePipeline, anti: &ekyc_vision::AntiSpoof, img: &RgbImage) -> Option<(Face, FrameCues)> {
    let faces = p.analyze(img, AnalyzeOptions { embed: false, largest_only: true }).ok()?;
    let face = faces.into_iter().next()?;
    let cues = frame_cues(img, &face, Some(anti)).ok()?;
    Some((face, cues))
}

/// Fresh noise, a small shift and a new JPEG encoding (seeded).
fn perturb(img: &RgbImage, seed: u64) -> RgbImage {
    let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    let mut next = || {
        s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((s >> 33) as f64) / f64::from(1u32 << 31)
    };
    let (dx, dy) = ((next() * 6.0) as i64 - 3, (next() * 6.0) as i64 - 3);
    let (w, h) = (img.width() as i64, img.height() as i64);
    let mut out = RgbImage::new(img.width(), img.height());
    for y in 0..h {
        for x in 0..w {
            let (sx, sy) = ((x + dx).clamp(0, w - 1), (y + dy).clamp(0, h - 1));
            let p = img.get_pixel(sx as u32, sy as u32).0;
            let n = ((next() + next() + next() - 1.5) * 2.0 * 3.0) as f32;
            out.put_pixel(x as u32, y as u32, image::Rgb(p.map(|v| (f32::from(v) + n).clamp(0.0, 255.0) as u8)));
        }
    }
    let q = 70 + (next() * 25.0) as u8;
    let bytes = encode_jpeg(&out, q).expect("jpeg");
    image::load_from_memory(&bytes).expect("decodes").to_rgb8()
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "../shared/faces".into()));
    let vision = VisionConfig::default();
    let p = FacePipeline::new(vision.clone()).expect("models");
    let anti = FacePipeline::open_anti_spoof(&vision).expect("pad models");
    let labels = std::fs::read_to_string(dir.join("labels.csv")).expect("labels.csv");
    println!("kind,file,variant,real,periodic,chroma,yaw,pitch,spread");
    for line in labels.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        if cols.len() < 3 || cols[2] != "1" || cols[0].contains("partial") {
            continue;
        }
        let file = cols[0];
        let bytes = std::fs::read(dir.join(file)).expect("photo");
        let img = image::load_from_memory(&bytes).expect("decodes").to_rgb8();
        let Some((face, cues)) = analyse(&p, &anti, &img) else { continue };
        println!("photo,{file},orig,{:.3},{:.3},{:.1},{:.1},{:.1},", cues.real, cues.periodic, cues.chroma, face.pose.yaw, face.pose.pitch);
        let Ok(turnable) = TurnableFace::from_image(&p, img.clone()) else { continue };
        for perturbed in [false, true] {
            let frames: Vec<(f32, f32)> = vec![(0.0, 0.0), (25.0, 0.0), (-25.0, 0.0), (0.0, 15.0), (0.0, -15.0)];
            let mut analysed = Vec::new();
            for (k, (yaw, pitch)) in frames.iter().enumerate() {
                let mut f = turnable.turned(*yaw, *pitch);
                if perturbed {
                    f = perturb(&f, k as u64 * 7919 + file.len() as u64);
                }
                analysed.push(analyse(&p, &anti, &f).map(|(face, c)| {
                    let extra: Vec<_> = [0.08f32, 0.12].iter().map(|r| shading_profile_with(&f, &face, *r)).collect();
                    (face, c, (extra, ()))
                }));
            }
            let Some(Some((f0, c0, e0))) = analysed.first() else { continue };
            for (k, a) in analysed.iter().enumerate() {
                let Some((f, c, e)) = a else { continue };
                let more: Vec<String> = (0..2)
                    .map(|i| if k == 0 { String::new() } else { format!("{:.4}", shading_spread(&e0.0[i], &e.0[i]).unwrap_or(-1.0)) })
                    .collect();
                let spread = if k == 0 { None } else { shading_spread(&c0.shading, &c.shading) };
                let _ = (f0, c0);
                println!(
                    "render,{file},{}{k},{:.3},{:.3},{:.1},{:.1},{:.1},{},{}",
                    if perturbed { "perturbed" } else { "clean" },
                    c.real,
                    c.periodic,
                    c.chroma,
                    f.pose.yaw - f0.pose.yaw,
                    f.pose.pitch - f0.pose.pitch,
                    spread.map(|s| format!("{s:.4}")).unwrap_or_default(),
                    more.join(",")
                );
            }
        }
    }
    // Bona fide pairs across photos of one person (different sessions): the spread of
    // real lighting differences, an upper reference only.
    let people =
        [("obama", vec!["obama_1.jpg", "obama_2.jpg", "obama_3.jpg"]), ("kit", vec!["kit_harington_2.jpg", "kit_harington_3.jpg"])];
    for (who, files) in people {
        let cues: Vec<FrameCues> = files
            .iter()
            .filter_map(|f| {
                let img = image::load_from_memory(&std::fs::read(dir.join(f)).ok()?).ok()?.to_rgb8();
                analyse(&p, &anti, &img).map(|(_, c)| c)
            })
            .collect();
        for i in 1..cues.len() {
            println!("crossphoto,{who},{i},,,,,,{:?}", shading_spread(&cues[0].shading, &cues[i].shading));
        }
    }
}
