//! The gRPC adapter: validates the request in one place, calls the engine, and turns its
//! result into `ekyc.v1` messages. No image work happens here.

use std::sync::Arc;
use std::time::Instant;

use ekyc_proto::v1 as pb;
use ekyc_proto::v1::document_server::Document;
use ekyc_runtime::convert;
use ekyc_runtime::kit::{Holder, answer};
use tonic::{Request, Response, Status};

use crate::engine::{Engine, PhotoResult};
use crate::error::DocumentError;
use crate::extract::{Code, DocumentKind, ExtractOptions, OtherKind, Reason};

/// The service; answers UNAVAILABLE until the engine is loaded and warm.
#[derive(Debug, Clone)]
pub struct DocumentService {
    engine: Holder<Engine>,
}

impl DocumentService {
    pub fn new(engine: Holder<Engine>) -> Self {
        Self { engine }
    }

    fn engine(&self) -> Result<Arc<Engine>, DocumentError> {
        self.engine.loaded()
    }
}

fn code_pb(c: Code) -> pb::ReasonCode {
    use pb::ReasonCode as R;
    match c {
        Code::NoDocument => R::NoDocument,
        Code::NoPortrait => R::NoPortrait,
        Code::PortraitTooSmall => R::PortraitTooSmall,
        Code::Glare => R::Glare,
        Code::Blur => R::Blur,
        Code::DocumentCutOff => R::DocumentCutOff,
        Code::LooksLikeSelfie => R::LooksLikeSelfie,
        Code::GhostPortraitFound => R::GhostPortraitFound,
        Code::OtherFacesPresent => R::OtherFacesPresent,
        Code::GhostPortraitMismatch => R::GhostPortraitMismatch,
    }
}

fn reason_pb(r: &Reason) -> pb::Reason {
    pb::Reason {
        code: code_pb(r.code) as i32,
        message: r.message.clone(),
        image_index: None,
        step_index: None,
        face_index: r.face_index.map(|i| i as u32),
        measured: r.measured,
        limit: r.limit,
        blocking: r.blocking,
    }
}

fn kind_pb(k: Option<DocumentKind>) -> pb::DocumentType {
    match k {
        Some(DocumentKind::IdCard) => pb::DocumentType::IdCard,
        Some(DocumentKind::Passport) => pb::DocumentType::Passport,
        None => pb::DocumentType::Unspecified,
    }
}

/// The request's image bytes and options, validated.
fn validate(req: pb::ExtractPortraitRequest) -> Result<(Vec<u8>, ExtractOptions), DocumentError> {
    let data = req.image.map(|i| i.data).unwrap_or_default();
    if data.is_empty() {
        return Err(DocumentError::InvalidArgument("IMAGE_EMPTY: image: the image has no bytes".into()));
    }
    let kind_hint = match pb::DocumentType::try_from(req.type_hint) {
        Ok(pb::DocumentType::IdCard) => Some(DocumentKind::IdCard),
        Ok(pb::DocumentType::Passport) => Some(DocumentKind::Passport),
        Ok(pb::DocumentType::Unspecified) => None,
        Err(_) => return Err(DocumentError::InvalidArgument(format!("type_hint: unknown document type {}", req.type_hint))),
    };
    Ok((data, ExtractOptions { return_rectified: req.return_rectified_document, kind_hint }))
}

/// The engine's result as the response message.
pub fn response(r: &PhotoResult, engine: &Engine, started: Instant) -> pb::ExtractPortraitResponse {
    let e = &r.extraction;
    let embedder_id = engine.vision().embedder.model.id.as_str();
    let png = |data: &Vec<u8>| pb::Image { data: data.clone(), content_type: Some("image/png".into()) };
    let ms = |d: std::time::Duration| d.as_secs_f32() * 1000.0;
    let doc = e.document.as_ref();
    let portrait = e.portrait.as_ref();
    pb::ExtractPortraitResponse {
        found_document: doc.is_some(),
        document_score: doc.map_or(0.0, |d| d.score),
        document_type: kind_pb(doc.and_then(|d| d.kind)) as i32,
        document_corners: doc.map(|d| d.corners.iter().map(|p| convert::point(*p)).collect()).unwrap_or_default(),
        rotation_deg: doc.map_or(0, |d| d.rotation_deg),
        rectified_width_px: doc.map_or(0, |d| d.rectified_size.0),
        rectified_height_px: doc.map_or(0, |d| d.rectified_size.1),
        found_portrait: portrait.is_some(),
        portrait: portrait.map(|p| png(&p.png)),
        portrait_corners: portrait.map(|p| p.corners.iter().map(|c| convert::point(*c)).collect()).unwrap_or_default(),
        portrait_box_rectified: portrait.map(|p| convert::bbox(&p.box_rectified)),
        portrait_face: portrait.map(|p| convert::face(&p.face, embedder_id)),
        quality: Some(pb::DocumentQuality {
            portrait_size_px: e.quality.portrait_size_px,
            sharpness: e.quality.sharpness,
            glare_fraction: e.quality.glare_fraction,
            cut_off_fraction: e.quality.cut_off_fraction,
        }),
        other_faces: e
            .other_faces
            .iter()
            .map(|o| pb::OtherFace {
                kind: match o.kind {
                    OtherKind::Ghost => pb::OtherFaceKind::GhostPortrait,
                    OtherKind::Holder => pb::OtherFaceKind::HolderFace,
                    OtherKind::Other => pb::OtherFaceKind::Other,
                } as i32,
                face: Some(convert::face(&o.face, embedder_id)),
                similarity_to_portrait: o.similarity,
            })
            .collect(),
        rectified_document: e.rectified_png.as_ref().map(png),
        reasons: e.reasons.iter().map(reason_pb).collect(),
        image_info: Some(pb::ImageInfo {
            width_px: r.width,
            height_px: r.height,
            content_type: r.meta.content_type.to_string(),
            exif_orientation: u32::from(r.meta.exif_orientation),
            sha256: r.sha256.clone(),
        }),
        models: {
            let mut m = vec![pb::ModelInfo {
                role: "document_detector".into(),
                model_id: concat!("ekyc-quad-", env!("CARGO_PKG_VERSION")).into(),
                sha256: String::new(),
            }];
            m.extend(convert::models(engine.vision()));
            m
        },
        timing: Some(pb::Timing { queue_ms: ms(r.queue), inference_ms: ms(r.inference), total_ms: ms(started.elapsed()) }),
    }
}

impl DocumentService {
    async fn do_extract(&self, req: pb::ExtractPortraitRequest) -> Result<pb::ExtractPortraitResponse, DocumentError> {
        let started = Instant::now();
        let engine = self.engine()?;
        let (bytes, opts) = validate(req)?;
        let r = engine.extract("image", bytes, opts).await?;
        Ok(response(&r, &engine, started))
    }
}

#[tonic::async_trait]
impl Document for DocumentService {
    async fn extract_portrait(
        &self,
        request: Request<pb::ExtractPortraitRequest>,
    ) -> Result<Response<pb::ExtractPortraitResponse>, Status> {
        answer(crate::KIND, "ExtractPortrait", self.do_extract(request.into_inner()).await)
    }
}
