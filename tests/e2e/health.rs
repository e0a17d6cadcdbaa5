//! Every service answers standard gRPC health and reflection; the process is SERVING at
//! once, and each service becomes SERVING under its own name once ready, so Kubernetes
//! readiness keeps traffic away from a replica still loading its models.

use ekyc_runtime::ServiceKind;
use ekyc_tests::start;
use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn status(client: &mut HealthClient<tonic::transport::Channel>, service: &str) -> Result<ServingStatus, tonic::Status> {
    let r = client.check(HealthCheckRequest { service: service.into() }).await?;
    Ok(r.into_inner().status())
}

#[tokio::test]
async fn all_four_services_report_health_over_grpc() {
    for kind in ServiceKind::ALL {
        let running = start(kind).await;
        let mut health = HealthClient::new(running.channel().await);
        assert_eq!(status(&mut health, "").await.expect("process health"), ServingStatus::Serving, "{kind:?}");
        // SERVING under its own name once ready (models loaded and warm).
        let mut tries = 0;
        while status(&mut health, kind.grpc_name()).await.expect("service health") != ServingStatus::Serving {
            tries += 1;
            assert!(tries < 2400, "{kind:?} never became ready");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let unknown = status(&mut health, "no.such.Service").await.expect_err("unknown service");
        assert_eq!(unknown.code(), tonic::Code::NotFound);
        running.stop().await;
    }
}

#[tokio::test]
async fn reflection_lists_the_api() {
    let running = start(ServiceKind::Facematch).await;
    let mut client = ServerReflectionClient::new(running.channel().await);
    let req = ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) };
    let mut stream = client.server_reflection_info(tokio_stream::iter([req])).await.expect("reflection answers").into_inner();
    let msg = stream.next().await.expect("one response").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else { panic!("unexpected reflection response") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["ekyc.v1.FaceMatch", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
    // Each server advertises what it serves, not the whole API.
    assert!(!names.iter().any(|n| n == "ekyc.v1.Liveness"), "{names:?}");
    running.stop().await;
}
