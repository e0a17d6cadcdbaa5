//! `ekyc health`: asks each service of the configured addresses for its gRPC health under
//! its own name, optionally waiting until all are SERVING (models loaded and warm). For
//! scripts and smoke tests; Kubernetes uses its native gRPC probes.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ekyc_runtime::ServiceKind;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::settings::Settings;

async fn status(kind: ServiceKind, addr: std::net::SocketAddr) -> String {
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e.connect_timeout(Duration::from_secs(1)).timeout(Duration::from_secs(2)),
        Err(e) => return format!("bad address: {e}"),
    };
    match endpoint.connect().await {
        Err(e) => format!("unreachable ({e})"),
        Ok(ch) => match HealthClient::new(ch).check(HealthCheckRequest { service: kind.grpc_name().into() }).await {
            Ok(r) => r.into_inner().status().as_str_name().to_string(),
            Err(s) => format!("{:?}: {}", s.code(), s.message()),
        },
    }
}

pub fn health(settings: &Settings, wait_s: u64) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let until = Instant::now() + Duration::from_secs(wait_s);
        loop {
            let mut all = true;
            let mut lines = Vec::new();
            for kind in ServiceKind::ALL {
                let mut addr = settings.server.addr(kind)?;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                let s = status(kind, addr).await;
                all &= s == ServingStatus::Serving.as_str_name();
                lines.push(format!("{:<13} {addr:<22} {s}", kind.name()));
            }
            if all || Instant::now() >= until {
                for l in &lines {
                    println!("{l}");
                }
                if !all {
                    bail!("not every service is SERVING");
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}
