#!/usr/bin/env bash
# Checks the alerting rules with promtool (Debian package `prometheus`): the PrometheusRule's
# spec as a plain rule file (`promtool check rules`), its unit tests (`promtool test rules
# rules.test.yaml`), and that the Grafana dashboard is JSON whose queries name only metrics
# the services export.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
command -v promtool >/dev/null || { echo "test.sh: promtool missing (apt-get install prometheus)" >&2; exit 2; }
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
python3 - "$here/prometheusrule.yaml" "$tmp/rules.yaml" <<'PY'
import sys, yaml
rule = yaml.safe_load(open(sys.argv[1]))
assert rule["kind"] == "PrometheusRule", rule["kind"]
yaml.safe_dump(rule["spec"], open(sys.argv[2], "w"), sort_keys=False)
PY
cp "$here/rules.test.yaml" "$tmp/"
promtool check rules "$tmp/rules.yaml"
(cd "$tmp" && promtool test rules rules.test.yaml)
# Every ekyc_* metric named by the rules or the dashboard is one the code (crates/*/src) records.
python3 - "$here" "$root/crates" <<'PY'
import json, pathlib, re, sys
here, crates = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
dash = json.loads((here / "grafana-dashboard.json").read_text())
# The crates' own sources only: a name quoted in a test records nothing.
code = "".join(p.read_text() for p in crates.rglob("*.rs") if "src" in p.relative_to(crates).parts)
known = set(re.findall(r'"(ekyc_[a-z_]+)"', code))
used = set(re.findall(r"ekyc_[a-z_]+", (here / "prometheusrule.yaml").read_text() + json.dumps(dash)))
strip = lambda m: re.sub(r"_(bucket|count|sum)$", "", m)
missing = sorted(m for m in used if strip(m) not in known and m not in known)
assert not missing, f"metrics not recorded anywhere in crates/: {missing}"
print(f"dashboard: {len(dash['panels'])} panels; {len(used)} metric names, all recorded by the code")
PY
