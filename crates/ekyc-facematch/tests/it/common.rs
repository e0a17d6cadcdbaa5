//! Start an engine and a server on a free port; talk to it with the generated client.

use std::sync::{Arc, OnceLock};

use ekyc_facematch::{Engine, FacematchConfig};
use ekyc_proto::v1 as pb;
use ekyc_proto::v1::face_match_client::FaceMatchClient;
use ekyc_testkit::dataset::photo;
use ekyc_vision::{AnalyzeOptions, FacePipeline, VisionConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub const MAX_MESSAGE: usize = 8 * 1024 * 1024;

pub struct Server {
    pub engine: Arc<Engine>,
    pub addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Server {
    pub async fn start(cfg: FacematchConfig) -> Server {
        let mut limits = ekyc_runtime::serve::ServeLimits::default();
        limits.receive.max_message_bytes = MAX_MESSAGE;
        Self::start_with(cfg, limits).await
    }

    /// A server under explicit limits (receive deadline, ...).
    pub async fn start_with(cfg: FacematchConfig, limits: ekyc_runtime::serve::ServeLimits) -> Server {
        let engine = tokio::task::spawn_blocking(move || Engine::start(&VisionConfig::default(), &cfg))
            .await
            .expect("loader ran")
            .expect("engine starts (run scripts/setup.sh first)");
        let engine = Arc::new(engine);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("free port");
        let addr = listener.local_addr().expect("address");
        let (stop, rx) = oneshot::channel::<()>();
        let e = Arc::clone(&engine);
        tokio::spawn(async move {
            ekyc_facematch::serve_engine_with(e, limits, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        Server { engine, addr, stop: Some(stop) }
    }

    /// A new connection to the server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).expect("uri").connect().await.expect("connects")
    }

    pub async fn client(&self) -> FaceMatchClient<Channel> {
        let channel = self.channel().await;
        FaceMatchClient::new(channel).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20)
    }
}

pub fn image(file: &str) -> pb::Image {
    pb::Image { data: photo(file).bytes(), content_type: None }
}

pub fn embed_request(files: &[&str]) -> pb::EmbedRequest {
    pb::EmbedRequest { images: files.iter().map(|f| image(f)).collect(), ..Default::default() }
}

/// The library's own answer, for comparison with what comes over gRPC: the pipeline as
/// facematch configures it for matching (`landmarks.match_passes`).
pub fn library() -> &'static FacePipeline {
    static P: OnceLock<FacePipeline> = OnceLock::new();
    P.get_or_init(|| FacePipeline::new(VisionConfig::default().for_matching()).expect("models load"))
}

pub fn library_embedding(file: &str) -> Vec<f32> {
    library()
        .analyze_bytes(&photo(file).bytes(), AnalyzeOptions { embed: true, largest_only: true })
        .expect("analyses")
        .into_iter()
        .next()
        .and_then(|f| f.embedding)
        .expect("a face")
}

pub fn first_embedding(r: &pb::EmbedResponse, image: usize) -> Vec<f32> {
    r.results[image].faces[0].face.as_ref().and_then(|f| f.embedding.as_ref()).map(|e| e.values.clone()).expect("an embedding")
}

/// The process-wide Prometheus recorder, installed once for this test binary.
pub fn metrics() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static H: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    H.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().expect("the only recorder of this test binary")
    })
}
