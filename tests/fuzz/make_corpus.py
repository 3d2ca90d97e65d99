#!/usr/bin/env python3
"""Regenerates the fuzz seed corpus (tests/fuzz/corpus) from the fixtures, with the current
converter, so that the "valid" seeds always load with their stored plans (tests/graph/test_corpus
checks it under `make check`; run this script again when the format or the planner changes).

    python3 tests/fuzz/make_corpus.py [BUILD_DIR]      (default build/release; needs `make tools`)

Seeds:
  - valid models converted from the fixtures (float, dynamic, int8 QDQ/QOperator/PTQ);
  - mlp-valid.mdl, a small residual MLP (an ONNX graph made here, fixed weights), and from it
    mlp-corrupt-00..05 (truncations) and mlp-corrupt-06..23 (a few damaged bytes, fixed seeds);
  - regress-*.mdl are hand-kept inputs that once crashed or misbehaved: never regenerated.
Every seed stays under the fuzzers' 64 KiB input limit.
"""
import os
import random
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")

# seed name -> (source, extra mdeploy-convert arguments)
CONVERTED = {
    "bilstm": ("tests/models/bilstm.onnx", []),
    "gru": ("tests/models/gru.onnx", []),
    "mobilenet_block": ("tests/models/mobilenet_block.onnx", []),
    "digits": ("examples/digits/digits_cnn.onnx", []),
    "dyn-cnn": ("tests/models/dynamic/dyn_cnn.onnx", []),
    "dyn-text": ("tests/models/dynamic/dyn_text.onnx", []),
    "int8-digits_dyn": ("tests/models/quant/digits_dyn.onnx", []),
    "int8-digits_qdq_s8": ("tests/models/quant/digits_qdq_s8.onnx", []),
    "int8-mobilenet_block_qdq_u8": ("tests/models/quant/mobilenet_block_qdq_u8.onnx", []),
    "int8-qop_misc": ("tests/models/quant/qop_misc.onnx", []),
    "int8-digits_ptq": ("examples/digits/digits_cnn.onnx",
                        ["--quantize", "int8", "--calibration", "examples/digits/calibration.npy"]),
    # block-sparse weights (issue #15): float (every prunable layer sparse) and int8
    "sparse-digits": ("examples/digits/digits_cnn.onnx", ["--prune", "magnitude:0.8", "--sparse-density", "1"]),
    "int8-sparse-digits": ("examples/digits/digits_cnn.onnx",
                           ["--prune", "magnitude:0.8", "--quantize", "int8", "--calibration",
                            "examples/digits/calibration.npy"]),
}
MAX_SEED = 64 * 1024


def small_mlp(path):
    """y = fc3(relu(fc2(h1)) + h1), h1 = relu(fc1(x)); x [2, 6], hidden 12, 3 outputs."""
    rng = np.random.RandomState(4)
    w = lambda *s: numpy_helper.from_array(rng.uniform(-0.5, 0.5, s).astype(np.float32))  # noqa: E731
    inits = []
    for name, shape in [("w1", (12, 6)), ("b1", (12,)), ("w2", (12, 12)), ("b2", (12,)), ("w3", (3, 12)), ("b3", (3,))]:
        t = w(*shape)
        t.name = name
        inits.append(t)
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["a1"], transB=1, name="fc1"),
        helper.make_node("Relu", ["a1"], ["h1"], name="relu1"),
        helper.make_node("Gemm", ["h1", "w2", "b2"], ["a2"], transB=1, name="fc2"),
        helper.make_node("Relu", ["a2"], ["h3"], name="relu2"),
        helper.make_node("Add", ["h3", "h1"], ["h4"], name="residual"),
        helper.make_node("Gemm", ["h4", "w3", "b3"], ["y"], transB=1, name="fc3"),
    ]
    g = helper.make_graph(nodes, "test-mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="make_corpus.py")
    onnx.save(m, path)


def convert(build, src, out, extra):
    subprocess.run([os.path.join(build, "bin", "mdeploy-convert"), src, "-o", out, "-q"] + extra,
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    size = os.path.getsize(out)
    if size > MAX_SEED:
        sys.exit(f"{out}: {size} bytes, above the fuzzers' {MAX_SEED}-byte limit")


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "release"))
    for name, (src, extra) in CONVERTED.items():
        convert(build, src, os.path.join(CORPUS, name + ".mdl"), extra)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = os.path.join(tmp, "mlp.onnx")
        small_mlp(onnx_path)
        valid = os.path.join(CORPUS, "mlp-valid.mdl")
        convert(build, onnx_path, valid, [])
    data = open(valid, "rb").read()
    for i in range(6):  # truncations
        with open(os.path.join(CORPUS, f"mlp-corrupt-{i:02d}.mdl"), "wb") as f:
            f.write(data[: len(data) * (i + 1) // 8])
    for i in range(6, 24):  # 1-4 damaged bytes, anywhere
        rng = random.Random(1600 + i)
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        with open(os.path.join(CORPUS, f"mlp-corrupt-{i:02d}.mdl"), "wb") as f:
            f.write(bytes(b))
    print(f"corpus: {len(os.listdir(CORPUS))} seeds in {os.path.relpath(CORPUS, ROOT)}")


if __name__ == "__main__":
    main()
