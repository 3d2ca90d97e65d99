"""Models, sessions, tensor descriptions and errors: the runtime half of the bindings."""

from __future__ import annotations

import collections
import ctypes
import enum
import os
import threading
import weakref
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np
from numpy.typing import ArrayLike

from . import _lib, _security
from ._lib import decode, lib

__all__ = [
    "Status",
    "Error",
    "TensorInfo",
    "Quantization",
    "NodeInfo",
    "NodeTiming",
    "Model",
    "Session",
    "metrics_prometheus",
    "Inputs",
    "Outputs",
]


class Status(enum.IntEnum):
    """The library's ``mdl_status`` codes (``include/mdeploy/mdeploy.h``)."""

    OK = 0
    INVALID_ARGUMENT = 1
    OUT_OF_MEMORY = 2
    IO = 3
    CORRUPT_MODEL = 4
    VERSION = 5
    UNSUPPORTED = 6
    SHAPE = 7
    DTYPE = 8
    OUT_OF_RANGE = 9
    BUFFER_TOO_SMALL = 10
    INTERNAL = 11
    LIMIT = 12  #: above a limit of the load or session options (e.g. the 4 GiB arena default)


class Error(Exception):
    """Any failure reported by mdeploy.

    ``str(err)`` is the library's message, which names the cause (file, node, tensor, byte
    offset ...); ``err.status`` is the :class:`Status` code (a plain ``int`` if the library
    returned a code this package does not know).
    """

    def __init__(self, message: str, status: Union[Status, int] = Status.INTERNAL) -> None:
        super().__init__(message)
        try:
            status = Status(status)
        except ValueError:
            status = int(status)
        self.status: Union[Status, int] = status
        self.message: str = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        name = self.status.name if isinstance(self.status, Status) else str(self.status)
        return f"mdeploy.Error({self.message!r}, status={name})"

    def __reduce__(self) -> Tuple[Any, ...]:
        # Errors cross process boundaries (multiprocessing, pytest-xdist) intact.
        return (Error, (self.message, int(self.status)))


class ArgumentTypeError(Error, TypeError):
    """An argument of the wrong Python type (``Model(None)``, ``Model(123)``, ``Session(42)``,
    ``threads="2"``): an :class:`Error` with status ``INVALID_ARGUMENT`` that is also a
    ``TypeError``, so ``except mdeploy.Error`` and ``except TypeError`` both catch it."""

    def __init__(self, message: str, status: Union[Status, int] = Status.INVALID_ARGUMENT) -> None:
        super().__init__(message, status)

    def __reduce__(self) -> Tuple[Any, ...]:
        return (ArgumentTypeError, (self.message, int(self.status)))


def _raise(err: _lib.mdl_error, status: int) -> "Error":
    msg = decode(err.msg) or decode(lib.mdl_status_str(status))
    return Error(msg, status)


# Index = mdl_dtype value.  Native byte order: the library uses host order, as NumPy does.
_DTYPES: Tuple[np.dtype, ...] = tuple(
    np.dtype(t) for t in ("float32", "int8", "uint8", "int32", "int64", "bool")
)


def _dtype(code: int) -> np.dtype:
    if 0 <= code < len(_DTYPES):
        return _DTYPES[code]
    raise Error(f"tensor has unknown dtype code {code}", Status.UNSUPPORTED)


@dataclass(frozen=True)
class Quantization:
    """Quantization parameters of an int8/uint8/int32 tensor: real = scale * (q - zero_point).

    One entry per tensor (``axis`` is then irrelevant) or one per index of dimension ``axis``.
    """

    scale: Tuple[float, ...]
    zero_point: Tuple[int, ...]
    axis: int


#: A dimension: its size, or for a dynamic dim of a :class:`Model` the name of its symbol
#: (``"batch"``, the ONNX ``dim_param``), or ``None`` for a dynamic dim computed from others.
Dim = Union[int, str, None]


@dataclass(frozen=True)
class TensorInfo:
    """Name, element type, shape and size of a model input, output or internal tensor.

    In :attr:`Model.inputs` / :attr:`Model.outputs` a dynamic dimension appears as its symbol's
    name (``("batch", 784)``, as ONNX Runtime shows it), ``nbytes`` is then 0 and ``max_shape``
    gives the bounds (``None``: unbounded or fixed).  A :class:`Session`'s infos are concrete.
    """

    name: str
    dtype: np.dtype
    shape: Tuple[Dim, ...]
    nbytes: int
    quantization: Optional[Quantization] = None
    constant: bool = False  #: holds weights (only meaningful in :attr:`Model.tensors`)
    max_shape: Optional[Tuple[Optional[int], ...]] = None  #: bounds of dynamic dims

    @property
    def dynamic(self) -> bool:
        """True when some dimension is chosen by each session (a symbol)."""
        return any(not isinstance(d, int) for d in self.shape)

    @property
    def size(self) -> Optional[int]:
        """Number of elements (``None`` when the shape is dynamic)."""
        if self.dynamic:
            return None
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"TensorInfo(name={self.name!r}, dtype={self.dtype}, shape={self.shape})"


@dataclass(frozen=True)
class NodeInfo:
    """One operator of the runtime graph (after the converter's folding and fusion)."""

    name: str
    op: str
    inputs: Tuple[int, ...]  #: tensor indices into :attr:`Model.tensors`; -1 = absent input
    outputs: Tuple[int, ...]
    scratch_bytes: int
    attrs: str = ""  #: the node's options as text, e.g. ``"stride=2x2 act=relu6"``


@dataclass(frozen=True)
class NodeTiming:
    """Time spent in one node during a session's last run (``Session(profile=True)``)."""

    name: str
    op: str
    ns: int


def _qparams(t: TensorInfo) -> Tuple[np.ndarray, np.ndarray]:
    """Scale and zero point of t shaped to broadcast against t's data."""
    q = t.quantization
    assert q is not None
    scale = np.asarray(q.scale, dtype=np.float32)
    zp = np.asarray(q.zero_point, dtype=np.int64)
    if len(q.scale) > 1:
        shape = [1] * len(t.shape)
        shape[q.axis % len(t.shape)] = len(q.scale)
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return scale, zp


def _quantize(x: np.ndarray, t: TensorInfo) -> np.ndarray:
    """ONNX QuantizeLinear: saturate(round_half_even(x / scale) + zero_point)."""
    scale, zp = _qparams(t)
    info = np.iinfo(t.dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        q = np.rint(np.asarray(x, dtype=np.float32) / scale)
        q = np.nan_to_num(q, nan=0.0) + zp
    return np.clip(q, info.min, info.max).astype(t.dtype)


def _dequantize(q: np.ndarray, t: TensorInfo) -> np.ndarray:
    """scale * (q - zero_point) as float32."""
    scale, zp = _qparams(t)
    return ((q.astype(np.int64) - zp).astype(np.float32) * scale).astype(np.float32)


def _tensor_info(ti: _lib.mdl_tensor_info, constant: bool = False) -> TensorInfo:
    shape: Tuple[Dim, ...] = tuple(int(ti.dims[d]) for d in range(ti.rank))
    max_shape = None
    if ti.dim_names:
        names = [ti.dim_names[d] for d in range(ti.rank)]
        shape = tuple(
            (decode(names[d]) or None) if names[d] is not None and shape[d] == -1 else shape[d]
            for d in range(ti.rank)
        )
        max_shape = tuple((int(ti.dim_max[d]) or None) if names[d] is not None else None for d in range(ti.rank))
    quant = None
    if ti.nquant > 0:
        quant = Quantization(
            scale=tuple(float(ti.scale[q]) for q in range(ti.nquant)),
            zero_point=tuple(int(ti.zero_point[q]) for q in range(ti.nquant)),
            axis=int(ti.quant_axis),
        )
    return TensorInfo(
        name=decode(ti.name),
        dtype=_dtype(ti.dtype),
        shape=shape,
        nbytes=int(ti.bytes),
        quantization=quant,
        constant=constant,
        max_shape=max_shape,
    )


class _Handle:
    """Owns one C object (``mdl_model *`` or ``mdl_session *``) and frees it when unreferenced.

    ``keep`` is passed to the finalizer as an argument on purpose: weakref.finalize holds its
    arguments strongly, so a session handle keeps its model handle alive until the session has
    been freed, even when the garbage collector reclaims both in one cycle (it runs finalizers
    in no particular order).  Arrays that view a session's arena keep the session handle the
    same way, so no Python object can ever point at freed C memory.
    """

    __slots__ = ("ptr", "_fin", "__weakref__")

    def __init__(self, ptr: int, free: Callable[[int], None], keep: Any = None) -> None:
        self.ptr = ptr
        self._fin = weakref.finalize(self, _Handle._free, free, ptr, keep)
        # At interpreter exit the process releases everything anyway, and module teardown
        # order could otherwise free a model under a session.
        self._fin.atexit = False

    @staticmethod
    def _free(free: Callable[[int], None], ptr: int, keep: Any) -> None:
        free(ptr)


class _Memory:
    """Exposes ``nbytes`` of C memory at ``ptr`` to NumPy while keeping its owner alive."""

    __slots__ = ("__array_interface__", "_owner")

    def __init__(self, ptr: int, info: TensorInfo, readonly: bool, owner: _Handle) -> None:
        self.__array_interface__ = {
            "version": 3,
            "shape": info.shape,
            "typestr": info.dtype.str,
            "data": (ptr, readonly),
        }
        self._owner = owner


def _view(ptr: Optional[int], info: TensorInfo, readonly: bool, owner: _Handle) -> np.ndarray:
    if not ptr or info.nbytes == 0:
        # Zero-sized tensors may have no storage; an empty array stands in for it.
        a = np.empty(info.shape, info.dtype)
    else:
        a = np.asarray(_Memory(ptr, info, readonly, owner))
    if readonly:
        a.flags.writeable = False
    return a


#: What :meth:`Model.run` / :meth:`Session.run` accept: one array (single-input models), a
#: sequence of arrays in the model's input order, or a mapping from input name to array.
Inputs = Union[ArrayLike, Sequence[ArrayLike], Mapping[str, ArrayLike]]
#: What they return: a list in the model's output order, or a dict with ``as_dict=True``.
Outputs = Union[List[np.ndarray], Dict[str, np.ndarray]]


class Model:
    """A loaded, verified model.  Immutable and safe to share between threads.

    ``Model(path)`` reads a ``.mdl`` file; ``Model(data)`` with ``bytes``, ``bytearray``,
    ``memoryview`` or a uint8 NumPy array loads a model held in memory (the bytes are copied,
    so the buffer may be released afterwards).  Every byte is verified; a bad file raises
    :class:`Error` with status ``CORRUPT_MODEL``, ``VERSION``, ``UNSUPPORTED`` ... and a message
    naming the cause; a missing file raises status ``IO``.

    :meth:`run` is the simple way to score: it is thread-safe (each concurrent caller gets its own
    pooled :class:`Session`, so nothing is re-allocated after warm-up) and always returns fresh
    arrays.  Use :meth:`session` for zero-copy or profiled runs.

    Models with dynamic dimensions (:attr:`TensorInfo.dynamic` inputs, e.g. a batch or sequence
    length left dynamic by the converter) take any size the model allows: :meth:`run` keeps
    sessions per input shape (the most recently used ``_SHAPES_MAX`` shapes).

    ``threads=N`` (default 1) lets each run use N threads (``mdl_session_options.threads``): the
    sessions of :meth:`run` and :meth:`session` each get N - 1 worker threads of their own; the
    results are bit-identical to one thread.

    ``metrics=True`` keeps run metrics for the model (``MDL_LOAD_METRICS``, about one clock
    read pair per run): run and error counts and a latency histogram, read with :meth:`metrics`
    or, in the Prometheus text format, :meth:`metrics_prometheus`.  ``op_metrics=True`` also
    times every node (per-operator cumulative time; implies ``metrics``).  Inputs that
    :meth:`run` refuses before the C run (wrong shape, dtype, a missing input) count as failed
    runs with their status.

    The seal (``include/mdeploy/security.h``): the content digest is checked at every load
    (``verify_digest=False`` skips it for a trusted copy; ``require_digest=True`` refuses files
    written before format 2.3, which otherwise load with a :attr:`load_note`).
    ``public_keys=[...]`` (Ed25519 keys: 32 bytes each, or ``mdeploy-keygen`` .pub files)
    refuses models not signed by one of them; ``decryption_key`` (32 bytes or a key file) opens
    an encrypted model; ``min_counter=N`` refuses a model whose :attr:`security_counter` is
    below N (anti-rollback).  Each refusal raises :class:`Error` saying which check failed.
    """

    # How many idle sessions run() keeps for reuse; a burst of more concurrent callers creates
    # extra ones that are freed afterwards.
    _POOL_MAX = 16
    # Dynamic models: how many different input shapes keep idle sessions.
    _SHAPES_MAX = 8

    def __init__(
        self, source: Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, np.ndarray], *, threads: int = 1,
        metrics: bool = False, op_metrics: bool = False, public_keys: Optional[Sequence[Any]] = None,
        decryption_key: Any = None, min_counter: int = 0, verify_digest: bool = True,
        require_digest: bool = False
    ) -> None:
        self._threads = _check_threads(threads)
        err = _lib.mdl_error()
        out = ctypes.c_void_p()
        opts = lib.mdl_load_options_default()
        # the seal (include/mdeploy/security.h; mdeploy.sign, mdeploy.encrypt)
        sec = _security.Security(public_keys, decryption_key)
        opts.security = ctypes.pointer(sec.c)
        opts.min_counter = int(min_counter)
        if not verify_digest:
            opts.flags |= _lib.LOAD_NO_DIGEST
        if require_digest:
            opts.flags |= _lib.LOAD_REQUIRE_DIGEST
        if metrics:
            opts.flags |= _lib.LOAD_METRICS
        if op_metrics:
            opts.flags |= _lib.LOAD_METRICS_OPS
        if isinstance(source, (str, os.PathLike)):
            path = os.fsencode(source)
            st = lib.mdl_model_load_file(path, ctypes.byref(opts), ctypes.byref(out), ctypes.byref(err))
            self._source = os.fsdecode(path)
        else:
            try:
                buf = np.frombuffer(source, dtype=np.uint8)  # zero-copy view of any byte buffer
            except (TypeError, ValueError) as e:
                raise ArgumentTypeError(
                    "Model() takes a path (str or os.PathLike) or the model's bytes "
                    f"(bytes, bytearray, memoryview), not {type(source).__name__}"
                ) from e
            opts.flags |= _lib.LOAD_COPY  # the library keeps its own copy: no lifetime coupling
            st = lib.mdl_model_load_buffer(
                buf.ctypes.data if buf.size else None,
                buf.size,
                ctypes.byref(opts),
                ctypes.byref(out),
                ctypes.byref(err),
            )
            self._source = f"<{buf.size} bytes>"
        if st != Status.OK or not out.value:
            raise _raise(err, st or Status.INTERNAL)
        h: int = out.value
        self._h: Optional[_Handle] = _Handle(h, lib.mdl_model_free)
        self._inputs = tuple(self._io_info(lib.mdl_model_input_info, h, i) for i in range(lib.mdl_model_input_count(h)))
        self._outputs = tuple(self._io_info(lib.mdl_model_output_info, h, i) for i in range(lib.mdl_model_output_count(h)))
        self._input_index = {t.name: i for i, t in enumerate(self._inputs)}
        self._dynamic = lib.mdl_model_symbol_count(h) > 0
        # idle sessions by input shapes (None: a fixed-shape model's), least recently used first
        self._pool: "collections.OrderedDict[Any, List[Session]]" = collections.OrderedDict()
        self._pool_lock = threading.Lock()

    @staticmethod
    def _io_info(fn: Any, h: int, i: int) -> TensorInfo:
        ti = _lib.mdl_tensor_info()
        st = fn(h, i, ctypes.byref(ti))
        if st != Status.OK:
            raise Error(f"cannot describe tensor {i}", st)
        return _tensor_info(ti)

    # -- life cycle --------------------------------------------------------------------------

    def _live(self) -> _Handle:
        # Callers keep the returned handle in a local for the duration of their C calls: another
        # thread's close() then cannot free the model under them.
        h = self._h
        if h is None:
            raise Error("the model has been closed", Status.INVALID_ARGUMENT)
        return h

    def _get(self, fn: Any) -> Any:
        h = self._live()
        return fn(h.ptr)

    def close(self) -> None:
        """Release the model now rather than when it is garbage-collected.

        Sessions created from it stay valid: the C model is freed once the last of them is gone.
        """
        with self._pool_lock:
            for idle in self._pool.values():
                for s in idle:
                    s.close()
            self._pool.clear()
        self._h = None

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "" if self._h is not None else " closed"
        ins = ", ".join(f"{t.name}: {t.dtype}{list(t.shape)}" for t in self._inputs)
        outs = ", ".join(f"{t.name}: {t.dtype}{list(t.shape)}" for t in self._outputs)
        return f"<mdeploy.Model {self._source}{state} ({ins}) -> ({outs})>"

    # -- description -------------------------------------------------------------------------

    @property
    def inputs(self) -> Tuple[TensorInfo, ...]:
        """The graph inputs, in order: name, ``numpy.dtype``, shape."""
        return self._inputs

    @property
    def outputs(self) -> Tuple[TensorInfo, ...]:
        """The graph outputs, in order."""
        return self._outputs

    @property
    def dynamic(self) -> bool:
        """True when some input dimension is dynamic (each session chooses it)."""
        return self._dynamic

    @property
    def symbols(self) -> Dict[str, Optional[int]]:
        """The dynamic dimensions: symbol name -> upper bound (``None``: unbounded)."""
        live = self._live()  # held until return: see _live
        out: Dict[str, Optional[int]] = {}
        name, mx = ctypes.c_char_p(), ctypes.c_int64()
        for i in range(lib.mdl_model_symbol_count(live.ptr)):
            if lib.mdl_model_symbol(live.ptr, i, ctypes.byref(name), ctypes.byref(mx), None):
                out[decode(name.value)] = int(mx.value) or None
        return out

    @property
    def input_names(self) -> List[str]:
        return [t.name for t in self._inputs]

    @property
    def output_names(self) -> List[str]:
        return [t.name for t in self._outputs]

    @property
    def name(self) -> str:
        return decode(self._get(lib.mdl_model_name))

    @property
    def version(self) -> str:
        """The model's own version string (``--model-version``), not the file format's."""
        return decode(self._get(lib.mdl_model_version))

    @property
    def producer(self) -> str:
        return decode(self._get(lib.mdl_model_producer))

    @property
    def description(self) -> str:
        return decode(self._get(lib.mdl_model_description))

    @property
    def format_version(self) -> Tuple[int, int]:
        """``(major, minor)`` of the ``.mdl`` file format."""
        live = self._live()  # held until return: see _live
        h = live.ptr
        return (lib.mdl_model_format_major(h), lib.mdl_model_format_minor(h))

    @property
    def metadata(self) -> Dict[str, str]:
        """All metadata as one dict: ``name``, ``version``, ``producer``, ``description`` (``""``
        when absent), then the model's free key/value pairs in file order."""
        live = self._live()  # held until return: see _live
        h = live.ptr
        md = {
            "name": self.name,
            "version": self.version,
            "producer": self.producer,
            "description": self.description,
        }
        k, v = ctypes.c_char_p(), ctypes.c_char_p()
        for i in range(lib.mdl_model_metadata_count(h)):
            if lib.mdl_model_metadata_at(h, i, ctypes.byref(k), ctypes.byref(v)):
                md[decode(k.value)] = decode(v.value)
        return md

    @property
    def security_counter(self) -> int:
        """The model's anti-rollback counter (``mdeploy-convert --security-counter``; 0 if none);
        its version string is :attr:`version`."""
        return int(self._get(lib.mdl_model_security_counter))

    @property
    def load_note(self) -> str:
        """What the load chose to do about the file, ``""`` if nothing (e.g. a stored memory plan
        that failed the check and was computed again: ``mdl_model_load_note``)."""
        return decode(self._get(lib.mdl_model_load_note))

    @property
    def arena_bytes(self) -> int:
        """Exact bytes one session needs (activation arena, kernel scratch, bookkeeping)."""
        return int(self._get(lib.mdl_model_arena_size))

    @property
    def activation_bytes(self) -> int:
        """Bytes of the activation arena alone (the memory plan)."""
        return int(self._get(lib.mdl_model_activation_bytes))

    @property
    def weight_bytes(self) -> int:
        """Bytes of constant tensor data."""
        return int(self._get(lib.mdl_model_weight_bytes))

    @property
    def nodes(self) -> Tuple[NodeInfo, ...]:
        """The operators in execution order."""
        live = self._live()  # held until return: see _live
        h = live.ptr
        out = []
        ni = _lib.mdl_node_info()
        attrs = ctypes.create_string_buffer(256)
        for i in range(lib.mdl_model_node_count(h)):
            st = lib.mdl_model_node_info(h, i, ctypes.byref(ni))
            if st != Status.OK:
                raise Error(f"cannot describe node {i}", st)
            lib.mdl_model_node_attrs(h, i, attrs, len(attrs))
            out.append(
                NodeInfo(
                    name=decode(ni.name),
                    op=decode(ni.op),
                    inputs=tuple(int(ni.inputs[k]) for k in range(ni.nin)),
                    outputs=tuple(int(ni.outputs[k]) for k in range(ni.nout)),
                    scratch_bytes=int(ni.scratch_bytes),
                    attrs=decode(attrs.value),
                )
            )
        return tuple(out)

    @property
    def tensors(self) -> Tuple[TensorInfo, ...]:
        """Every tensor of the graph (indexed by :attr:`NodeInfo.inputs`/``outputs``)."""
        live = self._live()  # held until return: see _live
        h = live.ptr
        out = []
        ti = _lib.mdl_tensor_info()
        const = ctypes.c_bool()
        for i in range(lib.mdl_model_tensor_count(h)):
            st = lib.mdl_model_tensor_info(h, i, ctypes.byref(ti), ctypes.byref(const))
            if st != Status.OK:
                raise Error(f"cannot describe tensor {i}", st)
            out.append(_tensor_info(ti, bool(const.value)))
        return tuple(out)

    # -- running -----------------------------------------------------------------------------

    @property
    def threads(self) -> int:
        """Threads per run of :meth:`run` and the default of :meth:`session` (``Model(threads=)``)."""
        return self._threads

    def session(self, *, profile: bool = False, shapes: Optional["Shapes"] = None,
                threads: Optional[int] = None) -> "Session":
        """A new :class:`Session` of this model (same as ``Session(model, profile=..., shapes=...,
        threads=...)``; ``threads`` defaults to the model's)."""
        return Session(self, profile=profile, shapes=shapes,
                       threads=self._threads if threads is None else threads)

    def run(self, inputs: Inputs, *, as_dict: bool = False, raw: bool = False) -> Outputs:
        """Run the model once and return its outputs as new arrays.

        ``inputs``: one array (single-input models), a list/tuple in the model's input order, or
        a dict from input name to array.  NumPy arrays must have the input's exact dtype and
        shape (any strides or byte order); lists and scalars are converted to the input's dtype
        when that is a same-kind cast.  Returns a list in output order, or a dict from output
        name to array when ``as_dict`` is true.

        Quantized inputs and outputs (int8/uint8 with :attr:`TensorInfo.quantization`) take and
        return float32 real values: inputs are quantized as ONNX QuantizeLinear does (round half
        to even, saturate), outputs dequantized (``scale * (q - zero_point)``).  Integer arrays of
        the stored dtype are taken as they are; ``raw=True`` returns the stored integers.

        Thread-safe: concurrent callers each use their own pooled session, and the GIL is
        released while the C code runs, so threads score in parallel.

        Dynamic dimensions take the sizes of the arrays given (any batch or sequence length the
        model allows); an impossible shape raises :class:`Error` (status ``SHAPE``) naming the
        input, the dimension and its symbol.

        ``None`` (or a missing input) raises :class:`Error` (status ``INVALID_ARGUMENT``): a
        pooled session's input memory holds whatever an earlier run left there.
        """
        if inputs is None:
            names = ", ".join(repr(t.name) for t in self._inputs)
            raise Error(f"Model.run needs the model's inputs ({names}), got None", Status.INVALID_ARGUMENT)
        key = _shapes_of(inputs, self._inputs) if self._dynamic else None
        try:
            s = self._acquire(key)
        except Error as e:  # an impossible shape: a failed run for the metrics
            h = self._h
            if h is not None:
                lib.mdl_metrics_count_failure(h.ptr, int(e.status))
            raise
        try:
            return s._run(inputs, as_dict, True, raw)
        finally:
            self._release(s)

    def metrics(self) -> Dict[str, Any]:
        """The model's run metrics (``Model(metrics=True)``; include/mdeploy/metrics.h)::

            {"runs": int,                      # every run, any outcome
             "errors": {"SHAPE": int, ...},    # failed runs by status name (every status but OK)
             "latency": {"buckets": [(upper bound in seconds, cumulative count), ...,
                                     (inf, count)],
                         "count": int, "sum_seconds": float},   # successful runs only
             "ops": {"Conv2D": seconds, ...} or None}        # op_metrics=True

        Raises :class:`Error` (``UNSUPPORTED``) when the model was loaded without metrics.
        """
        h = self._live().ptr
        m = _lib.mdl_metrics()
        st = lib.mdl_model_metrics(h, ctypes.byref(m))
        if st != Status.OK:
            raise Error("metrics are off: load the model with Model(..., metrics=True)", st)
        cum = 0
        buckets = []
        for i in range(_lib.METRICS_BUCKETS + 1):
            cum += int(m.latency_buckets[i])
            le = float("inf") if i == _lib.METRICS_BUCKETS else lib.mdl_metrics_bucket_ns(i) / 1e9
            buckets.append((le, cum))
        ops: Optional[Dict[str, float]] = None
        if m.ops:
            ops = {}
            name = ctypes.c_char_p()
            ns = ctypes.c_uint64()
            i = 0
            while lib.mdl_model_metrics_op(h, i, ctypes.byref(name), ctypes.byref(ns)):
                ops[decode(name.value)] = ns.value / 1e9
                i += 1
        return {
            "runs": int(m.runs),
            "errors": {Status(k).name: int(m.errors[k]) for k in range(1, _lib.STATUS_COUNT)},
            "latency": {"buckets": buckets, "count": int(m.latency_count),
                        "sum_seconds": m.latency_sum_ns / 1e9},
            "ops": ops,
        }

    def metrics_prometheus(self) -> str:
        """This model's metrics in the Prometheus text exposition format (see
        :func:`mdeploy.metrics_prometheus` for several models in one page)."""
        return metrics_prometheus([self])

    @property
    def selftest_count(self) -> int:
        """Number of self-test cases stored in the file (0: none)."""
        return int(self._get(lib.mdl_model_selftest_count))

    def selftest(self) -> Dict[str, Any]:
        """Run the self-test vectors stored in the file (``include/mdeploy/selftest.h``)::

            {"cases": int, "passed": int, "elements": int, "max_abs_error": float,
             "atol": float, "rtol": float, "oracle": str}

        ``cases == 0``: the file has none (nothing ran).  A mismatch raises :class:`Error`
        (``CORRUPT_MODEL``) whose message names the case, output, element, both values and the
        allowed difference; the same details are in ``err.selftest`` (a dict as above plus
        ``failed_case``, ``failed_output``, ``failed_element``, ``got``, ``expected``, ``allowed``).
        """
        h = self._live()
        r = _lib.mdl_selftest_result()
        err = _lib.mdl_error()
        st = lib.mdl_model_selftest(h.ptr, ctypes.byref(r), ctypes.byref(err))
        d: Dict[str, Any] = {"cases": int(r.cases), "passed": int(r.passed), "elements": int(r.elements),
                             "max_abs_error": float(r.max_abs_error), "atol": float(r.atol),
                             "rtol": float(r.rtol), "oracle": decode(r.oracle)}
        if st != Status.OK:
            e = _raise(err, st)
            d.update(failed_case=int(r.failed_case), failed_output=int(r.failed_output),
                     failed_element=int(r.failed_element), got=float(r.got), expected=float(r.expected),
                     allowed=float(r.allowed))
            e.selftest = d  # type: ignore[attr-defined]
            raise e
        return d

    def _acquire(self, key: Any) -> "Session":
        with self._pool_lock:
            idle = self._pool.get(key)
            if idle:
                self._pool.move_to_end(key)
                return idle.pop()
        return Session(self, threads=self._threads, _pooled=True, shapes=list(key) if key is not None else None)

    def _release(self, s: "Session") -> None:
        key = s._shape_key() if self._dynamic and s._state is not None else None
        evicted: List[Session] = []
        keep = False
        with self._pool_lock:
            if self._h is not None and sum(len(v) for v in self._pool.values()) < self._POOL_MAX:
                self._pool.setdefault(key, []).append(s)
                self._pool.move_to_end(key)
                while len(self._pool) > self._SHAPES_MAX:
                    evicted.extend(self._pool.popitem(last=False)[1])
                keep = True
        for e in evicted:
            e.close()
        if not keep:
            s.close()


#: Input shapes for a session of a model with dynamic dims: one shape per input in order, or a
#: dict from input name to shape (inputs left out keep their current shape).
Shapes = Union[Sequence[Sequence[int]], Mapping[str, Sequence[int]]]


def metrics_prometheus(models: Sequence[Model]) -> str:
    """The run metrics of ``models`` in the Prometheus text exposition format (0.0.4), each metric
    family once with one series per model (``mdl_metrics_prometheus``); models loaded without
    metrics are left out.  Serve it with ``Content-Type: text/plain; version=0.0.4``."""
    handles = [m._live() for m in models]  # held: the C models stay alive during the call
    hs = [h.ptr for h in handles]
    arr = (ctypes.c_void_p * max(len(hs), 1))(*hs)
    size = 16384
    while True:
        buf = ctypes.create_string_buffer(size)
        n = lib.mdl_metrics_prometheus(arr, len(hs), buf, size)
        if n < size:
            return buf.raw[:n].decode("utf-8", "replace")
        size = n + 1


def _shapes_of(inputs: Any, infos: Tuple[TensorInfo, ...]) -> Optional[Tuple[Tuple[int, ...], ...]]:
    """The shapes of the arrays in ``inputs`` (as Model.run takes them), or None when they do not
    match the input list (the binding step then reports it)."""
    if inputs is None:
        return None
    try:
        if isinstance(inputs, Mapping):
            xs = [inputs[t.name] for t in infos]
        elif isinstance(inputs, (list, tuple)):
            if len(inputs) != len(infos):
                return None
            xs = list(inputs)
        else:
            if len(infos) != 1:
                return None
            xs = [inputs]
        return tuple(tuple(int(d) for d in np.shape(x)) for x in xs)
    except (KeyError, TypeError, ValueError):
        return None


def _session_infos(fn: Any, p: int, n: int) -> Tuple[TensorInfo, ...]:
    out = []
    ti = _lib.mdl_tensor_info()
    for i in range(n):
        st = fn(p, i, ctypes.byref(ti))
        if st != Status.OK:
            raise Error(f"cannot describe tensor {i}", st)
        out.append(_tensor_info(ti))
    return tuple(out)


def _check_threads(threads: Any) -> int:
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise ArgumentTypeError(f"threads must be an int, not {type(threads).__name__}")
    if not 1 <= int(threads) <= _lib.MAX_THREADS:
        raise Error(f"threads is {int(threads)}, must be 1 to {_lib.MAX_THREADS}", Status.INVALID_ARGUMENT)
    return int(threads)


class _SessionState:
    """The C session, its current input/output shapes and the arrays viewing its buffers (whose
    addresses are fixed for the C session's life, so the views are built once).  A resize makes a
    new state around a new C session: views of the old one keep it alive, never dangle."""

    __slots__ = ("handle", "inputs", "outputs", "in_views", "out_views")

    def __init__(self, handle: _Handle, nin: int, nout: int) -> None:
        p = handle.ptr
        self.handle = handle
        self.inputs = _session_infos(lib.mdl_session_input_info, p, nin)
        self.outputs = _session_infos(lib.mdl_session_output_info, p, nout)
        self.in_views = [_view(lib.mdl_session_input_data(p, i), t, False, handle) for i, t in enumerate(self.inputs)]
        self.out_views = [_view(lib.mdl_session_output_data(p, i), t, True, handle) for i, t in enumerate(self.outputs)]


class Session:
    """A model's working memory (activation arena and kernel scratch) for repeated runs.

    Creating a session allocates once; :meth:`run` then allocates nothing in C, and with
    ``copy=False`` nothing in Python either.  A session belongs to one thread at a time (a second
    thread calling :meth:`run` concurrently gets an :class:`Error`); any number of sessions, in
    any threads, may share one :class:`Model`.  The GIL is released during the C run.

    ``profile=True`` times every node; read the times with :meth:`profile`.  ``threads=N``
    (default 1) splits each run over N threads (the session's own N - 1 workers and the caller),
    with results bit-identical to one thread.

    Models with dynamic dimensions: ``shapes`` (or :meth:`resize`) sets the input shapes (by
    default every dynamic dim is 1); :meth:`run` given arrays of other shapes resizes the session
    to them.  A resize makes new buffers: arrays from :meth:`input_buffer`, :meth:`output_buffer`
    and ``copy=False`` runs taken before stay valid but refer to the old buffers.
    """

    def __init__(
        self, model: Model, *, profile: bool = False, shapes: Optional[Shapes] = None, threads: int = 1,
        _pooled: bool = False
    ) -> None:
        if not isinstance(model, Model):
            raise ArgumentTypeError(f"Session() needs an mdeploy.Model, not {type(model).__name__}")
        mh = model._h
        if mh is None:
            raise Error("the model has been closed", Status.INVALID_ARGUMENT)
        # A pooled session lives inside its model (Model.run): a strong reference back would make
        # a cycle that only the garbage collector breaks, delaying the release of C memory.
        self._model_ref: Callable[[], Optional[Model]] = weakref.ref(model) if _pooled else (lambda: model)
        self._model_inputs = model._inputs
        self._model_outputs = model._outputs
        self._mh = mh  # the C model: resizes create C sessions of it
        self._dynamic = model._dynamic
        self._input_index = model._input_index
        self._profile = bool(profile)
        self._threads = _check_threads(threads)
        self._busy = threading.Lock()
        self._state: Optional[_SessionState] = None
        self._state = self._create(shapes)

    def _create(self, shapes: Optional[Shapes]) -> _SessionState:
        opts = lib.mdl_session_options_default()
        opts.profile = self._profile
        opts.threads = self._threads
        if shapes is not None:
            arr = self._shape_array(shapes)
            opts.ninput_shapes = len(arr)
            opts.input_shapes = arr
        out = ctypes.c_void_p()
        err = _lib.mdl_error()
        st = lib.mdl_session_create(self._mh.ptr, ctypes.byref(opts), ctypes.byref(out), ctypes.byref(err))
        if st != Status.OK or not out.value:
            raise _raise(err, st or Status.INTERNAL)
        handle = _Handle(out.value, lib.mdl_session_free, keep=self._mh)
        return _SessionState(handle, len(self._model_inputs), len(self._model_outputs))

    def _shape_array(self, shapes: Shapes) -> "ctypes.Array[_lib.mdl_shape]":
        infos = self._model_inputs
        cur = self._state.inputs if self._state is not None else infos
        per: List[Sequence[Any]] = [t.shape for t in cur]
        if isinstance(shapes, Mapping):
            for k, v in shapes.items():
                if k not in self._input_index:
                    raise Error(
                        f"unknown input name {k!r}; the model's inputs are {', '.join(repr(t.name) for t in infos)}",
                        Status.INVALID_ARGUMENT,
                    )
                per[self._input_index[k]] = v
        else:
            shapes = list(shapes)
            if len(shapes) > len(infos):
                raise Error(f"{len(shapes)} shapes for a model with {len(infos)} inputs", Status.INVALID_ARGUMENT)
            for i, v in enumerate(shapes):
                per[i] = v
        arr = (_lib.mdl_shape * len(infos))()
        for i, (t, v) in enumerate(zip(infos, per)):
            try:
                dims = [int(d) for d in v]  # a symbol name left in place fails here
            except (TypeError, ValueError):
                raise Error(
                    f"input '{t.name}' needs a concrete shape for its dynamic dims "
                    f"{tuple(t.shape)}, got {tuple(v)}",
                    Status.SHAPE,
                ) from None
            if len(dims) > _lib.MAX_RANK:
                raise Error(f"input '{t.name}' has rank {len(t.shape)}, got a shape of rank {len(dims)}", Status.SHAPE)
            arr[i].rank = len(dims)
            for d, x in enumerate(dims):
                arr[i].dims[d] = x
        return arr

    def resize(self, shapes: Shapes) -> None:
        """Set the input shapes of a model with dynamic dimensions: one shape per input in
        order, or ``{name: shape}``.  Raises :class:`Error` (status ``SHAPE``, naming the input,
        dimension and symbol) for a shape the model does not allow (a fixed dim changed, a bound
        exceeded, a rank change); the session then keeps its shapes."""
        self._live()
        self._state = self._create(shapes)

    def _shape_key(self) -> Tuple[Tuple[int, ...], ...]:
        return tuple(tuple(int(d) for d in t.shape) for t in self._live().inputs)  # type: ignore[arg-type]

    @property
    def model(self) -> Model:
        m = self._model_ref()
        if m is None:
            raise Error("the model of this session is gone", Status.INVALID_ARGUMENT)
        return m

    @property
    def inputs(self) -> Tuple[TensorInfo, ...]:
        """The inputs at this session's (concrete) shapes."""
        return self._live().inputs

    @property
    def outputs(self) -> Tuple[TensorInfo, ...]:
        """The outputs at this session's (concrete) shapes."""
        return self._live().outputs

    def close(self) -> None:
        """Release the session now.  Arrays returned with ``copy=False`` or by
        :meth:`input_buffer` / :meth:`output_buffer` keep its memory alive until they are gone."""
        self._state = None

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "" if self._state is not None else " closed"
        return f"<mdeploy.Session of {self._model_ref()!r}{state}>"

    def _live(self) -> "_SessionState":
        # As for Model._live: the local reference keeps the C session alive during a call.
        st = self._state
        if st is None:
            raise Error("the session has been closed", Status.INVALID_ARGUMENT)
        return st

    def _index(self, key: Union[int, str], infos: Tuple[TensorInfo, ...], what: str) -> int:
        if isinstance(key, str):
            for i, t in enumerate(infos):
                if t.name == key:
                    return i
            names = ", ".join(repr(t.name) for t in infos)
            raise Error(f"the model has no {what} named {key!r} (its {what}s: {names})", Status.INVALID_ARGUMENT)
        i = int(key)
        if not 0 <= i < len(infos):
            raise Error(f"{what} index {i} out of range (the model has {len(infos)})", Status.INVALID_ARGUMENT)
        return i

    def input_buffer(self, key: Union[int, str]) -> np.ndarray:
        """A writable array over input ``key``'s memory in the arena (zero-copy input).

        Fill it, then call ``run()`` with no inputs.  Its contents do not survive a run (the arena
        is reused), so fill it again before every run.
        """
        return self._live().in_views[self._index(key, self.inputs, "input")]

    def output_buffer(self, key: Union[int, str]) -> np.ndarray:
        """A read-only array over output ``key``'s memory in the arena; the next run overwrites it."""
        return self._live().out_views[self._index(key, self.outputs, "output")]

    def run(
        self, inputs: Optional[Inputs] = None, *, as_dict: bool = False, copy: bool = True, raw: bool = False
    ) -> Outputs:
        """Run once.  ``inputs`` and ``raw`` as for :meth:`Model.run`; ``None`` runs on what was
        written into :meth:`input_buffer` (the zero-copy form: the caller fills every input's
        buffer before every run; a run leaves them overwritten).

        With ``copy=True`` (the default) the outputs are new arrays the caller owns.  With
        ``copy=False`` they are read-only views of the session's arena: no allocation at all,
        but the next run of this session overwrites them.
        """
        if not self._busy.acquire(blocking=False):
            raise Error(
                "Session.run called while the session is running in another thread: a session "
                "belongs to one thread at a time (use one Session per thread, or Model.run)",
                Status.INVALID_ARGUMENT,
            )
        try:
            return self._run(inputs, as_dict, copy, raw)
        finally:
            self._busy.release()

    def _run(self, inputs: Optional[Inputs], as_dict: bool, copy: bool, raw: bool = False) -> Outputs:
        state = self._live()
        try:
            if inputs is not None and self._dynamic:
                shapes = _shapes_of(inputs, state.inputs)
                if shapes is not None and shapes != self._shape_key():
                    self.resize(list(shapes))
                    state = self._live()
            if inputs is not None:
                self._bind(inputs, state.in_views, state.inputs)
        except Error as e:  # refused before the C run: a failed run for the metrics
            lib.mdl_metrics_count_failure(self._mh.ptr, int(e.status))
            raise
        h = state.handle.ptr
        st = lib.mdl_session_run(h)  # CDLL: the GIL is released for the whole call
        if st != Status.OK:
            msg = decode(lib.mdl_session_message(h)) or decode(lib.mdl_status_str(st))
            raise Error(msg, st)
        outs = [v.copy() for v in state.out_views] if copy else list(state.out_views)
        if not raw:
            outs = [_dequantize(a, t) if t.quantization is not None else a for a, t in zip(outs, state.outputs)]
        if as_dict:
            return {t.name: a for t, a in zip(state.outputs, outs)}
        return outs

    def _bind(self, inputs: Inputs, views: List[np.ndarray], infos: Tuple[TensorInfo, ...]) -> None:
        n = len(infos)
        if isinstance(inputs, Mapping):
            index = self._input_index
            unknown = [k for k in inputs if k not in index]
            if unknown:
                raise Error(
                    f"unknown input name{'s' if len(unknown) > 1 else ''} "
                    f"{', '.join(repr(k) for k in unknown)}; the model's inputs are "
                    f"{', '.join(repr(t.name) for t in infos)}",
                    Status.INVALID_ARGUMENT,
                )
            missing = [t.name for t in infos if t.name not in inputs]
            if missing:
                raise Error(
                    f"missing input{'s' if len(missing) > 1 else ''} "
                    f"{', '.join(repr(k) for k in missing)}",
                    Status.INVALID_ARGUMENT,
                )
            for i, t in enumerate(infos):
                self._write(views[i], t, inputs[t.name])
        elif isinstance(inputs, (list, tuple)):
            if len(inputs) != n:
                hint = (
                    " (a list is taken as one array per input: pass a NumPy array for a single "
                    "input's data)"
                    if n == 1
                    else ""
                )
                raise Error(
                    f"the model takes {n} input{'s' if n != 1 else ''}, {len(inputs)} given{hint}",
                    Status.INVALID_ARGUMENT,
                )
            for i, (t, x) in enumerate(zip(infos, inputs)):
                self._write(views[i], t, x)
        else:
            if n != 1:
                raise Error(
                    f"the model takes {n} inputs ({', '.join(repr(t.name) for t in infos)}): "
                    "pass a list in that order or a dict by name",
                    Status.INVALID_ARGUMENT,
                )
            self._write(views[0], infos[0], inputs)

    @staticmethod
    def _write(view: np.ndarray, t: TensorInfo, x: Any) -> None:
        if t.quantization is not None and t.dtype.kind in "iu":
            a = np.asarray(x)
            if a.dtype.kind == "f":  # real values for a quantized input: quantize at the edge
                if a.shape != t.shape:
                    raise Error(f"input '{t.name}' must have shape {t.shape}, got {a.shape}", Status.SHAPE)
                np.copyto(view, _quantize(a, t), casting="unsafe")
                return
        if isinstance(x, (np.ndarray, np.generic)):
            a = np.asarray(x)
            # A byte-swapped array of the right type is accepted: copyto swaps as it copies.
            if a.dtype != t.dtype and a.dtype.newbyteorder("=") != t.dtype:
                raise Error(
                    f"input '{t.name}' must be {t.dtype}, got {a.dtype} "
                    f"(convert with x.astype(numpy.{t.dtype}))",
                    Status.DTYPE,
                )
        else:
            # Lists, scalars and foreign array types are converted when that keeps the kind of
            # number (int -> int, float -> float); float data for an int input is an error.
            try:
                a = np.asarray(x)
                if not np.can_cast(a.dtype, t.dtype, "same_kind"):
                    raise Error(
                        f"input '{t.name}' must be {t.dtype}, got {a.dtype} data", Status.DTYPE
                    )
                a = np.asarray(x, dtype=t.dtype)
            except (TypeError, ValueError, OverflowError) as e:
                raise Error(f"input '{t.name}': cannot convert to {t.dtype}: {e}", Status.DTYPE) from e
        if a.shape != t.shape:
            raise Error(
                f"input '{t.name}' must have shape {t.shape}, got {a.shape}", Status.SHAPE
            )
        # Copies element by element whatever the strides, so non-contiguous inputs need no
        # temporary, and the caller's array is never written to or aliased.
        np.copyto(view, a, casting="equiv")

    @property
    def threads(self) -> int:
        """Threads each run of this session uses."""
        st = self._state
        if st is None:
            raise Error("the session has been closed", Status.INVALID_ARGUMENT)
        return int(lib.mdl_session_threads(st.handle.ptr))

    def profile(self) -> List[NodeTiming]:
        """Per-node times of the last run, in execution order (needs ``profile=True``)."""
        if not self._profile:
            raise Error("profiling is off: create the session with profile=True", Status.INVALID_ARGUMENT)
        state = self._live()
        return [
            NodeTiming(name=n.name, op=n.op, ns=int(lib.mdl_session_node_ns(state.handle.ptr, i)))
            for i, n in enumerate(self.model.nodes)
        ]
