//! One trace across servers: a caller's span, the span of the server it calls, that
//! server's work on another thread and its own call to a second server all share one trace
//! id, each the child of the one before; a call that carries no trace context starts a new
//! trace. Servers run in-process on `127.0.0.1:0` through the same `serve_api` and
//! `serve_health_only` the services use; spans are read from the in-memory store.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ekyc_proto::v1 as pb;
use ekyc_proto::v1::document_client::DocumentClient;
use ekyc_proto::v1::document_server::{Document, DocumentServer};
use ekyc_runtime::ServiceKind;
use ekyc_runtime::serve::{Engine, serve_api, serve_health_only};
use ekyc_runtime::testing::{FinishedSpan, install_in_memory};
use ekyc_runtime::trace::{ClientTraceLayer, TraceIds, ids, inject_trace_context};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tracing::{Instrument, Span};

/// A server running in the test; [`Server::stop`] shuts it down.
struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("server task ends cleanly");
    }
}

async fn bind() -> (TcpListener, SocketAddr, oneshot::Sender<()>, impl Future<Output = ()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds a free port");
    let addr = listener.local_addr().expect("bound address");
    let (stop, rx) = oneshot::channel::<()>();
    (listener, addr, stop, async move {
        let _ = rx.await;
    })
}

async fn start_health_only(kind: ServiceKind) -> Server {
    let (listener, addr, stop, shutdown) = bind().await;
    let task = tokio::spawn(async move { serve_health_only(kind, listener, shutdown).await.expect("serves") });
    Server { addr, stop, task }
}

/// Starts a Document server whose one RPC calls `next`'s health check; returns it and the
/// trace ids its handler saw.
async fn start_relay(next: SocketAddr) -> (Server, Arc<Mutex<Vec<Option<TraceIds>>>>) {
    let (listener, addr, stop, shutdown) = bind().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let relay = Relay { next, seen: Arc::clone(&seen) };
    let task = tokio::spawn(async move {
        let ready = Engine::<(), fn() -> Result<(), String>>::Ready(Arc::new(()));
        serve_api(ServiceKind::Document, Arc::default(), ready, DocumentServer::new(relay), 4, listener, shutdown).await.expect("serves")
    });
    (Server { addr, stop, task }, seen)
}

async fn connect(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).expect("valid uri").connect().await.expect("connects over loopback")
}

/// A stand-in for a service that calls another: with `return_rectified_document` it does
/// some blocking work and calls the next server's health check, else it fails UNAVAILABLE.
#[derive(Debug, Clone)]
struct Relay {
    next: SocketAddr,
    seen: Arc<Mutex<Vec<Option<TraceIds>>>>,
}

#[tonic::async_trait]
impl Document for Relay {
    async fn extract_portrait(
        &self,
        request: Request<pb::ExtractPortraitRequest>,
    ) -> Result<Response<pb::ExtractPortraitResponse>, Status> {
        self.seen.lock().expect("not poisoned").push(ids(&Span::current()));
        if !request.get_ref().return_rectified_document {
            return Err(Status::unavailable("the relay was asked to fail"));
        }
        // Blocking work takes the span to its thread, as the services' worker pools do.
        let span = Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| tracing::info_span!("relay.blocking").in_scope(|| ())))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let channel = Channel::from_shared(format!("http://{}", self.next))
            .map_err(|e| Status::internal(e.to_string()))?
            .connect()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        // The client as the orchestrator builds it: tracing outermost, then other layers.
        let service = tower::ServiceBuilder::new().layer(ClientTraceLayer::new()).timeout(Duration::from_secs(30)).service(channel);
        HealthClient::new(service).check(HealthCheckRequest { service: String::new() }).await?;
        Ok(Response::new(pb::ExtractPortraitResponse::default()))
    }
}

fn find<'a>(trace: &'a [FinishedSpan], kind: &str, name: &str) -> &'a FinishedSpan {
    trace.iter().find(|s| s.kind == kind && s.name == name).unwrap_or_else(|| panic!("no {kind} span `{name}` in {trace:#?}"))
}

fn relay_request(relay: bool) -> pb::ExtractPortraitRequest {
    pb::ExtractPortraitRequest { return_rectified_document: relay, ..Default::default() }
}

#[tokio::test]
async fn one_trace_runs_from_the_caller_through_two_servers() {
    let spans = install_in_memory();
    let b = start_health_only(ServiceKind::Orchestrator).await;
    let (a, seen) = start_relay(b.addr).await;
    let channel = connect(a.addr).await;

    let root = tracing::info_span!("test.caller");
    let caller = ids(&root).expect("the in-memory layer gives spans ids");
    async {
        let mut client = DocumentClient::with_interceptor(channel, inject_trace_context);
        client.extract_portrait(relay_request(true)).await.expect("the relay answers");
    }
    .instrument(root)
    .await;

    let trace = spans
        .wait_for(&caller.trace_id, |t| {
            ["test.caller", "ekyc.v1.Document/ExtractPortrait", "grpc.health.v1.Health/Check"]
                .iter()
                .all(|n| t.iter().any(|s| s.name == *n))
                && t.iter().filter(|s| s.name == "grpc.health.v1.Health/Check").count() == 2
        })
        .await;
    let root = find(&trace, "internal", "test.caller");
    assert_eq!(root.parent_span_id, None);
    assert_eq!(root.span_id, caller.span_id);

    // Server A continues the caller's trace, as the child of the caller's span.
    let a_span = find(&trace, "server", "ekyc.v1.Document/ExtractPortrait");
    assert_eq!(a_span.parent_span_id.as_deref(), Some(caller.span_id.as_str()));
    assert!(a_span.parent_is_remote, "the parent came in `traceparent`");
    for (key, value) in [
        ("rpc.system", "grpc"),
        ("rpc.service", "ekyc.v1.Document"),
        ("rpc.method", "ExtractPortrait"),
        ("ekyc.service", "document"),
        ("rpc.grpc.status_code", "0"),
    ] {
        assert_eq!(a_span.attribute(key), Some(value), "{key} in {a_span:#?}");
    }
    assert_eq!(a_span.status, "ok");
    // The handler ran inside it, and so did its work on a blocking thread.
    let in_handler = seen.lock().expect("not poisoned").clone();
    assert_eq!(in_handler, vec![Some(TraceIds { trace_id: caller.trace_id.clone(), span_id: a_span.span_id.clone() })]);
    let blocking = find(&trace, "internal", "relay.blocking");
    assert_eq!(blocking.parent_span_id.as_ref(), Some(&a_span.span_id));

    // A's call to B: a client span below A's span, and B's server span below that.
    let client = find(&trace, "client", "grpc.health.v1.Health/Check");
    assert_eq!(client.parent_span_id.as_ref(), Some(&a_span.span_id));
    assert_eq!(client.attribute("rpc.grpc.status_code"), Some("0"));
    assert_eq!(client.status, "ok");
    let b_span = find(&trace, "server", "grpc.health.v1.Health/Check");
    assert_eq!(b_span.parent_span_id.as_ref(), Some(&client.span_id));
    assert!(b_span.parent_is_remote);
    assert_eq!(b_span.attribute("ekyc.service"), Some("orchestrator"));
    assert_eq!(b_span.attribute("rpc.grpc.status_code"), Some("0"));
    assert!(trace.iter().all(|s| s.trace_id == caller.trace_id && s.service_name == "ekyc-test"));

    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_call_without_trace_context_starts_a_new_trace() {
    let spans = install_in_memory();
    let b = start_health_only(ServiceKind::Orchestrator).await;
    let (a, seen) = start_relay(b.addr).await;
    let channel = connect(a.addr).await;

    // A plain client inside the caller's span: nothing sends the caller's context.
    let root = tracing::info_span!("test.untraced_caller");
    let caller = ids(&root).expect("the in-memory layer gives spans ids");
    let plain = async { DocumentClient::new(channel.clone()).extract_portrait(relay_request(false)).await }.instrument(root).await;
    assert_eq!(plain.expect_err("the relay fails when asked").code(), tonic::Code::Unavailable);
    // A malformed `traceparent` counts as none.
    let mut request = Request::new(relay_request(false));
    request.metadata_mut().insert("traceparent", "00-not-a-trace-01".parse().expect("ascii"));
    assert!(DocumentClient::new(channel).extract_portrait(request).await.is_err());

    let in_handler: Vec<TraceIds> =
        seen.lock().expect("not poisoned").iter().map(|i| i.clone().expect("the handler runs in the RPC span")).collect();
    assert_eq!(in_handler.len(), 2);
    assert_ne!(in_handler[0].trace_id, in_handler[1].trace_id, "two calls, two traces");
    for handler in &in_handler {
        assert_ne!(handler.trace_id, caller.trace_id);
        let trace = spans.wait_for(&handler.trace_id, |t| t.iter().any(|s| s.span_id == handler.span_id)).await;
        let server = find(&trace, "server", "ekyc.v1.Document/ExtractPortrait");
        assert_eq!(server.span_id, handler.span_id);
        assert_eq!(server.parent_span_id, None, "a new root: {server:#?}");
        assert!(!server.parent_is_remote);
        assert_eq!(server.attribute("rpc.grpc.status_code"), Some("14"));
        assert_eq!(server.status, "error", "UNAVAILABLE is a server error");
    }
    assert!(spans.trace(&caller.trace_id).iter().all(|s| s.kind != "server"), "no server joined the caller's trace");

    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn health_probes_make_spans_only_when_traced() {
    let spans = install_in_memory();
    let server = start_health_only(ServiceKind::Document).await;
    let channel = connect(server.addr).await;
    let probe = HealthCheckRequest { service: String::new() };

    // As Kubernetes probes: no trace context, no span. The span would have ended before the
    // answer was sent.
    HealthClient::new(channel.clone()).check(probe.clone()).await.expect("process health");
    let untraced = spans.spans().into_iter().filter(|s| s.name == "grpc.health.v1.Health/Check" && s.parent_span_id.is_none()).count();
    assert_eq!(untraced, 0);

    let root = tracing::info_span!("test.traced_probe");
    let caller = ids(&root).expect("the in-memory layer gives spans ids");
    async { HealthClient::with_interceptor(channel, inject_trace_context).check(probe).await.expect("process health") }
        .instrument(root)
        .await;
    let trace = spans.wait_for(&caller.trace_id, |t| t.iter().any(|s| s.kind == "server")).await;
    let check = find(&trace, "server", "grpc.health.v1.Health/Check");
    assert_eq!(check.parent_span_id.as_ref(), Some(&caller.span_id));
    assert_eq!(check.attribute("ekyc.service"), Some("document"));

    server.stop().await;
}

#[tokio::test]
async fn the_interceptor_sends_the_current_span_or_nothing() {
    let _spans = install_in_memory();
    let outside = inject_trace_context(Request::new(())).expect("never fails");
    assert!(outside.metadata().get("traceparent").is_none(), "no current span, no context");

    let span = tracing::info_span!("test.inject");
    let expected = ids(&span).expect("the in-memory layer gives spans ids");
    let inside = span.in_scope(|| inject_trace_context(Request::new(()))).expect("never fails");
    let header = inside.metadata().get("traceparent").expect("traceparent sent").to_str().expect("ascii");
    assert_eq!(header, format!("00-{}-{}-01", expected.trace_id, expected.span_id));
}
