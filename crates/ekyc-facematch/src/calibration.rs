//! Calibrated match scores: a similarity becomes an estimated false-match rate ("1 in N")
//! through a table of thresholds and measured false-accept rates, which the operator
//! produces on their own photos with `ekyc eval pairs --json`.

use std::path::Path;

use serde::Deserialize;

/// The estimate for one similarity.
#[derive(Debug, Clone, PartialEq)]
pub struct FalseMatch {
    /// Estimated fraction of different-person pairs scoring at least this similarity.
    pub rate: f64,
    /// `round(1 / rate)`.
    pub one_in: u64,
    /// True when no impostor pair of the calibration set scored this high, so `rate` is
    /// only an upper bound (one in the number of impostor pairs).
    pub upper_bound: bool,
}

/// A loaded calibration table.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub id: String,
    /// `(threshold, false-accept rate)`, thresholds ascending.
    points: Vec<(f32, f64)>,
    /// The smallest rate the data can show: one impostor pair.
    floor: f64,
}

#[derive(Deserialize)]
struct Point {
    threshold: f32,
    far: f64,
}

#[derive(Deserialize)]
struct File {
    impostor_pairs: usize,
    calibration: Vec<Point>,
}

impl Calibration {
    /// Reads the JSON of `ekyc eval pairs --json`.
    pub fn load(path: &Path, id: Option<&str>) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading calibration {}: {e}", path.display()))?;
        let file: File = serde_json::from_str(&text)
            .map_err(|e| format!("calibration {}: {e} (expected the JSON of `ekyc eval pairs --json`)", path.display()))?;
        let id = id.map(str::to_string).unwrap_or_else(|| path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        Self::new(id, file.impostor_pairs, file.calibration.into_iter().map(|p| (p.threshold, p.far)).collect())
    }

    pub fn new(id: String, impostor_pairs: usize, mut points: Vec<(f32, f64)>) -> Result<Self, String> {
        if impostor_pairs == 0 || points.len() < 2 {
            return Err("a calibration needs impostor pairs and at least two points".into());
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        if points.windows(2).any(|w| w[1].1 > w[0].1 + 1e-12) || points.iter().any(|p| !(0.0..=1.0).contains(&p.1)) {
            return Err("calibration rates must lie in [0, 1] and not increase with the threshold".into());
        }
        Ok(Self { id, points, floor: 1.0 / impostor_pairs as f64 })
    }

    /// The estimated false-match rate at `similarity`, interpolated log-linearly between
    /// table points.
    pub fn false_match(&self, similarity: f32) -> FalseMatch {
        let upper_bound = self.points.iter().any(|&(t, far)| far == 0.0 && similarity >= t);
        let at = |i: usize| self.points[i].1.max(self.floor);
        let rate = match self.points.iter().position(|&(t, _)| t > similarity) {
            Some(0) => at(0),
            None => at(self.points.len() - 1),
            Some(i) => {
                let ((t0, _), (t1, _)) = (self.points[i - 1], self.points[i]);
                let f = f64::from((similarity - t0) / (t1 - t0));
                (at(i - 1).ln() + f * (at(i).ln() - at(i - 1).ln())).exp()
            }
        };
        let rate = if upper_bound { self.floor } else { rate };
        FalseMatch { rate, one_in: (1.0 / rate).round() as u64, upper_bound }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_and_bounds() {
        let c = Calibration::new("t".into(), 200, vec![(0.3, 0.5), (0.4, 0.1), (0.5, 0.01), (0.6, 0.0)]).expect("valid");
        let mid = c.false_match(0.45);
        assert!((mid.rate / (0.1f64 * 0.01).sqrt() - 1.0).abs() < 1e-5, "{mid:?}");
        assert!(!mid.upper_bound);
        let high = c.false_match(0.8);
        assert!(high.upper_bound);
        assert_eq!(high.one_in, 200);
        assert!(c.false_match(0.2).rate >= 0.5);
        // Higher similarity never means a higher false-match rate.
        let mut last = 1.0;
        for k in 0..100 {
            let r = c.false_match(k as f32 / 100.0).rate;
            assert!(r <= last + 1e-12);
            last = r;
        }
        assert!(Calibration::new("bad".into(), 10, vec![(0.3, 0.1), (0.4, 0.5)]).is_err());
    }
}
