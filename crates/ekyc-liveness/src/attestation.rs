//! Frame attestations: what `CheckFrame` measured on one frame (faces, poses, embedding,
//! digests, the crop patterns used for replay and mirror checks, and whether the frame
//! was seen in an earlier challenge), sealed for the liveness service alone. A caller that
//! receives frames one at a time (a chat bot, the orchestrator) keeps these opaque blobs
//! instead of the images and hands them to `VerifyChallenge`, which trusts them only when
//! they open under the challenge they are presented with.
//!
//! Encoding: one [`Keyring::seal`] blob of kind `liveness-attestation`, id the challenge's
//! nonce, revision 1 (AES-256-GCM, the associated data binding kind and nonce), around a
//! JSON payload. Whoever holds an attestation without the liveness keyring learns nothing
//! of the embedding or the crop pattern, cannot alter it, and cannot present it for
//! another challenge. The embedding travels as little-endian f32 bytes and the crop
//! crop pattern quantised to i8 (its mirror image is rebuilt from it), which keeps an
//! attestation near 10 KiB.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ekyc_runtime::seal::Keyring;
use ekyc_vision::Face;
use serde::{Deserialize, Serialize};

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
    /// The crop pattern; its mirror image is rebuilt on decoding (rows reversed).
    crop_pattern: Option<Quantised>,
    /// The frame was seen in an earlier challenge when it was checked.
    replayed: bool,
    /// Its face crop's perceptual hash was seen in an earlier challenge.
    #[serde(default)]
    resembles_earlier: bool,
    /// What PAD measured (compact numbers, no pixels).
    #[serde(default)]
    pad: Option<crate::pad::FrameCues>,
    /// When the service received the frame, Unix ms (the order of the steps).
    #[serde(default)]
    checked_ms: Option<i64>,
}

/// Kind of the sealed blob.
const KIND: &str = "liveness-attestation";

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

/// A square crop pattern with each row reversed: the pattern of the mirrored crop.
fn mirrored(pattern: &[f32]) -> Result<Vec<f32>, AttestationError> {
    let side = (pattern.len() as f64).sqrt() as usize;
    if side * side != pattern.len() {
        return Err(AttestationError::Malformed);
    }
    Ok(pattern.chunks_exact(side).flat_map(|row| row.iter().rev().copied()).collect())
}

/// Seals what was measured on one frame of challenge `nonce`.
pub fn encode(keys: &Keyring, nonce: &str, input: &FrameInput, a: &FrameAnalysis) -> Result<Vec<u8>, ekyc_runtime::seal::SealError> {
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
        crop_pattern: a.crop_pattern.as_deref().map(quantise),
        replayed: a.replayed,
        resembles_earlier: a.resembles_earlier,
        pad: a.pad.clone(),
        checked_ms: a.checked_ms,
    };
    let json = serde_json::to_vec(&payload).expect("the payload serialises: this is a bug");
    keys.seal(KIND, nonce, 1, &json)
}

/// Why an attestation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttestationError {
    Malformed,
    /// Altered, sealed for another challenge, or not sealed by this keyring.
    DoesNotOpen,
}

/// Verifies and opens an attestation for challenge `nonce`.
pub fn decode(keys: &Keyring, nonce: &str, bytes: &[u8]) -> Result<(FrameInput, FrameAnalysis), AttestationError> {
    if bytes.len() > MAX_BYTES {
        return Err(AttestationError::Malformed);
    }
    let json = keys.open(KIND, nonce, 1, bytes).map_err(|_| AttestationError::DoesNotOpen)?;
    let p: Payload = serde_json::from_slice(&json).map_err(|_| AttestationError::Malformed)?;
    // The associated data already binds the nonce; the copy inside is checked all the same.
    if p.v != 1 || p.nonce != nonce {
        return Err(AttestationError::Malformed);
    }
    let embedding = match p.embedding {
        Some(e) => {
            let raw = URL_SAFE_NO_PAD.decode(e).map_err(|_| AttestationError::Malformed)?;
            Some(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        }
        None => None,
    };
    let crop_pattern = p.crop_pattern.map(|q| dequantise(&q).ok_or(AttestationError::Malformed)).transpose()?;
    let crop_pattern_mirrored = crop_pattern.as_deref().map(mirrored).transpose()?;
    let analysis = FrameAnalysis {
        sha256: p.sha256,
        pixels_sha256: p.pixels_sha256,
        corrupt: p.corrupt,
        faces: p.faces,
        embedding,
        crop_pattern,
        crop_pattern_mirrored,
        replayed: p.replayed,
        resembles_earlier: p.resembles_earlier,
        pad: p.pad,
        checked_ms: p.checked_ms,
        face_hash: None,
    };
    Ok((FrameInput { step_index: p.step_index, capture_ms: p.capture_ms }, analysis))
}
