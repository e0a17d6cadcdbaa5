#!/usr/bin/env python3
"""Markdown rows for loadtest/RESULTS.md from the files run-session.sh leaves in its OUT folders.

    loadtest/session-table.py latency DIR...   # one row per run: rate, latency, errors, decisions
    loadtest/session-table.py rpcs DIR...      # per-call p50/p99 per run
    loadtest/session-table.py cpu DIR...       # CPU-seconds per verification per process, per run
"""
import glob
import json
import os
import sys


def runs(dirs):
    for d in dirs:
        for f in sorted(glob.glob(os.path.join(d, "*.json")), key=lambda p: (p.endswith(".cpu.json"), p)):
            if f.endswith(".cpu.json"):
                continue
            r = json.load(open(f))
            cpu = f[:-5] + ".cpu.json"
            yield os.path.basename(f)[:-5], r, (json.load(open(cpu)) if os.path.exists(cpu) else None)


def ms(lat, key):
    return f"{lat[key]:.0f}" if lat else "-"


def latency(dirs):
    print("| run | offered /s | achieved /s | sessions | results (every stage) | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | decisions |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for name, r, _ in sorted(runs(dirs), key=lambda x: (x[0].rsplit("-", 1)[0], x[1]["offered_per_s"])):
        l = r.get("latency_session_ok")
        errs = ", ".join(f"{e['rpc']} {e['status']} {e['reason']} {e['count']}" for e in r["errors"]) or "none"
        dec = ", ".join(f"{k} {v}" for k, v in sorted(r["decisions"].items()))
        print(
            f"| {name} | {r['offered_per_s']} | {r['achieved_per_s']:.2f} | {r['sessions']} | {r['completed']} ({r['full_pipeline']}) "
            f"| {ms(l, 'p50_ms')} | {ms(l, 'p90_ms')} | {ms(l, 'p99_ms')} | {ms(l, 'p999_ms')} | {ms(l, 'max_ms')} | {errs} | {dec} |"
        )


def rpcs(dirs):
    names = ["StartSession", "AddFrame", "AddDocument", "Finish", "Verify"]
    print("| run | " + " | ".join(f"{n} p50 / p99 ms" for n in names) + " |")
    print("|---|" + "---:|" * len(names))
    for name, r, _ in sorted(runs(dirs), key=lambda x: (x[0].rsplit("-", 1)[0], x[1]["offered_per_s"])):
        cells = []
        for n in names:
            l = (r["rpcs"].get(n) or {}).get("latency_ok")
            cells.append(f"{l['p50_ms']:.0f} / {l['p99_ms']:.0f}" if l else "-")
        print(f"| {name} | " + " | ".join(cells) + " |")


def cpu(dirs):
    rows = [(n, r, c) for n, r, c in runs(dirs) if c]
    keys = []
    for _, _, c in rows:
        keys += [k for k in c["cpu_s_per_verification"] if k not in keys]
    print("| run | verifications | " + " | ".join(keys) + " |")
    print("|---|---:|" + "---:|" * len(keys))
    for name, r, c in sorted(rows, key=lambda x: (x[0].rsplit("-", 1)[0], x[1]["offered_per_s"])):
        per = c["cpu_s_per_verification"]
        cells = [f"{per[k]:.3f}" if per.get(k) is not None else "-" for k in keys]
        print(f"| {name} | {c['verifications']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    what, dirs = sys.argv[1], sys.argv[2:]
    {"latency": latency, "rpcs": rpcs, "cpu": cpu}[what](dirs)
