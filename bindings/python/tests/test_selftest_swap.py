"""Self-test vectors from Python (convert(selftest_inputs=..., selftest_expected="onnxruntime"),
Model.selftest()) and the hot-swap wrapper (mdeploy.Swap): oracles are ONNX Runtime's outputs on
each source model, computed here independently of mdeploy."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import mdeploy

MODELS = Path(__file__).resolve().parents[3] / "tests" / "models"
MLP = MODELS / "mlp.onnx"


def _ort(path, feeds):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_selftest_onnxruntime_oracle(tmp_path):
    x = np.random.RandomState(1).randn(3, 2, 784).astype(np.float32)  # 3 cases of batch 2
    out = tmp_path / "mlp.mdl"
    mdeploy.convert(MLP, out, selftest_inputs={"x": x}, selftest_expected="onnxruntime")
    m = mdeploy.Model(out)
    assert m.selftest_count == 3
    r = m.selftest()
    assert r["cases"] == r["passed"] == 3 and r["elements"] == 6
    assert r["oracle"].startswith("onnxruntime ")
    assert r["max_abs_error"] < 1e-4

    # a bit flip in the last bias: the content digest refuses the file; loaded without the digest
    # check (a trusted in-place image), the self-test still refuses it
    data = bytearray(out.read_bytes())
    bias = float(onnx.numpy_helper.to_array(onnx.load(str(MLP)).graph.initializer[-1]).reshape(-1)[0])
    at = bytes(data).find(np.float32(bias).tobytes())
    assert at > 0
    data[at + 3] ^= 0x40
    with pytest.raises(mdeploy.Error) as e:
        mdeploy.Model(bytes(data))
    assert "content digest mismatch" in str(e.value)
    bad = mdeploy.Model(bytes(data), verify_digest=False)
    with pytest.raises(mdeploy.Error) as e:
        bad.selftest()
    assert e.value.status == mdeploy.Status.CORRUPT_MODEL
    assert "self-test case 0: output 0 'y'" in str(e.value)
    assert e.value.selftest["failed_case"] == 0


def test_selftest_converter_oracle_and_refusals(tmp_path):
    u = np.load(MODELS / "recommender.in0.npy")
    i = np.load(MODELS / "recommender.in1.npy")
    out = tmp_path / "rec.mdl"
    mdeploy.convert(MODELS / "recommender.onnx", out, selftest_inputs=[u, i], selftest_tolerance=(1e-5, 0))
    r = mdeploy.Model(out).selftest()
    assert r["oracle"] == "mdeploy-convert" and r["elements"] == 64 and abs(r["atol"] - 1e-5) < 1e-9
    # outputs that disagree with the converted model: the conversion fails, nothing is written
    x = np.load(MODELS / "mlp.in0.npy")
    y = np.load(MODELS / "mlp.out0.npy") + 0.01
    never = tmp_path / "never.mdl"
    with pytest.raises(mdeploy.Error, match="fails its self-test vectors: self-test case 0: output 0 'y'"):
        mdeploy.convert(MLP, never, selftest_inputs=x, selftest_expected=[y], selftest_oracle="shifted")
    assert not never.exists()
    assert mdeploy.Model(MODELS / ".." / ".." / "tests" / "models" / "old-plan-mlp.mdl").selftest()["cases"] == 0


def _mlp_variant(tmp_path, shift):
    """mlp.onnx with its last bias moved by `shift`, converted, and ORT's function for it."""
    m = onnx.load(str(MLP))
    b = m.graph.initializer[-1]
    arr = onnx.numpy_helper.to_array(b) + np.float32(shift)
    b.CopyFrom(onnx.numpy_helper.from_array(arr.astype(np.float32), b.name))
    src = tmp_path / f"mlp{shift}.onnx"
    onnx.save(m, str(src))
    dst = tmp_path / f"mlp{shift}.mdl"
    x = np.load(MODELS / "mlp.in0.npy")
    mdeploy.convert(src, dst, selftest_inputs=x, selftest_expected="onnxruntime")
    return dst, src


def test_swap_under_load(tmp_path):
    a, a_src = _mlp_variant(tmp_path, 0.0)
    b, b_src = _mlp_variant(tmp_path, -3.0)
    xs = (np.random.RandomState(2).randn(8, 1, 784) * 0.05).astype(np.float32)
    want = {name: [_ort(src, {"x": x})[0] for x in xs] for name, src in (("A", a_src), ("B", b_src))}
    assert all(abs(ya.item() - yb.item()) > 1e-2 for ya, yb in zip(want["A"], want["B"]))
    wide = tmp_path / "rec.mdl"
    mdeploy.convert(MODELS / "recommender.onnx", wide, selftest_inputs=[np.load(MODELS / "recommender.in0.npy"),
                                                                   np.load(MODELS / "recommender.in1.npy")])
    corrupt = bytearray(a.read_bytes())
    corrupt[0] ^= 0x80

    sw = mdeploy.Swap(a, require_selftest=True)
    stop = threading.Event()
    errors, seen = [], {"A": 0, "B": 0}

    def reader(k):
        n = 0
        while not stop.is_set():
            j = (k + n) % len(xs)
            try:
                (y,) = sw.run(xs[j])
            except Exception as e:  # pragma: no cover - reported below
                errors.append(repr(e))
                return
            who = [w for w in ("A", "B") if np.allclose(y, want[w][j], rtol=1e-4, atol=1e-5)]
            if len(who) != 1:
                errors.append(f"output {y.ravel()[:3]} is neither model's")
                return
            seen[who[0]] += 1
            n += 1

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    active = a
    try:
        for n in range(60):
            step = n % 4
            if step == 0:
                active = b if active == a else a
                sw.load(active)
                assert sw.info["source"] == str(active)
                n0 = seen["A"] + seen["B"]  # let the readers run on it (they compete for the GIL)
                while seen["A"] + seen["B"] < n0 + 8 and not errors:
                    time.sleep(0.0005)
            elif step == 1:
                with pytest.raises(mdeploy.Error, match="candidate refused: it has 2 inputs"):
                    sw.load(wide)
            elif step == 2:
                with pytest.raises(mdeploy.Error, match="candidate refused: "):
                    sw.load(bytes(corrupt))
            else:
                sw.rollback()
                active = b if active == a else a
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert seen["A"] > 0 and seen["B"] > 0
    info = sw.info
    assert info["accepted"] == 15 and info["refused"] == 30 and info["rollbacks"] == 15
    assert info["live_models"] == 2
    sw.close()
    with pytest.raises(mdeploy.Error, match="closed"):
        sw.run(xs[0])
