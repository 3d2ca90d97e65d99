"""mdeploy — run converted models (``.mdl``) from Python through the C library, via ctypes.

Quick start::

    import numpy as np, mdeploy

    mdeploy.convert("net.onnx", "net.mdl", input_shapes={"x": (64, 784)})
    model = mdeploy.Model("net.mdl")
    print(model.inputs, model.outputs, model.metadata)
    (y,) = model.run(np.zeros((64, 784), np.float32))

Pieces:

- :class:`Model` — a loaded, verified model; immutable, shareable between threads.
  ``model.run(x | [x1, x2] | {"name": x}, as_dict=False)`` returns new arrays.
- :class:`Session` — working memory for repeated runs without re-allocation; zero-copy
  outputs with ``run(..., copy=False)``; per-node timings with ``profile=True``.
- :func:`convert` — ONNX to ``.mdl`` with the options of ``mdeploy-convert`` (self-test vectors:
  ``selftest_inputs=``, expected outputs from ONNX Runtime with ``selftest_expected="onnxruntime"``;
  run them with :meth:`Model.selftest`).
- :class:`Swap` — hot swap with rollback for services: ``swap.run(x)`` from any thread while
  ``swap.load(candidate)`` verifies, self-tests and switches models.
- :class:`Error` — every failure, with the library's message and ``.status`` (:class:`Status`);
  an argument of the wrong Python type raises :class:`ArgumentTypeError`, an :class:`Error`
  that is also a ``TypeError``.

The shared library is located by :func:`find_library` (``MDEPLOY_LIB``, then a copy bundled in
the package, then ``build/release`` of the source tree, then the system path).  It is opened
with ``ctypes.CDLL``, which releases the GIL during every C call: sessions in different threads
run truly in parallel.  ``python -m mdeploy run|inspect|convert`` mirrors the command-line tools.
"""

from ._lib import find_library, library_path, lib as _clib
from ._model import (
    ArgumentTypeError,
    Error,
    Inputs,
    Model,
    NodeInfo,
    NodeTiming,
    Outputs,
    Quantization,
    Session,
    Status,
    TensorInfo,
    metrics_prometheus,
)
from ._convert import ConvertReport, InputShapes, convert, inspect_onnx
from ._security import encrypt, encryption_keygen, key_id, keygen, read_key_file, seal_info, sha256, sign
from ._swap import Swap

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "Model",
    "Session",
    "Swap",
    "TensorInfo",
    "Quantization",
    "NodeInfo",
    "NodeTiming",
    "Error",
    "ArgumentTypeError",
    "Status",
    "convert",
    "metrics_prometheus",
    "sha256",
    "key_id",
    "keygen",
    "encryption_keygen",
    "sign",
    "encrypt",
    "seal_info",
    "read_key_file",
    "ConvertReport",
    "Inputs",
    "Outputs",
    "InputShapes",
    "library_version",
    "library_path",
    "find_library",
]

# Show the public classes as mdeploy.X (tracebacks, reprs, docs), not mdeploy._model.X.
for _cls in (Model, Session, Swap, TensorInfo, Quantization, NodeInfo, NodeTiming, Error, ArgumentTypeError, Status, ConvertReport):
    _cls.__module__ = __name__
del _cls


def library_version() -> str:
    """Version of the loaded ``libmdeploy.so`` (``mdl_version()``), e.g. ``"0.1.0"``."""
    return str(_clib.mdl_version().decode())
