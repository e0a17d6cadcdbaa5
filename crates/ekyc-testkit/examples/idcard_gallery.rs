//! Writes a few generated ID-document photos and their truth, for a look:
//! `cargo run -p ekyc-testkit --example idcard_gallery -- OUT_DIR [COUNT]`.
//! The portrait quad is outlined in green, the ghost in blue, the card corners marked red
//! (top-left larger), in a copy named `*_truth.png`.

use ekyc_testkit::idcard::{Scene, portrait_sources, random_scene, render};
use ekyc_vision::geometry::Point;
use ekyc_vision::{FacePipeline, VisionConfig};
use image::{Rgb, RgbImage};

fn line(img: &mut RgbImage, a: Point, b: Point, c: Rgb<u8>) {
    let n = (a.dist(b).ceil() as usize).max(1);
    for i in 0..=n {
        let t = i as f32 / n as f32;
        let (x, y) = (a.x + (b.x - a.x) * t, a.y + (b.y - a.y) * t);
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let (px, py) = (x as i64 + dx, y as i64 + dy);
            if px >= 0 && py >= 0 && (px as u32) < img.width() && (py as u32) < img.height() {
                img.put_pixel(px as u32, py as u32, c);
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = std::path::PathBuf::from(args.get(1).expect("usage: idcard_gallery OUT_DIR [COUNT]"));
    let count: u64 = args.get(2).map_or(8, |s| s.parse().expect("COUNT is a number"));
    std::fs::create_dir_all(&out).expect("create OUT_DIR");
    let pipeline = FacePipeline::without_embedder(VisionConfig::default()).expect("models load (run scripts/setup.sh)");
    let sources = portrait_sources(&pipeline, 40.0);
    for seed in 0..count {
        let scene = match seed % 8 {
            5 => Scene::empty_card(seed),
            6 => Scene::cut_off(seed),
            7 => Scene::saturating_glare(seed),
            _ => random_scene(seed),
        };
        let src = &sources[seed as usize % sources.len()];
        let t0 = std::time::Instant::now();
        let g = render(&scene, &src.image, src.face);
        let ms = t0.elapsed().as_millis();
        std::fs::write(out.join(format!("{seed:03}.jpg")), &g.jpeg).expect("write jpeg");
        let mut img = g.image.clone();
        for i in 0..4 {
            line(&mut img, g.corners[i], g.corners[(i + 1) % 4], Rgb([255, 0, 0]));
        }
        let tl = g.corners[0];
        line(&mut img, Point::new(tl.x - 8.0, tl.y), Point::new(tl.x + 8.0, tl.y), Rgb([255, 0, 0]));
        for (r, c) in [(g.portrait, Rgb([0, 255, 0])), (g.ghost, Rgb([0, 128, 255]))] {
            if let Some(r) = r {
                for i in 0..4 {
                    line(&mut img, r.quad[i], r.quad[(i + 1) % 4], c);
                    line(&mut img, r.face_quad[i], r.face_quad[(i + 1) % 4], Rgb([255, 255, 0]));
                }
            }
        }
        img.save(out.join(format!("{seed:03}_truth.png"))).expect("write png");
        println!("{seed:03} {} {:?} {ms} ms outside {:.2} {:?}", src.file, g.layout, g.card_fraction_outside, g.applied);
    }
}
