//! `ekyc-loadtest`: load generators built on the project's own tonic clients: whole
//! verification sessions through the orchestrator, the facematch service's `Embed` RPC, and
//! the in-process inference limit the service is compared with.
//!
//! - `session`: verification sessions arriving at a fixed rate (StartSession, a frame per
//!   challenge step, the document, Finish; or one Verify); latency from each session's
//!   scheduled start.
//! - `open`: a fixed offered rate; every request is sent at its scheduled time on its own
//!   task and its latency runs from that time (no coordinated omission).
//! - `closed`: a fixed number of workers sending back to back.
//! - `sweep`: `closed` at several concurrencies, one row each.
//! - `limit`: decode + analyze on OS threads sharing one pipeline, no gRPC, no queue.
//!
//! See `loadtest/README.md`.

mod dispatch;
mod grpc;
mod inputs;
mod limit;
mod machine;
mod report;
mod schedule;
mod session;
mod session_stats;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::grpc::{RunSummary, RunTiming, Target, TargetSpec};
use crate::machine::Machine;
use crate::schedule::{fmt_secs, parse_duration, parse_rate};

#[derive(Debug, Parser)]
#[command(
    name = "ekyc-loadtest",
    version,
    about = "Load generator for whole verifications (ekyc.v1.Orchestrator) and ekyc.v1.FaceMatch/Embed, and the in-process inference limit"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Whole verifications arriving at a fixed rate (open loop); latency from each session's
    /// scheduled start.
    Session(SessionArgs),
    /// Open loop: a fixed offered rate; latency from each request's scheduled send time.
    Open(OpenArgs),
    /// Closed loop: C workers, each sending its next request when the last is answered.
    Closed(ClosedArgs),
    /// Closed loop at several concurrencies, one row per level.
    Sweep(SweepArgs),
    /// The pipeline's own rate in process: decode + analyze on T threads, no gRPC.
    Limit(LimitArgs),
}

/// What to send, where, and how.
#[derive(Debug, Args)]
struct TargetArgs {
    /// The facematch gRPC endpoint (`host:port` means plain-text HTTP/2).
    #[arg(long, default_value = "http://127.0.0.1:50054")]
    server: String,
    /// Image files, read once and sent round-robin.
    #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
    images: Vec<PathBuf>,
    /// Images in each EmbedRequest.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    images_per_request: u32,
    /// gRPC (HTTP/2) connections, used round-robin.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,
    /// Per-request deadline (sent as grpc-timeout and enforced by the client).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Set EmbedRequest.largest_face_only.
    #[arg(long)]
    largest_face_only: bool,
    /// Set EmbedRequest.skip_embeddings (detection, landmarks and quality only).
    #[arg(long)]
    skip_embeddings: bool,
    /// Tokio worker threads of the generator (it shares the machine with the server when
    /// both run on one host).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    client_threads: u32,
}

impl TargetArgs {
    fn spec(&self) -> TargetSpec {
        TargetSpec {
            server: self.server.clone(),
            images: self.images.clone(),
            images_per_request: self.images_per_request as usize,
            connections: self.connections as usize,
            timeout: self.timeout,
            largest_face_only: self.largest_face_only,
            skip_embeddings: self.skip_embeddings,
        }
    }
}

/// How long, and what to print.
#[derive(Debug, Args)]
struct RunArgs {
    /// Measured time, after the warm-up.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Time before the measured window: requests are sent but not recorded.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    warmup: Duration,
    /// Also show successes, errors and p99 per 1-second bucket (warm-up included).
    #[arg(long)]
    timeline: bool,
    /// Print one JSON object (numbers, command line, machine) instead of the text block.
    #[arg(long)]
    json: bool,
}

impl RunArgs {
    fn timing(&self) -> anyhow::Result<RunTiming> {
        anyhow::ensure!(!self.duration.is_zero(), "--duration must be above zero");
        Ok(RunTiming { warmup: self.warmup, duration: self.duration, timeline: self.timeline })
    }
}

#[derive(Debug, Args)]
struct OpenArgs {
    /// Offered rate in requests/s: request k is due at start + k / RATE.
    #[arg(long, value_parser = parse_rate)]
    rate: f64,
    /// Most requests in flight at once; at the cap the generator waits (the wait counts in
    /// the latency and as schedule slips).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_in_flight: u32,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
struct ClosedArgs {
    /// Workers, each with one request outstanding.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
struct SweepArgs {
    /// Concurrency levels, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32", value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: Vec<u32>,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
struct SessionArgs {
    /// The orchestrator's gRPC endpoint (`host:port` means plain-text HTTP/2).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// File holding the operator's API key (StartSession and ListPolicies; the session
    /// token does the rest). EKYC_API_KEY takes precedence.
    #[arg(long, value_name = "FILE", default_value = "ekyc-keys/api-key")]
    api_key_file: PathBuf,
    /// Policy name (empty: the server's default).
    #[arg(long, default_value = "")]
    policy: String,
    /// `step`: AddFrame per step, AddDocument, Finish; `verify`: one Verify call.
    #[arg(long, value_enum, default_value_t = session::Mode::Step)]
    mode: session::Mode,
    /// Offered rate in sessions/s: session k is due at start + k / RATE.
    #[arg(long, value_parser = parse_rate)]
    rate: f64,
    /// Most sessions in flight at once; at the cap the generator waits (the wait counts in
    /// the latency and as schedule slips).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_in_flight: u32,
    /// Photo whose face, turned to each pose, makes the challenge frames.
    #[arg(long, value_name = "IMAGE", default_value = "../shared/faces/obama_1.jpg")]
    selfie: PathBuf,
    /// Photo printed on the synthetic ID card of the document photo.
    #[arg(long, value_name = "IMAGE", default_value = "../shared/faces/obama_3.jpg")]
    card_face: PathBuf,
    /// Seed of the frames' noise (default: from the clock, so a rerun against the same
    /// server sends frames it has not seen).
    #[arg(long)]
    seed: Option<u64>,
    /// gRPC (HTTP/2) connections; a session makes all its calls on one.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,
    /// Deadline of each call (sent as grpc-timeout and enforced by the client).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Tokio worker threads of the generator.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    client_threads: u32,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
struct LimitArgs {
    /// Image files, decoded and analysed round-robin.
    #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
    images: Vec<PathBuf>,
    /// OS threads sharing the pipeline.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    threads: u32,
    /// ONNX Runtime intra-op threads per model session (0 = one per core).
    #[arg(long, default_value_t = 1)]
    intra_threads: u32,
    /// Pipelines (model sets) to load; threads share them round-robin. 1 = one shared
    /// pipeline, as the service holds it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pipelines: u32,
    /// Measured time, after the warm-up.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// Time before the measured window.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    warmup: Duration,
    /// Keep only the largest face of each image (AnalyzeOptions.largest_only).
    #[arg(long)]
    largest_face_only: bool,
    /// Folder of the ONNX models (default: the checkout's models/).
    #[arg(long)]
    models_dir: Option<PathBuf>,
    /// Print one JSON object instead of the text block.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let command = machine::command_line();
    let machine = Machine::detect();
    match cli.command {
        Command::Session(a) => {
            anyhow::ensure!(!a.run.duration.is_zero(), "--duration must be above zero");
            anyhow::ensure!(!a.run.timeline, "--timeline is not offered by the session mode");
            let spec = session::SessionSpec {
                server: a.server.clone(),
                api_key: api_key(&a.api_key_file)?,
                policy: a.policy.clone(),
                mode: a.mode,
                connections: a.connections as usize,
                timeout: a.timeout,
            };
            let rt = runtime(a.client_threads)?;
            let (orchestrator, policy) = rt.block_on(async {
                let o = session::Orchestrator::connect(spec).await?;
                let p = o.policy().await?;
                anyhow::Ok((o, p))
            })?;
            let sessions = schedule::due_before(a.rate, a.run.warmup + a.run.duration);
            let seed = a.seed.unwrap_or_else(|| {
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
            });
            eprintln!(
                "session load: {sessions} sessions under {}@{} ({} steps), making their frames and the document",
                policy.name, policy.version, policy.challenge_steps
            );
            let steps = policy.challenge_steps;
            let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            let inputs = inputs::make(&a.selfie, &a.card_face, |pose| inputs::copies_needed(pose, sessions, steps), seed, threads)?;
            eprintln!(
                "session load: {} sessions/s ({:?} mode) to {} for {} warm-up + {} measured",
                a.rate,
                a.mode,
                orchestrator.server,
                fmt_secs(a.run.warmup),
                fmt_secs(a.run.duration)
            );
            let run = session::SessionRun {
                rate: a.rate,
                warmup: a.run.warmup,
                duration: a.run.duration,
                max_in_flight: a.max_in_flight as usize,
            };
            let summary = rt.block_on(session::run_sessions(Arc::new(orchestrator), Arc::new(inputs), &policy, run))?;
            emit(a.run.json, command, machine, summary, report::session_block)
        }
        Command::Open(a) => {
            let timing = a.run.timing()?;
            let spec = a.target.spec();
            eprintln!(
                "open loop: {} req/s to {} for {} warm-up + {} measured ({} requests in all)",
                a.rate,
                grpc::normalise_server(&spec.server),
                fmt_secs(timing.warmup),
                fmt_secs(timing.duration),
                schedule::due_before(a.rate, timing.warmup + timing.duration)
            );
            let summary = runtime(a.target.client_threads)?.block_on(async {
                let target = Arc::new(Target::connect(&spec, a.max_in_flight as usize).await?);
                grpc::run_open(target, &spec, a.rate, a.max_in_flight as usize, timing).await
            })?;
            emit(a.run.json, command, machine, summary, report::run_block)
        }
        Command::Closed(a) => {
            let timing = a.run.timing()?;
            let spec = a.target.spec();
            eprintln!(
                "closed loop: {} worker(s) against {} for {} warm-up + {} measured",
                a.concurrency,
                grpc::normalise_server(&spec.server),
                fmt_secs(timing.warmup),
                fmt_secs(timing.duration)
            );
            let summary = runtime(a.target.client_threads)?.block_on(async {
                let target = Arc::new(Target::connect(&spec, a.concurrency as usize).await?);
                grpc::run_closed(target, &spec, a.concurrency as usize, timing).await
            })?;
            emit(a.run.json, command, machine, summary, report::run_block)
        }
        Command::Sweep(a) => {
            let timing = a.run.timing()?;
            let spec = a.target.spec();
            let most = a.concurrency.iter().copied().max().unwrap_or(1) as usize;
            let levels: Vec<RunSummary> = runtime(a.target.client_threads)?.block_on(async {
                let target = Arc::new(Target::connect(&spec, most).await?);
                let mut levels = Vec::with_capacity(a.concurrency.len());
                for &c in &a.concurrency {
                    eprintln!("sweep: concurrency {c} for {} warm-up + {} measured", fmt_secs(timing.warmup), fmt_secs(timing.duration));
                    levels.push(grpc::run_closed(Arc::clone(&target), &spec, c as usize, timing).await?);
                }
                anyhow::Ok(levels)
            })?;
            let sweep = report::Sweep { mode: "sweep", levels };
            emit(a.run.json, command, machine, sweep, |s, c, m| report::sweep_table(&s.levels, c, m))
        }
        Command::Limit(a) => {
            let spec = limit::LimitSpec {
                images: a.images,
                threads: a.threads as usize,
                pipelines: a.pipelines as usize,
                intra_threads: a.intra_threads as usize,
                warmup: a.warmup,
                duration: a.duration,
                largest_only: a.largest_face_only,
                models_dir: a.models_dir,
            };
            anyhow::ensure!(!spec.duration.is_zero(), "--duration must be above zero");
            let summary = limit::run(&spec)?;
            emit(a.json, command, machine, summary, report::limit_block)
        }
    }
}

/// The API key: `EKYC_API_KEY`, else the file's first line.
fn api_key(file: &std::path::Path) -> anyhow::Result<String> {
    if let Ok(k) = std::env::var("EKYC_API_KEY")
        && !k.trim().is_empty()
    {
        return Ok(k.trim().to_string());
    }
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the API key from {} (set EKYC_API_KEY or --api-key-file)", file.display()))?;
    Ok(text.trim().to_string())
}

fn runtime(threads: u32) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(threads as usize).enable_all().build().context("starting the Tokio runtime")
}

/// Prints the result: one JSON object on stdout with `--json`, else the text block.
fn emit<T: Serialize>(
    json: bool,
    command: String,
    machine: Machine,
    result: T,
    text: fn(&T, &str, &Machine) -> String,
) -> anyhow::Result<()> {
    if json {
        let envelope = report::Envelope::new(command, machine, result);
        println!("{}", serde_json::to_string_pretty(&envelope).context("serialising the result")?);
    } else {
        print!("{}", text(&result, &command, &machine));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn open_arguments_parse() {
        let cli = Cli::try_parse_from([
            "ekyc-loadtest",
            "open",
            "--server",
            "127.0.0.1:50054",
            "--rate",
            "20",
            "--duration",
            "30s",
            "--warmup",
            "5s",
            "--images",
            "a.jpg",
            "b.png",
            "--json",
        ])
        .expect("a valid open command line");
        let Command::Open(a) = cli.command else { panic!("open subcommand expected") };
        assert_eq!(a.rate, 20.0);
        assert_eq!(a.run.duration, Duration::from_secs(30));
        assert_eq!(a.run.warmup, Duration::from_secs(5));
        assert_eq!(a.target.images, vec![PathBuf::from("a.jpg"), PathBuf::from("b.png")]);
        assert_eq!(a.target.connections, 4);
        assert_eq!(a.target.images_per_request, 1);
        assert_eq!(a.target.timeout, Duration::from_secs(10));
        assert_eq!(a.max_in_flight, 10_000);
        assert!(a.run.json && !a.run.timeline);
    }

    #[test]
    fn session_arguments_parse() {
        let cli = Cli::try_parse_from(["ekyc-loadtest", "session", "--rate", "1.5", "--mode", "verify", "--duration", "60s", "--json"])
            .expect("a valid session command line");
        let Command::Session(a) = cli.command else { panic!("session subcommand expected") };
        assert_eq!(a.rate, 1.5);
        assert_eq!(a.mode, session::Mode::Verify);
        assert_eq!(a.server, "http://127.0.0.1:50051");
        assert_eq!(a.api_key_file, PathBuf::from("ekyc-keys/api-key"));
        assert_eq!(a.policy, "", "the server's default policy");
        assert_eq!(a.run.duration, Duration::from_secs(60));
        assert_eq!(a.timeout, Duration::from_secs(30));
        assert!(a.run.json);
        let step = Cli::try_parse_from(["ekyc-loadtest", "session", "--rate", "2"]).expect("step mode by default");
        let Command::Session(a) = step.command else { panic!("session subcommand expected") };
        assert_eq!(a.mode, session::Mode::Step);
        assert!(Cli::try_parse_from(["ekyc-loadtest", "session", "--rate", "2", "--mode", "batch"]).is_err());
        assert!(Cli::try_parse_from(["ekyc-loadtest", "session"]).is_err(), "the rate is required");
    }

    #[test]
    fn sweep_levels_are_comma_separated() {
        let cli = Cli::try_parse_from(["ekyc-loadtest", "sweep", "--concurrency", "1,8,32", "--images", "a.jpg"])
            .expect("a valid sweep command line");
        let Command::Sweep(a) = cli.command else { panic!("sweep subcommand expected") };
        assert_eq!(a.concurrency, vec![1, 8, 32]);
    }

    #[test]
    fn bad_arguments_are_refused() {
        let refused = |args: &[&str]| Cli::try_parse_from(args).is_err();
        assert!(refused(&["ekyc-loadtest", "open", "--rate", "0", "--images", "a.jpg"]));
        assert!(refused(&["ekyc-loadtest", "open", "--rate", "10"]), "images are required");
        assert!(refused(&["ekyc-loadtest", "closed", "--concurrency", "0", "--images", "a.jpg"]));
        assert!(refused(&["ekyc-loadtest", "open", "--rate", "5", "--duration", "5 fortnights", "--images", "a.jpg"]));
        assert!(refused(&["ekyc-loadtest", "limit", "--threads", "0", "--images", "a.jpg"]));
    }
}
