"""ONNX Runtime through its C API, from Python with ctypes: no Python-side work in a run.

The `onnxruntime` wheel ships the C library (onnxruntime/capi/libonnxruntime.so.*) but not its
header.  The C API is a table of function pointers (OrtApi) reached through OrtGetApiBase();
the table only ever grows at the end and old versions stay available, so the slot numbers of
the functions used here are fixed for every release since API version 11 (ORT 1.11).  The slot
layout is checked at load (CreateStatus/GetErrorCode/GetErrorMessage round trip, and a version
string from OrtApiBase); the harness further checks ORT's outputs against the fixtures'
stored reference outputs.
"""
import ctypes
import glob
import importlib.util
import os

import numpy as np

API_VERSION = 11

# OrtApi slot numbers (index of the function pointer in the table).
SLOT = {
    "CreateStatus": 0, "GetErrorCode": 1, "GetErrorMessage": 2, "CreateEnv": 3, "CreateSession": 7,
    "Run": 9, "CreateSessionOptions": 10, "SetSessionExecutionMode": 13,
    "SetSessionGraphOptimizationLevel": 23, "SetIntraOpNumThreads": 24, "SetInterOpNumThreads": 25,
    "CreateTensorWithDataAsOrtValue": 49, "GetTensorMutableData": 51, "GetTensorElementType": 60,
    "GetDimensionsCount": 61, "GetDimensions": 62, "GetTensorTypeAndShape": 65, "CreateCpuMemoryInfo": 69,
    "ReleaseEnv": 92, "ReleaseStatus": 93, "ReleaseMemoryInfo": 94, "ReleaseSession": 95, "ReleaseValue": 96,
    "ReleaseTensorTypeAndShapeInfo": 99, "ReleaseSessionOptions": 100,
}

P = ctypes.c_void_p
PP = ctypes.POINTER(ctypes.c_void_p)
SZ = ctypes.c_size_t
I = ctypes.c_int
STR = ctypes.c_char_p
STRS = ctypes.POINTER(ctypes.c_char_p)

# (restype, argtypes) of each function used
SIG = {
    "CreateStatus": (P, [I, STR]),
    "GetErrorCode": (I, [P]),
    "GetErrorMessage": (STR, [P]),
    "CreateEnv": (P, [I, STR, PP]),
    "CreateSession": (P, [P, STR, P, PP]),
    "Run": (P, [P, P, STRS, PP, SZ, STRS, SZ, PP]),
    "CreateSessionOptions": (P, [PP]),
    "SetSessionExecutionMode": (P, [P, I]),
    "SetSessionGraphOptimizationLevel": (P, [P, I]),
    "SetIntraOpNumThreads": (P, [P, I]),
    "SetInterOpNumThreads": (P, [P, I]),
    "CreateTensorWithDataAsOrtValue": (P, [P, P, SZ, ctypes.POINTER(ctypes.c_int64), SZ, I, PP]),
    "GetTensorMutableData": (P, [P, PP]),
    "GetTensorElementType": (P, [P, ctypes.POINTER(I)]),
    "GetDimensionsCount": (P, [P, ctypes.POINTER(SZ)]),
    "GetDimensions": (P, [P, ctypes.POINTER(ctypes.c_int64), SZ]),
    "GetTensorTypeAndShape": (P, [P, PP]),
    "CreateCpuMemoryInfo": (P, [I, I, PP]),
    "ReleaseEnv": (None, [P]), "ReleaseStatus": (None, [P]), "ReleaseMemoryInfo": (None, [P]),
    "ReleaseSession": (None, [P]), "ReleaseValue": (None, [P]), "ReleaseTensorTypeAndShapeInfo": (None, [P]),
    "ReleaseSessionOptions": (None, [P]),
}

ORT_LOGGING_LEVEL_ERROR = 3
ORT_SEQUENTIAL = 0
ORT_ENABLE_ALL = 99
ORT_ARENA_ALLOCATOR = 1
ORT_MEM_TYPE_DEFAULT = 0

# ONNX element type <-> NumPy
ONNX_TO_NP = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 9: np.bool_, 11: np.float64}
NP_TO_ONNX = {np.dtype(v): k for k, v in ONNX_TO_NP.items()}


class OrtError(RuntimeError):
    pass


def find_library():
    """Path of the C library inside the installed onnxruntime package (not imported), or None."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return None
    for d in spec.submodule_search_locations:
        libs = sorted(glob.glob(os.path.join(d, "capi", "libonnxruntime.so*")))
        if libs:
            return libs[-1]
    return None


class _ApiBase(ctypes.Structure):
    _fields_ = [("GetApi", ctypes.CFUNCTYPE(P, ctypes.c_uint32)), ("GetVersionString", ctypes.CFUNCTYPE(STR))]


class OrtCApi:
    def __init__(self, path=None):
        self.path = path or find_library()
        if not self.path:
            raise OrtError("onnxruntime's C library (onnxruntime/capi/libonnxruntime.so*) not found")
        self.lib = ctypes.CDLL(self.path)
        self.lib.OrtGetApiBase.restype = ctypes.POINTER(_ApiBase)
        base = self.lib.OrtGetApiBase().contents
        self.version = base.GetVersionString().decode()
        api = base.GetApi(API_VERSION)
        if not api:
            raise OrtError(f"onnxruntime {self.version} does not offer C API version {API_VERSION}")
        table = ctypes.cast(api, ctypes.POINTER(ctypes.c_void_p))
        self.addr = {name: table[slot] for name, slot in SLOT.items()}
        self.fn = {}
        for name, (res, args) in SIG.items():
            self.fn[name] = ctypes.CFUNCTYPE(res, *args)(self.addr[name])
        # slot-layout check: a status made with code 6 and a message must read back the same
        st = self.fn["CreateStatus"](6, b"slot check")
        ok = self.fn["GetErrorCode"](st) == 6 and self.fn["GetErrorMessage"](st) == b"slot check"
        self.fn["ReleaseStatus"](st)
        if not ok:
            raise OrtError(f"onnxruntime {self.version}: unexpected C API table layout")
        self.env = P()
        self.check(self.fn["CreateEnv"](ORT_LOGGING_LEVEL_ERROR, b"mdeploy-bench", ctypes.byref(self.env)))
        self.meminfo = P()
        self.check(self.fn["CreateCpuMemoryInfo"](ORT_ARENA_ALLOCATOR, ORT_MEM_TYPE_DEFAULT, ctypes.byref(self.meminfo)))

    def check(self, status, what=""):
        if status:
            msg = self.fn["GetErrorMessage"](status).decode(errors="replace")
            self.fn["ReleaseStatus"](status)
            raise OrtError(f"onnxruntime{': ' + what if what else ''}: {msg}")

    def tensor(self, arr):
        """An OrtValue over arr's memory (arr must stay alive and C-contiguous)."""
        shape = (ctypes.c_int64 * max(1, arr.ndim))(*arr.shape)
        v = P()
        self.check(self.fn["CreateTensorWithDataAsOrtValue"](self.meminfo, arr.ctypes.data, arr.nbytes, shape, arr.ndim,
                                                             NP_TO_ONNX[arr.dtype], ctypes.byref(v)))
        return v

    def to_numpy(self, value):
        info = P()
        self.check(self.fn["GetTensorTypeAndShape"](value, ctypes.byref(info)))
        try:
            et, n = I(), SZ()
            self.check(self.fn["GetTensorElementType"](info, ctypes.byref(et)))
            self.check(self.fn["GetDimensionsCount"](info, ctypes.byref(n)))
            dims = (ctypes.c_int64 * max(1, n.value))()
            self.check(self.fn["GetDimensions"](info, dims, n.value))
        finally:
            self.fn["ReleaseTensorTypeAndShapeInfo"](info)
        shape = tuple(dims[i] for i in range(n.value))
        data = P()
        self.check(self.fn["GetTensorMutableData"](value, ctypes.byref(data)))
        dt = np.dtype(ONNX_TO_NP[et.value])
        count = int(np.prod(shape)) if shape else 1
        buf = (ctypes.c_char * (count * dt.itemsize)).from_address(data.value) if count else b""
        return np.frombuffer(bytes(buf), dtype=dt).reshape(shape).copy()

    def session(self, onnx_path, threads=1):
        return OrtSession(self, onnx_path, threads)


class OrtSession:
    """One session: one intra-op thread, all graph optimizations, sequential execution."""

    def __init__(self, api, onnx_path, threads=1):
        self.api = api
        f = api.fn
        opts = P()
        api.check(f["CreateSessionOptions"](ctypes.byref(opts)))
        try:
            api.check(f["SetIntraOpNumThreads"](opts, threads))
            api.check(f["SetInterOpNumThreads"](opts, 1))
            api.check(f["SetSessionGraphOptimizationLevel"](opts, ORT_ENABLE_ALL))
            api.check(f["SetSessionExecutionMode"](opts, ORT_SEQUENTIAL))
            self.handle = P()
            api.check(f["CreateSession"](api.env, os.fsencode(onnx_path), opts, ctypes.byref(self.handle)), onnx_path)
        finally:
            f["ReleaseSessionOptions"](opts)
        self.in_values, self.out_values, self.inputs, self.outputs = [], [], [], []

    def bind(self, input_names, inputs, output_names):
        """Binds inputs (NumPy arrays, kept alive here), runs once letting ORT allocate the
        outputs, then binds pre-allocated outputs of those shapes for the timed runs.  Returns
        the first run's outputs."""
        api = self.api
        self.inputs = [np.ascontiguousarray(a) for a in inputs]
        self.in_names = (STR * len(input_names))(*[n.encode() for n in input_names])
        self.in_values = [api.tensor(a) for a in self.inputs]
        self.in_array = (P * len(self.in_values))(*[v.value for v in self.in_values])
        self.out_names = (STR * len(output_names))(*[n.encode() for n in output_names])
        self.nin, self.nout = len(self.inputs), len(output_names)
        tmp = (P * self.nout)()
        self.run_raw(tmp)
        first = []
        for i in range(self.nout):
            first.append(api.to_numpy(tmp[i]))
            api.fn["ReleaseValue"](tmp[i])
        self.outputs = [np.zeros_like(a) for a in first]
        self.out_values = [api.tensor(a) for a in self.outputs]
        self.out_array = (P * self.nout)(*[v.value for v in self.out_values])
        return first

    def run_raw(self, out_array):
        self.api.check(self.api.fn["Run"](self.handle, None, self.in_names, self.in_array, self.nin, self.out_names,
                                          self.nout, out_array), "Run")

    def run(self):
        self.run_raw(self.out_array)
        return self.outputs

    def close(self):
        f = self.api.fn
        for v in self.in_values + self.out_values:
            f["ReleaseValue"](v)
        self.in_values, self.out_values = [], []
        if self.handle:
            f["ReleaseSession"](self.handle)
            self.handle = P()
