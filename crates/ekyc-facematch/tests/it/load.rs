//! Behaviour under load: admission control sheds the excess, cancelled work never reaches
//! the models, and crops from concurrent calls are embedded together.

use std::time::Duration;

use ekyc_facematch::FacematchConfig;
use ekyc_vision::cosine;
use tonic::Code;

use crate::common::{Server, embed_request, first_embedding, library_embedding};

#[tokio::test]
async fn a_burst_past_the_admission_limit_is_shed_and_the_rest_answered_correctly() {
    let server = Server::start(FacematchConfig { max_in_flight: 2, workers: 1, ..Default::default() }).await;
    let client = server.client().await;
    let reference = library_embedding("obama_2.jpg");
    let calls = (0..12).map(|_| {
        let mut c = client.clone();
        tokio::spawn(async move { c.embed(embed_request(&["obama_2.jpg"])).await })
    });
    let (mut ok, mut shed) = (0, 0);
    for call in calls.collect::<Vec<_>>() {
        match call.await.expect("task") {
            Ok(r) => {
                let r = r.into_inner();
                assert!(cosine(&first_embedding(&r, 0), &reference) > 0.9999);
                ok += 1;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("limit of 2 requests in flight"), "{}", status.message());
                shed += 1;
            }
        }
    }
    assert_eq!(ok + shed, 12);
    assert!(ok >= 2 && shed >= 1, "{ok} answered, {shed} shed");
    // Load gone: served again at once.
    assert!(server.client().await.embed(embed_request(&["obama_2.jpg"])).await.is_ok());
}

#[tokio::test]
async fn cancelled_and_expired_calls_do_not_run_inference() {
    let server = Server::start(FacematchConfig { workers: 1, max_in_flight: 64, ..Default::default() }).await;
    let client = server.client().await;
    // Keep the only worker busy with four images...
    let busy = {
        let mut c = client.clone();
        tokio::spawn(async move { c.embed(embed_request(&["obama_1.jpg", "obama_2.jpg", "obama_3.jpg", "biden_2.jpg"])).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    // ...while six calls queue behind it and give up: three pass their deadline, three are
    // cancelled by the client.
    let mut gave_up = Vec::new();
    for k in 0..6 {
        let mut c = client.clone();
        gave_up.push(tokio::spawn(async move {
            let mut req = tonic::Request::new(embed_request(&["rose_leslie_1.jpg"]));
            if k % 2 == 0 {
                req.set_timeout(Duration::from_millis(5));
                c.embed(req).await.map(|_| ()).map_err(|s| s.code())
            } else {
                tokio::time::timeout(Duration::from_millis(5), c.embed(req))
                    .await
                    .map_err(|_| Code::Cancelled)?
                    .map(|_| ())
                    .map_err(|s| s.code())
            }
        }));
    }
    for g in gave_up {
        let code = g.await.expect("task").expect_err("gave up before being served");
        assert!(matches!(code, Code::DeadlineExceeded | Code::Cancelled), "{code:?}");
    }
    let r = busy.await.expect("task").expect("the busy call is served").into_inner();
    assert_eq!(r.results.len(), 4);
    // Let the worker reach the abandoned jobs.
    let mut stats = server.engine.stats();
    for _ in 0..100 {
        if stats.images_skipped >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        stats = server.engine.stats();
    }
    assert_eq!(stats.images, 4, "only the busy call's images were analysed: {stats:?}");
    assert_eq!(stats.images_skipped, 6, "{stats:?}");
    assert_eq!(stats.crops, 4, "{stats:?}");
}

#[tokio::test]
async fn crops_of_concurrent_calls_are_embedded_together() {
    let server = Server::start(FacematchConfig { workers: 2, max_batch: 8, max_batch_wait_ms: 50, ..Default::default() }).await;
    let client = server.client().await;
    let files = ["obama_1.jpg", "obama_2.jpg", "rose_leslie_1.jpg", "rose_leslie_2.jpg", "biden_2.jpg", "kit_harington_2.jpg"];
    let calls: Vec<_> = files
        .iter()
        .map(|f| {
            let mut c = client.clone();
            let f = f.to_string();
            tokio::spawn(async move { (f.clone(), c.embed(embed_request(&[&f])).await) })
        })
        .collect();
    for call in calls {
        let (file, r) = call.await.expect("task");
        let r = r.expect("served").into_inner();
        assert!(cosine(&first_embedding(&r, 0), &library_embedding(&file)) > 0.9999, "{file}: batching changed the embedding");
    }
    let stats = server.engine.stats();
    assert_eq!(stats.crops, 6);
    assert!(stats.batches < stats.crops, "crops were never batched: {stats:?}");
}

/// The metrics an operator needs are recorded: queue time per stage, batch size, inference
/// time per model, and requests by status code (the admission layer's refusals included).
#[tokio::test]
async fn metrics_cover_queues_batches_models_and_status_codes() {
    let handle = crate::common::metrics();
    let server = Server::start(FacematchConfig { max_in_flight: 1, ..Default::default() }).await;
    let mut client = server.client().await;
    client.embed(embed_request(&["obama_1.jpg"])).await.expect("served");
    let bad = ekyc_proto::v1::EmbedRequest::default();
    assert!(client.embed(bad).await.is_err());
    // Two at once with room for one: one is refused by the admission layer.
    let (mut c1, mut c2) = (client.clone(), client.clone());
    let (a, b) = tokio::join!(c1.embed(embed_request(&["obama_2.jpg"])), c2.embed(embed_request(&["obama_3.jpg"])));
    assert!(a.is_err() || b.is_err(), "one of two concurrent calls is shed at a limit of 1");
    let text = handle.render();
    for needle in [
        "ekyc_facematch_queue_seconds",
        "stage=\"prepare\"",
        "stage=\"embed\"",
        "ekyc_facematch_batch_size",
        "ekyc_inference_seconds",
        "model=\"embedder\"",
        "model=\"decode+detector+landmarks\"",
        "ekyc_requests_total{service=\"ekyc.v1.FaceMatch\",method=\"Embed\",code=\"OK\"}",
        "code=\"INVALID_ARGUMENT\"",
        "code=\"RESOURCE_EXHAUSTED\"",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from the metrics:\n{text}");
    }
}
