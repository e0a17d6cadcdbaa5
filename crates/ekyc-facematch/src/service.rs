//! The gRPC adapter: validates each request in one place, calls the engine, and turns its
//! results into `ekyc.v1` messages. No image work happens here.

use std::sync::Arc;
use std::time::Instant;

use ekyc_proto::v1 as pb;
use ekyc_proto::v1::face_match_server::FaceMatch;
use ekyc_runtime::convert;
use ekyc_runtime::kit::{Holder, answer};
use futures::future::try_join_all;
use pb::ReasonCode as Code;
use tonic::{Request, Response, Status};

use crate::engine::{EmbedOptions, Engine, FaceIssue, FaceResult, ImageResult};
use crate::error::FacematchError;

/// The service; answers UNAVAILABLE until the engine is loaded and warm.
#[derive(Debug, Clone)]
pub struct FaceMatchService {
    engine: Holder<Engine>,
}

impl FaceMatchService {
    pub fn new(engine: Holder<Engine>) -> Self {
        Self { engine }
    }

    fn engine(&self) -> Result<Arc<Engine>, FacematchError> {
        self.engine.loaded()
    }
}

fn issue_reason(issue: &FaceIssue) -> pb::Reason {
    let (code, message, measured, limit) = match *issue {
        FaceIssue::TooSmall { size_px, min } => {
            (Code::FaceTooSmall, format!("face is {size_px:.0} px, at least {min:.0} px needed"), size_px, min)
        }
        FaceIssue::Blurred { sharpness, min } => {
            (Code::FaceBlurred, format!("face sharpness {sharpness:.1}, at least {min:.1} needed"), sharpness, min)
        }
        FaceIssue::CutOff { outside, max } => (
            Code::FaceCutOff,
            format!("{:.0} % of the face is outside the image, at most {:.0} % allowed", outside * 100.0, max * 100.0),
            outside,
            max,
        ),
        FaceIssue::TooDark { brightness, min } => {
            (Code::FaceTooDark, format!("face brightness {brightness:.2}, at least {min:.2} needed"), brightness, min)
        }
        FaceIssue::TooBright { brightness, max } => {
            (Code::FaceTooBright, format!("face brightness {brightness:.2}, at most {max:.2} allowed"), brightness, max)
        }
        FaceIssue::PoseTooLarge { angle_deg, max } => {
            (Code::FacePoseTooLarge, format!("head turned {angle_deg:.0} degrees, at most {max:.0} allowed"), angle_deg, max)
        }
    };
    pb::Reason { measured: Some(f64::from(measured)), limit: Some(f64::from(limit)), ..convert::reason(code, message, true) }
}

fn detected(f: &FaceResult, embedder_id: &str) -> pb::DetectedFace {
    pb::DetectedFace {
        face: Some(convert::face(&f.face, embedder_id)),
        usable: f.usable,
        reasons: f.issues.iter().map(issue_reason).collect(),
    }
}

fn image_faces(index: usize, r: &ImageResult, embedder_id: &str) -> pb::ImageFaces {
    let mut reasons = Vec::new();
    if r.faces.is_empty() {
        reasons.push(convert::reason(Code::NoFace, "no face found", true));
    } else if !r.faces.iter().any(|f| f.usable) {
        reasons.push(convert::reason(Code::NoFace, "no usable face: see each face's reasons", true));
    }
    for reason in &mut reasons {
        reason.image_index = Some(index as u32);
    }
    pb::ImageFaces {
        image_index: index as u32,
        image_info: Some(pb::ImageInfo {
            width_px: r.width,
            height_px: r.height,
            content_type: r.meta.content_type.to_string(),
            exif_orientation: u32::from(r.meta.exif_orientation),
            sha256: r.sha256.clone(),
        }),
        faces: r.faces.iter().map(|f| detected(f, embedder_id)).collect(),
        reasons,
    }
}

fn image_bytes(field: &str, image: Option<pb::Image>) -> Result<Vec<u8>, FacematchError> {
    let data = image.map(|i| i.data).unwrap_or_default();
    if data.is_empty() {
        return Err(FacematchError::InvalidArgument(format!("IMAGE_EMPTY: {field}: the image has no bytes")));
    }
    Ok(data)
}

fn timing(started: Instant, results: &[&ImageResult]) -> pb::Timing {
    let ms = |d: std::time::Duration| d.as_secs_f32() * 1000.0;
    pb::Timing {
        queue_ms: results.iter().map(|r| ms(r.queue)).fold(0.0, f32::max),
        inference_ms: results.iter().map(|r| ms(r.inference)).fold(0.0, f32::max),
        total_ms: ms(started.elapsed()),
    }
}

impl FaceMatchService {
    async fn do_embed(&self, req: pb::EmbedRequest) -> Result<pb::EmbedResponse, FacematchError> {
        let started = Instant::now();
        let engine = self.engine()?;
        let max = engine.config().max_images_per_request;
        if req.images.is_empty() {
            return Err(FacematchError::InvalidArgument("images: at least one image is required".into()));
        }
        if req.images.len() > max {
            return Err(FacematchError::InvalidArgument(format!("images: {} images, at most {max} per request", req.images.len())));
        }
        let opts = EmbedOptions {
            largest_only: req.largest_face_only,
            min_face_size_px: req.min_face_size_px as f32,
            embeddings: !req.skip_embeddings,
        };
        let inputs: Vec<(String, Vec<u8>)> = req
            .images
            .into_iter()
            .enumerate()
            .map(|(i, img)| {
                let field = format!("images[{i}]");
                image_bytes(&field, Some(img)).map(|b| (field, b))
            })
            .collect::<Result<_, _>>()?;
        let results = try_join_all(inputs.into_iter().map(|(field, bytes)| {
            let engine = Arc::clone(&engine);
            async move { engine.embed_image(&field, bytes, opts).await }
        }))
        .await?;
        let embedder_id = engine.vision().embedder.model.id.clone();
        Ok(pb::EmbedResponse {
            results: results.iter().enumerate().map(|(i, r)| image_faces(i, r, &embedder_id)).collect(),
            models: convert::models(engine.vision()),
            timing: Some(timing(started, &results.iter().collect::<Vec<_>>())),
        })
    }

    /// One side of a comparison: its embedding and, for an image, the face it came from.
    async fn side(
        &self,
        engine: &Engine,
        name: &str,
        index: u32,
        input: Option<pb::FaceInput>,
        reasons: &mut Vec<pb::Reason>,
    ) -> Result<(Option<Vec<f32>>, Option<pb::Face>, Option<ImageResult>), FacematchError> {
        let input = input
            .and_then(|i| i.input)
            .ok_or_else(|| FacematchError::InvalidArgument(format!("{name}: an image or an embedding is required")))?;
        match input {
            pb::face_input::Input::Embedding(e) => {
                engine.check_embedding(name, &e.values, &e.model_id)?;
                let mut v = e.values;
                ekyc_vision::models::l2_normalize(&mut v);
                Ok((Some(v), None, None))
            }
            pb::face_input::Input::Image(img) => {
                let field = format!("{name}.image");
                let bytes = image_bytes(&field, Some(img))?;
                let opts = EmbedOptions { largest_only: false, min_face_size_px: 0.0, embeddings: true };
                let r = engine.embed_image(&field, bytes, opts).await?;
                let embedder_id = &engine.vision().embedder.model.id;
                let usable: Vec<&FaceResult> = r.faces.iter().filter(|f| f.usable).collect();
                let Some(best) = usable.first() else {
                    let why = match r.faces.first() {
                        None => convert::reason(Code::NoFace, format!("{name}: no face found"), true),
                        Some(f) => {
                            let mut reason = f.issues.first().map(issue_reason).unwrap_or_else(|| convert::reason(Code::NoFace, "", true));
                            reason.message = format!("{name}: no usable face: {}", reason.message);
                            reason
                        }
                    };
                    reasons.push(pb::Reason { image_index: Some(index), ..why });
                    return Ok((None, None, Some(r)));
                };
                if usable.len() > 1 {
                    reasons.push(pb::Reason {
                        image_index: Some(index),
                        measured: Some(usable.len() as f64),
                        ..convert::reason(
                            Code::MultipleFaces,
                            format!("{name}: {} usable faces; the largest was compared", usable.len()),
                            false,
                        )
                    });
                }
                let face = convert::face(&best.face, embedder_id);
                let embedding = best.face.embedding.clone();
                Ok((embedding, Some(face), Some(r)))
            }
        }
    }

    async fn do_compare(&self, req: pb::CompareRequest) -> Result<pb::CompareResponse, FacematchError> {
        let started = Instant::now();
        let engine = self.engine()?;
        let mut reasons = Vec::new();
        let mut reasons_b = Vec::new();
        let (a, b) =
            futures::try_join!(self.side(&engine, "a", 0, req.a, &mut reasons), self.side(&engine, "b", 1, req.b, &mut reasons_b))?;
        reasons.append(&mut reasons_b);
        let threshold = engine.vision().match_threshold;
        let similarity = match (&a.0, &b.0) {
            (Some(x), Some(y)) => Some(ekyc_vision::cosine(x, y)),
            _ => None,
        };
        let score = similarity.and_then(|s| {
            engine.calibration().map(|c| {
                let fm = c.false_match(s);
                pb::MatchScore {
                    false_match_rate: fm.rate,
                    one_in: fm.one_in,
                    is_upper_bound: fm.upper_bound,
                    calibration_id: c.id.clone(),
                }
            })
        });
        let is_match = similarity.is_some_and(|s| s >= threshold);
        if let Some(s) = similarity.filter(|_| !is_match) {
            reasons.push(pb::Reason {
                measured: Some(f64::from(s)),
                limit: Some(f64::from(threshold)),
                ..convert::reason(Code::FaceMismatch, format!("similarity {s:.3} is below the threshold {threshold:.3}"), true)
            });
        }
        let images: Vec<&ImageResult> = [a.2.as_ref(), b.2.as_ref()].into_iter().flatten().collect();
        let mut models = convert::models(engine.vision());
        if images.is_empty() {
            models.retain(|m| m.role == "embedder");
        }
        Ok(pb::CompareResponse {
            similarity,
            is_match,
            threshold,
            score,
            face_a: a.1,
            face_b: b.1,
            reasons,
            models,
            timing: Some(timing(started, &images)),
        })
    }
}

#[tonic::async_trait]
impl FaceMatch for FaceMatchService {
    async fn embed(&self, request: Request<pb::EmbedRequest>) -> Result<Response<pb::EmbedResponse>, Status> {
        answer(crate::KIND, "Embed", self.do_embed(request.into_inner()).await)
    }

    async fn compare(&self, request: Request<pb::CompareRequest>) -> Result<Response<pb::CompareResponse>, Status> {
        answer(crate::KIND, "Compare", self.do_compare(request.into_inner()).await)
    }
}
