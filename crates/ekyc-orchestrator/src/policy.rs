//! Policies: one per procedure, saying which evidence is required, how the factors are
//! weighted and where the outcomes lie. Two ship built in:
//!
//! - `low-risk`: liveness and a document whose portrait matches the live face; a signature
//!   is welcome but not needed.
//! - `resident-certificate`: follows the ministry's position on certificate requests
//!   (住民票等の交付請求): a face match alone can reach `REVIEW` at most (refer to staff);
//!   `ACCEPT` needs a valid signature over the session's to-be-signed bytes with the My
//!   Number card's JPKI user-authentication certificate (利用者証明用電子証明書, the one
//!   the ministry's ordinance names for online requests; profile
//!   `jpki-user-authentication`).
//!
//! A policy's version is its revision plus a digest of its rules, so any change of a rule or
//! threshold changes the version recorded in evidence.

use std::collections::BTreeMap;

use ekyc_proto::v1::{EvidenceKind, PolicySummary};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Weights of the factors in the assurance score (normalised over the factors reported).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    pub liveness: f32,
    pub face_match: f32,
    pub document_quality: f32,
    pub identity_consistency: f32,
    pub signature: f32,
    /// Presentation-attack detection (the liveness service's PAD).
    pub presentation_attack: f32,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            liveness: 0.3,
            face_match: 0.35,
            document_quality: 0.1,
            identity_consistency: 0.1,
            signature: 0.15,
            presentation_attack: 0.15,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// What the policy is for, in English.
    pub description: String,
    /// Operator's revision number, part of the version.
    pub revision: u32,
    /// Evidence that must be given before Finish.
    pub require_frames: bool,
    pub require_document: bool,
    pub require_signature: bool,
    /// Without a valid signature the best outcome is REVIEW (POLICY_REQUIRES_SIGNATURE).
    pub accept_requires_signature: bool,
    /// Liveness challenge steps including the frontal one (2..=5).
    pub challenge_steps: u32,
    /// Lifetime of a session, in seconds (capped by the liveness challenge's lifetime).
    pub session_ttl_s: u64,
    /// Minimum assurance score for ACCEPT and for REVIEW, in [0, 1].
    pub accept_threshold: f32,
    pub review_threshold: f32,
    /// Cosine similarity the live face must reach against the document portrait; unset:
    /// the facematch service's threshold.
    pub face_match_threshold: Option<f32>,
    /// Similarity above the threshold at which the face-match factor scores 1 (it scores
    /// 0.5 at the threshold and 0 this far below it).
    pub face_match_margin: f32,
    /// The certificate profile a signature's leaf must fit (`jpki-user-authentication`,
    /// `jpki-signing`); unset: any certificate that chains to a trust anchor.
    pub signature_profile: Option<String>,
    /// PAD attack score (in [0, 1]) at or above which the session is referred to staff
    /// (REVIEW at best, PRESENTATION_ATTACK_SUSPECTED as a warning); at or above the
    /// liveness service's own PAD threshold the liveness factor fails (REJECT).
    pub pad_review_score: f32,
    /// Whether a verdict without presentation-attack detection (the liveness service runs
    /// with `pad.enabled = false`) can be accepted. True in every real policy: such a
    /// session is referred to staff (PAD_NOT_CHECKED). Only test rigs that do not test PAD
    /// set it false, and say so.
    pub require_pad: bool,
    pub weights: Weights,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            description: String::new(),
            revision: 1,
            require_frames: true,
            require_document: true,
            require_signature: false,
            accept_requires_signature: false,
            challenge_steps: 3,
            session_ttl_s: 600,
            accept_threshold: 0.75,
            review_threshold: 0.5,
            face_match_threshold: None,
            face_match_margin: 0.15,
            signature_profile: None,
            pad_review_score: 0.3,
            require_pad: true,
            weights: Weights::default(),
        }
    }
}

/// The built-in policies.
pub fn builtin() -> BTreeMap<String, PolicyConfig> {
    let low = PolicyConfig {
        description: "Low-risk procedures: a live person (head-pose challenge) whose face matches the portrait of a photo-ID; \
                      a signature raises the score but is not needed."
            .into(),
        ..PolicyConfig::default()
    };
    let resident = PolicyConfig {
        description: "Certificate requests (resident record and the like): liveness and a photo-ID match reach REVIEW at most; \
                      ACCEPT requires a valid signature over the session's to-be-signed bytes with the My Number card's \
                      JPKI user-authentication certificate."
            .into(),
        accept_requires_signature: true,
        signature_profile: Some(ekyc_signature::CertificateProfile::JpkiUserAuthentication.name().to_string()),
        accept_threshold: 0.8,
        weights: Weights { signature: 0.3, ..Weights::default() },
        ..PolicyConfig::default()
    };
    BTreeMap::from([("low-risk".to_string(), low), ("resident-certificate".to_string(), resident)])
}

impl PolicyConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=5).contains(&self.challenge_steps) {
            return Err("challenge_steps must be 2 to 5".into());
        }
        if !self.require_frames && !self.require_document && !self.require_signature {
            return Err("a policy must require some evidence".into());
        }
        let unit = |x: f32| (0.0..=1.0).contains(&x);
        if !unit(self.accept_threshold) || !unit(self.review_threshold) || self.review_threshold > self.accept_threshold {
            return Err("need 0 <= review_threshold <= accept_threshold <= 1".into());
        }
        if self.face_match_threshold.is_some_and(|t| !(-1.0..=1.0).contains(&t)) {
            return Err("similarity thresholds are cosines in [-1, 1]".into());
        }
        if self.face_match_margin <= 0.0 {
            return Err("face_match_margin must be positive".into());
        }
        let w = &self.weights;
        let all = [w.liveness, w.face_match, w.document_quality, w.identity_consistency, w.signature, w.presentation_attack];
        if !(0.0..=1.0).contains(&self.pad_review_score) {
            return Err("pad_review_score must lie in [0, 1]".into());
        }
        if all.iter().any(|x| !x.is_finite() || *x < 0.0) || all.iter().sum::<f32>() <= 0.0 {
            return Err("weights must be non-negative and not all zero".into());
        }
        if self.session_ttl_s == 0 {
            return Err("session_ttl_s must be at least 1".into());
        }
        if let Some(p) = &self.signature_profile {
            ekyc_signature::CertificateProfile::lookup(p).map_err(|e| format!("signature_profile: {e}"))?;
        }
        Ok(())
    }
}

/// A policy ready to apply: its name, version and rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub version: String,
    pub rules: PolicyConfig,
}

impl Policy {
    pub fn new(name: &str, rules: PolicyConfig) -> Policy {
        // serde_json of a struct of plain fields is deterministic (field order is fixed).
        let digest = Sha256::digest(serde_json::to_vec(&rules).unwrap_or_default());
        let version = format!("{}.{}", rules.revision, &hex::encode(digest)[..12]);
        Policy { name: name.to_string(), version, rules }
    }

    pub fn summary(&self) -> PolicySummary {
        let r = &self.rules;
        let kinds = [
            (EvidenceKind::Frames, r.require_frames),
            (EvidenceKind::Document, r.require_document),
            (EvidenceKind::Signature, r.require_signature),
        ];
        let required = kinds.iter().filter(|(_, req)| *req).map(|(k, _)| *k as i32).collect();
        let optional = kinds.iter().filter(|(_, req)| !*req).map(|(k, _)| *k as i32).collect();
        PolicySummary {
            name: self.name.clone(),
            version: self.version.clone(),
            description: r.description.clone(),
            required_evidence: required,
            optional_evidence: optional,
            accept_requires_signature: r.accept_requires_signature,
            challenge_steps: r.challenge_steps,
            accept_threshold: r.accept_threshold,
            review_threshold: r.review_threshold,
            session_ttl_ms: u32::try_from(r.session_ttl_s.saturating_mul(1000)).unwrap_or(u32::MAX),
            signature_profile: r.signature_profile.clone().unwrap_or_default(),
        }
    }
}

/// All configured policies.
#[derive(Debug, Clone)]
pub struct Policies {
    by_name: BTreeMap<String, Policy>,
    default: String,
}

impl Policies {
    pub fn new(configs: &BTreeMap<String, PolicyConfig>, default: &str) -> Policies {
        let by_name = configs.iter().map(|(n, c)| (n.clone(), Policy::new(n, c.clone()))).collect();
        Policies { by_name, default: default.to_string() }
    }

    /// The named policy; the default for an empty name.
    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.by_name.get(if name.is_empty() { self.default.as_str() } else { name })
    }

    pub fn default_name(&self) -> &str {
        &self.default
    }

    pub fn all(&self) -> impl Iterator<Item = &Policy> {
        self.by_name.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_valid_and_versions_follow_the_rules() {
        for (name, p) in builtin() {
            p.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let rules = builtin().remove("low-risk").expect("low-risk");
        let a = Policy::new("low-risk", rules.clone());
        assert_eq!(a, Policy::new("low-risk", rules.clone()), "same rules, same version");
        let b = Policy::new("low-risk", PolicyConfig { accept_threshold: 0.76, ..rules.clone() });
        assert_ne!(a.version, b.version, "a threshold change changes the version");
        let c = Policy::new("low-risk", PolicyConfig { revision: 2, ..rules });
        assert!(c.version.starts_with("2."), "{}", c.version);
    }

    #[test]
    fn resident_certificate_needs_a_signature_to_accept() {
        let p = Policies::new(&builtin(), "low-risk");
        let rc = p.get("resident-certificate").expect("shipped").summary();
        assert!(rc.accept_requires_signature);
        assert_eq!(rc.required_evidence, vec![EvidenceKind::Frames as i32, EvidenceKind::Document as i32]);
        assert_eq!(p.get("").map(|x| x.name.as_str()), Some("low-risk"));
        assert!(p.get("nope").is_none());
    }

    #[test]
    fn invalid_rules_are_refused() {
        let bad = [
            PolicyConfig { challenge_steps: 1, ..PolicyConfig::default() },
            PolicyConfig { review_threshold: 0.9, accept_threshold: 0.8, ..PolicyConfig::default() },
            PolicyConfig { require_frames: false, require_document: false, ..PolicyConfig::default() },
            PolicyConfig { weights: Weights { liveness: -1.0, ..Weights::default() }, ..PolicyConfig::default() },
        ];
        for p in bad {
            assert!(p.validate().is_err(), "{p:?}");
        }
    }
}
