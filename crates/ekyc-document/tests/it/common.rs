//! One engine for the whole test binary, the portrait sources, and a server on a free port.

use std::sync::{Arc, OnceLock};

use ekyc_document::{DocumentConfig, Engine};
use ekyc_proto::v1::document_client::DocumentClient;
use ekyc_vision::{FacePipeline, VisionConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

use crate::generated::{self, Source};

pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// The engine, loaded once (its worker threads do not belong to any test's runtime).
pub fn engine() -> Arc<Engine> {
    static E: OnceLock<Arc<Engine>> = OnceLock::new();
    Arc::clone(E.get_or_init(|| {
        Arc::new(Engine::start(&VisionConfig::default(), &DocumentConfig::default()).expect("engine starts (run scripts/setup.sh first)"))
    }))
}

/// The development photos usable as portraits, with their embeddings.
pub fn sources() -> Arc<Vec<Source>> {
    static S: OnceLock<Arc<Vec<Source>>> = OnceLock::new();
    Arc::clone(S.get_or_init(|| {
        let p = FacePipeline::new(VisionConfig::default()).expect("models load");
        let s = generated::sources(&p);
        assert!(s.len() >= 10, "too few portrait sources: {}", s.len());
        Arc::new(s)
    }))
}

pub struct Server {
    pub addr: std::net::SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Server {
    pub async fn start() -> Server {
        let engine = tokio::task::spawn_blocking(engine).await.expect("loader ran");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("free port");
        let addr = listener.local_addr().expect("address");
        let (stop, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            ekyc_document::serve_engine(engine, MAX_MESSAGE, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        Server { addr, _stop: stop }
    }

    pub async fn client(&self) -> DocumentClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr)).expect("uri").connect().await.expect("connects");
        DocumentClient::new(channel).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20)
    }
}
