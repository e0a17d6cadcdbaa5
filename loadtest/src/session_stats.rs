//! Aggregation of whole verification sessions: what one session's calls returned
//! ([`SessionOutcome`]), and the recorder that turns outcomes into the numbers of a run:
//! per-RPC and per-session latency histograms, errors by RPC, gRPC status and reason code,
//! the decision mix, whether every stage ran, and the achieved rate.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::schedule::{SLIP_THRESHOLD, Window};
use crate::stats::{Failure, Latency, histogram, record};

/// The orchestrator calls a session makes, by their gRPC method names.
pub const START_SESSION: &str = "StartSession";
pub const ADD_FRAME: &str = "AddFrame";
pub const ADD_DOCUMENT: &str = "AddDocument";
pub const FINISH: &str = "Finish";
pub const VERIFY: &str = "Verify";
pub const LIST_POLICIES: &str = "ListPolicies";

/// The factors a verification under a policy with frames and a document reports when every
/// stage ran: liveness (Liveness.VerifyChallenge), PAD, the face match (FaceMatch.Compare),
/// the document (Document.ExtractPortrait) and identity consistency.
pub const FULL_PIPELINE_FACTORS: [&str; 5] = ["LIVENESS", "PRESENTATION_ATTACK", "FACE_MATCH", "DOCUMENT_QUALITY", "IDENTITY_CONSISTENCY"];

/// The reason code a message starts with (`OVERLOADED: ...` gives `OVERLOADED`): the
/// services put one before the colon of every error message. `None` when there is none.
pub fn reason_code(message: &str) -> Option<&str> {
    let (head, _) = message.split_once(':')?;
    let ok = head.len() >= 2
        && head.starts_with(|c: char| c.is_ascii_uppercase())
        && head.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    ok.then_some(head)
}

/// One call of a session and how it went. Latency of the first call runs from the
/// session's scheduled start; of the others from when they were sent (right after the
/// previous answer: a client with no think time).
#[derive(Debug, Clone, PartialEq)]
pub struct RpcSample {
    pub rpc: &'static str,
    pub latency: Duration,
    pub error: Option<Failure>,
}

/// What a finished session's result said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// `ACCEPT`, `REVIEW`, `REJECT` (or `UNSPECIFIED`).
    pub decision: String,
    /// The result's reason codes, then its factors' as `FACTOR/CODE`; warnings carry
    /// ` (warning)`.
    pub reasons: Vec<String>,
    /// The factor kinds reported (`LIVENESS`, `FACE_MATCH`, ...).
    pub factors: Vec<String>,
    /// Whether a signed evidence record (a compact JWS: three dot-separated parts) came back.
    pub evidence: bool,
}

impl Verdict {
    /// Whether every stage of the pipeline ran: all [`FULL_PIPELINE_FACTORS`] and a signed
    /// evidence record.
    pub fn full_pipeline(&self) -> bool {
        self.evidence && FULL_PIPELINE_FACTORS.iter().all(|f| self.factors.iter().any(|g| g == f))
    }
}

/// Frames a session sent and what the orchestrator said of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameCounts {
    pub sent: u32,
    /// Frames that satisfied their step (AddFrame); unknown with the one-call Verify.
    pub satisfied: u32,
    /// Frames the pool had handed out before (then the service has seen them).
    pub reused: u32,
}

/// One session, from its scheduled start. Offsets are from the start of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionOutcome {
    /// When the session was due to start.
    pub due: Duration,
    /// How late the dispatcher started it.
    pub late_by: Duration,
    /// When its last call was answered (or failed).
    pub done_at: Duration,
    pub rpcs: Vec<RpcSample>,
    pub frames: FrameCounts,
    /// Reason codes of the frame checks (AddFrame), e.g. `REPLAYED_FRAME (warning)`.
    pub frame_reasons: Vec<String>,
    /// The verdict, or the call that failed (its sample is the last in `rpcs`).
    pub result: Result<Verdict, &'static str>,
}

impl SessionOutcome {
    pub fn latency(&self) -> Duration {
        self.done_at.saturating_sub(self.due)
    }
}

/// One kind of error: the call, the gRPC status code name, and the reason code its message
/// starts with (`-` when none).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ErrorKey {
    pub rpc: &'static str,
    pub status: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorRow {
    #[serde(flatten)]
    pub key: ErrorKey,
    pub count: u64,
    /// The first message seen.
    pub example: String,
}

#[derive(Debug)]
struct RpcStats {
    ok: Histogram<u64>,
    calls: u64,
    errors: u64,
}

/// Collects session outcomes. Sessions *due* inside the measured window feed the
/// histograms and counts; sessions that *completed* inside it give the achieved rate.
#[derive(Debug)]
pub struct SessionRecorder {
    window: Window,
    /// Sessions due inside the window.
    pub sessions: u64,
    /// Of those: finished with a result.
    pub completed: u64,
    pub failed: u64,
    /// Session latency (scheduled start to result) of completed sessions, and of all.
    pub ok: Histogram<u64>,
    pub all: Histogram<u64>,
    rpcs: BTreeMap<&'static str, RpcStats>,
    errors: BTreeMap<ErrorKey, (u64, String)>,
    pub decisions: BTreeMap<String, u64>,
    pub reasons: BTreeMap<String, u64>,
    pub frame_reasons: BTreeMap<String, u64>,
    pub factors: BTreeMap<String, u64>,
    pub full_pipeline: u64,
    pub frames: FrameCounts,
    /// Completed sessions whose result arrived inside the window (for the achieved rate).
    pub completed_in_window: u64,
    pub slips: u64,
    pub max_slip: Duration,
    /// Every session of the run, warm-up and drain included, and those with a result: what
    /// the services' CPU time over the whole run is divided by.
    pub all_sessions: u64,
    pub all_completed: u64,
}

impl SessionRecorder {
    pub fn new(window: Window) -> Self {
        Self {
            window,
            sessions: 0,
            completed: 0,
            failed: 0,
            ok: histogram(3),
            all: histogram(3),
            rpcs: BTreeMap::new(),
            errors: BTreeMap::new(),
            decisions: BTreeMap::new(),
            reasons: BTreeMap::new(),
            frame_reasons: BTreeMap::new(),
            factors: BTreeMap::new(),
            full_pipeline: 0,
            frames: FrameCounts::default(),
            completed_in_window: 0,
            slips: 0,
            max_slip: Duration::ZERO,
            all_sessions: 0,
            all_completed: 0,
        }
    }

    pub fn add(&mut self, o: &SessionOutcome) {
        self.all_sessions += 1;
        self.all_completed += u64::from(o.result.is_ok());
        if o.result.is_ok() && self.window.contains_completion(o.done_at) {
            self.completed_in_window += 1;
        }
        if !self.window.contains_send(o.due) {
            return;
        }
        self.sessions += 1;
        if o.late_by > SLIP_THRESHOLD {
            self.slips += 1;
        }
        self.max_slip = self.max_slip.max(o.late_by);
        record(&mut self.all, o.latency());
        for s in &o.rpcs {
            let r = self.rpcs.entry(s.rpc).or_insert_with(|| RpcStats { ok: histogram(3), calls: 0, errors: 0 });
            r.calls += 1;
            match &s.error {
                None => record(&mut r.ok, s.latency),
                Some(f) => {
                    r.errors += 1;
                    let key = ErrorKey { rpc: s.rpc, status: f.kind, reason: reason_code(&f.message).unwrap_or("-").to_string() };
                    self.errors.entry(key).or_insert_with(|| (0, f.message.clone())).0 += 1;
                }
            }
        }
        self.frames.sent += o.frames.sent;
        self.frames.satisfied += o.frames.satisfied;
        self.frames.reused += o.frames.reused;
        for r in &o.frame_reasons {
            *self.frame_reasons.entry(r.clone()).or_default() += 1;
        }
        match &o.result {
            Ok(v) => {
                self.completed += 1;
                record(&mut self.ok, o.latency());
                *self.decisions.entry(v.decision.clone()).or_default() += 1;
                for r in &v.reasons {
                    *self.reasons.entry(r.clone()).or_default() += 1;
                }
                for f in &v.factors {
                    *self.factors.entry(f.clone()).or_default() += 1;
                }
                self.full_pipeline += u64::from(v.full_pipeline());
            }
            Err(_) => self.failed += 1,
        }
    }

    /// Completed verifications per second over the measured window.
    pub fn achieved_per_s(&self) -> f64 {
        let secs = self.window.length().as_secs_f64();
        if secs > 0.0 { self.completed_in_window as f64 / secs } else { 0.0 }
    }

    /// Per call: calls, errors and the latency of the successful ones.
    pub fn rpc_summaries(&self) -> BTreeMap<&'static str, RpcSummary> {
        self.rpcs.iter().map(|(k, r)| (*k, RpcSummary { calls: r.calls, errors: r.errors, latency_ok: Latency::of(&r.ok) })).collect()
    }

    /// Errors, most frequent first (ties in key order).
    pub fn error_rows(&self) -> Vec<ErrorRow> {
        let mut rows: Vec<ErrorRow> =
            self.errors.iter().map(|(k, (n, ex))| ErrorRow { key: k.clone(), count: *n, example: ex.clone() }).collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        rows
    }
}

/// One call's numbers in a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RpcSummary {
    pub calls: u64,
    pub errors: u64,
    pub latency_ok: Option<Latency>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Failure;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ok_rpc(rpc: &'static str, latency_ms: u64) -> RpcSample {
        RpcSample { rpc, latency: ms(latency_ms), error: None }
    }

    fn verdict(decision: &str, factors: &[&str], evidence: bool) -> Verdict {
        Verdict {
            decision: decision.into(),
            reasons: vec!["RENDERED_FROM_STILL_SUSPECTED".into()],
            factors: factors.iter().map(|f| f.to_string()).collect(),
            evidence,
        }
    }

    /// A three-step session due at `due` ms that ended at `done` ms.
    fn finished(due: u64, done: u64, v: Verdict) -> SessionOutcome {
        SessionOutcome {
            due: ms(due),
            late_by: Duration::ZERO,
            done_at: ms(done),
            rpcs: vec![
                ok_rpc(START_SESSION, 10),
                ok_rpc(ADD_FRAME, 100),
                ok_rpc(ADD_FRAME, 110),
                ok_rpc(ADD_FRAME, 120),
                ok_rpc(ADD_DOCUMENT, 300),
                ok_rpc(FINISH, 50),
            ],
            frames: FrameCounts { sent: 3, satisfied: 2, reused: 0 },
            frame_reasons: vec!["REPLAYED_FRAME (warning)".into()],
            result: Ok(v),
        }
    }

    fn failed_at(due: u64, done: u64, rpc: &'static str, f: Failure) -> SessionOutcome {
        SessionOutcome {
            due: ms(due),
            late_by: ms(5),
            done_at: ms(done),
            rpcs: vec![ok_rpc(START_SESSION, 10), RpcSample { rpc, latency: ms(2), error: Some(f) }],
            frames: FrameCounts { sent: 1, satisfied: 0, reused: 1 },
            frame_reasons: vec![],
            result: Err(rpc),
        }
    }

    fn overloaded() -> Failure {
        Failure { kind: "RESOURCE_EXHAUSTED", message: "OVERLOADED: ekyc.v1.Document is at its limit of 8 requests in flight".into() }
    }

    #[test]
    fn reason_codes_come_from_the_message_prefix() {
        assert_eq!(reason_code("OVERLOADED: at its limit"), Some("OVERLOADED"));
        assert_eq!(reason_code("IMAGE_CORRUPT: images[2]: bad"), Some("IMAGE_CORRUPT"));
        assert_eq!(reason_code("BACKEND_TIMEOUT: liveness"), Some("BACKEND_TIMEOUT"));
        assert_eq!(reason_code("no response within 100 ms (client-side deadline)"), None);
        assert_eq!(reason_code("Timeout expired"), None);
        assert_eq!(reason_code("images[2]: IMAGE_CORRUPT"), None, "a code after the first colon is not a prefix");
        assert_eq!(reason_code("A: one letter is no code"), None);
        assert_eq!(reason_code(""), None);
    }

    #[test]
    fn full_pipeline_needs_every_factor_and_the_record() {
        assert!(verdict("REJECT", &FULL_PIPELINE_FACTORS, true).full_pipeline());
        assert!(!verdict("REJECT", &FULL_PIPELINE_FACTORS, false).full_pipeline(), "no evidence record");
        assert!(!verdict("ACCEPT", &["LIVENESS", "PRESENTATION_ATTACK", "FACE_MATCH", "IDENTITY_CONSISTENCY"], true).full_pipeline());
    }

    #[test]
    fn sessions_are_counted_by_their_scheduled_start() {
        // Warm-up 1 s, measured 2 s: window [1000, 3000) ms.
        let mut r = SessionRecorder::new(Window::new(ms(1000), ms(2000)));
        let full = || verdict("REVIEW", &FULL_PIPELINE_FACTORS, true);
        r.add(&finished(500, 1200, full())); // due in warm-up, done in the window: rate only
        r.add(&finished(1000, 1700, full())); // measured, 700 ms
        r.add(&finished(2000, 2900, verdict("REJECT", &["LIVENESS"], true))); // measured, not every stage
        r.add(&failed_at(2500, 2600, ADD_DOCUMENT, overloaded())); // measured failure, 100 ms
        r.add(&finished(2900, 4100, full())); // measured, answered after the window: 1200 ms
        r.add(&finished(3000, 3500, full())); // after the window
        assert_eq!((r.sessions, r.completed, r.failed), (4, 3, 1));
        assert_eq!((r.all_sessions, r.all_completed), (6, 5), "warm-up and later sessions count for the CPU per verification");
        assert_eq!(r.completed_in_window, 3, "the sessions answered at 1200, 1700 and 2900 ms");
        assert!((r.achieved_per_s() - 1.5).abs() < 1e-9);
        assert_eq!(r.full_pipeline, 2);
        assert_eq!(r.decisions, BTreeMap::from([("REJECT".to_string(), 1), ("REVIEW".to_string(), 2)]));
        assert_eq!(r.reasons.get("RENDERED_FROM_STILL_SUSPECTED"), Some(&3));
        assert_eq!(r.factors.get("LIVENESS"), Some(&3));
        assert_eq!(r.factors.get("FACE_MATCH"), Some(&2));
        // Session latency from the scheduled start: 700, 900, 1200 ms ok; plus 100 ms failed.
        assert_eq!(r.ok.len(), 3);
        assert!((r.ok.max() as i64 - 1_200_000).abs() < 1_200);
        assert!((r.ok.min() as i64 - 700_000).abs() < 700);
        assert_eq!(r.all.len(), 4);
        assert!((r.all.min() as i64 - 100_000).abs() < 100);
        // Frames of measured sessions only.
        assert_eq!(r.frames, FrameCounts { sent: 10, satisfied: 6, reused: 1 });
        assert_eq!(r.frame_reasons.get("REPLAYED_FRAME (warning)"), Some(&3));
        assert_eq!((r.slips, r.max_slip), (1, ms(5)), "the failed session started 5 ms late");
    }

    #[test]
    fn calls_and_errors_are_kept_apart_by_rpc_status_and_reason() {
        let mut r = SessionRecorder::new(Window::new(Duration::ZERO, ms(10_000)));
        r.add(&finished(0, 700, verdict("ACCEPT", &FULL_PIPELINE_FACTORS, true)));
        r.add(&failed_at(100, 200, ADD_DOCUMENT, overloaded()));
        r.add(&failed_at(200, 300, ADD_DOCUMENT, overloaded()));
        r.add(&failed_at(300, 400, FINISH, Failure { kind: "UNAVAILABLE", message: "BACKEND_TIMEOUT: liveness did not answer".into() }));
        r.add(&failed_at(400, 500, ADD_FRAME, Failure::deadline(ms(100))));
        let rpcs = r.rpc_summaries();
        assert_eq!(rpcs[START_SESSION].calls, 5);
        assert_eq!(rpcs[START_SESSION].errors, 0);
        assert_eq!((rpcs[ADD_FRAME].calls, rpcs[ADD_FRAME].errors), (4, 1));
        assert_eq!(rpcs[ADD_FRAME].latency_ok.expect("three ok frames").count, 3);
        assert_eq!((rpcs[ADD_DOCUMENT].calls, rpcs[ADD_DOCUMENT].errors), (3, 2));
        let l = rpcs[ADD_DOCUMENT].latency_ok.expect("one ok document");
        assert_eq!(l.count, 1);
        assert!((l.p50_ms - 300.0).abs() < 0.5);
        let errors = r.error_rows();
        let rows: Vec<(&str, &str, &str, u64)> = errors.iter().map(|e| (e.key.rpc, e.key.status, e.key.reason.as_str(), e.count)).collect();
        assert_eq!(
            rows,
            [
                (ADD_DOCUMENT, "RESOURCE_EXHAUSTED", "OVERLOADED", 2),
                (ADD_FRAME, "DEADLINE_EXCEEDED", "-", 1),
                (FINISH, "UNAVAILABLE", "BACKEND_TIMEOUT", 1),
            ]
        );
        assert!(errors[0].example.starts_with("OVERLOADED: ekyc.v1.Document"));
    }
}
