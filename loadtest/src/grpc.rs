//! Driving `ekyc.v1.FaceMatch/Embed` over gRPC: the connections, the prebuilt request
//! bodies, and the open and closed loops.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ekyc_proto::v1::face_match_client::FaceMatchClient;
use ekyc_proto::v1::{EmbedRequest, EmbedResponse, Image};
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::schedule::{self, Window};
use crate::stats::{Failure, Latency, Outcome, Recorder, Success, TimelineRow};

/// gRPC message size limit on both sides of the client.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// What to send and where.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub server: String,
    pub images: Vec<PathBuf>,
    pub images_per_request: usize,
    pub connections: usize,
    pub timeout: Duration,
    pub largest_face_only: bool,
    pub skip_embeddings: bool,
}

/// Open connections and prebuilt request bodies, shared by every request task.
#[derive(Debug)]
pub struct Target {
    clients: Vec<FaceMatchClient<Channel>>,
    bodies: Vec<EmbedRequest>,
    images_per_request: usize,
    timeout: Duration,
    /// Round-robin counter of the closed loop (the open loop uses the request index).
    next: AtomicU64,
    pub server: String,
}

/// `host:port` without a scheme means plain-text HTTP/2.
pub fn normalise_server(server: &str) -> String {
    if server.contains("://") { server.to_string() } else { format!("http://{server}") }
}

/// The MIME type hint for a file name, when its extension names a format the API knows.
pub fn content_type(path: &Path) -> Option<String> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    let mime = match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        _ => return None,
    };
    Some(mime.to_string())
}

impl Target {
    /// Reads the images once, builds the request bodies, and opens `connections` separate
    /// HTTP/2 connections (each `Endpoint::connect` is its own connection).
    pub async fn connect(spec: &TargetSpec, buffer: usize) -> anyhow::Result<Self> {
        if spec.images.is_empty() {
            bail!("no images given (--images FILE...)");
        }
        if spec.images_per_request == 0 || spec.connections == 0 {
            bail!("--images-per-request and --connections must be at least 1");
        }
        let mut images = Vec::with_capacity(spec.images.len());
        for path in &spec.images {
            let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            if data.is_empty() {
                bail!("{} is empty", path.display());
            }
            images.push(Image { data, content_type: content_type(path) });
        }
        let bodies = schedule::request_bodies(images.len(), spec.images_per_request)
            .into_iter()
            .map(|idx| EmbedRequest {
                images: idx.into_iter().map(|i| images[i].clone()).collect(),
                largest_face_only: spec.largest_face_only,
                min_face_size_px: 0,
                skip_embeddings: spec.skip_embeddings,
            })
            .collect();
        let server = normalise_server(&spec.server);
        let endpoint = Endpoint::from_shared(server.clone())
            .with_context(|| format!("invalid --server {server:?}"))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            // Requests wait in tonic's buffer when the connection is not ready; the wait is
            // part of the measured latency, so the buffer only needs to be big enough never
            // to push back on the generator itself.
            .buffer_size(buffer.max(1024));
        let mut clients = Vec::with_capacity(spec.connections);
        for i in 0..spec.connections {
            let channel = endpoint.connect().await.with_context(|| format!("connecting to {server} (connection {})", i + 1))?;
            clients.push(
                FaceMatchClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES),
            );
        }
        Ok(Self { clients, bodies, images_per_request: spec.images_per_request, timeout: spec.timeout, next: AtomicU64::new(0), server })
    }

    /// The client and body of request `k`: both round-robin.
    fn request(&self, k: u64) -> (FaceMatchClient<Channel>, EmbedRequest) {
        let client = self.clients[(k % self.clients.len() as u64) as usize].clone();
        let body = self.bodies[(k % self.bodies.len() as u64) as usize].clone();
        (client, body)
    }

    /// Sends request `k` and waits for its answer or the deadline.
    async fn send(&self, k: u64) -> Result<Success, Failure> {
        let (mut client, body) = self.request(k);
        let mut request = tonic::Request::new(body);
        // grpc-timeout tells the server when the caller gives up, so it can drop the work.
        request.set_timeout(self.timeout);
        match tokio::time::timeout(self.timeout, client.embed(request)).await {
            Err(_) => Err(Failure::deadline(self.timeout)),
            Ok(Err(status)) => Err(Failure::from_status(&status)),
            Ok(Ok(response)) => check_response(&response.into_inner(), self.images_per_request),
        }
    }
}

/// A response must carry one result per request image, in order.
pub fn check_response(r: &EmbedResponse, images: usize) -> Result<Success, Failure> {
    if r.results.len() != images {
        return Err(Failure::invalid_response(format!("{} results for {images} images", r.results.len())));
    }
    if let Some((i, res)) = r.results.iter().enumerate().find(|(i, res)| res.image_index as usize != *i) {
        return Err(Failure::invalid_response(format!("results[{i}] has image_index {}", res.image_index)));
    }
    let without = r.results.iter().filter(|res| !res.faces.iter().any(|f| f.usable)).count();
    Ok(Success { images_without_face: without as u32 })
}

/// Everything measured in one run of the open or closed loop.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub mode: &'static str,
    pub server: String,
    /// Open loop: the offered rate in requests/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offered_rps: Option<f64>,
    /// Closed loop: the number of workers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub connections: usize,
    pub images_per_request: usize,
    pub image_files: usize,
    pub timeout_s: f64,
    /// Requests due (open loop) or sent (closed loop) inside the measured window.
    pub sent: u64,
    pub successes: u64,
    pub errors_total: u64,
    /// Errors by gRPC status code name (plus DEADLINE_EXCEEDED for the client's own
    /// deadline and INVALID_RESPONSE for a malformed answer).
    pub errors: std::collections::BTreeMap<&'static str, u64>,
    /// The first message seen for each error kind.
    pub error_examples: std::collections::BTreeMap<&'static str, String>,
    /// Successful responses that arrived inside the measured window, per second.
    pub achieved_rps: f64,
    /// Successful images per second (achieved_rps × images per request).
    pub achieved_images_per_s: f64,
    /// Latency of successful requests (open loop: from the scheduled send time).
    pub latency_ok: Option<Latency>,
    /// Latency of every request, errors included.
    pub latency_all: Option<Latency>,
    /// Open loop: sends that started more than 1 ms after their scheduled time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_slips: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_slip_ms: Option<f64>,
    /// Open loop: the in-flight cap and how often the generator had to wait for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight_cap_waits: Option<u64>,
    /// Images whose result had no usable face (no embedding computed: cheaper than real).
    pub images_without_face: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<TimelineRow>>,
}

/// Timing of a run.
#[derive(Debug, Clone, Copy)]
pub struct RunTiming {
    pub warmup: Duration,
    pub duration: Duration,
    pub timeline: bool,
}

fn summarise(mode: &'static str, target: &Target, spec: &TargetSpec, timing: RunTiming, rec: &Recorder) -> RunSummary {
    let achieved = rec.achieved_rps();
    RunSummary {
        mode,
        server: target.server.clone(),
        offered_rps: None,
        concurrency: None,
        warmup_s: timing.warmup.as_secs_f64(),
        duration_s: timing.duration.as_secs_f64(),
        connections: spec.connections,
        images_per_request: spec.images_per_request,
        image_files: spec.images.len(),
        timeout_s: spec.timeout.as_secs_f64(),
        sent: rec.sent,
        successes: rec.successes,
        errors_total: rec.errors.total(),
        errors: rec.errors.counts.clone(),
        error_examples: rec.errors.examples.clone(),
        achieved_rps: achieved,
        achieved_images_per_s: achieved * spec.images_per_request as f64,
        latency_ok: Latency::of(&rec.ok),
        latency_all: Latency::of(&rec.all),
        schedule_slips: None,
        max_slip_ms: None,
        max_in_flight: None,
        in_flight_cap_waits: None,
        images_without_face: rec.images_without_face,
        timeline: rec.timeline(),
    }
}

fn lock(rec: &Mutex<Recorder>) -> std::sync::MutexGuard<'_, Recorder> {
    rec.lock().expect("the recorder mutex is only poisoned if recording panicked, which is a bug")
}

/// Open loop: request `k` is due at `start + k / rate`; at that moment it is handed to its
/// own task, whatever earlier requests are doing, and its latency runs from the due time
/// ([`crate::dispatch::open_loop`]).
pub async fn run_open(
    target: Arc<Target>,
    spec: &TargetSpec,
    rate: f64,
    max_in_flight: usize,
    timing: RunTiming,
) -> anyhow::Result<RunSummary> {
    let max_in_flight = max_in_flight.clamp(1, u32::MAX as usize);
    let window = Window::new(timing.warmup, timing.duration);
    let rec = Arc::new(Mutex::new(Recorder::new(window, timing.timeline)));
    let cap_waits = {
        let (target, rec) = (Arc::clone(&target), Arc::clone(&rec));
        crate::dispatch::open_loop(rate, window, max_in_flight, move |due| {
            let (target, rec) = (Arc::clone(&target), Arc::clone(&rec));
            async move {
                let result = target.send(due.k).await;
                let done_at = due.start.elapsed();
                lock(&rec).add(&Outcome { sent_at: due.offset, done_at, late_by: due.late_by, result });
            }
        })
        .await?
    };
    let rec = lock(&rec);
    let mut s = summarise("open", &target, spec, timing, &rec);
    s.offered_rps = Some(rate);
    s.schedule_slips = Some(rec.slips);
    s.max_slip_ms = Some(rec.max_slip.as_micros() as f64 / 1e3);
    s.max_in_flight = Some(max_in_flight);
    s.in_flight_cap_waits = Some(cap_waits);
    Ok(s)
}

/// Closed loop: `concurrency` workers, each sending its next request as soon as the last
/// one is answered, until the end of the window.
pub async fn run_closed(target: Arc<Target>, spec: &TargetSpec, concurrency: usize, timing: RunTiming) -> anyhow::Result<RunSummary> {
    if concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let window = Window::new(timing.warmup, timing.duration);
    let rec = Arc::new(Mutex::new(Recorder::new(window, timing.timeline)));
    let start = Instant::now();
    let end = start + window.end;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (target, rec) = (Arc::clone(&target), Arc::clone(&rec));
        workers.spawn(async move {
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let k = target.next.fetch_add(1, Ordering::Relaxed);
                let result = target.send(k).await;
                let done_at = start.elapsed();
                lock(&rec).add(&Outcome { sent_at: sent.saturating_duration_since(start), done_at, late_by: Duration::ZERO, result });
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined.context("a closed-loop worker panicked")?;
    }
    let rec = lock(&rec);
    let mut s = summarise("closed", &target, spec, timing, &rec);
    s.concurrency = Some(concurrency);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekyc_proto::v1::{DetectedFace, ImageFaces};

    fn faces(index: u32, usable: &[bool]) -> ImageFaces {
        ImageFaces {
            image_index: index,
            faces: usable.iter().map(|&u| DetectedFace { usable: u, ..Default::default() }).collect(),
            ..Default::default()
        }
    }

    /// A stand-in FaceMatch server on loopback whose behaviour depends on the first byte of
    /// the first image: `A` answers at once, `B` is refused with RESOURCE_EXHAUSTED, `C`
    /// answers after 300 ms.
    struct Fake;

    #[tonic::async_trait]
    impl ekyc_proto::v1::face_match_server::FaceMatch for Fake {
        async fn embed(&self, request: tonic::Request<EmbedRequest>) -> Result<tonic::Response<EmbedResponse>, tonic::Status> {
            let r = request.into_inner();
            let answer =
                || EmbedResponse { results: (0..r.images.len() as u32).map(|i| faces(i, &[true])).collect(), ..Default::default() };
            match r.images.first().and_then(|i| i.data.first()) {
                Some(b'A') => Ok(tonic::Response::new(answer())),
                Some(b'B') => Err(tonic::Status::resource_exhausted("inference queue full")),
                Some(b'C') => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok(tonic::Response::new(answer()))
                }
                _ => Err(tonic::Status::invalid_argument("IMAGE_CORRUPT: images[0]")),
            }
        }

        async fn compare(
            &self,
            _: tonic::Request<ekyc_proto::v1::CompareRequest>,
        ) -> Result<tonic::Response<ekyc_proto::v1::CompareResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("not in the fake"))
        }
    }

    /// Serves [`Fake`] on an ephemeral port; the server stops when the sender is dropped.
    async fn fake_server() -> (String, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding an ephemeral loopback port");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ekyc_proto::v1::face_match_server::FaceMatchServer::new(Fake))
                .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), async {
                    let _ = rx.await;
                }),
        );
        (format!("127.0.0.1:{}", addr.port()), tx)
    }

    /// Image files whose first bytes select the fake's behaviour.
    fn image_files(test: &str, tags: &[u8]) -> Vec<PathBuf> {
        let dir = std::env::temp_dir().join(format!("ekyc-loadtest-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating a temporary folder");
        tags.iter()
            .map(|&t| {
                let p = dir.join(format!("{}.jpg", t as char));
                std::fs::write(&p, [t, 0xff, 0xd8]).expect("writing a temporary image file");
                p
            })
            .collect()
    }

    fn spec(server: String, images: Vec<PathBuf>, timeout: Duration) -> TargetSpec {
        TargetSpec { server, images, images_per_request: 1, connections: 2, timeout, largest_face_only: false, skip_embeddings: false }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_counts_every_scheduled_request_and_errors_by_code() {
        let (server, _stop) = fake_server().await;
        let spec = spec(server, image_files("open", b"AB"), Duration::from_secs(5));
        let target = Arc::new(Target::connect(&spec, 100).await.expect("connecting to the fake"));
        let timing = RunTiming { warmup: Duration::from_millis(200), duration: Duration::from_secs(1), timeline: true };
        let s = run_open(target, &spec, 100.0, 1000, timing).await.expect("an open-loop run");
        // 100 req/s for 1 s after the warm-up: exactly 100 requests are measured, and the
        // round-robin over A and B makes half of them fail.
        assert_eq!(s.sent, 100);
        assert_eq!(s.successes, 50);
        assert_eq!(s.errors.get("RESOURCE_EXHAUSTED"), Some(&50));
        assert_eq!(s.errors_total, 50);
        assert_eq!(s.error_examples.get("RESOURCE_EXHAUSTED").map(String::as_str), Some("inference queue full"));
        assert_eq!(s.latency_ok.expect("successes have latencies").count, 50);
        assert_eq!(s.latency_all.expect("every request has a latency").count, 100);
        assert!((40.0..=60.0).contains(&s.achieved_rps), "achieved {} responses/s", s.achieved_rps);
        assert_eq!(s.offered_rps, Some(100.0));
        let t = s.timeline.expect("timeline asked for");
        assert_eq!(t.iter().map(|r| r.sent).sum::<u64>(), 120, "warm-up and measured requests are all in the timeline");
        assert!(t[0].warmup && !t[1].warmup);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_does_not_wait_for_slow_responses() {
        // Every answer takes 300 ms. At 40 req/s for 0.5 s the open loop still sends all 20
        // requests on schedule (a closed loop with one worker would send two), and each
        // latency is at least the server's 300 ms.
        let (server, _stop) = fake_server().await;
        let spec = spec(server, image_files("slow", b"C"), Duration::from_secs(5));
        let target = Arc::new(Target::connect(&spec, 100).await.expect("connecting to the fake"));
        let timing = RunTiming { warmup: Duration::ZERO, duration: Duration::from_millis(500), timeline: false };
        let began = std::time::Instant::now();
        let s = run_open(target, &spec, 40.0, 1000, timing).await.expect("an open-loop run");
        assert_eq!((s.sent, s.successes, s.errors_total), (20, 20, 0));
        let l = s.latency_ok.expect("20 successes");
        assert!(l.p50_ms >= 299.0 && l.max_ms >= 299.0, "latencies {l:?}");
        assert!(began.elapsed() < Duration::from_secs(3), "the run took {:?}", began.elapsed());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_loop_counts_deadlines() {
        // A answers at once, C after 300 ms, past the 100 ms deadline.
        let (server, _stop) = fake_server().await;
        let spec = spec(server, image_files("closed", b"AC"), Duration::from_millis(100));
        let target = Arc::new(Target::connect(&spec, 2).await.expect("connecting to the fake"));
        let timing = RunTiming { warmup: Duration::ZERO, duration: Duration::from_millis(800), timeline: false };
        let s = run_closed(target, &spec, 2, timing).await.expect("a closed-loop run");
        assert_eq!(s.concurrency, Some(2));
        assert_eq!(s.errors.keys().copied().collect::<Vec<_>>(), ["DEADLINE_EXCEEDED"]);
        let deadlines = s.errors["DEADLINE_EXCEEDED"];
        assert!(deadlines >= 4, "two workers, 100 ms per deadline, 800 ms: {deadlines}");
        assert!(s.successes.abs_diff(deadlines) <= 2, "round-robin alternates A and C: {} ok, {deadlines} deadlines", s.successes);
        let all = s.latency_all.expect("requests were sent");
        assert!(all.max_ms >= 99.0 && all.max_ms < 1000.0, "a deadline ends the wait: {all:?}");
    }

    #[tokio::test]
    async fn connecting_to_nothing_fails_early() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port");
        let port = listener.local_addr().expect("a bound listener has an address").port();
        drop(listener);
        let spec = spec(format!("127.0.0.1:{port}"), image_files("refused", b"A"), Duration::from_secs(1));
        let err = Target::connect(&spec, 1).await.expect_err("nothing listens on the port");
        assert!(format!("{err:#}").contains("connecting to"), "{err:#}");
    }

    #[test]
    fn servers_without_scheme_are_plain_http() {
        assert_eq!(normalise_server("127.0.0.1:50054"), "http://127.0.0.1:50054");
        assert_eq!(normalise_server("http://10.0.0.5:50054"), "http://10.0.0.5:50054");
        assert_eq!(normalise_server("https://facematch.example:443"), "https://facematch.example:443");
    }

    #[test]
    fn content_type_from_extension() {
        assert_eq!(content_type(Path::new("a/obama_1.jpg")).as_deref(), Some("image/jpeg"));
        assert_eq!(content_type(Path::new("b.JPEG")).as_deref(), Some("image/jpeg"));
        assert_eq!(content_type(Path::new("c.png")).as_deref(), Some("image/png"));
        assert_eq!(content_type(Path::new("d.webp")).as_deref(), Some("image/webp"));
        assert_eq!(content_type(Path::new("e.gif")), None);
        assert_eq!(content_type(Path::new("noext")), None);
    }

    #[test]
    fn responses_need_one_result_per_image_in_order() {
        let good = EmbedResponse { results: vec![faces(0, &[true]), faces(1, &[false, true])], ..Default::default() };
        assert_eq!(check_response(&good, 2), Ok(Success { images_without_face: 0 }));
        let short = EmbedResponse { results: vec![faces(0, &[true])], ..Default::default() };
        assert_eq!(check_response(&short, 2).map_err(|f| f.kind), Err("INVALID_RESPONSE"));
        let swapped = EmbedResponse { results: vec![faces(1, &[true]), faces(0, &[true])], ..Default::default() };
        assert_eq!(check_response(&swapped, 2).map_err(|f| f.kind), Err("INVALID_RESPONSE"));
        let faceless = EmbedResponse { results: vec![faces(0, &[]), faces(1, &[false])], ..Default::default() };
        assert_eq!(check_response(&faceless, 2), Ok(Success { images_without_face: 2 }));
    }
}
