//! Human-readable output, and the JSON envelope (command line and machine with the numbers).

use std::fmt::Write as _;

use serde::Serialize;

use crate::grpc::RunSummary;
use crate::limit::LimitSummary;
use crate::machine::Machine;
use crate::session::{Mode, SessionSummary};
use crate::stats::{Latency, TimelineRow, errors_by_count, errors_line, fmt_ms};

/// What `--json` prints: one object with the command, the machine and the results.
#[derive(Debug, Serialize)]
pub struct Envelope<T: Serialize> {
    pub command: String,
    pub machine: Machine,
    /// Seconds since the Unix epoch when the run finished.
    pub finished_unix_s: u64,
    #[serde(flatten)]
    pub result: T,
}

impl<T: Serialize> Envelope<T> {
    pub fn new(command: String, machine: Machine, result: T) -> Self {
        let finished_unix_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Self { command, machine, finished_unix_s, result }
    }
}

/// Any result that has a named list of runs (the sweep).
#[derive(Debug, Serialize)]
pub struct Sweep {
    pub mode: &'static str,
    pub levels: Vec<RunSummary>,
}

fn header(out: &mut String, title: &str, command: &str, machine: &Machine) {
    let _ = writeln!(out, "{title}");
    let _ = writeln!(out, "  command      {command}");
    let _ = writeln!(out, "  machine      {}", machine.line());
}

fn latency_line(l: Option<&Latency>) -> String {
    l.map(Latency::line).unwrap_or_else(|| "no samples".into())
}

/// The block printed after an open or closed run.
pub fn run_block(s: &RunSummary, command: &str, machine: &Machine) -> String {
    let mut out = String::new();
    let what = match (s.offered_rps, s.concurrency) {
        (Some(r), _) => format!("open loop at {r} req/s"),
        (_, Some(c)) => format!("closed loop with {c} worker(s)"),
        _ => s.mode.to_string(),
    };
    header(&mut out, &format!("ekyc-loadtest: FaceMatch/Embed at {}, {what}", s.server), command, machine);
    let _ = writeln!(
        out,
        "  window       {} s measured after {} s warm-up; {} connection(s), {} image(s)/request from {} file(s), timeout {} s",
        s.duration_s, s.warmup_s, s.connections, s.images_per_request, s.image_files, s.timeout_s
    );
    if let Some(r) = s.offered_rps {
        let _ = writeln!(out, "  offered      {r:.2} req/s");
    }
    let _ = writeln!(out, "  achieved     {:.2} successful responses/s ({:.2} images/s)", s.achieved_rps, s.achieved_images_per_s);
    let _ = writeln!(out, "  requests     {} sent, {} ok, {} errors", s.sent, s.successes, s.errors_total);
    for (kind, n) in errors_by_count(&s.errors) {
        let example = s.error_examples.get(kind).map(|m| format!("  (e.g. {m:?})")).unwrap_or_default();
        let _ = writeln!(out, "    {kind}: {n}{example}");
    }
    let _ = writeln!(out, "  latency ok   {}", latency_line(s.latency_ok.as_ref()));
    let _ = writeln!(out, "  latency all  {}", latency_line(s.latency_all.as_ref()));
    if s.offered_rps.is_some() {
        let _ = writeln!(out, "               (open loop: measured from each request's scheduled send time)");
    }
    if let (Some(slips), Some(max)) = (s.schedule_slips, s.max_slip_ms) {
        let _ = writeln!(
            out,
            "  schedule     {slips} send(s) started > 1 ms late (max {} ms); in-flight cap {} reached {} time(s)",
            fmt_ms(max),
            s.max_in_flight.unwrap_or(0),
            s.in_flight_cap_waits.unwrap_or(0)
        );
    }
    if s.images_without_face > 0 {
        let _ = writeln!(out, "  warning      {} image result(s) had no usable face (no embedding computed)", s.images_without_face);
    }
    if let Some(t) = &s.timeline {
        out.push_str(&timeline_table(t));
    }
    out
}

/// The per-second timeline: requests due/sent in each second, and responses that arrived in
/// it with their latencies.
pub fn timeline_table(rows: &[TimelineRow]) -> String {
    let mut out =
        String::from("  timeline     (per second; sent = due/sent in that second, ok/err/latency = answered in it; * = warm-up)\n");
    let _ = writeln!(out, "  {:>6} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9}", "second", "sent", "ok", "err", "p50 ms", "p99 ms", "max ms");
    let opt = |v: Option<f64>| v.map(fmt_ms).unwrap_or_else(|| "-".into());
    for r in rows {
        let sec = format!("{}{}", r.second, if r.warmup { "*" } else { "" });
        let _ = writeln!(
            out,
            "  {sec:>6} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9}",
            r.sent,
            r.ok,
            r.errors,
            opt(r.p50_ms),
            opt(r.p99_ms),
            opt(r.max_ms)
        );
    }
    out
}

/// One row per concurrency level.
pub fn sweep_table(levels: &[RunSummary], command: &str, machine: &Machine) -> String {
    let mut out = String::new();
    let server = levels.first().map(|s| s.server.as_str()).unwrap_or("?");
    header(&mut out, &format!("ekyc-loadtest sweep: FaceMatch/Embed at {server}, closed loop"), command, machine);
    let _ = writeln!(
        out,
        "  {:>5} {:>9} {:>9} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}  errors",
        "conc", "resp/s", "images/s", "ok", "err", "p50 ms", "p90 ms", "p99 ms", "p99.9", "max ms"
    );
    for s in levels {
        let p = |f: fn(&Latency) -> f64| s.latency_ok.as_ref().map(|l| fmt_ms(f(l))).unwrap_or_else(|| "-".into());
        let errors = if s.errors.is_empty() { String::new() } else { errors_line(&s.errors) };
        let _ = writeln!(
            out,
            "  {:>5} {:>9.2} {:>9.2} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}  {errors}",
            s.concurrency.unwrap_or(0),
            s.achieved_rps,
            s.achieved_images_per_s,
            s.successes,
            s.errors_total,
            p(|l| l.p50_ms),
            p(|l| l.p90_ms),
            p(|l| l.p99_ms),
            p(|l| l.p999_ms),
            p(|l| l.max_ms),
        );
    }
    out
}

/// `A: 3, B: 1`, largest count first; `none` when empty.
fn counts_line(m: &std::collections::BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    let mut v: Vec<(&String, &u64)> = m.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ")
}

/// The block printed after a session run.
pub fn session_block(s: &SessionSummary, command: &str, machine: &Machine) -> String {
    let mut out = String::new();
    let flow = match s.mode {
        Mode::Step => "StartSession, AddFrame per step, AddDocument, Finish",
        Mode::Verify => "StartSession, Verify",
    };
    header(
        &mut out,
        &format!("ekyc-loadtest session: {flow} at {}, open loop at {} sessions/s", s.server, s.offered_per_s),
        command,
        machine,
    );
    let _ = writeln!(
        out,
        "  window       {} s measured after {} s warm-up; policy {} ({} steps); {} connection(s), timeout {} s",
        s.duration_s, s.warmup_s, s.policy, s.challenge_steps, s.connections, s.timeout_s
    );
    let copies: Vec<String> = s.frame_copies.iter().map(|(p, n)| format!("{p} {n}")).collect();
    let _ = writeln!(
        out,
        "  inputs       frames {}x{} px, copies per pose: {}; document {} bytes",
        s.frame_px.0,
        s.frame_px.1,
        copies.join(", "),
        s.document_bytes
    );
    let _ = writeln!(out, "  offered      {:.3} sessions/s", s.offered_per_s);
    let _ = writeln!(out, "  achieved     {:.3} verifications/s (results inside the window)", s.achieved_per_s);
    let _ = writeln!(
        out,
        "  sessions     {} due, {} with a result ({} ran every stage and carry a signed record), {} failed",
        s.sessions, s.completed, s.full_pipeline, s.failed
    );
    let _ = writeln!(
        out,
        "  whole run    {} sessions (warm-up and drain included), {} with a result{}",
        s.all_sessions,
        s.all_completed,
        s.generator_cpu_s.map(|c| format!("; generator used {c:.1} CPU-s")).unwrap_or_default()
    );
    let _ = writeln!(out, "  decisions    {}", counts_line(&s.decisions));
    let _ = writeln!(out, "  reasons      {}", counts_line(&s.result_reasons));
    let _ = writeln!(out, "  factors      {}", counts_line(&s.factors));
    let satisfied = if s.mode == Mode::Step { format!("{} satisfied their step", s.frames_satisfied) } else { "n/a with Verify".into() };
    let _ = writeln!(
        out,
        "  frames       {} sent, {satisfied}, {} reused; checks: {}",
        s.frames_sent,
        s.frames_reused,
        counts_line(&s.frame_reasons)
    );
    let _ = writeln!(out, "  session ok   {}", latency_line(s.latency_session_ok.as_ref()));
    let _ = writeln!(out, "  session all  {}", latency_line(s.latency_session_all.as_ref()));
    let _ = writeln!(out, "               (from each session's scheduled start; the first call of each session likewise)");
    for (rpc, r) in &s.rpcs {
        let _ = writeln!(out, "  {rpc:<12} {} calls, {} errors; ok {}", r.calls, r.errors, latency_line(r.latency_ok.as_ref()));
    }
    if s.errors.is_empty() {
        let _ = writeln!(out, "  errors       none");
    }
    for e in &s.errors {
        let _ = writeln!(out, "  error        {} {} {}: {}  (e.g. {:?})", e.key.rpc, e.key.status, e.key.reason, e.count, e.example);
    }
    let _ = writeln!(
        out,
        "  schedule     {} session(s) started > 1 ms late (max {} ms); in-flight cap {} reached {} time(s)",
        s.schedule_slips,
        fmt_ms(s.max_slip_ms),
        s.max_in_flight,
        s.in_flight_cap_waits
    );
    out
}

/// The block printed after the limit mode.
pub fn limit_block(s: &LimitSummary, command: &str, machine: &Machine) -> String {
    let mut out = String::new();
    header(&mut out, "ekyc-loadtest limit: in-process decode + analyze (embed), no gRPC, no queue", command, machine);
    let _ = writeln!(
        out,
        "  setup        {} thread(s) sharing {} pipeline(s), {} intra-op thread(s) per model; {} s measured after {} s warm-up",
        s.threads, s.pipelines, s.intra_threads, s.duration_s, s.warmup_s
    );
    for i in &s.images {
        let _ = writeln!(out, "  image        {} ({} bytes, {}x{} px, {} face(s))", i.file, i.bytes, i.width, i.height, i.faces);
    }
    let per: Vec<String> = s.per_thread_images_per_s.iter().map(|r| format!("{r:.2}")).collect();
    let _ = writeln!(out, "  limit        {:.2} images/s (per thread: {})", s.images_per_s, per.join(", "));
    let _ = writeln!(out, "  latency      {}", latency_line(s.latency.as_ref()));
    let _ = writeln!(out, "  decode       {}", latency_line(s.decode_latency.as_ref()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_marks_warmup_and_empty_seconds() {
        let rows = vec![
            TimelineRow { second: 0, warmup: true, sent: 5, ok: 4, errors: 0, p50_ms: Some(40.0), p99_ms: Some(52.5), max_ms: Some(52.5) },
            TimelineRow { second: 1, warmup: false, sent: 5, ok: 0, errors: 0, p50_ms: None, p99_ms: None, max_ms: None },
        ];
        let t = timeline_table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["0*", "5", "4", "0", "40.0", "52.5", "52.5"]);
        assert_eq!(lines[3].split_whitespace().collect::<Vec<_>>(), ["1", "5", "0", "0", "-", "-", "-"]);
    }
}
