//! The queue-depth gauge over real gRPC: `ekyc_queue_depth{service,queue="workers"}` counts
//! the images waiting for a face worker, as the metrics endpoint renders it.

use std::time::{Duration, Instant};

use ekyc_facematch::FacematchConfig;

use crate::common::{Server, embed_request};

/// The gauge's value in the rendered exposition (absent before any facematch pool exists).
fn depth() -> f64 {
    let text = crate::common::metrics().render();
    text.lines()
        .find(|l| l.starts_with("ekyc_queue_depth{") && l.contains("service=\"ekyc.v1.FaceMatch\"") && l.contains("queue=\"workers\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::test]
async fn the_worker_queue_depth_rises_while_images_wait_and_falls_back_to_zero() {
    crate::common::metrics();
    // One worker: of one call's eight images, seven wait while the first is analysed.
    let server = Server::start(FacematchConfig { workers: 1, worker_queue: 64, ..Default::default() }).await;
    let mut client = server.client().await;
    let files = [
        "obama_1.jpg",
        "obama_2.jpg",
        "obama_3.jpg",
        "biden_2.jpg",
        "rose_leslie_1.jpg",
        "rose_leslie_2.jpg",
        "kit_harington_2.jpg",
        "obama_5_1080p.jpg",
    ];
    let call = tokio::spawn(async move { client.embed(embed_request(&files)).await });
    let mut highest = 0.0_f64;
    while !call.is_finished() {
        highest = highest.max(depth());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let answer = call.await.expect("task").expect("served").into_inner();
    assert_eq!(answer.results.len(), files.len());
    // Other tests of this binary share the process's gauge and can only add to it.
    assert!(highest >= 4.0, "the gauge never showed the waiting images: highest {highest}");
    // Everything answered: nothing of this call is queued any more (other tests' calls may
    // still be, briefly).
    let until = Instant::now() + Duration::from_secs(60);
    while depth() != 0.0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(depth(), 0.0, "the queue drained");
}
