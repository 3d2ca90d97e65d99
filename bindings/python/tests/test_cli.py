"""python -m mdeploy run|inspect|convert mirrors the C tools."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mdeploy import _lib
from mdeploy.__main__ import main
from conftest import REPO, mlp_reference


def _c_tool(name: str) -> Path:
    return Path(_lib.library_path).resolve().parent / "bin" / name


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "mdeploy", "--version"], capture_output=True, text=True, env=os.environ)
    assert r.returncode == 0 and "mdeploy 0.1.0" in r.stdout


def test_inspect(mlp_path, capsys):
    assert main(["inspect", str(mlp_path)]) == 0
    text = capsys.readouterr().out
    assert "name         test-mlp" in text and "meta         author = pytest" in text
    assert "input  0     x float32 [2,4]" in text and "output 0     probs float32 [2,3]" in text
    assert main(["inspect", str(mlp_path), "--json"]) == 0
    o = json.loads(capsys.readouterr().out)
    assert o["name"] == "test-mlp" and o["metadata"] == {"author": "pytest"}
    assert [op["op"] for op in o["operators"]] == ["FullyConnected", "Relu", "FullyConnected", "Softmax"]
    assert o["inputs"][0] == {"name": "x", "dtype": "float32", "shape": [2, 4], "bytes": 32}


def test_inspect_same_as_c_tool(mlp_path, capsys):
    tool = _c_tool("mdeploy-inspect")
    if not tool.is_file():
        pytest.skip(f"{tool} not built")
    for extra in ([], ["--json"]):
        c = subprocess.run([str(tool), str(mlp_path), *extra], capture_output=True, text=True, check=True).stdout
        assert main(["inspect", str(mlp_path), *extra]) == 0
        py = capsys.readouterr().out
        if extra:
            assert json.loads(py) == json.loads(c)
        else:
            assert py == c


def test_run(mlp_path, tmp_path, capsys):
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    assert main(["run", str(mlp_path), "-i", str(tmp_path / "x.npy"), "-o", str(out)]) == 0
    assert "output 0 'probs': float32 [2,3] -> " in capsys.readouterr().out
    np.testing.assert_allclose(np.load(out), mlp_reference(x), rtol=1e-5, atol=1e-6)
    assert main(["run", str(mlp_path), "-i", str(tmp_path / "x.npy"), "--json"]) == 0
    o = json.loads(capsys.readouterr().out)
    assert o["outputs"] == [{"name": "probs", "dtype": "float32", "shape": [2, 3]}] and o["run_ms"] >= 0


def test_run_errors(mlp_path, tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.ones((2, 4)))
    assert main(["run", str(mlp_path), "-i", str(tmp_path / "bad.npy")]) == 1
    assert "float32" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "nope.mdl"), "-i", str(tmp_path / "bad.npy")]) == 1
    assert "nope.mdl" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", str(mlp_path)])  # no -i for the model's input


def test_convert(tmp_path, capsys):
    out = tmp_path / "m.mdl"
    rc = main(["convert", str(REPO / "tests/models/mlp.onnx"), "-o", str(out), "--input-shape", "x=8x784", "--model-version", "4.2"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "(opset 13)" in text and "ONNX nodes ->" in text
    assert main(["inspect", str(out), "--json"]) == 0
    o = json.loads(capsys.readouterr().out)
    assert o["version"] == "4.2" and o["inputs"][0]["shape"] == [8, 784]
    assert main(["convert", str(tmp_path / "missing.onnx"), "-o", str(out), "-q"]) == 1
    assert "missing.onnx" in capsys.readouterr().err


def test_inspect_onnx_same_as_c_tool(tmp_path, capsys):
    """mdeploy.inspect_onnx / python -m mdeploy inspect MODEL.onnx: the C tool's output."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    V = helper.make_tensor_value_info
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu1"), helper.make_node("Shape", ["r"], ["s"]),
             helper.make_node("Softsign", ["r"], ["y"], name="ss")]
    g = helper.make_graph(nodes, "net", [V("x", TensorProto.FLOAT, ["batch", 3])],
                          [V("y", TensorProto.FLOAT, None), V("s", TensorProto.INT64, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="gen")
    helper.set_model_props(m, {"author": "me"})
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    from mdeploy import inspect_onnx

    o = inspect_onnx(path)
    assert o["inputs"] == [{"name": "x", "type": "float", "shape": ["batch", 3]}]
    assert o["outputs"][0]["shape"] is None and o["metadata"] == {"author": "me"}
    assert [(op["op_type"], op["support"]) for op in o["operators"]] == [
        ("Relu", "supported"), ("Shape", "folded only"), ("Softsign", "UNSUPPORTED")]
    assert o["operators"][1]["first_node"] == "" and o["operators"][1]["first_index"] == 1
    tool = _c_tool("mdeploy-inspect")
    if not tool.is_file():
        pytest.skip(f"{tool} not built")
    for extra in ([], ["--json"]):
        c = subprocess.run([str(tool), str(path), *extra], capture_output=True, text=True, check=True).stdout
        assert main(["inspect", str(path), *extra]) == 0
        py = capsys.readouterr().out
        if extra:
            assert json.loads(py) == json.loads(c)
        else:
            assert py == c


def test_verify_same_as_c_tool(tmp_path, capsys):
    """inspect --verify: the same lines and exit status as mdeploy-inspect --verify, on a signed,
    counted, encrypted model with self-test vectors, with and without the keys it needs."""
    bin_dir = _c_tool("mdeploy-inspect").parent
    t = lambda name: str(bin_dir / name)  # noqa: E731
    subprocess.run([t("mdeploy-keygen"), "--sign", str(tmp_path / "s")], check=True, capture_output=True)
    subprocess.run([t("mdeploy-keygen"), "--sign", str(tmp_path / "other")], check=True, capture_output=True)
    subprocess.run([t("mdeploy-keygen"), "--encryption", str(tmp_path / "e.key")], check=True, capture_output=True)
    np.save(tmp_path / "x.npy", np.full((1, 784), 0.5, np.float32))
    plain, enc = tmp_path / "m.mdl", tmp_path / "m.enc.mdl"
    for out, extra in ((plain, []), (enc, ["--encrypt", str(tmp_path / "e.key")])):
        subprocess.run([t("mdeploy-convert"), str(REPO / "tests/models/mlp.onnx"), "-o", str(out), "-q",
                        "--security-counter", "7", "--sign", str(tmp_path / "s.key"),
                        "--selftest-from", f"x={tmp_path / 'x.npy'}", *extra], check=True)
    pub, other = str(tmp_path / "s.pub"), str(tmp_path / "other.pub")
    cases = [
        [str(plain)], [str(plain), "--public-key", pub, "--min-counter", "7"], [str(plain), "--public-key", other],
        [str(plain), "--min-counter", "8"], [str(enc), "--public-key", pub],
        [str(enc), "--public-key", pub, "--decryption-key", str(tmp_path / "e.key")],
    ]
    codes = []
    for args in cases:
        c = subprocess.run([t("mdeploy-inspect"), "--verify", *args], capture_output=True, text=True)
        rc = main(["inspect", "--verify", *args])
        assert capsys.readouterr().out == c.stdout and rc == c.returncode, args
        codes.append(rc)
    assert codes == [0, 0, 1, 1, 0, 0]
    assert "selftest:  passed: 1 cases" in c.stdout and "signature: ok" in c.stdout


def test_convert_eval_lines_same_as_c_tool(tmp_path, capsys):
    """convert --eval X Y --prune-sensitivity: the lines mdeploy-convert prints (top-1 of the float
    source and of the pruned model, and the per-layer sensitivity table), both measured by the
    runtime on the digits CNN; --eval X alone without --quantize is refused as by the C tool."""
    d = REPO / "examples" / "digits"
    args = [str(d / "digits_cnn.onnx"), "--prune", "magnitude:0.5", "--eval", str(d / "images.npy"),
            str(d / "labels.npy"), "--prune-sensitivity"]
    c = subprocess.run([str(_c_tool("mdeploy-convert")), *args, "-o", str(tmp_path / "c.mdl")], capture_output=True,
                       text=True, check=True).stdout
    assert main(["convert", *args, "-o", str(tmp_path / "p.mdl")]) == 0
    py = capsys.readouterr().out
    tail = lambda text: text[text.index("  eval on "):]  # noqa: E731
    assert tail(py) == tail(c) and "prune sensitivity" in tail(c) and tail(c).count("%") >= 20
    with pytest.raises(SystemExit, match="need --quantize int8"):
        main(["convert", str(d / "digits_cnn.onnx"), "-o", str(tmp_path / "q.mdl"), "--eval", str(d / "images.npy")])
    with pytest.raises(SystemExit, match="--prune-sensitivity needs --eval"):
        main(["convert", str(d / "digits_cnn.onnx"), "-o", str(tmp_path / "q.mdl"), "--prune-sensitivity"])
