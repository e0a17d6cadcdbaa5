//! Slow uploads: 50 connections trickle request bodies a few bytes a second while normal
//! calls run. The permit is taken only once a body is in, so the tricklers hold no slot:
//! normal calls are all served (none RESOURCE_EXHAUSTED, none hanging), and each trickler
//! gets DEADLINE_EXCEEDED with reason REQUEST_TIMEOUT at the receive deadline.
//! `examples/slow_clients.rs` measures the latency of the normal calls with and without them.

use std::time::Duration;

use ekyc_facematch::FacematchConfig;
use ekyc_proto::v1 as pb;
use ekyc_runtime::serve::ServeLimits;
use ekyc_vision::cosine;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use crate::common::{MAX_MESSAGE, Server, embed_request, first_embedding, library_embedding};

/// Sends an Embed request whose body never ends: an empty message frame (5 bytes) every
/// `every`, so a few bytes a second. Returns the status the server answers with.
pub async fn trickle(channel: Channel, every: Duration) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("connection ready");
    let body = futures::stream::unfold((), move |()| async move {
        tokio::time::sleep(every).await;
        Some((pb::EmbedRequest::default(), ()))
    });
    let path = PathAndQuery::from_static("/ekyc.v1.FaceMatch/Embed");
    let codec = tonic_prost::ProstCodec::<pb::EmbedRequest, pb::EmbedResponse>::default();
    match grpc.client_streaming(tonic::Request::new(body), path, codec).await {
        Ok(_) => panic!("a body that never ends was answered as if complete"),
        Err(status) => status,
    }
}

#[tokio::test]
async fn trickling_uploads_time_out_without_taking_the_permits_of_normal_calls() {
    let mut limits = ServeLimits::default();
    limits.receive.timeout = Duration::from_millis(1500);
    limits.receive.max_message_bytes = MAX_MESSAGE;
    // Two permits: had the tricklers taken them, every normal call would be refused.
    let server = Server::start_with(FacematchConfig { max_in_flight: 2, workers: 1, ..Default::default() }, limits).await;
    let reference = library_embedding("obama_2.jpg");
    let mut tricklers = Vec::new();
    for _ in 0..50 {
        let channel = server.channel().await;
        tricklers.push(tokio::spawn(trickle(channel, Duration::from_millis(400))));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut client = server.client().await;
    for i in 0..6 {
        let r = tokio::time::timeout(Duration::from_secs(30), client.embed(embed_request(&["obama_2.jpg"])))
            .await
            .unwrap_or_else(|_| panic!("normal call {i} hung"))
            .unwrap_or_else(|s| panic!("normal call {i} refused while uploads trickle: {s:?}"))
            .into_inner();
        assert!(cosine(&first_embedding(&r, 0), &reference) > 0.9999);
    }
    for t in tricklers {
        let status = tokio::time::timeout(Duration::from_secs(30), t).await.expect("trickler answered").expect("task");
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert!(status.message().starts_with("REQUEST_TIMEOUT"), "{}", status.message());
    }
}
