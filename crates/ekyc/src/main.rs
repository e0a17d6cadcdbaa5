//! `ekyc`: the command-line front end. Thin: it parses arguments, loads settings and calls
//! the libraries; every error ends as one line on stderr and a non-zero exit code.

mod document;
mod eval;
mod eval_pad;
mod evidence;
mod faces;
mod health;
mod serve;
mod settings;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ekyc_runtime::ServiceKind;
use settings::Settings;

#[derive(Debug, Parser)]
#[command(name = "ekyc", version, about = "Self-hostable identity verification: face pipeline, services and tools")]
struct Cli {
    /// Settings file (TOML); `EKYC__SECTION__KEY` variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Every face in each image: box, score, five points, yaw/pitch/roll and quality.
    Faces {
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Include the embedding of every face.
        #[arg(long)]
        embed: bool,
        /// Analyse as face matching does: `vision.landmarks.match_passes` landmark passes
        /// instead of `vision.landmarks.passes` (the head pose is then coarser).
        #[arg(long)]
        for_matching: bool,
        /// Time each stage (decode, detect, mesh, align, quality, embed) instead of listing
        /// faces: the median of `--repeat` runs per image, and over all images.
        #[arg(long)]
        timings: bool,
        /// Runs per image with `--timings`.
        #[arg(long, default_value_t = 21, requires = "timings", value_parser = clap::value_parser!(u32).range(1..=1000))]
        repeat: u32,
    },
    /// Similarity of the largest faces of two images and the decision at the threshold.
    Compare {
        image_a: PathBuf,
        image_b: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Find the ID document in a photo and extract its portrait (as the document service).
    Document {
        image: PathBuf,
        /// Write the portrait crop (PNG) here.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Evaluate verification accuracy on labelled pairs, or presentation-attack detection on
    /// a labelled set.
    Eval {
        #[command(subcommand)]
        what: EvalCommand,
    },
    /// gRPC health of the four services at their configured addresses.
    Health {
        /// Wait up to this many seconds for all of them to be SERVING.
        #[arg(long, default_value_t = 0, value_name = "SECONDS")]
        wait: u64,
    },
    /// Run one verification against an orchestrator: start a session, answer the challenge
    /// with the photo for each requested pose, add the document (and a signature over the
    /// session's to-be-signed bytes), finish, print the decision and save the signed evidence record.
    Verify {
        /// Orchestrator address.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        server: String,
        /// File holding the operator's API key (used for StartSession only; the session
        /// token does the rest). The environment variable EKYC_API_KEY takes precedence.
        #[arg(long, value_name = "FILE", default_value = "ekyc-keys/api-key")]
        api_key_file: PathBuf,
        /// Policy name (empty: the server's default).
        #[arg(long, default_value = "")]
        policy: String,
        /// Photo facing the camera.
        #[arg(long, value_name = "IMAGE")]
        front: PathBuf,
        /// Photo with the head turned to the user's own left.
        #[arg(long, value_name = "IMAGE")]
        left: Option<PathBuf>,
        /// Photo with the head turned to the user's own right.
        #[arg(long, value_name = "IMAGE")]
        right: Option<PathBuf>,
        /// Photo looking up.
        #[arg(long, value_name = "IMAGE")]
        up: Option<PathBuf>,
        /// Photo looking down.
        #[arg(long, value_name = "IMAGE")]
        down: Option<PathBuf>,
        /// Photo of the photo-ID document.
        #[arg(long, value_name = "IMAGE")]
        document: PathBuf,
        /// Signer certificate chain, PEM, leaf first.
        #[arg(long, value_name = "PEM")]
        cert_chain: Option<PathBuf>,
        /// The signer's private key, PKCS#8 PEM (RSA, P-256, P-384 or Ed25519).
        #[arg(long, value_name = "PEM")]
        key: Option<PathBuf>,
        /// Your own reference, stored with the session and echoed in the record.
        #[arg(long)]
        client_reference: Option<String>,
        /// Folder for the evidence record.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Make an API key for the orchestrator: prints the key (give it to the back end that
    /// calls; it is shown once) and the `[[orchestrator.api_keys]]` entry that admits it
    /// (salted hash only).
    ApiKey {
        /// Who will hold the key (in logs and metrics).
        #[arg(long)]
        name: String,
        /// A policy the key may start sessions under; repeat for several; none: every policy.
        #[arg(long = "policy", value_name = "POLICY")]
        policies: Vec<String>,
    },
    /// Signed evidence records.
    Evidence {
        #[command(subcommand)]
        what: EvidenceCommand,
    },
    /// Run the services: all four in one process, or one of them.
    Serve {
        /// Run only this service (orchestrator, liveness, document or facematch).
        #[arg(long, value_name = "NAME")]
        service: Option<ServiceKind>,
    },
}

#[derive(Debug, Subcommand)]
enum EvidenceCommand {
    /// Check that a saved evidence record is exactly what the orchestrator signed.
    ///
    /// FILE holds the compact JWS, or the JSON that `ekyc verify` saves (with an
    /// `evidence_jws` field). Exits non-zero, saying why, when the record does not verify.
    Verify {
        file: PathBuf,
        /// The orchestrator's public key: SPKI PEM or JWKS (default: ./ekyc-keys/evidence-public.pem).
        #[arg(long, value_name = "PUBLIC.pem|JWKS.json")]
        key: Option<PathBuf>,
        /// Print the verified payload as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum EvalCommand {
    /// FMR and FNMR with 95 % intervals, the threshold for each target FMR, ROC AUC and
    /// EER on comparisons of photos; per group when the CSV has a group column.
    ///
    /// CSV is either `file_x,file_y,label[,group]` rows (label Yes/No, true/false or 1/0;
    /// a header row is optional) or a labels file with `file` and `identity` columns (and
    /// optionally `group`), from which every mated and every non-mated pair of
    /// single-identity photos is formed (rows without an identity are skipped). `--json`
    /// writes the calibration file for `facematch.calibration_file`, which names the
    /// embedder it was measured with.
    Pairs {
        csv: PathBuf,
        image_dir: PathBuf,
        #[arg(long)]
        json: bool,
        /// Target false-match rate to find a threshold for (repeatable; 0.001 = 0.1 %).
        #[arg(long = "target-fmr", default_values_t = [0.01, 0.001])]
        target_fmr: Vec<f64>,
    },
    /// Presentation-attack detection in ISO/IEC 30107-3 terms: APCER per species, APCER_max,
    /// BPCER, a DET table, per frame and per challenge.
    ///
    /// SET is a labels.csv (`path,label,species,method,challenge,step,pose`, paths relative
    /// to its folder; `ekyc-pad-set` in the test kit writes one) or a folder with one, or a
    /// folder of `bona_fide/` and `<species>/` single images.
    Pad {
        #[arg(long, value_name = "DIR_OR_CSV")]
        set: PathBuf,
        /// Decision threshold on the attack score (default: `liveness.pad.threshold`).
        #[arg(long)]
        threshold: Option<f32>,
        /// The rate a set must resolve; unresolved rates say how many presentations it needs.
        #[arg(long, default_value_t = 0.05)]
        target: f64,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`ekyc faces ... | head`) is the reader's choice, not an error.
        Err(e) if e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)) => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    e.chain().map(ToString::to_string).collect::<Vec<_>>().join(": ").replace('\n', " ")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Faces { images, json, embed, for_matching, timings, repeat } => {
            let mut settings = settings;
            if for_matching {
                settings.vision = settings.vision.for_matching();
            }
            if timings { faces::timings(&settings, &images, repeat as usize, json) } else { faces::faces(&settings, &images, json, embed) }
        }
        Command::Compare { image_a, image_b, json } => faces::compare(&settings, &image_a, &image_b, json),
        Command::Eval { what: EvalCommand::Pairs { csv, image_dir, json, target_fmr } } => {
            eval::pairs(&settings, &csv, &image_dir, json, &target_fmr)
        }
        Command::Eval { what: EvalCommand::Pad { set, threshold, target, json } } => {
            eval_pad::pad(&settings, &set, threshold, target, json)
        }
        Command::Document { image, out, json } => document::document(&settings, &image, out.as_deref(), json),
        Command::Serve { service } => serve::serve(&settings, service),
        Command::Evidence { what: EvidenceCommand::Verify { file, key, json } } => evidence::verify(&file, key.as_deref(), json),
        Command::Health { wait } => health::health(&settings, wait),
        Command::ApiKey { name, policies } => {
            let key = ekyc_orchestrator::auth::new_api_key()?;
            let entry = ekyc_orchestrator::auth::ApiKeyConfig::for_secret(&name, &key, policies)?;
            entry.validate().map_err(anyhow::Error::msg)?;
            eprintln!("API key for {name} (shown once; the server keeps only its salted hash):");
            println!("{key}");
            eprintln!("\nAdd to the orchestrator's settings:\n");
            eprintln!("[[orchestrator.api_keys]]\n{}", toml::to_string(&entry)?);
            Ok(())
        }
        Command::Verify {
            server,
            api_key_file,
            policy,
            front,
            left,
            right,
            up,
            down,
            document,
            cert_chain,
            key,
            client_reference,
            out_dir,
            json,
        } => verify::verify(&verify::VerifyArgs {
            server,
            api_key: verify::api_key(&api_key_file)?,
            policy,
            front,
            left,
            right,
            up,
            down,
            document,
            cert_chain,
            key,
            client_reference,
            out_dir,
            json,
            max_message_bytes: settings.server.max_message_bytes,
        }),
    }
}
