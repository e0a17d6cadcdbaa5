#!/usr/bin/env bash
# The facematch measurements of loadtest/RESULTS.md, end to end: builds release binaries,
# then for each server setting starts `ekyc serve --service facematch` on a free port and
# runs the load generator against it. Output: one JSON object per run in $OUT (default
# /tmp/ekyc-loadtest), plus the text tables on stdout.
# Usage: loadtest/run-facematch.sh [sweep|open] (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/ekyc-loadtest}; mkdir -p "$OUT"
IMG=${IMG:-../shared/faces/obama_1.jpg}
PORT=${PORT:-50154}
DUR=${DUR:-20s}; WARM=${WARM:-4s}
cargo build --release --locked -q -p ekyc -p ekyc-loadtest
LT=./target/release/ekyc-loadtest

server() { # NAME ENV...: start the server with the given settings and wait until it answers
  local name=$1; shift
  pkill -f "ekyc serve --service facematch" 2>/dev/null || true; sleep 0.5
  env "$@" EKYC__SERVER__FACEMATCH_PORT=$PORT EKYC__SERVER__METRICS_PORT=0 EKYC__LOG__FILTER=warn \
    ./target/release/ekyc serve --service facematch > "$OUT/server-$name.log" 2>&1 &
  for _ in $(seq 100); do
    $LT closed --server "127.0.0.1:$PORT" --images "$IMG" --concurrency 1 --duration 1s --warmup 0s --json > /dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "server $name did not come up" >&2; exit 1
}
summary() { # one line per run: rate, latency percentiles, errors by status
  python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for r in d.get("levels", [d]):
    l = r["latency_ok"]
    what = f"conc {r['concurrency']:>2}" if r["mode"] == "closed" else f"offered {r.get('offered_rps', 0):5.1f}/s"
    print(f"  {what}: {r['achieved_rps']:6.2f} ok/s  p50 {l['p50_ms']:7.1f}  p90 {l['p90_ms']:7.1f}  p99 {l['p99_ms']:7.1f}  p99.9 {l['p999_ms']:7.1f} ms  errors {r['errors']}")
    for s in r.get("timeline") or []:
        print("    ", s)
PY
}
trap 'pkill -f "ekyc serve --service facematch" 2>/dev/null || true' EXIT

what=${1:-all}
if [ "$what" = all ] || [ "$what" = sweep ]; then
  for setting in "off EKYC__FACEMATCH__MAX_BATCH=1" "on EKYC__FACEMATCH__MAX_BATCH=8 EKYC__FACEMATCH__MAX_BATCH_WAIT_MS=2"; do
    set -- $setting
    server "batching-$1" "${@:2}" EKYC__FACEMATCH__MAX_IN_FLIGHT=64
    echo "== batching $1 (max_in_flight 64 so nothing is shed)"
    $LT sweep --server "127.0.0.1:$PORT" --images "$IMG" --concurrency 1,8,32 --duration "$DUR" --warmup "$WARM" --json > "$OUT/sweep-batching-$1.json"
    summary "$OUT/sweep-batching-$1.json"
  done
fi
if [ "$what" = all ] || [ "$what" = open ]; then
  server defaults
  SAT=${SAT:?set SAT to the saturation throughput (responses/s) measured by the sweep}
  for pct in 50 80 200; do
    rate=$(awk -v s="$SAT" -v p="$pct" 'BEGIN {printf "%.1f", s * p / 100}')
    echo "== open loop at ${pct} % of saturation: $rate req/s"
    $LT open --server "127.0.0.1:$PORT" --images "$IMG" --rate "$rate" --duration "$DUR" --warmup "$WARM" --timeline --json > "$OUT/open-$pct.json"
    summary "$OUT/open-$pct.json"
  done
  half=$(awk -v s="$SAT" 'BEGIN {printf "%.1f", s / 2}')
  echo "== recovery: 50 % right after the overload"
  $LT open --server "127.0.0.1:$PORT" --images "$IMG" --rate "$(awk -v s="$SAT" 'BEGIN {printf "%.1f", s * 2}')" --duration 10s --warmup 0s > /dev/null
  $LT open --server "127.0.0.1:$PORT" --images "$IMG" --rate "$half" --duration 10s --warmup 0s --timeline --json > "$OUT/recovery.json"
  summary "$OUT/recovery.json"
fi
