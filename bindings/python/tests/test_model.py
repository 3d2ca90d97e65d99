"""The runtime API: loading, introspection, the input forms of run(), copies and views."""

from __future__ import annotations

import gc
import os
import pathlib
import re

import numpy as np
import pytest

import mdeploy
from conftest import EMB_TABLE, build_embedding, build_mlp, mlp_reference


def format_written():
    """The model format version the C header says the runtime writes."""
    h = (pathlib.Path(__file__).resolve().parents[3] / "include/mdeploy/mdeploy.h").read_text()
    return tuple(int(re.search(r"#define MDL_FORMAT_%s (\d+)" % k, h).group(1))
                 for k in ("MAJOR", "MINOR"))


def test_version_and_library():
    assert mdeploy.__version__ == "0.1.0"
    assert mdeploy.library_version() == mdeploy.__version__
    assert os.path.isfile(mdeploy.library_path)
    if os.environ.get("MDEPLOY_LIB"):
        assert os.path.samefile(mdeploy.library_path, os.environ["MDEPLOY_LIB"])


def test_introspection(mlp):
    (x,) = mlp.inputs
    (y,) = mlp.outputs
    assert x.name == "x" and x.dtype == np.dtype(np.float32) and isinstance(x.dtype, np.dtype)
    assert x.shape == (2, 4) and x.nbytes == 2 * 4 * 4 and x.size == 8 and x.ndim == 2
    assert y.name == "probs" and y.shape == (2, 3) and y.dtype == np.float32
    assert mlp.input_names == ["x"] and mlp.output_names == ["probs"]
    assert x.quantization is None
    md = mlp.metadata
    assert md["name"] == "test-mlp" and md["version"] == "3.1"
    assert md["description"] == "4-8-3 MLP built by the Python tests"
    assert md["author"] == "pytest"
    assert md["producer"].startswith("mdeploy")
    assert (mlp.name, mlp.version) == ("test-mlp", "3.1")
    assert mlp.format_version == format_written()
    assert mlp.arena_bytes >= mlp.activation_bytes > 0
    assert mlp.weight_bytes == 4 * (8 * 4 + 8 + 3 * 8 + 3)
    ops = [n.op for n in mlp.nodes]
    assert ops == ["FullyConnected", "Relu", "FullyConnected", "Softmax"]
    tensors = mlp.tensors
    assert tensors[mlp.nodes[0].inputs[1]].constant and tensors[mlp.nodes[0].inputs[1]].shape == (8, 4)
    assert not tensors[mlp.nodes[0].inputs[0]].constant
    assert "x: float32[2, 4]" in repr(mlp)


def test_run_forms(mlp):
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    ref = mlp_reference(x)
    for out in (mlp.run(x), mlp.run([x]), mlp.run((x,)), mlp.run({"x": x})):
        assert isinstance(out, list) and len(out) == 1
        assert out[0].dtype == np.float32 and out[0].shape == (2, 3)
        np.testing.assert_allclose(out[0], ref, rtol=1e-5, atol=1e-6)
    d = mlp.run({"x": x}, as_dict=True)
    assert list(d) == ["probs"]
    np.testing.assert_allclose(d["probs"], ref, rtol=1e-5, atol=1e-6)


def test_two_inputs_two_outputs(two_io):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2, 3)).astype(np.float32)
    b = rng.standard_normal((2, 3)).astype(np.float32)
    s, p = two_io.run([a, b])
    np.testing.assert_array_equal(s, a + b)
    np.testing.assert_array_equal(p, a * b)
    d = two_io.run({"b": b, "a": a}, as_dict=True)  # dict order does not matter
    assert list(d) == ["sum", "prod"]
    np.testing.assert_array_equal(d["sum"], a + b)
    np.testing.assert_array_equal(d["prod"], a * b)


def test_load_from_bytes_equals_file(mlp_bytes, mlp_path):
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    ref = mdeploy.Model(mlp_path).run(x)[0]
    for src in (mlp_bytes, bytearray(mlp_bytes), memoryview(mlp_bytes), np.frombuffer(mlp_bytes, np.uint8), str(mlp_path)):
        np.testing.assert_array_equal(mdeploy.Model(src).run(x)[0], ref)
    # Unaligned bytes are fine: the library copies them.
    unaligned = memoryview(b"\0" + mlp_bytes)[1:]
    np.testing.assert_array_equal(mdeploy.Model(unaligned).run(x)[0], ref)


def test_non_contiguous_inputs(mlp):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    ref = mlp.run(x)[0]
    wide = np.zeros((2, 8), np.float32)
    wide[:, ::2] = x
    strided = wide[:, ::2]
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(mlp.run(strided)[0], ref)
    fortran = np.asfortranarray(x)
    assert not fortran.flags.c_contiguous
    np.testing.assert_array_equal(mlp.run(fortran)[0], ref)
    reversed_rows = x[::-1][::-1]
    np.testing.assert_array_equal(mlp.run(reversed_rows)[0], ref)
    big_endian = x.astype(">f4")  # right type, other byte order: swapped on the way in
    np.testing.assert_array_equal(mlp.run(big_endian)[0], ref)


def test_list_inputs_are_converted(mlp, embedding):
    x = [[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0]]
    np.testing.assert_array_equal(mlp.run([x])[0], mlp.run(np.array(x, np.float32))[0])
    ids = [0, 9, 3, 3, 1]
    np.testing.assert_array_equal(embedding.run([ids])[0], EMB_TABLE[ids])


def test_inputs_are_not_modified(mlp):
    x = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    keep = x.copy()
    s = mlp.session()
    for _ in range(3):
        s.run(x)
        mlp.run(x)
    np.testing.assert_array_equal(x, keep)


def test_outputs_do_not_alias(mlp):
    rng = np.random.default_rng(4)
    x1 = rng.standard_normal((2, 4)).astype(np.float32)
    x2 = rng.standard_normal((2, 4)).astype(np.float32)
    r1 = mlp.run(x1)[0]
    keep = r1.copy()
    mlp.run(x2)
    np.testing.assert_array_equal(r1, keep)
    s = mlp.session()
    a = s.run(x1)[0]
    b = s.run(x2)[0]
    np.testing.assert_array_equal(a, keep)
    assert not np.shares_memory(a, b)
    assert a.flags.owndata and a.flags.writeable


def test_session_views_on_request(mlp):
    rng = np.random.default_rng(5)
    x1 = rng.standard_normal((2, 4)).astype(np.float32)
    x2 = rng.standard_normal((2, 4)).astype(np.float32)
    s = mdeploy.Session(mlp)
    v1 = s.run(x1, copy=False)[0]
    np.testing.assert_allclose(v1, mlp_reference(x1), rtol=1e-5, atol=1e-6)
    assert not v1.flags.writeable
    with pytest.raises(ValueError):
        v1[0, 0] = 1.0
    v2 = s.run(x2, copy=False)[0]
    # Same arena memory: the first result now shows the second run (that is what copy=False is).
    assert np.shares_memory(v1, v2)
    np.testing.assert_allclose(v1, mlp_reference(x2), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(v2, s.output_buffer("probs"))


def test_session_zero_copy_buffers(mlp):
    s = mlp.session()
    buf = s.input_buffer("x")
    assert buf.shape == (2, 4) and buf.flags.writeable
    assert buf is s.input_buffer(0)
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 8
    buf[...] = x
    (y,) = s.run(copy=False)
    np.testing.assert_allclose(y, mlp_reference(x), rtol=1e-5, atol=1e-6)
    # No re-allocation between runs: the same buffers every time.
    addr = y.__array_interface__["data"][0]
    for _ in range(5):
        buf[...] = x
        (y2,) = s.run(copy=False)
        assert y2.__array_interface__["data"][0] == addr
    with pytest.raises(mdeploy.Error) as e:
        s.input_buffer("nope")
    assert "'x'" in str(e.value)
    with pytest.raises(mdeploy.Error):
        s.output_buffer(1)


def test_views_keep_memory_alive(mlp_bytes):
    x = np.ones((2, 4), np.float32)
    m = mdeploy.Model(mlp_bytes)
    s = m.session()
    (v,) = s.run(x, copy=False)
    want = v.copy()
    del s, m
    gc.collect()
    # Model and session are unreachable from Python code, but the view still owns them.
    np.testing.assert_array_equal(v, want)
    for _ in range(50):
        mdeploy.Model(mlp_bytes).run(x)  # churn the allocator
    np.testing.assert_array_equal(v, want)


def test_close(mlp_bytes):
    x = np.ones((2, 4), np.float32)
    m = mdeploy.Model(mlp_bytes)
    s = m.session()
    ref = m.run(x)[0]
    m.close()
    with pytest.raises(mdeploy.Error):
        m.run(x)
    with pytest.raises(mdeploy.Error):
        m.session()
    assert "closed" in repr(m)
    np.testing.assert_array_equal(s.run(x)[0], ref)  # sessions outlive an explicit close
    s.close()
    with pytest.raises(mdeploy.Error):
        s.run(x)
    with mdeploy.Model(mlp_bytes) as m2, m2.session() as s2:
        np.testing.assert_array_equal(s2.run(x)[0], ref)


def test_profile(mlp):
    s = mlp.session(profile=True)
    s.run(np.ones((2, 4), np.float32))
    prof = s.profile()
    assert [p.op for p in prof] == ["FullyConnected", "Relu", "FullyConnected", "Softmax"]
    assert [p.name for p in prof] == ["fc1", "relu", "fc2", "softmax"]
    assert all(p.ns >= 0 for p in prof) and sum(p.ns for p in prof) > 0
    with pytest.raises(mdeploy.Error):
        mlp.session().profile()


def test_embedding_ids(embedding):
    ids = np.array([0, 9, 4, -1, 2], np.int64)  # negative ids count from the end, as in ONNX
    np.testing.assert_array_equal(embedding.run(ids)[0], EMB_TABLE[ids])
    m32 = mdeploy.Model(build_embedding(np.int32))
    assert m32.inputs[0].dtype == np.int32
    np.testing.assert_array_equal(m32.run(ids.astype(np.int32))[0], EMB_TABLE[ids])


def test_batch_sizes():
    for batch in (1, 3, 17):
        m = mdeploy.Model(build_mlp(batch))
        x = np.random.default_rng(batch).standard_normal((batch, 4)).astype(np.float32)
        np.testing.assert_allclose(m.run(x)[0], mlp_reference(x), rtol=1e-5, atol=1e-6)


def test_docstrings_and_hints():
    for obj in (mdeploy, mdeploy.Model, mdeploy.Model.run, mdeploy.Session, mdeploy.Session.run, mdeploy.convert, mdeploy.Error):
        assert obj.__doc__ and len(obj.__doc__) > 40, obj
    assert "return" in mdeploy.Model.run.__annotations__
    assert "input_shapes" in mdeploy.convert.__annotations__
    assert mdeploy.Error.__module__ == "mdeploy"


def test_model_released_without_garbage_collector(mlp_bytes):
    """Model.run's pooled sessions make no reference cycle: dropping the last reference frees
    the model at once, not at the next garbage collection."""
    import weakref

    gc.disable()
    try:
        m = mdeploy.Model(mlp_bytes)
        m.run(np.ones((2, 4), np.float32))
        s = m.session()
        ref = weakref.ref(m)
        del m
        assert ref() is not None  # the user's session keeps it
        del s
        assert ref() is None
    finally:
        gc.enable()
