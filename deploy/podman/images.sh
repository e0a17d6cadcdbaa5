#!/usr/bin/env bash
# Builds the images the podman cluster runs, without any registry:
#   localhost/ekyc-base:bookworm   Debian 12 minbase from the Debian mirror (debootstrap),
#                                  trimmed, `podman import`ed; made only when missing
#   ghcr.io/ekyc/ekyc:0.1.0        deploy/Containerfile, target `prebuilt`, from
#                                  target/release/ekyc, the ONNX Runtime library and models/
#   localhost/ekyc-redis:7         deploy/redis/Containerfile
# Needs root, podman, runc, debootstrap. Called by up.sh; idempotent.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
state="$here/.state"
BASE=localhost/ekyc-base:bookworm
IMAGE=ghcr.io/ekyc/ekyc:0.1.0
REDIS=localhost/ekyc-redis:7
podman=(podman --runtime runc)
mkdir -p "$state"

if ! "${podman[@]}" image exists "$BASE"; then
  mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)"
  mirror="${mirror:-http://deb.debian.org/debian}"
  rootfs="$(mktemp -d)"
  echo "images: debootstrap --variant=minbase bookworm from $mirror"
  t0=$SECONDS
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$state/debootstrap.log" 2>&1 ||
    { tail -n 20 "$state/debootstrap.log"; exit 1; }
  rm -rf "$rootfs"/usr/share/{doc,man,info,locale} "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*
  tar -C "$rootfs" --numeric-owner -c . | "${podman[@]}" import - "$BASE" >/dev/null
  rm -rf "$rootfs"
  echo "images: $BASE made in $((SECONDS - t0)) s"
fi

bin="$root/target/release/ekyc"
if [ ! -x "$bin" ] || [ -n "${EKYC_REBUILD:-}" ]; then
  (cd "$root" && cargo build --release -p ekyc)
fi
ort="$(ls "$root"/.ort/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1)"
[ -n "$ort" ] || (cd "$root" && ./scripts/setup.sh)
ort="$(ls "$root"/.ort/onnxruntime/capi/libonnxruntime.so.* | head -n1)"

ctx="$state/context"
rm -rf "$ctx" && mkdir -p "$ctx"
cp "$bin" "$ctx/ekyc"
cp "$ort" "$ctx/libonnxruntime.so"
cp -r "$root/models" "$ctx/models"
echo "images: building $IMAGE"
"${podman[@]}" build -q -f "$root/deploy/Containerfile" --target prebuilt --build-arg BASE_IMAGE="$BASE" -t "$IMAGE" "$ctx" >/dev/null
rm -rf "$ctx"

if ! "${podman[@]}" image exists "$REDIS"; then
  echo "images: building $REDIS"
  "${podman[@]}" build -q -f "$root/deploy/redis/Containerfile" --build-arg BASE_IMAGE="$BASE" -t "$REDIS" "$root/deploy/redis" >/dev/null
fi
"${podman[@]}" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "ekyc" || true
