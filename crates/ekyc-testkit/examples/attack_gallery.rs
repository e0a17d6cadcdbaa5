//! A look at the attack generators: prints and screen replays of one photo, one per seed.
//!
//! `cargo run --release -p ekyc-testkit --example attack_gallery -- PHOTO OUT_DIR [SEEDS]`
//! writes `print_SEED.jpg` and `screen_SEED.jpg` (and PNG copies) into OUT_DIR (outside the repository: they
//! are derived from the photo) and prints each one's method and size.

use std::path::PathBuf;

use ekyc_testkit::attacks::{print, screen_replay};
use ekyc_testkit::frames::pipeline;
use ekyc_vision::AnalyzeOptions;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (photo, out) = match args.as_slice() {
        [p, o] | [p, o, _] => (PathBuf::from(p), PathBuf::from(o)),
        _ => return Err("usage: attack_gallery PHOTO OUT_DIR [SEEDS]".into()),
    };
    let seeds: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(4);
    std::fs::create_dir_all(&out)?;
    let image = pipeline().decode(&std::fs::read(&photo)?)?;
    let face = pipeline().analyze(&image, AnalyzeOptions { embed: false, largest_only: true })?.first().ok_or("no face")?.bbox;
    for seed in 0..seeds {
        for (name, attack) in [("print", print(&image, face, seed)), ("screen", screen_replay(&image, face, seed))] {
            let path = out.join(format!("{name}_{seed}.jpg"));
            std::fs::write(&path, attack.jpeg()?)?;
            // A lossless copy to look at with tools that do not read JPEG.
            attack.image.save(out.join(format!("{name}_{seed}.png")))?;
            println!("{} {} {}x{}", path.display(), attack.method, attack.image.width(), attack.image.height());
        }
    }
    Ok(())
}
