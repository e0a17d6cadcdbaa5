//! Client-side balancing over every replica of a backend. A backend's endpoint names a host
//! (in Kubernetes a headless Service, whose DNS name resolves to the IPs of all its ready
//! pods); every `discovery_interval_ms` the name is resolved again and each address is asked
//! for the backend's gRPC health (`grpc.health.v1`, the service's own name). The addresses
//! that answer SERVING are the replicas of one balanced channel (tower's power-of-two-choices
//! on pending calls), so calls spread over all of them, a replica added by the autoscaler gets
//! calls after the next round, and one that dies, drains or stops answering health leaves
//! the channel within one round. When no address answers SERVING, every resolved address
//! stays in, so that calls fail with the backend's real error instead of waiting.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Turns a host and port into addresses: DNS by default ([`dns`]); tests give a fixed table.
pub type Resolver = Arc<dyn Fn(String, u16) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> + Send + Sync>;

/// The system resolver (`getaddrinfo`: /etc/hosts, then DNS).
pub fn dns() -> Resolver {
    Arc::new(|host, port| Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), port)).await?.collect()) }))
}

/// One backend's replicas: where to find them and how to connect to each.
pub struct Target {
    /// The backend's name, for logs.
    pub backend: &'static str,
    /// The gRPC service whose health decides whether a replica gets calls.
    pub health_name: &'static str,
    pub host: String,
    pub port: u16,
    /// An endpoint for one address (scheme, TLS with the backend's name, timeouts).
    pub endpoint: Arc<dyn Fn(SocketAddr) -> Endpoint + Send + Sync>,
    pub interval: Duration,
    /// Deadline of one health check.
    pub check_timeout: Duration,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("backend", &self.backend).field("host", &self.host).field("port", &self.port).finish()
    }
}

/// A channel balanced over the replicas of `target`, kept up to date by a background task
/// that ends when the channel's last clone is dropped. Needs a Tokio runtime.
pub fn balanced(target: Target, resolver: Resolver) -> Channel {
    let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
    tokio::spawn(watch(target, resolver, changes));
    channel
}

async fn watch(target: Target, resolver: Resolver, changes: tokio::sync::mpsc::Sender<Change<SocketAddr, Endpoint>>) {
    // Health-check clients, one per address seen, kept while the address resolves.
    let mut probes: BTreeMap<SocketAddr, HealthClient<Channel>> = BTreeMap::new();
    let mut current: BTreeSet<SocketAddr> = BTreeSet::new();
    let mut tick = tokio::time::interval(target.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if changes.is_closed() {
            return;
        }
        let resolved: BTreeSet<SocketAddr> = match resolver(target.host.clone(), target.port).await {
            Ok(addrs) => addrs.into_iter().collect(),
            Err(e) => {
                tracing::warn!(backend = target.backend, host = %target.host, error = %e, "resolving the backend failed; keeping its replicas");
                continue;
            }
        };
        probes.retain(|a, _| resolved.contains(a));
        for addr in &resolved {
            probes.entry(*addr).or_insert_with(|| HealthClient::new((target.endpoint)(*addr).connect_lazy()));
        }
        let checks = probes.iter().map(|(addr, client)| {
            let mut client = client.clone();
            let request = HealthCheckRequest { service: target.health_name.to_string() };
            async move {
                let answer = tokio::time::timeout(target.check_timeout, client.check(request)).await;
                let serving = matches!(answer, Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32);
                (*addr, serving)
            }
        });
        let healthy: BTreeSet<SocketAddr> =
            futures::future::join_all(checks).await.into_iter().filter_map(|(a, serving)| serving.then_some(a)).collect();
        let wanted = if healthy.is_empty() { resolved } else { healthy };
        for gone in current.difference(&wanted) {
            tracing::info!(backend = target.backend, addr = %gone, "replica leaves the balancer");
            if changes.send(Change::Remove(*gone)).await.is_err() {
                return;
            }
        }
        for new in wanted.difference(&current) {
            tracing::info!(backend = target.backend, addr = %new, "replica joins the balancer");
            if changes.send(Change::Insert(*new, (target.endpoint)(*new))).await.is_err() {
                return;
            }
        }
        metrics::gauge!("ekyc_backend_replicas", "backend" => target.backend).set(wanted.len() as f64);
        current = wanted;
    }
}
