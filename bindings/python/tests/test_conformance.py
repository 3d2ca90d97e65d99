"""Every ONNX conformance fixture (tests/models/manifest.json), converted and run through
Python, matches the stored ONNX Runtime outputs; plus the options of mdeploy.convert."""

from __future__ import annotations

import numpy as np
import pytest

import mdeploy
from conftest import MANIFEST, REPO, fixture_io, manifest_fixtures, manifest_tolerance

FIXTURES = manifest_fixtures()


def test_manifest_present():
    assert MANIFEST.is_file(), f"{MANIFEST} missing: the conformance fixtures are not there"
    assert len(FIXTURES) >= 9


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f["name"] for f in FIXTURES])
def test_fixture_matches_onnxruntime(converted, fixture):
    assert MANIFEST.is_file(), f"{MANIFEST} missing"
    m = mdeploy.Model(converted(fixture["name"]))
    ins, refs = fixture_io(fixture)
    assert [t.name for t in m.inputs] == list(ins), "input names/order differ from the ONNX model"
    assert [t.name for t in m.outputs] == list(refs), "output names/order differ from the ONNX model"
    tol = manifest_tolerance()
    for run in (lambda: m.run(ins, as_dict=True), lambda: m.session().run(list(ins.values()), as_dict=True)):
        got = run()
        for name, ref in refs.items():
            assert got[name].shape == ref.shape and got[name].dtype == ref.dtype, name
            err = float(np.max(np.abs(got[name].astype(np.float64) - ref))) if ref.size else 0.0
            bound = tol * max(1.0, float(np.max(np.abs(ref))) if ref.size else 0.0)
            assert err <= bound, f"{fixture['name']}.{name}: max |mdeploy - ORT| = {err:.3g} > {bound:.3g}"


def test_convert_options_and_report(tmp_path):
    onnx = REPO / "tests/models/mlp.onnx"
    out = tmp_path / "mlp64.mdl"
    r = mdeploy.convert(onnx, out, input_shapes={"x": (64, 784)}, name="scorer", model_version="2.5", description="batch scorer")
    assert isinstance(r, mdeploy.ConvertReport)
    assert r.opset == 13 and r.onnx_nodes >= r.nodes_out > 0
    assert r.file_bytes == out.stat().st_size
    assert r.weight_bytes >= 4 * (784 * 64 + 64 * 64 + 64)
    m = mdeploy.Model(out)
    assert m.inputs[0].shape == (64, 784) and m.outputs[0].shape == (64, 1)
    assert (m.name, m.version, m.description) == ("scorer", "2.5", "batch scorer")
    assert m.metadata["version"] == "2.5"
    assert r.arena_bytes == m.activation_bytes
    # The CLI's text form, one string or a list, means the same.
    for shapes in ("x=64x784", ["x=64x784"]):
        out2 = tmp_path / "mlp64b.mdl"
        mdeploy.convert(onnx, out2, input_shapes=shapes)
        assert mdeploy.Model(out2).inputs[0].shape == (64, 784)
    # Dynamic dims not fixed stay dynamic (named by the ONNX dim_param, reported); ONNX metadata
    # is the default name.
    out3 = tmp_path / "mlp1.mdl"
    r3 = mdeploy.convert(str(onnx), str(out3))
    assert (r3.nsymbols, r3.dynamic) == (1, "x[0]=batch")
    m3 = mdeploy.Model(out3)
    assert m3.inputs[0].shape == ("batch", 784) and m3.name
    assert m3.inputs[0].dynamic and m3.dynamic and m3.symbols == {"batch": None}


def test_convert_then_score_batch(tmp_path):
    """The examples/python scenario: convert with a batch size, score a batch, compare to ORT."""
    out = tmp_path / "mlp_b64.mdl"
    mdeploy.convert(REPO / "tests/models/mlp.onnx", out, input_shapes={"x": [64, 784]})
    x = np.load(REPO / "tests/models/mlp_b64.in0.npy")
    ref = np.load(REPO / "tests/models/mlp_b64.out0.npy")
    with mdeploy.Model(out) as m:
        (y,) = m.run(x)
    assert np.max(np.abs(y - ref)) <= 1e-4 * max(1.0, np.max(np.abs(ref)))
