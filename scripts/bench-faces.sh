#!/usr/bin/env bash
# Per-image time of `ekyc faces` (release build) on each photo: median over N runs in one
# process (the first run pays session warm-up and is dropped), total and decode alone.
# Usage: scripts/bench-faces.sh [N] [IMAGE...]; EKYC__VISION__INTRA_THREADS sets threads.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-9}; shift || true
[ $# -gt 0 ] || set -- ../shared/faces/obama_5_1080p.jpg
cargo build --release --locked -q -p ekyc
for img in "$@"; do
  args=(); for _ in $(seq 0 "$runs"); do args+=("$img"); done
  ./target/release/ekyc faces "${args[@]}" | grep -o 'in [0-9.]* ms (decode [0-9.]* ms)' | tail -n +2 | tr -d '()' |
    awk -v img="$img" '{t[NR]=$2; d[NR]=$5; p[NR]=$2-$5}
      function med(a, n,  i, j, x) { for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j+1] = a[j]; a[j+1] = x } return a[int((n+1)/2)] }
      END {printf "%s: median over %d runs: %.1f ms in all, %.1f ms decoding, %.1f ms face pipeline\n", img, NR, med(t, NR), med(d, NR), med(p, NR)}'
done
