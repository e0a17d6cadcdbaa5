#!/usr/bin/env bash
# The deploy checks CI runs after ./scripts/test.sh (.ci/run), as root on a Debian 12 machine:
#   1. deploy/validate.sh: every kustomize tree rendered by kubectl and validated strictly and
#      offline by kubernetes-validate (pinned in deploy/requirements-validate.txt, installed
#      from PyPI into .venv-deploy/);
#   2. deploy/podman/smoke.sh: the release build, the images, the podman cluster, one
#      verification, two facematch replicas, a crash under load, and down.
# Both need kubectl (>= 1.27), which no allowed registry provides: on a machine without it
# they are NOT run, and a banner says so; that is the one case that exits 0 without them.
# Any other failure fails.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS

if command -v kubectl >/dev/null 2>&1; then
  echo "== deploy/ci.sh: $(kubectl version --client 2>/dev/null | head -n1)"
  venv=.venv-deploy
  if ! cmp -s deploy/requirements-validate.txt "$venv/.installed" 2>/dev/null; then
    echo "== deploy/ci.sh: kubernetes-validate into $venv/ (deploy/requirements-validate.txt)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: -r deploy/requirements-validate.txt
    cp deploy/requirements-validate.txt "$venv/.installed"
  fi
  PATH="$PWD/$venv/bin:$PATH" deploy/validate.sh
  echo "== deploy/ci.sh: manifests valid after $((SECONDS - t0)) s"
else
  cat <<'MSG'
################################################################################
## MANIFEST VALIDATION NOT RUN: kubectl is not installed on this machine.
## deploy/validate.sh renders every kustomize tree with kubectl >= 1.27, which no
## allowed registry provides (Debian's kubernetes-client is 1.20 and too old).
################################################################################
MSG
fi

# Prints its own banner and exits 0 when kubectl is missing.
deploy/podman/smoke.sh
if command -v kubectl >/dev/null 2>&1; then
  echo "== deploy/ci.sh: deploy checks passed in $((SECONDS - t0)) s"
else
  echo "== deploy/ci.sh: deploy checks NOT RUN (no kubectl); see the banners above"
fi
