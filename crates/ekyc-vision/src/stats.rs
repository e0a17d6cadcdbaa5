//! Error-rate statistics shared by every evaluation (`ekyc eval pairs`, `ekyc eval pad`):
//! exact binomial (Clopper-Pearson) confidence intervals for a measured rate, the "rule of
//! three" bound when no error was seen, and how many trials a rate needs before a set can
//! resolve it.

use serde::{Deserialize, Serialize};

/// A measured error rate with its two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    pub errors: u64,
    pub trials: u64,
    /// `errors / trials` (0 when there are no trials).
    pub rate: f64,
    /// Clopper-Pearson bounds at `confidence`.
    pub lower: f64,
    pub upper: f64,
    pub confidence: f64,
}

impl Rate {
    /// `errors` of `trials` with the exact (Clopper-Pearson) interval at `confidence`
    /// (0.95 for 95 %).
    pub fn measure(errors: u64, trials: u64, confidence: f64) -> Rate {
        let (lower, upper) = clopper_pearson(errors, trials, confidence);
        let rate = if trials == 0 { 0.0 } else { errors as f64 / trials as f64 };
        Rate { errors, trials, rate, lower, upper, confidence }
    }

    /// The "rule of three" upper bound (3 / n, 95 %) that applies when no error was seen.
    pub fn rule_of_three(&self) -> Option<f64> {
        (self.errors == 0 && self.trials > 0).then(|| (3.0 / self.trials as f64).min(1.0))
    }
}

/// Trials needed, seeing no error, before a rate of `target` can be claimed at 95 %
/// confidence (rule of three: `3 / target`, rounded up).
pub fn trials_to_resolve(target: f64) -> u64 {
    if target <= 0.0 { u64::MAX } else { (3.0 / target).ceil() as u64 }
}

/// Exact two-sided binomial confidence interval for `k` successes in `n` trials.
pub fn clopper_pearson(k: u64, n: u64, confidence: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let alpha = 1.0 - confidence;
    let (k, n) = (k.min(n) as f64, n as f64);
    let lower = if k == 0.0 { 0.0 } else { beta_quantile(alpha / 2.0, k, n - k + 1.0) };
    let upper = if k == n { 1.0 } else { beta_quantile(1.0 - alpha / 2.0, k + 1.0, n - k) };
    (lower, upper)
}

/// The `p` quantile of the Beta(a, b) distribution, by bisection on its CDF.
fn beta_quantile(p: f64, a: f64, b: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if regularized_beta(mid, a, b) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-15 {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// `I_x(a, b)`, the regularised incomplete beta function (Lentz's continued fraction,
/// Numerical Recipes §6.4).
fn regularized_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_fraction(x, a, b) / a
    } else {
        1.0 - ln_front.exp() * beta_fraction(1.0 - x, b, a) / b
    }
}

fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let nonzero = |v: f64| if v.abs() < TINY { TINY } else { v };
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / nonzero(1.0 - qab * x / qap);
    let mut h = d;
    // One step of Lentz's method with coefficient `aa`: updates c and d, returns the factor.
    let step = |aa: f64, c: &mut f64, d: &mut f64| {
        *d = 1.0 / nonzero(1.0 + aa * *d);
        *c = nonzero(1.0 + aa / *c);
        *d * *c
    };
    for m in 1..=300 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        h *= step(m * (b - m) * x / ((qam + m2) * (a + m2)), &mut c, &mut d);
        let del = step(-(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)), &mut c, &mut d);
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; relative error below 1e-13).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return std::f64::consts::PI.ln() - (std::f64::consts::PI * x).sin().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut s = G[0];
    for (i, g) in G.iter().enumerate().skip(1) {
        s += g / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-5
    }

    #[test]
    fn clopper_pearson_matches_published_values() {
        // Reference values from R: binom.test(k, n)$conf.int (exact, 95 %).
        let (lo, hi) = clopper_pearson(0, 26, 0.95);
        assert!(lo == 0.0 && close(hi, 0.13229), "{lo} {hi}");
        let (lo, hi) = clopper_pearson(5, 100, 0.95);
        assert!(close(lo, 0.01643) && close(hi, 0.11284), "{lo} {hi}");
        let (lo, hi) = clopper_pearson(10, 10, 0.95);
        assert!(close(lo, 0.69150) && hi == 1.0, "{lo} {hi}");
        let (lo, hi) = clopper_pearson(1, 2, 0.95);
        assert!(close(lo, 0.01258) && close(hi, 0.98742), "{lo} {hi}");
    }

    #[test]
    fn rule_of_three_and_resolution() {
        let r = Rate::measure(0, 300, 0.95);
        assert_eq!(r.rate, 0.0);
        assert!(close(r.rule_of_three().expect("no errors"), 0.01));
        assert!(Rate::measure(1, 300, 0.95).rule_of_three().is_none());
        assert_eq!(trials_to_resolve(0.05), 60);
        assert_eq!(trials_to_resolve(0.001), 3000);
    }
}
