#!/usr/bin/env bash
# End-to-end check of the podman cluster (root, Debian 12 with podman 4.3; several minutes,
# not part of `cargo test`):
#   1. deploy/podman/up.sh (images, overlay, pods, every service SERVING);
#   2. one `ekyc verify` through the orchestrator (a decision and a signed evidence record,
#      checked offline with the cluster's evidence key);
#   3. a second facematch replica under the same name: verifications from the one
#      orchestrator reach both (counted on each replica's /metrics);
#   4. a load run of LOAD_S seconds (default 40) of verifications by 3 clients, during which
#      the first facematch container's process is killed (SIGKILL): every verification must
#      end in a decision (the orchestrator drops the dead replica and the other answers), and
#      the killed container comes back (restart policy) and is SERVING again;
#   5. deploy/podman/down.sh (KEEP_IMAGES=1 keeps the images).
# Photos: ../shared/faces (SELFIE and CARD_FACE override), made into head turns and an ID
# card by the testkit's demo_inputs example. Times of each step are printed.
# Run by CI after ./scripts/test.sh (through deploy/ci.sh). It first builds the release
# binary and demo_inputs (cargo decides what is stale), removes what an earlier run may have
# left (down.sh, images kept), and always ends with down.sh, on failure or signal too. It
# publishes only on 127.0.0.1, on the overlay's ports or free ones (up.sh).
# Without kubectl (>= 1.27, renders the overlay) it prints that it was NOT run and exits 0:
# the one failure-free way out that checks nothing.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
if ! command -v kubectl >/dev/null 2>&1; then
  cat <<'MSG'
################################################################################
## PODMAN SMOKE TEST NOT RUN: kubectl is not installed on this machine.
## deploy/podman/up.sh renders deploy/overlays/podman with kubectl >= 1.27, which
## no allowed registry provides (Debian's kubernetes-client is 1.20 and too old).
## The cluster, the verification through it and the crash under load were NOT
## checked.
################################################################################
MSG
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "smoke.sh: run as root" >&2; exit 2; }
SELFIE=${SELFIE:-$root/../shared/faces/obama_1.jpg}
CARD_FACE=${CARD_FACE:-$root/../shared/faces/obama_3.jpg}
LOAD_S=${LOAD_S:-40}
podman=(podman --runtime runc)
ekyc="$root/target/release/ekyc"
t0=$SECONDS
step() { echo "== [$((SECONDS - t0)) s] $*"; }

step "release build (ekyc, demo_inputs)"
(cd "$root" && cargo build --release --locked -p ekyc && cargo build --release --locked -p ekyc-testkit --example demo_inputs)

step "leftovers of an earlier run removed (images kept)"
if command -v podman >/dev/null 2>&1; then KEEP_IMAGES=1 "$here/down.sh"; fi
work="$(mktemp -d)"
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM HUP
  jobs -p | xargs -r kill 2>/dev/null
  rm -rf "$work"
  [ -n "${KEEP_UP:-}" ] || "$here/down.sh"
  [ "$rc" -eq 0 ] || echo "smoke: FAILED (exit $rc) after $((SECONDS - t0)) s" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

step "up"
"$here/up.sh"
set -a; . "$here/.state/env"; set +a

"$root/target/release/examples/demo_inputs" "$SELFIE" "$CARD_FACE" "$work/inputs" >/dev/null
I="$work/inputs"
verify() {
  "$ekyc" verify --server "$EKYC_SERVER" --front "$I/front.jpg" --left "$I/left.jpg" --right "$I/right.jpg" \
    --up "$I/up.jpg" --down "$I/down.jpg" --document "$I/card.jpg" --out-dir "$1"
}

step "one verification through the orchestrator"
mkdir -p "$work/one"
verify "$work/one" | tee "$work/one.txt"
grep -q '^decision ' "$work/one.txt"
"$ekyc" evidence verify "$(ls "$work"/one/evidence-*.json)" --key "$here/.state/evidence-verify-key.pem"

# Compare calls a facematch container has answered, from its /metrics (the network is
# reachable from the host).
ip_of() { "${podman[@]}" inspect "$1" --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}'; }

step "mutual TLS between the services: facematch admits the orchestrator's certificate only"
# Calls to facematch's API port (HTTP/2 over TLS, name checked as `facematch`) with the
# orchestrator's client certificate, with another certificate of the cluster's CA
# (facematch's own), and with none; each prints the HTTP status and the grpc-status header.
# The admitted one is a real gRPC health check. The refused ones send no body: the name check
# answers before reading one, and while curl 7.88 is still sending a body it takes the
# server's RST_STREAM (NO_ERROR) that follows that answer for an error and keeps no headers
# (exit 92, about half the time on this machine); a request that ends with its headers gets
# the answer every time.
printf '\0\0\0\0\0' >"$work/health-request"
tls=/var/lib/ekyc-podman
probe() { # call|headers-only [curl options]
  local body=() rc=0
  [ "$1" = call ] && body=(--data-binary @"$work/health-request")
  shift
  rm -f "$work/probe-headers"
  curl -s -o /dev/null -D "$work/probe-headers" --http2 --max-time 5 --resolve "facematch:50054:$(ip_of facematch-pod-0-facematch)" \
    --cacert "$tls/tls-facematch/ca.crt" -H 'content-type: application/grpc' -H 'te: trailers' \
    "${body[@]}" "$@" https://facematch:50054/grpc.health.v1.Health/Check || rc=$?
  echo "probe with ${2:-no certificate}: curl exit $rc" >&2
  cat "$work/probe-headers" 2>/dev/null |
    awk 'tolower($1) ~ /^http\// {h = $2} tolower($1) == "grpc-status:" {g = $2} END {printf "%s grpc-status=%s", (h ? h : "refused"), (g ? g : "-")}' | tr -d '\r'
}
as_orchestrator=$(probe call --cert "$tls/tls-orchestrator-client/tls.crt" --key "$tls/tls-orchestrator-client/tls.key")
as_other=$(probe headers-only --cert "$tls/tls-facematch/tls.crt" --key "$tls/tls-facematch/tls.key")
without=$(probe headers-only)
echo "orchestrator's certificate: $as_orchestrator; facematch's own certificate: $as_other; no certificate: $without"
# OK comes in the trailers (shown or not by curl); PERMISSION_DENIED (7) answers at once.
case "$as_orchestrator" in "200 grpc-status=0" | "200 grpc-status=-") ;; *) echo "smoke: the orchestrator's certificate was not admitted" >&2; exit 1 ;; esac
[ "$as_other" = "200 grpc-status=7" ] || { echo "smoke: a certificate naming another client was not refused by the name check" >&2; exit 1; }
case "$without" in refused*) ;; *) echo "smoke: a client without a certificate got in" >&2; exit 1 ;; esac
compares() {
  curl -sf "http://$(ip_of "$1"):9090/metrics" |
    awk '/^ekyc_request_duration_seconds_count\{service="ekyc.v1.FaceMatch",method="Compare",code="OK"\}/ {s += $2} END {print s + 0}'
}

step "second facematch replica under the name facematch"
first=facematch-pod-0-facematch
"${podman[@]}" run -d --name facematch-2 --label ekyc-smoke --network ekyc:alias=facematch --restart always \
  --read-only --user 65532:65532 --cap-drop ALL --security-opt no-new-privileges --tmpfs /tmp:size=16m --memory 2g \
  -v /var/lib/ekyc-podman/config:/etc/ekyc/config:ro -e EKYC__CONFIG_FILE=/etc/ekyc/config/ekyc.toml \
  -v /var/lib/ekyc-podman/tls-facematch:/etc/ekyc/tls:ro -e EKYC__SERVER__TLS__CERT_FILE=/etc/ekyc/tls/tls.crt \
  -e EKYC__SERVER__TLS__KEY_FILE=/etc/ekyc/tls/tls.key -e EKYC__SERVER__TLS__CLIENT_CA_FILE=/etc/ekyc/tls/ca.crt \
  -e EKYC__SERVER__TLS__ALLOWED_CLIENT_NAMES=orchestrator -e EKYC__SERVER__HEALTH_PORT=50060 \
  -e EKYC__SERVER__HOST=0.0.0.0 -e EKYC__FACEMATCH__WORKERS=1 \
  ghcr.io/ekyc/ekyc:0.1.0 serve --service facematch >/dev/null
# Serving once its metrics say so; the orchestrator re-resolves `facematch` every 2 s.
for _ in $(seq 60); do
  curl -sf "http://$(ip_of facematch-2):9090/metrics" | grep -q '^ekyc_serving{service="ekyc.v1.FaceMatch"} 1' && break
  sleep 1
done
sleep 3
a0=$(compares "$first"); b0=$(compares facematch-2)
mkdir -p "$work/spread"
for i in $(seq 12); do verify "$work/spread" >/dev/null; done
a1=$(compares "$first"); b1=$(compares facematch-2)
echo "12 verifications: $((a1 - a0)) Compare calls on $first, $((b1 - b0)) on facematch-2"
[ $((a1 - a0)) -gt 0 ] && [ $((b1 - b0)) -gt 0 ] || { echo "smoke: calls did not reach both replicas" >&2; exit 1; }

step "load run of $LOAD_S s (3 clients); $first killed after $((LOAD_S / 3)) s"
restarts_before=$("${podman[@]}" inspect "$first" --format '{{.RestartCount}}')
mkdir -p "$work/load"
end=$((SECONDS + LOAD_S))
for c in 1 2 3; do
  (
    n=0
    while [ $SECONDS -lt $end ]; do
      n=$((n + 1))
      if out=$(verify "$work/load" 2>&1) && grep -q '^decision ' <<<"$out"; then
        echo "ok $(date +%s.%N) $(grep '^decision ' <<<"$out" | cut -d' ' -f2 | tr -d ,)"
      else
        echo "FAIL $(date +%s.%N) $(tail -n1 <<<"$out")"
      fi
    done
  ) >"$work/client-$c.log" &
done
# The liveness and document workers' queue depth (ekyc_queue_depth) as their /metrics
# render it, twice a second while the load runs (facematch gets embeddings here, no images).
for svc in liveness document; do
  (
    ip=$(ip_of "$svc-pod-0-$svc")
    while [ $SECONDS -lt $end ]; do
      curl -sf "http://$ip:9090/metrics" | awk '/^ekyc_queue_depth\{/ && /queue="workers"/ {print $NF}'
      sleep 0.5
    done
  ) >"$work/queue-depth-$svc.log" &
done
sleep $((LOAD_S / 3))
killed_at=$(date +%s.%N)
# A crash, not `podman kill` (after which podman applies no restart policy): SIGKILL to the
# container's process from outside.
kill -9 "$("${podman[@]}" inspect "$first" --format '{{.State.Pid}}')"
echo "killed $first (SIGKILL to its process)"
wait
cat "$work"/client-*.log | sort -k2 >"$work/load.log"
ok=$(grep -c '^ok' "$work/load.log" || true); failed=$(grep -c '^FAIL' "$work/load.log" || true)
after=$(awk -v k="$killed_at" '$1 == "ok" && $2 > k' "$work/load.log" | wc -l)
echo "load: $ok verifications decided ($after after the kill), $failed failed"
for svc in liveness document; do
  samples=$(wc -l <"$work/queue-depth-$svc.log")
  echo "$svc worker queue depth during the load: $samples samples, highest $(sort -g "$work/queue-depth-$svc.log" | tail -n1)"
  [ "$samples" -gt 0 ] || { echo "smoke: $svc's /metrics has no ekyc_queue_depth" >&2; exit 1; }
done
grep '^FAIL' "$work/load.log" | head -n 5 || true
for _ in $(seq 30); do
  [ "$("${podman[@]}" inspect "$first" --format '{{.State.Running}}')" = true ] && break
  sleep 1
done
echo "$first: running=$("${podman[@]}" inspect "$first" --format '{{.State.Running}}'), restarts $restarts_before -> $("${podman[@]}" inspect "$first" --format '{{.RestartCount}}')"
[ "$after" -gt 0 ] || { echo "smoke: no verification decided after the kill" >&2; exit 1; }
[ "$failed" -eq 0 ] || { echo "smoke: $failed verifications failed under the kill" >&2; exit 1; }
[ "$("${podman[@]}" inspect "$first" --format '{{.RestartCount}}')" -gt "$restarts_before" ] ||
  { echo "smoke: $first was not restarted" >&2; exit 1; }
env -u EKYC__CONFIG_FILE $(cat "$here/.state/health.env") "$ekyc" health --wait 60

step "down"
trap - EXIT
rm -rf "$work"
[ -n "${KEEP_UP:-}" ] || "$here/down.sh"
step "smoke passed"
