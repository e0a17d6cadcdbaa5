//! `ekyc serve`: all four services in one process on their configured ports, or one.

use anyhow::{Context, Result};
use ekyc_runtime::{ServiceKind, serve::shutdown_signal};

use crate::settings::Settings;
use tokio::net::TcpListener;

pub fn serve(settings: &Settings, only: Option<ServiceKind>) -> Result<()> {
    ekyc_runtime::telemetry::init(&settings.log);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    rt.block_on(async {
        if settings.server.metrics_port != 0 {
            let addr = std::net::SocketAddr::new(settings.server.host.parse().context("server.host")?, settings.server.metrics_port);
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(addr)
                .install()
                .with_context(|| format!("starting the metrics listener on {addr}"))?;
            eprintln!("metrics on http://{addr}/metrics");
        }
        let kinds: Vec<ServiceKind> = only.map_or_else(|| ServiceKind::ALL.to_vec(), |k| vec![k]);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for kind in kinds {
            let addr = settings.server.addr(kind)?;
            let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {} to {addr}", kind.name()))?;
            let mut stop = stop_rx.clone();
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let (vision, facematch, liveness, max_message) =
                (settings.vision.clone(), settings.facematch.clone(), settings.liveness.clone(), settings.server.max_message_bytes);
            tasks.spawn(async move {
                let r = match kind {
                    ServiceKind::Orchestrator => ekyc_orchestrator::serve(listener, shutdown).await.map_err(anyhow::Error::from),
                    ServiceKind::Liveness => {
                        ekyc_liveness::serve(vision, liveness, max_message, listener, shutdown).await.map_err(anyhow::Error::from)
                    }
                    ServiceKind::Document => ekyc_document::serve(listener, shutdown).await.map_err(anyhow::Error::from),
                    ServiceKind::Facematch => {
                        ekyc_facematch::serve(vision, facematch, max_message, listener, shutdown).await.map_err(anyhow::Error::from)
                    }
                };
                r.with_context(|| kind.name())
            });
            eprintln!("{} listening on {addr}", kind.name());
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
    })
}
