//! Graceful shutdown through the serving scaffold, over real gRPC on loopback: when the
//! shutdown future completes (`ekyc serve` completes it on SIGTERM), calls already in flight
//! finish with their answers, new connections are refused, and the server returns only after
//! the last call is done.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ekyc_proto::v1 as pb;
use ekyc_proto::v1::document_client::DocumentClient;
use ekyc_proto::v1::document_server::{Document, DocumentServer};
use ekyc_runtime::ServiceKind;
use ekyc_runtime::serve::{Engine, Listener, serve_api};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// A Document service whose every call takes `0` to answer; `1` counts the answered calls.
#[derive(Debug, Clone)]
struct Slow(Duration, Arc<AtomicUsize>);

#[tonic::async_trait]
impl Document for Slow {
    async fn extract_portrait(&self, _: Request<pb::ExtractPortraitRequest>) -> Result<Response<pb::ExtractPortraitResponse>, Status> {
        tokio::time::sleep(self.0).await;
        self.1.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(pb::ExtractPortraitResponse::default()))
    }
}

#[tokio::test]
async fn shutdown_drains_the_calls_in_flight() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("binds a free port");
    let addr = tcp.local_addr().expect("bound");
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let answered = Arc::new(AtomicUsize::new(0));
    let api = DocumentServer::new(Slow(Duration::from_millis(1500), Arc::clone(&answered)));
    let server = tokio::spawn(async move {
        let ready = Engine::<(), fn() -> Result<(), String>>::Ready(Arc::new(()));
        let shutdown = async move {
            let _ = rx.await;
        };
        serve_api(ServiceKind::Document, Arc::default(), ready, api, 8, Listener::from(tcp), shutdown).await
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connects");
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let mut client = DocumentClient::new(channel.clone());
            tokio::spawn(async move { client.extract_portrait(pb::ExtractPortraitRequest::default()).await })
        })
        .collect();
    // The calls are in the handler when the shutdown begins.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(answered.load(Ordering::SeqCst), 0, "the calls are still running");
    stop.send(()).expect("server running");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("uri").connect().await;
    assert!(refused.is_err(), "a draining server takes no new connections");
    server.await.expect("joined").expect("serving ends cleanly");
    assert_eq!(answered.load(Ordering::SeqCst), 4, "serving ended only after every call in flight was answered");
    for call in calls {
        call.await.expect("joined").expect("a call in flight at shutdown is answered");
    }
}
