"""Dynamic shapes through Python: models exported from PyTorch with dynamic batch and sequence
length (tests/models/dynamic/) are converted once and run at many sizes, each compared with ONNX
Runtime computed here (an independent oracle); the digits demo model scores all its held-back
images in one call; impossible shapes raise errors that name the dimension."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import mdeploy
from conftest import REPO

DYN = REPO / "tests" / "models" / "dynamic"
TOL = 1e-4

ort = pytest.importorskip("onnxruntime")


def _ort(onnx_path, feeds):
    s = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def _close(got, ref):
    err = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
    bound = TOL * max(1.0, float(np.max(np.abs(ref))) if ref.size else 0.0)
    assert got.shape == ref.shape
    assert err <= bound, f"max |mdeploy - ORT| = {err:.3g} > {bound:.3g}"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    d = tmp_path_factory.mktemp("dyn")
    out = {}
    for name in ("dyn_mlp", "dyn_cnn", "dyn_text"):
        r = mdeploy.convert(DYN / f"{name}.onnx", d / f"{name}.mdl")
        assert r.nsymbols >= 1 and "batch" in r.dynamic
        out[name] = d / f"{name}.mdl"
    return out


@pytest.mark.parametrize("batch", [1, 7, 64, 3, 1])
def test_mlp_and_cnn_any_batch(converted, batch):
    rng = np.random.default_rng(batch)
    for name, shape in (("dyn_mlp", (20,)), ("dyn_cnn", (1, 14, 14))):
        m = mdeploy.Model(converted[name])
        assert m.inputs[0].shape == ("batch",) + shape
        x = rng.standard_normal((batch,) + shape).astype(np.float32)
        (ref,) = _ort(DYN / f"{name}.onnx", {m.inputs[0].name: x})
        (y,) = m.run(x)
        _close(y, ref)


def test_text_any_batch_and_length(converted):
    m = mdeploy.Model(converted["dyn_text"])
    assert m.inputs[0].shape == ("batch", "seq")
    assert m.symbols == {"batch": None, "seq": None}
    rng = np.random.default_rng(7)
    s = m.session()
    for batch, seq in ((1, 1), (1, 20), (7, 5), (64, 33), (7, 100), (2, 3), (64, 1)):
        ids = rng.integers(0, 500, size=(batch, seq), dtype=np.int64)
        (ref,) = _ort(DYN / "dyn_text.onnx", {"ids": ids})
        (y,) = m.run(ids)
        _close(y, ref)
        (y2,) = s.run(ids)  # one session, resized as the shapes change
        _close(y2, ref)
        assert s.inputs[0].shape == (batch, seq)
    # sessions are kept per shape, at most _SHAPES_MAX of them
    assert 1 <= len(m._pool) <= mdeploy.Model._SHAPES_MAX


def test_digits_all_images_in_one_call(tmp_path):
    out = tmp_path / "digits.mdl"
    mdeploy.convert(REPO / "examples/digits/digits_cnn.onnx", out)
    images = np.load(REPO / "examples/digits/images.npy")
    labels = np.load(REPO / "examples/digits/labels.npy")
    m = mdeploy.Model(out)
    assert m.inputs[0].shape[0] == "N"
    (probs,) = m.run(images)  # every held-back image at once
    (ref,) = _ort(REPO / "examples/digits/digits_cnn.onnx", {"image": images})
    _close(probs, ref)
    assert probs.shape == (len(images), 10)
    assert float(np.mean(probs.argmax(1) == labels)) >= 0.9


def test_impossible_shapes_name_the_dimension(converted, tmp_path):
    m = mdeploy.Model(converted["dyn_mlp"])
    with pytest.raises(mdeploy.Error) as e:
        m.run(np.zeros((3, 21), np.float32))
    assert e.value.status == mdeploy.Status.SHAPE
    assert "'x'" in str(e.value) and "dim 1" in str(e.value) and "20" in str(e.value)
    with pytest.raises(mdeploy.Error) as e:
        m.run(np.zeros((3, 4, 20), np.float32))
    assert e.value.status == mdeploy.Status.SHAPE and "rank 2" in str(e.value)
    # bounds from --max-shape
    out = tmp_path / "text8.mdl"
    r = mdeploy.convert(DYN / "dyn_text.onnx", out, max_shapes={"ids": (8, 40)})
    assert r.dynamic == "ids[0]=batch<=8, ids[1]=seq<=40"
    t = mdeploy.Model(out)
    assert t.inputs[0].max_shape == (8, 40)
    s = t.session(shapes=[(8, 40)])
    with pytest.raises(mdeploy.Error) as e:
        s.resize([(8, 41)])
    assert e.value.status == mdeploy.Status.SHAPE and "'seq'" in str(e.value) and "bound 40" in str(e.value)
    with pytest.raises(mdeploy.Error) as e:
        t.run(np.zeros((9, 4), np.int64))
    assert "'batch'" in str(e.value)
    # the session keeps its shapes after a failed resize
    assert s.inputs[0].shape == (8, 40)
    (y,) = s.run(np.ones((8, 40), np.int64))
    (ref,) = _ort(DYN / "dyn_text.onnx", {"ids": np.ones((8, 40), np.int64)})
    _close(y, ref)


def test_resize_keeps_old_views_valid(converted):
    m = mdeploy.Model(converted["dyn_mlp"])
    s = m.session(shapes={"x": (4, 20)})
    x = np.ones((4, 20), np.float32)
    (old,) = s.run(x, copy=False)
    kept = old.copy()
    s.resize([(64, 20)])
    gc.collect()
    assert s.input_buffer(0).shape == (64, 20)
    np.testing.assert_array_equal(old, kept)  # still readable: it keeps the old buffers alive
    (y,) = s.run(np.ones((64, 20), np.float32))
    np.testing.assert_allclose(y[:4], kept, rtol=1e-6)


def test_cli_runs_at_the_arrays_shapes(converted, tmp_path):
    import os
    import subprocess
    import sys

    ids = tmp_path / "ids.npy"
    np.save(ids, np.ones((3, 11), np.int64))
    r = subprocess.run(
        [sys.executable, "-m", "mdeploy", "run", str(converted["dyn_text"]), "-i", str(ids)],
        capture_output=True, text=True, env=os.environ,
    )
    assert r.returncode == 0, r.stderr
    assert "float32 [3,3]" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "mdeploy", "inspect", str(converted["dyn_text"])],
        capture_output=True, text=True, env=os.environ,
    )
    assert "ids int64 [batch,seq]" in r.stdout


def test_threads_with_different_shapes(converted):
    """Model.run from several threads at once, each with its own batch and length: every result
    equals the single-threaded one (sessions per shape are never shared by two callers)."""
    from concurrent.futures import ThreadPoolExecutor

    m = mdeploy.Model(converted["dyn_text"])
    rng = np.random.default_rng(3)
    jobs = [rng.integers(0, 500, size=(b, s), dtype=np.int64) for b, s in
            [(1, 3), (5, 9), (16, 40), (2, 2), (5, 9), (33, 7), (1, 3), (8, 64)] * 4]
    want = [m.run(x)[0] for x in jobs]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda x: m.run(x)[0], jobs))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert sum(len(v) for v in m._pool.values()) <= mdeploy.Model._POOL_MAX
    assert len(m._pool) <= mdeploy.Model._SHAPES_MAX
