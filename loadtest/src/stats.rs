//! Measurement: HDR histograms of latencies (microseconds, 1 µs to 60 s), percentile
//! summaries, errors counted by gRPC status code name, and the recorder that turns request
//! outcomes into the numbers of a run.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tonic::{Code, Status};

use crate::schedule::{SLIP_THRESHOLD, Window};

/// Highest latency a histogram tracks; longer ones are recorded as 60 s.
pub const MAX_US: u64 = 60_000_000;

/// A latency histogram in microseconds from 1 µs to 60 s with `sigfig` significant digits.
pub fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, sigfig).expect("1 µs to 60 s with 1 to 5 significant digits are valid histogram bounds")
}

/// Records `d` in microseconds, saturating at [`MAX_US`].
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = d.as_micros().min(u128::from(MAX_US)) as u64;
    h.saturating_record(us);
}

/// Percentiles of a latency histogram, in milliseconds (microsecond resolution).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// `None` for an empty histogram: there is no percentile of nothing.
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let q = |q: f64| us_to_ms(h.value_at_quantile(q));
        Some(Self {
            count: h.len(),
            mean_ms: h.mean().round() / 1e3,
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: us_to_ms(h.max()),
        })
    }

    /// One line: `p50 45.2  p90 60.1  p99 88.0  p99.9 120  max 131 ms (596 samples)`.
    pub fn line(&self) -> String {
        format!(
            "p50 {}  p90 {}  p99 {}  p99.9 {}  max {} ms  (mean {} ms, {} samples)",
            fmt_ms(self.p50_ms),
            fmt_ms(self.p90_ms),
            fmt_ms(self.p99_ms),
            fmt_ms(self.p999_ms),
            fmt_ms(self.max_ms),
            fmt_ms(self.mean_ms),
            self.count
        )
    }
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1e3
}

/// Milliseconds for humans with about three significant digits (never fewer than whole
/// milliseconds): `0.312`, `4.57`, `45.2`, `452`, `12345`.
pub fn fmt_ms(ms: f64) -> String {
    let a = ms.abs();
    if a < 1.0 {
        format!("{ms:.3}")
    } else if a < 10.0 {
        format!("{ms:.2}")
    } else if a < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

/// The canonical gRPC name of a status code, as in the gRPC specification
/// (`RESOURCE_EXHAUSTED`, `DEADLINE_EXCEEDED`, ...).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Error kinds that do not come from the server's status.
pub const DEADLINE_EXCEEDED: &str = "DEADLINE_EXCEEDED";
pub const INVALID_RESPONSE: &str = "INVALID_RESPONSE";

/// Why a request failed: a status code name and one example message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: &'static str,
    pub message: String,
}

impl Failure {
    /// From a status returned by the client. tonic's own client-side deadline (from the
    /// `grpc-timeout` we set) surfaces as CANCELLED "Timeout expired": that is a deadline.
    pub fn from_status(status: &Status) -> Self {
        let kind = if status.code() == Code::Cancelled && status.message().contains("Timeout expired") {
            DEADLINE_EXCEEDED
        } else {
            code_name(status.code())
        };
        Self { kind, message: status.message().to_string() }
    }

    pub fn deadline(after: Duration) -> Self {
        Self { kind: DEADLINE_EXCEEDED, message: format!("no response within {} ms (client-side deadline)", after.as_millis()) }
    }

    pub fn invalid_response(message: String) -> Self {
        Self { kind: INVALID_RESPONSE, message }
    }
}

/// What a successful response said that is worth counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Success {
    /// Images in the request whose result had no usable face (the pipeline then skips the
    /// embedder, so such images are cheaper than real ones).
    pub images_without_face: u32,
}

/// One finished request. Offsets are from the start of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// When the request was due (open loop: its scheduled time) or sent (closed loop).
    /// Latency is measured from here.
    pub sent_at: Duration,
    /// When the response or error arrived.
    pub done_at: Duration,
    /// How late the send started after `sent_at` (open loop; zero in closed loop).
    pub late_by: Duration,
    pub result: Result<Success, Failure>,
}

impl Outcome {
    pub fn latency(&self) -> Duration {
        self.done_at.saturating_sub(self.sent_at)
    }
}

/// Errors by kind, sorted by name, plus the first message seen for each kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    pub counts: BTreeMap<&'static str, u64>,
    pub examples: BTreeMap<&'static str, String>,
}

impl ErrorCounts {
    pub fn add(&mut self, f: &Failure) {
        *self.counts.entry(f.kind).or_default() += 1;
        self.examples.entry(f.kind).or_insert_with(|| f.message.clone());
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// Error kinds, largest count first (ties by name).
pub fn errors_by_count(counts: &BTreeMap<&'static str, u64>) -> Vec<(&'static str, u64)> {
    let mut v: Vec<(&'static str, u64)> = counts.iter().map(|(k, n)| (*k, *n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v
}

/// `RESOURCE_EXHAUSTED: 120, DEADLINE_EXCEEDED: 3`, largest count first; `none` when
/// there were no errors.
pub fn errors_line(counts: &BTreeMap<&'static str, u64>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    errors_by_count(counts).iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ")
}

/// One second of the run, for the timeline.
#[derive(Debug, Clone)]
struct Bucket {
    sent: u64,
    ok: u64,
    errors: u64,
    latency: Histogram<u64>,
}

/// A row of the timeline: requests due/sent in second `second`, and responses that arrived
/// in it with their latencies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineRow {
    pub second: u64,
    /// True for seconds that start before the measured window (warm-up).
    pub warmup: bool,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// Collects outcomes. Requests sent (or due) inside the measured window feed the
/// histograms and counts; successful responses arriving inside it give the achieved rate.
#[derive(Debug)]
pub struct Recorder {
    window: Window,
    /// Successful latencies of measured requests.
    pub ok: Histogram<u64>,
    /// Latencies of every measured request, errors included.
    pub all: Histogram<u64>,
    pub sent: u64,
    pub successes: u64,
    pub errors: ErrorCounts,
    /// Successful responses that arrived inside the window (for the achieved rate).
    pub ok_in_window: u64,
    pub slips: u64,
    pub max_slip: Duration,
    pub images_without_face: u64,
    timeline: Option<Vec<Bucket>>,
}

impl Recorder {
    pub fn new(window: Window, timeline: bool) -> Self {
        Self {
            window,
            ok: histogram(3),
            all: histogram(3),
            sent: 0,
            successes: 0,
            errors: ErrorCounts::default(),
            ok_in_window: 0,
            slips: 0,
            max_slip: Duration::ZERO,
            images_without_face: 0,
            timeline: timeline.then(Vec::new),
        }
    }

    pub fn add(&mut self, o: &Outcome) {
        let latency = o.latency();
        if let Some(t) = &mut self.timeline {
            let bucket = |t: &mut Vec<Bucket>, at: Duration| -> usize {
                let i = at.as_secs() as usize;
                while t.len() <= i {
                    t.push(Bucket { sent: 0, ok: 0, errors: 0, latency: histogram(2) });
                }
                i
            };
            let i = bucket(t, o.sent_at);
            t[i].sent += 1;
            let j = bucket(t, o.done_at);
            if o.result.is_ok() {
                t[j].ok += 1;
            } else {
                t[j].errors += 1;
            }
            record(&mut t[j].latency, latency);
        }
        if o.result.is_ok() && self.window.contains_completion(o.done_at) {
            self.ok_in_window += 1;
        }
        if !self.window.contains_send(o.sent_at) {
            return;
        }
        self.sent += 1;
        if o.late_by > SLIP_THRESHOLD {
            self.slips += 1;
        }
        self.max_slip = self.max_slip.max(o.late_by);
        record(&mut self.all, latency);
        match &o.result {
            Ok(s) => {
                self.successes += 1;
                self.images_without_face += u64::from(s.images_without_face);
                record(&mut self.ok, latency);
            }
            Err(f) => self.errors.add(f),
        }
    }

    /// Successful responses per second over the measured window.
    pub fn achieved_rps(&self) -> f64 {
        let secs = self.window.length().as_secs_f64();
        if secs > 0.0 { self.ok_in_window as f64 / secs } else { 0.0 }
    }

    pub fn timeline(&self) -> Option<Vec<TimelineRow>> {
        let t = self.timeline.as_ref()?;
        let q = |h: &Histogram<u64>, q: f64| (!h.is_empty()).then(|| us_to_ms(h.value_at_quantile(q)));
        Some(
            t.iter()
                .enumerate()
                .map(|(i, b)| TimelineRow {
                    second: i as u64,
                    warmup: Duration::from_secs(i as u64) < self.window.start,
                    sent: b.sent,
                    ok: b.ok,
                    errors: b.errors,
                    p50_ms: q(&b.latency, 0.5),
                    p99_ms: q(&b.latency, 0.99),
                    max_ms: (!b.latency.is_empty()).then(|| us_to_ms(b.latency.max())),
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ok(sent: u64, done: u64) -> Outcome {
        Outcome { sent_at: ms(sent), done_at: ms(done), late_by: Duration::ZERO, result: Ok(Success::default()) }
    }

    fn err(sent: u64, done: u64, code: Code) -> Outcome {
        Outcome { result: Err(Failure::from_status(&Status::new(code, "nope"))), ..ok(sent, done) }
    }

    #[test]
    fn percentiles_of_one_to_a_thousand_ms() {
        let mut h = histogram(3);
        for i in 1..=1000u64 {
            record(&mut h, ms(i));
        }
        let l = Latency::of(&h).expect("1000 samples");
        assert_eq!(l.count, 1000);
        // Three significant digits: each value within 0.1 % of the exact one.
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(close(l.p50_ms, 500.0), "p50 {}", l.p50_ms);
        assert!(close(l.p90_ms, 900.0), "p90 {}", l.p90_ms);
        assert!(close(l.p99_ms, 990.0), "p99 {}", l.p99_ms);
        assert!(close(l.p999_ms, 999.0), "p99.9 {}", l.p999_ms);
        assert!(close(l.max_ms, 1000.0), "max {}", l.max_ms);
        assert!(close(l.mean_ms, 500.5), "mean {}", l.mean_ms);
    }

    #[test]
    fn microsecond_resolution_and_saturation() {
        let mut h = histogram(3);
        record(&mut h, Duration::from_micros(1234));
        assert_eq!(Latency::of(&h).expect("one sample").p50_ms, 1.234);
        let mut h = histogram(3);
        record(&mut h, Duration::from_secs(3600));
        let max = Latency::of(&h).expect("one sample").max_ms;
        assert!((max - 60_000.0).abs() < 60.0, "an hour saturates at 60 s, got {max} ms");
    }

    #[test]
    fn empty_histogram_has_no_percentiles() {
        assert_eq!(Latency::of(&histogram(3)), None);
    }

    #[test]
    fn milliseconds_format_to_three_significant_digits() {
        assert_eq!(fmt_ms(0.3124), "0.312");
        assert_eq!(fmt_ms(4.567), "4.57");
        assert_eq!(fmt_ms(45.21), "45.2");
        assert_eq!(fmt_ms(452.4), "452");
        assert_eq!(fmt_ms(12345.0), "12345");
        assert_eq!(fmt_ms(0.0), "0.000");
    }

    #[test]
    fn latency_line_names_every_percentile() {
        let l = Latency { count: 7, mean_ms: 2.0, p50_ms: 1.5, p90_ms: 12.0, p99_ms: 150.0, p999_ms: 151.0, max_ms: 200.0 };
        assert_eq!(l.line(), "p50 1.50  p90 12.0  p99 150  p99.9 151  max 200 ms  (mean 2.00 ms, 7 samples)");
    }

    #[test]
    fn status_codes_have_grpc_names() {
        assert_eq!(code_name(Code::ResourceExhausted), "RESOURCE_EXHAUSTED");
        assert_eq!(code_name(Code::DeadlineExceeded), "DEADLINE_EXCEEDED");
        assert_eq!(code_name(Code::Unavailable), "UNAVAILABLE");
        assert_eq!(code_name(Code::InvalidArgument), "INVALID_ARGUMENT");
        // Every code maps to its own upper-case name.
        let names: std::collections::BTreeSet<&str> = (0..=16).map(|i| code_name(Code::from_i32(i))).collect();
        assert_eq!(names.len(), 17);
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_uppercase() || c == '_')));
    }

    #[test]
    fn client_side_timeout_counts_as_deadline_exceeded() {
        let f = Failure::from_status(&Status::cancelled("Timeout expired"));
        assert_eq!(f.kind, "DEADLINE_EXCEEDED");
        assert_eq!(Failure::from_status(&Status::cancelled("client went away")).kind, "CANCELLED");
        assert_eq!(Failure::deadline(Duration::from_secs(10)).kind, "DEADLINE_EXCEEDED");
    }

    #[test]
    fn errors_are_counted_by_code_with_an_example() {
        let mut e = ErrorCounts::default();
        assert_eq!(errors_line(&e.counts), "none");
        for _ in 0..120 {
            e.add(&Failure::from_status(&Status::resource_exhausted("inference queue full")));
        }
        e.add(&Failure::from_status(&Status::unavailable("connection refused")));
        for _ in 0..3 {
            e.add(&Failure::deadline(Duration::from_secs(1)));
        }
        e.add(&Failure::from_status(&Status::resource_exhausted("a later message")));
        assert_eq!(e.total(), 125);
        assert_eq!(e.counts["RESOURCE_EXHAUSTED"], 121);
        assert_eq!(e.examples["RESOURCE_EXHAUSTED"], "inference queue full");
        assert_eq!(errors_line(&e.counts), "RESOURCE_EXHAUSTED: 121, DEADLINE_EXCEEDED: 3, UNAVAILABLE: 1");
    }

    #[test]
    fn recorder_measures_only_the_window() {
        // Warm-up 1 s, measured 2 s: window [1000, 3000) ms.
        let mut r = Recorder::new(Window::new(ms(1000), ms(2000)), false);
        r.add(&ok(500, 600)); // warm-up: not measured
        r.add(&ok(999, 1010)); // due in warm-up, answered in the window: counts for the rate only
        r.add(&ok(1000, 1050)); // measured, 50 ms
        r.add(&ok(2000, 2100)); // measured, 100 ms
        r.add(&err(2500, 2501, Code::ResourceExhausted)); // measured error, 1 ms
        r.add(&ok(2990, 3500)); // measured, answered after the window: latency yes, rate no
        r.add(&ok(3000, 3001)); // after the window
        assert_eq!(r.sent, 4);
        assert_eq!(r.successes, 3);
        assert_eq!(errors_line(&r.errors.counts), "RESOURCE_EXHAUSTED: 1");
        assert_eq!(r.ok.len(), 3);
        assert_eq!(r.all.len(), 4);
        assert!((r.ok.max() as i64 - 510_000).abs() < 510, "max {} µs", r.ok.max());
        assert!(r.all.min() <= 1001, "the fast error is in the all-requests histogram");
        // ok_in_window: the ones answered at 1010, 1050 and 2100 ms.
        assert_eq!(r.ok_in_window, 3);
        assert!((r.achieved_rps() - 1.5).abs() < 1e-9);
    }

    #[test]
    fn open_loop_latency_runs_from_the_scheduled_time() {
        // Due at 1000 ms, sent 40 ms late because the generator was busy, answered at 1100 ms:
        // the latency is 100 ms, not the 60 ms the server saw, and the send is a slip.
        let mut r = Recorder::new(Window::new(Duration::ZERO, ms(5000)), false);
        r.add(&Outcome { late_by: ms(40), ..ok(1000, 1100) });
        r.add(&Outcome { late_by: Duration::from_micros(900), ..ok(1200, 1210) });
        assert_eq!(r.slips, 1, "only sends more than 1 ms late are slips");
        assert_eq!(r.max_slip, ms(40));
        assert!((r.ok.max() as i64 - 100_000).abs() < 100);
    }

    #[test]
    fn timeline_buckets_by_second() {
        let mut r = Recorder::new(Window::new(ms(1000), ms(2000)), true);
        r.add(&ok(100, 200));
        r.add(&ok(900, 1100)); // sent in second 0, answered in second 1
        r.add(&err(1500, 1501, Code::ResourceExhausted));
        r.add(&ok(2500, 2520));
        let t = r.timeline().expect("timeline was asked for");
        assert_eq!(t.len(), 3);
        assert_eq!((t[0].second, t[0].warmup, t[0].sent, t[0].ok, t[0].errors), (0, true, 2, 1, 0));
        assert_eq!((t[1].second, t[1].warmup, t[1].sent, t[1].ok, t[1].errors), (1, false, 1, 1, 1));
        assert_eq!((t[2].sent, t[2].ok, t[2].errors), (1, 1, 0));
        let p99 = t[1].p99_ms.expect("second 1 has answers");
        assert!((p99 - 200.0).abs() < 2.0, "p99 of {{200, 1}} ms is 200, got {p99}");
        assert!(Recorder::new(Window::new(ms(0), ms(1)), false).timeline().is_none());
    }
}
