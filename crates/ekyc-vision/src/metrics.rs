//! Verification metrics over scored pairs: accuracy, ROC AUC, EER and TAR at fixed FAR,
//! plus a threshold-to-FAR table. Deployments run these on their own photos (through
//! `ekyc eval pairs`) to calibrate the match threshold and the false-match estimates.

use serde::{Deserialize, Serialize};

/// One compared pair: its similarity and whether both sides are the same person.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredPair {
    pub score: f32,
    pub genuine: bool,
}

/// TAR at one target FAR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TarAtFar {
    /// Target false-accept rate (0.01 = 1 %).
    pub far: f64,
    /// True-accept rate at the lowest threshold whose FAR does not exceed `far`; `None`
    /// when there are too few impostor pairs to resolve that FAR.
    pub tar: Option<f64>,
    pub threshold: Option<f32>,
    /// Why `tar` is missing, when it is.
    pub note: Option<String>,
}

/// One row of the calibration table: at `threshold`, the measured FAR and TAR.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibrationPoint {
    pub threshold: f32,
    pub far: f64,
    pub tar: f64,
}

/// Summary of a verification experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationReport {
    pub genuine_pairs: usize,
    pub impostor_pairs: usize,
    /// Lowest genuine and highest impostor similarity.
    pub min_genuine: Option<f32>,
    pub max_impostor: Option<f32>,
    /// Best accuracy over all thresholds and the threshold giving it (midway between the
    /// neighbouring scores).
    pub best_accuracy: f64,
    pub best_threshold: f32,
    /// Accuracy at the configured threshold.
    pub configured_threshold: f32,
    pub configured_accuracy: f64,
    pub configured_far: f64,
    pub configured_frr: f64,
    pub roc_auc: f64,
    /// Equal error rate and its threshold.
    pub eer: f64,
    pub eer_threshold: f32,
    pub tar_at_far: Vec<TarAtFar>,
    /// FAR and TAR on a grid of thresholds, for the false-match estimates.
    pub calibration: Vec<CalibrationPoint>,
}

fn rates(pairs: &[ScoredPair], t: f32) -> (f64, f64) {
    let (mut fa, mut fr, mut g, mut i) = (0usize, 0usize, 0usize, 0usize);
    for p in pairs {
        if p.genuine {
            g += 1;
            fr += usize::from(p.score < t);
        } else {
            i += 1;
            fa += usize::from(p.score >= t);
        }
    }
    (fa as f64 / i.max(1) as f64, fr as f64 / g.max(1) as f64)
}

fn accuracy(pairs: &[ScoredPair], t: f32) -> f64 {
    let ok = pairs.iter().filter(|p| (p.score >= t) == p.genuine).count();
    ok as f64 / pairs.len().max(1) as f64
}

/// Computes the report; `configured` is the deployment's threshold, `fars` the FAR targets.
pub fn evaluate(pairs: &[ScoredPair], configured: f32, fars: &[f64]) -> VerificationReport {
    let genuine: Vec<f32> = pairs.iter().filter(|p| p.genuine).map(|p| p.score).collect();
    let mut impostor: Vec<f32> = pairs.iter().filter(|p| !p.genuine).map(|p| p.score).collect();
    impostor.sort_by(|a, b| b.total_cmp(a));

    // Candidate thresholds: every distinct score, and one above them all.
    let mut scores: Vec<f32> = pairs.iter().map(|p| p.score).collect();
    scores.sort_by(f32::total_cmp);
    scores.dedup();
    let above = scores.last().map_or(1.0, |s| s + 1e-3);
    let candidates: Vec<f32> = scores.iter().copied().chain(std::iter::once(above)).collect();

    let (mut best_acc, mut best_t) = (-1.0, 0.0);
    let (mut eer, mut eer_t, mut eer_gap) = (1.0, 0.0, f64::MAX);
    for (k, &t) in candidates.iter().enumerate() {
        let acc = accuracy(pairs, t);
        if acc > best_acc {
            best_acc = acc;
            // Midway between this score and the next lower one.
            best_t = if k == 0 { t } else { (t + candidates[k - 1]) / 2.0 };
        }
        let (far, frr) = rates(pairs, t);
        if (far - frr).abs() < eer_gap {
            eer_gap = (far - frr).abs();
            eer = (far + frr) / 2.0;
            eer_t = t;
        }
    }

    // Mann-Whitney U: probability that a genuine pair outscores an impostor pair.
    let mut wins = 0.0;
    for g in &genuine {
        for i in &impostor {
            wins += if g > i {
                1.0
            } else if g == i {
                0.5
            } else {
                0.0
            };
        }
    }
    let roc_auc = wins / (genuine.len() * impostor.len()).max(1) as f64;

    let tar_at_far = fars
        .iter()
        .map(|&far| {
            let n = impostor.len();
            let needed = (1.0 / far).ceil() as usize;
            if n < needed {
                return TarAtFar {
                    far,
                    tar: None,
                    threshold: None,
                    note: Some(format!("too few impostor pairs to resolve FAR {far}: {n} pairs, at least {needed} needed")),
                };
            }
            // Accept at most floor(far * n) impostors: threshold just above the next one.
            let allowed = (far * n as f64).floor() as usize;
            let t = impostor[allowed] + 1e-6;
            let tar = genuine.iter().filter(|s| **s >= t).count() as f64 / genuine.len().max(1) as f64;
            TarAtFar { far, tar: Some(tar), threshold: Some(t), note: None }
        })
        .collect();

    let calibration = (0..=50)
        .map(|k| {
            let t = k as f32 * 0.02;
            let (far, frr) = rates(pairs, t);
            CalibrationPoint { threshold: t, far, tar: 1.0 - frr }
        })
        .collect();

    let (configured_far, configured_frr) = rates(pairs, configured);
    VerificationReport {
        genuine_pairs: genuine.len(),
        impostor_pairs: impostor.len(),
        min_genuine: genuine.iter().copied().reduce(f32::min),
        max_impostor: impostor.first().copied(),
        best_accuracy: best_acc.max(0.0),
        best_threshold: best_t,
        configured_threshold: configured,
        configured_accuracy: accuracy(pairs, configured),
        configured_far,
        configured_frr,
        roc_auc,
        eer,
        eer_threshold: eer_t,
        tar_at_far,
        calibration,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(score: f32, genuine: bool) -> ScoredPair {
        ScoredPair { score, genuine }
    }

    #[test]
    fn separable_scores_are_perfect() {
        let pairs: Vec<ScoredPair> =
            (0..10).map(|i| p(0.7 + i as f32 * 0.01, true)).chain((0..200).map(|i| p(0.1 + i as f32 * 0.002, false))).collect();
        let r = evaluate(&pairs, 0.6, &[0.01, 0.001]);
        assert_eq!(r.roc_auc, 1.0);
        assert_eq!(r.best_accuracy, 1.0);
        assert!(r.best_threshold > 0.498 && r.best_threshold < 0.7);
        assert_eq!(r.eer, 0.0);
        assert_eq!(r.tar_at_far[0].tar, Some(1.0));
        assert!(r.tar_at_far[1].tar.is_none() && r.tar_at_far[1].note.is_some());
    }

    #[test]
    fn overlapping_scores_have_an_error_rate() {
        let pairs = vec![p(0.9, true), p(0.5, true), p(0.6, false), p(0.1, false)];
        let r = evaluate(&pairs, 0.55, &[]);
        assert_eq!(r.roc_auc, 0.75);
        assert_eq!(r.configured_accuracy, 0.5);
        assert!((r.eer - 0.5).abs() < 1e-9);
    }
}
