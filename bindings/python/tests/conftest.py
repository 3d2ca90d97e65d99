"""Shared fixtures: small models assembled with the C builder API (through ctypes), so the
runtime tests need neither the converter nor ONNX, and the conformance manifest."""

from __future__ import annotations

import ctypes
import json
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pytest

import mdeploy
from mdeploy import _lib

REPO = Path(__file__).resolve().parents[3]
MODELS = REPO / "tests" / "models"
MANIFEST = MODELS / "manifest.json"


def _op_codes() -> Dict[str, int]:
    """MDL_OP_* values, read from graph.h so the tests follow the header (append-only enum)."""
    text = (REPO / "include" / "mdeploy" / "graph.h").read_text()
    block = text[text.index("#define MDL_OP_MAP(X)") :]
    block = block[: block.index("typedef enum mdl_op")]
    names = re.findall(r"X\((\w+),\s*\"", block)
    return {n: i for i, n in enumerate(names)}


OP = _op_codes()
DT = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.uint8): 2, np.dtype(np.int32): 3, np.dtype(np.int64): 4}

_c = _lib.lib
_vp = ctypes.c_void_p
_c.mdl_builder_create.argtypes = [_vp, ctypes.POINTER(_vp), ctypes.POINTER(_lib.mdl_error)]
_c.mdl_builder_create.restype = ctypes.c_int
_c.mdl_builder_free.argtypes = [_vp]
_c.mdl_builder_free.restype = None
_c.mdl_builder_tensor.argtypes = [_vp, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, _vp, _vp]
_c.mdl_builder_tensor.restype = ctypes.c_int
_c.mdl_builder_node.argtypes = [_vp, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, _vp, ctypes.c_int, _vp, _vp]
_c.mdl_builder_node.restype = ctypes.c_int
_c.mdl_builder_set_quant.argtypes = [_vp, ctypes.c_int, ctypes.c_int, _vp, _vp, ctypes.c_int]
_c.mdl_builder_set_quant.restype = ctypes.c_int
_c.mdl_builder_add_input.argtypes = [_vp, ctypes.c_int]
_c.mdl_builder_add_output.argtypes = [_vp, ctypes.c_int]
_c.mdl_builder_set_metadata.argtypes = [_vp, ctypes.c_char_p, ctypes.c_char_p]
_c.mdl_builder_finish.argtypes = [_vp, ctypes.POINTER(_vp), ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(_lib.mdl_error)]
_c.mdl_builder_finish.restype = ctypes.c_int
_c.mdl_builder_release.argtypes = [_vp, _vp]
_c.mdl_builder_release.restype = None


class Builder:
    """A thin ctypes wrapper over mdl_builder_* (test helper, not part of the package)."""

    def __init__(self) -> None:
        self.h = _vp()
        err = _lib.mdl_error()
        assert _c.mdl_builder_create(None, ctypes.byref(self.h), ctypes.byref(err)) == 0, err.msg
        self._keep: List[np.ndarray] = []

    def tensor(self, name: str, dtype, shape: Optional[Sequence[int]], data: Optional[np.ndarray] = None) -> int:
        dtype = np.dtype(dtype)
        if shape is None:
            dims, rank = None, -1
        else:
            d = np.asarray(shape, dtype=np.int64)
            self._keep.append(d)
            dims, rank = d.ctypes.data if d.size else None, len(shape)
        ptr = None
        if data is not None:
            a = np.ascontiguousarray(data, dtype=dtype)
            self._keep.append(a)
            ptr = a.ctypes.data
        t = _c.mdl_builder_tensor(self.h, name.encode(), DT[dtype], rank, dims, ptr)
        assert t >= 0, name
        return t

    def quant(self, t: int, scale: Sequence[float], zero_point: Sequence[int], axis: int = 0) -> None:
        s = np.ascontiguousarray(scale, dtype=np.float32)
        z = np.ascontiguousarray(zero_point, dtype=np.int64)
        self._keep += [s, z]
        assert _c.mdl_builder_set_quant(self.h, t, len(s), s.ctypes.data, z.ctypes.data, axis) == 0

    def node(self, op: str, name: str, inputs: Sequence[int], outputs: Sequence[int]) -> None:
        ins = (ctypes.c_int * len(inputs))(*inputs)
        outs = (ctypes.c_int * len(outputs))(*outputs)
        assert _c.mdl_builder_node(self.h, OP[op], name.encode(), len(inputs), ins, len(outputs), outs, None) >= 0

    def io(self, inputs: Sequence[int], outputs: Sequence[int]) -> None:
        for t in inputs:
            assert _c.mdl_builder_add_input(self.h, t) == 0
        for t in outputs:
            assert _c.mdl_builder_add_output(self.h, t) == 0

    def meta(self, key: str, value: str) -> None:
        assert _c.mdl_builder_set_metadata(self.h, key.encode(), value.encode()) == 0

    def finish(self) -> bytes:
        data, size = _vp(), ctypes.c_size_t()
        err = _lib.mdl_error()
        st = _c.mdl_builder_finish(self.h, ctypes.byref(data), ctypes.byref(size), ctypes.byref(err))
        try:
            assert st == 0, err.msg.decode()
            return ctypes.string_at(data.value, size.value)
        finally:
            if data.value:
                _c.mdl_builder_release(self.h, data)
            _c.mdl_builder_free(self.h)


# ---- reference models ------------------------------------------------------------------------

RNG = np.random.default_rng(1234)
MLP_W1 = RNG.standard_normal((8, 4)).astype(np.float32)
MLP_B1 = RNG.standard_normal(8).astype(np.float32)
MLP_W2 = RNG.standard_normal((3, 8)).astype(np.float32)
MLP_B2 = RNG.standard_normal(3).astype(np.float32)
EMB_TABLE = RNG.standard_normal((10, 4)).astype(np.float32)


def mlp_reference(x: np.ndarray) -> np.ndarray:
    h = np.maximum(x.astype(np.float64) @ MLP_W1.T.astype(np.float64) + MLP_B1, 0.0)
    z = h @ MLP_W2.T.astype(np.float64) + MLP_B2
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def build_mlp(batch: int = 2) -> bytes:
    """x f32 [batch,4] -> FC(8) -> ReLU -> FC(3) -> Softmax -> probs [batch,3]."""
    b = Builder()
    x = b.tensor("x", np.float32, (batch, 4))
    w1 = b.tensor("fc1/w", np.float32, (8, 4), MLP_W1)
    b1 = b.tensor("fc1/b", np.float32, (8,), MLP_B1)
    w2 = b.tensor("fc2/w", np.float32, (3, 8), MLP_W2)
    b2 = b.tensor("fc2/b", np.float32, (3,), MLP_B2)
    h, r, z, y = (b.tensor(n, np.float32, None) for n in ("h", "r", "z", "probs"))
    b.node("FULLY_CONNECTED", "fc1", [x, w1, b1], [h])
    b.node("RELU", "relu", [h], [r])
    b.node("FULLY_CONNECTED", "fc2", [r, w2, b2], [z])
    b.node("SOFTMAX", "softmax", [z], [y])
    b.io([x], [y])
    b.meta("name", "test-mlp")
    b.meta("version", "3.1")
    b.meta("description", "4-8-3 MLP built by the Python tests")
    b.meta("author", "pytest")
    return b.finish()


def build_two_io() -> bytes:
    """a, b f32 [2,3] -> sum = a + b, prod = a * b (two inputs, two outputs)."""
    bl = Builder()
    a = bl.tensor("a", np.float32, (2, 3))
    b = bl.tensor("b", np.float32, (2, 3))
    s = bl.tensor("sum", np.float32, None)
    p = bl.tensor("prod", np.float32, None)
    bl.node("ADD", "add", [a, b], [s])
    bl.node("MUL", "mul", [a, b], [p])
    bl.io([a, b], [s, p])
    return bl.finish()


def build_embedding(ids_dtype=np.int64, n: int = 5) -> bytes:
    """ids int64 [n] -> Gather(table [10,4]) -> emb f32 [n,4]: an embedding lookup."""
    b = Builder()
    ids = b.tensor("ids", ids_dtype, (n,))
    table = b.tensor("table", np.float32, (10, 4), EMB_TABLE)
    out = b.tensor("emb", np.float32, None)
    b.node("GATHER", "embedding", [table, ids], [out])
    b.io([ids], [out])
    return b.finish()


def build_slow(layers: int, batch: int = 64, width: int = 512) -> bytes:
    """A chain of square FC layers sharing one weight: slow enough to watch the GIL."""
    rng = np.random.default_rng(7)
    b = Builder()
    x = b.tensor("x", np.float32, (batch, width))
    w = b.tensor("w", np.float32, (width, width), (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32))
    cur = x
    for i in range(layers):
        nxt = b.tensor(f"h{i}" if i < layers - 1 else "y", np.float32, None)
        b.node("FULLY_CONNECTED", f"fc{i}", [cur, w, -1], [nxt])
        cur = nxt
    b.io([x], [cur])
    return b.finish()


@pytest.fixture(scope="session")
def mlp_bytes() -> bytes:
    return build_mlp()


@pytest.fixture(scope="session")
def mlp_path(tmp_path_factory, mlp_bytes) -> Path:
    p = tmp_path_factory.mktemp("models") / "mlp.mdl"
    p.write_bytes(mlp_bytes)
    return p


@pytest.fixture()
def mlp(mlp_path) -> mdeploy.Model:
    return mdeploy.Model(mlp_path)


@pytest.fixture(scope="session")
def two_io() -> mdeploy.Model:
    return mdeploy.Model(build_two_io())


@pytest.fixture(scope="session")
def embedding() -> mdeploy.Model:
    return mdeploy.Model(build_embedding())


# ---- conformance fixtures --------------------------------------------------------------------


def manifest_fixtures() -> List[dict]:
    """The entries of tests/models/manifest.json; a missing manifest yields one entry that makes
    its test fail (a fixture set that went missing must not pass silently)."""
    if not MANIFEST.is_file():
        return [{"name": "manifest-missing"}]
    return json.loads(MANIFEST.read_text())["fixtures"]


def manifest_tolerance() -> float:
    return float(json.loads(MANIFEST.read_text()).get("tolerance", 1e-4))


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """convert(name) -> path of the fixture's .mdl, converted once per test session."""
    out_dir = tmp_path_factory.mktemp("converted")
    cache: Dict[str, Path] = {}
    by_name = {f["name"]: f for f in manifest_fixtures()}

    def get(name: str) -> Path:
        if name not in cache:
            assert MANIFEST.is_file(), f"{MANIFEST} missing"
            f = by_name[name]
            out = out_dir / f"{name}.mdl"
            mdeploy.convert(REPO / f["onnx"], out, input_shapes=f["input_shapes"] or None)
            cache[name] = out
        return cache[name]

    return get


def fixture_io(f: dict):
    ins = {i["name"]: np.load(REPO / i["file"]) for i in f["inputs"]}
    outs = {o["name"]: np.load(REPO / o["file"]) for o in f["outputs"]}
    return ins, outs
