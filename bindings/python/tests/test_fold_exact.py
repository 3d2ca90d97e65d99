"""Constant folding computes what ONNX defines or refuses: the four silent wrong answers found by
running ONNX's backend node tests with their operands made constants (issue 13), each compared
with ONNX's reference implementation (onnx.reference.ReferenceEvaluator)."""

from __future__ import annotations

import numpy as np
import pytest

import mdeploy
from mdeploy import Status

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402


def _model(nodes, consts, outputs, opset=13, inputs=None):
    """A model computing outputs from constants only, plus one unused run-time input (a model
    needs one); or from the given run-time inputs."""
    ins = inputs or [helper.make_tensor_value_info("unused", TensorProto.FLOAT, [1])]
    outs = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()]
    g = helper.make_graph(nodes, "g", ins, outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _check(tmp_path, m, feeds=None):
    """Converts and runs m, and compares with the reference implementation exactly (these
    results are exact in float32 and in integers)."""
    feeds = feeds or {"unused": np.zeros([1], np.float32)}
    expected = ReferenceEvaluator(m).run(None, feeds)
    src, dst = tmp_path / "m.onnx", tmp_path / "m.mdl"
    onnx.save(m, str(src))
    mdeploy.convert(src, dst)
    with mdeploy.Model(dst) as mm:
        got = mm.run({k: v for k, v in feeds.items() if k in mm.input_names})
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        np.testing.assert_array_equal(g, e.astype(g.dtype))


def _refused(tmp_path, m, *words):
    src, dst = tmp_path / "refused.onnx", tmp_path / "refused.mdl"
    onnx.save(m, str(src))
    with pytest.raises(mdeploy.Error) as e:
        mdeploy.convert(src, dst)
    assert e.value.status == Status.UNSUPPORTED
    for w in words:
        assert w in str(e.value)
    assert not dst.exists()


@pytest.mark.parametrize("op", ["Max", "Min"])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_max_min_every_input(tmp_path, op, n, dtype):
    # was: only the first two inputs were used (and one input was refused)
    rng = np.random.default_rng(n)
    shapes = [[2, 3], [3], [1, 3], [2, 1]][:n]
    # the last input, 100 times larger, decides the result wherever its sign points its way
    consts = {f"x{k}": (rng.standard_normal(s) * (1000 if k == n - 1 > 1 else 10)).astype(dtype)
              for k, s in enumerate(shapes)}
    _check(tmp_path, _model([helper.make_node(op, list(consts), ["y"])], consts, ["y"]))


@pytest.mark.parametrize("fmod", [0, 1])
def test_integer_mod_fmod(tmp_path, fmod):
    # was: fmod=1 on integers took the sign of the divisor (fmod=0's rule)
    a = np.array([-4, 7, 5, 4, -7, 8], np.int64)
    b = np.array([2, -3, 8, -2, 3, 5], np.int64)
    m = _model([helper.make_node("Mod", ["a", "b"], ["y"], fmod=fmod)], {"a": a, "b": b}, ["y"])
    _check(tmp_path, m)


def test_float_mod(tmp_path):
    a = np.array([-4.5, 7.25, 5.0, -7.0], np.float32)
    b = np.array([2.0, -3.0, 8.0, 3.0], np.float32)
    _check(tmp_path, _model([helper.make_node("Mod", ["a", "b"], ["y"], fmod=1)], {"a": a, "b": b}, ["y"]))
    # fmod=0 is not defined for floats
    _refused(tmp_path, _model([helper.make_node("Mod", ["a", "b"], ["y"])], {"a": a, "b": b}, ["y"]), "fmod")


def test_integer_division_by_zero_refused(tmp_path):
    a, b = np.array([3, 4], np.int64), np.array([1, 0], np.int64)
    for op in ("Div", "Mod"):
        _refused(tmp_path, _model([helper.make_node(op, ["a", "b"], ["y"])], {"a": a, "b": b}, ["y"]), "zero")


def _dropout(ratio, training):
    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 5
    consts = {"x": x, "r": np.array(ratio, np.float32), "t": np.array(training, bool)}
    return _model([helper.make_node("Dropout", ["x", "r", "t"], ["y"])], consts, ["y"])


def test_dropout_training_mode(tmp_path):
    # was: training_mode=1 returned the input unchanged; it drops elements at random
    _refused(tmp_path, _dropout(0.5, True), "training_mode", "random")
    # inference, or training with ratio 0: the identity, as ONNX defines it
    _check(tmp_path, _dropout(0.5, False))
    _check(tmp_path, _dropout(0.0, True))


def test_zero_sized_input_dim(tmp_path):
    # was: a dim declared 0 became a dynamic dim whose sessions started at 1
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 0, 4])
    m = _model([helper.make_node("Relu", ["x"], ["y"])], {}, ["y"], inputs=[x])
    _refused(tmp_path, m, "'x'", "0")


def test_metadata(tmp_path):
    """ONNX metadata_props are carried over; metadata= adds keys and replaces a shared one."""
    m = _model([helper.make_node("Relu", ["x"], ["y"])], {}, ["y"],
               inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])])
    helper.set_model_props(m, {"author": "me", "license": "MIT"})
    src, dst = tmp_path / "m.onnx", tmp_path / "m.mdl"
    onnx.save(m, str(src))
    mdeploy.convert(src, dst, metadata={"license": "Apache-2.0", "team": "vision"})
    with mdeploy.Model(dst) as mm:
        md = mm.metadata
    assert md["author"] == "me" and md["license"] == "Apache-2.0" and md["team"] == "vision"
    from mdeploy.__main__ import main

    dst2 = tmp_path / "cli.mdl"
    assert main(["convert", str(src), "-o", str(dst2), "--metadata", "team=audio", "-q"]) == 0
    with mdeploy.Model(dst2) as mm:
        assert mm.metadata["team"] == "audio" and mm.metadata["license"] == "MIT"
    with pytest.raises(TypeError):
        mdeploy.convert(src, dst, metadata={"k": 1})
