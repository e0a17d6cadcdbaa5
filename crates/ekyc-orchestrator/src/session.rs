//! What a session keeps between calls: scores, digests, the liveness service's sealed frame
//! attestations (opaque here), the results the services returned (protobuf bytes), the
//! embeddings of the frontal frame and the portrait until the decision, and the bytes the
//! signer had to sign. Never an image. Serialised as JSON and stored only as a whole sealed
//! record ([`crate::sessions`]), so nothing in it is readable or changeable in the store.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use ekyc_proto::v1::{Challenge, DocumentCheck, Embedding, FrameCheck, ModelInfo, SignatureCheck, VerificationResult};
use prost::Message;
use serde::{Deserialize, Serialize};

/// Serde of byte strings as unpadded base64.
mod b64 {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text).map_err(serde::de::Error::custom)
    }
}

/// Where a session is in its life (expiry is a matter of time, see [`Session::expired`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Collecting,
    Finished,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptFrame {
    /// prost-encoded [`FrameCheck`].
    #[serde(with = "b64")]
    pub check: Vec<u8>,
    pub satisfied: bool,
    /// The liveness service's attestation of the frame, sealed for the liveness service
    /// alone: opaque to the orchestrator.
    #[serde(with = "b64")]
    pub attestation: Vec<u8>,
    pub embedding: Option<KeptEmbedding>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub frames_received: u32,
    pub kept: Option<KeptFrame>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptDocument {
    /// prost-encoded [`DocumentCheck`].
    #[serde(with = "b64")]
    pub check: Vec<u8>,
    pub usable: bool,
    pub embedding: Option<KeptEmbedding>,
}

/// A face embedding as the session keeps it until the decision (inside the sealed record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptEmbedding {
    pub model_id: String,
    pub values: Vec<f32>,
}

impl KeptEmbedding {
    pub fn from_proto(e: &Embedding) -> Option<KeptEmbedding> {
        (!e.values.is_empty() && e.values.iter().all(|v| v.is_finite()))
            .then(|| KeptEmbedding { model_id: e.model_id.clone(), values: e.values.clone() })
    }

    pub fn to_proto(&self) -> Embedding {
        Embedding { model_id: self.model_id.clone(), values: self.values.clone() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptSignature {
    /// prost-encoded [`SignatureCheck`].
    #[serde(with = "b64")]
    pub check: Vec<u8>,
    pub valid: bool,
}

/// The digest of one image the session received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageDigest {
    /// "frame" or "document".
    pub kind: String,
    pub step_index: Option<u32>,
    pub sha256: String,
    pub received_at_unix_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub policy: String,
    pub policy_version: String,
    pub phase: Phase,
    pub created_at_unix_ms: i64,
    pub expires_at_unix_ms: i64,
    /// While a Finish is under way (it consumes the challenge), other Finish calls wait for
    /// it; past this time a crashed Finish no longer blocks the session.
    pub finishing_until_unix_ms: i64,
    pub client_reference: Option<String>,
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// prost-encoded [`Challenge`].
    #[serde(with = "b64")]
    pub challenge: Vec<u8>,
    pub steps: Vec<StepRecord>,
    pub document: Option<KeptDocument>,
    pub documents_received: u32,
    pub signature: Option<KeptSignature>,
    pub signatures_received: u32,
    /// The exact bytes a signature must be over (StartSessionResponse.to_be_signed).
    #[serde(with = "b64")]
    pub to_be_signed: Vec<u8>,
    pub images: Vec<ImageDigest>,
    /// Models the services reported (role, id, sha256), deduplicated.
    pub models: Vec<(String, String, String)>,
    /// prost-encoded [`VerificationResult`] once finished.
    pub result: Option<String>,
}

impl Session {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a session serialises: plain data, this is a bug otherwise")
    }

    pub fn from_bytes(b: &[u8]) -> Result<Session, String> {
        serde_json::from_slice(b).map_err(|e| format!("stored session is unreadable: {e}"))
    }

    pub fn expired(&self, now_ms: i64) -> bool {
        self.phase == Phase::Collecting && now_ms >= self.expires_at_unix_ms
    }

    pub fn challenge(&self) -> Challenge {
        Challenge::decode(self.challenge.as_slice()).unwrap_or_default()
    }

    pub fn frame_check(k: &KeptFrame) -> FrameCheck {
        FrameCheck::decode(k.check.as_slice()).unwrap_or_default()
    }

    pub fn document_check(&self) -> Option<DocumentCheck> {
        self.document.as_ref().map(|d| DocumentCheck::decode(d.check.as_slice()).unwrap_or_default())
    }

    pub fn signature_check(&self) -> Option<SignatureCheck> {
        self.signature.as_ref().map(|s| SignatureCheck::decode(s.check.as_slice()).unwrap_or_default())
    }

    pub fn result(&self) -> Option<VerificationResult> {
        let text = self.result.as_ref()?;
        let raw = B64.decode(text).ok()?;
        VerificationResult::decode(raw.as_slice()).ok()
    }

    pub fn set_result(&mut self, r: &VerificationResult) {
        self.result = Some(B64.encode(r.encode_to_vec()));
    }

    pub fn add_models(&mut self, models: &[ModelInfo]) {
        for m in models {
            let t = (m.role.clone(), m.model_id.clone(), m.sha256.clone());
            if !self.models.contains(&t) {
                self.models.push(t);
            }
        }
    }

    pub fn model_infos(&self) -> Vec<ModelInfo> {
        self.models
            .iter()
            .map(|(role, model_id, sha256)| ModelInfo { role: role.clone(), model_id: model_id.clone(), sha256: sha256.clone() })
            .collect()
    }
}
