//! Presentation-attack detection (PAD): is what the camera saw a live face, or a print, a
//! screen, or frames rendered from one still photo? Several independent cues, each one
//! measured, none trusted alone:
//!
//! - **passive models** (MiniFASNet V2 at 2.7x and V1SE at 4.0x face context, from the model
//!   registry `[vision.anti_spoofing]`): P(real) per frame; they catch grayscale prints and
//!   devices whose frame shows, and miss most full-frame recaptures;
//! - **periodic patterns** ([`periodicity`]): the spectrum of the face region at native
//!   resolution. A printer's halftone screen, a display's pixel and sub-pixel grid and the
//!   moiré between a screen and a camera sensor put isolated peaks in it; skin, hair and
//!   lens blur do not (the 8x8 and 16x16 JPEG block grids are left out);
//! - **colour** ([`skin_chroma`]): the chroma of the skin. Prints reproduce skin with a
//!   narrow gamut (desaturated) and squeezed contrast;
//! - **shading** across a challenge ([`ShadingProfile`], [`challenge`]): the mean brightness
//!   of fixed skin regions that the face mesh locates on every frame. When a real head turns
//!   or nods, each region turns against the light, so the regions brighten and darken by
//!   different amounts; a face re-rendered from one photo (any warp of its pixels) or a flat
//!   print tilted in the hand keeps every region's brightness (up to one exposure factor),
//!   so the spread of the changes stays at the level of noise. The check needs every turned
//!   step to look like that, so one step taken under flat light does not fail a person. Its
//!   transition is wide ([`PadConfig::shading_width`]): under diffuse light a real turn
//!   changes shading about as little as landmark noise changes a rendering, so the band
//!   between clearly flat and clearly shaded scores in the policies' review band (staff),
//!   neither refused nor passed.
//!
//! Each cue gives an attack score in [0, 1], 0.5 at its configured threshold
//! ([`PadConfig`]); a frame's score is the largest, a challenge's the largest of the frames'
//! mean and the shading score. What a frame contributes to the challenge-level cue is a
//! compact [`FrameCues`] (a few dozen numbers, never pixels), computed where the frame is
//! analysed and carried in the sealed attestation, so frames sent one call at a time and
//! frames sent together reach the same verdict.

use ekyc_vision::antispoof::AntiSpoof;
use ekyc_vision::{CANONICAL_FACE, Face, HeadPose};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::challenge::Pose;

/// The kinds of attack PAD can tell apart (ISO/IEC 30107 "PAI species").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Species {
    /// A photo printed on paper.
    Print,
    /// A photo or video shown on a screen.
    ScreenReplay,
    /// Frames rendered from one still image (or a flat picture moved in front of the camera).
    RenderedStill,
}

impl Species {
    pub fn describe(self) -> &'static str {
        match self {
            Species::Print => "a printed photo",
            Species::ScreenReplay => "a screen replay",
            Species::RenderedStill => "frames rendered from one still picture",
        }
    }
}

/// Settings of the PAD stage (`[liveness.pad]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PadConfig {
    /// Run PAD at all. Off only in test rigs that say so (the verdict then carries
    /// PAD_NOT_CHECKED); never in production.
    pub enabled: bool,
    /// Attack score at or above which a frame or challenge is a suspected attack.
    pub threshold: f32,
    /// Mean P(real) of the passive models at which their cue scores 0.5.
    pub model_real: f32,
    /// Spectral peak (log10 of peak over ring median) at which the periodicity cue scores 0.5.
    pub periodic_peak: f32,
    /// Skin chroma (YCbCr units) at which the colour cue scores 0.5; lower is more suspect.
    pub skin_chroma: f32,
    /// Spread of region brightness changes (natural-log units) at which the shading cue
    /// scores 0.5; lower is more suspect.
    pub shading_spread: f32,
    /// Scale of the shading cue's transition (natural-log units): it scores 0.3, the
    /// default policies' `pad_review_score`, at `shading_spread + 0.85 shading_width`
    /// (0.06 by default). Between the two a challenge is referred to staff, not refused: a
    /// real turn under diffuse light changes shading little more than the landmark noise
    /// does on a rendering (see the `shading_physics` example).
    pub shading_width: f32,
    /// Smallest turn (degrees of yaw or pitch from the frontal frame) for the shading cue
    /// to look at a step.
    pub shading_min_turn_deg: f32,
}

impl Default for PadConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 0.5,
            model_real: 0.5,
            periodic_peak: 1.4,
            skin_chroma: 3.0,
            shading_spread: 0.03,
            shading_width: 0.035,
            shading_min_turn_deg: 8.0,
        }
    }
}

impl PadConfig {
    /// PAD switched off, for test rigs that check other rules (pose, identity, replays,
    /// sealing) with frames rendered from a still photo: those frames are attacks by
    /// construction, so such a rig says it is not testing PAD. Every verdict then carries
    /// the warning PAD_NOT_CHECKED, and the orchestrator accepts it only under a policy with
    /// `require_pad = false`.
    pub fn not_tested() -> PadConfig {
        PadConfig { enabled: false, ..PadConfig::default() }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.threshold) || !(0.0..=1.0).contains(&self.model_real) {
            return Err("pad.threshold and pad.model_real must lie in [0, 1]".into());
        }
        if self.periodic_peak <= 0.0 || self.skin_chroma < 0.0 || self.shading_spread <= 0.0 || self.shading_width <= 0.0 {
            return Err("pad.periodic_peak, pad.shading_spread and pad.shading_width must be positive, pad.skin_chroma not negative".into());
        }
        Ok(())
    }
}

/// What PAD measured on one frame: compact numbers, carried in the sealed attestation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FrameCues {
    /// P(real) of each passive model, and their mean.
    pub models_real: Vec<f32>,
    pub real: f32,
    /// log10 of the largest isolated spectral peak over its ring's median, in luma
    /// (halftone, pixel grids) and in the chroma planes (colour moiré of sub-pixel stripes).
    pub periodic: f32,
    #[serde(default)]
    pub periodic_chroma: f32,
    /// Median skin chroma.
    pub chroma: f32,
    /// Mean log-brightness of the shading regions (NaN-free: `None` where a region fell
    /// outside the image).
    pub shading: ShadingProfile,
}

/// Mean log-brightness `ln(4 + luma)` of each of [`shading_regions`], quantised to 1/1024
/// (i16; `i16::MIN` where the region fell outside the image).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ShadingProfile(pub Vec<i16>);

const MISSING: i16 = i16::MIN;

/// The score of one cue: 0.5 at `limit`, towards 1 as `value` passes it in the suspect
/// direction (`higher_is_suspect`), with `width` the scale of the transition.
fn cue(value: f32, limit: f32, width: f32, higher_is_suspect: bool) -> f32 {
    let x = if higher_is_suspect { value - limit } else { limit - value };
    1.0 / (1.0 + (-x / width.max(1e-6)).exp())
}

/// A frame's PAD verdict.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FramePad {
    /// In [0, 1]; an attack is suspected at or above the configured threshold.
    pub attack_score: f32,
    /// The kind of attack the strongest cue points to, when it can tell.
    pub species: Option<Species>,
    /// Each cue's score: models, periodic, colour.
    pub cues: Vec<(String, f32)>,
}

/// A challenge's PAD verdict.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChallengePad {
    pub attack_score: f32,
    pub species: Option<Species>,
    pub frames: Vec<FramePad>,
    /// The shading cue's score and the measured spread per turned step (step index,
    /// spread); empty when no step turned far enough to measure.
    pub shading_score: Option<f32>,
    pub shading: Vec<(usize, f32)>,
}

/// Scores one frame's cues.
pub fn judge_frame(c: &FrameCues, cfg: &PadConfig) -> FramePad {
    let model = if c.models_real.is_empty() { 0.0 } else { cue(c.real, cfg.model_real, 0.08, false) };
    let periodic = cue(c.periodic.max(c.periodic_chroma), cfg.periodic_peak, 0.08, true);
    let colour = if c.chroma > 0.0 { cue(c.chroma, cfg.skin_chroma, 0.8, false) } else { 0.0 };
    let cues = vec![("models".to_string(), model), ("periodic".to_string(), periodic), ("colour".to_string(), colour)];
    let attack_score = model.max(periodic).max(colour);
    let species = if attack_score < cfg.threshold {
        None
    } else if colour >= cfg.threshold {
        Some(Species::Print)
    } else if periodic >= cfg.threshold {
        // A display's sub-pixel stripes beat with the camera's colour filter (chroma moiré);
        // a printer's halftone is a pattern of brightness.
        Some(if c.periodic_chroma > c.periodic { Species::ScreenReplay } else { Species::Print })
    } else {
        None
    };
    FramePad { attack_score, species, cues }
}

/// One frame of a challenge as PAD sees it: the pose it answers and what was measured.
#[derive(Debug)]
pub struct ChallengeFrame<'a> {
    pub step: usize,
    pub pose: Pose,
    pub head: HeadPose,
    pub cues: &'a FrameCues,
}

/// Scores a challenge: `frames[0]` is the frontal reference.
pub fn challenge(frames: &[ChallengeFrame<'_>], cfg: &PadConfig) -> ChallengePad {
    let per_frame: Vec<FramePad> = frames.iter().map(|f| judge_frame(f.cues, cfg)).collect();
    let mean = if per_frame.is_empty() { 0.0 } else { per_frame.iter().map(|f| f.attack_score).sum::<f32>() / per_frame.len() as f32 };
    let mut shading = Vec::new();
    if let Some(reference) = frames.first() {
        for f in &frames[1..] {
            let turn = (f.head.yaw - reference.head.yaw).abs().max((f.head.pitch - reference.head.pitch).abs());
            if turn < cfg.shading_min_turn_deg || f.pose == Pose::Frontal {
                continue;
            }
            if let Some(s) = shading_spread(&reference.cues.shading, &f.cues.shading) {
                shading.push((f.step, s));
            }
        }
    }
    // Every turned step must look rendered: the largest spread decides.
    let shading_score = shading.iter().map(|(_, s)| *s).reduce(f32::max).map(|s| cue(s, cfg.shading_spread, cfg.shading_width, false));
    let attack_score = mean.max(shading_score.unwrap_or(0.0));
    let species = if attack_score < cfg.threshold {
        None
    } else if shading_score.is_some_and(|s| s >= cfg.threshold && s >= mean) {
        Some(Species::RenderedStill)
    } else {
        majority_species(&per_frame)
    };
    ChallengePad { attack_score, species, frames: per_frame, shading_score, shading }
}

fn majority_species(frames: &[FramePad]) -> Option<Species> {
    let mut counts: Vec<(Species, usize)> = Vec::new();
    for s in frames.iter().filter_map(|f| f.species) {
        match counts.iter_mut().find(|(k, _)| *k == s) {
            Some((_, n)) => *n += 1,
            None => counts.push((s, 1)),
        }
    }
    counts.into_iter().max_by_key(|(_, n)| *n).map(|(s, _)| s)
}

/// Robust spread (1.4826 x median absolute deviation) of the per-region change in
/// log-brightness between two frames, after removing the common exposure change (the
/// median); `None` with fewer than 12 regions seen in both.
pub fn shading_spread(a: &ShadingProfile, b: &ShadingProfile) -> Option<f32> {
    let mut d: Vec<f32> =
        a.0.iter().zip(&b.0).filter(|(x, y)| **x != MISSING && **y != MISSING).map(|(x, y)| f32::from(*y - *x) / 1024.0).collect();
    if d.len() < 12 {
        return None;
    }
    let m = median(&mut d);
    let mut dev: Vec<f32> = d.iter().map(|v| (v - m).abs()).collect();
    Some(1.4826 * median(&mut dev))
}

fn median(v: &mut [f32]) -> f32 {
    v.sort_by(f32::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// FaceMesh points whose neighbourhoods are the shading regions: skin only (no eyes, brows,
/// lips, nostrils or nose walls, whose appearance changes with blinks, expression and
/// occlusion), inside the outer cheeks (visible for turns up to about 35 degrees), on a
/// regular grid of the canonical face so regions do not overlap much.
pub fn shading_regions() -> &'static [usize] {
    static CENTRES: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    CENTRES.get_or_init(|| region_frames().iter().map(|r| r[0]).collect())
}

/// Each shading region as three mesh points `[centre, along x, along y]`: samples are taken
/// at `centre + a (x - centre) + b (y - centre)` for a fixed grid of `a, b` in [-1, 1], so a
/// region follows the skin's own stretching and foreshortening as the head turns.
pub fn region_frames() -> &'static [[usize; 3]] {
    static REGIONS: std::sync::OnceLock<Vec<[usize; 3]>> = std::sync::OnceLock::new();
    REGIONS.get_or_init(|| {
        let c = &CANONICAL_FACE;
        let centre = |idx: &[usize]| {
            let n = idx.len() as f32;
            let (x, y) = idx.iter().fold((0.0, 0.0), |(x, y), &i| (x + c[i][0], y + c[i][1]));
            (x / n, y / n)
        };
        let eyes = [centre(&ekyc_vision::pipeline::EYE_RING_IMAGE_LEFT), centre(&ekyc_vision::pipeline::EYE_RING_IMAGE_RIGHT)];
        let mouth = centre(&[61, 291, 0, 17]);
        let near = |p: [f32; 3], q: (f32, f32), rx: f32, ry: f32| ((p[0] - q.0) / rx).powi(2) + ((p[1] - q.1) / ry).powi(2) < 1.0;
        let excluded = |p: [f32; 3]| {
            let brow_band = p[1] < eyes[0].1 - 0.05 && p[1] > eyes[0].1 - 0.45 && p[0].abs() > 0.12;
            let nose_wall = p[0].abs() > 0.07 && p[0].abs() < 0.32 && p[1] > eyes[0].1 + 0.05 && p[1] < mouth.1 - 0.12;
            eyes.iter().any(|e| near(p, *e, 0.36, 0.24)) || near(p, mouth, 0.5, 0.28) || brow_band || nose_wall
        };
        let mut chosen = Vec::new();
        let step = 0.15f32;
        let mut gy = -1.05f32;
        while gy <= 0.85 {
            let mut gx = -0.45f32;
            while gx <= 0.45 + 1e-3 {
                let best = (0..c.len())
                    .filter(|&i| c[i][0].abs() <= 0.47 && !excluded(c[i]))
                    .map(|i| (i, (c[i][0] - gx).powi(2) + (c[i][1] - gy).powi(2)))
                    .min_by(|a, b| a.1.total_cmp(&b.1));
                if let Some((i, d2)) = best
                    && d2 < (step * 0.5).powi(2)
                    && !chosen.iter().any(|r: &[usize; 3]| r[0] == i)
                {
                    // The neighbours closest to 0.1 units away along +x and along +y.
                    let towards = |ux: f32, uy: f32| {
                        (0..c.len())
                            .filter(|&j| j != i)
                            .map(|j| {
                                let (dx, dy) = (c[j][0] - c[i][0], c[j][1] - c[i][1]);
                                let along = dx * ux + dy * uy;
                                let across = -dx * uy + dy * ux;
                                (j, (along - 0.1).powi(2) + 4.0 * across * across)
                            })
                            .min_by(|a, b| a.1.total_cmp(&b.1))
                            .map(|(j, _)| j)
                    };
                    if let (Some(jx), Some(jy)) = (towards(1.0, 0.0), towards(0.0, 1.0)) {
                        chosen.push([i, jx, jy]);
                    }
                }
                gx += step;
            }
            gy += step;
        }
        chosen
    })
}

/// The shading profile of `face` in `img`: for each region ([`region_frames`]), the mean
/// luma of a 9 x 9 grid of samples in the region's own frame (the centre point plus up to
/// 0.96 times each of its two neighbour vectors, about 0.1 canonical units: the grid
/// stretches and foreshortens with the skin), as `ln(4 + luma)`.
pub fn shading_profile(img: &RgbImage, face: &Face) -> ShadingProfile {
    shading_profile_with(img, face, 0.04)
}

/// [`shading_profile`] with the grid spanning `24 radius` neighbour vectors either way
/// (0.04: the default).
pub fn shading_profile_with(img: &RgbImage, face: &Face, radius: f32) -> ShadingProfile {
    if face.mesh.len() < CANONICAL_FACE.len() {
        return ShadingProfile::default();
    }
    let (w, h) = (img.width() as f32, img.height() as f32);
    let raw = img.as_raw();
    let values = region_frames()
        .iter()
        .map(|&[i, jx, jy]| {
            let [cx, cy, _] = face.mesh[i];
            let (ux, uy) = (face.mesh[jx][0] - cx, face.mesh[jx][1] - cy);
            let (vx, vy) = (face.mesh[jy][0] - cx, face.mesh[jy][1] - cy);
            let reach = 24.0 * radius * (ux.abs() + vx.abs() + uy.abs() + vy.abs());
            if cx - reach < 0.0 || cy - reach < 0.0 || cx + reach >= w - 1.0 || cy + reach >= h - 1.0 {
                return MISSING;
            }
            let (mut sum, mut n) = (0.0f32, 0u32);
            for ob in -4i32..=4 {
                for oa in -4i32..=4 {
                    let (a, b) = (oa as f32 * radius * 6.0, ob as f32 * radius * 6.0);
                    let (x, y) = ((cx + a * ux + b * vx) as usize, (cy + a * uy + b * vy) as usize);
                    let p = &raw[(y * img.width() as usize + x) * 3..][..3];
                    sum += 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]);
                    n += 1;
                }
            }
            ((4.0 + sum / n.max(1) as f32).ln() * 1024.0).round() as i16
        })
        .collect();
    ShadingProfile(values)
}

/// Median chroma `sqrt((Cb-128)^2 + (Cr-128)^2)` over the shading regions' centres and
/// their neighbours (skin only).
pub fn skin_chroma(img: &RgbImage, face: &Face) -> f32 {
    if face.mesh.len() < CANONICAL_FACE.len() {
        return 0.0;
    }
    let (w, h) = (img.width() as i64, img.height() as i64);
    let mut values = Vec::new();
    for &i in shading_regions() {
        let [cx, cy, _] = face.mesh[i];
        for (ox, oy) in [(0, 0), (-2, 0), (2, 0), (0, -2), (0, 2)] {
            let (x, y) = (cx as i64 + ox, cy as i64 + oy);
            if x < 0 || y < 0 || x >= w || y >= h {
                continue;
            }
            let p = img.get_pixel(x as u32, y as u32).0.map(f32::from);
            let cb = -0.168_736 * p[0] - 0.331_264 * p[1] + 0.5 * p[2];
            let cr = 0.5 * p[0] - 0.418_688 * p[1] - 0.081_312 * p[2];
            values.push((cb * cb + cr * cr).sqrt());
        }
    }
    median(&mut values)
}

/// Side of the square analysed for periodic patterns, in native pixels.
const SPECTRUM_SIDE: usize = 128;

/// The strongest isolated periodic pattern around the face: log10 of the largest spectral
/// magnitude over the median of its frequency ring, in a `SPECTRUM_SIDE` square at native
/// resolution centred on the face (Hann-windowed luma, mean removed). Frequencies below
/// 1/16 of the sampling rate (shading, the face itself), the axes (image borders, straight
/// edges) and the multiples of 1/16 (JPEG's 8x8 and 16x16 blocks) are left out. 0 when the
/// image is smaller than the square. Returns the luma plane's value and the larger of the
/// two chroma planes'.
pub fn periodicity(img: &RgbImage, face: &Face) -> (f32, f32) {
    let chroma = channel_periodicity(img, face, Channel::Cb).max(channel_periodicity(img, face, Channel::Cr));
    (channel_periodicity(img, face, Channel::Luma), chroma)
}

/// Which plane of the image a spectrum is taken of: luma for halftone dots and moiré, the
/// two chroma planes for the colour moiré a camera's Bayer filter makes of a display's
/// red-green-blue sub-pixel stripes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Luma,
    Cb,
    Cr,
}

/// [`periodicity`] of one plane.
pub fn channel_periodicity(img: &RgbImage, face: &Face, channel: Channel) -> f32 {
    let n = SPECTRUM_SIDE;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < n || h < n {
        return 0.0;
    }
    let c = face.bbox.center();
    let x0 = ((c.x as i64 - n as i64 / 2).max(0) as usize).min(w - n);
    let y0 = ((c.y as i64 - n as i64 / 2).max(0) as usize).min(h - n);
    let raw = img.as_raw();
    let mut re = vec![0.0f32; n * n];
    for y in 0..n {
        for x in 0..n {
            let p = &raw[((y0 + y) * w + x0 + x) * 3..][..3];
            let (r, g, b) = (f32::from(p[0]), f32::from(p[1]), f32::from(p[2]));
            re[y * n + x] = match channel {
                Channel::Luma => 0.299 * r + 0.587 * g + 0.114 * b,
                Channel::Cb => -0.168_736 * r - 0.331_264 * g + 0.5 * b,
                Channel::Cr => 0.5 * r - 0.418_688 * g - 0.081_312 * b,
            };
        }
    }
    let mean = re.iter().sum::<f32>() / re.len() as f32;
    let hann: Vec<f32> = (0..n).map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / (n - 1) as f32).cos()).collect();
    for y in 0..n {
        for x in 0..n {
            re[y * n + x] = (re[y * n + x] - mean) * hann[x] * hann[y];
        }
    }
    let mut im = vec![0.0f32; n * n];
    fft2(&mut re, &mut im, n);
    let half = n / 2;
    let mut rings: Vec<Vec<f32>> = vec![Vec::new(); half + 1];
    let mut bins = Vec::new();
    for v in 0..n {
        for u in 0..=half {
            let (fu, fv) = (u as i64, if v > half { v as i64 - n as i64 } else { v as i64 });
            let r = ((fu * fu + fv * fv) as f32).sqrt().round() as usize;
            if r < n / 16 || r > half || fu == 0 || fv == 0 || fu % 8 == 0 || fv % 8 == 0 {
                continue;
            }
            let m = (re[v * n + u].powi(2) + im[v * n + u].powi(2)).sqrt();
            rings[r].push(m);
            bins.push((r, m));
        }
    }
    let medians: Vec<f32> = rings.iter_mut().map(|ring| if ring.is_empty() { 0.0 } else { median(ring) }).collect();
    bins.iter().filter(|(r, _)| medians[*r] > 1e-3).map(|(r, m)| (m / medians[*r]).log10()).fold(0.0f32, f32::max)
}

/// In-place 2-D FFT of an `n` x `n` complex image (`n` a power of two), rows then columns.
fn fft2(re: &mut [f32], im: &mut [f32], n: usize) {
    let (mut rr, mut ri) = (vec![0.0f32; n], vec![0.0f32; n]);
    for y in 0..n {
        fft(&mut re[y * n..(y + 1) * n], &mut im[y * n..(y + 1) * n]);
    }
    for x in 0..n {
        for y in 0..n {
            rr[y] = re[y * n + x];
            ri[y] = im[y * n + x];
        }
        fft(&mut rr, &mut ri);
        for y in 0..n {
            re[y * n + x] = rr[y];
            im[y * n + x] = ri[y];
        }
    }
}

/// Iterative radix-2 Cooley-Tukey FFT.
fn fft(re: &mut [f32], im: &mut [f32]) {
    let n = re.len();
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let ang = -2.0 * std::f64::consts::PI / len as f64;
        for start in (0..n).step_by(len) {
            for k in 0..len / 2 {
                let (s, c) = (ang * k as f64).sin_cos();
                let (c, s) = (c as f32, s as f32);
                let (a, b) = (start + k, start + k + len / 2);
                let (xr, xi) = (re[b] * c - im[b] * s, re[b] * s + im[b] * c);
                re[b] = re[a] - xr;
                im[b] = im[a] - xi;
                re[a] += xr;
                im[a] += xi;
            }
        }
        len <<= 1;
    }
}

/// Everything PAD measures on one frame's main face.
pub fn frame_cues(img: &RgbImage, face: &Face, models: Option<&AntiSpoof>) -> Result<FrameCues, ekyc_vision::VisionError> {
    let score = match models {
        Some(m) => m.score(img, &face.bbox)?,
        None => Default::default(),
    };
    let (periodic, periodic_chroma) = periodicity(img, face);
    Ok(FrameCues {
        models_real: score.per_model,
        real: score.real,
        periodic,
        periodic_chroma,
        chroma: skin_chroma(img, face),
        shading: shading_profile(img, face),
    })
}

/// PAD on images outside a challenge, for `ekyc eval pad`: the liveness worker's models and
/// the configured thresholds, without the store or the replay memory.
#[derive(Debug)]
pub struct PadEvaluator {
    worker: crate::engine::Worker,
    cfg: PadConfig,
}

impl PadEvaluator {
    /// Loads the face and PAD models (blocking).
    pub fn new(vision: &ekyc_vision::VisionConfig, cfg: &crate::LivenessConfig) -> Result<PadEvaluator, crate::LivenessError> {
        cfg.validate().map_err(|e| crate::LivenessError::InvalidArgument(format!("liveness settings: {e}")))?;
        let on = crate::LivenessConfig { pad: PadConfig { enabled: true, ..cfg.pad.clone() }, ..cfg.clone() };
        let worker =
            crate::engine::Worker::load(vision, &on).map_err(|e| crate::LivenessError::Internal(format!("loading models: {e}")))?;
        Ok(PadEvaluator { worker, cfg: on.pad })
    }

    /// The configured decision threshold: an attack when `attack_score >= threshold`.
    pub fn threshold(&self) -> f32 {
        self.cfg.threshold
    }

    /// The cues of the main face of an encoded image, with its head pose; `None` when no
    /// face is found.
    pub fn measure(&self, bytes: &[u8]) -> Result<Option<(HeadPose, FrameCues)>, crate::LivenessError> {
        let p = &self.worker.pipeline;
        let img = p.decode(bytes).map_err(|e| crate::LivenessError::InvalidArgument(e.to_string()))?;
        let faces = p
            .analyze(&img, ekyc_vision::AnalyzeOptions { embed: false, largest_only: true })
            .map_err(|e| crate::LivenessError::Internal(e.to_string()))?;
        let Some(face) = faces.into_iter().next() else { return Ok(None) };
        let cues = frame_cues(&img, &face, self.worker.pad.as_ref()).map_err(|e| crate::LivenessError::Internal(e.to_string()))?;
        Ok(Some((face.pose, cues)))
    }

    /// One image presentation. An image without a face is not accepted (attack score 1,
    /// cue `no_face`), as a liveness step without a face fails.
    pub fn frame(&self, bytes: &[u8]) -> Result<FramePad, crate::LivenessError> {
        Ok(match self.measure(bytes)? {
            Some((_, cues)) => judge_frame(&cues, &self.cfg),
            None => FramePad { attack_score: 1.0, species: None, cues: vec![("no_face".into(), 1.0)] },
        })
    }

    /// One challenge: encoded frames in step order, frame 0 the frontal reference, with the
    /// pose each answers. Frames without a face are left out; with none left the challenge
    /// is not accepted (attack score 1).
    pub fn challenge(&self, frames: &[(Pose, Vec<u8>)]) -> Result<ChallengePad, crate::LivenessError> {
        let mut measured = Vec::new();
        for (step, (pose, bytes)) in frames.iter().enumerate() {
            if let Some((head, cues)) = self.measure(bytes)? {
                measured.push((step, *pose, head, cues));
            }
        }
        if measured.is_empty() {
            return Ok(ChallengePad { attack_score: 1.0, ..Default::default() });
        }
        let chosen: Vec<ChallengeFrame<'_>> =
            measured.iter().map(|(step, pose, head, cues)| ChallengeFrame { step: *step, pose: *pose, head: *head, cues }).collect();
        Ok(challenge(&chosen, &self.cfg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_skin_spread_over_the_face() {
        let r = shading_regions();
        assert!(r.len() >= 24 && r.len() <= 80, "{} regions", r.len());
        // Both sides of the face and forehead and chin are covered.
        let c = &CANONICAL_FACE;
        assert!(r.iter().any(|&i| c[i][0] < -0.3) && r.iter().any(|&i| c[i][0] > 0.3));
        assert!(r.iter().any(|&i| c[i][1] < -0.7) && r.iter().any(|&i| c[i][1] > 0.45));
        // No eye-ring point and no lip corner is a region.
        for i in ekyc_vision::pipeline::EYE_RING_IMAGE_LEFT.iter().chain(&ekyc_vision::pipeline::EYE_RING_IMAGE_RIGHT).chain(&[61, 291]) {
            assert!(!r.contains(i), "point {i} is not skin");
        }
    }

    #[test]
    fn spread_ignores_exposure_and_sees_local_changes() {
        let base: Vec<i16> = (0..40).map(|i| 4000 + (i * 37 % 300) as i16).collect();
        // The same profile under another exposure (a constant added in log space).
        let brighter = ShadingProfile(base.iter().map(|v| v + 200).collect());
        let s = shading_spread(&ShadingProfile(base.clone()), &brighter).expect("enough regions");
        assert!(s < 1e-6, "{s}");
        // Half the regions 10 % darker: a spread of the order of 0.1.
        let shaded = ShadingProfile(base.iter().enumerate().map(|(i, v)| if i % 2 == 0 { v - 108 } else { *v }).collect());
        let s = shading_spread(&ShadingProfile(base), &shaded).expect("enough regions");
        assert!(s > 0.04, "{s}");
    }

    /// A challenge of a frontal frame and one turned step whose region brightness changes
    /// have a robust spread of `spread` (half the regions up, half down).
    fn shaded_challenge(spread: f32, cfg: &PadConfig) -> ChallengePad {
        let base: Vec<i16> = (0..40).map(|i| 4000 + (i * 37 % 300) as i16).collect();
        let k = (spread / 1.4826 * 1024.0).round() as i16;
        let turned: Vec<i16> = base.iter().enumerate().map(|(i, v)| if i % 2 == 0 { v + k } else { v - k }).collect();
        let (a, b) = (
            FrameCues { shading: ShadingProfile(base), ..FrameCues::default() },
            FrameCues { shading: ShadingProfile(turned), ..FrameCues::default() },
        );
        let frames = [
            ChallengeFrame { step: 0, pose: Pose::Frontal, head: HeadPose::default(), cues: &a },
            ChallengeFrame { step: 1, pose: Pose::TurnLeft, head: HeadPose { yaw: 22.0, ..HeadPose::default() }, cues: &b },
        ];
        challenge(&frames, cfg)
    }

    #[test]
    fn flat_shading_is_refused_and_the_band_above_it_is_referred() {
        let cfg = PadConfig::default();
        let review_edge = cfg.shading_spread + 0.85 * cfg.shading_width;
        // Flatter than the threshold: an attack, named as a rendering.
        let flat = shaded_challenge(cfg.shading_spread * 0.6, &cfg);
        assert!(flat.attack_score >= cfg.threshold, "{flat:?}");
        assert_eq!(flat.species, Some(Species::RenderedStill));
        // Between the threshold and the review edge: under the threshold, over the default
        // policies' review score 0.3 (not accepted without staff).
        let unsure = shaded_challenge(0.5 * (cfg.shading_spread + review_edge), &cfg);
        assert!(unsure.attack_score < cfg.threshold && unsure.attack_score > 0.3, "{unsure:?}");
        assert_eq!(unsure.species, None);
        // Shading that changes as a real turn in directional light does: clear.
        let shaded = shaded_challenge(2.0 * review_edge, &cfg);
        assert!(shaded.attack_score < 0.3, "{shaded:?}");
        // A narrower band lets the same unsure challenge through.
        let narrow = PadConfig { shading_width: 0.004, ..PadConfig::default() };
        assert!(shaded_challenge(0.5 * (cfg.shading_spread + review_edge), &narrow).attack_score < 0.3);
        assert!(PadConfig { shading_width: 0.0, ..PadConfig::default() }.validate().is_err());
    }

    #[test]
    fn a_periodic_pattern_stands_out_of_the_spectrum() {
        let face = Face {
            bbox: ekyc_vision::BBox { x1: 60.0, y1: 60.0, x2: 200.0, y2: 200.0 },
            score: 1.0,
            face_flag: 1.0,
            landmarks: [ekyc_vision::Point::new(0.0, 0.0); 5],
            pose: HeadPose::default(),
            quality: Default::default(),
            embedding: None,
            mesh: Vec::new(),
        };
        // Sensor-like noise, the same in both images.
        let noise =
            |x: u32, y: u32| ((x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)).wrapping_mul(2_246_822_519) >> 28) as f32 - 8.0;
        // A smooth gradient with noise: no peak.
        let smooth = RgbImage::from_fn(256, 256, |x, y| {
            let v = 100.0 + 40.0 * ((x as f32 / 37.0).sin() * (y as f32 / 53.0).cos()) + noise(x, y);
            image::Rgb([v as u8; 3])
        });
        // The same with a halftone-like grid at a period of 3.3 px at 20 degrees.
        let screened = RgbImage::from_fn(256, 256, |x, y| {
            let base = 100.0 + 40.0 * ((x as f32 / 37.0).sin() * (y as f32 / 53.0).cos()) + noise(x, y);
            let (xr, yr) = (x as f32 * 0.94 + y as f32 * 0.34, -(x as f32) * 0.34 + y as f32 * 0.94);
            let dots = 12.0 * (xr * 2.0 * std::f32::consts::PI / 3.3).cos() * (yr * 2.0 * std::f32::consts::PI / 3.3).cos();
            image::Rgb([(base + dots).clamp(0.0, 255.0) as u8; 3])
        });
        let (a, b) = (periodicity(&smooth, &face).0, periodicity(&screened, &face).0);
        assert!(b > a + 0.5 && b > PadConfig::default().periodic_peak, "smooth {a}, screened {b}");
    }
}
