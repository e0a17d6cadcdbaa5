//! Export to a collector: `telemetry::init_for` with `log.otlp_endpoint` sends finished
//! spans over OTLP/gRPC with the service's name, and `telemetry::shutdown` delivers the last
//! ones. A test binary of its own, since it installs the process's global subscriber (the
//! `it` binary installs the in-memory one instead).
//!
//! Initialisation and shutdown happen inside a current-thread runtime, the case where an
//! exporter tied to the caller's runtime would stall at shutdown; the stand-in collector
//! runs on a runtime of its own, as a real one runs in another process.

use std::sync::{Arc, Mutex};

use ekyc_runtime::LogSettings;
use ekyc_runtime::telemetry;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

#[derive(Debug, Clone, Default)]
struct Collector {
    received: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.received.lock().expect("not poisoned").push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// (service.name, span name, trace id as hex) of every span received.
fn received(collector: &Collector) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for request in collector.received.lock().expect("not poisoned").iter() {
        for rs in &request.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                let trace_id: String = span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                out.push((service.clone(), span.name.clone(), trace_id));
            }
        }
    }
    out
}

#[test]
fn finished_spans_reach_the_collector_by_shutdown() {
    let collector = Collector::default();
    let collector_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let listener = collector_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("binds a free port");
    let addr = listener.local_addr().expect("bound address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = collector_rt.spawn(
        tonic::transport::Server::builder().add_service(TraceServiceServer::new(collector.clone())).serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async move {
                let _ = stopped.await;
            },
        ),
    );

    let settings = LogSettings { otlp_endpoint: Some(format!("http://{addr}")), ..LogSettings::default() };
    let app = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let trace_id = app.block_on(async {
        telemetry::init_for(&settings, "ekyc-facematch").expect("telemetry starts");
        let span = tracing::info_span!("test.exported");
        let trace_id = ekyc_runtime::trace::ids(&span).expect("spans have ids").trace_id;
        span.in_scope(|| tracing::info_span!("test.exported_child").in_scope(|| ()));
        drop(span);
        telemetry::shutdown();
        trace_id
    });

    let got = received(&collector);
    for name in ["test.exported", "test.exported_child"] {
        assert!(
            got.contains(&("ekyc-facematch".to_string(), name.to_string(), trace_id.clone())),
            "{name} of trace {trace_id} not in {got:?}"
        );
    }
    let _ = stop.send(());
    collector_rt.block_on(served).expect("collector task").expect("collector serves");
}
