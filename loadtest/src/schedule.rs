//! Pure arithmetic of a run: the open-loop send schedule, the measured window, which images
//! go into which request, and parsing of durations and rates on the command line.

use std::time::Duration;

/// A send that starts later than this after its scheduled time counts as a schedule slip.
pub const SLIP_THRESHOLD: Duration = Duration::from_millis(1);

/// When request `k` (0-based) of an open loop at `rate` requests/s is due, counted from
/// the start of the run: exactly `k / rate` seconds, rounded to the nanosecond. Computed
/// from `k` alone (never by adding intervals), so rounding never accumulates into drift.
pub fn offset(k: u64, rate: f64) -> Duration {
    Duration::from_nanos(((k as f64) * 1e9 / rate).round() as u64)
}

/// How many requests of an open loop at `rate` are due strictly before `until`: the number
/// of `k` with `offset(k, rate) < until`.
pub fn due_before(rate: f64, until: Duration) -> u64 {
    // Start from the floating-point estimate and correct it with the exact predicate, so a
    // product like 0.1 * 30 that lands a hair above an integer cannot add a request.
    let mut n = (rate * until.as_secs_f64()).ceil().max(0.0) as u64;
    while n > 0 && offset(n - 1, rate) >= until {
        n -= 1;
    }
    while offset(n, rate) < until {
        n += 1;
    }
    n
}

/// The measured window of a run that starts at offset zero: `[warmup, warmup + duration)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Duration,
    pub end: Duration,
}

impl Window {
    pub fn new(warmup: Duration, duration: Duration) -> Self {
        Self { start: warmup, end: warmup + duration }
    }

    /// Whether a request sent (or scheduled) at `at` is measured.
    pub fn contains_send(&self, at: Duration) -> bool {
        at >= self.start && at < self.end
    }

    /// Whether a response that arrived at `at` counts towards the achieved rate.
    pub fn contains_completion(&self, at: Duration) -> bool {
        at >= self.start && at <= self.end
    }

    pub fn length(&self) -> Duration {
        self.end - self.start
    }
}

/// The distinct request bodies needed to cycle `images` files round-robin, `per_request` at
/// a time: body `b` holds images `b*per_request .. b*per_request + per_request` (mod
/// `images`). Request `r` uses body `r % bodies.len()`, so every image is sent equally often.
pub fn request_bodies(images: usize, per_request: usize) -> Vec<Vec<usize>> {
    assert!(images > 0 && per_request > 0, "at least one image and one image per request");
    let count = images / gcd(images, per_request);
    (0..count).map(|b| (0..per_request).map(|i| (b * per_request + i) % images).collect()).collect()
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Parses a duration such as `30s`, `500ms`, `1.5s`, `2m`, `250us` or a bare number of
/// seconds (`10`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("invalid duration {text:?}: expected e.g. 30s, 500ms, 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("invalid duration {text:?}: unknown unit {other:?} (use us, ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// Parses an offered rate in requests/s: finite and above zero.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.trim().parse().map_err(|_| format!("invalid rate {text:?}: expected requests per second, e.g. 20 or 2.5"))?;
    if rate.is_finite() && rate > 0.0 { Ok(rate) } else { Err(format!("invalid rate {text:?}: must be above zero")) }
}

/// Formats a duration for humans as seconds: `30 s`, `1.5 s`, `0.25 s`.
pub fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 { format!("{s:.0} s") } else { format!("{} s", trim_zeros(&format!("{s:.3}"))) }
}

fn trim_zeros(s: &str) -> &str {
    s.trim_end_matches('0').trim_end_matches('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_k_over_rate() {
        assert_eq!(offset(0, 10.0), Duration::ZERO);
        assert_eq!(offset(1, 10.0), Duration::from_millis(100));
        assert_eq!(offset(25, 10.0), Duration::from_millis(2500));
        assert_eq!(offset(1, 3.0), Duration::from_nanos(333_333_333));
        assert_eq!(offset(2, 3.0), Duration::from_nanos(666_666_667));
        assert_eq!(offset(3, 3.0), Duration::from_secs(1));
        // Fractional rates: one request every 4 s.
        assert_eq!(offset(2, 0.25), Duration::from_secs(8));
    }

    #[test]
    fn offsets_do_not_drift_over_long_runs() {
        // 1000 req/s for an hour: the last offset is exact, not the sum of 3.6M rounded steps.
        assert_eq!(offset(3_600_000, 1000.0), Duration::from_secs(3600));
        assert_eq!(offset(3_600_000 * 7, 7000.0), Duration::from_secs(3600));
    }

    #[test]
    fn offsets_are_strictly_increasing() {
        let rate = 7.3;
        let mut last = offset(0, rate);
        for k in 1..10_000 {
            let next = offset(k, rate);
            assert!(next > last, "offset({k}) = {next:?} not after {last:?}");
            last = next;
        }
    }

    #[test]
    fn due_before_counts_requests_strictly_before_the_end() {
        // 10 req/s for 1 s: requests at 0, 0.1, ..., 0.9 s; the one at 1.0 s is not due.
        assert_eq!(due_before(10.0, Duration::from_secs(1)), 10);
        assert_eq!(due_before(10.0, Duration::from_millis(1001)), 11);
        assert_eq!(due_before(3.0, Duration::from_secs(1)), 3);
        assert_eq!(due_before(0.5, Duration::from_secs(3)), 2);
        assert_eq!(due_before(100.0, Duration::ZERO), 0);
        // Products that are not exact in binary floating point.
        assert_eq!(due_before(0.1, Duration::from_secs(30)), 3);
        assert_eq!(due_before(0.3, Duration::from_secs(10)), 3);
        for (rate, secs) in [(7.3, 13u64), (1.1, 10), (33.3, 3)] {
            let until = Duration::from_secs(secs);
            let n = due_before(rate, until);
            assert!(n == 0 || offset(n - 1, rate) < until);
            assert!(offset(n, rate) >= until);
        }
    }

    #[test]
    fn measured_count_excludes_warmup() {
        // 20 req/s, 5 s warm-up then 30 s measured: 100 warm-up requests, then 600.
        let w = Window::new(Duration::from_secs(5), Duration::from_secs(30));
        let warm = due_before(20.0, w.start);
        let total = due_before(20.0, w.end);
        assert_eq!((warm, total - warm), (100, 600));
        assert!(!w.contains_send(offset(warm - 1, 20.0)));
        assert!(w.contains_send(offset(warm, 20.0)));
        assert!(w.contains_send(offset(total - 1, 20.0)));
        assert!(!w.contains_send(offset(total, 20.0)));
    }

    #[test]
    fn window_bounds() {
        let w = Window::new(Duration::from_secs(2), Duration::from_secs(10));
        assert_eq!(w.length(), Duration::from_secs(10));
        assert!(!w.contains_send(Duration::from_millis(1999)));
        assert!(w.contains_send(Duration::from_secs(2)));
        assert!(!w.contains_send(Duration::from_secs(12)));
        assert!(w.contains_completion(Duration::from_secs(12)));
        assert!(!w.contains_completion(Duration::from_millis(12_001)));
    }

    #[test]
    fn bodies_cycle_every_image_equally() {
        assert_eq!(request_bodies(3, 1), vec![vec![0], vec![1], vec![2]]);
        assert_eq!(request_bodies(1, 4), vec![vec![0, 0, 0, 0]]);
        assert_eq!(request_bodies(4, 2), vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(request_bodies(3, 2), vec![vec![0, 1], vec![2, 0], vec![1, 2]]);
        for (images, per) in [(5, 3), (6, 4), (7, 7), (2, 5)] {
            let bodies = request_bodies(images, per);
            let mut uses = vec![0usize; images];
            bodies.iter().flatten().for_each(|&i| uses[i] += 1);
            assert!(uses.iter().all(|&u| u == uses[0]), "{images} images, {per} per request: {uses:?}");
            assert!(bodies.iter().all(|b| b.len() == per));
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("10 parsecs").expect_err("parsecs are no unit of time").contains("unknown unit"));
    }

    #[test]
    fn rates_must_be_positive() {
        assert_eq!(parse_rate("20"), Ok(20.0));
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-3").is_err());
        assert!(parse_rate("inf").is_err());
        assert!(parse_rate("NaN").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn seconds_format() {
        assert_eq!(fmt_secs(Duration::from_secs(30)), "30 s");
        assert_eq!(fmt_secs(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(fmt_secs(Duration::from_millis(250)), "0.25 s");
        assert_eq!(fmt_secs(Duration::ZERO), "0 s");
    }
}
