//! Latency of normal Embed calls with and without 50 connections that trickle request
//! bodies (an empty 5-byte message frame every 400 ms, never ending) at the same facematch
//! server. Each trickler is answered DEADLINE_EXCEEDED (REQUEST_TIMEOUT) at the receive
//! deadline and starts again at once, so the pressure lasts the whole run.
//!
//! `cargo run --release -p ekyc-facematch --example slow_clients [CALLS] [PHOTO]`
//! (default 60 calls of `obama_2.jpg` from the test photos, two callers at a time).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ekyc_facematch::{Engine, FacematchConfig};
use ekyc_proto::v1 as pb;
use ekyc_proto::v1::face_match_client::FaceMatchClient;
use ekyc_runtime::serve::ServeLimits;
use ekyc_vision::VisionConfig;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

const TRICKLERS: usize = 50;
const CALLERS: usize = 2;

async fn connect(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connects")
}

/// One never-ending upload; returns the status it was answered with.
async fn trickle(channel: Channel) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Err(e) = grpc.ready().await {
        return tonic::Status::unavailable(e.to_string());
    }
    let body = futures::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        Some((pb::EmbedRequest::default(), ()))
    });
    let path = PathAndQuery::from_static("/ekyc.v1.FaceMatch/Embed");
    let codec = tonic_prost::ProstCodec::<pb::EmbedRequest, pb::EmbedResponse>::default();
    match grpc.client_streaming(tonic::Request::new(body), path, codec).await {
        Ok(_) => tonic::Status::ok(""),
        Err(s) => s,
    }
}

/// `calls` Embed calls from `CALLERS` concurrent callers; latencies in ms and error codes.
async fn normal_calls(addr: std::net::SocketAddr, image: &[u8], calls: usize) -> (Vec<f64>, Vec<tonic::Code>) {
    let mut tasks = Vec::new();
    for c in 0..CALLERS {
        let mut client = FaceMatchClient::new(connect(addr).await).max_encoding_message_size(64 << 20);
        let image = image.to_vec();
        let n = calls / CALLERS + usize::from(c < calls % CALLERS);
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errs) = (Vec::new(), Vec::new());
            for _ in 0..n {
                let req = pb::EmbedRequest { images: vec![pb::Image { data: image.clone(), content_type: None }], ..Default::default() };
                let started = Instant::now();
                match client.embed(req).await {
                    Ok(_) => lat.push(started.elapsed().as_secs_f64() * 1000.0),
                    Err(s) => errs.push(s.code()),
                }
            }
            (lat, errs)
        }));
    }
    let (mut lat, mut errs) = (Vec::new(), Vec::new());
    for t in tasks {
        let (l, e) = t.await.expect("caller");
        lat.extend(l);
        errs.extend(e);
    }
    (lat, errs)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut lat: Vec<f64>, errs: &[tonic::Code]) -> f64 {
    lat.sort_by(f64::total_cmp);
    let p99 = pct(&lat, 0.99);
    println!(
        "{name:<22} ok {:>3}  errors {:>2} {:?}  p50 {:>7.1} ms  p90 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
        lat.len(),
        errs.len(),
        errs,
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        p99,
        lat.last().copied().unwrap_or(f64::NAN)
    );
    p99
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let calls: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(60);
    let photo = args.get(2).cloned().unwrap_or_else(|| "obama_2.jpg".into());
    let image = ekyc_testkit::dataset::photo(&photo).bytes();
    let cfg = FacematchConfig::default();
    println!(
        "facematch: {} workers, max_in_flight {}; {} cores; {TRICKLERS} tricklers; {calls} normal calls, {CALLERS} at a time",
        cfg.worker_threads(),
        cfg.max_in_flight,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let engine = Arc::new(Engine::start(&VisionConfig::default(), &cfg).expect("engine starts (scripts/setup.sh)"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let addr = listener.local_addr().expect("addr");
    let mut limits = ServeLimits::default();
    limits.receive.timeout = Duration::from_secs(2);
    println!("receive deadline {} ms", limits.receive.timeout.as_millis());
    tokio::spawn(ekyc_facematch::serve_engine_with(engine, limits, listener, std::future::pending()));

    // Warm the connection path, then measure alone.
    let _ = normal_calls(addr, &image, 4).await;
    let (lat, errs) = normal_calls(addr, &image, calls).await;
    let alone = report("without tricklers", lat, &errs);

    let stop = Arc::new(AtomicBool::new(false));
    let timeouts = Arc::new(AtomicU64::new(0));
    let others = Arc::new(AtomicU64::new(0));
    let mut tricklers = Vec::new();
    for _ in 0..TRICKLERS {
        let channel = connect(addr).await;
        let (stop, timeouts, others) = (Arc::clone(&stop), Arc::clone(&timeouts), Arc::clone(&others));
        tricklers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let s = trickle(channel.clone()).await;
                if s.code() == tonic::Code::DeadlineExceeded && s.message().starts_with("REQUEST_TIMEOUT") {
                    timeouts.fetch_add(1, Ordering::Relaxed);
                } else {
                    others.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (lat, errs) = normal_calls(addr, &image, calls).await;
    let with = report("with 50 tricklers", lat, &errs);
    stop.store(true, Ordering::Relaxed);
    for t in tricklers {
        t.abort();
    }
    println!(
        "tricklers answered REQUEST_TIMEOUT: {}, otherwise: {}; p99 ratio with/without: {:.2}",
        timeouts.load(Ordering::Relaxed),
        others.load(Ordering::Relaxed),
        with / alone
    );
}
