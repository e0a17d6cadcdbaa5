//! Logging and tracing set-up. Images and embeddings are never logged: log lines and span
//! attributes carry sizes, counts, scores, timings and gRPC names and codes only.
//!
//! [`init_for`] installs one global `tracing` subscriber with two layers, each with its own
//! filter: log lines to stderr (text or JSON), and an OpenTelemetry layer whose spans make
//! up the traces; it also sets the global W3C trace-context propagator that
//! [`crate::trace`] uses to carry a trace across the services. Call [`shutdown`] at process
//! exit so the last spans are exported.
//!
//! Settings (`[log]`, [`LogSettings`]), with their defaults:
//!
//! ```toml
//! [log]
//! filter = "info"        # log lines; RUST_LOG overrides it
//! json = false           # one JSON object per line instead of text
//! trace_filter = "info"  # spans that go into traces; `off` also stops propagation
//! # otlp_endpoint = "http://otel-collector:4317"   # unset: no export
//! ```
//!
//! Without `otlp_endpoint`, spans are still made and trace context still flows from service
//! to service (so a trace id is the same in every service's logs and answers), but no span
//! leaves the process. With it, finished spans are batched to that OTLP/gRPC collector with
//! the resource `service.name` given to [`init_for`] (`OTEL_SERVICE_NAME` overrides it;
//! the other `OTEL_RESOURCE_ATTRIBUTES` are added). The exporter runs on a small Tokio
//! runtime of its own, so it works whether or not the caller is inside a runtime, and
//! [`shutdown`] cannot stall on the caller's runtime: it waits at most
//! [`SHUTDOWN_TIMEOUT`].

use std::sync::Mutex;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::settings::{LogSettings, ServiceKind};

/// Longest wait for one export to the collector.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait in [`shutdown`] for the last spans to be exported.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{0}")]
    Settings(#[from] crate::settings::SettingsError),
    #[error("starting the span exporter's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("building the OTLP span exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// What [`shutdown`] has to stop.
struct Installed {
    provider: SdkTracerProvider,
    /// Runs the OTLP exporter's gRPC channel; `None` without export.
    exporter_runtime: Option<tokio::runtime::Runtime>,
}

static INSTALLED: Mutex<Option<Installed>> = Mutex::new(None);

/// The `service.name` for a process serving `kinds`: `ekyc-facematch` for one, `ekyc` for
/// several (the spans then tell the services apart by `ekyc.service` and `rpc.service`).
pub fn service_name(kinds: &[ServiceKind]) -> String {
    match kinds {
        [one] => format!("ekyc-{}", one.name()),
        _ => "ekyc".into(),
    }
}

/// [`init_for`] with `service.name = "ekyc"`, reporting a failure on stderr and going on with
/// logs and propagation but no export, so telemetry never stops a service from starting.
pub fn init(log: &LogSettings) {
    if let Err(e) = init_for(log, "ekyc") {
        eprintln!("telemetry: {e}; going on without exporting traces");
        let fallback = LogSettings { otlp_endpoint: None, ..log.clone() };
        if init_for(&fallback, "ekyc").is_err() {
            let _ = init_for(&LogSettings { json: log.json, ..LogSettings::default() }, "ekyc");
        }
    }
}

/// Installs the global subscriber (logs and spans), the W3C propagator and the tracer
/// provider, exporting to `log.otlp_endpoint` when set. Once per process: later calls, and
/// calls after another global subscriber was installed, change nothing and return `Ok`.
pub fn init_for(log: &LogSettings, service_name: &str) -> Result<(), TelemetryError> {
    log.validate()?;
    let Ok(mut installed) = INSTALLED.lock() else { return Ok(()) };
    if installed.is_some() {
        return Ok(());
    }
    let (provider, exporter_runtime) = match &log.otlp_endpoint {
        Some(endpoint) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("otlp-export")
                .enable_all()
                .build()
                .map_err(TelemetryError::Runtime)?;
            // tonic's channel spawns its connection task on the current runtime.
            let exporter = {
                let _in_runtime = rt.enter();
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint.clone())
                    .with_timeout(EXPORT_TIMEOUT)
                    .build()?
            };
            let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource(service_name)).build();
            (provider, Some(rt))
        }
        None => (SdkTracerProvider::builder().with_resource(resource(service_name)).build(), None),
    };
    let log_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.filter));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if log.json { fmt.json().boxed() } else { fmt.boxed() };
    let spans = tracing_opentelemetry::layer().with_tracer(provider.tracer("ekyc")).with_filter(EnvFilter::new(&log.trace_filter));
    if tracing_subscriber::registry().with(fmt.with_filter(log_filter)).with(spans).try_init().is_err() {
        // Someone else's subscriber is in place; ours would see no spans.
        let _ = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
        if let Some(rt) = exporter_runtime {
            rt.shutdown_background();
        }
        return Ok(());
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    *installed = Some(Installed { provider, exporter_runtime });
    Ok(())
}

fn resource(service_name: &str) -> Resource {
    let builder = Resource::builder();
    // The SDK reads OTEL_SERVICE_NAME into the builder; an operator's choice wins.
    if std::env::var_os("OTEL_SERVICE_NAME").is_some() {
        builder.build()
    } else {
        builder.with_service_name(service_name.to_string()).build()
    }
}

/// Exports the spans not yet exported and stops the exporter, waiting at most
/// [`SHUTDOWN_TIMEOUT`]; spans that end afterwards are dropped. Call it once at process exit,
/// after the servers have stopped. It blocks, but never on the caller's Tokio runtime, so it
/// may be called from inside one. A no-op without [`init_for`].
pub fn shutdown() {
    let Some(installed) = INSTALLED.lock().ok().and_then(|mut i| i.take()) else { return };
    if let Err(e) = installed.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
        eprintln!("telemetry: exporting the last spans: {e}");
    }
    if let Some(rt) = installed.exporter_runtime {
        rt.shutdown_background();
    }
}
