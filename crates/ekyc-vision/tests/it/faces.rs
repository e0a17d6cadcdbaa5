//! Faces on the development photos: counts, identity separation, resolution invariance,
//! quality measures.

use ekyc_testkit::dataset::{photo, photos};
use ekyc_vision::{AnalyzeOptions, cosine};

use crate::common::{decode, faces, largest, pipeline};

#[test]
fn every_photo_yields_its_labelled_face_count() {
    let mut wrong = Vec::new();
    for p in photos() {
        let found = faces(&decode(&p.bytes()));
        if !p.faces.admits(found.len()) {
            wrong.push(format!("{}: {} faces, labelled {:?}", p.file, found.len(), p.faces));
        }
        for f in &found {
            assert!(f.score >= 0.65 && f.face_flag >= 0.9, "{}: a face below the gates was returned", p.file);
            let e = f.embedding.as_ref().expect("embedding asked for");
            assert_eq!(e.len(), 128, "SFace embeds in 128 dimensions");
            assert!((e.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-4, "unit length");
        }
        // Largest first.
        assert!(found.windows(2).all(|w| w[0].bbox.area() >= w[1].bbox.area()), "{}", p.file);
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn largest_only_keeps_the_biggest_face() {
    let img = decode(&photo("multi_kit_harington_rose_leslie.jpg").bytes());
    let all = faces(&img);
    assert_eq!(all.len(), 2);
    let one = pipeline().analyze(&img, AnalyzeOptions { embed: false, largest_only: true }).expect("runs");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].bbox, all[0].bbox);
    assert!(one[0].embedding.is_none());
}

#[test]
fn same_person_pairs_outscore_different_person_pairs_and_the_threshold_separates_them_with_a_margin() {
    let people: Vec<(String, String, Vec<f32>)> = photos()
        .into_iter()
        .filter_map(|p| {
            let id = p.identity.clone()?;
            let e = largest(&decode(&p.bytes())).embedding.expect("embedding");
            Some((p.file, id, e))
        })
        .collect();
    assert!(people.len() >= 20);
    let (mut min_same, mut max_diff) = ((f32::MAX, String::new()), (f32::MIN, String::new()));
    for (i, (fa, ia, ea)) in people.iter().enumerate() {
        for (fb, ib, eb) in &people[i + 1..] {
            let s = cosine(ea, eb);
            if ia == ib && s < min_same.0 {
                min_same = (s, format!("{fa} / {fb}"));
            }
            if ia != ib && s > max_diff.0 {
                max_diff = (s, format!("{fa} / {fb}"));
            }
        }
    }
    // The threshold comes from public pairs, not from these photos; on them it must leave
    // room on both sides, since document portraits and worse light lower mated scores.
    const MARGIN: f32 = 0.1;
    let t = pipeline().config().match_threshold;
    assert!(min_same.0 > max_diff.0, "lowest same-person {min_same:?} <= highest different-person {max_diff:?}");
    assert!(min_same.0 >= t + MARGIN && max_diff.0 + MARGIN < t, "threshold {t} is not {MARGIN} clear of {min_same:?} and {max_diff:?}");
}

#[test]
fn the_same_photo_at_240p_and_1080p_matches() {
    let small = largest(&decode(&photo("obama_5_240p.jpg").bytes()));
    let big = largest(&decode(&photo("obama_5_1080p.jpg").bytes()));
    let s = cosine(small.embedding.as_deref().expect("e"), big.embedding.as_deref().expect("e"));
    assert!(s > 0.95, "similarity {s}");
}

#[test]
fn quality_measures_respond_to_blur_light_and_the_border() {
    let img = decode(&photo("obama_1.jpg").bytes());
    let sharp = largest(&img);
    let blurred = largest(&image::imageops::blur(&img, 4.0));
    assert!(blurred.quality.sharpness * 3.0 < sharp.quality.sharpness, "{:?} vs {:?}", blurred.quality, sharp.quality);
    let dark = largest(&image::imageops::colorops::brighten(&img, -60));
    assert!(dark.quality.brightness + 0.15 < sharp.quality.brightness, "{:?} vs {:?}", dark.quality, sharp.quality);
    assert_eq!(sharp.quality.outside_fraction, 0.0);
    assert!((sharp.quality.face_size_px - sharp.bbox.width().min(sharp.bbox.height())).abs() < 1e-3);
    assert!(sharp.quality.inter_eye_px > 0.2 * sharp.quality.face_size_px);

    for file in ["obama_partial_1.jpg", "obama_partial_2.jpg"] {
        let cut = largest(&decode(&photo(file).bytes()));
        assert!(cut.quality.outside_fraction > 0.05, "{file}: {:?}", cut.quality);
    }
}

/// Face matching skips the last landmark pass (`landmarks.match_passes`): the five points
/// it aligns by must stay where the full pipeline puts them, on every development photo.
#[test]
fn matching_with_fewer_landmark_passes_keeps_the_five_points() {
    let full = pipeline();
    let cfg = full.config().for_matching();
    assert!(cfg.landmarks.passes < full.config().landmarks.passes, "matching skips at least one pass");
    let matching = ekyc_vision::FacePipeline::new(cfg).expect("loads");
    let mut worst = (0.0f32, String::new());
    for p in photos() {
        let img = decode(&p.bytes());
        let opts = AnalyzeOptions { embed: false, largest_only: false };
        let (a, b) = (full.analyze(&img, opts).expect("runs"), matching.analyze(&img, opts).expect("runs"));
        assert_eq!(a.len(), b.len(), "{}: the same faces pass the gates", p.file);
        for (fa, fb) in a.iter().zip(&b) {
            let eyes = fa.landmarks[0].dist(fa.landmarks[1]);
            for (pa, pb) in fa.landmarks.iter().zip(&fb.landmarks) {
                let shift = pa.dist(*pb) / eyes;
                if shift > worst.0 {
                    worst = (shift, p.file.to_string());
                }
            }
        }
    }
    eprintln!("largest shift: {:.2} % of the inter-eye distance ({})", worst.0 * 100.0, worst.1);
    // 3 % of the inter-eye distance is about one pixel of the 112-px aligned crop (the
    // template's eyes are 35 px apart there).
    assert!(worst.0 < 0.03, "a point moved by {:.1} % of the inter-eye distance on {}", worst.0 * 100.0, worst.1);
}
