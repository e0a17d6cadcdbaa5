#!/usr/bin/env bash
# Removes what deploy/podman/up.sh made: the pods, the network `ekyc`, the keys and config
# under /var/lib/ekyc-podman, the scratch folders under /dev/shm/ekyc-podman, deploy/podman/.state and the images (keep the images with
# KEEP_IMAGES=1).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
podman=(podman --runtime runc)
for name in orchestrator facematch document liveness redis; do
  "${podman[@]}" pod ps --format '{{.Name}}' | grep "^$name-pod" | xargs -r "${podman[@]}" pod rm -f -t 10 >/dev/null &&
    echo "down.sh: $name removed"
done
# Extra replicas started by smoke.sh.
"${podman[@]}" ps -a --filter label=ekyc-smoke --format '{{.Names}}' | xargs -r "${podman[@]}" rm -f -t 5 >/dev/null
"${podman[@]}" network rm -f ekyc >/dev/null 2>&1
rm -rf /var/lib/ekyc-podman /dev/shm/ekyc-podman "$here/.state"
if [ -z "${KEEP_IMAGES:-}" ]; then
  "${podman[@]}" rmi -f ghcr.io/ekyc/ekyc:0.1.0 localhost/ekyc-redis:7 localhost/ekyc-base:bookworm >/dev/null 2>&1
  "${podman[@]}" image prune -f >/dev/null 2>&1
fi
echo "down.sh: left: $("${podman[@]}" ps -a --format '{{.Names}}' | wc -l) containers, $("${podman[@]}" network ls --format '{{.Name}}' | grep -c '^ekyc$') ekyc networks, $("${podman[@]}" images --format '{{.Repository}}' | grep -c ekyc) ekyc images"
