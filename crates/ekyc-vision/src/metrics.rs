//! Verification metrics over scored comparisons: FMR and FNMR with confidence intervals at
//! a threshold, the threshold for a target FMR, ROC AUC and EER, plus a threshold-to-FMR
//! table. Deployments run these on their own photos (through
//! `ekyc eval pairs`) to calibrate the match threshold and the false-match estimates.

use serde::{Deserialize, Serialize};

use crate::stats::{Rate, trials_to_resolve};

/// One compared pair: its similarity and whether both sides are the same person.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredPair {
    pub score: f32,
    pub genuine: bool,
}

/// A threshold and the error rates measured there, each with its 95 % Clopper-Pearson
/// interval. ISO/IEC 2382-37 words: a comparison of two samples of one person is *mated*,
/// of two people *non-mated*; FMR is the share of non-mated comparisons accepted, FNMR the
/// share of mated comparisons rejected (FAR and FRR are rates of a whole system's
/// transactions, not of comparisons).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    /// Similarity at or above which a comparison is a match.
    pub threshold: f32,
    pub fmr: Rate,
    pub fnmr: Rate,
}

/// The threshold for one target FMR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetFmr {
    /// Target false-match rate (0.001 = 0.1 %).
    pub target_fmr: f64,
    /// The lowest threshold whose measured FMR does not exceed the target; `None` when
    /// there is no non-mated comparison.
    pub point: Option<OperatingPoint>,
    /// Set when the set is too small to show the target: with `n` non-mated comparisons
    /// and no false match, FMR is only bounded by 3 / n (rule of three, 95 %).
    pub note: Option<String>,
}

/// One row of the calibration table: at `threshold`, the measured FMR and FNMR.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibrationPoint {
    pub threshold: f32,
    pub fmr: f64,
    pub fnmr: f64,
}

/// Summary of a verification experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationReport {
    /// Mated (same person) and non-mated (different people) comparisons.
    pub genuine_pairs: usize,
    pub impostor_pairs: usize,
    /// Lowest mated and highest non-mated similarity.
    pub min_genuine: Option<f32>,
    pub max_impostor: Option<f32>,
    pub roc_auc: f64,
    /// Equal error rate (where FMR and FNMR are closest) and its threshold.
    pub eer: f64,
    pub eer_threshold: f32,
    /// FMR and FNMR at the configured threshold.
    pub at_threshold: OperatingPoint,
    /// Thresholds for the requested target FMRs.
    pub for_target_fmr: Vec<TargetFmr>,
    /// FMR and FNMR on a grid of thresholds (0 to 1 by 0.02), for the false-match
    /// estimates of `facematch.calibration_file`.
    pub calibration: Vec<CalibrationPoint>,
}

/// Mated scores ascending and non-mated scores descending, for counting by binary search.
struct Sorted {
    genuine: Vec<f32>,
    impostor: Vec<f32>,
}

impl Sorted {
    fn new(pairs: &[ScoredPair]) -> Self {
        let mut genuine: Vec<f32> = pairs.iter().filter(|p| p.genuine).map(|p| p.score).collect();
        let mut impostor: Vec<f32> = pairs.iter().filter(|p| !p.genuine).map(|p| p.score).collect();
        genuine.sort_by(f32::total_cmp);
        impostor.sort_by(|a, b| b.total_cmp(a));
        Self { genuine, impostor }
    }

    /// (non-mated comparisons at or above `t`, mated comparisons below `t`).
    fn errors(&self, t: f32) -> (u64, u64) {
        let false_matches = self.impostor.partition_point(|s| *s >= t) as u64;
        let false_non_matches = self.genuine.partition_point(|s| *s < t) as u64;
        (false_matches, false_non_matches)
    }

    fn point(&self, t: f32) -> OperatingPoint {
        let (fm, fnm) = self.errors(t);
        OperatingPoint {
            threshold: t,
            fmr: Rate::measure(fm, self.impostor.len() as u64, CONFIDENCE),
            fnmr: Rate::measure(fnm, self.genuine.len() as u64, CONFIDENCE),
        }
    }

    fn rates(&self, t: f32) -> (f64, f64) {
        let (fm, fnm) = self.errors(t);
        (fm as f64 / self.impostor.len().max(1) as f64, fnm as f64 / self.genuine.len().max(1) as f64)
    }
}

/// Confidence of every interval reported.
pub const CONFIDENCE: f64 = 0.95;

/// Computes the report; `configured` is the deployment's threshold, `target_fmrs` the FMRs
/// to find thresholds for.
pub fn evaluate(pairs: &[ScoredPair], configured: f32, target_fmrs: &[f64]) -> VerificationReport {
    let sorted = Sorted::new(pairs);
    let (genuine, impostor) = (&sorted.genuine, &sorted.impostor);

    // Candidate thresholds: every distinct score, and one above them all.
    let mut scores: Vec<f32> = pairs.iter().map(|p| p.score).collect();
    scores.sort_by(f32::total_cmp);
    scores.dedup();
    let above = scores.last().map_or(1.0, |s| s + 1e-3);
    let (mut eer, mut eer_t, mut eer_gap) = (1.0, 0.0, f64::MAX);
    for t in scores.iter().copied().chain(std::iter::once(above)) {
        let (fmr, fnmr) = sorted.rates(t);
        if (fmr - fnmr).abs() < eer_gap {
            eer_gap = (fmr - fnmr).abs();
            eer = (fmr + fnmr) / 2.0;
            eer_t = t;
        }
    }

    // Mann-Whitney U: probability that a mated comparison outscores a non-mated one.
    let mut wins = 0.0;
    for g in genuine {
        let below = impostor.len() - impostor.partition_point(|s| s >= g);
        let ties = impostor.partition_point(|s| s >= g) - impostor.partition_point(|s| s > g);
        wins += below as f64 + 0.5 * ties as f64;
    }
    let roc_auc = wins / (genuine.len() * impostor.len()).max(1) as f64;

    let for_target_fmr = target_fmrs
        .iter()
        .map(|&target| {
            let n = impostor.len();
            if n == 0 {
                return TargetFmr { target_fmr: target, point: None, note: Some("no non-mated comparisons".into()) };
            }
            // Accept at most floor(target * n) non-mated comparisons: the threshold lies just
            // above the next one.
            let allowed = (target * n as f64).floor() as usize;
            let t = impostor.get(allowed).map_or(impostor[n - 1], |s| next_up(*s));
            let needed = trials_to_resolve(target);
            let note = ((n as u64) < needed).then(|| {
                format!(
                    "{n} non-mated comparisons cannot show FMR {} %: with no false match the 95 % bound is 3/{n} = {:.3} %; at least {needed} are needed",
                    target * 100.0,
                    300.0 / n as f64
                )
            });
            TargetFmr { target_fmr: target, point: Some(sorted.point(t)), note }
        })
        .collect();

    let calibration = (0..=50)
        .map(|k| {
            let t = k as f32 * 0.02;
            let (fmr, fnmr) = sorted.rates(t);
            CalibrationPoint { threshold: t, fmr, fnmr }
        })
        .collect();

    VerificationReport {
        genuine_pairs: genuine.len(),
        impostor_pairs: impostor.len(),
        min_genuine: genuine.first().copied(),
        max_impostor: impostor.first().copied(),
        roc_auc,
        eer,
        eer_threshold: eer_t,
        at_threshold: sorted.point(configured),
        for_target_fmr,
        calibration,
    }
}

/// The smallest f32 above `x` (for a threshold that rejects a score of exactly `x`).
fn next_up(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f32::from_bits(1);
    }
    let bits = x.to_bits();
    f32::from_bits(if x > 0.0 { bits + 1 } else { bits - 1 })
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
            (0..10).map(|i| p(0.7 + i as f32 * 0.01, true)).chain((0..400).map(|i| p(0.1 + i as f32 * 0.001, false))).collect();
        let r = evaluate(&pairs, 0.6, &[0.01, 0.001]);
        assert_eq!(r.roc_auc, 1.0);
        assert_eq!(r.eer, 0.0);
        assert_eq!((r.at_threshold.fmr.errors, r.at_threshold.fnmr.errors), (0, 0));
        // 400 non-mated comparisons, none accepted: the 95 % bound is the rule of three.
        assert!((r.at_threshold.fmr.rule_of_three().expect("no false match") - 0.0075).abs() < 1e-12);
        // FMR 1 % allows 4 of 400: the threshold lies just above the fifth highest (0.495).
        let one = r.for_target_fmr[0].point.expect("resolved");
        assert!(one.threshold > 0.4949 && one.threshold < 0.4951, "{one:?}");
        assert_eq!((one.fmr.errors, one.fnmr.errors), (4, 0));
        assert!(r.for_target_fmr[0].note.is_none(), "400 >= 3 / 1 %");
        assert!(r.for_target_fmr[1].note.as_deref().is_some_and(|n| n.contains("at least 3000")));
        // 200 would not do for 1 %.
        let few = evaluate(&pairs[..210], 0.6, &[0.01]);
        assert!(few.for_target_fmr[0].note.as_deref().is_some_and(|n| n.contains("at least 300")));
    }

    #[test]
    fn overlapping_scores_have_an_error_rate() {
        let pairs = vec![p(0.9, true), p(0.5, true), p(0.6, false), p(0.1, false)];
        let r = evaluate(&pairs, 0.55, &[]);
        assert_eq!(r.roc_auc, 0.75);
        assert_eq!((r.at_threshold.fmr.errors, r.at_threshold.fmr.trials), (1, 2));
        assert_eq!((r.at_threshold.fnmr.errors, r.at_threshold.fnmr.trials), (1, 2));
        assert!(r.at_threshold.fmr.lower > 0.0 && r.at_threshold.fmr.upper < 1.0);
        assert!((r.eer - 0.5).abs() < 1e-9);
        // A score equal to the threshold is a match.
        assert_eq!(evaluate(&pairs, 0.6, &[]).at_threshold.fmr.errors, 1);
    }

    #[test]
    fn ties_count_half_in_the_auc() {
        let r = evaluate(&[p(0.5, true), p(0.5, false)], 0.5, &[]);
        assert_eq!(r.roc_auc, 0.5);
    }
}
