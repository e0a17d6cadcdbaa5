//! A worker or embedder thread that panics (a real panic, injected through the test-only
//! `fault-injection` feature) answers its call INTERNAL, is restarted with fresh sessions
//! and counted, and health is NOT_SERVING until it is back.

use std::time::{Duration, Instant};

use ekyc_facematch::FacematchConfig;
use ekyc_facematch::engine::Role;
use ekyc_vision::cosine;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::common::{Server, embed_request, first_embedding, library_embedding, metrics};

async fn wait_for(server: &Server, want: ServingStatus, within: Duration) {
    let mut health = HealthClient::new(server.channel().await);
    let started = Instant::now();
    loop {
        let now =
            health.check(HealthCheckRequest { service: "ekyc.v1.FaceMatch".into() }).await.expect("health answers").into_inner().status();
        if now == want {
            return;
        }
        assert!(started.elapsed() < within, "health stayed {now:?}, never {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_panicking_model_thread_is_restarted_counted_and_health_follows() {
    let metrics = metrics();
    let server = Server::start(FacematchConfig { workers: 1, ..Default::default() }).await;
    let mut client = server.client().await;
    let reference = library_embedding("obama_2.jpg");
    wait_for(&server, ServingStatus::Serving, Duration::from_secs(5)).await;
    for (role, restarts) in [(Role::Worker, (1, 0)), (Role::Embedder, (1, 1))] {
        server.engine.inject_panic(role);
        let err = client.embed(embed_request(&["obama_2.jpg"])).await.expect_err("the call that met the panic fails");
        assert_eq!(err.code(), Code::Internal, "{role:?}: {err:?}");
        wait_for(&server, ServingStatus::NotServing, Duration::from_secs(5)).await;
        wait_for(&server, ServingStatus::Serving, Duration::from_secs(120)).await;
        assert_eq!(server.engine.restarts(), restarts, "{role:?}");
        let r = client.embed(embed_request(&["obama_2.jpg"])).await.expect("served again after the restart").into_inner();
        assert!(cosine(&first_embedding(&r, 0), &reference) > 0.9999, "{role:?}: the fresh sessions embed as before");
    }
    let text = metrics.render();
    for role in ["worker", "embedder"] {
        let line = text
            .lines()
            .find(|l| l.starts_with("ekyc_worker_restarts_total") && l.contains(&format!("role=\"{role}\"")))
            .unwrap_or_else(|| panic!("no restart counter for {role} in:\n{text}"));
        assert!(line.contains("service=\"facematch\"") && line.ends_with(" 1"), "{line}");
    }
}
