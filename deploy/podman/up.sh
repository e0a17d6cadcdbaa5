#!/usr/bin/env bash
# Brings the single-node overlay up as a cluster on this machine with podman 4.3 (Debian 12),
# without a registry: builds the images (deploy/podman/images.sh), renders
# deploy/overlays/podman (the single-node overlay plus podman 4.3's work-arounds), writes
# fresh keys, the Redis password and an API key under /var/lib/ekyc-podman, plays each
# Deployment on the network `ekyc` under its Service's name, waits until every service is
# SERVING, and writes deploy/podman/.state/env for clients:
#   EKYC_SERVER=http://127.0.0.1:50051   the orchestrator (published on the host; another
#                                        free port when something else holds 50051)
#   EKYC_API_KEY=...                     an API key the orchestrator admits (CLI reads it)
# and deploy/podman/.state/health.env, the ports `ekyc health` asks (the orchestrator's, and
# the backends' plain health ports). Between the services it is mutual TLS: up.sh makes a
# private CA for this cluster, a server certificate per backend (naming its Service) and the
# orchestrator's client certificate; the CA's key is deleted once they are signed.
# Root only. Undo everything with deploy/podman/down.sh.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
state="$here/.state"
secrets=/var/lib/ekyc-podman
NET=ekyc
podman=(podman --runtime runc)
[ "$(id -u)" -eq 0 ] || { echo "up.sh: run as root" >&2; exit 2; }
t0=$SECONDS

# kubectl (>= 1.27, kustomize v5) renders the overlay; it comes from no Debian package recent
# enough, so it is not installed here.
command -v kubectl >/dev/null 2>&1 || { echo "up.sh: kubectl not found (>= 1.27 renders deploy/overlays/podman)" >&2; exit 3; }
python3 -c 'import yaml' 2>/dev/null || { echo "up.sh: python3 has no PyYAML (./scripts/setup.sh installs it)" >&2; exit 2; }
# The rest from Debian, once: podman 4.3 (with its recommends: catatonit for the pods' infra
# image, built locally), runc, debootstrap for the base image, openssl for the keys, curl.
missing=()
for tool in podman runc debootstrap openssl curl; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "up.sh: installing ${missing[*]} (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# podman 4.3 on this kernel: no default ulimits, cgroupfs (deploy/README.md, "podman").
if ! grep -qs 'cgroup_manager *= *"cgroupfs"' /etc/containers/containers.conf; then
  echo "up.sh: writing /etc/containers/containers.conf (default_ulimits = [], cgroupfs)"
  mkdir -p /etc/containers
  printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\n' >/etc/containers/containers.conf
fi

"$here/images.sh"
echo "up.sh: images ready after $((SECONDS - t0)) s"
ekyc="$root/target/release/ekyc"

mkdir -p "$state"
kubectl kustomize "$root/deploy/overlays/podman" >"$state/rendered.yaml"

# Secrets and config, as podman cannot mount Secrets: readable by the services' group only.
umask 077
rm -rf "$secrets"
mkdir -p "$secrets"/{config,keys-liveness,keys-orchestrator,redis-client,redis-server}
echo "k1 $(openssl rand -hex 32)" >"$secrets/keys-liveness/liveness-keys"
echo "k1 $(openssl rand -hex 32)" >"$secrets/keys-orchestrator/state-keys"
openssl genpkey -algorithm ed25519 -out "$secrets/keys-orchestrator/evidence-signing-key" 2>/dev/null
openssl pkey -in "$secrets/keys-orchestrator/evidence-signing-key" -pubout -out "$state/evidence-verify-key.pem"
password="$(openssl rand -hex 32)"
printf '%s' "$password" >"$secrets/redis-client/password"
printf 'requirepass %s\n' "$password" >"$secrets/redis-server/redis.conf"
unset password
# TLS between the services: a CA for this cluster only (its key never leaves a temporary
# folder), a server certificate per backend naming its Service, and the orchestrator's
# client certificate (the one name the backends admit).
ca="$(mktemp -d)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=ekyc podman cluster CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$ca/ca.key" -out "$ca/ca.crt" 2>/dev/null
issue() { # NAME FOLDER: a P-256 key and a certificate naming NAME (SAN DNS and CN)
  mkdir -p "$2"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" -keyout "$2/tls.key" -out "$ca/$1.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' "$1" >"$ca/$1.ext"
  openssl x509 -req -in "$ca/$1.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -set_serial "0x$(openssl rand -hex 16)" -days 30 \
    -extfile "$ca/$1.ext" -out "$2/tls.crt" 2>/dev/null
  cp "$ca/ca.crt" "$2/ca.crt"
}
for name in liveness document facematch; do issue "$name" "$secrets/tls-$name"; done
issue orchestrator "$secrets/tls-orchestrator-client"
rm -rf "$ca"
# The ConfigMap's ekyc.toml, plus the API key of this machine's client.
python3 - "$state/rendered.yaml" >"$secrets/config/ekyc.toml" <<'PY'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "ekyc-config":
        sys.stdout.write(d["data"]["ekyc.toml"])
PY
api_key="$("$ekyc" api-key --name podman-client 2>"$state/api-key-entry")"
sed -n '/^\[\[orchestrator.api_keys\]\]/,$p' "$state/api-key-entry" >>"$secrets/config/ekyc.toml"
rm -f "$state/api-key-entry"
chown -R 0:65532 "$secrets"
chown -R 999:1000 "$secrets/redis-server"
find "$secrets" -type d -exec chmod 0750 {} +
find "$secrets" -type f -exec chmod 0440 {} +
chmod 0755 "$secrets"
# Writable scratch (/tmp, Redis' /data) on RAM, one folder per service.
rm -rf /dev/shm/ekyc-podman
mkdir -p /dev/shm/ekyc-podman/{orchestrator,liveness,document,facematch,redis}
chown 65532:65532 /dev/shm/ekyc-podman/{orchestrator,liveness,document,facematch}
chown 999:1000 /dev/shm/ekyc-podman/redis
chmod 0700 /dev/shm/ekyc-podman/*
chmod 0755 /dev/shm/ekyc-podman
umask 022

"${podman[@]}" network exists "$NET" || "${podman[@]}" network create "$NET" >/dev/null
# One Deployment at a time, each under its Service's name (podman 4.3 resolves no Services).
# Each publishes one port on the host's loopback (the overlay's: 50051 for the orchestrator,
# 50062-50064 for the backends' health): one that something else on the host already holds
# (a development `ekyc serve` on 50051, say) is replaced by a free one, so the cluster never
# answers for another server nor fails to start because of it. $state/ports: NAME PORT.
python3 - "$state/rendered.yaml" "$state" <<'PY'
import socket, sys, yaml
def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
taken = set()
with open(f"{sys.argv[2]}/ports", "w") as ports:
    for d in yaml.safe_load_all(open(sys.argv[1])):
        if not d or d["kind"] != "Deployment":
            continue
        name = d["metadata"]["name"]
        for c in d["spec"]["template"]["spec"]["containers"]:
            for p in c.get("ports", []):
                if "hostIP" not in p:
                    continue
                want = p.get("hostPort", p["containerPort"])
                port = want
                while not free(port) or port in taken:
                    with socket.socket() as s:
                        s.bind(("127.0.0.1", 0))
                        port = s.getsockname()[1]
                if port != want:
                    print(f"up.sh: 127.0.0.1:{want} is in use on this host; {name} publishes on {port} instead")
                p["hostPort"] = port
                taken.add(port)
                ports.write(f"{name} {port}\n")
        yaml.safe_dump(d, open(f"{sys.argv[2]}/{name}.yaml", "w"), sort_keys=False)
PY
port_of() { awk -v n="$1" '$1 == n {print $2}' "$state/ports"; }
for name in redis liveness document facematch orchestrator; do
  "${podman[@]}" kube play --network "$NET:alias=$name" "$state/$name.yaml" >/dev/null
  echo "up.sh: $name playing"
done

# Every service SERVING (models loaded and warm): the orchestrator on its API port, the
# backends (TLS only on their API ports) on their plain health ports, all published on the
# host's loopback.
cat >"$state/health.env" <<ENV
EKYC__SERVER__ORCHESTRATOR_PORT=$(port_of orchestrator)
EKYC__SERVER__LIVENESS_PORT=$(port_of liveness)
EKYC__SERVER__DOCUMENT_PORT=$(port_of document)
EKYC__SERVER__FACEMATCH_PORT=$(port_of facematch)
ENV
env -u EKYC__CONFIG_FILE $(cat "$state/health.env") "$ekyc" health --wait 300
cat >"$state/env" <<ENV
EKYC_SERVER=http://127.0.0.1:$(port_of orchestrator)
EKYC_API_KEY=$api_key
ENV
chmod 0600 "$state/env"
echo "up.sh: cluster up in $((SECONDS - t0)) s; clients: source $state/env"
