//! Calibrated match scores: a similarity becomes an estimated false-match rate ("1 in N")
//! through a table of thresholds and measured false-match rates (FMR), which the operator
//! produces on their own photos with `ekyc eval pairs --json`. Similarities of different
//! embedders are on different scales, so a calibration names the embedder it was
//! measured with and is refused for any other.

use std::path::Path;

use serde::Deserialize;

/// The estimate for one similarity.
#[derive(Debug, Clone, PartialEq)]
pub struct FalseMatch {
    /// Estimated fraction of non-mated (different-person) comparisons scoring at least
    /// this similarity.
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
    /// `(threshold, false-match rate)`, thresholds ascending.
    points: Vec<(f32, f64)>,
    /// The smallest rate the data can show: one impostor pair.
    floor: f64,
}

/// The format `ekyc eval pairs --json` writes (`format` in the file).
pub const FORMAT: &str = "ekyc-eval-pairs/2";

#[derive(Deserialize)]
struct Point {
    threshold: f32,
    fmr: f64,
}

#[derive(Deserialize)]
struct File {
    format: String,
    model_id: String,
    impostor_pairs: usize,
    calibration: Vec<Point>,
}

impl Calibration {
    /// Reads the JSON of `ekyc eval pairs --json`, refusing it unless it was measured with
    /// `embedder_id`, the model this server embeds with.
    pub fn load(path: &Path, id: Option<&str>, embedder_id: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading calibration {}: {e}", path.display()))?;
        let file: File = serde_json::from_str(&text)
            .map_err(|e| format!("calibration {}: {e} (expected the JSON of `ekyc eval pairs --json`, format {FORMAT})", path.display()))?;
        if file.format != FORMAT {
            return Err(format!(
                "calibration {}: format `{}`, expected `{FORMAT}`; run `ekyc eval pairs --json` again",
                path.display(),
                file.format
            ));
        }
        if file.model_id != embedder_id {
            return Err(format!(
                "calibration {} was measured with embedder `{}`, this server embeds with `{embedder_id}`; similarities of different models are not comparable: calibrate again with `ekyc eval pairs --json`",
                path.display(),
                file.model_id
            ));
        }
        let id = id.map(str::to_string).unwrap_or_else(|| path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        Self::new(id, file.impostor_pairs, file.calibration.into_iter().map(|p| (p.threshold, p.fmr)).collect())
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

    #[test]
    fn a_calibration_of_another_embedder_or_format_is_refused() {
        let dir = std::env::temp_dir().join(format!("ekyc-calibration-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let write = |name: &str, format: &str, model: &str| {
            let path = dir.join(name);
            let body = serde_json::json!({"format": format, "model_id": model, "impostor_pairs": 100,
                "calibration": [{"threshold": 0.2, "fmr": 0.5, "fnmr": 0.0}, {"threshold": 0.6, "fmr": 0.0, "fnmr": 0.1}]});
            std::fs::write(&path, body.to_string()).expect("write");
            path
        };
        let ok = write("ok.json", FORMAT, "sface-x");
        assert_eq!(Calibration::load(&ok, None, "sface-x").expect("same model").id, "ok.json");
        let err = Calibration::load(&ok, None, "faceres-y").expect_err("another model");
        assert!(err.contains("`sface-x`") && err.contains("`faceres-y`"), "{err}");
        let old = write("old.json", "ekyc-eval-pairs/1", "sface-x");
        assert!(Calibration::load(&old, None, "sface-x").expect_err("old format").contains("format"));
        let none = dir.join("none.json");
        std::fs::write(&none, r#"{"impostor_pairs": 100, "calibration": []}"#).expect("write");
        assert!(Calibration::load(&none, None, "sface-x").expect_err("no model id").contains("expected the JSON"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
