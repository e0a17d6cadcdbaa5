//! Renders a photo's face turned by a few angles, writes the frames as JPEGs for a look,
//! and prints how long each render took (the fastest of five) and what the pipeline measures on it:
//! `cargo run --release -p ekyc-testkit --example turn_photo -- PHOTO OUT_DIR`.

use std::time::Instant;

use ekyc_testkit::headturn::{TurnableFace, encode_jpeg};
use ekyc_vision::{AnalyzeOptions, FacePipeline, VisionConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [photo, out_dir] = args.as_slice() else {
        return Err("usage: turn_photo PHOTO OUT_DIR".into());
    };
    let pipeline = FacePipeline::new(VisionConfig::default())?;
    let face = TurnableFace::from_bytes(&pipeline, &std::fs::read(photo)?)?;
    println!("{photo}: {}x{}, pose {:?}", face.image.width(), face.image.height(), face.pose);
    std::fs::create_dir_all(out_dir)?;
    for (d_yaw, d_pitch) in
        [(-25.0f32, 0.0f32), (-10.0, 0.0), (0.0, 0.0), (10.0, 0.0), (25.0, 0.0), (0.0, 20.0), (0.0, -20.0), (15.0, 10.0)]
    {
        // The fastest of five renders: the machine may be busy with other work.
        let mut ms = f64::MAX;
        let mut frame = face.image.clone();
        for _ in 0..5 {
            let start = Instant::now();
            frame = face.turned(d_yaw, d_pitch);
            ms = ms.min(start.elapsed().as_secs_f64() * 1e3);
        }
        let measured = pipeline.analyze(&frame, AnalyzeOptions { embed: false, largest_only: true })?;
        let name = format!("{out_dir}/turn_{d_yaw:+}_{d_pitch:+}.jpg");
        std::fs::write(&name, encode_jpeg(&frame, 92)?)?;
        match measured.first() {
            Some(f) => println!(
                "turn ({d_yaw:+5}, {d_pitch:+5}): rendered in {ms:6.1} ms; measured change yaw {:+5.1} pitch {:+5.1}; {name}",
                f.pose.yaw - face.pose.yaw,
                f.pose.pitch - face.pose.pitch
            ),
            None => println!("turn ({d_yaw:+5}, {d_pitch:+5}): rendered in {ms:6.1} ms; no face found; {name}"),
        }
    }
    Ok(())
}
