//! Embed and Compare: results equal the library's, identity decisions, calibration, reasons
//! and bad input.

use ekyc_facematch::FacematchConfig;
use ekyc_proto::v1 as pb;
use ekyc_vision::cosine;
use tonic::Code;

use crate::common::{MAX_MESSAGE, Server, embed_request, first_embedding, image, library_embedding};

fn side_image(file: &str) -> Option<pb::FaceInput> {
    Some(pb::FaceInput { input: Some(pb::face_input::Input::Image(image(file))) })
}

/// The server's embedder (the default).
const SFACE: &str = "sface-opencv-2021dec-f32";

fn side_embedding(values: Vec<f32>, model_id: &str) -> Option<pb::FaceInput> {
    Some(pb::FaceInput { input: Some(pb::face_input::Input::Embedding(pb::Embedding { values, model_id: model_id.into() })) })
}

#[tokio::test]
async fn embeddings_over_grpc_equal_the_librarys() {
    let server = Server::start(FacematchConfig { max_batch: 4, ..Default::default() }).await;
    let mut client = server.client().await;
    let files = ["obama_1.jpg", "rose_leslie_2.jpg", "multi_two_people.jpg"];
    let r = client.embed(embed_request(&files)).await.expect("embed").into_inner();
    assert_eq!(r.results.len(), 3);
    for (i, file) in files.iter().enumerate() {
        assert_eq!(r.results[i].image_index, i as u32);
        let info = r.results[i].image_info.as_ref().expect("info");
        assert_eq!(info.content_type, "image/jpeg");
        assert_eq!(info.sha256.len(), 64);
        let s = cosine(&first_embedding(&r, i), &library_embedding(file));
        assert!(s > 0.9999, "{file}: similarity to the library's embedding {s}");
    }
    assert_eq!(r.results[2].faces.len(), 2);
    assert!(r.results[2].faces.iter().all(|f| f.usable));
    assert!(r.models.iter().any(|m| m.role == "embedder" && m.sha256.len() == 64));
    let timing = r.timing.expect("timing");
    assert!(timing.total_ms >= timing.inference_ms && timing.inference_ms > 0.0);
}

#[tokio::test]
async fn compare_decides_same_and_different_people() {
    let server = Server::start(FacematchConfig::default()).await;
    let mut client = server.client().await;
    let same = [
        ("obama_1.jpg", "obama_3.jpg"),
        ("rose_leslie_1.jpg", "rose_leslie_2.jpg"),
        ("kit_harington_1.jpg", "kit_harington_3.jpg"),
        ("biden_1.jpg", "biden_2.jpg"),
        ("alex_lacamoire_1.png", "alex_lacamoire_3.jpg"),
    ];
    let different = [
        ("obama_1.jpg", "biden_2.jpg"),
        ("rose_leslie_1.jpg", "kit_harington_2.jpg"),
        ("alex_lacamoire_2.jpg", "lin_manuel_miranda_1.png"),
        ("obama_4.jpg", "kit_harington_1.jpg"),
    ];
    for (pairs, expected) in [(&same[..], true), (&different[..], false)] {
        for (a, b) in pairs {
            let r = client.compare(pb::CompareRequest { a: side_image(a), b: side_image(b) }).await.expect("compare").into_inner();
            assert_eq!(r.is_match, expected, "{a} vs {b}: {:?}", r.similarity);
            assert!(r.face_a.is_some() && r.face_b.is_some());
            assert!(r.score.is_none(), "no calibration configured");
            assert_eq!(r.reasons.iter().any(|x| x.code == pb::ReasonCode::FaceMismatch as i32), !expected);
        }
    }
    // Embeddings compare like the images they came from.
    let ea = library_embedding("obama_1.jpg");
    let r = client
        .compare(pb::CompareRequest { a: side_embedding(ea.clone(), SFACE), b: side_image("obama_3.jpg") })
        .await
        .expect("compare")
        .into_inner();
    let direct = cosine(&ea, &library_embedding("obama_3.jpg"));
    assert!((r.similarity.expect("similarity") - direct).abs() < 1e-4);
    assert!(r.is_match && r.face_a.is_none());
}

#[tokio::test]
async fn calibrated_scores_read_as_one_in_n() {
    let dir = std::env::temp_dir().join(format!("ekyc-calibration-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("site-2026.json");
    let points: Vec<serde_json::Value> = (0..=50)
        .map(|k| {
            let t = k as f64 * 0.02;
            serde_json::json!({"threshold": t, "fmr": if t < 0.2 { 1.0 } else if t < 0.6 { 10f64.powf(-(t - 0.2) * 5.0) } else { 0.0 }, "fnmr": 0.0})
        })
        .collect();
    let body = serde_json::json!({"format": "ekyc-eval-pairs/2", "model_id": SFACE, "impostor_pairs": 1000, "calibration": points});
    std::fs::write(&file, body.to_string()).expect("write");
    let server = Server::start(FacematchConfig { calibration_file: Some(file), ..Default::default() }).await;
    let mut client = server.client().await;
    let same =
        client.compare(pb::CompareRequest { a: side_image("obama_1.jpg"), b: side_image("obama_2.jpg") }).await.expect("ok").into_inner();
    let score = same.score.expect("calibrated");
    assert_eq!(score.calibration_id, "site-2026.json");
    assert!(score.is_upper_bound && score.one_in == 1000, "{score:?}");
    let diff =
        client.compare(pb::CompareRequest { a: side_image("obama_1.jpg"), b: side_image("biden_2.jpg") }).await.expect("ok").into_inner();
    let d = diff.score.expect("calibrated");
    assert!(d.false_match_rate > score.false_match_rate && !d.is_upper_bound, "{d:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn faces_that_fail_a_gate_say_why_and_get_no_embedding() {
    let server = Server::start(FacematchConfig::default()).await;
    let mut client = server.client().await;
    let mut req = embed_request(&["obama_1.jpg"]);
    req.min_face_size_px = 5000;
    let r = client.embed(req).await.expect("embed").into_inner();
    let face = &r.results[0].faces[0];
    assert!(!face.usable);
    assert!(face.face.as_ref().is_some_and(|f| f.embedding.is_none()));
    let reason = &face.reasons[0];
    assert_eq!(reason.code, pb::ReasonCode::FaceTooSmall as i32);
    assert_eq!(reason.limit, Some(5000.0));
    assert!(r.results[0].reasons.iter().any(|x| x.code == pb::ReasonCode::NoFace as i32 && x.image_index == Some(0)));

    let blank = {
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(300, 300, image::Rgb([90, 120, 150])))
            .write_to(&mut out, image::ImageFormat::Png)
            .expect("png");
        out.into_inner()
    };
    let r = client
        .embed(pb::EmbedRequest { images: vec![pb::Image { data: blank.clone(), content_type: None }], ..Default::default() })
        .await
        .expect("embed")
        .into_inner();
    assert!(r.results[0].faces.is_empty());
    assert_eq!(r.results[0].reasons[0].code, pb::ReasonCode::NoFace as i32);
    let c = client
        .compare(pb::CompareRequest {
            a: side_image("obama_1.jpg"),
            b: Some(pb::FaceInput { input: Some(pb::face_input::Input::Image(pb::Image { data: blank, content_type: None })) }),
        })
        .await
        .expect("compare answers")
        .into_inner();
    assert!(c.similarity.is_none() && !c.is_match);
    assert!(c.reasons.iter().any(|x| x.code == pb::ReasonCode::NoFace as i32 && x.image_index == Some(1)));

    let largest = client
        .embed(pb::EmbedRequest { largest_face_only: true, ..embed_request(&["multi_two_people.jpg"]) })
        .await
        .expect("embed")
        .into_inner();
    assert_eq!(largest.results[0].faces.len(), 1);
    let skipped =
        client.embed(pb::EmbedRequest { skip_embeddings: true, ..embed_request(&["obama_2.jpg"]) }).await.expect("embed").into_inner();
    assert!(skipped.results[0].faces[0].usable && skipped.results[0].faces[0].face.as_ref().is_some_and(|f| f.embedding.is_none()));
}

fn assert_invalid(result: Result<tonic::Response<impl std::fmt::Debug>, tonic::Status>, needle: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains(needle), "`{}` does not mention `{needle}`", status.message());
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_image_and_the_problem() {
    let server = Server::start(FacematchConfig { max_images_per_request: 4, ..Default::default() }).await;
    let mut client = server.client().await;
    let good = image("obama_6_small.jpg");
    let with =
        |bad: Vec<u8>| pb::EmbedRequest { images: vec![good.clone(), pb::Image { data: bad, content_type: None }], ..Default::default() };
    assert_invalid(client.embed(with(Vec::new())).await, "IMAGE_EMPTY: images[1]");
    assert_invalid(client.embed(with(b"{\"not\": \"an image\"}".to_vec())).await, "IMAGE_UNSUPPORTED_FORMAT: images[1]");
    let jpeg = good.data.clone();
    assert_invalid(client.embed(with(jpeg[..jpeg.len() / 2].to_vec())).await, "IMAGE_CORRUPT: images[1]");
    assert_invalid(client.embed(with(ekyc_testkit::bad_images::png_claiming(30_000, 30_000))).await, "IMAGE_TOO_LARGE: images[1]");
    assert_invalid(client.embed(pb::EmbedRequest::default()).await, "at least one image");
    assert_invalid(client.embed(pb::EmbedRequest { images: vec![good.clone(); 5], ..Default::default() }).await, "at most 4");
    assert_invalid(
        client.compare(pb::CompareRequest { a: None, b: side_image("obama_1.jpg") }).await,
        "a: an image or an embedding is required",
    );
    assert_invalid(
        client.compare(pb::CompareRequest { a: side_image("obama_1.jpg"), b: side_embedding(vec![0.1; 512], SFACE) }).await,
        "EMBEDDING_INVALID: b",
    );
    assert_invalid(
        client.compare(pb::CompareRequest { a: side_embedding(vec![0.1; 1024], "arcface-r100"), b: side_image("obama_1.jpg") }).await,
        "EMBEDDING_MODEL_MISMATCH: a",
    );
    // The previous default embedder's output, and an embedding that names no model.
    assert_invalid(
        client
            .compare(pb::CompareRequest { a: side_image("obama_1.jpg"), b: side_embedding(vec![0.03; 1024], "faceres-human-3.3.6") })
            .await,
        "EMBEDDING_MODEL_MISMATCH: b",
    );
    assert_invalid(
        client.compare(pb::CompareRequest { a: side_embedding(vec![0.1; 128], ""), b: side_image("obama_1.jpg") }).await,
        "EMBEDDING_MODEL_MISMATCH: a",
    );
    assert_invalid(
        client.compare(pb::CompareRequest { a: side_embedding(vec![f32::NAN; 128], SFACE), b: side_image("obama_1.jpg") }).await,
        "EMBEDDING_INVALID: a",
    );

    // Over the transport limit: refused before any image work.
    let huge =
        pb::EmbedRequest { images: vec![pb::Image { data: vec![7u8; MAX_MESSAGE + 1024], content_type: None }], ..Default::default() };
    let status = client.embed(huge).await.expect_err("refused");
    assert!(matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted), "{status:?}");
    // The service still answers afterwards.
    assert!(client.embed(embed_request(&["obama_6_small.jpg"])).await.is_ok());
}
