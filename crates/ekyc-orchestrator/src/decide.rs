//! The decision as a pure function: the evidence a session gathered and its policy go in,
//! the factors, the assurance score, the decision and its reasons come out.
//!
//! Rules, in order:
//! 1. Every factor scores in [0, 1]; weights of the factors reported are normalised to sum
//!    to 1 and the score is the weighted sum. A factor whose backend could not be reached is
//!    not scored; the decision is then `REVIEW` at best (`BACKEND_UNAVAILABLE`), never
//!    `ACCEPT`.
//! 2. A required factor that failed on the user's evidence means `REJECT`.
//! 3. Below `review_threshold`: `REJECT`; below `accept_threshold`: `REVIEW`.
//! 4. `ACCEPT` also needs: a valid signature when the policy says so
//!    (`POLICY_REQUIRES_SIGNATURE`), no signature that was given and failed, a PAD attack
//!    score below the policy's `pad_review_score` (PRESENTATION_ATTACK_SUSPECTED as a
//!    warning) and, unless the policy says it does not test PAD (`require_pad = false`),
//!    presentation-attack detection that ran (PAD_NOT_CHECKED).
//!
//! The PAD factor scores `1 - attack score` and fails (a required factor: REJECT) when the
//! liveness service's own threshold is reached.

use ekyc_proto::v1::{Decision, Factor, FactorKind, MatchScore, Reason, ReasonCode};

use crate::policy::Policy;

/// What the liveness challenge came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T> {
    /// Not part of this session (optional evidence not given).
    Absent,
    /// The backend could not be asked; the reason says why.
    Unavailable(Reason),
    Measured(T),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Liveness {
    pub passed: bool,
    pub score: f32,
    pub reasons: Vec<Reason>,
    /// What presentation-attack detection found; `None` when the liveness service does not
    /// run it.
    pub pad: Option<Pad>,
}

/// The liveness service's presentation-attack detection on the challenge.
#[derive(Debug, Clone, PartialEq)]
pub struct Pad {
    pub attack_score: f32,
    /// The liveness service's threshold (an attack at or above it fails liveness).
    pub threshold: f32,
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FaceMatch {
    /// None when a side had no usable face.
    pub similarity: Option<f32>,
    pub threshold: f32,
    pub match_score: Option<MatchScore>,
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DocumentQuality {
    pub usable: bool,
    /// Blocking reasons and warnings from the document service.
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// Lowest similarity of a challenge frame to the frontal frame.
    pub min_frame_similarity: Option<f32>,
    /// The liveness service's same-person threshold (the one its verdict applied).
    pub threshold: f32,
    /// FACE_CHANGED, GHOST_PORTRAIT_MISMATCH, OTHER_FACES_PRESENT, ...
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub valid: bool,
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub liveness: Outcome<Liveness>,
    pub face_match: Outcome<FaceMatch>,
    pub document: Outcome<DocumentQuality>,
    pub identity: Outcome<Identity>,
    pub signature: Outcome<Signature>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub decision: Decision,
    pub score: f32,
    pub factors: Vec<Factor>,
    pub reasons: Vec<Reason>,
}

pub fn reason(code: ReasonCode, message: impl Into<String>, blocking: bool) -> Reason {
    Reason { code: code as i32, message: message.into(), blocking, ..Reason::default() }
}

fn factor(kind: FactorKind, weight: f32, required: bool, score: f32, passed: bool, reasons: Vec<Reason>) -> Factor {
    Factor { kind: kind as i32, score: clamp01(score), weight, passed, required, reasons, ..Factor::default() }
}

fn clamp01(x: f32) -> f32 {
    if x.is_finite() { x.clamp(0.0, 1.0) } else { 0.0 }
}

/// Applies `policy` to `evidence`.
pub fn decide(policy: &Policy, evidence: &Evidence) -> Verdict {
    let r = &policy.rules;
    let w = &r.weights;
    let mut factors: Vec<Factor> = Vec::new();
    let mut reasons: Vec<Reason> = Vec::new();
    let mut unavailable = false;
    let mut pad_review: Option<Reason> = None;
    match &evidence.liveness {
        Outcome::Absent => {}
        Outcome::Unavailable(why) => {
            unavailable = true;
            reasons.push(why.clone());
        }
        Outcome::Measured(l) => {
            factors.push(factor(
                FactorKind::Liveness,
                w.liveness,
                r.require_frames,
                if l.passed { l.score } else { 0.0 },
                l.passed,
                l.reasons.clone(),
            ));
            match &l.pad {
                Some(p) => {
                    let passed = p.attack_score < p.threshold;
                    factors.push(factor(
                        FactorKind::PresentationAttack,
                        w.presentation_attack,
                        r.require_frames,
                        1.0 - p.attack_score,
                        passed,
                        p.reasons.clone(),
                    ));
                    if let Some(f) = factors.last_mut() {
                        f.threshold = Some(p.threshold);
                    }
                    if passed && p.attack_score >= r.pad_review_score {
                        let mut x = reason(
                            ReasonCode::PresentationAttackSuspected,
                            "presentation-attack detection is not sure this was a live person: refer to staff",
                            false,
                        );
                        (x.measured, x.limit) = (Some(f64::from(p.attack_score)), Some(f64::from(r.pad_review_score)));
                        pad_review = Some(x);
                    }
                }
                None if r.require_pad => {
                    pad_review = Some(reason(
                        ReasonCode::PadNotChecked,
                        "the liveness service did not run presentation-attack detection: refer to staff",
                        false,
                    ));
                }
                None => {}
            }
        }
    }
    match &evidence.face_match {
        Outcome::Absent => {}
        Outcome::Unavailable(why) => {
            unavailable = true;
            reasons.push(why.clone());
        }
        Outcome::Measured(m) => {
            let (score, passed) = match m.similarity {
                Some(s) => (0.5 + (s - m.threshold) / (2.0 * r.face_match_margin), s >= m.threshold),
                None => (0.0, false),
            };
            let mut fr = m.reasons.clone();
            if !passed && m.similarity.is_some() {
                fr.push(reason(ReasonCode::FaceMismatch, "the live face does not match the document portrait", true));
            }
            factors.push(factor(FactorKind::FaceMatch, w.face_match, r.require_frames && r.require_document, score, passed, fr));
            if let Some(f) = factors.last_mut() {
                f.similarity = m.similarity;
                f.threshold = Some(m.threshold);
                f.match_score = m.match_score.clone();
            }
        }
    }
    match &evidence.document {
        Outcome::Absent => {}
        Outcome::Unavailable(why) => {
            unavailable = true;
            reasons.push(why.clone());
        }
        Outcome::Measured(d) => {
            let warnings = d.reasons.iter().filter(|x| !x.blocking).count() as f32;
            let score = if d.usable { (1.0 - 0.15 * warnings).max(0.5) } else { 0.0 };
            factors.push(factor(FactorKind::DocumentQuality, w.document_quality, r.require_document, score, d.usable, d.reasons.clone()));
        }
    }
    match &evidence.identity {
        Outcome::Absent => {}
        Outcome::Unavailable(why) => {
            unavailable = true;
            reasons.push(why.clone());
        }
        Outcome::Measured(i) => {
            let blocking = i.reasons.iter().any(|x| x.blocking);
            let base = match i.min_frame_similarity {
                // 0.5 at the same-person threshold, 1 at 0.9 and above.
                Some(s) => 0.5 + 0.5 * (s - i.threshold) / (0.9 - i.threshold).max(0.05),
                None => 0.75,
            };
            let warnings = i.reasons.iter().filter(|x| !x.blocking).count() as f32;
            let score = if blocking { 0.0 } else { clamp01(base) - 0.1 * warnings };
            let passed = !blocking && i.min_frame_similarity.is_none_or(|s| s >= i.threshold);
            factors.push(factor(
                FactorKind::IdentityConsistency,
                w.identity_consistency,
                r.require_frames,
                score,
                passed,
                i.reasons.clone(),
            ));
        }
    }
    let mut signature_valid = false;
    let mut signature_failed = false;
    match &evidence.signature {
        Outcome::Absent => {}
        Outcome::Unavailable(why) => {
            unavailable = true;
            reasons.push(why.clone());
        }
        Outcome::Measured(s) => {
            signature_valid = s.valid;
            signature_failed = !s.valid;
            factors.push(factor(
                FactorKind::Signature,
                w.signature,
                r.require_signature,
                if s.valid { 1.0 } else { 0.0 },
                s.valid,
                s.reasons.clone(),
            ));
        }
    }

    // Normalise the weights over the factors reported; contributions sum to the score.
    // When every factor reported has weight zero (a policy may weigh some factors zero),
    // they count equally.
    let total: f32 = factors.iter().map(|f| f.weight).sum();
    let n = factors.len().max(1) as f32;
    for f in &mut factors {
        f.weight = if total > 0.0 { f.weight / total } else { 1.0 / n };
        f.contribution = f.weight * f.score;
    }
    let score = clamp01(factors.iter().map(|f| f.contribution).sum());

    let failed_required: Vec<&Factor> = factors.iter().filter(|f| f.required && !f.passed).collect();
    let decision = if !failed_required.is_empty() {
        for f in &failed_required {
            let code = match FactorKind::try_from(f.kind) {
                Ok(FactorKind::Liveness) => ReasonCode::LivenessFailed,
                Ok(FactorKind::FaceMatch) => ReasonCode::FaceMismatch,
                Ok(FactorKind::Signature) => ReasonCode::SignatureInvalid,
                Ok(FactorKind::PresentationAttack) => ReasonCode::PresentationAttackSuspected,
                Ok(FactorKind::DocumentQuality) => {
                    f.reasons.iter().find(|x| x.blocking).and_then(|x| ReasonCode::try_from(x.code).ok()).unwrap_or(ReasonCode::NoPortrait)
                }
                _ => {
                    f.reasons.iter().find(|x| x.blocking).and_then(|x| ReasonCode::try_from(x.code).ok()).unwrap_or(ReasonCode::FaceChanged)
                }
            };
            let name = FactorKind::try_from(f.kind).map(|k| k.as_str_name()).unwrap_or("FACTOR");
            reasons.push(reason(code, format!("required factor {name} failed"), true));
        }
        Decision::Reject
    } else if score < r.review_threshold {
        let mut x = reason(ReasonCode::ScoreBelowThreshold, "assurance score below the review threshold", true);
        (x.measured, x.limit) = (Some(f64::from(score)), Some(f64::from(r.review_threshold)));
        reasons.push(x);
        Decision::Reject
    } else {
        let mut d = Decision::Accept;
        if score < r.accept_threshold {
            let mut x = reason(ReasonCode::ScoreBelowThreshold, "assurance score below the accept threshold: refer to staff", false);
            (x.measured, x.limit) = (Some(f64::from(score)), Some(f64::from(r.accept_threshold)));
            reasons.push(x);
            d = Decision::Review;
        }
        if r.accept_requires_signature && !signature_valid {
            reasons.push(reason(
                ReasonCode::PolicyRequiresSignature,
                format!("policy {} accepts only with a valid electronic signature: refer to staff", policy.name),
                false,
            ));
            d = Decision::Review;
        }
        if signature_failed {
            reasons.push(reason(ReasonCode::SignatureInvalid, "a signature was given and did not verify: refer to staff", false));
            d = Decision::Review;
        }
        if let Some(x) = pad_review.take() {
            reasons.push(x);
            d = Decision::Review;
        }
        d
    };
    // An unreachable backend can lower a decision to REVIEW but never lead to ACCEPT, and it
    // is not the user's fault: it does not turn a REVIEW into a REJECT either.
    let decision = if unavailable && decision == Decision::Accept { Decision::Review } else { decision };
    Verdict { decision, score, factors, reasons }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Policies, builtin};

    fn policy(name: &str) -> Policy {
        Policies::new(&builtin(), "low-risk").get(name).expect("built in").clone()
    }

    fn good() -> Evidence {
        Evidence {
            liveness: Outcome::Measured(Liveness {
                passed: true,
                score: 0.95,
                reasons: vec![],
                pad: Some(Pad { attack_score: 0.05, threshold: 0.5, reasons: vec![] }),
            }),
            face_match: Outcome::Measured(FaceMatch { similarity: Some(0.78), threshold: 0.62, match_score: None, reasons: vec![] }),
            document: Outcome::Measured(DocumentQuality { usable: true, reasons: vec![] }),
            identity: Outcome::Measured(Identity { min_frame_similarity: Some(0.8), threshold: 0.62, reasons: vec![] }),
            signature: Outcome::Absent,
        }
    }

    fn codes(v: &Verdict) -> Vec<ReasonCode> {
        v.reasons.iter().filter_map(|r| ReasonCode::try_from(r.code).ok()).collect()
    }

    #[test]
    fn contributions_sum_to_the_score_and_weights_to_one() {
        let v = decide(&policy("low-risk"), &good());
        let w: f32 = v.factors.iter().map(|f| f.weight).sum();
        let c: f32 = v.factors.iter().map(|f| f.contribution).sum();
        assert!((w - 1.0).abs() < 1e-5, "{w}");
        assert!((c - v.score).abs() < 1e-5);
        assert_eq!(v.factors.len(), 5, "the absent signature is not reported");
        assert_eq!(v.decision, Decision::Accept, "{v:?}");
    }

    #[test]
    fn a_face_mismatch_rejects() {
        let mut e = good();
        e.face_match = Outcome::Measured(FaceMatch { similarity: Some(0.3), threshold: 0.62, match_score: None, reasons: vec![] });
        let v = decide(&policy("low-risk"), &e);
        assert_eq!(v.decision, Decision::Reject);
        assert!(codes(&v).contains(&ReasonCode::FaceMismatch), "{v:?}");
    }

    #[test]
    fn resident_certificate_reviews_without_signature_and_accepts_with_one() {
        let p = policy("resident-certificate");
        let v = decide(&p, &good());
        assert_eq!(v.decision, Decision::Review);
        assert!(codes(&v).contains(&ReasonCode::PolicyRequiresSignature));
        let mut e = good();
        e.signature = Outcome::Measured(Signature { valid: true, reasons: vec![] });
        let v = decide(&p, &e);
        assert_eq!(v.decision, Decision::Accept, "{v:?}");
        e.signature = Outcome::Measured(Signature { valid: false, reasons: vec![reason(ReasonCode::CertRevoked, "revoked", true)] });
        let v = decide(&p, &e);
        assert_eq!(v.decision, Decision::Review);
        assert!(v.factors.iter().any(|f| f.kind == FactorKind::Signature as i32 && !f.passed));
    }

    #[test]
    fn an_unreachable_backend_never_accepts_and_never_rejects_by_itself() {
        let mut e = good();
        e.face_match = Outcome::Unavailable(reason(ReasonCode::BackendUnavailable, "facematch: connection refused", false));
        let v = decide(&policy("low-risk"), &e);
        assert_eq!(v.decision, Decision::Review, "{v:?}");
        assert!(codes(&v).contains(&ReasonCode::BackendUnavailable));
    }

    #[test]
    fn failed_liveness_rejects_whatever_the_score() {
        let mut e = good();
        e.liveness = Outcome::Measured(Liveness {
            passed: false,
            score: 0.9,
            reasons: vec![reason(ReasonCode::PoseNotReached, "x", true)],
            pad: None,
        });
        let v = decide(&policy("low-risk"), &e);
        assert_eq!(v.decision, Decision::Reject);
        assert!(codes(&v).contains(&ReasonCode::LivenessFailed));
    }

    #[test]
    fn a_weak_but_passing_match_is_referred_to_staff() {
        let mut e = good();
        // Both similarities just at their thresholds: passing, but weakly.
        e.face_match = Outcome::Measured(FaceMatch { similarity: Some(0.62), threshold: 0.62, match_score: None, reasons: vec![] });
        e.identity = Outcome::Measured(Identity { min_frame_similarity: Some(0.55), threshold: 0.55, reasons: vec![] });
        e.document = Outcome::Measured(DocumentQuality { usable: true, reasons: vec![reason(ReasonCode::Glare, "glare", false)] });
        let v = decide(&policy("low-risk"), &e);
        assert_eq!(v.decision, Decision::Review, "{v:?}");
        assert!(codes(&v).contains(&ReasonCode::ScoreBelowThreshold));
    }

    fn with_pad(attack_score: f32) -> Evidence {
        let mut e = good();
        e.liveness = Outcome::Measured(Liveness {
            passed: attack_score < 0.5,
            score: 0.95,
            reasons: vec![],
            pad: Some(Pad { attack_score, threshold: 0.5, reasons: vec![] }),
        });
        e
    }

    #[test]
    fn pad_refers_doubtful_sessions_to_staff_and_fails_at_its_threshold() {
        let p = policy("low-risk");
        assert_eq!(decide(&p, &with_pad(0.1)).decision, Decision::Accept);
        // In the policy's review band (0.3 up to the liveness threshold 0.5): REVIEW.
        let v = decide(&p, &with_pad(0.35));
        assert_eq!(v.decision, Decision::Review, "{v:?}");
        assert!(codes(&v).contains(&ReasonCode::PresentationAttackSuspected), "{v:?}");
        // At the liveness service's threshold the PAD factor fails: REJECT.
        let v = decide(&p, &with_pad(0.5));
        assert_eq!(v.decision, Decision::Reject, "{v:?}");
        let f = v.factors.iter().find(|f| f.kind == FactorKind::PresentationAttack as i32).expect("a PAD factor");
        assert!(!f.passed && (f.score - 0.5).abs() < 1e-6, "{f:?}");
    }

    #[test]
    fn a_verdict_without_pad_is_accepted_only_by_a_policy_that_says_it_does_not_test_pad() {
        let mut e = good();
        e.liveness = Outcome::Measured(Liveness { passed: true, score: 0.95, reasons: vec![], pad: None });
        let v = decide(&policy("low-risk"), &e);
        assert_eq!(v.decision, Decision::Review, "{v:?}");
        assert!(codes(&v).contains(&ReasonCode::PadNotChecked), "{v:?}");
        let mut rules = policy("low-risk").rules;
        rules.require_pad = false;
        assert_eq!(decide(&Policy::new("no-pad-test", rules), &e).decision, Decision::Accept);
    }
}
