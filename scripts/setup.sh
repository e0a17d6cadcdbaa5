#!/usr/bin/env bash
# One-time set-up on a fresh Debian machine with the Rust toolchain, Python 3 + pip and apt:
# - ONNX Runtime: the pinned PyPI `onnxruntime` wheel's shared library into .ort/ (the Rust
#   code loads it dynamically, so nothing is downloaded at build time);
# - redis-server (the liveness and orchestrator tests start their own on a free port).
# Idempotent: re-running it does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION=1.31.1
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

# The models ship in models/; check they are intact before anything uses them.
(cd models && sha256sum --quiet -c SHA256SUMS)
echo "setup: models verified (models/SHA256SUMS)"
