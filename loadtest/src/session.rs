//! Driving whole verifications through `ekyc.v1.Orchestrator` over gRPC: sessions arrive
//! on an open-loop schedule, and each runs as a browser or chat client would, with no think
//! time: StartSession with the operator's API key, then with the session token one
//! AddFrame per challenge step answering the pose the server asked for, AddDocument, and
//! Finish (`--mode step`), or everything in one Verify (`--mode verify`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ekyc_proto::reason_name;
use ekyc_proto::v1 as pb;
use ekyc_proto::v1::orchestrator_client::OrchestratorClient;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::dispatch::{self, Due};
use crate::grpc::{MAX_MESSAGE_BYTES, normalise_server};
use crate::inputs::Inputs;
use crate::schedule::Window;
use crate::session_stats::{
    ADD_DOCUMENT, ADD_FRAME, ErrorRow, FINISH, FrameCounts, LIST_POLICIES, RpcSample, RpcSummary, START_SESSION, SessionOutcome,
    SessionRecorder, VERIFY, Verdict,
};
use crate::stats::{Failure, Latency};

/// How a session hands over its evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// StartSession, AddFrame per step, AddDocument, Finish (a chat bot's flow).
    Step,
    /// StartSession, then one Verify with every frame and the document (a web page's).
    Verify,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    pub server: String,
    /// The operator's API key (StartSession and ListPolicies only).
    pub api_key: String,
    /// Policy name; empty: the server's default.
    pub policy: String,
    pub mode: Mode,
    pub connections: usize,
    /// Deadline of each call (sent as grpc-timeout and enforced by the client).
    pub timeout: Duration,
}

/// Open connections to the orchestrator, shared by every session task.
#[derive(Debug)]
pub struct Orchestrator {
    clients: Vec<OrchestratorClient<Channel>>,
    spec: SessionSpec,
    pub server: String,
}

/// `msg` with `authorization: Bearer <credential>` and the call's deadline.
fn request<T>(msg: T, credential: &str, timeout: Duration) -> Result<tonic::Request<T>, Failure> {
    let mut r = tonic::Request::new(msg);
    let value = format!("Bearer {credential}")
        .parse()
        .map_err(|_| Failure { kind: "INVALID_CREDENTIAL", message: "the API key or session token is not valid header text".into() })?;
    r.metadata_mut().insert("authorization", value);
    r.set_timeout(timeout);
    Ok(r)
}

/// Awaits a call within `timeout`: its answer, or the failure (status or client deadline).
async fn call<T>(timeout: Duration, fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>) -> Result<T, Failure> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(Failure::deadline(timeout)),
        Ok(Err(status)) => Err(Failure::from_status(&status)),
        Ok(Ok(r)) => Ok(r.into_inner()),
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::invalid_response(message.into())
}

fn reason_names(reasons: &[pb::Reason]) -> Vec<String> {
    reasons.iter().map(|r| format!("{}{}", reason_name(r.code), if r.blocking { "" } else { " (warning)" })).collect()
}

fn factor_name(kind: i32) -> &'static str {
    pb::FactorKind::try_from(kind).map_or("UNSPECIFIED", |k| k.as_str_name()).trim_start_matches("FACTOR_KIND_")
}

/// What a result says, for the report: the result's reasons, then each factor's as
/// `FACTOR/REASON`.
pub fn verdict(r: &pb::VerificationResult) -> Verdict {
    Verdict {
        decision: pb::Decision::try_from(r.decision).map_or("UNSPECIFIED", |d| d.as_str_name()).trim_start_matches("DECISION_").into(),
        reasons: reason_names(&r.reasons)
            .into_iter()
            .chain(r.factors.iter().flat_map(|f| reason_names(&f.reasons).into_iter().map(|x| format!("{}/{x}", factor_name(f.kind)))))
            .collect(),
        factors: r.factors.iter().map(|f| factor_name(f.kind).to_string()).collect(),
        evidence: r.evidence.as_ref().is_some_and(|e| {
            let parts: Vec<&str> = e.evidence_jws.split('.').collect();
            parts.len() == 3 && parts.iter().all(|p| !p.is_empty())
        }),
    }
}

/// One session in progress: its calls so far and where it stands.
struct Run<'a> {
    o: &'a Orchestrator,
    client: OrchestratorClient<Channel>,
    rpcs: Vec<RpcSample>,
    frames: FrameCounts,
    frame_reasons: Vec<String>,
}

impl Run<'_> {
    /// Records a call that started at `from` and returns its answer.
    fn sample<T>(&mut self, rpc: &'static str, from: Instant, r: Result<T, Failure>) -> Result<T, &'static str> {
        let latency = from.elapsed();
        match r {
            Ok(v) => {
                self.rpcs.push(RpcSample { rpc, latency, error: None });
                Ok(v)
            }
            Err(f) => {
                self.rpcs.push(RpcSample { rpc, latency, error: Some(f) });
                Err(rpc)
            }
        }
    }

    /// The frame answering `step`, from the pool (which holds every pose).
    fn frame(&mut self, inputs: &Inputs, step: &pb::ChallengeStep) -> pb::Frame {
        let (data, reused) = inputs.frames.take(step.pose()).expect("the frame pool holds every pose, and the challenge was checked");
        self.frames.sent += 1;
        self.frames.reused += u32::from(reused);
        pb::Frame {
            image: Some(pb::Image { data, content_type: Some("image/jpeg".into()) }),
            step_index: step.index,
            client_capture_unix_ms: None,
            mirrored: false,
        }
    }

    async fn session(&mut self, inputs: &Inputs, scheduled: Instant) -> Result<Verdict, &'static str> {
        let spec = &self.o.spec;
        let t = spec.timeout;
        let start = pb::StartSessionRequest { policy: spec.policy.clone(), client_reference: None, locale: String::new() };
        let started = match request(start, &spec.api_key, t) {
            Ok(req) => call(t, self.client.start_session(req)).await,
            Err(f) => Err(f),
        };
        // A usable challenge is part of a good answer: steps, each asking for a known pose.
        let started = started.and_then(|s| match s.challenge.clone() {
            Some(c) if !c.steps.is_empty() && c.steps.iter().all(|st| st.pose() != pb::PoseStep::Unspecified) => Ok((s, c)),
            _ => Err(invalid("StartSession returned no challenge, or a step without a pose")),
        });
        let (started, challenge) = self.sample(START_SESSION, scheduled, started)?;
        let id = started.session_id.clone();
        let token = started.session_token.clone();
        let frames: Vec<pb::Frame> = challenge.steps.iter().map(|step| self.frame(inputs, step)).collect();
        let document = || pb::Image { data: inputs.document.clone(), content_type: Some("image/jpeg".into()) };
        let result = match spec.mode {
            Mode::Verify => {
                let msg = pb::VerifyRequest { session_id: id, frames, document: Some(document()), document_type_hint: 0, signature: None };
                let sent = Instant::now();
                let r = match request(msg, &token, t) {
                    Ok(req) => call(t, self.client.verify(req)).await,
                    Err(f) => Err(f),
                };
                self.sample(VERIFY, sent, r)?
            }
            Mode::Step => {
                for frame in frames {
                    let sent = Instant::now();
                    let r = match request(pb::AddFrameRequest { session_id: id.clone(), frame: Some(frame) }, &token, t) {
                        Ok(req) => call(t, self.client.add_frame(req)).await,
                        Err(f) => Err(f),
                    };
                    let p = self.sample(ADD_FRAME, sent, r)?;
                    if let Some(pb::session_progress::Added::Frame(f)) = &p.added {
                        self.frames.satisfied += u32::from(f.step_satisfied);
                        self.frame_reasons.extend(reason_names(&f.reasons));
                    }
                }
                let sent = Instant::now();
                let msg = pb::AddDocumentRequest { session_id: id.clone(), image: Some(document()), type_hint: 0 };
                let r = match request(msg, &token, t) {
                    Ok(req) => call(t, self.client.add_document(req)).await,
                    Err(f) => Err(f),
                };
                self.sample(ADD_DOCUMENT, sent, r)?;
                let sent = Instant::now();
                let r = match request(pb::FinishRequest { session_id: id }, &token, t) {
                    Ok(req) => call(t, self.client.finish(req)).await,
                    Err(f) => Err(f),
                };
                self.sample(FINISH, sent, r)?
            }
        };
        Ok(verdict(&result))
    }
}

impl Orchestrator {
    /// Opens `spec.connections` separate HTTP/2 connections.
    pub async fn connect(spec: SessionSpec) -> anyhow::Result<Self> {
        if spec.connections == 0 {
            bail!("--connections must be at least 1");
        }
        let server = normalise_server(&spec.server);
        let endpoint = Endpoint::from_shared(server.clone())
            .with_context(|| format!("invalid --server {server:?}"))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .buffer_size(1024);
        let mut clients = Vec::with_capacity(spec.connections);
        for i in 0..spec.connections {
            let channel = endpoint.connect().await.with_context(|| format!("connecting to {server} (connection {})", i + 1))?;
            clients.push(
                OrchestratorClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES),
            );
        }
        Ok(Self { clients, spec, server })
    }

    /// The policy the sessions will run under, as the server describes it (checks the API
    /// key too, before any input is made).
    pub async fn policy(&self) -> anyhow::Result<pb::PolicySummary> {
        let mut client = self.clients[0].clone();
        let req = request(pb::ListPoliciesRequest {}, &self.spec.api_key, self.spec.timeout).map_err(|f| anyhow::anyhow!(f.message))?;
        let list = call(self.spec.timeout, client.list_policies(req))
            .await
            .map_err(|f| anyhow::anyhow!("{LIST_POLICIES}: {}: {}", f.kind, f.message))?;
        let name = if self.spec.policy.is_empty() { list.default_policy.clone() } else { self.spec.policy.clone() };
        list.policies.into_iter().find(|p| p.name == name).with_context(|| format!("the server offers no policy {name:?}"))
    }

    /// Runs session `due.k` from its scheduled start to its result or first failure.
    pub async fn session(&self, inputs: &Inputs, due: Due) -> SessionOutcome {
        let client = self.clients[(due.k % self.clients.len() as u64) as usize].clone();
        let mut run = Run { o: self, client, rpcs: Vec::new(), frames: FrameCounts::default(), frame_reasons: Vec::new() };
        let result = run.session(inputs, due.start + due.offset).await;
        SessionOutcome {
            due: due.offset,
            late_by: due.late_by,
            done_at: due.start.elapsed(),
            rpcs: run.rpcs,
            frames: run.frames,
            frame_reasons: run.frame_reasons,
            result,
        }
    }
}

/// Everything measured in one session run.
#[derive(Debug, Clone, Serialize)]
pub struct SessionSummary {
    pub mode: Mode,
    pub server: String,
    pub policy: String,
    pub challenge_steps: u32,
    pub offered_per_s: f64,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub connections: usize,
    pub timeout_s: f64,
    /// Sessions due inside the measured window.
    pub sessions: u64,
    pub completed: u64,
    pub failed: u64,
    /// Sessions with a result that arrived inside the window, per second.
    pub achieved_per_s: f64,
    /// Scheduled start to result, completed sessions; and all sessions (failures included).
    pub latency_session_ok: Option<Latency>,
    pub latency_session_all: Option<Latency>,
    pub rpcs: BTreeMap<&'static str, RpcSummary>,
    pub errors: Vec<ErrorRow>,
    pub decisions: BTreeMap<String, u64>,
    /// Reason codes of the results (` (warning)` when not blocking).
    pub result_reasons: BTreeMap<String, u64>,
    /// Reason codes of the frame checks (AddFrame).
    pub frame_reasons: BTreeMap<String, u64>,
    /// Results reporting each factor kind.
    pub factors: BTreeMap<String, u64>,
    /// Results with every stage's factor and a signed evidence record.
    pub full_pipeline: u64,
    pub frames_sent: u64,
    pub frames_satisfied: u64,
    pub frames_reused: u64,
    /// Every session of the run (warm-up and drain included) and those with a result.
    pub all_sessions: u64,
    pub all_completed: u64,
    /// CPU time (user + system) of this generator during the sessions, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator_cpu_s: Option<f64>,
    pub schedule_slips: u64,
    pub max_slip_ms: f64,
    pub max_in_flight: usize,
    pub in_flight_cap_waits: u64,
    pub frame_px: (u32, u32),
    pub frame_copies: BTreeMap<&'static str, usize>,
    pub document_bytes: usize,
}

/// Timing of a session run.
#[derive(Debug, Clone, Copy)]
pub struct SessionRun {
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    pub max_in_flight: usize,
}

fn lock(rec: &Mutex<SessionRecorder>) -> std::sync::MutexGuard<'_, SessionRecorder> {
    rec.lock().expect("the recorder mutex is only poisoned if recording panicked, which is a bug")
}

/// Sessions arrive at `run.rate` per second (session `k` is due at `start + k / rate`);
/// each runs on its own task from its due time, whatever the others are doing.
pub async fn run_sessions(
    orchestrator: Arc<Orchestrator>,
    inputs: Arc<Inputs>,
    policy: &pb::PolicySummary,
    run: SessionRun,
) -> anyhow::Result<SessionSummary> {
    let window = Window::new(run.warmup, run.duration);
    let rec = Arc::new(Mutex::new(SessionRecorder::new(window)));
    let cpu_before = crate::machine::process_cpu_seconds();
    let cap_waits = {
        let (o, inputs, rec) = (Arc::clone(&orchestrator), Arc::clone(&inputs), Arc::clone(&rec));
        dispatch::open_loop(run.rate, window, run.max_in_flight, move |due| {
            let (o, inputs, rec) = (Arc::clone(&o), Arc::clone(&inputs), Arc::clone(&rec));
            async move {
                let outcome = o.session(&inputs, due).await;
                lock(&rec).add(&outcome);
            }
        })
        .await?
    };
    let generator_cpu_s = crate::machine::process_cpu_seconds().zip(cpu_before).map(|(after, before)| after - before);
    let rec = lock(&rec);
    let spec = &orchestrator.spec;
    Ok(SessionSummary {
        mode: spec.mode,
        server: orchestrator.server.clone(),
        policy: format!("{}@{}", policy.name, policy.version),
        challenge_steps: policy.challenge_steps,
        offered_per_s: run.rate,
        warmup_s: run.warmup.as_secs_f64(),
        duration_s: run.duration.as_secs_f64(),
        connections: spec.connections,
        timeout_s: spec.timeout.as_secs_f64(),
        sessions: rec.sessions,
        completed: rec.completed,
        failed: rec.failed,
        achieved_per_s: rec.achieved_per_s(),
        latency_session_ok: Latency::of(&rec.ok),
        latency_session_all: Latency::of(&rec.all),
        rpcs: rec.rpc_summaries(),
        errors: rec.error_rows(),
        decisions: rec.decisions.clone(),
        result_reasons: rec.reasons.clone(),
        frame_reasons: rec.frame_reasons.clone(),
        factors: rec.factors.clone(),
        full_pipeline: rec.full_pipeline,
        frames_sent: u64::from(rec.frames.sent),
        frames_satisfied: u64::from(rec.frames.satisfied),
        frames_reused: u64::from(rec.frames.reused),
        all_sessions: rec.all_sessions,
        all_completed: rec.all_completed,
        generator_cpu_s,
        schedule_slips: rec.slips,
        max_slip_ms: rec.max_slip.as_micros() as f64 / 1e3,
        max_in_flight: run.max_in_flight,
        in_flight_cap_waits: cap_waits,
        frame_px: inputs.frame_size,
        frame_copies: inputs.frames.copies(),
        document_bytes: inputs.document.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::FramePool;
    use crate::session_stats::FULL_PIPELINE_FACTORS;
    use pb::orchestrator_server::{Orchestrator as OrchestratorApi, OrchestratorServer};
    use pb::{PoseStep, ReasonCode};
    use tonic::{Request, Response, Status};

    const KEY: &str = "ek_test-api-key";
    /// The challenge every session of the fake gets.
    const POSES: [PoseStep; 3] = [PoseStep::Frontal, PoseStep::TurnLeft, PoseStep::LookUp];

    /// A stand-in orchestrator on loopback that checks what a well-behaved client sends: the
    /// API key on StartSession, the session's own token on the rest, and on every frame the
    /// pose its step asked for (the fake's frames start with the pose's name). Every fourth
    /// session it starts (ids 3, 7, ...) is refused its document (or its Verify) with
    /// RESOURCE_EXHAUSTED `OVERLOADED`.
    #[derive(Default)]
    struct Fake {
        started: std::sync::atomic::AtomicU64,
    }

    fn bearer<T>(r: &Request<T>) -> String {
        r.metadata().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
    }

    fn check_token<T>(r: &Request<T>, session_id: &str) -> Result<u64, Status> {
        if bearer(r) != format!("Bearer tok-{session_id}") {
            return Err(Status::permission_denied("CALLER_NOT_PERMITTED: not this session's token"));
        }
        session_id.strip_prefix('s').and_then(|n| n.parse().ok()).ok_or_else(|| Status::not_found("SESSION_NOT_FOUND: no such session"))
    }

    fn overloaded(n: u64) -> Result<(), Status> {
        if n % 4 == 3 { Err(Status::resource_exhausted("OVERLOADED: ekyc.v1.Document is at its limit; retry")) } else { Ok(()) }
    }

    fn answers_its_step(f: &pb::Frame) -> bool {
        let data = f.image.as_ref().map(|i| i.data.as_slice()).unwrap_or_default();
        POSES.get(f.step_index as usize).is_some_and(|p| data.starts_with(p.as_str_name().as_bytes()))
    }

    fn result(session_id: String, decision: pb::Decision) -> pb::VerificationResult {
        let kinds = [
            pb::FactorKind::Liveness,
            pb::FactorKind::PresentationAttack,
            pb::FactorKind::FaceMatch,
            pb::FactorKind::DocumentQuality,
            pb::FactorKind::IdentityConsistency,
        ];
        pb::VerificationResult {
            session_id,
            decision: decision as i32,
            factors: kinds.iter().map(|k| pb::Factor { kind: *k as i32, ..Default::default() }).collect(),
            reasons: vec![pb::Reason { code: ReasonCode::RenderedFromStillSuspected as i32, blocking: false, ..Default::default() }],
            evidence: Some(pb::EvidenceRecord { evidence_jws: "aGVhZA.cGF5bG9hZA.c2ln".into(), ..Default::default() }),
            ..Default::default()
        }
    }

    #[tonic::async_trait]
    impl OrchestratorApi for Fake {
        async fn list_policies(&self, r: Request<pb::ListPoliciesRequest>) -> Result<Response<pb::ListPoliciesResponse>, Status> {
            if bearer(&r) != format!("Bearer {KEY}") {
                return Err(Status::unauthenticated("CALLER_UNAUTHENTICATED: unknown credential"));
            }
            let p = pb::PolicySummary { name: "low-risk".into(), version: "1-abc".into(), challenge_steps: 3, ..Default::default() };
            Ok(Response::new(pb::ListPoliciesResponse { policies: vec![p], default_policy: "low-risk".into() }))
        }

        async fn start_session(&self, r: Request<pb::StartSessionRequest>) -> Result<Response<pb::StartSessionResponse>, Status> {
            if bearer(&r) != format!("Bearer {KEY}") {
                return Err(Status::unauthenticated("CALLER_UNAUTHENTICATED: unknown credential"));
            }
            let n = self.started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let steps = POSES.iter().enumerate().map(|(i, p)| pb::ChallengeStep { index: i as u32, pose: *p as i32, ..Default::default() });
            Ok(Response::new(pb::StartSessionResponse {
                session_id: format!("s{n}"),
                session_token: format!("tok-s{n}"),
                challenge: Some(pb::Challenge { challenge_id: format!("c{n}"), steps: steps.collect(), ..Default::default() }),
                ..Default::default()
            }))
        }

        async fn add_frame(&self, r: Request<pb::AddFrameRequest>) -> Result<Response<pb::SessionProgress>, Status> {
            check_token(&r, &r.get_ref().session_id)?;
            let frame = r.get_ref().frame.clone().ok_or_else(|| Status::invalid_argument("FRAME_MISSING: frame"))?;
            let check = pb::FrameCheck {
                step_index: frame.step_index,
                step_satisfied: answers_its_step(&frame),
                reasons: vec![pb::Reason { code: ReasonCode::ReplayedFrame as i32, blocking: false, ..Default::default() }],
                ..Default::default()
            };
            Ok(Response::new(pb::SessionProgress { added: Some(pb::session_progress::Added::Frame(check)), ..Default::default() }))
        }

        async fn add_document(&self, r: Request<pb::AddDocumentRequest>) -> Result<Response<pb::SessionProgress>, Status> {
            let n = check_token(&r, &r.get_ref().session_id)?;
            overloaded(n)?;
            if r.get_ref().image.as_ref().map(|i| i.data.as_slice()) != Some(b"DOC".as_slice()) {
                return Err(Status::invalid_argument("IMAGE_CORRUPT: image: not the document"));
            }
            Ok(Response::new(pb::SessionProgress::default()))
        }

        async fn add_signature(&self, _: Request<pb::AddSignatureRequest>) -> Result<Response<pb::SessionProgress>, Status> {
            Err(Status::unimplemented("not in the fake"))
        }

        async fn get_session(&self, _: Request<pb::GetSessionRequest>) -> Result<Response<pb::SessionProgress>, Status> {
            Err(Status::unimplemented("not in the fake"))
        }

        async fn finish(&self, r: Request<pb::FinishRequest>) -> Result<Response<pb::VerificationResult>, Status> {
            check_token(&r, &r.get_ref().session_id)?;
            Ok(Response::new(result(r.get_ref().session_id.clone(), pb::Decision::Review)))
        }

        async fn verify(&self, r: Request<pb::VerifyRequest>) -> Result<Response<pb::VerificationResult>, Status> {
            let n = check_token(&r, &r.get_ref().session_id)?;
            overloaded(n)?;
            let v = r.get_ref();
            if v.frames.len() != POSES.len() || !v.frames.iter().all(answers_its_step) || v.document.is_none() {
                return Err(Status::invalid_argument("FRAME_MISSING: frames do not answer the challenge"));
            }
            Ok(Response::new(result(v.session_id.clone(), pb::Decision::Accept)))
        }

        async fn cancel_session(&self, _: Request<pb::CancelSessionRequest>) -> Result<Response<pb::SessionProgress>, Status> {
            Err(Status::unimplemented("not in the fake"))
        }
    }

    async fn fake_server() -> (String, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding an ephemeral loopback port");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder().add_service(OrchestratorServer::new(Fake::default())).serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = rx.await;
                },
            ),
        );
        (format!("127.0.0.1:{}", addr.port()), tx)
    }

    /// `copies` frames per pose, each starting with its pose's name, and the document `DOC`.
    fn inputs(copies: usize) -> Inputs {
        let frames = crate::inputs::POSES
            .iter()
            .map(|p| (*p, (0..copies).map(|i| format!("{}#{i}", p.as_str_name()).into_bytes()).collect()))
            .collect();
        Inputs { frames: FramePool::new(frames).expect("every pose has frames"), document: b"DOC".to_vec(), frame_size: (4, 3) }
    }

    fn spec(server: String, api_key: &str, mode: Mode) -> SessionSpec {
        SessionSpec { server, api_key: api_key.into(), policy: String::new(), mode, connections: 2, timeout: Duration::from_secs(5) }
    }

    async fn run(mode: Mode, copies: usize) -> SessionSummary {
        let (server, _stop) = fake_server().await;
        let o = Orchestrator::connect(spec(server, KEY, mode)).await.expect("connecting to the fake");
        let policy = o.policy().await.expect("the fake's default policy");
        assert_eq!((policy.name.as_str(), policy.challenge_steps), ("low-risk", 3));
        // 40 sessions/s for 0.5 s: exactly 20 sessions, all measured.
        let timing = SessionRun { rate: 40.0, warmup: Duration::ZERO, duration: Duration::from_millis(500), max_in_flight: 100 };
        run_sessions(Arc::new(o), Arc::new(inputs(copies)), &policy, timing).await.expect("a session run")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn step_sessions_answer_each_pose_and_errors_are_counted_by_reason() {
        let s = run(Mode::Step, 20).await;
        assert_eq!((s.sessions, s.completed, s.failed), (20, 15, 5), "sessions 3, 7, 11, 15 and 19 lose their document");
        assert_eq!(s.policy, "low-risk@1-abc");
        // Every frame reached the fake with the pose its step asked for, and none twice.
        assert_eq!((s.frames_sent, s.frames_satisfied, s.frames_reused), (60, 60, 0));
        assert_eq!(s.frame_reasons.get("REPLAYED_FRAME (warning)"), Some(&60));
        let calls: Vec<(&str, u64, u64)> = s.rpcs.iter().map(|(k, r)| (*k, r.calls, r.errors)).collect();
        assert_eq!(calls, [(ADD_DOCUMENT, 20, 5), (ADD_FRAME, 60, 0), (FINISH, 15, 0), (START_SESSION, 20, 0)]);
        assert_eq!(s.errors.len(), 1);
        let e = &s.errors[0];
        assert_eq!((e.key.rpc, e.key.status, e.key.reason.as_str(), e.count), (ADD_DOCUMENT, "RESOURCE_EXHAUSTED", "OVERLOADED", 5));
        assert_eq!(s.decisions, BTreeMap::from([("REVIEW".to_string(), 15)]));
        assert_eq!(s.result_reasons.get("RENDERED_FROM_STILL_SUSPECTED (warning)"), Some(&15));
        assert_eq!(s.full_pipeline, 15);
        assert!(FULL_PIPELINE_FACTORS.iter().all(|f| s.factors.get(*f) == Some(&15)), "{:?}", s.factors);
        assert_eq!(s.latency_session_ok.expect("15 results").count, 15);
        assert_eq!(s.latency_session_all.expect("20 sessions").count, 20);
        assert!(s.achieved_per_s > 0.0 && s.achieved_per_s <= 30.0, "achieved {}", s.achieved_per_s);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verify_sessions_send_everything_in_one_call_and_count_reused_frames() {
        // One copy per pose: every session after the first resends frames.
        let s = run(Mode::Verify, 1).await;
        assert_eq!((s.sessions, s.completed, s.failed), (20, 15, 5));
        let calls: Vec<(&str, u64, u64)> = s.rpcs.iter().map(|(k, r)| (*k, r.calls, r.errors)).collect();
        assert_eq!(calls, [(START_SESSION, 20, 0), (VERIFY, 20, 5)]);
        assert_eq!((s.frames_sent, s.frames_satisfied, s.frames_reused), (60, 0, 57));
        assert_eq!(s.decisions, BTreeMap::from([("ACCEPT".to_string(), 15)]));
        assert_eq!(s.errors[0].key.rpc, VERIFY);
    }

    #[tokio::test]
    async fn a_wrong_api_key_fails_before_any_session() {
        let (server, _stop) = fake_server().await;
        let o = Orchestrator::connect(spec(server, "ek_wrong", Mode::Step)).await.expect("connecting to the fake");
        let err = o.policy().await.expect_err("the fake refuses the key");
        assert!(format!("{err:#}").contains("UNAUTHENTICATED"), "{err:#}");
    }

    #[test]
    fn verdicts_name_decision_factors_and_record() {
        let mut r = result("s1".into(), pb::Decision::Reject);
        r.factors[0].reasons.push(pb::Reason { code: ReasonCode::ReplayedFrame as i32, blocking: true, ..Default::default() });
        let v = verdict(&r);
        assert_eq!(v.decision, "REJECT");
        assert_eq!(v.reasons, ["RENDERED_FROM_STILL_SUSPECTED (warning)", "LIVENESS/REPLAYED_FRAME"], "result reasons, then the factors'");
        assert_eq!(v.factors, FULL_PIPELINE_FACTORS.to_vec());
        assert!(v.evidence && v.full_pipeline());
        let mut r = result("s1".into(), pb::Decision::Accept);
        r.evidence = Some(pb::EvidenceRecord { evidence_jws: "only.two".into(), ..Default::default() });
        assert!(!verdict(&r).evidence, "a JWS has three parts");
        r.evidence = None;
        assert!(!verdict(&r).full_pipeline());
    }
}
