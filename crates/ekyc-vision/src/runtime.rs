//! Finding and loading ONNX Runtime (dynamically, so builds need no download) and creating
//! sessions with the project's threading policy: a fixed number of intra-op threads and
//! spinning off, because several sessions share few cores.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use crate::config::find_upwards_from_exe;
use crate::error::{Result, VisionError};

/// Where `scripts/setup.sh` installs the `onnxruntime` wheel's shared library.
const SETUP_DIR: &str = ".ort/onnxruntime/capi";
const HOW_TO_FIX: &str =
    "run `scripts/setup.sh` (installs the pinned onnxruntime wheel into .ort/) or set ORT_DYLIB_PATH to libonnxruntime.so";

static ENVIRONMENT: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();

/// Finds the ONNX Runtime shared library: the configured path, `$ORT_DYLIB_PATH`, or the
/// setup folder beside/above the executable or in the source tree.
pub fn find_library(configured: Option<&Path>) -> std::result::Result<PathBuf, String> {
    if let Some(p) = configured {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("configured ort_library {} does not exist; {HOW_TO_FIX}", p.display()))
        };
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(format!("ORT_DYLIB_PATH={} does not exist; {HOW_TO_FIX}", p.display())) };
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = find_upwards_from_exe(Path::new(SETUP_DIR)) {
        dirs.push(d);
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(SETUP_DIR));
    for dir in &dirs {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut libs: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so")))
                .collect();
            libs.sort();
            if let Some(lib) = libs.into_iter().next() {
                return Ok(lib);
            }
        }
    }
    Err(format!("libonnxruntime.so not found (looked in $ORT_DYLIB_PATH and {SETUP_DIR}); {HOW_TO_FIX}"))
}

/// The process-wide ONNX Runtime environment, loaded once.
pub fn environment(configured: Option<&Path>) -> Result<&'static Environment> {
    let env = ENVIRONMENT.get_or_init(|| {
        let lib = find_library(configured)?;
        let builder = ort::init_from(&lib).map_err(|e| format!("loading {}: {e}; {HOW_TO_FIX}", lib.display()))?;
        builder.with_name("ekyc").build().map_err(|e| format!("creating the ONNX Runtime environment from {}: {e}", lib.display()))
    });
    env.as_ref().map_err(|e| VisionError::Runtime(e.clone()))
}

/// Opens one model with `threads` intra-op threads and thread spinning off.
pub fn open_session(env: &Environment, role: &'static str, path: &Path, threads: usize) -> Result<Session> {
    let model_err = |message: String| VisionError::Model { role, path: path.display().to_string(), message };
    if !path.is_file() {
        return Err(model_err("file not found (a fresh checkout ships it under models/; check vision.models_dir)".into()));
    }
    let build = || -> ort::Result<Session> {
        Session::builder(env)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(ort::Error::<()>::from)?
            .with_intra_threads(threads)
            .map_err(ort::Error::<()>::from)?
            .with_inter_threads(1)
            .map_err(ort::Error::<()>::from)?
            .with_intra_op_spinning(false)
            .map_err(ort::Error::<()>::from)?
            .with_inter_op_spinning(false)
            .map_err(ort::Error::<()>::from)?
            .commit_from_file(path)
    };
    build().map_err(|e| model_err(e.to_string()))
}
