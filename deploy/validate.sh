#!/usr/bin/env bash
# Offline validation of the Kubernetes manifests in deploy/.
#
# For the base and every overlay:
#   1. render it with `kubectl kustomize`;
#   2. validate every object against the bundled Kubernetes JSON schemas with
#      `kubernetes-validate --strict` (unknown fields are errors), once for the
#      oldest supported cluster version and once for the newest schema bundled;
#   3. check the project's own invariants (privacy/hardening settings, probes,
#      no Secret rendered, ...).
# Needs no cluster and no network. Exits non-zero on the first failure.
#
#   deploy/validate.sh                      # everything
#   deploy/validate.sh overlays/production  # one tree (relative to deploy/)
#   K8S_VERSIONS="1.31.0" deploy/validate.sh
#
# Requirements: kubectl (>= 1.27, for its built-in kustomize v5) and
# kubernetes-validate (PyPI):
#   python3 -m venv /tmp/k8svenv && /tmp/k8svenv/bin/pip install kubernetes-validate
#   export PATH=/tmp/k8svenv/bin:$PATH
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# 1.30: oldest cluster supported (native `preStop: sleep` needs 1.30).
# 1.37: newest schema bundled with kubernetes-validate 1.37.x.
read -r -a versions <<<"${K8S_VERSIONS:-1.30.0 1.37.0}"

if [ "$#" -gt 0 ]; then
  trees=("$@")
else
  trees=(base overlays/single-node overlays/production)
fi

die() { echo "validate.sh: $*" >&2; exit 2; }

command -v kubectl >/dev/null 2>&1 ||
  die "kubectl not found on PATH (https://kubernetes.io/docs/tasks/tools/)"

kv="$(command -v kubernetes-validate || true)"
if [ -z "$kv" ] && [ -x /tmp/k8svenv/bin/kubernetes-validate ]; then
  kv=/tmp/k8svenv/bin/kubernetes-validate
fi
[ -n "$kv" ] || die "kubernetes-validate not found on PATH. Install it with:
  python3 -m venv /tmp/k8svenv && /tmp/k8svenv/bin/pip install kubernetes-validate
  export PATH=/tmp/k8svenv/bin:\$PATH"

# The invariant check needs PyYAML; kubernetes-validate's own interpreter has it.
py="$(head -n1 "$kv" | sed -n 's/^#! *//p' | awk '{print $1}')"
if [ -z "$py" ] || ! "$py" -c 'import yaml' 2>/dev/null; then
  py=python3
fi
"$py" -c 'import yaml' 2>/dev/null || die "no Python with PyYAML found for the invariant check"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

for tree in "${trees[@]}"; do
  dir="$here/$tree"
  [ -f "$dir/kustomization.yaml" ] || die "$dir has no kustomization.yaml"
  out="$tmp/$(echo "$tree" | tr '/' '_').yaml"

  echo "== $tree: kubectl kustomize"
  kubectl kustomize "$dir" >"$out"
  echo "   $(grep -c '^kind:' "$out") objects rendered"

  for v in "${versions[@]}"; do
    echo "== $tree: kubernetes-validate --strict -k $v"
    # Pass the file explicitly: without a file name (e.g. reading a pipe)
    # kubernetes-validate prints its usage and exits 0, validating nothing.
    "$kv" --strict --quiet -k "$v" "$out"
  done

  echo "== $tree: ekyc invariants"
  "$py" - "$out" <<'PY'
import sys, yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
errors = []
def err(obj, msg):
    errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {msg}")

kinds = {}
for d in docs:
    kinds.setdefault(d["kind"], []).append(d)
    if d.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/part-of") != "ekyc" \
            and d["kind"] != "Namespace":
        err(d, "missing label app.kubernetes.io/part-of=ekyc")

if "Secret" in kinds:
    errors.append("a Secret is rendered: keys must be created out of band (deploy/README.md)")
if "PersistentVolumeClaim" in kinds or "StatefulSet" in kinds:
    errors.append("persistent storage rendered: nothing of ekyc may be written to disk")

for d in kinds.get("Deployment", []):
    spec = d["spec"]["template"]["spec"]
    if spec.get("automountServiceAccountToken") is not False:
        err(d, "automountServiceAccountToken must be false")
    psc = spec.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        err(d, "pod securityContext.runAsNonRoot must be true")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        err(d, "pod seccompProfile must be RuntimeDefault")
    for vol in spec.get("volumes", []):
        if "emptyDir" in vol and vol["emptyDir"].get("medium") != "Memory":
            err(d, f"emptyDir {vol['name']} must be medium: Memory")
        if "emptyDir" in vol and "sizeLimit" not in vol["emptyDir"]:
            err(d, f"emptyDir {vol['name']} needs a sizeLimit")
        if not ({"emptyDir", "configMap", "secret"} & vol.keys()):
            err(d, f"volume {vol['name']}: only emptyDir/configMap/secret allowed")
    ekyc = d["metadata"]["labels"].get("app.kubernetes.io/name") != "redis"
    for c in spec["containers"] + spec.get("initContainers", []):
        sc = c.get("securityContext", {})
        if sc.get("readOnlyRootFilesystem") is not True:
            err(d, f"container {c['name']}: readOnlyRootFilesystem must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            err(d, f"container {c['name']}: allowPrivilegeEscalation must be false")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            err(d, f"container {c['name']}: capabilities.drop must be [ALL]")
        for p in ("livenessProbe", "readinessProbe"):
            if p not in c:
                err(d, f"container {c['name']}: {p} missing")
        if "cpu" in c.get("resources", {}).get("limits", {}):
            err(d, f"container {c['name']}: no CPU limit (throttling hurts latency)")
        if "memory" not in c.get("resources", {}).get("limits", {}):
            err(d, f"container {c['name']}: memory limit missing")
        if ekyc:
            if psc.get("runAsUser") != 65532 or sc.get("runAsUser") != 65532:
                err(d, f"container {c['name']}: must run as uid 65532")
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            host = env.get("EKYC__SERVER__HOST") or "127.0.0.1"
            if host.startswith("127.") or host in ("localhost", "::1"):
                err(d, f"container {c['name']}: binds {host}: set EKYC__SERVER__HOST=0.0.0.0 (probes and pods connect from outside)")
            if "startupProbe" not in c:
                err(d, f"container {c['name']}: startupProbe missing")
            if "grpc" not in c.get("readinessProbe", {}) or \
                    not c["readinessProbe"]["grpc"].get("service"):
                err(d, f"container {c['name']}: readiness must be a gRPC probe of the named service")
            for m in c.get("volumeMounts", []):
                if m["mountPath"].startswith("/etc/ekyc") and m.get("readOnly") is not True:
                    err(d, f"container {c['name']}: {m['mountPath']} must be mounted readOnly")

backends = {"liveness", "document", "facematch"}
for s in kinds.get("Service", []):
    name = s["metadata"]["name"]
    if name in backends and s["spec"].get("clusterIP") != "None":
        err(s, "backends called by the orchestrator need a headless Service (clusterIP: None)")

if errors:
    print("\n".join("   FAIL " + e for e in errors))
    sys.exit(1)
print(f"   ok ({len(docs)} objects)")
PY
done

echo "All manifests valid."
