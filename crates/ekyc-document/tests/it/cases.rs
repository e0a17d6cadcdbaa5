//! The reasons the issue names, on the real models: a selfie, an empty card, a blurred, a
//! glared and a cut-off card; the response over gRPC; bad input.

use ekyc_document::extract::{Code, ExtractOptions, Extraction};
use ekyc_proto::v1 as pb;
use ekyc_testkit::dataset::photo;
use ekyc_testkit::idcard::{Scene, render};
use ekyc_vision::geometry::{Homography, Point};
use tonic::Code as Status;

use crate::common::{MAX_MESSAGE, Server, engine, sources};

async fn extract(jpeg: Vec<u8>) -> Extraction {
    engine().extract("image", jpeg, ExtractOptions::default()).await.expect("extraction runs").extraction
}

async fn rendered(scene: Scene) -> (ekyc_testkit::idcard::Generated, Extraction) {
    let s = sources();
    let src = &s[scene.seed as usize % s.len()].portrait;
    let g = render(&scene, &src.image, src.face);
    let e = extract(g.jpeg.clone()).await;
    (g, e)
}

#[tokio::test]
async fn a_selfie_is_not_a_document() {
    for file in ["obama_1.jpg", "rose_leslie_2.jpg", "kit_harington_2.jpg", "biden_2.jpg"] {
        let e = extract(photo(file).bytes()).await;
        let codes: Vec<Code> = e.reasons.iter().map(|r| r.code).collect();
        assert!(e.has(Code::LooksLikeSelfie), "{file}: {codes:?}");
        assert!(e.document.is_none() && e.portrait.is_none(), "{file}");
    }
}

#[tokio::test]
async fn an_empty_card_has_no_portrait() {
    for seed in [300, 301, 302] {
        let (_, e) = rendered(Scene::empty_card(seed)).await;
        assert!(e.document.is_some(), "seed {seed}: the card is found");
        assert!(e.has(Code::NoPortrait) && e.portrait.is_none(), "seed {seed}: {:?}", e.reasons);
    }
}

/// Heavily blurred cards, cards under a glare that blows the portrait out, and cards 30-50 %
/// outside the photo, 8 of each: the rate at which each is answered with its code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blur_glare_and_cut_off_are_reported() {
    let seeds = 310..318u64;
    let mut hits = [0usize; 3];
    for seed in seeds.clone() {
        let (_, e) = rendered(Scene::heavy_blur(seed)).await;
        hits[0] += usize::from(e.has(Code::Blur));
        let (_, e) = rendered(Scene::saturating_glare(seed)).await;
        hits[1] += usize::from(e.has(Code::Glare));
        let (g, e) = rendered(Scene::cut_off(seed)).await;
        hits[2] += usize::from(e.has(Code::DocumentCutOff));
        if !e.has(Code::DocumentCutOff) {
            println!("seed {seed}: cut off {:.2}, measured {:.2}: {:?}", g.card_fraction_outside, e.quality.cut_off_fraction, e.reasons);
        }
    }
    let n = seeds.count();
    println!("BLUR {}/{n}, GLARE {}/{n}, DOCUMENT_CUT_OFF {}/{n}", hits[0], hits[1], hits[2]);
    assert_eq!(hits[0], n, "every heavily blurred card is BLUR");
    assert!(hits[1] * 4 >= n * 3, "GLARE on only {}/{n} glared cards", hits[1]);
    // Known gap: a card running off the photo is often outlined by an inner rectangle of
    // its own (see the crate's README); measured 11/20 on seeds 300..320.
    assert!(hits[2] * 5 >= n * 2, "DOCUMENT_CUT_OFF on only {}/{n} cut-off cards", hits[2]);
}

#[tokio::test]
async fn the_response_over_grpc_is_consistent() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let s = sources();
    for seed in [320u64, 321, 324] {
        let src = &s[seed as usize % s.len()].portrait;
        let g = render(&ekyc_testkit::idcard::random_scene(seed), &src.image, src.face);
        let req = pb::ExtractPortraitRequest {
            image: Some(pb::Image { data: g.jpeg.clone(), content_type: Some("image/jpeg".into()) }),
            return_rectified_document: true,
            type_hint: 0,
        };
        let r = client.extract_portrait(req).await.expect("answers").into_inner();
        assert!(r.found_document && r.found_portrait, "seed {seed}: {:?}", r.reasons);
        assert_eq!(r.document_corners.len(), 4);
        // The document's corners are the generator's, in the same order.
        for (c, t) in r.document_corners.iter().zip(g.corners) {
            assert!(Point::new(c.x, c.y).dist(t) < 0.03 * g.image.width() as f32, "seed {seed}: corner {c:?} vs {t:?}");
        }
        assert!(r.rotation_deg % 90 == 0);
        let info = r.image_info.as_ref().expect("image info");
        assert_eq!((info.width_px, info.height_px, info.sha256.len()), (g.image.width(), g.image.height(), 64));
        let portrait = r.portrait.as_ref().expect("portrait");
        assert_eq!(portrait.content_type.as_deref(), Some("image/png"));
        let crop = image::load_from_memory(&portrait.data).expect("a PNG").to_rgb8();
        let rect = r.rectified_document.as_ref().expect("rectified document asked for");
        let rect_img = image::load_from_memory(&rect.data).expect("a PNG");
        assert_eq!((rect_img.width(), rect_img.height()), (r.rectified_width_px, r.rectified_height_px));
        // The portrait's face, mapped from crop pixels through the crop's corners into the
        // photo, lies on the true face.
        let face = r.portrait_face.as_ref().expect("face");
        assert!(face.embedding.as_ref().is_some_and(|e| e.values.len() > 100));
        let b = face.bbox.expect("box");
        let (w, h) = (crop.width() as f32, crop.height() as f32);
        let corners: Vec<Point> = r.portrait_corners.iter().map(|c| Point::new(c.x, c.y)).collect();
        let to_photo = Homography::from_points(
            &[Point::new(0.0, 0.0), Point::new(w, 0.0), Point::new(w, h), Point::new(0.0, h)],
            &[corners[0], corners[1], corners[2], corners[3]],
        )
        .expect("a quad");
        let centre = to_photo.apply(Point::new((b.x1 + b.x2) / 2.0, (b.y1 + b.y2) / 2.0));
        let truth = g.portrait.expect("truth").face_box;
        assert!(centre.dist(truth.center()) < 0.15 * truth.height(), "seed {seed}: face centre {centre:?} vs {:?}", truth.center());
        let q = r.quality.expect("quality");
        assert!((q.portrait_size_px - truth.height().min(truth.width())).abs() < 0.25 * truth.height(), "{q:?} vs {truth:?}");
        assert!(r.models.iter().any(|m| m.role == "embedder") && r.timing.is_some_and(|t| t.total_ms > 0.0));
    }
    // Not asked for: no rectified image.
    let src = &s[0].portrait;
    let g = render(&ekyc_testkit::idcard::random_scene(330), &src.image, src.face);
    let r = client
        .extract_portrait(pb::ExtractPortraitRequest { image: Some(pb::Image { data: g.jpeg, content_type: None }), ..Default::default() })
        .await
        .expect("answers")
        .into_inner();
    assert!(r.rectified_document.is_none());
    // A selfie over gRPC.
    let r = client
        .extract_portrait(pb::ExtractPortraitRequest {
            image: Some(pb::Image { data: photo("obama_2.jpg").bytes(), content_type: None }),
            ..Default::default()
        })
        .await
        .expect("answers")
        .into_inner();
    assert!(!r.found_document && r.reasons.iter().any(|x| x.code == pb::ReasonCode::LooksLikeSelfie as i32 && x.blocking));
}

fn assert_refused(result: Result<tonic::Response<pb::ExtractPortraitResponse>, tonic::Status>, code: Status, needle: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().starts_with(needle), "`{}` does not start with `{needle}`", status.message());
}

#[tokio::test]
async fn bad_input_is_refused_with_the_reason_code() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let with = |data: Vec<u8>| pb::ExtractPortraitRequest { image: Some(pb::Image { data, content_type: None }), ..Default::default() };
    assert_refused(client.extract_portrait(with(Vec::new())).await, Status::InvalidArgument, "IMAGE_EMPTY: image");
    assert_refused(client.extract_portrait(pb::ExtractPortraitRequest::default()).await, Status::InvalidArgument, "IMAGE_EMPTY: image");
    assert_refused(
        client.extract_portrait(with(b"not an image at all".to_vec())).await,
        Status::InvalidArgument,
        "IMAGE_UNSUPPORTED_FORMAT: image",
    );
    let jpeg = photo("obama_6_small.jpg").bytes();
    assert_refused(client.extract_portrait(with(jpeg[..jpeg.len() / 2].to_vec())).await, Status::InvalidArgument, "IMAGE_CORRUPT: image");
    assert_refused(
        client.extract_portrait(with(ekyc_testkit::bad_images::png_claiming(30_000, 30_000))).await,
        Status::InvalidArgument,
        "IMAGE_TOO_LARGE: image",
    );
    let mut bad_hint = with(jpeg.clone());
    bad_hint.type_hint = 99;
    assert_refused(client.extract_portrait(bad_hint).await, Status::InvalidArgument, "type_hint");
    // Over the transport limit: refused before any image work.
    let status = client.extract_portrait(with(vec![7u8; MAX_MESSAGE + 1024])).await.expect_err("refused");
    assert!(matches!(status.code(), Status::OutOfRange | Status::ResourceExhausted), "{status:?}");
    // Still answering.
    assert!(client.extract_portrait(with(jpeg)).await.is_ok());
}
