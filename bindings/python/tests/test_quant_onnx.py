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
ort = pytest.importorskip("onnxruntime")


def _fixtures():
    if not MANIFEST.is_file():
        return []
    return json.loads(MANIFEST.read_text())["fixtures"]


FIXTURES = _fixtures()


def _needs_kernels(e: mdeploy.Error) -> bool:
    return "no kernel" in str(e)


@pytest.mark.parametrize("fx", FIXTURES, ids=[f["name"] for f in FIXTURES])
def test_fresh_inputs_match_onnxruntime(tmp_path, fx):
    out = tmp_path / (fx["name"] + ".mdl")
    shapes = fx["input_shapes"] or None
    try:
        mdeploy.convert(REPO / fx["onnx"], out, input_shapes=shapes)
    except mdeploy.Error as e:
        if _needs_kernels(e):
            pytest.skip(f"runtime kernels missing: {e}")
        raise
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
    if _needs_kernels(ei.value):
        pytest.skip("runtime kernels missing")
    assert r["message"] in str(ei.value)
    assert not out.exists()
