//! `ekyc serve`: all four services in one process on their configured ports, or one; with
//! the orchestrator, the verification page and gRPC-Web on `web.port` (`[web]`).
//!
//! `[server.tls]` secures the port of the one service a process runs (with `--only`, as in
//! Kubernetes), or the orchestrator's public port when all four run together: then the
//! orchestrator calls the other three in plain gRPC over loopback, and with TLS on their
//! ports are bound to loopback only. `server.health_port` serves plain health for probes.
//!
//! Worker counts left at 0 become the CPUs the container may use
//! ([`ekyc_runtime::cpu::available_cpus`]). On SIGTERM or Ctrl-C every server stops taking
//! connections and drains: calls in flight finish, then the process ends.
//!
//! A service whose models cannot load ends the process with a non-zero exit code (all in
//! one: the whole process), so a supervisor such as Kubernetes restarts it.

use anyhow::{Context, Result};
use ekyc_runtime::{ServiceKind, serve::shutdown_signal};

use crate::settings::Settings;
use tokio::net::TcpListener;

pub fn serve(settings: &Settings, only: Option<ServiceKind>) -> Result<()> {
    let kinds_for_name: Vec<ServiceKind> = only.map_or_else(|| ServiceKind::ALL.to_vec(), |k| vec![k]);
    ekyc_runtime::telemetry::init_for(&settings.log, &ekyc_runtime::telemetry::service_name(&kinds_for_name)).context("telemetry")?;
    // Every server below receives bodies, times calls and bounds connections as `[server]` says.
    ekyc_runtime::serve::install_limits(ekyc_runtime::serve::ServeLimits::from_settings(&settings.server));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let result = rt.block_on(async {
        if settings.server.metrics_port != 0 {
            let addr = std::net::SocketAddr::new(settings.server.host.parse().context("server.host")?, settings.server.metrics_port);
            // Latencies as Prometheus histograms (buckets in seconds), so alerts and dashboards
            // can take quantiles across replicas; the batch size in crops.
            let seconds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(addr)
                .set_buckets_for_metric(metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()), &seconds)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full("ekyc_facematch_batch_size".into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
                    )
                })
                .context("metrics buckets")?
                .install()
                .with_context(|| format!("starting the metrics listener on {addr}"))?;
            eprintln!("metrics on http://{addr}/metrics");
        }
        let kinds: Vec<ServiceKind> = only.map_or_else(|| ServiceKind::ALL.to_vec(), |k| vec![k]);
        let (orchestrator, demo_key) = if kinds.contains(&ServiceKind::Orchestrator) {
            let (engine, demo_key) = orchestrator_engine(settings, only.is_none())?;
            (Some(engine), demo_key)
        } else {
            (None, None)
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        let tls = settings.server.tls.load().context("server.tls")?;
        let mut health_port = match settings.server.health_addr()? {
            Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| format!("binding the health port to {addr}"))?),
            None => None,
        };
        for kind in kinds {
            let mut addr = settings.server.addr(kind)?;
            // The port that faces callers: the one service of this process, or the orchestrator.
            let public = only.is_some() || kind == ServiceKind::Orchestrator;
            if !public && tls.is_some() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let tcp = TcpListener::bind(addr).await.with_context(|| format!("binding {} to {addr}", kind.name()))?;
            let listener = if public {
                ekyc_runtime::serve::Listener::new(tcp, tls.clone(), health_port.take())
            } else {
                ekyc_runtime::serve::Listener::from(tcp)
            };
            let mut stop = stop_rx.clone();
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let orchestrator = orchestrator.clone();
            let (vision, mut facematch, mut liveness, max_message) =
                (settings.vision.clone(), settings.facematch.clone(), settings.liveness.clone(), settings.server.max_message_bytes);
            let mut document = settings.document.clone();
            // Workers left at 0: one per CPU this container may use (its cgroup quota), not
            // one per core of the node; every worker owns its model sessions and memory.
            let cpus = ekyc_runtime::cpu::available_cpus();
            for workers in [&mut facematch.workers, &mut liveness.workers, &mut document.workers] {
                if *workers == 0 {
                    *workers = cpus;
                }
            }
            tasks.spawn(async move {
                let r = match kind {
                    ServiceKind::Orchestrator => match orchestrator {
                        Some(engine) => {
                            ekyc_orchestrator::serve(engine, max_message, listener, shutdown).await.map_err(anyhow::Error::from)
                        }
                        None => Err(anyhow::anyhow!("the orchestrator engine was not built")),
                    },
                    ServiceKind::Liveness => {
                        ekyc_liveness::serve(vision, liveness, max_message, listener, shutdown).await.map_err(anyhow::Error::from)
                    }
                    ServiceKind::Document => {
                        ekyc_document::serve(vision, document, max_message, listener, shutdown).await.map_err(anyhow::Error::from)
                    }
                    ServiceKind::Facematch => {
                        ekyc_facematch::serve(vision, facematch, max_message, listener, shutdown).await.map_err(anyhow::Error::from)
                    }
                };
                r.with_context(|| kind.name())
            });
            eprintln!("{} listening on {addr}{}", kind.name(), if public && tls.is_some() { " (TLS)" } else { "" });
        }
        // The page and gRPC-Web, wherever the orchestrator runs.
        if let (Some(engine), true) = (&orchestrator, settings.web.enabled) {
            let addr = std::net::SocketAddr::new(settings.server.host.parse().context("server.host")?, settings.web.port);
            let tcp = TcpListener::bind(addr).await.with_context(|| format!("binding the web page to {addr}"))?;
            let mut stop = stop_rx.clone();
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let (engine, web, max_message) = (std::sync::Arc::clone(engine), settings.web.clone(), settings.server.max_message_bytes);
            tasks.spawn(async move { ekyc_web::serve(engine, web, demo_key, max_message, tcp, shutdown).await.context("web") });
            eprintln!("web page on http://{addr}/{}", if settings.web.demo { " (demo sessions ON)" } else { "" });
        }
        tokio::select! {
            () = shutdown_signal() => {}
            Some(done) = tasks.join_next() => { done.context("service task")??; }
        }
        let _ = stop_tx.send(true);
        while let Some(done) = tasks.join_next().await {
            done.context("service task")??;
        }
        Ok(())
    });
    // Send the last spans before the process ends.
    ekyc_runtime::telemetry::shutdown();
    result
}

/// The orchestrator's engine. All in one process: its backends are this process's own
/// services on their configured ports, whatever the `[orchestrator.backends]` endpoints say.
/// With `web.demo` on, also the demo key, whose hash joins the API keys.
fn orchestrator_engine(
    settings: &Settings,
    all_in_one: bool,
) -> Result<(std::sync::Arc<ekyc_orchestrator::Engine>, Option<ekyc_web::DemoKey>)> {
    let mut cfg = settings.orchestrator.clone();
    let mut demo_entry = None;
    let demo_key = if settings.web.enabled && settings.web.demo {
        let (key, entry) = ekyc_web::DemoKey::generate(&settings.web)?;
        demo_entry = Some(entry);
        tracing::warn!("web.demo is on: anyone who can reach the page can start verification sessions; never in production");
        eprintln!(
            "WARNING: web.demo is on: anyone who can reach the page can start sessions ({} a minute); never in production",
            settings.web.demo_sessions_per_minute
        );
        Some(key)
    } else {
        None
    };
    if all_in_one {
        let local = |kind: ServiceKind| -> Result<String> {
            let mut addr = settings.server.addr(kind)?;
            // With TLS on, `serve` binds the backends to loopback only.
            if addr.ip().is_unspecified() || settings.server.tls.enabled() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            Ok(format!("http://{addr}"))
        };
        cfg.backends.liveness.endpoint = local(ServiceKind::Liveness)?;
        cfg.backends.document.endpoint = local(ServiceKind::Document)?;
        cfg.backends.facematch.endpoint = local(ServiceKind::Facematch)?;
        // Loopback inside one process: plain gRPC.
        for b in [&mut cfg.backends.liveness, &mut cfg.backends.document, &mut cfg.backends.facematch] {
            b.tls = Default::default();
        }
    }
    let (mut keys, notes) = ekyc_orchestrator::Keys::resolve(&cfg)?;
    // After the configured keys are resolved, so that the development key is still made
    // when none is configured.
    keys.api_keys.extend(demo_entry);
    for n in notes.0 {
        eprintln!("orchestrator {n}");
    }
    let engine = ekyc_orchestrator::Engine::new(cfg, keys, settings.server.max_message_bytes)?;
    Ok((std::sync::Arc::new(engine), demo_key))
}
