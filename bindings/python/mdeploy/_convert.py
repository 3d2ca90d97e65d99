"""ONNX -> .mdl conversion: the library's ``mdl_convert_onnx``, the one implementation that the
``mdeploy-convert`` CLI also uses."""

from __future__ import annotations

import ctypes
import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import _lib
from ._model import Error, Status, _raise

__all__ = ["convert", "ConvertReport", "InputShapes", "inspect_onnx"]

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
    #: with ``quantize``: the quantization report (the JSON of ``mdeploy-convert --report``) as a
    #: dict: per-layer SQNR and precision, accuracy/agreement/errors, sizes, the budget outcome.
    quant: Optional[Dict[str, Any]] = field(default=None)
    nsymbols: int = 0  #: dynamic dims kept symbolic
    dynamic: str = ""  #: which, e.g. ``"x[0]=batch<=64, ids[1]=seq"``
    nprune_layers: int = 0  #: prunable layers in the written model
    #: one dict per prunable layer (name, op, weights, sparsity, block_density, storage, bytes)
    pruning: List[Dict[str, Any]] = field(default_factory=list)


def _require(name: str) -> Any:
    try:
        return getattr(_lib.convert_lib(), name)
    except OSError as e:
        raise Error(f"the ONNX converter is not available: {e}", Status.UNSUPPORTED) from None


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


#: Calibration/eval data: a path (.npy/.npz/directory), an array (one-input models), a dict
#: ``{input name: array}``, or an iterable of arrays/dicts (batches of any size).
Data = Union[str, "os.PathLike[str]", Any, Mapping[str, Any], Iterable[Any]]

_METHODS = {"minmax": 0, "percentile": 1, "entropy": 2}


def _np() -> Any:
    import numpy  # only needed for in-memory data

    return numpy


def _save_arrays(np: Any, base: str, item: Any) -> str:
    """One batch to base.npy (an array) or base.npz (a dict by input name)."""
    if isinstance(item, Mapping):
        arrays = {}
        for k, v in item.items():
            a = np.asarray(v)
            if a.dtype == np.float64:
                a = a.astype(np.float32)
            arrays[str(k)] = a
        np.savez(base + ".npz", **arrays)
        return base + ".npz"
    a = np.asarray(item)
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    np.save(base + ".npy", a)
    return base + ".npy"


def _data_path(data: Data, tmp: str, name: str) -> str:
    """A path the C library reads for data given as a path, array, dict or iterable of those."""
    if isinstance(data, (str, bytes, os.PathLike)):
        return os.fsdecode(data)
    np = _np()
    if isinstance(data, (Mapping, np.ndarray)):
        return _save_arrays(np, os.path.join(tmp, name), data)
    d = os.path.join(tmp, name)
    os.mkdir(d)
    n = 0
    for n, item in enumerate(data, 1):
        _save_arrays(np, os.path.join(d, f"{n:08d}"), item)
    return d  # an empty directory: the library names the error


def _named_arrays(data: Any, names: Sequence[str], what: str) -> Dict[str, Any]:
    np = _np()
    if isinstance(data, Mapping):
        return {str(k): np.asarray(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        if len(data) > len(names):
            raise Error(f"{what}: {len(data)} arrays for {len(names)} tensors", Status.INVALID_ARGUMENT)
        return {names[i]: np.asarray(v) for i, v in enumerate(data)}
    if len(names) != 1:
        raise Error(f"{what}: one array for {len(names)} tensors: give a list or a dict by name", Status.INVALID_ARGUMENT)
    return {names[0]: np.asarray(data)}


def _selftest_options(opts: Any, onnx_path: str, inputs: Any, expected: Any, oracle: Optional[str],
                      tolerance: Optional[Tuple[float, float]], tmp: str, keep: List[Any]) -> None:
    """Fills opts.selftest: the arrays saved as .npy in tmp, ONNX Runtime's outputs if asked."""
    np = _np()
    import onnx  # the ONNX model's input/output names (and ranks, to tell stacked cases)

    g = onnx.load(onnx_path, load_external_data=False).graph
    inits = {t.name for t in g.initializer}
    in_ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in g.input if v.name not in inits}
    out_names = [v.name for v in g.output]
    xs = _named_arrays(inputs, list(in_ranks), "selftest_inputs")
    ys: Dict[str, Any] = {}
    if isinstance(expected, str):
        if expected != "onnxruntime":
            raise Error(f"selftest_expected={expected!r}: 'onnxruntime', arrays or None", Status.INVALID_ARGUMENT)
        import onnxruntime as ort

        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        stacked = {k: v.ndim == in_ranks.get(k, v.ndim) + 1 for k, v in xs.items()}
        n = next((len(v) for k, v in xs.items() if stacked[k]), None)
        cases = [{k: (v[i] if stacked[k] else v) for k, v in xs.items()} for i in range(n)] if n else [xs]
        runs = [sess.run(out_names, c) for c in cases]
        ys = {name: (np.stack([r[j] for r in runs]) if n else runs[0][j]) for j, name in enumerate(out_names)}
        oracle = oracle or f"onnxruntime {ort.__version__}"
    elif expected is not None:
        ys = _named_arrays(expected, out_names, "selftest_expected")

    def cstrs(items: Sequence[bytes]) -> Any:
        arr = (ctypes.c_char_p * max(1, len(items)))(*items)
        keep.append(arr)
        keep.extend(items)
        return ctypes.cast(arr, ctypes.POINTER(ctypes.c_char_p))

    def save(arrays: Dict[str, Any], prefix: str) -> Tuple[Any, Any, int]:
        names, paths = [], []
        for i, (k, v) in enumerate(arrays.items()):
            if v.dtype == np.float64:
                v = v.astype(np.float32)
            p = os.path.join(tmp, f"{prefix}{i}.npy")
            np.save(p, np.ascontiguousarray(v))
            names.append(k.encode())
            paths.append(os.fsencode(p))
        return cstrs(names), cstrs(paths), len(names)

    so = opts.selftest
    so.input_names, so.input_paths, so.ninputs = save(xs, "selftest_in")
    if ys:
        so.output_names, so.output_paths, so.noutputs = save(ys, "selftest_out")
    if oracle is not None:
        b = oracle.encode()
        keep.append(b)
        so.oracle = b
    if tolerance is not None:
        so.atol, so.rtol = float(tolerance[0]), float(tolerance[1])


def convert(
    onnx_path: Union[str, "os.PathLike[str]"],
    out_path: Union[str, "os.PathLike[str]"],
    *,
    input_shapes: Optional[InputShapes] = None,
    max_shapes: Optional[InputShapes] = None,
    name: Optional[str] = None,
    model_version: Optional[str] = None,
    description: Optional[str] = None,
    quantize: Optional[str] = None,
    calibration: Optional[Data] = None,
    calibration_method: str = "minmax",
    percentile: Optional[float] = None,
    per_tensor: bool = False,
    float_ops: Optional[Union[str, Sequence[str]]] = None,
    eval: Optional[Union[Data, Tuple[Data, Any]]] = None,
    max_accuracy_drop: Optional[float] = None,
    max_output_error: Optional[float] = None,
    max_calibration_rows: Optional[int] = None,
    metadata: Optional[Mapping[str, str]] = None,
    prune: Optional[float] = None,
    prune_layers: Optional[Mapping[str, float]] = None,
    sparse_density: Optional[float] = None,
    prune_channels: Optional[float] = None,
    selftest_inputs: Optional[Any] = None,
    selftest_expected: Optional[Any] = None,
    selftest_oracle: Optional[str] = None,
    selftest_tolerance: Optional[Tuple[float, float]] = None,
) -> ConvertReport:
    """Convert an ONNX model into a ``.mdl`` file; the options are those of ``mdeploy-convert``.

    ``input_shapes``: fixed shapes for inputs with dynamic dimensions (``--input-shape``), as a
    dict ``{"x": (64, 784)}`` or CLI text ``"x=64x784"`` (a string or a list of them).  Dynamic
    dimensions not fixed here stay dynamic (named by the ONNX ``dim_param``): :meth:`Model.run`
    then takes any size, and :attr:`ConvertReport.dynamic` lists them.  ``max_shapes``: upper
    bounds of dynamic dims (``--max-shape``), same forms.  ``name``, ``model_version``, ``description``: metadata
    written into the model (``--name``, ``--model-version``, ``--description``); by default the
    ONNX graph name, model_version and doc_string.  ``metadata``: extra key/value pairs
    (``--metadata KEY=VALUE``), written after the ONNX model's ``metadata_props`` (which are
    carried over) and replacing a key they share; read back with :attr:`Model.metadata`.

    Post-training quantization (``quantize="int8"``, see ``include/mdeploy/convert.h``):
    ``calibration`` is a path (.npy, .npz, directory), an array (one-input models), a dict
    ``{input: array}`` or an iterable of arrays/dicts -- rows of the input shape without its batch
    dimension, any number per batch (float64 arrays are saved as float32).  ``eval``: data as
    above, or ``(x, labels)``; measured on the calibration rows by default.
    ``calibration_method``: "minmax", "percentile" (``percentile``, default 99.99) or "entropy".
    ``per_tensor``: one weight scale per tensor.  ``float_ops``: node names kept float.
    ``max_accuracy_drop`` (top-1 points, needs labels) or ``max_output_error``: keep the most
    sensitive layers float until the budget holds.  The report's ``quant`` is the quantization
    report as a dict (per-layer SQNR, accuracy, sizes, which layers stayed float and why).

    Pruning (``--prune magnitude:S``, see ``mdl_prune_options`` in ``include/mdeploy/convert.h``):
    ``prune``: global magnitude pruning of the prunable layers' 8x1 weight blocks until that share
    in [0, 1) of their weights is zero; ``prune_layers``: ``{node name: sparsity}`` per layer
    (``--prune-layer``); ``sparse_density``: store a layer sparse below this block density
    (``--sparse-density``; 0 never).  Weights already sparse are stored sparse without ``prune``.
    ``prune_channels``: structured pruning (``--prune channels:S``): that share of the filters /
    units of smallest L1 norm removed from each layer whose channels reach one Conv2D or
    FullyConnected, which shrinks with it.
    The report's ``pruning`` lists each prunable layer (sparsity, storage, bytes).

    Self-test vectors (``--selftest-from``, see ``mdl_selftest_options`` and
    ``include/mdeploy/selftest.h``): ``selftest_inputs`` is an array (one-input models), a list in
    input order or a dict ``{input: array}``; each array is one case at the input's shape or N
    cases stacked on a new first axis.  ``selftest_expected``: ``"onnxruntime"`` computes the
    expected outputs with ONNX Runtime on the source model (the independent oracle; needs the
    ``onnxruntime`` package), a list/dict of arrays gives them, ``None`` stores the converted
    model's own outputs.  ``selftest_oracle`` names the oracle in the file;
    ``selftest_tolerance``: ``(atol, rtol)``, default ``(1e-4, 1e-3)``.  The written model must
    pass its vectors or the conversion fails (:class:`Error` naming case, output and element).

    The file is written atomically: on failure no output file is left behind.  Raises
    :class:`Error` (status ``IO``, ``CORRUPT_MODEL``, ``UNSUPPORTED`` naming the operator, node
    and opset, ``SHAPE``, ``INVALID_ARGUMENT`` for bad calibration data ...).  The GIL is
    released while converting.
    """
    fn = _require("mdl_convert_onnx")
    opts = _require("mdl_convert_options_default")()
    keep: List[Any] = []  # keeps the C strings alive for the duration of the call
    if input_shapes is not None:
        _fill_shapes(opts, input_shapes, keep)
    if max_shapes is not None:
        _fill_shapes(opts, max_shapes, keep, "max_shapes")
    for fname, value in (("name", name), ("model_version", model_version), ("description", description)):
        if value is not None:
            if not isinstance(value, str):
                raise TypeError(f"{fname} must be a str, got {type(value).__name__}")
            encoded = value.encode()
            keep.append(encoded)
            setattr(opts, fname, encoded)
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a dict of str to str, got {type(metadata).__name__}")
        items = list(metadata.items())
        for k, v in items:
            if not isinstance(k, str) or not isinstance(v, str) or not k:
                raise TypeError(f"metadata entries must be non-empty str keys to str values, got {k!r}: {v!r}")
        ks = (ctypes.c_char_p * max(1, len(items)))(*[k.encode() for k, _ in items])
        vs = (ctypes.c_char_p * max(1, len(items)))(*[v.encode() for _, v in items])
        keep.extend([ks, vs])
        opts.nmetadata = len(items)
        opts.metadata_keys = ctypes.cast(ks, ctypes.POINTER(ctypes.c_char_p))
        opts.metadata_values = ctypes.cast(vs, ctypes.POINTER(ctypes.c_char_p))
    if prune is not None:
        opts.prune.sparsity = float(prune)
    if prune_layers is not None:
        if not isinstance(prune_layers, Mapping):
            raise TypeError(f"prune_layers must be a dict of node name to sparsity, got {type(prune_layers).__name__}")
        spec = ",".join(f"{k}={float(v)!r}" for k, v in prune_layers.items()).encode()
        keep.append(spec)
        opts.prune.layers = spec
    if prune_channels is not None:
        opts.prune.channels = float(prune_channels)
    if sparse_density is not None:
        opts.prune.max_density = float(sparse_density) if sparse_density > 0 else -1.0
    quant_args = (calibration, eval, float_ops, percentile, max_accuracy_drop, max_output_error, max_calibration_rows)
    if quantize is None:
        if any(a is not None for a in quant_args) or per_tensor:
            raise Error("quantization options need quantize='int8'", Status.INVALID_ARGUMENT)
    elif not isinstance(quantize, str):
        raise TypeError(f"quantize must be a str ('int8') or None, got {type(quantize).__name__}")
    elif quantize != "int8":
        raise Error(f"quantize={quantize!r}: only 'int8' is supported", Status.INVALID_ARGUMENT)
    with tempfile.TemporaryDirectory(prefix="mdeploy-convert-") as tmp:
        if quantize is not None:
            q = opts.quant
            q.mode = 1
            if calibration is None:
                raise Error("quantize='int8' needs calibration data", Status.INVALID_ARGUMENT)
            if calibration_method not in _METHODS:
                raise Error(
                    f"calibration_method={calibration_method!r}: expected one of {', '.join(_METHODS)}",
                    Status.INVALID_ARGUMENT,
                )
            q.method = _METHODS[calibration_method]

            def cstr(text: str) -> bytes:
                b = os.fsencode(text)
                keep.append(b)
                return b

            q.calibration = cstr(_data_path(calibration, tmp, "calibration"))
            if eval is not None:
                x, y = (eval if isinstance(eval, tuple) else (eval, None))
                q.eval_inputs = cstr(_data_path(x, tmp, "eval"))
                if y is not None:
                    if isinstance(y, (str, bytes, os.PathLike)):
                        q.eval_labels = cstr(os.fsdecode(y))
                    else:
                        np = _np()
                        p = os.path.join(tmp, "labels.npy")
                        np.save(p, np.asarray(y).astype(np.int64))
                        q.eval_labels = cstr(p)
            if float_ops is not None:
                names = float_ops if isinstance(float_ops, str) else ",".join(float_ops)
                q.float_ops = cstr(names)
            q.per_tensor = bool(per_tensor)
            if percentile is not None:
                q.percentile = float(percentile)
            if max_accuracy_drop is not None:
                q.max_accuracy_drop = float(max_accuracy_drop)
            if max_output_error is not None:
                q.max_output_error = float(max_output_error)
            if max_calibration_rows is not None:
                q.max_calibration_rows = int(max_calibration_rows)
        if selftest_inputs is not None:
            _selftest_options(opts, os.fspath(onnx_path), selftest_inputs, selftest_expected, selftest_oracle,
                              selftest_tolerance, tmp, keep)
        elif selftest_expected is not None or selftest_oracle is not None:
            raise Error("selftest_expected / selftest_oracle need selftest_inputs", Status.INVALID_ARGUMENT)
        if selftest_tolerance is not None and selftest_inputs is None:
            raise Error("selftest_tolerance needs selftest_inputs", Status.INVALID_ARGUMENT)
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
    text = _require("mdl_convert_report_json")(ctypes.byref(report))
    doc = json.loads(text.decode()) if text else {}
    pruning = doc.pop("pruning", [])
    quant = doc if report.quant else None
    _require("mdl_convert_report_free")(ctypes.byref(report))
    fields = {f[0]: int(getattr(report, f[0])) for f in _lib.mdl_convert_report._fields_
              if f[0] not in ("quant", "dynamic", "prune_layers", "json")}
    return ConvertReport(**fields, quant=quant, dynamic=_lib.decode(report.dynamic), pruning=pruning)


_SUPPORT = ("supported", "folded only", "UNSUPPORTED")


def _onnx_value(v: Any) -> Dict[str, Any]:
    shape: Optional[List[Any]] = None
    if v.rank >= 0:
        shape = []
        for i in range(min(v.rank, _lib.MAX_RANK)):
            p = v.dim_params[i]
            shape.append(_lib.decode(p) if p else (None if v.dims[i] < 0 else int(v.dims[i])))
    return {"name": _lib.decode(v.name), "type": _lib.decode(v.elem_type), "shape": shape}


def inspect_onnx(onnx_path: Union[str, "os.PathLike[str]"]) -> Dict[str, Any]:
    """What an ONNX model needs, without converting it (``mdl_onnx_summarize``; the JSON of
    ``mdeploy-inspect MODEL.onnx --json``): graph, producer, opset, metadata, inputs and outputs
    (``shape`` entries are sizes, ``dim_param`` names, or None where dynamic and unnamed), and the
    operator types in order of first use, each with ``count``, ``first_node``, ``domain`` and
    ``support``: "supported", "folded only" (computed at conversion from constants and static
    shapes) or "UNSUPPORTED"."""
    fn = _require("mdl_onnx_summarize")
    ptr = ctypes.POINTER(_lib.mdl_onnx_summary)()
    err = _lib.mdl_error()
    st = fn(os.fsencode(onnx_path), ctypes.byref(ptr), ctypes.byref(err))
    if st != Status.OK:
        raise _raise(err, st)
    try:
        s = ptr.contents
        d = _lib.decode
        return {
            "graph": d(s.graph_name),
            "producer": d(s.producer_name),
            "producer_version": d(s.producer_version),
            "ir_version": int(s.ir_version),
            "opset": int(s.opset),
            "nodes": int(s.nnodes),
            "initializers": int(s.ninitializers),
            "metadata": {d(s.metadata_keys[i]): d(s.metadata_values[i]) for i in range(s.nmetadata)},
            "inputs": [_onnx_value(s.inputs[i]) for i in range(s.ninputs)],
            "outputs": [_onnx_value(s.outputs[i]) for i in range(s.noutputs)],
            "operators": [
                {"op_type": d(o.op_type), "domain": d(o.domain), "count": int(o.count),
                 "first_node": d(o.first_node), "first_index": int(o.first_index), "support": _SUPPORT[o.support]}
                for o in (s.ops[k] for k in range(s.nops))
            ],
            "unsupported": int(s.nunsupported),
        }
    finally:
        _require("mdl_onnx_summary_free")(ptr)
