"""Locating ``libmdeploy.so`` and declaring its C API for ctypes.

Everything ctypes-specific lives here; the public classes in ``_model.py`` and ``_convert.py``
only use the ``lib`` object and the structures below.  The structures mirror
``include/mdeploy/mdeploy.h`` and ``include/mdeploy/convert.h`` field by field: ctypes lays them
out with the platform's C rules, so the order and types here must match the headers exactly.

The library is opened with ``ctypes.CDLL`` (not ``PyDLL``): ctypes then releases the GIL for the
duration of every foreign call, which is what lets several Python threads run sessions at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["lib", "library_path", "find_library", "find_convert_library", "convert_lib"]

MAX_RANK = 8
ERROR_MSG_SIZE = 256
CONVERT_MAX_SHAPES = 16
LOAD_COPY = 1 << 0
LOAD_METRICS = 1 << 8  # MDL_LOAD_METRICS (include/mdeploy/mdeploy.h)
LOAD_METRICS_OPS = 1 << 9  # MDL_LOAD_METRICS_OPS
LOAD_NO_DIGEST = 1 << 16  # MDL_LOAD_NO_DIGEST (include/mdeploy/security.h)
LOAD_REQUIRE_DIGEST = 1 << 17  # MDL_LOAD_REQUIRE_DIGEST
STATUS_COUNT = 13  # MDL_STATUS_COUNT (tests/test_errors.py checks it against the library)
METRICS_BUCKETS = 19  # MDL_METRICS_BUCKETS (include/mdeploy/metrics.h)
MAX_THREADS = 64  # MDL_MAX_THREADS

_LIBNAME = "libmdeploy.so"
_CONVERT_LIBNAME = "libmdeploy-convert.so"
_PKG_DIR = Path(__file__).resolve().parent
# Running from a source checkout: bindings/python/mdeploy -> repository root.
_REPO_BUILD = _PKG_DIR.parent.parent.parent / "build" / "release"


def _candidates() -> List[Path]:
    """Where the library is looked for, in order (see :func:`find_library`)."""
    out: List[Path] = []
    env = os.environ.get("MDEPLOY_LIB")
    if env:
        out.append(Path(env))
    out.append(_PKG_DIR / _LIBNAME)  # bundled by ``pip install``
    out.append(_REPO_BUILD / _LIBNAME)
    return out


def find_library() -> str:
    """Return the path of the ``libmdeploy.so`` (the runtime) this package uses.

    Order: the ``MDEPLOY_LIB`` environment variable (a path to the ``.so``); the copy bundled
    next to this package by ``pip install``; ``build/release/libmdeploy.so`` of the source tree
    the package sits in; finally the system's library search path (``make install``).
    """
    env = os.environ.get("MDEPLOY_LIB")
    if env and not Path(env).is_file():
        # An explicit setting that points nowhere is a mistake worth reporting, not skipping.
        raise OSError(f"MDEPLOY_LIB={env!r}: no such file (build the library with 'make')")
    for p in _candidates():
        if p.is_file():
            return str(p)
    found = ctypes.util.find_library("mdeploy")
    if found:
        return found
    tried = ", ".join(str(p) for p in _candidates())
    raise OSError(
        f"libmdeploy.so not found (tried {tried} and the system library path); run 'make' in the "
        "mdeploy repository or set MDEPLOY_LIB to the library's path"
    )


def find_convert_library() -> str:
    """Return the path of the ``libmdeploy-convert.so`` (the ONNX converter) this package uses.

    Order: the ``MDEPLOY_CONVERT_LIB`` environment variable; the directory of the runtime library
    (:func:`find_library`, so ``MDEPLOY_LIB=build/release/libmdeploy.so`` finds its converter);
    the copy bundled by ``pip install``; ``build/release`` of the source tree; the system's
    library search path.
    """
    env = os.environ.get("MDEPLOY_CONVERT_LIB")
    if env:
        if not Path(env).is_file():
            raise OSError(f"MDEPLOY_CONVERT_LIB={env!r}: no such file (build it with 'make')")
        return env
    tried = [Path(library_path).parent / _CONVERT_LIBNAME, _PKG_DIR / _CONVERT_LIBNAME,
             _REPO_BUILD / _CONVERT_LIBNAME]
    for p in tried:
        if p.is_file():
            return str(p)
    found = ctypes.util.find_library("mdeploy-convert")
    if found:
        return found
    raise OSError(
        f"{_CONVERT_LIBNAME} not found (tried {', '.join(map(str, tried))} and the system library "
        "path); run 'make' in the mdeploy repository or set MDEPLOY_CONVERT_LIB to its path"
    )


# ---- structures ------------------------------------------------------------------------------


class mdl_error(ctypes.Structure):
    _fields_ = [("status", ctypes.c_int), ("msg", ctypes.c_char * ERROR_MSG_SIZE)]


class mdl_allocator(ctypes.Structure):
    _fields_ = [
        ("alloc", ctypes.c_void_p),
        ("free", ctypes.c_void_p),
        ("user", ctypes.c_void_p),
    ]


class mdl_security(ctypes.Structure):  # include/mdeploy/security.h
    _fields_ = [
        ("public_keys", ctypes.c_void_p),  # npublic_keys x 32 bytes
        ("npublic_keys", ctypes.c_int32),
        ("verify", ctypes.c_void_p),  # hooks: from mdl_security_host()
        ("decryption_key", ctypes.c_void_p),  # 32 bytes or NULL
        ("decrypt", ctypes.c_void_p),
        ("user", ctypes.c_void_p),
    ]


class mdl_seal_info(ctypes.Structure):
    _fields_ = [
        ("has_seal", ctypes.c_bool),
        ("digest_checked", ctypes.c_bool),
        ("is_signed", ctypes.c_bool),
        ("signature_checked", ctypes.c_bool),
        ("encrypted", ctypes.c_bool),
        ("digest", ctypes.c_uint8 * 32),
        ("key_id", ctypes.c_uint8 * 8),
        ("security_counter", ctypes.c_uint64),
    ]


class mdl_load_options(ctypes.Structure):
    _fields_ = [
        ("allocator", ctypes.POINTER(mdl_allocator)),
        ("flags", ctypes.c_uint32),
        ("resolver", ctypes.c_void_p),  # NULL: every kernel
        ("max_arena_bytes", ctypes.c_size_t),  # limits, 0 = none (mdl_load_options_default)
        ("max_nodes", ctypes.c_int32),
        ("max_tensors", ctypes.c_int32),
        ("security", ctypes.POINTER(mdl_security)),  # keys and hooks; NULL: digest only
        ("min_counter", ctypes.c_uint64),  # anti-rollback
    ]


class mdl_shape(ctypes.Structure):
    _fields_ = [("rank", ctypes.c_int32), ("dims", ctypes.c_int64 * MAX_RANK)]


class mdl_session_options(ctypes.Structure):
    _fields_ = [
        ("allocator", ctypes.POINTER(mdl_allocator)),
        ("profile", ctypes.c_bool),
        ("ninput_shapes", ctypes.c_int32),
        ("input_shapes", ctypes.POINTER(mdl_shape)),
        ("threads", ctypes.c_int32),
        ("max_arena_bytes", ctypes.c_size_t),  # 0 = no limit (mdl_session_options_default)
    ]


class mdl_tensor_info(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("dtype", ctypes.c_int),
        ("rank", ctypes.c_int32),
        ("dims", ctypes.POINTER(ctypes.c_int64)),
        ("bytes", ctypes.c_size_t),
        ("nquant", ctypes.c_int32),
        ("quant_axis", ctypes.c_int32),
        ("scale", ctypes.POINTER(ctypes.c_float)),
        ("zero_point", ctypes.POINTER(ctypes.c_int64)),
        ("dim_names", ctypes.POINTER(ctypes.c_char_p)),
        ("dim_max", ctypes.POINTER(ctypes.c_int64)),
    ]


class mdl_node_info(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("op", ctypes.c_char_p),
        ("nin", ctypes.c_int32),
        ("nout", ctypes.c_int32),
        ("inputs", ctypes.POINTER(ctypes.c_int32)),
        ("outputs", ctypes.POINTER(ctypes.c_int32)),
        ("scratch_bytes", ctypes.c_size_t),
    ]


class mdl_input_shape(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("rank", ctypes.c_int32),
        ("dims", ctypes.c_int64 * MAX_RANK),
    ]


class mdl_quantize_options(ctypes.Structure):
    _fields_ = [
        ("mode", ctypes.c_int),
        ("calibration", ctypes.c_char_p),
        ("method", ctypes.c_int),
        ("percentile", ctypes.c_double),
        ("per_tensor", ctypes.c_bool),
        ("float_ops", ctypes.c_char_p),
        ("eval_inputs", ctypes.c_char_p),
        ("eval_labels", ctypes.c_char_p),
        ("max_accuracy_drop", ctypes.c_double),
        ("max_output_error", ctypes.c_double),
        ("max_calibration_rows", ctypes.c_int64),
        ("progress", ctypes.c_void_p),
        ("progress_user", ctypes.c_void_p),
    ]


class mdl_prune_options(ctypes.Structure):
    _fields_ = [
        ("sparsity", ctypes.c_double),
        ("layers", ctypes.c_char_p),
        ("max_density", ctypes.c_double),
        ("channels", ctypes.c_double),
    ]


class mdl_selftest_options(ctypes.Structure):
    """include/mdeploy/convert.h"""

    _fields_ = [
        ("ninputs", ctypes.c_int32),
        ("input_names", ctypes.POINTER(ctypes.c_char_p)),
        ("input_paths", ctypes.POINTER(ctypes.c_char_p)),
        ("noutputs", ctypes.c_int32),
        ("output_names", ctypes.POINTER(ctypes.c_char_p)),
        ("output_paths", ctypes.POINTER(ctypes.c_char_p)),
        ("oracle", ctypes.c_char_p),
        ("atol", ctypes.c_double),
        ("rtol", ctypes.c_double),
    ]


class mdl_convert_options(ctypes.Structure):
    _fields_ = [
        ("ninput_shapes", ctypes.c_int32),
        ("input_shapes", mdl_input_shape * CONVERT_MAX_SHAPES),
        ("nmax_shapes", ctypes.c_int32),
        ("max_shapes", mdl_input_shape * CONVERT_MAX_SHAPES),
        ("name", ctypes.c_char_p),
        ("model_version", ctypes.c_char_p),
        ("description", ctypes.c_char_p),
        ("quant", mdl_quantize_options),
        ("nmetadata", ctypes.c_int32),
        ("metadata_keys", ctypes.POINTER(ctypes.c_char_p)),
        ("metadata_values", ctypes.POINTER(ctypes.c_char_p)),
        ("prune", mdl_prune_options),
        ("selftest", mdl_selftest_options),
    ]


class mdl_convert_report(ctypes.Structure):
    _fields_ = [
        ("onnx_nodes", ctypes.c_int32),
        ("nodes_out", ctypes.c_int32),
        ("folded", ctypes.c_int32),
        ("fused", ctypes.c_int32),
        ("removed", ctypes.c_int32),
        ("weight_bytes", ctypes.c_size_t),
        ("arena_bytes", ctypes.c_size_t),
        ("file_bytes", ctypes.c_size_t),
        ("opset", ctypes.c_int64),
        ("quant", ctypes.c_void_p),  # mdl_quant_report *: read through mdl_convert_report_json
        ("nsymbols", ctypes.c_int32),
        ("dynamic", ctypes.c_char * 256),
        ("nprune_layers", ctypes.c_int32),
        ("prune_layers", ctypes.c_void_p),  # mdl_prune_layer *: read through mdl_convert_report_json
        ("json", ctypes.c_void_p),
    ]


# ---- prototypes ------------------------------------------------------------------------------

_c = ctypes
class mdl_onnx_value(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("elem_type", ctypes.c_char_p),
        ("rank", ctypes.c_int32),
        ("dims", ctypes.c_int64 * MAX_RANK),
        ("dim_params", ctypes.c_char_p * MAX_RANK),
    ]


class mdl_onnx_op(ctypes.Structure):
    _fields_ = [
        ("domain", ctypes.c_char_p),
        ("op_type", ctypes.c_char_p),
        ("count", ctypes.c_int32),
        ("first_node", ctypes.c_char_p),
        ("first_index", ctypes.c_int32),
        ("support", ctypes.c_int),
    ]


class mdl_onnx_summary(ctypes.Structure):
    _fields_ = [
        ("ir_version", ctypes.c_int64),
        ("opset", ctypes.c_int64),
        ("producer_name", ctypes.c_char_p),
        ("producer_version", ctypes.c_char_p),
        ("graph_name", ctypes.c_char_p),
        ("nnodes", ctypes.c_int32),
        ("ninitializers", ctypes.c_int32),
        ("ninputs", ctypes.c_int32),
        ("noutputs", ctypes.c_int32),
        ("inputs", ctypes.POINTER(mdl_onnx_value)),
        ("outputs", ctypes.POINTER(mdl_onnx_value)),
        ("nops", ctypes.c_int32),
        ("nunsupported", ctypes.c_int32),
        ("ops", ctypes.POINTER(mdl_onnx_op)),
        ("nmetadata", ctypes.c_int32),
        ("metadata_keys", ctypes.POINTER(ctypes.c_char_p)),
        ("metadata_values", ctypes.POINTER(ctypes.c_char_p)),
        ("internal_", ctypes.c_void_p),
    ]


class mdl_selftest_result(ctypes.Structure):
    """include/mdeploy/selftest.h"""

    _fields_ = [
        ("cases", ctypes.c_int32),
        ("passed", ctypes.c_int32),
        ("elements", ctypes.c_int64),
        ("max_abs_error", ctypes.c_double),
        ("atol", ctypes.c_float),
        ("rtol", ctypes.c_float),
        ("oracle", ctypes.c_char_p),
        ("failed_case", ctypes.c_int32),
        ("failed_output", ctypes.c_int32),
        ("failed_element", ctypes.c_int64),
        ("got", ctypes.c_double),
        ("expected", ctypes.c_double),
        ("allowed", ctypes.c_double),
    ]


class mdl_swap_options(ctypes.Structure):
    """include/mdeploy/swap.h"""

    _fields_ = [
        ("load", mdl_load_options),
        ("session", mdl_session_options),
        ("require_selftest", ctypes.c_bool),
        ("skip_selftest", ctypes.c_bool),
    ]


class mdl_swap_info(ctypes.Structure):
    """include/mdeploy/swap.h"""

    _fields_ = [
        ("id", ctypes.c_uint64),
        ("previous_id", ctypes.c_uint64),
        ("name", ctypes.c_char * 64),
        ("version", ctypes.c_char * 64),
        ("source", ctypes.c_char * 256),
        ("accepted", ctypes.c_uint64),
        ("refused", ctypes.c_uint64),
        ("rollbacks", ctypes.c_uint64),
        ("live_models", ctypes.c_int32),
    ]


class mdl_metrics(ctypes.Structure):
    """include/mdeploy/metrics.h"""

    _fields_ = [
        ("runs", ctypes.c_uint64),
        ("errors", ctypes.c_uint64 * STATUS_COUNT),
        ("latency_buckets", ctypes.c_uint64 * (METRICS_BUCKETS + 1)),
        ("latency_count", ctypes.c_uint64),
        ("latency_sum_ns", ctypes.c_uint64),
        ("ops", ctypes.c_bool),
    ]


_P = ctypes.POINTER
_vp = ctypes.c_void_p
_int = ctypes.c_int
_status = ctypes.c_int
_str = ctypes.c_char_p
_err = _P(mdl_error)

# name: (restype, argtypes).  Opaque handles (mdl_model *, mdl_session *) are c_void_p.
_PROTOTYPES: Dict[str, Tuple[Any, List[Any]]] = {
    "mdl_status_str": (_str, [_int]),
    "mdl_dtype_name": (_str, [_int]),
    "mdl_dtype_size": (_c.c_size_t, [_int]),
    "mdl_version": (_str, []),
    "mdl_load_options_default": (mdl_load_options, []),
    "mdl_model_load_buffer": (_status, [_vp, _c.c_size_t, _P(mdl_load_options), _P(_vp), _err]),
    "mdl_model_load_file": (_status, [_str, _P(mdl_load_options), _P(_vp), _err]),
    "mdl_model_load_note": (_str, [_vp]),
    "mdl_model_security_counter": (_c.c_uint64, [_vp]),
    "mdl_security_host": (mdl_security, []),
    "mdl_seal_check": (_status, [_vp, _c.c_size_t, _P(mdl_load_options), _P(mdl_seal_info), _err]),
    "mdl_sha256": (None, [_vp, _c.c_size_t, _vp]),
    "mdl_key_id": (None, [_vp, _vp]),
    "mdl_keygen": (_status, [_vp, _vp, _err]),
    "mdl_encryption_keygen": (_status, [_vp, _err]),
    "mdl_seal_sign": (_status, [_vp, _c.c_size_t, _vp, _err]),
    "mdl_seal_encrypt": (_status, [_vp, _c.c_size_t, _vp, _P(_vp), _P(_c.c_size_t), _err]),
    "mdl_key_file_write": (_status, [_str, _str, _vp, _c.c_size_t, _err]),
    "mdl_key_file_read": (_status, [_str, _str, _vp, _c.c_size_t, _err]),
    "mdl_model_free": (None, [_vp]),
    "mdl_model_arena_size": (_c.c_size_t, [_vp]),
    "mdl_model_activation_bytes": (_c.c_size_t, [_vp]),
    "mdl_model_weight_bytes": (_c.c_size_t, [_vp]),
    "mdl_model_name": (_str, [_vp]),
    "mdl_model_version": (_str, [_vp]),
    "mdl_model_producer": (_str, [_vp]),
    "mdl_model_description": (_str, [_vp]),
    "mdl_model_format_major": (_int, [_vp]),
    "mdl_model_format_minor": (_int, [_vp]),
    "mdl_model_metadata": (_str, [_vp, _str]),
    "mdl_model_metadata_count": (_int, [_vp]),
    "mdl_model_metadata_at": (_c.c_bool, [_vp, _int, _P(_str), _P(_str)]),
    "mdl_model_input_count": (_int, [_vp]),
    "mdl_model_output_count": (_int, [_vp]),
    "mdl_model_input_info": (_status, [_vp, _int, _P(mdl_tensor_info)]),
    "mdl_model_output_info": (_status, [_vp, _int, _P(mdl_tensor_info)]),
    "mdl_model_input_index": (_int, [_vp, _str]),
    "mdl_model_output_index": (_int, [_vp, _str]),
    "mdl_model_node_count": (_int, [_vp]),
    "mdl_model_tensor_count": (_int, [_vp]),
    "mdl_model_node_info": (_status, [_vp, _int, _P(mdl_node_info)]),
    "mdl_model_node_attrs": (_c.c_size_t, [_vp, _int, _c.c_char_p, _c.c_size_t]),
    "mdl_model_tensor_info": (_status, [_vp, _int, _P(mdl_tensor_info), _P(_c.c_bool)]),
    "mdl_model_symbol_count": (_int, [_vp]),
    "mdl_model_symbol": (_c.c_bool, [_vp, _int, _P(_str), _P(_c.c_int64), _P(_c.c_int64)]),
    "mdl_session_options_default": (mdl_session_options, []),
    "mdl_session_input_info": (_status, [_vp, _int, _P(mdl_tensor_info)]),
    "mdl_session_output_info": (_status, [_vp, _int, _P(mdl_tensor_info)]),
    "mdl_session_resize": (_status, [_vp, _int, _P(mdl_shape), _err]),
    "mdl_session_create": (_status, [_vp, _P(mdl_session_options), _P(_vp), _err]),
    "mdl_session_free": (None, [_vp]),
    "mdl_session_input_data": (_vp, [_vp, _int]),
    "mdl_session_output_data": (_vp, [_vp, _int]),
    "mdl_session_set_input": (_status, [_vp, _int, _vp, _c.c_size_t, _err]),
    "mdl_session_get_output": (_status, [_vp, _int, _vp, _c.c_size_t, _err]),
    "mdl_session_run": (_status, [_vp]),
    "mdl_session_message": (_str, [_vp]),
    "mdl_session_node_ns": (_c.c_uint64, [_vp, _int]),
    "mdl_session_threads": (_int, [_vp]),
    "mdl_metrics_bucket_ns": (_c.c_uint64, [_int]),
    "mdl_model_metrics": (_status, [_vp, _P(mdl_metrics)]),
    "mdl_model_metrics_op": (_c.c_bool, [_vp, _int, _P(_str), _P(_c.c_uint64)]),
    "mdl_metrics_count_failure": (None, [_vp, _int]),
    "mdl_metrics_prometheus": (_c.c_size_t, [_P(_vp), _int, _c.c_char_p, _c.c_size_t]),
    "mdl_model_selftest_count": (_int, [_vp]),
    "mdl_model_selftest": (_status, [_vp, _P(mdl_selftest_result), _err]),
    "mdl_session_model": (_vp, [_vp]),
    "mdl_swap_options_default": (mdl_swap_options, []),
    "mdl_swap_create_file": (_status, [_str, _P(mdl_swap_options), _P(_vp), _err]),
    "mdl_swap_create_buffer": (_status, [_vp, _c.c_size_t, _P(mdl_swap_options), _P(_vp), _err]),
    "mdl_swap_free": (None, [_vp]),
    "mdl_swap_load_file": (_status, [_vp, _str, _P(mdl_load_options), _err]),
    "mdl_swap_load_buffer": (_status, [_vp, _vp, _c.c_size_t, _P(mdl_load_options), _err]),
    "mdl_swap_rollback": (_status, [_vp, _err]),
    "mdl_swap_acquire": (_status, [_vp, _P(_vp), _err]),
    "mdl_swap_release": (None, [_vp, _vp]),
    "mdl_swap_info_get": (_status, [_vp, _P(mdl_swap_info)]),
}

# The converter's API, in its own library (libmdeploy-convert.so: it needs protobuf-c, which the
# runtime does not), loaded on first use by convert_lib().
_CONVERT_PROTOTYPES: Dict[str, Tuple[Any, List[Any]]] = {
    "mdl_convert_options_default": (mdl_convert_options, []),
    "mdl_parse_input_shape": (_status, [_str, _P(mdl_input_shape), _err]),
    "mdl_convert_onnx": (
        _status,
        [_str, _str, _P(mdl_convert_options), _P(mdl_convert_report), _err],
    ),
    "mdl_convert_report_json": (_c.c_char_p, [_P(mdl_convert_report)]),
    "mdl_convert_report_free": (None, [_P(mdl_convert_report)]),
    "mdl_onnx_summarize": (_status, [_str, _P(_P(mdl_onnx_summary)), _err]),
    "mdl_onnx_summary_free": (None, [_P(mdl_onnx_summary)]),
    "mdl_eval_top1": (
        _status,
        [_c.c_void_p, _c.c_size_t, _str, _str, _P(_c.c_double), _P(_c.c_int64), _err],
    ),
}


def _open(path: str, prototypes: Dict[str, Tuple[Any, List[Any]]]) -> ctypes.CDLL:
    handle = ctypes.CDLL(path)
    for name, (restype, argtypes) in prototypes.items():
        try:
            fn = getattr(handle, name)
        except AttributeError:
            raise OSError(f"{path}: symbol {name} missing (library too old?)") from None
        fn.restype = restype
        fn.argtypes = argtypes
    return handle


def _load() -> Tuple[ctypes.CDLL, str]:
    path = find_library()
    return _open(path, _PROTOTYPES), path


_convert_handle: Optional[ctypes.CDLL] = None
convert_library_path: Optional[str] = None  #: set by the first convert_lib() call


def convert_lib() -> ctypes.CDLL:
    """The converter library (``libmdeploy-convert.so``), opened on first use; ``OSError`` naming
    where it was looked for when it cannot be found."""
    global _convert_handle, convert_library_path
    if _convert_handle is None:
        path = find_convert_library()
        _convert_handle = _open(path, _CONVERT_PROTOTYPES)
        convert_library_path = path
    return _convert_handle


def decode(s: Optional[bytes]) -> str:
    """A C string from the library as ``str`` (``""`` for NULL); invalid UTF-8 is replaced."""
    return s.decode("utf-8", "replace") if s else ""


lib, library_path = _load()
