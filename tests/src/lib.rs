//! Helpers for the end-to-end tests: start services in-process on `127.0.0.1:0` and connect
//! the real tonic clients to them, shutting them down when the handle drops.

use std::net::SocketAddr;

use ekyc_facematch::FacematchConfig;
use ekyc_runtime::ServiceKind;
use ekyc_vision::VisionConfig;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// A running service; dropping it shuts the server down.
#[derive(Debug)]
pub struct Running {
    pub kind: ServiceKind,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).expect("valid uri").connect().await.expect("connects over loopback")
    }

    /// Stops the server and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task ends cleanly");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Starts `kind` on a free loopback port.
pub async fn start(kind: ServiceKind) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds a free port");
    let addr = listener.local_addr().expect("bound address");
    let (stop, rx) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = rx.await;
    };
    let task = tokio::spawn(async move {
        let r = match kind {
            ServiceKind::Orchestrator => ekyc_orchestrator::serve(listener, shutdown).await.map_err(|e| e.to_string()),
            ServiceKind::Liveness => ekyc_liveness::serve(VisionConfig::default(), Default::default(), 32 << 20, listener, shutdown)
                .await
                .map_err(|e| e.to_string()),
            ServiceKind::Document => ekyc_document::serve(listener, shutdown).await.map_err(|e| e.to_string()),
            ServiceKind::Facematch => {
                ekyc_facematch::serve(VisionConfig::default(), FacematchConfig::default(), 32 << 20, listener, shutdown)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        r.expect("server runs");
    });
    Running { kind, addr, stop: Some(stop), task: Some(task) }
}
