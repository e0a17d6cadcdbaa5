//! Test support (cargo feature `testing`): finished spans kept in memory, so a test can
//! check what a trace looks like across in-process servers.
//!
//! The global subscriber, propagator and tracer provider can be installed only once per
//! process, so [`install_in_memory`] installs them on its first call and every later call
//! (from any test of the binary) returns a handle to the same store. Tests run in parallel
//! and share it: each test starts its own trace (a root span of its own) and reads only the
//! spans of that trace id.
//!
//! ```no_run
//! # async fn demo() {
//! use ekyc_runtime::{testing, trace};
//! use tracing::Instrument;
//!
//! let spans = testing::install_in_memory();
//! let root = tracing::info_span!("test.root");
//! let ids = trace::ids(&root).expect("the in-memory layer is installed");
//! async { /* call a server through ClientTraceLayer or inject_trace_context */ }.instrument(root).await;
//! let trace = spans.wait_for(&ids.trace_id, |s| s.iter().any(|s| s.kind == "server")).await;
//! # let _ = trace;
//! # }
//! ```
//!
//! Add it to a crate's tests with
//! `[dev-dependencies] ekyc-runtime = { workspace = true, features = ["testing"] }`.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::{SpanId, Status, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The `service.name` of the spans recorded in tests.
pub const TEST_SERVICE_NAME: &str = "ekyc-test";

/// Longest [`InMemorySpans::wait_for`] waits.
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// One finished span, with ids as lower-case hex as in `traceparent`.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedSpan {
    pub trace_id: String,
    pub span_id: String,
    /// `None` for the root of a trace.
    pub parent_span_id: Option<String>,
    /// The parent came from another process (a `traceparent` header).
    pub parent_is_remote: bool,
    /// For RPC spans the gRPC path without the leading slash, e.g. `ekyc.v1.FaceMatch/Embed`.
    pub name: String,
    /// `server`, `client` or `internal`.
    pub kind: String,
    /// The resource's `service.name`: [`TEST_SERVICE_NAME`] for every span of the process;
    /// the `ekyc.service` attribute tells in-process servers apart.
    pub service_name: String,
    /// `unset`, `ok` or `error`.
    pub status: String,
    /// Attributes as text, e.g. `rpc.service`, `rpc.method`, `rpc.grpc.status_code`.
    pub attributes: BTreeMap<String, String>,
}

impl FinishedSpan {
    fn from_data(d: &SpanData) -> Self {
        let parent = d.parent_span_id;
        FinishedSpan {
            trace_id: d.span_context.trace_id().to_string(),
            span_id: d.span_context.span_id().to_string(),
            parent_span_id: (parent != SpanId::INVALID).then(|| parent.to_string()),
            parent_is_remote: d.parent_span_is_remote,
            name: d.name.to_string(),
            kind: format!("{:?}", d.span_kind).to_lowercase(),
            service_name: TEST_SERVICE_NAME.into(),
            status: match d.status {
                Status::Unset => "unset",
                Status::Ok => "ok",
                Status::Error { .. } => "error",
            }
            .into(),
            attributes: d.attributes.iter().map(|kv| (kv.key.to_string(), kv.value.to_string())).collect(),
        }
    }

    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// Handle to the spans finished in this process since [`install_in_memory`].
#[derive(Debug, Clone)]
pub struct InMemorySpans {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
}

impl InMemorySpans {
    /// Every span finished so far, in the order they finished.
    pub fn spans(&self) -> Vec<FinishedSpan> {
        // Spans go to the store as they end; flushing is a formality that keeps this right
        // should the processor ever batch.
        let _ = self.provider.force_flush();
        self.exporter.get_finished_spans().unwrap_or_default().iter().map(FinishedSpan::from_data).collect()
    }

    /// The finished spans of one trace.
    pub fn trace(&self, trace_id: &str) -> Vec<FinishedSpan> {
        self.spans().into_iter().filter(|s| s.trace_id == trace_id).collect()
    }

    /// The spans of `trace_id` once `done` holds for them, or as they are after
    /// [`WAIT_LIMIT`]; assert on what it returns. A server's span ends when its response
    /// has been sent, which can be a moment after the client has it.
    pub async fn wait_for(&self, trace_id: &str, done: impl Fn(&[FinishedSpan]) -> bool) -> Vec<FinishedSpan> {
        let until = tokio::time::Instant::now() + WAIT_LIMIT;
        loop {
            let spans = self.trace(trace_id);
            if done(&spans) || tokio::time::Instant::now() >= until {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Installs, once per process, a global subscriber whose spans (filter `info`) are kept in
/// memory, plus the W3C propagator and the tracer provider, and returns a handle to the
/// store; later calls return the same store. Log lines go to the test's captured output
/// (filter `RUST_LOG`, else `warn`).
///
/// # Panics
/// When another global subscriber was installed first in this process (for example by
/// [`crate::telemetry::init`]): its spans would never reach the store.
pub fn install_in_memory() -> InMemorySpans {
    static STORE: OnceLock<InMemorySpans> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .with_resource(Resource::builder_empty().with_service_name(TEST_SERVICE_NAME).build())
                .build();
            let spans = tracing_opentelemetry::layer().with_tracer(provider.tracer("ekyc")).with_filter(EnvFilter::new("info"));
            let logs = tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")));
            tracing_subscriber::registry()
                .with(spans)
                .with(logs)
                .try_init()
                .expect("install_in_memory must install the first global subscriber of the test binary");
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            opentelemetry::global::set_tracer_provider(provider.clone());
            InMemorySpans { exporter, provider }
        })
        .clone()
}
