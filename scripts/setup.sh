#!/usr/bin/env bash
# One-time set-up on a fresh Debian machine with the Rust toolchain, Python 3 + pip and apt:
# - ONNX Runtime: the pinned PyPI `onnxruntime` wheel's shared library into .ort/ (the Rust
#   code loads it dynamically, so nothing is downloaded at build time);
# - redis-server (the liveness and orchestrator tests start their own on a free port);
# - for the verification page's tests: Debian's chromium (driven by puppeteer-core, which never
#   downloads a browser), ffmpeg (the fake camera's video) and CJK fonts (Japanese screenshots),
#   and web/node_modules from npm (`npm ci`, exact versions from web/package-lock.json);
# - promtool (Debian's `prometheus`) and PyYAML, for the alerting rules' test.
# The podman cluster's tools (podman, runc, debootstrap, ...) are installed by
# deploy/podman/smoke.sh, which is the only thing that needs them.
# Idempotent: re-running it does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION=1.31.1
PYYAML_VERSION=6.0.3
ORT_DIR=.ort

if ! ls "$ORT_DIR"/onnxruntime/capi/libonnxruntime.so."$ORT_VERSION" >/dev/null 2>&1; then
  echo "setup: installing onnxruntime==$ORT_VERSION into $ORT_DIR/"
  rm -rf "$ORT_DIR"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --target "$ORT_DIR" "onnxruntime==$ORT_VERSION"
fi
echo "setup: ONNX Runtime at $(ls "$ORT_DIR"/onnxruntime/capi/libonnxruntime.so.*)"

if ! command -v redis-server >/dev/null 2>&1; then
  echo "setup: installing redis-server"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
echo "setup: $(redis-server --version | cut -d' ' -f1-3)"

if ! command -v chromium >/dev/null 2>&1 || ! command -v ffmpeg >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -q "Noto Sans CJK"; then
  echo "setup: installing chromium, ffmpeg and fonts-noto-cjk (browser tests of the page)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium ffmpeg fonts-noto-cjk >/dev/null
fi
echo "setup: $(chromium --version 2>/dev/null | head -1), $(ffmpeg -version | head -1 | cut -d' ' -f1-3)"

# promtool (Debian package `prometheus`) for the alerting rules' test in `cargo test`
# (crates/ekyc/tests/deploy.rs runs deploy/monitoring/test.sh). Without recommends: no
# node exporter. Debian starts no daemon on a machine without systemd (invoke-rc.d finds no
# runlevel), so no Prometheus server is left listening.
if ! command -v promtool >/dev/null 2>&1; then
  echo "setup: installing prometheus (for promtool)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
echo "setup: $(promtool --version 2>&1 | head -1)"

# PyYAML in the python3 on PATH: deploy/monitoring/test.sh and deploy/podman/up.sh read YAML.
if ! python3 -c 'import yaml' 2>/dev/null; then
  echo "setup: installing PyYAML==$PYYAML_VERSION"
  python3 -m pip install --quiet --disable-pip-version-check --only-binary=:all: "PyYAML==$PYYAML_VERSION"
fi
echo "setup: PyYAML $(python3 -c 'import yaml; print(yaml.__version__)')"

# The page's build and test tools; the bundle itself (web/dist) is committed.
if ! cmp -s web/package-lock.json web/node_modules/.ekyc-installed-lock 2>/dev/null; then
  echo "setup: npm ci in web/"
  (cd web && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.ekyc-installed-lock)
fi
echo "setup: web tools from web/package-lock.json"

# The models ship in models/; check they are intact before anything uses them.
(cd models && sha256sum --quiet -c SHA256SUMS)
echo "setup: models verified (models/SHA256SUMS)"
