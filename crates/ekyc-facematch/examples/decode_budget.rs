//! Peak memory of a facematch server while 16 concurrent Embed calls each send a 40 MP PNG
//! (made in memory: half 16-bit RGB, half 8-bit RGBA), against the configured decode
//! budget. The server runs in this process, so this process's resident set is the
//! server's; it is sampled every 2 ms (and read from VmHWM after resetting it).
//!
//! `cargo run --release -p ekyc-facematch --example decode_budget [BUDGET_MIB] [WORKERS]`
//! (defaults: the shipped budget, 256 MiB, and 4 workers). Pass a huge budget (65536) to
//! see the memory without one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ekyc_facematch::{Engine, FacematchConfig};
use ekyc_proto::v1 as pb;
use ekyc_proto::v1::face_match_client::FaceMatchClient;
use ekyc_runtime::serve::ServeLimits;
use ekyc_vision::{DecodeBudget, VisionConfig};
use image::ImageEncoder;
use tonic::transport::Channel;

const W: u32 = 7296;
const H: u32 = 5472; // 39.9 MP, 4:3
const CALLS: usize = 16;

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A 40 MP PNG of flat tiles (compresses to a few hundred KB, as the 36 MP PNGs
/// did): 16-bit RGB or 8-bit RGBA with partial alpha.
fn png(sixteen: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let enc = image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::Sub,
    );
    if sixteen {
        let mut raw = Vec::with_capacity((W * H * 6) as usize);
        for y in 0..H {
            for x in 0..W {
                for v in [((x / 512) * 4096) as u16, ((y / 512) * 4096) as u16, 0x8000] {
                    raw.extend_from_slice(&v.to_be_bytes());
                }
            }
        }
        enc.write_image(&raw, W, H, image::ExtendedColorType::Rgb16).expect("encodes");
    } else {
        let mut raw = Vec::with_capacity((W * H * 4) as usize);
        for y in 0..H {
            for x in 0..W {
                raw.extend_from_slice(&[((x / 512) * 16) as u8, ((y / 512) * 16) as u8, 128, 200]);
            }
        }
        enc.write_image(&raw, W, H, image::ExtendedColorType::Rgba8).expect("encodes");
    }
    out
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let budget_mib: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(VisionConfig::default().decode_budget_bytes >> 20);
    let workers: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(4);
    let vision = VisionConfig { decode_budget_bytes: budget_mib << 20, decode_wait_ms: 60_000, ..Default::default() };
    let cfg = FacematchConfig { workers, max_in_flight: CALLS, worker_queue: CALLS, ..Default::default() };
    let images = [png(true), png(false)];
    println!(
        "{CALLS} concurrent Embed calls of {W}x{H} PNGs ({} KB 16-bit RGB, {} KB 8-bit RGBA); {workers} workers; decode budget {budget_mib} MiB",
        images[0].len() / 1024,
        images[1].len() / 1024
    );
    let engine = Arc::new(Engine::start(&vision, &cfg).expect("engine starts (scripts/setup.sh)"));
    let budget = DecodeBudget::process(vision.decode_budget_bytes, Duration::from_millis(vision.decode_wait_ms));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(ekyc_facematch::serve_engine_with(Arc::clone(&engine), ServeLimits::default(), listener, std::future::pending()));
    let channel = Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connects");

    // Baseline after the models are loaded and the images made; reset the high-water mark.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let base = status_kib("VmRSS:");
    let peak = Arc::new(AtomicU64::new(base));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(status_kib("VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let started = Instant::now();
    let mut calls = Vec::new();
    for i in 0..CALLS {
        let mut client = FaceMatchClient::new(channel.clone()).max_encoding_message_size(64 << 20);
        let data = images[i % 2].clone();
        calls.push(tokio::spawn(async move {
            client.embed(pb::EmbedRequest { images: vec![pb::Image { data, content_type: None }], ..Default::default() }).await
        }));
    }
    let (mut ok, mut errors) = (0, Vec::new());
    for c in calls {
        match c.await.expect("task") {
            Ok(_) => ok += 1,
            Err(s) => errors.push(format!("{:?}: {}", s.code(), s.message())),
        }
    }
    let wall = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let hwm = status_kib("VmHWM:");
    let sampled = peak.load(Ordering::Relaxed);
    let stats = budget.stats();
    println!("calls ok {ok}, failed {} {:?}; {:.1} s", errors.len(), errors, wall.as_secs_f64());
    println!(
        "RSS before {} MB; peak sampled {} MB (+{} MB); VmHWM {} MB (+{} MB); budget {} MB, most reserved at once {} MB; decodes that waited {}, refused {}",
        base / 1024,
        sampled / 1024,
        sampled.saturating_sub(base) / 1024,
        hwm / 1024,
        hwm.saturating_sub(base) / 1024,
        stats.capacity >> 20,
        stats.peak >> 20,
        stats.waited,
        stats.refused
    );
}
