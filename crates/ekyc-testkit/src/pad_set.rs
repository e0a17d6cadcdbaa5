//! The labelled presentation-attack set for `ekyc eval pad`, written by the `ekyc-pad-set`
//! binary from the development photos: images (JPEG; bona fide photos as they are) and a
//! `labels.csv` with the columns `path,label,species,method,challenge,step,pose`.
//!
//! - `label`: `bona_fide` or `attack`; `species`: `bona_fide`, `print`, `screen_replay` or
//!   `rendered_still`; `method`: how it was made (`am_halftone`, `error_diffusion`, `bezel`,
//!   `full_frame`, `headturn`, `splat`, `headturn+perturb`, `splat+perturb`,
//!   `distinct_captures`).
//! - `challenge`: empty for a single-image presentation, else the challenge's id; `step`
//!   its step index (0 = the frontal reference); `pose` the pose the step answers
//!   (`frontal`, `turn_left`, `turn_right`, `look_up`, `look_down`; turn_left is the user's
//!   own left, yaw > 0 in an unmirrored image).
//!
//! What it holds:
//! - **Single images.** Every development photo with one whole face, as bona fide; and of
//!   each, `seeds` prints ([`crate::attacks::print`]) and `seeds` screen replays
//!   ([`crate::attacks::screen`]), the methods alternating with the seed.
//! - **Attack challenges.** For each distinct capture (resolution and format copies
//!   counted once), a 5-step (even index) or 3-step (odd) challenge, frontal first, then
//!   turns of 20-30 degrees and looks of 12-18 degrees in a random order, rendered from the
//!   one photo by each renderer ([`crate::headturn`], [`crate::splat`]), each plain and with
//!   every frame perturbed ([`crate::attacks::perturb`]). All of them are attacks.
//! - **Bona fide challenges.** There is no camera here, so the only genuine multi-pose
//!   material is distinct photos of one person: each identity with two or more distinct
//!   captures is a "challenge" whose step 0 is its most frontal photo (as the face pipeline
//!   measures it) and whose other steps are the captures turned [`MIN_TURN_DEG`] or more
//!   from it, each with the pose its measured angle shows. These are different captures (sessions, days, cameras), a weak proxy for a
//!   genuine head turn filmed in one session.
//!
//! The images are derived from the public development photos: write them only outside the
//! repository (the `--out` folder).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ekyc_vision::{AnalyzeOptions, Face, FacePipeline};
use image::RgbImage;
use thiserror::Error;

use crate::attacks::{perturb, print, screen_replay};
use crate::dataset::{Photo, capture_key, photos_in};
use crate::headturn::{TurnError, encode_jpeg, render_turn};
use crate::idcard::Rng;
use crate::splat::render_splat;

/// Why a set could not be written.
#[derive(Debug, Error)]
pub enum SetError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Render(#[from] TurnError),
    #[error("{0}: {1}")]
    Vision(String, ekyc_vision::VisionError),
}

/// The least change of yaw or pitch, degrees, for a distinct capture to count as a turned
/// step of a bona fide challenge (the liveness service asks for 15 degrees of turn and 10
/// of look by default).
pub const MIN_TURN_DEG: f32 = 8.0;

/// A pose a challenge step asks for, named from the user's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepPose {
    Frontal,
    TurnLeft,
    TurnRight,
    LookUp,
    LookDown,
}

impl StepPose {
    pub fn as_str(self) -> &'static str {
        match self {
            StepPose::Frontal => "frontal",
            StepPose::TurnLeft => "turn_left",
            StepPose::TurnRight => "turn_right",
            StepPose::LookUp => "look_up",
            StepPose::LookDown => "look_down",
        }
    }

    /// The pose a measured change of yaw and pitch (degrees, from the frontal step) shows.
    pub fn of_turn(d_yaw: f32, d_pitch: f32) -> StepPose {
        if d_yaw.abs() >= d_pitch.abs() {
            if d_yaw > 0.0 { StepPose::TurnLeft } else { StepPose::TurnRight }
        } else if d_pitch > 0.0 {
            StepPose::LookUp
        } else {
            StepPose::LookDown
        }
    }
}

/// One row of `labels.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Relative to the set's folder.
    pub path: String,
    pub attack: bool,
    pub species: &'static str,
    pub method: String,
    /// Empty for a single image.
    pub challenge: String,
    pub step: Option<usize>,
    pub pose: Option<StepPose>,
}

/// The header of `labels.csv`.
pub const HEADER: &str = "path,label,species,method,challenge,step,pose";

impl Row {
    pub fn csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{}",
            self.path,
            if self.attack { "attack" } else { "bona_fide" },
            self.species,
            self.method,
            self.challenge,
            self.step.map(|s| s.to_string()).unwrap_or_default(),
            self.pose.map(StepPose::as_str).unwrap_or_default()
        )
    }
}

/// What the writer was asked to do.
#[derive(Debug, Clone)]
pub struct SetOptions {
    /// The development photos (with `labels.csv`).
    pub faces: PathBuf,
    /// Where to write; created if missing.
    pub out: PathBuf,
    /// Prints and screen replays per photo, each.
    pub seeds: u64,
}

/// A photo ready for attacks: its pixels and its largest face.
struct Source {
    photo: Photo,
    bytes: Vec<u8>,
    image: RgbImage,
    face: Face,
    key: String,
}

fn stem(file: &str) -> &str {
    file.rsplit_once('.').map_or(file, |(s, _)| s)
}

/// Writes the set and its `labels.csv`; `log` hears one line per photo and per skip.
pub fn write_set(pipeline: &FacePipeline, o: &SetOptions, mut log: impl FnMut(&str)) -> Result<Vec<Row>, SetError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SetError::Io { path, source }
    };
    let all = photos_in(&o.faces).map_err(io(&o.faces.join("labels.csv")))?;
    let mut sources = Vec::new();
    for p in all.iter().filter(|p| p.is_whole_single_face()) {
        let path = o.faces.join(&p.file);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let image = pipeline.decode(&bytes).map_err(|e| SetError::Vision(p.file.clone(), e))?;
        let faces = pipeline
            .analyze(&image, AnalyzeOptions { embed: false, largest_only: true })
            .map_err(|e| SetError::Vision(p.file.clone(), e))?;
        let Some(face) = faces.into_iter().next() else {
            log(&format!("skipped {}: the face pipeline finds no face", p.file));
            continue;
        };
        sources.push(Source { key: capture_key(p, &all), photo: p.clone(), bytes, image, face });
    }
    let mut rows = Vec::new();
    let write = |rel: &str, bytes: &[u8]| -> Result<(), SetError> {
        let path = o.out.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::write(&path, bytes).map_err(io(&path))
    };

    // Single images: the photos as they are, then prints and screen replays of each.
    for (index, s) in sources.iter().enumerate() {
        let name = stem(&s.photo.file);
        let rel = format!("bona_fide/{}", s.photo.file);
        write(&rel, &s.bytes)?;
        rows.push(Row {
            path: rel,
            attack: false,
            species: "bona_fide",
            method: "photo".into(),
            challenge: String::new(),
            step: None,
            pose: None,
        });
        for seed in 0..o.seeds {
            let attack_seed = ((index as u64) << 20) | seed;
            for (species, attack) in
                [("print", print(&s.image, s.face.bbox, attack_seed)), ("screen_replay", screen_replay(&s.image, s.face.bbox, attack_seed))]
            {
                let rel = format!("{species}/{name}_s{seed}_{}.jpg", attack.method);
                write(&rel, &attack.jpeg()?)?;
                rows.push(Row {
                    path: rel,
                    attack: true,
                    species,
                    method: attack.method.into(),
                    challenge: String::new(),
                    step: None,
                    pose: None,
                });
            }
        }
        log(&format!("{}: bona fide, {} prints, {} screen replays", s.photo.file, o.seeds, o.seeds));
    }

    // One representative per capture: the largest face among its copies (the first listed
    // among copies of one size).
    let mut distinct: Vec<&Source> = Vec::new();
    for s in &sources {
        match distinct.iter_mut().find(|d| d.key == s.key) {
            Some(d) if s.face.bbox.width() > 1.05 * d.face.bbox.width() => *d = s,
            Some(_) => {}
            None => distinct.push(s),
        }
    }

    // Attack challenges rendered from one still.
    for (index, s) in distinct.iter().enumerate() {
        let name = stem(&s.photo.file);
        let mut r = Rng::new(0x6368_616c ^ index as u64);
        let mut poses = vec![StepPose::TurnLeft, StepPose::TurnRight, StepPose::LookUp, StepPose::LookDown];
        for i in (1..poses.len()).rev() {
            poses.swap(i, (r.next_u64() % (i as u64 + 1)) as usize);
        }
        poses.truncate(if index % 2 == 0 { 4 } else { 2 });
        poses.insert(0, StepPose::Frontal);
        let (turn, look) = (r.range(20.0, 30.0), r.range(12.0, 18.0));
        let angles = |p: StepPose| match p {
            StepPose::Frontal => (0.0, 0.0),
            StepPose::TurnLeft => (turn, 0.0),
            StepPose::TurnRight => (-turn, 0.0),
            StepPose::LookUp => (0.0, look),
            StepPose::LookDown => (0.0, -look),
        };
        for renderer in ["headturn", "splat"] {
            let frames: Vec<RgbImage> = poses
                .iter()
                .map(|&p| {
                    let (d_yaw, d_pitch) = angles(p);
                    if renderer == "headturn" {
                        render_turn(&s.image, &s.face.mesh, d_yaw, d_pitch)
                    } else {
                        render_splat(&s.image, &s.face.mesh, d_yaw, d_pitch)
                    }
                })
                .collect();
            for perturbed in [false, true] {
                let method = if perturbed { format!("{renderer}+perturb") } else { renderer.to_string() };
                let challenge = format!("{method}-{name}");
                for (step, (frame, &pose)) in frames.iter().zip(&poses).enumerate() {
                    let bytes = if perturbed {
                        perturb(frame, ((index as u64) << 20) ^ ((step as u64) << 8) ^ 0x9e37)?
                    } else {
                        encode_jpeg(frame, 92)?
                    };
                    let rel = format!("rendered_still/{challenge}/{step}_{}.jpg", pose.as_str());
                    write(&rel, &bytes)?;
                    rows.push(Row {
                        path: rel,
                        attack: true,
                        species: "rendered_still",
                        method: method.clone(),
                        challenge: challenge.clone(),
                        step: Some(step),
                        pose: Some(pose),
                    });
                }
            }
        }
        log(&format!("{}: {}-step challenges by headturn and splat, plain and perturbed", s.photo.file, poses.len()));
    }

    // Bona fide "challenges": distinct captures of one person.
    let mut identities: Vec<&str> = distinct.iter().filter_map(|s| s.photo.identity.as_deref()).collect();
    identities.dedup();
    identities.sort_unstable();
    identities.dedup();
    for id in identities {
        let mut group: Vec<&&Source> = distinct.iter().filter(|s| s.photo.identity.as_deref() == Some(id)).collect();
        if group.len() < 2 {
            continue;
        }
        let front = (0..group.len())
            .min_by(|&a, &b| {
                let off = |s: &Source| s.face.pose.yaw.abs() + s.face.pose.pitch.abs();
                off(group[a]).total_cmp(&off(group[b]))
            })
            .expect("a group of two or more");
        let f = group.remove(front);
        group.insert(0, f);
        let (yaw0, pitch0) = (group[0].face.pose.yaw, group[0].face.pose.pitch);
        // A step must show a turn: captures within MIN_TURN_DEG of the frontal one answer no
        // pose a challenge asks for.
        group.retain(|s| (s.face.pose.yaw - yaw0).abs().max((s.face.pose.pitch - pitch0).abs()) >= MIN_TURN_DEG || std::ptr::eq(**s, *f));
        if group.len() < 2 {
            log(&format!("bona_fide-{id}: no capture turned {MIN_TURN_DEG} degrees or more from the most frontal one"));
            continue;
        }
        let challenge = format!("bona_fide-{id}");
        let mut line = format!("{challenge}:");
        for (step, s) in group.iter().enumerate() {
            let (d_yaw, d_pitch) = (s.face.pose.yaw - yaw0, s.face.pose.pitch - pitch0);
            let pose = if step == 0 { StepPose::Frontal } else { StepPose::of_turn(d_yaw, d_pitch) };
            let rel = format!("bona_fide_challenges/{id}/{step}_{}_{}", pose.as_str(), s.photo.file);
            write(&rel, &s.bytes)?;
            rows.push(Row {
                path: rel,
                attack: false,
                species: "bona_fide",
                method: "distinct_captures".into(),
                challenge: challenge.clone(),
                step: Some(step),
                pose: Some(pose),
            });
            let _ = write!(line, " {} {} (yaw {d_yaw:+.1}, pitch {d_pitch:+.1})", s.photo.file, pose.as_str());
        }
        log(&line);
    }

    let mut csv = String::from(HEADER);
    csv.push('\n');
    for r in &rows {
        csv.push_str(&r.csv());
        csv.push('\n');
    }
    write("labels.csv", csv.as_bytes())?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_turns_name_the_user_side_pose() {
        // Yaw > 0: the user's own left (nose towards the image's right); pitch > 0: up.
        assert_eq!(StepPose::of_turn(18.0, 3.0), StepPose::TurnLeft);
        assert_eq!(StepPose::of_turn(-18.0, 3.0), StepPose::TurnRight);
        assert_eq!(StepPose::of_turn(4.0, 12.0), StepPose::LookUp);
        assert_eq!(StepPose::of_turn(4.0, -12.0), StepPose::LookDown);
    }

    #[test]
    fn rows_follow_the_header() {
        let single = Row {
            path: "print/a.jpg".into(),
            attack: true,
            species: "print",
            method: "am_halftone".into(),
            challenge: String::new(),
            step: None,
            pose: None,
        };
        assert_eq!(single.csv(), "print/a.jpg,attack,print,am_halftone,,,");
        let step = Row {
            path: "r/c/1_turn_left.jpg".into(),
            attack: true,
            species: "rendered_still",
            method: "splat+perturb".into(),
            challenge: "splat+perturb-a".into(),
            step: Some(1),
            pose: Some(StepPose::TurnLeft),
        };
        assert_eq!(step.csv(), "r/c/1_turn_left.jpg,attack,rendered_still,splat+perturb,splat+perturb-a,1,turn_left");
        assert_eq!(HEADER.split(',').count(), step.csv().split(',').count());
    }
}
