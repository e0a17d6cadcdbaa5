//! `ekyc document`: the document service's extraction on one photo, from the command line,
//! with the same engine the service runs. Writes only the portrait file the user asked for.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use ekyc_document::extract::{Code, DocumentKind, ExtractOptions, OtherKind};
use ekyc_document::{DocumentConfig, Engine};
use serde::Serialize;

use crate::settings::Settings;

#[derive(Serialize)]
struct Summary {
    image: String,
    width: u32,
    height: u32,
    found_document: bool,
    document_type: Option<&'static str>,
    document_score: f32,
    /// TL, TR, BR, BL of the upright document, photo pixels.
    document_corners: Vec<[f32; 2]>,
    rotation_deg: u32,
    whole_photo_as_document: bool,
    found_portrait: bool,
    /// The portrait's face box in the photo (rotation-free), and the crop's corners.
    portrait_box: Option<[f32; 4]>,
    portrait_corners: Vec<[f32; 2]>,
    portrait_size_px: f32,
    sharpness: f32,
    glare_fraction: f32,
    cut_off_fraction: f32,
    other_faces: Vec<(&'static str, [f32; 4], Option<f32>)>,
    reasons: Vec<(String, String, bool)>,
    milliseconds: f64,
}

fn code_name(c: Code) -> &'static str {
    match c {
        Code::NoDocument => "NO_DOCUMENT",
        Code::NoPortrait => "NO_PORTRAIT",
        Code::PortraitTooSmall => "PORTRAIT_TOO_SMALL",
        Code::Glare => "GLARE",
        Code::Blur => "BLUR",
        Code::DocumentCutOff => "DOCUMENT_CUT_OFF",
        Code::LooksLikeSelfie => "LOOKS_LIKE_SELFIE",
        Code::GhostPortraitFound => "GHOST_PORTRAIT_FOUND",
        Code::OtherFacesPresent => "OTHER_FACES_PRESENT",
        Code::GhostPortraitMismatch => "GHOST_PORTRAIT_MISMATCH",
    }
}

pub fn document(settings: &Settings, image: &Path, out: Option<&Path>, json: bool) -> Result<()> {
    let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    let cfg = DocumentConfig { workers: 1, ..settings.document.clone() };
    let engine = Engine::start(&settings.vision, &cfg).context("loading the face models")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    let started = std::time::Instant::now();
    let r = rt
        .block_on(engine.extract("image", bytes, ExtractOptions::default()))
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| image.display().to_string())?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let e = &r.extraction;
    let pt = |p: &ekyc_vision::Point| [p.x, p.y];
    let bx = |b: &ekyc_vision::BBox| [b.x1, b.y1, b.x2, b.y2];
    let s = Summary {
        image: image.display().to_string(),
        width: r.width,
        height: r.height,
        found_document: e.document.is_some(),
        document_type: e.document.as_ref().and_then(|d| d.kind).map(|k| match k {
            DocumentKind::IdCard => "ID_CARD",
            DocumentKind::Passport => "PASSPORT",
        }),
        document_score: e.document.as_ref().map_or(0.0, |d| d.score),
        document_corners: e.document.as_ref().map(|d| d.corners.iter().map(pt).collect()).unwrap_or_default(),
        rotation_deg: e.document.as_ref().map_or(0, |d| d.rotation_deg),
        whole_photo_as_document: e.document.as_ref().is_some_and(|d| d.whole_photo),
        found_portrait: e.portrait.is_some(),
        portrait_box: e.portrait.as_ref().map(|p| bx(&p.face_box)),
        portrait_corners: e.portrait.as_ref().map(|p| p.corners.iter().map(pt).collect()).unwrap_or_default(),
        portrait_size_px: e.quality.portrait_size_px,
        sharpness: e.quality.sharpness,
        glare_fraction: e.quality.glare_fraction,
        cut_off_fraction: e.quality.cut_off_fraction,
        other_faces: e
            .other_faces
            .iter()
            .map(|o| {
                let kind = match o.kind {
                    OtherKind::Ghost => "GHOST_PORTRAIT",
                    OtherKind::Holder => "HOLDER_FACE",
                    OtherKind::Other => "OTHER",
                };
                (kind, bx(&o.face.bbox), o.similarity)
            })
            .collect(),
        reasons: e.reasons.iter().map(|x| (code_name(x.code).to_string(), x.message.clone(), x.blocking)).collect(),
        milliseconds: ms,
    };
    if let (Some(path), Some(p)) = (out, &e.portrait) {
        std::fs::write(path, &p.png).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut o = std::io::stdout().lock();
    if json {
        writeln!(o, "{}", serde_json::to_string(&s)?)?;
    } else {
        writeln!(o, "{} ({}x{}) in {ms:.0} ms", s.image, s.width, s.height)?;
        match &e.document {
            Some(d) => {
                let c: Vec<String> = d.corners.iter().map(|p| format!("({:.0},{:.0})", p.x, p.y)).collect();
                writeln!(
                    o,
                    "  document: {} (score {:.2}{}), corners TL TR BR BL {}, turned {} deg",
                    s.document_type.unwrap_or("type unknown"),
                    d.score,
                    if d.whole_photo { ", the whole photo" } else { "" },
                    c.join(" "),
                    d.rotation_deg
                )?;
            }
            None => writeln!(o, "  no document found")?,
        }
        if let Some(p) = &e.portrait {
            let b = p.face_box;
            writeln!(
                o,
                "  portrait: face ({:.0},{:.0})-({:.0},{:.0}) in the photo, crop {}x{}",
                b.x1, b.y1, b.x2, b.y2, p.crop_size.0, p.crop_size.1
            )?;
        }
        writeln!(
            o,
            "  quality: portrait {:.0} px, sharpness {:.1}, glare {:.0} %, cut off {:.0} %",
            s.portrait_size_px,
            s.sharpness,
            s.glare_fraction * 100.0,
            s.cut_off_fraction * 100.0
        )?;
        for (kind, b, sim) in &s.other_faces {
            writeln!(
                o,
                "  other face: {kind} ({:.0},{:.0})-({:.0},{:.0}) similarity {}",
                b[0],
                b[1],
                b[2],
                b[3],
                sim.map_or("-".into(), |v| format!("{v:.2}"))
            )?;
        }
        for (code, message, blocking) in &s.reasons {
            writeln!(o, "  {}{code}: {message}", if *blocking { "! " } else { "" })?;
        }
        if let (Some(path), true) = (out, e.portrait.is_some()) {
            writeln!(o, "  portrait written to {}", path.display())?;
        }
    }
    if e.portrait.is_none() {
        let codes: Vec<&str> = e.reasons.iter().filter(|x| x.blocking).map(|x| code_name(x.code)).collect();
        bail!("no portrait extracted ({})", codes.join(", "));
    }
    Ok(())
}
