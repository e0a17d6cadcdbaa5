//! Prints the per-frame PAD cues of every single-image row of a labelled set (the CSV that
//! `ekyc-pad-set` writes), to see how each cue separates bona fide images from attacks, and
//! the time the cues take per frame.
//!
//! ```text
//! cargo run --release -p ekyc-liveness --example pad_cues -- SET/labels.csv
//! ```

use ekyc_liveness::pad::frame_cues;
use ekyc_vision::{AnalyzeOptions, FacePipeline, VisionConfig};

fn main() {
    let csv = std::path::PathBuf::from(std::env::args().nth(1).expect("labels.csv"));
    let dir = csv.parent().expect("folder").to_path_buf();
    let vision = VisionConfig { intra_threads: 1, ..VisionConfig::default() };
    let p = FacePipeline::new(vision.clone()).expect("models");
    let anti = FacePipeline::open_anti_spoof(&vision).expect("pad models");
    let text = std::fs::read_to_string(&csv).expect("csv");
    println!("species,method,path,real,periodic,chroma,luma,cb,cr");
    let mut times: Vec<f64> = Vec::new();
    for line in text.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        if c.len() < 5 || !c[4].is_empty() {
            continue;
        }
        let Ok(bytes) = std::fs::read(dir.join(c[0])) else { continue };
        let Ok(img) = p.decode(&bytes) else { continue };
        let Some(face) = p.analyze(&img, AnalyzeOptions { embed: false, largest_only: true }).ok().and_then(|f| f.into_iter().next())
        else {
            println!("{},{},{},noface,,", c[2], c[3], c[0]);
            continue;
        };
        let started = std::time::Instant::now();
        let cues = frame_cues(&img, &face, Some(&anti)).expect("cues");
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        use ekyc_liveness::pad::{Channel, channel_periodicity};
        let per = [Channel::Luma, Channel::Cb, Channel::Cr].map(|ch| channel_periodicity(&img, &face, ch));
        println!(
            "{},{},{},{:.3},{:.3},{:.1},{:.3},{:.3},{:.3}",
            c[2], c[3], c[0], cues.real, cues.periodic, cues.chroma, per[0], per[1], per[2]
        );
    }
    times.sort_by(f64::total_cmp);
    if let (Some(median), Some(p90)) = (times.get(times.len() / 2), times.get(times.len() * 9 / 10)) {
        eprintln!(
            "PAD cues per frame (both models, three spectra, colour, shading; one thread): median {median:.1} ms, p90 {p90:.1} ms over {} frames",
            times.len()
        );
    }
}
