"""Every failure surfaces as mdeploy.Error with the library's message and status."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import mdeploy
from mdeploy import Status
from conftest import REPO, manifest_fixtures


def test_error_type():
    assert issubclass(mdeploy.Error, Exception)
    e = mdeploy.Error("boom", Status.SHAPE)
    assert str(e) == "boom" and e.message == "boom" and e.status is Status.SHAPE
    assert "SHAPE" in repr(e)
    e2 = pickle.loads(pickle.dumps(e))
    assert isinstance(e2, mdeploy.Error) and e2.status == Status.SHAPE and str(e2) == "boom"
    assert mdeploy.Error("odd", 99).status == 99


def test_missing_file(tmp_path):
    path = tmp_path / "does-not-exist.mdl"
    with pytest.raises(mdeploy.Error) as e:
        mdeploy.Model(path)
    assert e.value.status == Status.IO
    assert "does-not-exist.mdl" in str(e.value)


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage, not a model", b"\0" * 64, b"MDL1" * 100],
    ids=["empty", "text", "zeros", "identifier-only"],
)
def test_corrupt_file(tmp_path, content):
    path = tmp_path / "bad.mdl"
    path.write_bytes(content)
    with pytest.raises(mdeploy.Error) as e:
        mdeploy.Model(path)
    assert e.value.status in (Status.CORRUPT_MODEL, Status.INVALID_ARGUMENT, Status.VERSION)
    assert str(e.value)
    with pytest.raises(mdeploy.Error):
        mdeploy.Model(content)


def test_truncated_and_flipped_models(mlp_bytes):
    """Damaged copies of a valid model: either a clean Error or a model that still runs."""
    for n in (8, 16, 64, len(mlp_bytes) // 2, len(mlp_bytes) - 1):
        with pytest.raises(mdeploy.Error) as e:
            mdeploy.Model(mlp_bytes[:n])
        assert e.value.status in (Status.CORRUPT_MODEL, Status.INVALID_ARGUMENT)
    rng = np.random.default_rng(99)
    data = np.frombuffer(mlp_bytes, np.uint8)
    errors = 0
    for _ in range(300):
        bad = data.copy()
        idx = rng.integers(0, bad.size, size=rng.integers(1, 4))
        bad[idx] ^= rng.integers(1, 256, size=idx.size, dtype=np.uint8)
        try:
            m = mdeploy.Model(bad.tobytes())
        except mdeploy.Error as e:
            assert isinstance(e.status, Status) and str(e)
            errors += 1
            continue
        try:
            m.run([np.ones(t.shape, t.dtype) for t in m.inputs])
        except mdeploy.Error:
            pass
    assert errors > 0


def test_wrong_type_of_source():
    with pytest.raises(TypeError):
        mdeploy.Model(42)  # type: ignore[arg-type]


def test_wrong_dtype(mlp, embedding):
    with pytest.raises(mdeploy.Error) as e:
        mlp.run(np.ones((2, 4), np.float64))
    assert e.value.status == Status.DTYPE
    assert "'x'" in str(e.value) and "float32" in str(e.value) and "float64" in str(e.value)
    with pytest.raises(mdeploy.Error) as e:
        mlp.run(np.ones((2, 4), np.int32))
    assert e.value.status == Status.DTYPE
    with pytest.raises(mdeploy.Error) as e:
        embedding.run(np.zeros(5, np.float32))
    assert e.value.status == Status.DTYPE and "int64" in str(e.value)
    with pytest.raises(mdeploy.Error) as e:
        embedding.run(np.zeros(5, np.int32))  # no silent narrowing/widening of arrays either
    assert e.value.status == Status.DTYPE
    with pytest.raises(mdeploy.Error) as e:
        embedding.run([[0.5, 1.0, 2.0, 3.0, 4.0]])  # float data for an integer input
    assert e.value.status == Status.DTYPE


def test_wrong_shape(mlp, two_io):
    for shape in ((4,), (1, 4), (2, 5), (2, 4, 1), ()):
        with pytest.raises(mdeploy.Error) as e:
            mlp.run(np.ones(shape, np.float32))
        assert e.value.status == Status.SHAPE
        assert "(2, 4)" in str(e.value) and str(shape) in str(e.value)
    with pytest.raises(mdeploy.Error) as e:
        two_io.run({"a": np.ones((2, 3), np.float32), "b": np.ones((3, 2), np.float32)})
    assert e.value.status == Status.SHAPE and "'b'" in str(e.value)


def test_wrong_inputs(two_io, mlp):
    a = np.ones((2, 3), np.float32)
    cases = [
        (lambda: two_io.run(a), "takes 2 inputs"),
        (lambda: two_io.run([a]), "takes 2 inputs, 1 given"),
        (lambda: two_io.run([a, a, a]), "3 given"),
        (lambda: two_io.run({"a": a}), "missing input 'b'"),
        (lambda: two_io.run({"a": a, "b": a, "c": a}), "unknown input name 'c'"),
        (lambda: mlp.run([np.ones((2, 4), np.float32)] * 2), "takes 1 input, 2 given"),
    ]
    for fn, text in cases:
        with pytest.raises(mdeploy.Error) as e:
            fn()
        assert e.value.status == Status.INVALID_ARGUMENT
        assert text in str(e.value)


def test_embedding_id_out_of_range(embedding):
    s = embedding.session()
    for bad in (10, 1000, -11):
        ids = np.array([0, 1, bad, 2, 3], np.int64)
        with pytest.raises(mdeploy.Error) as e:
            s.run(ids)
        assert e.value.status == Status.OUT_OF_RANGE
        assert "embedding" in str(e.value)  # the message names the node
        with pytest.raises(mdeploy.Error):
            embedding.run(ids)
    # A failed run leaves the session usable.
    good = np.array([0, 1, 2, 3, 9], np.int64)
    from conftest import EMB_TABLE

    np.testing.assert_array_equal(s.run(good)[0], EMB_TABLE[good])


# The fixtures with a real Gather on user-provided ids (text_lstm: token ids, recommender: user
# and item ids) must reject an out-of-range id at run time, converted from ONNX.
@pytest.mark.parametrize("name,input_name,bad", [("text_lstm", "tokens", 10000), ("recommender", "user", 1000), ("recommender", "item", -2001)])
def test_fixture_embedding_id_out_of_range(converted, name, input_name, bad):
    f = {x["name"]: x for x in manifest_fixtures()}[name]
    ins = {i["name"]: np.load(REPO / i["file"]) for i in f["inputs"]}
    m = mdeploy.Model(converted(name))
    ins[input_name] = ins[input_name].copy()
    ins[input_name].flat[ins[input_name].size // 2] = bad
    with pytest.raises(mdeploy.Error) as e:
        m.run(ins)
    assert e.value.status == Status.OUT_OF_RANGE
    assert str(bad) in str(e.value)


def test_convert_errors(tmp_path):
    out = tmp_path / "out.mdl"
    with pytest.raises(mdeploy.Error) as e:
        mdeploy.convert(tmp_path / "missing.onnx", out)
    assert e.value.status == Status.IO and "missing.onnx" in str(e.value)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xff\xff\xff not protobuf")
    with pytest.raises(mdeploy.Error) as e:
        mdeploy.convert(bad, out)
    assert e.value.status == Status.CORRUPT_MODEL
    assert not out.exists()  # nothing left behind on failure
    with pytest.raises(mdeploy.Error) as e:
        mdeploy.convert(REPO / "tests/models/mlp.onnx", out, input_shapes="x=64xfoo")
    assert e.value.status == Status.INVALID_ARGUMENT
    with pytest.raises(mdeploy.Error):
        mdeploy.convert(REPO / "tests/models/mlp.onnx", out, input_shapes={"x": (64, 0)})
    with pytest.raises(TypeError):
        mdeploy.convert(REPO / "tests/models/mlp.onnx", out, quantize=True)  # type: ignore[call-arg]
    assert not out.exists()


# ---- hostile input (issue #16): nothing runs on stale data, wrong types are mdeploy.Error ----


@pytest.mark.parametrize("source", [None, 123, 4.5, object()])
def test_model_source_of_wrong_type(source):
    with pytest.raises(mdeploy.Error) as e:
        mdeploy.Model(source)  # type: ignore[arg-type]
    assert isinstance(e.value, TypeError) and isinstance(e.value, mdeploy.ArgumentTypeError)
    assert e.value.status == Status.INVALID_ARGUMENT
    assert type(source).__name__ in str(e.value)
    e2 = pickle.loads(pickle.dumps(e.value))
    assert isinstance(e2, mdeploy.ArgumentTypeError) and e2.status == Status.INVALID_ARGUMENT


def test_run_none_and_missing_inputs(mlp, mlp_path, two_io):
    x = np.ones((2, 4), np.float32)
    mlp.run(x)  # leaves data in the pooled session's arena
    with pytest.raises(mdeploy.Error) as e:
        mlp.run(None)  # type: ignore[arg-type]
    assert e.value.status == Status.INVALID_ARGUMENT and "'x'" in str(e.value)
    with pytest.raises(mdeploy.Error):
        mlp.run({})
    with pytest.raises(mdeploy.Error):
        mlp.run([])
    names = [t.name for t in two_io.inputs]
    with pytest.raises(mdeploy.Error) as e:
        two_io.run({names[0]: np.zeros(two_io.inputs[0].shape, two_io.inputs[0].dtype)})
    assert repr(names[1]) in str(e.value)
    with pytest.raises(mdeploy.Error):
        mdeploy.Session(None)  # type: ignore[arg-type]
    with pytest.raises(mdeploy.Error):
        mdeploy.Model(mlp_path, threads="2")  # type: ignore[arg-type]


def test_limit_status_and_load_note(tmp_path):
    # A file written before 64-byte arena slots: its stored plan is computed again, with a note.
    m = mdeploy.Model(REPO / "tests" / "models" / "old-plan-mlp.mdl")
    assert "computed again" in m.load_note
    (y,) = m.run(np.zeros(m.inputs[0].shape, np.float32))
    assert y.shape == m.outputs[0].shape
    assert Status.LIMIT == 12 and Status(12).name == "LIMIT"


def test_status_table_matches_the_library():
    """Python's Status and STATUS_COUNT (the size of the metrics' errors array) follow the C
    enum: every code below the count has a name in the library, the count itself has none."""
    from mdeploy import _lib

    unknown = _lib.decode(_lib.lib.mdl_status_str(_lib.STATUS_COUNT))
    assert unknown == "unknown status"
    for k in range(_lib.STATUS_COUNT):
        assert _lib.decode(_lib.lib.mdl_status_str(k)) != unknown, k
    assert [s.value for s in Status] == list(range(_lib.STATUS_COUNT))
