//! Synthetic ID-document photos: determinism, consistency of the truth, and what the real
//! face pipeline finds on them. `cargo test -p ekyc-testkit --test idcard -- --nocapture`
//! prints the detection rates and IoUs.

use std::sync::OnceLock;
use std::time::Instant;

use ekyc_testkit::idcard::{Generated, Layout, PortraitSource, Scene, point_in_quad, portrait_sources, random_scene, render, signed_area2};
use ekyc_vision::geometry::{BBox, Point};
use ekyc_vision::{AnalyzeOptions, Face, FacePipeline, VisionConfig};

const SCENES: u64 = 40;

fn pipeline() -> &'static FacePipeline {
    static P: OnceLock<FacePipeline> = OnceLock::new();
    P.get_or_init(|| FacePipeline::new(VisionConfig::default()).expect("models load (run scripts/setup.sh first)"))
}

fn sources() -> &'static [PortraitSource] {
    static S: OnceLock<Vec<PortraitSource>> = OnceLock::new();
    S.get_or_init(|| {
        let s = portrait_sources(pipeline(), 40.0);
        assert!(s.len() >= 10, "too few portrait sources: {}", s.len());
        s
    })
}

fn source(i: u64) -> &'static PortraitSource {
    let s = sources();
    &s[i as usize % s.len()]
}

fn faces(img: &image::RgbImage) -> Vec<Face> {
    pipeline().analyze(img, AnalyzeOptions { embed: false, largest_only: false }).expect("analysis runs")
}

/// One random scene, rendered and analysed.
struct Case {
    seed: u64,
    file: String,
    generated: Generated,
    faces: Vec<Face>,
    render_ms: f64,
}

/// The best IoU of any detection with `b`.
fn best_iou(faces: &[Face], b: &BBox) -> f32 {
    faces.iter().map(|f| f.bbox.iou(b)).fold(0.0, f32::max)
}

fn cases() -> &'static [Case] {
    static C: OnceLock<Vec<Case>> = OnceLock::new();
    C.get_or_init(|| {
        sources();
        // Two workers: rendering and analysis are independent per scene.
        let run = |seeds: Vec<u64>| -> Vec<Case> {
            seeds
                .into_iter()
                .map(|seed| {
                    let src = source(seed);
                    let t0 = Instant::now();
                    let generated = render(&random_scene(seed), &src.image, src.face);
                    let render_ms = t0.elapsed().as_secs_f64() * 1e3;
                    let faces = faces(&generated.image);
                    Case { seed, file: src.file.clone(), generated, faces, render_ms }
                })
                .collect()
        };
        let (even, odd): (Vec<u64>, Vec<u64>) = (0..SCENES).partition(|s| s % 2 == 0);
        let mut out = std::thread::scope(|sc| {
            let h = sc.spawn(move || run(odd));
            let mut a = run(even);
            a.extend(h.join().expect("worker thread"));
            a
        });
        out.sort_by_key(|c| c.seed);
        out
    })
}

fn synthetic_source() -> (image::RgbImage, BBox) {
    let img = image::RgbImage::from_fn(300, 400, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8]));
    (img, BBox { x1: 100.0, y1: 120.0, x2: 200.0, y2: 240.0 })
}

#[test]
fn same_seed_same_bytes() {
    let (img, face) = synthetic_source();
    for seed in [3, 11] {
        let a = render(&random_scene(seed), &img, face);
        let b = render(&random_scene(seed), &img, face);
        assert_eq!(a.jpeg, b.jpeg, "seed {seed}: two renders differ");
        assert_eq!(a.corners, b.corners);
    }
    assert_ne!(random_scene(1), random_scene(2));
    assert_eq!(random_scene(5), random_scene(5));
}

#[test]
fn corners_are_clockwise_from_the_upright_top_left() {
    let (img, face) = synthetic_source();
    for (seed, rot) in [(21, 0.0f32), (22, 90.0), (23, 180.0), (24, -90.0), (25, 37.0), (26, -143.0)] {
        let scene = Scene { rotation_deg: rot, corner_jitter: [[0.0; 2]; 4], ..random_scene(seed) };
        let g = render(&scene, &img, face);
        let c = g.corners;
        assert!(signed_area2(&c) > 0.0, "seed {seed}: corners not clockwise on screen: {c:?}");
        let top = (c[1].y - c[0].y).atan2(c[1].x - c[0].x).to_degrees();
        let diff = (top - rot + 540.0).rem_euclid(360.0) - 180.0;
        assert!(diff.abs() < 0.1, "seed {seed}: top edge at {top} deg, rotation {rot}");
        // Without tilt the card keeps its aspect.
        let (w, h) = g.card_size;
        let ratio = c[0].dist(c[1]) / c[0].dist(c[3]);
        assert!((ratio - w as f32 / h as f32).abs() < 0.01, "aspect {ratio}");
    }
}

#[test]
fn truth_is_consistent() {
    for case in cases() {
        let g = &case.generated;
        let seed = case.seed;
        assert!(signed_area2(&g.corners) > 0.0, "seed {seed}: corners not clockwise");
        // With tilt, the top edge still points within ~20 degrees of the applied rotation.
        let mid = |a: Point, b: Point| Point::new((a.x + b.x) / 2.0, (a.y + b.y) / 2.0);
        let (l, r) = (mid(g.corners[0], g.corners[3]), mid(g.corners[1], g.corners[2]));
        let dir = (r.y - l.y).atan2(r.x - l.x).to_degrees();
        let diff = (dir - g.applied.rotation_deg + 540.0).rem_euclid(360.0) - 180.0;
        assert!(diff.abs() < 20.0, "seed {seed}: card axis at {dir}, rotation {}", g.applied.rotation_deg);
        let p = g.portrait.expect("random scenes have a portrait");
        for q in p.quad.iter().chain(&p.face_quad) {
            assert!(point_in_quad(&g.corners, *q), "seed {seed}: portrait corner {q:?} off the card");
        }
        for q in p.face_quad {
            assert!(point_in_quad(&p.quad, q), "seed {seed}: face outside the printed portrait");
        }
        // Portrait on the right of ID cards, on the left of passports (card coordinates).
        let (w, _) = g.card_size;
        let cx = p.card_rect.center().x / w as f32;
        match g.layout {
            Layout::IdCard => assert!(cx > 0.6, "seed {seed}: ID portrait at {cx}"),
            Layout::Passport => assert!(cx < 0.4, "seed {seed}: passport portrait at {cx}"),
        }
        if let Some(gh) = g.ghost {
            let ratio = gh.card_rect.height() / p.card_rect.height();
            assert!((0.38..=0.57).contains(&ratio), "seed {seed}: ghost size ratio {ratio}");
            assert!(gh.card_rect.iou(&p.card_rect) == 0.0, "seed {seed}: ghost overlaps the portrait");
            for q in gh.quad {
                assert!(point_in_quad(&g.corners, q), "seed {seed}: ghost off the card");
            }
        }
        assert!(g.card_fraction_outside < 0.01, "seed {seed}: random scenes keep the card inside");
        assert_eq!(g.image.dimensions(), random_scene(seed).photo_size);
    }
}

#[test]
fn main_portrait_is_found() {
    let cases = cases();
    let mut hits = 0;
    let mut ious = Vec::new();
    let mut ghost_found = 0;
    let mut ghosts = 0;
    for c in cases {
        let g = &c.generated;
        let p = g.portrait.expect("portrait");
        let iou = best_iou(&c.faces, &p.face_box);
        let iou_aabb = best_iou(&c.faces, &p.face_bbox);
        ious.push(iou);
        if iou >= 0.5 {
            hits += 1;
        }
        let ghost_iou = g.ghost.map(|gh| best_iou(&c.faces, &gh.face_box));
        if let Some(gi) = ghost_iou {
            ghosts += 1;
            if gi >= 0.3 {
                ghost_found += 1;
            }
        }
        println!(
            "seed {:2} {:24} {:?} rot {:7.1} face {:4.0}px blur {:.1} noise {:.1} glare {} q{} faces {} IoU {:.2} (aabb {:.2}) ghost {:?} {:.0} ms",
            c.seed,
            c.file,
            g.layout,
            g.applied.rotation_deg,
            p.face_box.height(),
            g.applied.blur_sigma,
            g.applied.noise_sigma,
            if g.applied.glare_over_portrait {
                "P"
            } else if g.applied.glare {
                "y"
            } else {
                "-"
            },
            g.applied.jpeg_quality,
            c.faces.len(),
            iou,
            iou_aabb,
            ghost_iou.map(|v| (v * 100.0).round() / 100.0),
            c.render_ms,
        );
    }
    let found: Vec<f32> = ious.iter().copied().filter(|&v| v >= 0.5).collect();
    let mean = found.iter().sum::<f32>() / found.len().max(1) as f32;
    let ms: Vec<f64> = cases.iter().map(|c| c.render_ms).collect();
    println!(
        "main portrait found (IoU >= 0.5) in {hits}/{} scenes; mean IoU when found {mean:.2}; ghost found (IoU >= 0.3) in {ghost_found}/{ghosts}; render {:.0} ms mean",
        cases.len(),
        ms.iter().sum::<f64>() / ms.len() as f64
    );
    assert!(hits * 100 >= cases.len() * 80, "main portrait found in only {hits}/{} scenes", cases.len());
}

#[test]
fn empty_card_has_no_face() {
    let src = source(0);
    for seed in [100, 101, 102, 103] {
        let g = render(&Scene::empty_card(seed), &src.image, src.face);
        assert!(g.portrait.is_none() && g.ghost.is_none());
        let on_card: Vec<BBox> = faces(&g.image).into_iter().map(|f| f.bbox).filter(|b| g.on_card(b.center())).collect();
        assert!(on_card.is_empty(), "seed {seed}: faces on an empty card: {on_card:?}");
    }
}

#[test]
fn special_cases_do_what_they_say() {
    let src = source(1);
    for seed in [200, 201, 202] {
        let g = render(&Scene::cut_off(seed), &src.image, src.face);
        assert!(g.applied.cut_off);
        assert!((0.27..=0.53).contains(&g.card_fraction_outside), "seed {seed}: {} outside", g.card_fraction_outside);
        let p = g.portrait.expect("portrait");
        assert!(p.fraction_outside < 0.5, "seed {seed}: the portrait should stay mostly visible ({})", p.fraction_outside);
    }
    let g = render(&Scene::heavy_blur(210), &src.image, src.face);
    assert_eq!(g.applied.blur_sigma, 6.0);
    // Saturating glare: most of the printed face is blown out.
    let g = render(&Scene::saturating_glare(220), &src.image, src.face);
    assert!(g.applied.glare_over_portrait && g.applied.glare_strength > 1.0);
    let p = g.portrait.expect("portrait");
    let b = p.face_box;
    let (mut bright, mut n) = (0, 0);
    for y in b.y1.max(0.0) as u32..(b.y2 as u32).min(g.image.height()) {
        for x in b.x1.max(0.0) as u32..(b.x2 as u32).min(g.image.width()) {
            let px = g.image.get_pixel(x, y);
            n += 1;
            if px.0.iter().all(|&v| v >= 235) {
                bright += 1;
            }
        }
    }
    assert!(bright * 2 > n, "only {bright}/{n} face pixels saturated");
}
