"""Post-training quantization from Python (issue #11): mdeploy.convert(quantize="int8", ...).
Oracles: the digits labels, ONNX Runtime's float model, and the same conversion through a file
path (the in-memory forms must give byte-identical files)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import mdeploy
from conftest import REPO

DIGITS = REPO / "examples" / "digits" / "digits_cnn.onnx"
PTQ = REPO / "tests" / "models" / "ptq"
QUANT = REPO / "tests" / "models" / "quant"


def _accuracy(path, x, y):
    m = mdeploy.Model(path)
    ok = 0
    for i in range(len(x)):
        ok += int(np.argmax(m.run(x[i : i + 1])[0]) == y[i])
    return 100.0 * ok / len(x)


def test_arrays_iterables_and_paths_agree(tmp_path):
    x = np.load(REPO / "examples" / "digits" / "calibration.npy")
    ref = tmp_path / "path.mdl"
    r = mdeploy.convert(DIGITS, ref, quantize="int8", calibration=REPO / "examples" / "digits" / "calibration.npy")
    assert r.quant["calibration_rows"] == 200 and r.quant["method"] == "minmax"
    for name, calib in [
        ("array", x),
        ("dict", {"image": x}),
        ("batches", [x[:33], x[33:150], x[150:]]),
        ("generator", ({"image": x[i : i + 50]} for i in range(0, 200, 50))),
        ("float64", x.astype(np.float64)),  # saved as float32
    ]:
        out = tmp_path / f"{name}.mdl"
        mdeploy.convert(DIGITS, out, quantize="int8", calibration=calib)
        assert out.read_bytes() == ref.read_bytes(), name


def test_report_dict_and_budget(tmp_path):
    xe, ye = np.load(QUANT / "digits_test.images.npy"), np.load(QUANT / "digits_test.labels.npy")
    out = tmp_path / "q.mdl"
    r = mdeploy.convert(DIGITS, out, quantize="int8", calibration=np.load(REPO / "examples" / "digits" / "calibration.npy"),
                        eval=(xe, ye), max_accuracy_drop=0.5)
    q = r.quant
    acc = _accuracy(out, xe, ye)
    assert abs(q["int8_accuracy"] - acc) < 1e-3
    assert q["float_accuracy"] - acc <= 0.5
    assert q["budget"]["met"] and q["budget"]["kind"] == "accuracy-drop"
    assert q["eval_rows"] == 360 and not q["eval_is_calibration"]
    assert q["int8_bytes"] < q["float_bytes"] / 2
    assert {l["precision"] for l in q["layers"] if l["op"] in ("Conv2D", "FullyConnected")} == {"int8"}
    assert all(l["sqnr_db"] is None or l["sqnr_db"] == "inf" or l["sqnr_db"] > 25 for l in q["layers"])


def test_outlier_mixed_precision(tmp_path):
    x, y = np.load(PTQ / "outlier_eval.x.npy"), np.load(PTQ / "outlier_eval.y.npy")
    out = tmp_path / "o.mdl"
    r = mdeploy.convert(PTQ / "outlier.onnx", out, quantize="int8", calibration=np.load(PTQ / "outlier_calib.npy"),
                        eval=(x, y), max_accuracy_drop=1.0, calibration_method="percentile", percentile=99.99)
    kept = r.quant["budget"]["kept_float"]
    assert "fc1" in kept and "fc2" in kept
    assert _accuracy(out, x, y) >= 99.0


def test_bad_data_raises_and_leaves_no_file(tmp_path):
    x = np.load(REPO / "examples" / "digits" / "calibration.npy").copy()
    x[5, 0, 3, 3] = np.nan
    out = tmp_path / "bad.mdl"
    with pytest.raises(mdeploy.Error) as ei:
        mdeploy.convert(DIGITS, out, quantize="int8", calibration=x)
    assert "NaN" in str(ei.value) and "'image'" in str(ei.value)
    assert not out.exists()
    with pytest.raises(mdeploy.Error) as ei:
        mdeploy.convert(DIGITS, out, quantize="int8", calibration={"images": x[:3], "extra": x[:3]})
    assert "names no model input" in str(ei.value)
    with pytest.raises(mdeploy.Error) as ei:
        mdeploy.convert(DIGITS, out, quantize="int8", calibration=[])
    assert "no .npy or .npz" in str(ei.value)
    with pytest.raises(mdeploy.Error):
        mdeploy.convert(DIGITS, out, calibration=x)  # without quantize
    with pytest.raises(mdeploy.Error):
        mdeploy.convert(DIGITS, out, quantize="int4", calibration=x)
    assert not out.exists()


_RUN = """
import sys, numpy as np, mdeploy
m = mdeploy.Model(sys.argv[1]); x = np.load(sys.argv[2])
np.save(sys.argv[3], np.concatenate([m.run(x[i:i+1])[0] for i in range(len(x))]))
"""


def test_simd_and_reference_kernels_identical(tmp_path):
    """The quantized digits model gives bit-identical outputs at every CPU level."""
    out = tmp_path / "q.mdl"
    mdeploy.convert(DIGITS, out, quantize="int8", calibration=REPO / "examples" / "digits" / "calibration.npy")
    results = []
    for level in ("0", "1", "2"):
        env = dict(os.environ, MDL_CPU_LEVEL=level)
        dst = tmp_path / f"y{level}.npy"
        subprocess.run([sys.executable, "-c", _RUN, str(out), str(QUANT / "digits_test.images.npy"), str(dst)],
                       env=env, check=True)
        results.append(np.load(dst))
    assert np.array_equal(results[0], results[1]) and np.array_equal(results[0], results[2])


def test_module_cli(tmp_path, capsys):
    from mdeploy.__main__ import main

    out, rep = tmp_path / "q.mdl", tmp_path / "r.json"
    rc = main(["convert", str(DIGITS), "-o", str(out), "--quantize", "int8", "--calibration",
               str(REPO / "examples" / "digits" / "calibration.npy"), "--calibration-method", "percentile",
               "--eval", str(QUANT / "digits_test.images.npy"), str(QUANT / "digits_test.labels.npy"),
               "--report", str(rep)])
    assert rc == 0
    import json

    q = json.loads(rep.read_text())
    assert q["method"] == "percentile" and q["eval_rows"] == 360
    assert "int8" in capsys.readouterr().out


def test_dynamic_batch_int8_model(tmp_path):
    """The digits export has a dynamic batch: the int8 model keeps it, and a batch of all
    held-back images gives exactly the rows one image at a time gives (int8 rows are computed
    independently), with the same accuracy as the labels measure row by row."""
    out = tmp_path / "d8.mdl"
    mdeploy.convert(DIGITS, out, quantize="int8", calibration=REPO / "examples" / "digits" / "calibration.npy")
    m = mdeploy.Model(out)
    assert isinstance(m.inputs[0].shape[0], str)  # symbolic, e.g. 'N'
    x = np.load(REPO / "examples" / "digits" / "images.npy")
    y = np.load(REPO / "examples" / "digits" / "labels.npy")
    whole = m.run(x)[0]
    rows = np.concatenate([m.run(x[i : i + 1])[0] for i in range(len(x))])
    assert whole.shape == rows.shape
    np.testing.assert_array_equal(whole, rows)
    assert 100.0 * np.mean(np.argmax(whole, 1) == y) == _accuracy(out, x, y)
