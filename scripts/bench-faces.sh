#!/usr/bin/env bash
# Per-image time of `ekyc faces` (release build): median of N runs on each photo, the
# model time inside the process as printed by ekyc. Usage: scripts/bench-faces.sh [N] IMAGE...
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-9}; shift || true
[ $# -gt 0 ] || set -- ../shared/faces/obama_5_1080p.jpg
cargo build --release --locked -q -p ekyc
for img in "$@"; do
  # One process, the image repeated: the first run pays session warm-up and is dropped.
  args=(); for _ in $(seq 0 "$runs"); do args+=("$img"); done
  ./target/release/ekyc faces "${args[@]}" | grep -o 'in [0-9.]* ms' | tail -n +2 | awk '{print $2}' | sort -n |
    awk -v img="$img" '{a[NR]=$1} END {printf "%s: median %.1f ms over %d runs (min %.1f, max %.1f)\n", img, a[int((NR+1)/2)], NR, a[1], a[NR]}'
done
