#!/usr/bin/env python3
"""The face models' own inference time, nothing around it: the floor under `ekyc faces`.

Each model of models/ runs in onnxruntime as crates/ekyc-vision/src/runtime.rs opens it
(graph optimisation ALL, 1 intra-op and 1 inter-op thread, spinning off, CPU provider), on
one fixed input of its shape, as often as the pipeline runs it per face: BlazeFace once per
image, FaceMesh once per landmark pass, SFace once, FaceRes once on a batch of two (the crop
and its mirror). Prints the median and p90 of --repeat timed runs after 5 untimed ones.
The input is uniform noise in the range the pipeline feeds each model (no photo is read):
the convolutions' cost does not depend on the pixel values.

    PYTHONPATH=.ort python3 loadtest/model-inference.py [--repeat 41] [--threads 1]

Needs numpy and the onnxruntime wheel that scripts/setup.sh unpacks into .ort/ (the same
library version the Rust side loads).
"""
import argparse
import os
import time

import numpy as np
import onnxruntime as ort

# (file, input shape, value range, runs per image as `ekyc faces --for-matching` runs it)
MODELS = [
    ("blazeface.onnx", (1, 256, 256, 3), (-1.0, 1.0), "x1 per image"),
    ("facemesh.onnx", (1, 192, 192, 3), (0.0, 1.0), "x2 per face (two landmark passes)"),
    ("sface.onnx", (1, 3, 112, 112), (0.0, 255.0), "x1 per face (default embedder)"),
    ("faceres.onnx", (2, 224, 224, 3), (-128.0, 128.0), "x1 per face (batch of the crop and its mirror)"),
    ("faceres.onnx", (1, 224, 224, 3), (-128.0, 128.0), "(no mirror, for comparison)"),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=41)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models-dir", default=os.path.join(os.path.dirname(__file__), "..", "models"))
    a = ap.parse_args()
    rng = np.random.default_rng(15)
    print(f"onnxruntime {ort.__version__}; {a.threads} intra-op thread(s); median / p90 ms of {a.repeat} runs after 5")
    for name, shape, (lo, hi), per in MODELS:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        sess = ort.InferenceSession(os.path.join(a.models_dir, name), so, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: rng.uniform(lo, hi, shape).astype(np.float32)}
        for _ in range(5):
            sess.run(None, feed)
        ms = []
        for _ in range(a.repeat):
            t = time.perf_counter()
            sess.run(None, feed)
            ms.append((time.perf_counter() - t) * 1000.0)
        ms.sort()
        p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
        print(f"{name:<16} batch {shape[0]}  median {np.median(ms):6.2f}  p90 {p90:6.2f}  {per}")


if __name__ == "__main__":
    main()
