//! Frame attestations: what `CheckFrame` measured on one frame (faces, poses, embedding,
//! digests and the crop signatures used for replay and mirror checks), bound to its
//! challenge by the service's HMAC. A caller that receives frames one at a time (a chat
//! bot) keeps these instead of the images and hands them to `VerifyChallenge`, which
//! trusts them only when the MAC verifies and the challenge matches.
//!
//! Encoding: `base64url(json) "." base64url(HMAC-SHA256)`. The embedding travels as
//! little-endian f32 bytes and the crop signature quantised to i8 (its mirror image is
//! rebuilt from it), which keeps an attestation near 12 KiB.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ekyc_vision::Face;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::verify::{FrameAnalysis, FrameInput};

/// Largest attestation accepted, in bytes.
pub const MAX_BYTES: usize = 16 * 1024;

#[derive(Serialize, Deserialize)]
struct Payload {
    v: u8,
    nonce: String,
    step_index: usize,
    capture_ms: Option<i64>,
    sha256: String,
    pixels_sha256: String,
    corrupt: Option<String>,
    faces: Vec<Face>,
    embedding: Option<String>,
    /// The crop signature; its mirror image is rebuilt on decoding (rows reversed).
    signature: Option<Quantised>,
}

#[derive(Serialize, Deserialize)]
struct Quantised {
    scale: f32,
    values: String,
}

fn quantise(v: &[f32]) -> Quantised {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-12);
    let bytes: Vec<u8> = v.iter().map(|x| ((x / max * 127.0).round() as i8) as u8).collect();
    Quantised { scale: max / 127.0, values: URL_SAFE_NO_PAD.encode(bytes) }
}

fn dequantise(q: &Quantised) -> Option<Vec<f32>> {
    let bytes = URL_SAFE_NO_PAD.decode(&q.values).ok()?;
    let mut v: Vec<f32> = bytes.into_iter().map(|b| f32::from(b as i8) * q.scale).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
    Some(v)
}

/// A square signature with each row reversed: the signature of the mirrored crop.
fn mirrored(sig: &[f32]) -> Result<Vec<f32>, AttestationError> {
    let side = (sig.len() as f64).sqrt() as usize;
    if side * side != sig.len() {
        return Err(AttestationError::Malformed);
    }
    Ok(sig.chunks_exact(side).flat_map(|row| row.iter().rev().copied()).collect())
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length: this is a bug");
    m.update(b"ekyc-liveness-attestation|");
    m
}

/// Signs what was measured on one frame of challenge `nonce`.
pub fn encode(key: &[u8], nonce: &str, input: &FrameInput, a: &FrameAnalysis) -> Vec<u8> {
    let payload = Payload {
        v: 1,
        nonce: nonce.to_string(),
        step_index: input.step_index,
        capture_ms: input.capture_ms,
        sha256: a.sha256.clone(),
        pixels_sha256: a.pixels_sha256.clone(),
        corrupt: a.corrupt.clone(),
        faces: a.faces.iter().map(|f| Face { embedding: None, mesh: Vec::new(), ..f.clone() }).collect(),
        embedding: a.embedding.as_ref().map(|e| URL_SAFE_NO_PAD.encode(e.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())),
        signature: a.signature.as_deref().map(quantise),
    };
    let json = serde_json::to_vec(&payload).expect("the payload serialises: this is a bug");
    let body = URL_SAFE_NO_PAD.encode(json);
    let mut m = mac(key);
    m.update(body.as_bytes());
    let tag = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{body}.{tag}").into_bytes()
}

/// Why an attestation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttestationError {
    Malformed,
    BadMac,
    OtherChallenge,
}

/// Verifies and opens an attestation for challenge `nonce`.
pub fn decode(key: &[u8], nonce: &str, bytes: &[u8]) -> Result<(FrameInput, FrameAnalysis), AttestationError> {
    if bytes.len() > MAX_BYTES {
        return Err(AttestationError::Malformed);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| AttestationError::Malformed)?;
    let (body, tag) = text.split_once('.').ok_or(AttestationError::Malformed)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| AttestationError::Malformed)?;
    let mut m = mac(key);
    m.update(body.as_bytes());
    m.verify_slice(&tag).map_err(|_| AttestationError::BadMac)?;
    let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| AttestationError::Malformed)?;
    let p: Payload = serde_json::from_slice(&json).map_err(|_| AttestationError::Malformed)?;
    if p.v != 1 {
        return Err(AttestationError::Malformed);
    }
    if p.nonce != nonce {
        return Err(AttestationError::OtherChallenge);
    }
    let embedding = match p.embedding {
        Some(e) => {
            let raw = URL_SAFE_NO_PAD.decode(e).map_err(|_| AttestationError::Malformed)?;
            Some(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        }
        None => None,
    };
    let signature = p.signature.map(|q| dequantise(&q).ok_or(AttestationError::Malformed)).transpose()?;
    let signature_mirrored = signature.as_deref().map(mirrored).transpose()?;
    let analysis = FrameAnalysis {
        sha256: p.sha256,
        pixels_sha256: p.pixels_sha256,
        corrupt: p.corrupt,
        faces: p.faces,
        embedding,
        signature,
        signature_mirrored,
    };
    Ok((FrameInput { step_index: p.step_index, capture_ms: p.capture_ms }, analysis))
}
