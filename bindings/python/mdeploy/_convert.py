"""ONNX -> .mdl conversion: the library's ``mdl_convert_onnx``, the one implementation that the
``mdeploy-convert`` CLI also uses."""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Union

from . import _lib
from ._lib import lib
from ._model import Error, Status, _raise

__all__ = ["convert", "ConvertReport", "InputShapes"]

#: ``{"x": (1, 3, 224, 224)}``, or CLI-style text ``"x=1x3x224x224"`` (one string or several).
InputShapes = Union[Mapping[str, Sequence[int]], str, Iterable[str]]


@dataclass(frozen=True)
class ConvertReport:
    """What :func:`convert` did (the fields of ``mdl_convert_report``)."""

    onnx_nodes: int  #: nodes in the ONNX graph
    nodes_out: int  #: operators in the written model
    folded: int  #: nodes removed by constant folding
    fused: int  #: nodes fused into producers (BatchNorm, bias, activations)
    removed: int  #: Identity/Dropout/dead nodes dropped
    weight_bytes: int  #: constant data written
    arena_bytes: int  #: activation arena of the written model
    file_bytes: int
    opset: int
    nsymbols: int = 0  #: dynamic dims kept symbolic
    dynamic: str = ""  #: which, e.g. ``"x[0]=batch<=64, ids[1]=seq"``


def _require(name: str) -> Any:
    fn = getattr(lib, name, None)
    if fn is None:
        raise Error(
            f"{_lib.library_path} has no {name}: this libmdeploy.so was built without the ONNX "
            "converter (it needs protobuf-c and the onnx Python package at build time)",
            Status.UNSUPPORTED,
        )
    return fn


def _fill_shapes(
    opts: _lib.mdl_convert_options, shapes: InputShapes, keep: List[bytes], field: str = "input_shapes"
) -> None:
    entries: List[Any] = []
    if isinstance(shapes, Mapping):
        entries = list(shapes.items())
    elif isinstance(shapes, str):
        entries = [shapes]
    else:
        entries = list(shapes)
    if len(entries) > _lib.CONVERT_MAX_SHAPES:
        raise Error(
            f"at most {_lib.CONVERT_MAX_SHAPES} input shapes can be given, got {len(entries)}",
            Status.INVALID_ARGUMENT,
        )
    for k, entry in enumerate(entries):
        dst = getattr(opts, field)[k]
        if isinstance(entry, str):
            # The CLI's own parser, so "NAME=1x3x224x224" means exactly what it means there.
            text = entry.encode()
            keep.append(text)  # dst.name points into this text
            err = _lib.mdl_error()
            st = _require("mdl_parse_input_shape")(text, ctypes.byref(dst), ctypes.byref(err))
            if st != Status.OK:
                raise _raise(err, st)
            continue
        name, dims = entry
        if not isinstance(name, str):
            raise TypeError(f"{field} keys must be input names (str), got {name!r}")
        try:
            dims = [int(d) for d in dims]
        except TypeError:
            raise TypeError(f"{field}[{name!r}] must be a sequence of ints, got {dims!r}") from None
        if len(dims) > _lib.MAX_RANK:
            raise Error(
                f"input shape of '{name}' has rank {len(dims)}; at most {_lib.MAX_RANK} dimensions",
                Status.INVALID_ARGUMENT,
            )
        if any(d <= 0 for d in dims):
            raise Error(f"input shape of '{name}' must have positive dimensions, got {tuple(dims)}", Status.INVALID_ARGUMENT)
        encoded = name.encode()
        keep.append(encoded)
        dst.name = encoded
        dst.rank = len(dims)
        for d, v in enumerate(dims):
            dst.dims[d] = v
    setattr(opts, "n" + field, len(entries))


def convert(
    onnx_path: Union[str, "os.PathLike[str]"],
    out_path: Union[str, "os.PathLike[str]"],
    *,
    input_shapes: Optional[InputShapes] = None,
    max_shapes: Optional[InputShapes] = None,
    name: Optional[str] = None,
    model_version: Optional[str] = None,
    description: Optional[str] = None,
) -> ConvertReport:
    """Convert an ONNX model into a ``.mdl`` file; the options are those of ``mdeploy-convert``.

    ``input_shapes``: fixed shapes for inputs with dynamic dimensions (``--input-shape``), as a
    dict ``{"x": (64, 784)}`` or CLI text ``"x=64x784"`` (a string or a list of them).  Dynamic
    dimensions not fixed here stay dynamic (named by the ONNX ``dim_param``): :meth:`Model.run`
    then takes any size, and :attr:`ConvertReport.dynamic` lists them.  ``max_shapes``: upper
    bounds of dynamic dims (``--max-shape``), same forms.  ``name``, ``model_version``, ``description``: metadata
    written into the model (``--name``, ``--model-version``, ``--description``); by default the
    ONNX graph name, model_version and doc_string.

    The file is written atomically: on failure no output file is left behind.  Raises
    :class:`Error` (status ``IO``, ``CORRUPT_MODEL``, ``UNSUPPORTED`` naming the operator, node
    and opset, ``SHAPE`` ...).  The GIL is released while converting.
    """
    fn = _require("mdl_convert_onnx")
    default = getattr(lib, "mdl_convert_options_default", None)
    opts = default() if default is not None else _lib.mdl_convert_options()
    keep: List[bytes] = []  # keeps the C strings alive for the duration of the call
    if input_shapes is not None:
        _fill_shapes(opts, input_shapes, keep)
    if max_shapes is not None:
        _fill_shapes(opts, max_shapes, keep, "max_shapes")
    for field, value in (("name", name), ("model_version", model_version), ("description", description)):
        if value is not None:
            if not isinstance(value, str):
                raise TypeError(f"{field} must be a str, got {type(value).__name__}")
            encoded = value.encode()
            keep.append(encoded)
            setattr(opts, field, encoded)
    report = _lib.mdl_convert_report()
    err = _lib.mdl_error()
    st = fn(
        os.fsencode(onnx_path),
        os.fsencode(out_path),
        ctypes.byref(opts),
        ctypes.byref(report),
        ctypes.byref(err),
    )
    if st != Status.OK:
        raise _raise(err, st)
    fields = {f[0]: int(getattr(report, f[0])) for f in _lib.mdl_convert_report._fields_ if f[0] != "dynamic"}
    return ConvertReport(**fields, dynamic=_lib.decode(report.dynamic))
