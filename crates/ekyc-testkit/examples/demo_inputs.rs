//! Inputs for a demonstration verification: challenge frames of one photo's face turned to
//! each pose, and a phone photo of a synthetic ID card printed with a face.
//!
//! `cargo run --release -p ekyc-testkit --example demo_inputs -- SELFIE.jpg CARD_FACE.jpg OUT_DIR`
//! writes `front.jpg`, `left.jpg`, `right.jpg`, `up.jpg`, `down.jpg` (the selfie's face
//! turned 25 degrees to the user's left and right, up and down) and `card.jpg` into
//! OUT_DIR, ready for `ekyc verify`. They are synthetic images made from the photos given.

use std::path::PathBuf;

use ekyc_testkit::frames::{id_card_from_bytes, pipeline};
use ekyc_testkit::headturn::{TurnableFace, encode_jpeg};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [selfie, card_face, out] = args.as_slice() else {
        return Err("usage: demo_inputs SELFIE.jpg CARD_FACE.jpg OUT_DIR".into());
    };
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out)?;
    let face = TurnableFace::from_bytes(pipeline(), &std::fs::read(selfie)?)?;
    // Yaw > 0: the user's own left (nose towards the image's right); pitch > 0: up.
    for (name, yaw, pitch) in [("front", 0.0, 0.0), ("left", 25.0, 0.0), ("right", -25.0, 0.0), ("up", 0.0, 20.0), ("down", 0.0, -20.0)] {
        std::fs::write(out.join(format!("{name}.jpg")), encode_jpeg(&face.turned(yaw, pitch), 92)?)?;
    }
    std::fs::write(out.join("card.jpg"), id_card_from_bytes(&std::fs::read(card_face)?, 11))?;
    println!("wrote front, left, right, up, down and card .jpg to {}", out.display());
    Ok(())
}
