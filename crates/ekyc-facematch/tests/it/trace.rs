//! A call's trace shows where its time went: the server span of `Embed` continues the
//! caller's trace, and the image work on the worker threads and the batched embedding on
//! the embedder thread appear as its children, though they run on other threads.

use ekyc_facematch::FacematchConfig;
use ekyc_proto::v1::face_match_client::FaceMatchClient;
use ekyc_runtime::testing::{FinishedSpan, install_in_memory};
use ekyc_runtime::trace::{ClientTraceLayer, ids};
use tonic::transport::Channel;
use tracing::Instrument;

use crate::common::{Server, embed_request};

#[tokio::test]
async fn the_inference_shows_in_the_callers_trace() {
    let spans = install_in_memory();
    let server = Server::start(FacematchConfig::default()).await;
    let channel = Channel::from_shared(format!("http://{}", server.addr)).expect("uri").connect().await.expect("connects");
    let mut client = FaceMatchClient::new(tower::ServiceBuilder::new().layer(ClientTraceLayer::new()).service(channel))
        .max_encoding_message_size(64 << 20);

    let root = tracing::info_span!("test.caller");
    let caller = ids(&root).expect("the in-memory layer gives spans ids");
    let files = ["obama_1.jpg", "multi_two_people.jpg"];
    let r = async { client.embed(embed_request(&files)).await }.instrument(root).await.expect("embed").into_inner();
    let faces: usize = r.results.iter().map(|i| i.faces.iter().filter(|f| f.usable).count()).sum();
    assert_eq!(faces, 3);

    let named = |t: &[FinishedSpan], name: &str| t.iter().filter(|s| s.name == name).count();
    let trace = spans
        .wait_for(&caller.trace_id, |t| {
            named(t, "ekyc.v1.FaceMatch/Embed") == 2 && named(t, "facematch.prepare") == 2 && named(t, "facematch.embed") == 3
        })
        .await;
    let server_span = trace
        .iter()
        .find(|s| s.kind == "server" && s.name == "ekyc.v1.FaceMatch/Embed")
        .unwrap_or_else(|| panic!("no server span in {trace:#?}"));
    assert_eq!(server_span.attribute("ekyc.service"), Some("facematch"));
    assert_eq!(server_span.attribute("rpc.grpc.status_code"), Some("0"));
    for (name, count) in [("facematch.prepare", 2), ("facematch.embed", 3)] {
        let below: Vec<&FinishedSpan> = trace.iter().filter(|s| s.name == name).collect();
        assert_eq!(below.len(), count, "{name} in {trace:#?}");
        assert!(below.iter().all(|s| s.parent_span_id.as_ref() == Some(&server_span.span_id)), "{name} below the RPC: {trace:#?}");
    }
}
