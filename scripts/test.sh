#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, formatting, lints, then every test
# (unit, integration on the real models and photos, gRPC over loopback, the CLI).
# Needs the development photos in ../shared/faces (or EKYC_FACES_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
