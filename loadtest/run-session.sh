#!/usr/bin/env bash
# The whole-verification measurements of loadtest/RESULTS.md: starts the services on free
# ports, runs `ekyc-loadtest session` once per offered rate, takes every server process's
# CPU time from /proc/PID/stat (utime + stime) before and after each run, and stops
# everything.
#
#   loadtest/run-session.sh one|cluster RATE[,RATE...]
#
#   one      `ekyc serve`: the four services in one process, in-process stores (no Redis);
#            its CPU is also split by thread name (liveness-, document-, facematch- and
#            embed- workers; the rest is gRPC, the orchestrator and decoding outside them)
#   cluster  the four services as separate processes (`ekyc serve --service NAME`), the
#            orchestrator calling the others over loopback gRPC, with a real redis-server
#            holding sessions, challenges and replay digests
#
# Environment: MODE (step|verify, default step), DUR (measured, default 40s), WARM (warm-up,
# default 8s), POLICY (default: the server's), OUT (default /tmp/ekyc-session-load).
# Build first (this script measures, it does not compile):
#   cargo build --release --locked -p ekyc -p ekyc-loadtest
# Output per rate: $OUT/TOPOLOGY-MODE-RATE.json (the generator's report, command and machine
# included) and .cpu.json (CPU-seconds per process over the run and per verification), and
# one summary line on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
topology=${1:?usage: run-session.sh one|cluster RATE[,RATE...]}
rates=${2:?usage: run-session.sh one|cluster RATE[,RATE...]}
MODE=${MODE:-step}; DUR=${DUR:-40s}; WARM=${WARM:-8s}; POLICY=${POLICY:-}
OUT=${OUT:-/tmp/ekyc-session-load}; mkdir -p "$OUT"
EKYC=./target/release/ekyc; LT=./target/release/ekyc-loadtest
for b in "$EKYC" "$LT"; do
  [ -x "$b" ] || { echo "$b is missing: cargo build --release --locked -p ekyc -p ekyc-loadtest" >&2; exit 2; }
done
case $topology in one|cluster) ;; *) echo "topology must be one or cluster" >&2; exit 2 ;; esac

W=$(mktemp -d /tmp/ekyc-session-XXXXXX)
names=(); pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Ports, keys and an API key of this run only; the key may start as many sessions as offered.
export EKYC__SERVER__HOST=127.0.0.1 EKYC__SERVER__METRICS_PORT=0 EKYC__LOG__FILTER=warn
export EKYC__SERVER__ORCHESTRATOR_PORT=$(free_port) EKYC__SERVER__LIVENESS_PORT=$(free_port)
export EKYC__SERVER__DOCUMENT_PORT=$(free_port) EKYC__SERVER__FACEMATCH_PORT=$(free_port)
key=$("$EKYC" api-key --name loadtest 2>"$W/entry")
{
  printf '[orchestrator]\nkeys_dir = "%s/keys"\n\n' "$W"
  sed -n '/^\[\[orchestrator.api_keys\]\]/,$p' "$W/entry" | sed 's/^sessions_per_minute = .*/sessions_per_minute = 1000000/'
} >"$W/ekyc.toml"
rm -f "$W/entry"
CFG=(--config "$W/ekyc.toml")

start() { # NAME ENV... -- ARGS...: start a server process, remember its pid
  local name=$1; shift
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  env "${envs[@]}" "$EKYC" "${CFG[@]}" "$@" >"$W/$name.log" 2>&1 &
  names+=("$name"); pids+=("$!")
}
if [ "$topology" = one ]; then
  start ekyc -- serve
else
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$W" >"$W/redis.log" 2>&1 &
  names+=(redis); pids+=("$!")
  R=redis://127.0.0.1:$redis_port/0
  start liveness EKYC__LIVENESS__REDIS_URL="$R" -- serve --service liveness
  start document -- serve --service document
  start facematch -- serve --service facematch
  start orchestrator EKYC__ORCHESTRATOR__REDIS_URL="$R" \
    EKYC__ORCHESTRATOR__BACKENDS__LIVENESS__ENDPOINT=http://127.0.0.1:$EKYC__SERVER__LIVENESS_PORT \
    EKYC__ORCHESTRATOR__BACKENDS__DOCUMENT__ENDPOINT=http://127.0.0.1:$EKYC__SERVER__DOCUMENT_PORT \
    EKYC__ORCHESTRATOR__BACKENDS__FACEMATCH__ENDPOINT=http://127.0.0.1:$EKYC__SERVER__FACEMATCH_PORT -- serve --service orchestrator
fi
# Ready when every service is SERVING under its own name (models loaded and warm).
"$EKYC" "${CFG[@]}" health --wait 180 >/dev/null || { tail -n 20 "$W"/*.log; exit 1; }

cpu_snapshot() { # NAME=PID...: clock ticks (utime + stime) per process, and per worker thread group
  python3 - "$@" <<'PY'
import json, os, sys
def stat(path):
    s = open(path).read()
    rest = s[s.rfind(")") + 2:].split()
    return s[s.find("(") + 1:s.rfind(")")], int(rest[11]) + int(rest[12])
out = {"clock_ticks_per_s": os.sysconf("SC_CLK_TCK")}
for arg in sys.argv[1:]:
    name, pid = arg.split("=")
    out[name] = stat(f"/proc/{pid}/stat")[1]
    if name == "ekyc":  # all in one process: the worker pools by thread name
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                comm, ticks = stat(f"/proc/{pid}/task/{tid}/stat")
            except OSError:
                continue
            group = {"liveness": "liveness", "document": "document", "facematch": "facematch", "embed": "facematch"}.get(comm.split("-")[0])
            if group and "-" in comm:
                out[f"threads:{group}"] = out.get(f"threads:{group}", 0) + ticks
print(json.dumps(out))
PY
}
procs=(); for i in "${!names[@]}"; do procs+=("${names[$i]}=${pids[$i]}"); done

IFS=, read -ra rate_list <<<"$rates"
for rate in "${rate_list[@]}"; do
  run=$topology-$MODE-$rate
  echo "== $run: nproc $(nproc); before: $(uptime)"
  before=$(cpu_snapshot "${procs[@]}")
  EKYC_API_KEY=$key "$LT" session --server "127.0.0.1:$EKYC__SERVER__ORCHESTRATOR_PORT" --mode "$MODE" --policy "$POLICY" \
    --rate "$rate" --duration "$DUR" --warmup "$WARM" --json >"$OUT/$run.json"
  after=$(cpu_snapshot "${procs[@]}")
  echo "   after: $(uptime)"
  python3 - "$OUT/$run.json" "$before" "$after" "$OUT/$run.cpu.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); before = json.loads(sys.argv[2]); after = json.loads(sys.argv[3])
hz = after.pop("clock_ticks_per_s"); before.pop("clock_ticks_per_s")
done = r["all_completed"]
cpu = {k: (after[k] - before.get(k, 0)) / hz for k in after}
if "ekyc" in cpu:
    cpu["threads:other"] = cpu["ekyc"] - sum(v for k, v in cpu.items() if k.startswith("threads:"))
cpu["generator"] = r.get("generator_cpu_s")
per = {k: (v / done if done and v is not None else None) for k, v in cpu.items()}
json.dump({"run": sys.argv[1], "verifications": done, "cpu_s": cpu, "cpu_s_per_verification": per}, open(sys.argv[4], "w"), indent=1)
l = r.get("latency_session_ok") or {}
f = lambda k: f"{l[k]:.0f}" if k in l else "-"
errs = ", ".join(f"{e['rpc']} {e['status']} {e['reason']}: {e['count']}" for e in r["errors"]) or "none"
print(f"   offered {r['offered_per_s']}/s achieved {r['achieved_per_s']:.3f}/s; session p50 {f('p50_ms')} p90 {f('p90_ms')} p99 {f('p99_ms')} p99.9 {f('p999_ms')} max {f('max_ms')} ms")
print(f"   sessions {r['sessions']} measured, {r['completed']} results, {r['full_pipeline']} every stage; decisions {r['decisions']}; errors {errs}; slips {r['schedule_slips']}")
print("   rpc p50/p99 ms: " + "; ".join(f"{k} {v['latency_ok']['p50_ms']:.0f}/{v['latency_ok']['p99_ms']:.0f}" for k, v in r["rpcs"].items() if v.get("latency_ok")))
print("   CPU-s per verification: " + ", ".join(f"{k} {v:.3f}" for k, v in per.items() if v is not None) + f"  ({done} verifications)")
PY
done
