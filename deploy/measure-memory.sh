#!/usr/bin/env bash
# Memory of each model service by worker count: starts `ekyc serve --service NAME` (release
# build) with EKYC__<NAME>__WORKERS=N, waits until its models are loaded and every worker's
# sessions have run their warm-up inference, and prints the peak resident set (VmHWM) and
# the resident set then (VmRSS). Under load a process adds at most the decoded pixels of its
# decode budget (vision.decode_budget_bytes, 256 MiB) and per-call buffers; the Deployments'
# memory limits are these numbers plus that (deploy/README.md, "Memory").
#
#   deploy/measure-memory.sh                 # workers 1 2 4 for liveness, document, facematch
#   WORKERS="1 2" SERVICES=facematch deploy/measure-memory.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ekyc="$root/target/release/ekyc"
[ -x "$ekyc" ] || (cd "$root" && cargo build --release -p ekyc)
read -r -a workers <<<"${WORKERS:-1 2 4}"
read -r -a services <<<"${SERVICES:-liveness document facematch}"
log="$(mktemp)"; trap 'rm -f "$log"' EXIT
printf '%-10s %7s %12s %12s\n' service workers "peak MiB" "warm MiB"
for svc in "${services[@]}"; do
  for n in "${workers[@]}"; do
    upper="$(tr a-z A-Z <<<"$svc")"
    env -u EKYC__CONFIG_FILE "EKYC__${upper}__WORKERS=$n" EKYC__SERVER__METRICS_PORT=0 \
      "EKYC__SERVER__${upper}_PORT=0" "$ekyc" serve --service "$svc" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 240); do grep -q "models loaded and warm" "$log" && break; sleep 0.5; done
    grep -q "models loaded and warm" "$log" || { cat "$log"; kill "$pid"; exit 1; }
    sleep 1
    kib() { awk -v k="$1" '$1 == k":" {print int($2 / 1024)}' "/proc/$pid/status"; }
    printf '%-10s %7s %12s %12s\n' "$svc" "$n" "$(kib VmHWM)" "$(kib VmRSS)"
    kill -TERM "$pid"; wait "$pid" || true
  done
done
