"""Pre-quantized ONNX models (tests/models/quant/, issue #10) through Python: converted with
mdeploy.convert and run on fresh seeded inputs (not the stored ones) against a live ONNX Runtime
session on the same quantized model.  Static (QDQ / QOperator) models must stay within 2
quantization steps of their output scale; dynamic ones within twice ORT's own distance to the
float model on the stored inputs (mdeploy computes their activations in float)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mdeploy
from conftest import REPO

QUANT = REPO / "tests" / "models" / "quant"
MANIFEST = QUANT / "quant_manifest.json"
import onnxruntime as ort  # noqa: E402  (make deps installs it; a missing one must fail, not skip)


def _fixtures():
    if not MANIFEST.is_file():
        return []
    return json.loads(MANIFEST.read_text())["fixtures"]


FIXTURES = _fixtures()


@pytest.mark.parametrize("fx", FIXTURES, ids=[f["name"] for f in FIXTURES])
def test_fresh_inputs_match_onnxruntime(tmp_path, fx):
    out = tmp_path / (fx["name"] + ".mdl")
    shapes = fx["input_shapes"] or None
    mdeploy.convert(REPO / fx["onnx"], out, input_shapes=shapes)
    model = mdeploy.Model(out)
    rng = np.random.default_rng(10)
    feeds = {}
    for spec in fx["inputs"]:
        stored = np.load(REPO / spec["file"])
        if stored.dtype == np.int64:
            hi = int(stored.max()) + 1
            feeds[spec["name"]] = rng.integers(0, hi, stored.shape, dtype=np.int64)
        elif fx["seed"] == "digits":
            # digits-like images: the stored held-back images, shuffled and lightly perturbed
            x = stored[rng.permutation(len(stored))]
            feeds[spec["name"]] = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1).astype(np.float32)
        else:
            feeds[spec["name"]] = (stored[rng.permutation(len(stored))] * 0.9 +
                                   0.1 * rng.standard_normal(stored.shape)).astype(np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(REPO / fx["onnx"]), so, providers=["CPUExecutionProvider"])
    ref = sess.run(None, feeds)
    got = model.run(feeds, as_dict=True)
    for k, spec in enumerate(fx["outputs"]):
        err = float(np.max(np.abs(got[spec["name"]].astype(np.float64) - ref[k])))
        if spec["scale"]:
            bound = 2 * spec["scale"] + 1e-6
        else:
            bound = 2 * spec["max_abs_vs_float"] + 1e-3
        print(f"{fx['name']}: max |mdeploy - ORT| {err:.4g} (bound {bound:.4g})")
        assert err <= bound, f"{fx['name']}.{spec['name']}: {err:.4g} > {bound:.4g}"


@pytest.mark.parametrize("r", json.loads(MANIFEST.read_text()).get("refusals", []) if MANIFEST.is_file() else [],
                         ids=lambda r: r["onnx"].rsplit("/", 1)[-1])
def test_refused_with_a_message(tmp_path, r):
    out = tmp_path / "x.mdl"
    with pytest.raises(mdeploy.Error) as ei:
        mdeploy.convert(REPO / r["onnx"], out)
    assert r["message"] in str(ei.value)
    assert not out.exists()


def _qdq_convs_with_unquantized_biases():
    """x -> Q/DQ -> Conv1 (float bias, as quantize_static leaves a bias it reaches through an
    Identity) -> Q/DQ -> Conv2 (bias dequantized with *Conv1's* bias scale, as when the exporter
    shares equal initializers between layers) -> Q/DQ -> y.  Weights int8 per channel."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    C0, C1, C2 = 3, 8, 6
    w1 = rng.normal(0, 0.3, (C1, C0, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.2, (C2, C1, 3, 3)).astype(np.float32)
    sx, s1, s2 = 0.02, 0.05, 0.04

    def wq(w):
        s = (np.abs(w).reshape(len(w), -1).max(1) / 127).astype(np.float32)
        q = np.clip(np.round(w / s[:, None, None, None]), -127, 127).astype(np.int8)
        return q, s

    q1, ws1 = wq(w1)
    q2, ws2 = wq(w2)
    b1 = rng.normal(0, 0.5, C1).astype(np.float32)
    b1_scale = (sx * ws1).astype(np.float32)
    b1_q = np.round(b1 / b1_scale).astype(np.int32)
    init = [
        numpy_helper.from_array(np.array(sx, np.float32), "sx"), numpy_helper.from_array(np.array(0, np.int8), "zx"),
        numpy_helper.from_array(np.array(s1, np.float32), "s1"), numpy_helper.from_array(np.array(-5, np.int8), "z1"),
        numpy_helper.from_array(np.array(s2, np.float32), "s2"), numpy_helper.from_array(np.array(3, np.int8), "z2"),
        numpy_helper.from_array(q1, "w1q"), numpy_helper.from_array(ws1, "w1s"),
        numpy_helper.from_array(np.zeros(C1, np.int8), "w1z"),
        numpy_helper.from_array(q2, "w2q"), numpy_helper.from_array(ws2, "w2s"),
        numpy_helper.from_array(np.zeros(C2, np.int8), "w2z"),
        numpy_helper.from_array(b1, "b1f"),
        # Conv2's bias: the first 6 of Conv1's quantized bias, with Conv1's scale
        numpy_helper.from_array(b1_q[:C2], "b2q"), numpy_helper.from_array(b1_scale[:C2], "b2s"),
        numpy_helper.from_array(np.zeros(C2, np.int32), "b2z"),
    ]
    n = helper.make_node
    nodes = [
        n("QuantizeLinear", ["x", "sx", "zx"], ["xq"]), n("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
        n("DequantizeLinear", ["w1q", "w1s", "w1z"], ["w1"], axis=0),
        n("DequantizeLinear", ["w2q", "w2s", "w2z"], ["w2"], axis=0),
        n("DequantizeLinear", ["b2q", "b2s", "b2z"], ["b2"], axis=0),
        n("Identity", ["b1f"], ["b1"]),
        n("Conv", ["xd", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        n("QuantizeLinear", ["c1", "s1", "z1"], ["c1q"]), n("DequantizeLinear", ["c1q", "s1", "z1"], ["c1d"]),
        n("Conv", ["c1d", "w2", "b2"], ["c2"], strides=[2, 2]),
        n("QuantizeLinear", ["c2", "s2", "z2"], ["c2q"]), n("DequantizeLinear", ["c2q", "s2", "z2"], ["y"]),
    ]
    g = helper.make_graph(nodes, "biases", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C0, 11, 11])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], init)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), s2


def test_unquantized_conv_biases_run_int8_and_match_onnxruntime(tmp_path, capsys):
    import onnx
    from mdeploy.__main__ import main

    model, s_out = _qdq_convs_with_unquantized_biases()
    src, dst = tmp_path / "b.onnx", tmp_path / "b.mdl"
    onnx.save(model, str(src))
    mdeploy.convert(src, dst)
    assert main(["inspect", str(dst)]) == 0
    text = capsys.readouterr().out
    convs = [line for line in text.splitlines() if " Conv2D " in line]
    assert len(convs) == 2 and all("int8 [1," in c.split("->")[1] for c in convs), text
    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    m = mdeploy.Model(dst)
    rng = np.random.default_rng(4)
    worst = 0.0
    for _ in range(20):
        x = rng.normal(0, 1, (1, 3, 11, 11)).astype(np.float32)
        want = sess.run(None, {"x": x})[0]
        got = m.run({"x": x})[0]
        worst = max(worst, float(np.abs(got.reshape(want.shape) - want).max()) / s_out)
    assert worst <= 2.0 + 1e-6, f"{worst} steps"
