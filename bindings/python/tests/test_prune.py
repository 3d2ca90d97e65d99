"""Pruning and sparse weights from Python (issue #15): mdeploy.convert(prune=..., prune_layers=...).
Oracles: the same block magnitude pruning written here in NumPy, applied to the ONNX weights
and run by ONNX Runtime; block-sparse ONNX weights made here (training-time pruning) for the
detection without a flag."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as nh
import onnxruntime as ort
import pytest

import mdeploy
from conftest import MODELS


def _block_scores(w_nk):
    """Per 8x1 block of W [N, K] (8 outputs of one input): mean square, and its rows."""
    n, k = w_nk.shape
    scores, blocks = [], []
    for g in range(0, n, 8):
        part = w_nk[g : g + 8].astype(np.float64)
        s = (part * part).sum(axis=0) / part.shape[0]
        for kk in range(k):
            scores.append(np.float32(s[kk]))
            blocks.append((g, kk, part.shape[0]))
    return scores, blocks


def _prune_global(weights, sparsity):
    """weights: list of W [N, K] (modified in place): the weakest blocks over all of them zeroed
    until at least `sparsity` of the weights are in zeroed blocks; ties by layer, then index."""
    pool = []
    for li, w in enumerate(weights):
        scores, blocks = _block_scores(w)
        pool += [(s, li, bi, b) for bi, (s, b) in enumerate(zip(scores, blocks))]
    pool.sort(key=lambda e: (e[0], e[1], e[2]))
    target = np.ceil(sparsity * sum(w.size for w in weights))
    zeroed = 0
    for s, li, bi, (g, k, rows) in pool:
        if zeroed >= target:
            break
        weights[li][g : g + rows, k] = 0
        zeroed += rows


def _run_ort(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _mlp_weights(model):
    inits = {i.name: i for i in model.graph.initializer}
    return [inits[n.input[1]] for n in model.graph.node if n.op_type == "Gemm"]


@pytest.mark.parametrize("sparsity", [0.8, 0.9])
def test_global_magnitude_against_numpy_and_ort(tmp_path, sparsity):
    model = onnx.load(MODELS / "mlp.onnx")
    inits = _mlp_weights(model)  # Gemm with transB=1: B is W [N, K]
    ws = [nh.to_array(i).copy() for i in inits]
    _prune_global(ws, sparsity)
    for i, w in zip(inits, ws):
        i.CopyFrom(nh.from_array(w, i.name))
    x = np.load(MODELS / "mlp.in0.npy")
    want = _run_ort(model, x)

    out = tmp_path / "mlp.mdl"
    r = mdeploy.convert(MODELS / "mlp.onnx", out, prune=sparsity)
    got = mdeploy.Model(out).run(x)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    layers = {l["name"]: l for l in r.pruning}
    assert len(layers) == 3
    total = sum(l["weights"] for l in r.pruning)
    zeros = sum(l["weights"] * l["sparsity"] for l in r.pruning)
    assert zeros >= sparsity * total - 0.5
    assert sum(int((w == 0).sum()) for w in ws) == round(zeros)
    assert layers["/net/net.0/Gemm"]["storage"] == "sparse"
    dense = tmp_path / "dense.mdl"
    mdeploy.convert(MODELS / "mlp.onnx", dense, prune=sparsity, sparse_density=0)
    np.testing.assert_allclose(mdeploy.Model(dense).run(x)[0], want, rtol=1e-5, atol=1e-6)
    assert out.stat().st_size < dense.stat().st_size


def test_per_layer_and_keep(tmp_path):
    model = onnx.load(MODELS / "mlp.onnx")
    inits = _mlp_weights(model)
    ws = [nh.to_array(i).copy() for i in inits]
    first = [ws[0]]
    _prune_global(first, 0.9)  # net.0 alone at 0.9; net.2 kept (0); net.4 in the global pool at 0.5
    last = [ws[2]]
    _prune_global(last, 0.5)
    for i, w in zip(inits, ws):
        i.CopyFrom(nh.from_array(w, i.name))
    x = np.load(MODELS / "mlp.in0.npy")
    want = _run_ort(model, x)
    out = tmp_path / "mlp.mdl"
    r = mdeploy.convert(MODELS / "mlp.onnx", out, prune=0.5,
                        prune_layers={"/net/net.0/Gemm": 0.9, "/net/net.2/Gemm": 0})
    np.testing.assert_allclose(mdeploy.Model(out).run(x)[0], want, rtol=1e-5, atol=1e-6)
    layers = {l["name"]: l for l in r.pruning}
    assert layers["/net/net.2/Gemm"]["sparsity"] == pytest.approx(float((ws[1] == 0).mean()))


def _sparse_onnx(path, n=64, k=96, density=0.25, seed=0):
    """x [1, k] -> MatMul(B [k, n]) -> Gemm(W [n, n], transB=1): weights pruned in 8x1 blocks
    (along the outputs) as training-time pruning leaves them."""
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((k, n)).astype(np.float32)
    keep = rng.random((k, n // 8)) < density
    b *= np.repeat(keep, 8, axis=1)
    w = rng.standard_normal((n, n)).astype(np.float32)
    keep = rng.random((n // 8, n)) < density
    w *= np.repeat(keep, 8, axis=0)
    g = oh.make_graph(
        [oh.make_node("MatMul", ["x", "B"], ["h"], name="mm"),
         oh.make_node("Gemm", ["h", "W"], ["y"], name="fc", transB=1)],
        "sparse",
        [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, k])],
        [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, n])],
        [nh.from_array(b, "B"), nh.from_array(w, "W")],
    )
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return m


def test_sparsity_found_without_flag(tmp_path):
    src = tmp_path / "sparse.onnx"
    model = _sparse_onnx(src)
    out = tmp_path / "sparse.mdl"
    r = mdeploy.convert(src, out)
    layers = {l["name"]: l for l in r.pruning}
    assert layers["mm"]["storage"] == "sparse" and layers["fc"]["storage"] == "sparse"
    assert layers["mm"]["block_density"] < 0.4
    x = np.random.default_rng(1).standard_normal((1, 96)).astype(np.float32)
    np.testing.assert_allclose(mdeploy.Model(out).run(x)[0], _run_ort(model, x), rtol=1e-5, atol=1e-5)
    dense = tmp_path / "dense.mdl"
    r2 = mdeploy.convert(src, dense, sparse_density=0)
    assert all(l["storage"] == "dense" for l in r2.pruning)
    assert out.stat().st_size < 0.6 * dense.stat().st_size


@pytest.mark.parametrize("kw, msg", [
    ({"prune": 1.0}, "outside [0, 1)"),
    ({"prune": -0.1}, "outside [0, 1)"),
    ({"prune_layers": {"/net/net.0/Gemm": 1.5}}, "outside [0, 1)"),
    ({"prune_layers": {"nope": 0.5}}, "no node of that name"),
    ({"prune_layers": {"/net/net.5/Sigmoid": 0.5}}, "cannot be pruned"),
])
def test_bad_options(tmp_path, kw, msg):
    out = tmp_path / "bad.mdl"
    with pytest.raises(mdeploy.Error, match=msg.replace("[", r"\[").replace(")", r"\)")) as e:
        mdeploy.convert(MODELS / "mlp.onnx", out, **kw)
    assert e.value.status == mdeploy.Status.INVALID_ARGUMENT
    assert not out.exists()


def test_convolutions_found_and_stored_by_size(tmp_path):
    """3x3 convolutions with 8x1-block-sparse weights (blocks along the output channels): the
    large one (32 -> 128, 288 inputs per output) is stored sparse, the small one (3 -> 32) dense
    (it runs slower sparse), unless --sparse-density asks; outputs match ONNX Runtime."""
    rng = np.random.default_rng(2)

    def sparse_w(cout, cin):
        w = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32) * 0.2
        keep = rng.random((cout // 8, cin, 3, 3)) < 0.25
        return w * np.repeat(keep, 8, axis=0)

    w1, w2 = sparse_w(32, 3), sparse_w(128, 32)
    g = oh.make_graph(
        [oh.make_node("Conv", ["x", "w1"], ["h"], name="small", pads=[1, 1, 1, 1]),
         oh.make_node("Relu", ["h"], ["r"]),
         oh.make_node("Conv", ["r", "w2", "b2"], ["y"], name="large", strides=[2, 2])],
        "convs",
        [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 20, 20])],
        [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 128, 9, 9])],
        [nh.from_array(w1, "w1"), nh.from_array(w2, "w2"),
         nh.from_array(rng.standard_normal(128).astype(np.float32), "b2")],
    )
    model = oh.make_model(g, opset_imports=[oh.make_opsetid("", 13)])
    model.ir_version = 8
    src = tmp_path / "convs.onnx"
    onnx.save(model, src)
    x = rng.standard_normal((1, 3, 20, 20)).astype(np.float32)
    want = _run_ort(model, x)
    for density, small in ((None, "dense"), (1.0, "sparse")):
        out = tmp_path / f"convs_{small}.mdl"
        r = mdeploy.convert(src, out, sparse_density=density)
        layers = {l["name"]: l for l in r.pruning}
        assert layers["large"]["storage"] == "sparse" and layers["small"]["storage"] == small
        np.testing.assert_allclose(mdeploy.Model(out).run(x)[0], want, rtol=1e-4, atol=1e-4)


# ---- mdeploy-convert --eval X Y and --prune-sensitivity ------------------------------------

DIGITS = MODELS.parent.parent / "examples" / "digits"


def _cli():
    import os
    from pathlib import Path

    lib = os.environ.get("MDEPLOY_LIB")
    build = Path(lib).parent if lib else MODELS.parent.parent / "build" / "release"
    path = build / "bin" / "mdeploy-convert"
    if not path.exists():
        pytest.skip(f"{path} not built")
    return str(path)


def _top1(scores, labels):
    return 100.0 * float(np.mean(np.argmax(scores.reshape(len(labels), -1), axis=1) == labels))


def _digits_layers(model):
    """The prunable weights of the digits CNN as W [N, K] views: (node name, initializer, to_nk,
    from_nk).  Conv [Cout, Cin, KH, KW] is the converter's [Cout, KH*KW*Cin]; Gemm (transB) is
    [N, K] as it is (the converter may reorder K, which leaves the 8x1 blocks' scores alone)."""
    inits = {i.name: i for i in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type == "Conv":
            w = nh.to_array(inits[n.input[1]])
            co, ci, kh, kw = w.shape
            out.append((n.name, n.input[1], w.transpose(0, 2, 3, 1).reshape(co, -1).copy(),
                        lambda a, s=(co, kh, kw, ci): a.reshape(s).transpose(0, 3, 1, 2)))
        elif n.op_type == "Gemm":
            out.append((n.name, n.input[1], nh.to_array(inits[n.input[1]]).copy(), lambda a: a))
    return out


def _with_weight(model, name, array):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for i in m.graph.initializer:
        if i.name == name:
            i.CopyFrom(nh.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
    return m


def test_eval_and_sensitivity_against_ort(tmp_path):
    """--eval: the float source's top-1 is ONNX Runtime's on the same rows, the converted model's
    is the Python bindings' run of the written file; --prune-sensitivity: each entry is ONNX
    Runtime's top-1 with that layer alone pruned by the NumPy oracle above."""
    import json
    import subprocess

    x = np.load(DIGITS / "images.npy")
    y = np.load(DIGITS / "labels.npy")
    model = onnx.load(str(DIGITS / "digits_cnn.onnx"))
    out, rep = tmp_path / "d.mdl", tmp_path / "d.json"
    subprocess.run([_cli(), str(DIGITS / "digits_cnn.onnx"), "-o", str(out), "-q", "--prune", "magnitude:0.6",
                    "--quantize", "int8", "--calibration", str(DIGITS / "calibration.npy"),
                    "--eval", str(DIGITS / "images.npy"), str(DIGITS / "labels.npy"), "--prune-sensitivity",
                    "--report", str(rep)], check=True)
    ev = json.loads(rep.read_text())["eval"]
    assert ev["rows"] == len(y)
    assert ev["float_accuracy"] == pytest.approx(_top1(_run_ort(model, x), y))
    got = mdeploy.Model(str(out)).run(x)
    got = got[0] if isinstance(got, (list, tuple)) else got
    assert ev["accuracy"] == pytest.approx(_top1(np.asarray(got), y))
    layers = _digits_layers(model)
    assert [s["layer"] for s in ev["sensitivity"]] == [l[0] for l in layers]
    for entry, (name, init, w_nk, back) in zip(ev["sensitivity"], layers):
        assert [s for s, _ in entry["sparsity"]] == [0.5, 0.7, 0.8, 0.9, 0.95]
        for s, acc in entry["sparsity"]:
            w = w_nk.copy()
            _prune_global([w], s)
            want = _top1(_run_ort(_with_weight(model, init, back(w)), x), y)
            assert acc == pytest.approx(want), (name, s)


def test_sensitivity_needs_eval(tmp_path):
    import subprocess

    out = tmp_path / "d.mdl"
    r = subprocess.run([_cli(), str(DIGITS / "digits_cnn.onnx"), "-o", str(out), "--prune-sensitivity"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "--prune-sensitivity needs --eval" in r.stderr
    assert not out.exists()


# ---- --prune channels:S (structured) -------------------------------------------------------


def test_channels_against_ort(tmp_path):
    """--prune channels:0.3 on the digits CNN: each 3x3 convolution loses floor(0.3 C) filters of
    smallest L1 norm (chosen here in NumPy from the ONNX weights), the next layer the matching
    inputs; the model equals ONNX Runtime's run of the original with those filters and their
    biases zeroed.  The classifier (its outputs are the model's) keeps its 10 units."""
    import subprocess

    model = onnx.load(str(DIGITS / "digits_cnn.onnx"))
    inits = {i.name: i for i in model.graph.initializer}
    zeroed = onnx.ModelProto()
    zeroed.CopyFrom(model)
    zinits = {i.name: i for i in zeroed.graph.initializer}
    kept = []
    for n in model.graph.node:
        if n.op_type != "Conv":
            continue
        w = nh.to_array(inits[n.input[1]]).copy()
        b = nh.to_array(inits[n.input[2]]).copy()
        l1 = np.abs(w.astype(np.float64)).reshape(w.shape[0], -1).sum(1)
        drop = np.argsort(l1, kind="stable")[: int(np.floor(0.3 * w.shape[0]))]
        w[drop] = 0
        b[drop] = 0
        zinits[n.input[1]].CopyFrom(nh.from_array(w, n.input[1]))
        zinits[n.input[2]].CopyFrom(nh.from_array(b, n.input[2]))
        kept.append(w.shape[0] - len(drop))
    out = tmp_path / "c.mdl"
    subprocess.run([_cli(), str(DIGITS / "digits_cnn.onnx"), "-o", str(out), "-q", "--prune", "channels:0.3"],
                   check=True)
    x = np.load(str(MODELS.parent / "models" / "quant" / "digits_test.images.npy"))[:64]
    want = _run_ort(zeroed, x)
    m = mdeploy.Model(str(out))
    got = np.asarray(m.run(x))
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-5)
    # smaller: the weights of 16 -> 12 and 32 -> 23 filters (and 92 classifier inputs)
    assert kept == [12, 23]
    assert m.weight_bytes < 0.75 * 4 * sum(nh.to_array(i).size for i in model.graph.initializer)


def _residual_onnx(path):
    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    nodes = [oh.make_node("Conv", ["x", "w1"], ["h"], name="c1", pads=[1, 1, 1, 1]),
             oh.make_node("Relu", ["h"], ["r"], name="relu"),
             oh.make_node("Conv", ["r", "w2"], ["h2"], name="c2", pads=[1, 1, 1, 1]),
             oh.make_node("Add", ["h2", "r"], ["y"], name="residual")]
    g = oh.make_graph(nodes, "res", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8, 6, 6])],
                      [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8, 6, 6])],
                      [nh.from_array(w1, "w1"), nh.from_array(w2, "w2")])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))


@pytest.mark.parametrize("spec, msg", [("channels:0.3", "residual"), ("channels:1", "expected"),
                                       ("channels:-0.1", "expected"), ("channels:x", "expected")])
def test_channels_refused(tmp_path, spec, msg):
    """A residual Add on a layer's channels cannot be shrunk: refused naming the layer and the
    Add, no output file; shares outside [0, 1) are refused by the CLI."""
    import subprocess

    src, out = tmp_path / "res.onnx", tmp_path / "res.mdl"
    _residual_onnx(src)
    r = subprocess.run([_cli(), str(src), "-o", str(out), "--prune", spec], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout
    assert msg in r.stderr
    if msg == "residual":
        assert "Conv2D 'c1'" in r.stderr and "Add 'residual'" in r.stderr
    assert not out.exists()


def test_channels_mlp_against_ort(tmp_path):
    """The same on the MLP: its two hidden FullyConnected layers lose floor(0.3 x 64) = 19 units
    of smallest L1 norm (rows of W [N, K]), the next layer the matching columns; the last layer
    (through Sigmoid to the output) is left alone."""
    import subprocess

    model = onnx.load(str(MODELS / "mlp.onnx"))
    zeroed = onnx.ModelProto()
    zeroed.CopyFrom(model)
    zinits = {i.name: i for i in zeroed.graph.initializer}
    for wname, bname in (("net.0.weight", "net.0.bias"), ("net.2.weight", "net.2.bias")):
        w, b = nh.to_array(zinits[wname]).copy(), nh.to_array(zinits[bname]).copy()
        drop = np.argsort(np.abs(w.astype(np.float64)).sum(1), kind="stable")[:19]
        w[drop], b[drop] = 0, 0
        zinits[wname].CopyFrom(nh.from_array(w, wname))
        zinits[bname].CopyFrom(nh.from_array(b, bname))
    out = tmp_path / "m.mdl"
    subprocess.run([_cli(), str(MODELS / "mlp.onnx"), "-o", str(out), "-q", "--prune", "channels:0.3"], check=True)
    x = np.random.default_rng(5).standard_normal((16, 784)).astype(np.float32)
    m = mdeploy.Model(str(out))
    np.testing.assert_allclose(np.asarray(m.run(x)).reshape(16, -1), _run_ort(zeroed, x), rtol=1e-4, atol=1e-6)
    assert m.weight_bytes == 4 * (45 * 784 + 45 + 45 * 45 + 45 + 45 + 1)
