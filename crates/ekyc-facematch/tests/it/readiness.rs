//! Health says NOT_SERVING until the models are loaded and warm, and calls meanwhile get
//! UNAVAILABLE; a service whose models cannot load never claims to serve.

use std::time::Duration;

use ekyc_facematch::FacematchConfig;
use ekyc_proto::v1::face_match_client::FaceMatchClient;
use ekyc_vision::VisionConfig;
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::common::embed_request;

async fn start(vision: VisionConfig) -> (Channel, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("port");
    let addr = listener.local_addr().expect("addr");
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        ekyc_facematch::serve(vision, FacematchConfig::default(), 1 << 20, listener, async {
            let _ = rx.await;
        })
        .await
        .expect("serves");
    });
    let channel = Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connects");
    (channel, stop)
}

async fn status(channel: &Channel) -> ServingStatus {
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest { service: "ekyc.v1.FaceMatch".into() })
        .await
        .expect("health answers")
        .into_inner()
        .status()
}

#[tokio::test]
async fn models_that_cannot_load_end_serving_with_an_error() {
    // `ekyc serve --service facematch` turns this error into a non-zero exit, so Kubernetes
    // restarts the pod instead of it answering "still loading" forever.
    let vision = VisionConfig { models_dir: Some("/nonexistent/models".into()), ..Default::default() };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("port");
    let served = tokio::time::timeout(
        Duration::from_secs(60),
        ekyc_facematch::serve(vision, FacematchConfig::default(), 1 << 20, listener, std::future::pending()),
    )
    .await
    .expect("serving ends instead of waiting forever");
    match served {
        Err(ekyc_facematch::FacematchError::Serve(ekyc_runtime::serve::ServeError::Load(m))) => {
            assert!(m.contains("loading models"), "{m}");
        }
        other => panic!("expected a load error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_service_becomes_serving_once_warm() {
    let (channel, _stop) = start(VisionConfig::default()).await;
    let mut waited = Duration::ZERO;
    while status(&channel).await != ServingStatus::Serving {
        assert!(waited < Duration::from_secs(120), "never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    let r = FaceMatchClient::new(channel).embed(embed_request(&["obama_1.jpg"])).await.expect("served once ready").into_inner();
    assert_eq!(r.results[0].faces.len(), 1);
}
