#!/usr/bin/env python3
"""mdeploy side by side with ONNX Runtime on the same ONNX files, in one run.

For each model: convert it with mdeploy-convert, load it in both runtimes in this process, check
that their outputs agree, then time both with the same C timing loop (bench/timeloop.c), in
alternating blocks of iterations (ABBA order) so that machine noise hits both.  mdeploy is called
through libmdeploy.so's C API, ONNX Runtime through its C API (the libonnxruntime.so that the
onnxruntime wheel ships; see ort_capi.py).  When that library is not usable, both are timed from
Python with the same loop (mdeploy through ctypes, ORT through InferenceSession.run); the output
says which.  Settings: one intra-op thread for ORT (inter-op 1, ORT_ENABLE_ALL, sequential
execution), OPENBLAS_NUM_THREADS=1 for mdeploy.

Also per model: mdeploy-bench (native C timing and its per-operator profile), and separate
fresh processes that measure load + session creation time and peak resident memory of each
runtime alone.  Plus a 1-node model (the fixed per-run cost of each runtime), the Python/ctypes
call overhead (not part of any ratio), and this CPU's float32 FMA peak (bench/peak.c) with the
fraction of it the largest GEMM/conv layers reach.

Writes RESULTS/bench.json, RESULTS/bench.md and RESULTS/ratios.png (default bench/results/).

usage: python3 bench/harness.py BUILD_DIR [--quick] [--budget S] [--models a,b,...] [--out DIR]
"""
import argparse
import ctypes
import datetime
import json
import os
import platform
import subprocess
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CACHE = os.path.join(HERE, "cache")
sys.path.insert(0, HERE)

import int8  # noqa: E402
import ort_capi  # noqa: E402

# ---- the models ------------------------------------------------------------------------------

SMALL_TARGET = "≤ 1.0 (aim 0.7)"
# models that also get rows at 2 threads, mdeploy and ORT side by side (bench_threads)
THREAD_MODELS = ["mlp_b64", "image_classifier", "mnist_cnn", "recommender"]
CONV_TARGET = "≤ 1.5"

# name, label, where its ONNX/inputs come from, target
MODELS = [
    ("mlp", "MLP 784-64-64-1, batch 1", "fixture", SMALL_TARGET),
    ("mlp_b64", "MLP, batch 64", "fixture", "report"),
    ("mnist_cnn", "MNIST CNN, batch 1", "fixture", SMALL_TARGET),
    ("text_lstm", "text classifier (Embedding+LSTM), batch 1", "fixture", SMALL_TARGET),
    ("recommender", "recommender, batch 64", "fixture", SMALL_TARGET),
    ("image_classifier", "image classifier 150x150x3, batch 1", "export", CONV_TARGET),
    ("mobilenet_v2", "MobileNetV2 224x224, batch 1", "export", CONV_TARGET),
    ("resnet18", "ResNet-18 224x224, batch 1", "export", CONV_TARGET),
    ("bert", "BERT-style encoder (2 layers, hidden 64, 4 heads, seq 128), batch 1", "fixture", "report"),
]

MDL_DTYPES = [np.float32, np.int8, np.uint8, np.int32, np.int64]  # mdl_dtype order


def model_specs(names):
    manifest = json.load(open(os.path.join(ROOT, "tests", "models", "manifest.json")))
    fixtures = {f["name"]: f for f in manifest["fixtures"]}
    # PyTorch exports (tests/models/make_torch_fixtures.py): the BERT-style encoder
    torch_manifest = os.path.join(ROOT, "tests", "models", "torch", "manifest.json")
    if os.path.exists(torch_manifest):
        fixtures.update({f["name"]: f for f in json.load(open(torch_manifest))["fixtures"]})
    specs = []
    for name, label, source, target in MODELS:
        if names and name not in names:
            continue
        if source == "fixture":
            f = fixtures.get(name)
            if not f:
                print(f"bench: fixture '{name}' not in tests/models/manifest.json: skipped")
                continue
            spec = dict(onnx=os.path.join(ROOT, f["onnx"]), shapes=f["input_shapes"],
                        inputs=[os.path.join(ROOT, i["file"]) for i in f["inputs"]],
                        refs=[os.path.join(ROOT, o["file"]) for o in f["outputs"]])
        else:
            spec = dict(onnx=os.path.join(CACHE, name + ".onnx"), shapes=[],
                        inputs=[os.path.join(CACHE, name + ".in0.npy")], refs=[])
        spec.update(name=name, label=label, target=target, kind="conv" if target == CONV_TARGET else "small")
        specs.append(spec)
    return specs


def onnx_io(path):
    import onnx

    g = onnx.load(path, load_external_data=False).graph
    init = {t.name for t in g.initializer}
    return [i.name for i in g.input if i.name not in init], [o.name for o in g.output]


def tiny_model():
    """A 1-node ONNX model (Relu on 16 floats): the fixed cost of one run of each runtime."""
    import onnx
    from onnx import TensorProto, helper

    path = os.path.join(CACHE, "tiny_relu.onnx")
    if not os.path.exists(path):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])
        g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "tiny_relu", [x], [y])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 7
        onnx.save(m, path)
        np.save(os.path.join(CACHE, "tiny_relu.in0.npy"),
                np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32))
    return dict(name="tiny_relu", label="1 node (Relu, 16 floats)", onnx=path, shapes=[],
                inputs=[os.path.join(CACHE, "tiny_relu.in0.npy")], refs=[], target="report", kind="tiny")


# ---- helpers built at bench time -------------------------------------------------------------

def build_helper(build, src, out, flags):
    out = os.path.join(build, "bench", out)
    src = os.path.join(HERE, src)
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        subprocess.run([os.environ.get("CC", "cc")] + flags + ["-o", out, src], check=True)
    return out


def convert(build, spec):
    out_dir = os.path.join(CACHE, "mdl")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, spec["name"] + ".mdl")
    cmd = [os.path.join(build, "bin", "mdeploy-convert"), spec["onnx"], "-o", out, "-q"]
    for s in spec["shapes"]:
        cmd += ["--input-shape", s]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError((r.stderr or r.stdout).strip())
    return out


# ---- mdeploy through ctypes ------------------------------------------------------------------

class MdlError(ctypes.Structure):
    _fields_ = [("status", ctypes.c_int), ("msg", ctypes.c_char * 256)]


class MdlTensorInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("dtype", ctypes.c_int), ("rank", ctypes.c_int32),
                ("dims", ctypes.POINTER(ctypes.c_int64)), ("bytes", ctypes.c_size_t), ("nquant", ctypes.c_int32),
                ("quant_axis", ctypes.c_int32), ("scale", ctypes.c_void_p), ("zero_point", ctypes.c_void_p),
                ("dim_names", ctypes.c_void_p), ("dim_max", ctypes.c_void_p)]  # as in mdeploy.h


class MdlSessionOptions(ctypes.Structure):
    # include/mdeploy/mdeploy.h: mdl_session_options
    _fields_ = [("allocator", ctypes.c_void_p), ("profile", ctypes.c_bool),
                ("ninput_shapes", ctypes.c_int32), ("input_shapes", ctypes.c_void_p),
                ("threads", ctypes.c_int32), ("max_arena_bytes", ctypes.c_size_t)]


class Mdl:
    def __init__(self, path):
        self.path = path
        L = self.lib = ctypes.CDLL(path)
        P, I = ctypes.c_void_p, ctypes.c_int
        for name, res, args in [
            ("mdl_model_load_file", I, [ctypes.c_char_p, P, ctypes.POINTER(P), ctypes.POINTER(MdlError)]),
            ("mdl_session_create", I, [P, P, ctypes.POINTER(P), ctypes.POINTER(MdlError)]),
            ("mdl_session_options_default", MdlSessionOptions, []),
            ("mdl_session_run", I, [P]), ("mdl_session_message", ctypes.c_char_p, [P]),
            ("mdl_session_input_data", P, [P, I]), ("mdl_session_output_data", P, [P, I]),
            ("mdl_model_input_count", I, [P]), ("mdl_model_output_count", I, [P]),
            ("mdl_model_input_info", I, [P, I, ctypes.POINTER(MdlTensorInfo)]),
            ("mdl_model_output_info", I, [P, I, ctypes.POINTER(MdlTensorInfo)]),
            ("mdl_session_input_info", I, [P, I, ctypes.POINTER(MdlTensorInfo)]),
            ("mdl_session_output_info", I, [P, I, ctypes.POINTER(MdlTensorInfo)]),
            ("mdl_model_arena_size", ctypes.c_size_t, [P]), ("mdl_model_weight_bytes", ctypes.c_size_t, [P]),
            ("mdl_session_free", None, [P]), ("mdl_model_free", None, [P]), ("mdl_version", ctypes.c_char_p, []),
        ]:
            fn = getattr(L, name)
            fn.restype, fn.argtypes = res, args
        self.version = L.mdl_version().decode()

    def open(self, path, threads=1):
        err = MdlError()
        m, s = ctypes.c_void_p(), ctypes.c_void_p()
        if self.lib.mdl_model_load_file(os.fsencode(path), None, ctypes.byref(m), ctypes.byref(err)):
            raise RuntimeError(err.msg.decode(errors="replace"))
        opts = None
        if threads != 1:
            opts = self.lib.mdl_session_options_default()
            opts.threads = threads
            opts = ctypes.byref(opts)
        if self.lib.mdl_session_create(m, opts, ctypes.byref(s), ctypes.byref(err)):
            self.lib.mdl_model_free(m)
            raise RuntimeError(err.msg.decode(errors="replace"))
        return m, s

    def infos(self, m, s, output=False):
        # the session's shapes: concrete also where the model has dynamic dims
        n = (self.lib.mdl_model_output_count if output else self.lib.mdl_model_input_count)(m)
        get = self.lib.mdl_session_output_info if output else self.lib.mdl_session_input_info
        out = []
        for i in range(n):
            ti = MdlTensorInfo()
            get(s, i, ctypes.byref(ti))
            out.append(dict(name=ti.name.decode(), dtype=np.dtype(MDL_DTYPES[ti.dtype]),
                            shape=tuple(ti.dims[d] for d in range(ti.rank)), bytes=ti.bytes))
        return out

    def outputs(self, m, s):
        res = []
        for i, info in enumerate(self.infos(m, s, output=True)):
            p = self.lib.mdl_session_output_data(s, i)
            buf = (ctypes.c_char * info["bytes"]).from_address(p)
            res.append(np.frombuffer(bytes(buf), dtype=info["dtype"]).reshape(info["shape"]))
        return res

    def close(self, m, s):
        self.lib.mdl_session_free(s)
        self.lib.mdl_model_free(m)


# ---- the two runtimes behind one timing interface -------------------------------------------

class MdlRunner:
    """mdeploy session with its inputs kept outside the arena (copied in before each run)."""

    def __init__(self, mdl, path, inputs, threads=1):
        self.mdl, self.path = mdl, path
        self.m, self.s = mdl.open(path, threads)
        infos = mdl.infos(self.m, self.s)
        if len(infos) != len(inputs):
            raise RuntimeError(f"mdeploy model has {len(infos)} inputs, {len(inputs)} given")
        self.src = []
        for info, a in zip(infos, inputs):
            if int(np.prod(a.shape)) * info["dtype"].itemsize != info["bytes"]:
                raise RuntimeError(f"input '{info['name']}': {a.shape} does not fit {info['shape']}")
            self.src.append(np.ascontiguousarray(a.astype(info["dtype"]).reshape(info["shape"])))
        self.dst = [mdl.lib.mdl_session_input_data(self.s, i) for i in range(len(infos))]
        n = len(self.src)
        self.c_dst = (ctypes.c_void_p * max(1, n))(*self.dst)
        self.c_src = (ctypes.c_void_p * max(1, n))(*[a.ctypes.data for a in self.src])
        self.c_bytes = (ctypes.c_size_t * max(1, n))(*[a.nbytes for a in self.src])
        self.run_addr = ctypes.cast(mdl.lib.mdl_session_run, ctypes.c_void_p)

    def run(self):
        for d, a in zip(self.dst, self.src):
            ctypes.memmove(d, a.ctypes.data, a.nbytes)
        if self.mdl.lib.mdl_session_run(self.s):
            raise RuntimeError(self.mdl.lib.mdl_session_message(self.s).decode(errors="replace"))
        return self.mdl.outputs(self.m, self.s)

    def c_loop(self, tl, iters, buf):
        st = tl.tl_mdl(self.run_addr, self.s, len(self.src), self.c_dst, self.c_src, self.c_bytes, iters, buf)
        if st:
            raise RuntimeError(self.mdl.lib.mdl_session_message(self.s).decode(errors="replace"))

    def py_loop(self, iters, out):
        run, s, pc = self.mdl.lib.mdl_session_run, self.s, time.perf_counter_ns
        pairs = list(zip(self.dst, [a.ctypes.data for a in self.src], [a.nbytes for a in self.src]))
        mm = ctypes.memmove
        for _ in range(iters):
            for d, a, n in pairs:
                mm(d, a, n)
            t0 = pc()
            run(s)
            out.append(pc() - t0)

    def close(self):
        self.mdl.close(self.m, self.s)


class OrtCRunner:
    def __init__(self, api, path, input_names, inputs, output_names, threads=1):
        self.api = api
        self.sess = api.session(path, threads=threads)
        self.first = self.sess.bind(input_names, inputs, output_names)
        self.run_addr = ctypes.c_void_p(api.addr["Run"])

    def run(self):
        return [a.copy() for a in self.sess.run()]

    def c_loop(self, tl, iters, buf):
        s = self.sess
        st = tl.tl_ort(self.run_addr, s.handle, s.in_names, s.in_array, s.nin, s.out_names, s.nout, s.out_array, iters,
                       buf)
        if st:
            self.api.check(st, "Run")

    def close(self):
        self.sess.close()


class OrtPyRunner:
    """Fallback: onnxruntime's Python API (used only when its C library cannot be called)."""

    def __init__(self, path, input_names, inputs, output_names, threads=1):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.feed = dict(zip(input_names, inputs))
        self.first = self.sess.run(None, self.feed)

    def run(self):
        return self.sess.run(None, self.feed)

    def py_loop(self, iters, out):
        run, feed, pc = self.sess.run, self.feed, time.perf_counter_ns
        for _ in range(iters):
            t0 = pc()
            run(None, feed)
            out.append(pc() - t0)

    def close(self):
        self.sess = None


def openblas_info():
    """The OpenBLAS that libmdeploy.so pulled into this process (None for a BLAS=0 build): the
    core its runtime dispatch chose.  Old OpenBLAS releases fall back to a generic SSE3 core
    ("Prescott") on CPUs newer than themselves, which costs large GEMMs several times."""
    try:
        maps = open("/proc/self/maps").read()
    except OSError:
        return None
    paths = sorted({line.split()[-1] for line in maps.splitlines() if "libopenblas" in line and "/" in line})
    if not paths:
        return None
    lib = ctypes.CDLL(paths[0])
    info = dict(library=paths[0], env_coretype=os.environ.get("OPENBLAS_CORETYPE", ""))
    for key, fn in (("core", "openblas_get_corename"), ("config", "openblas_get_config")):
        try:
            f = getattr(lib, fn)
            f.restype = ctypes.c_char_p
            info[key] = f().decode()
        except AttributeError:
            info[key] = ""
    return info


def cpu_flags():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def load_timeloop(build):
    path = build_helper(build, "timeloop.c", "libtimeloop.so", ["-O2", "-shared", "-fPIC"])
    tl = ctypes.CDLL(path)
    P, I, SZ = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
    U64P = ctypes.POINTER(ctypes.c_uint64)
    tl.tl_mdl.restype, tl.tl_mdl.argtypes = I, [P, P, I, P, P, P, I, U64P]
    tl.tl_ort.restype, tl.tl_ort.argtypes = P, [P, P, P, P, SZ, P, SZ, P, I, U64P]
    tl.tl_clock_floor.restype, tl.tl_clock_floor.argtypes = ctypes.c_uint64, [I]
    return tl


def timed_block(runner, tl, iters, out):
    if tl is not None:
        buf = (ctypes.c_uint64 * iters)()
        runner.c_loop(tl, iters, buf)
        out.extend(buf)
    else:
        runner.py_loop(iters, out)


def stats(ns):
    a = np.sort(np.asarray(ns, dtype=np.float64)) / 1e6
    pct = lambda q: float(a[min(len(a) - 1, max(0, int(np.ceil(q * len(a))) - 1))])  # noqa: E731
    return dict(n=len(a), min=float(a[0]), median=pct(0.5), mean=float(a.mean()), p90=pct(0.9), p99=pct(0.99),
                max=float(a[-1]))


def settle(limit_s=0.2):
    """Waits (up to limit_s) until no other thread of this process is running.  A runtime's
    worker threads may keep spinning after its block (ONNX Runtime's do for 10-20 ms after a run
    at intra_op_num_threads=2) and would then share the cores with the next runner's threads:
    measured, mdeploy at 2 threads right after an ORT block ran 1.5-2.5x slower than alone.  Each
    block therefore starts with the process's own threads idle."""
    me = str(threading.get_native_id())
    t_end = time.perf_counter() + limit_s
    while time.perf_counter() < t_end:
        busy = False
        for tid in os.listdir("/proc/self/task"):
            if tid == me:
                continue
            try:
                stat = open(f"/proc/self/task/{tid}/stat").read()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[0] == "R":
                busy = True
                break
        if not busy:
            return
        time.sleep(0.001)


def interleaved(runners, tl, budget, block_s=0.02):
    """Warm both up, then alternate blocks (A B B A ...) until budget seconds are spent.  Blocks
    last about block_s each so both see the same stretch of machine state; each starts once the
    previous runner's threads are idle (settle)."""
    per = []
    for r in runners:
        warm = []
        t_end = time.perf_counter() + min(0.3, budget / 10)
        while time.perf_counter() < t_end or len(warm) < 5:
            timed_block(r, tl, 1, warm)
        per.append(float(np.median(warm)) / 1e9)
    sizes = [max(1, int(block_s / max(p, 1e-7))) for p in per]
    times = [[] for _ in runners]
    t_end = time.perf_counter() + budget
    rnd = 0
    while time.perf_counter() < t_end or min(len(t) for t in times) < 10:
        order = range(len(runners)) if rnd % 2 == 0 else reversed(range(len(runners)))
        for i in order:
            settle()
            timed_block(runners[i], tl, sizes[i], times[i])
        rnd += 1
    return [stats(t) for t in times], rnd


def agreement(got, ref):
    worst = 0.0
    for g, r in zip(got, ref):
        g, r = np.asarray(g, np.float64), np.asarray(r, np.float64)
        if g.size != r.size:
            return float("inf")
        worst = max(worst, float(np.max(np.abs(g.ravel() - r.ravel()))) / max(1.0, float(np.max(np.abs(r)))))
    return worst


# ---- fresh-process probes: load/session time and peak memory --------------------------------

def _status():
    out = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0]) * 1024
    return out


def probe_main(a):
    """Runs in its own process: one runtime, one model.  The baseline is taken once the runtime
    is ready to load a model: its library mapped and, for ORT, its environment created (a
    one-time cost of a process, measured apart as env_rss/env_ms; the Python API creates it at
    import).  The peak (VmHWM, reset through /proc/self/clear_refs) covers model load, session
    creation and 10 runs on zero inputs (zero ids are valid for any embedding)."""
    spec = json.loads(a.spec)
    inputs = [np.zeros(s, dtype=np.dtype(d)) for s, d in zip(spec["shapes"], spec["dtypes"])]
    res = {}

    def trim():
        # free heap pages go back first, so memory reused from the interpreter's heap does not
        # hide what the runtime allocates
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except AttributeError:
            pass

    if a.runtime == "mdeploy":
        mdl = Mdl(a.lib)
    elif a.runtime == "ort":
        ctypes.CDLL(a.lib)
        trim()
        before = _status()["VmRSS"]
        t0 = time.perf_counter_ns()
        api = ort_capi.OrtCApi(a.lib)
        res.update(env_ms=(time.perf_counter_ns() - t0) / 1e6, env_rss=_status()["VmRSS"] - before)
    else:
        import onnxruntime
    trim()
    base = _status()["VmRSS"]
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    if a.runtime == "mdeploy":
        err = MdlError()
        m, s = ctypes.c_void_p(), ctypes.c_void_p()
        t0 = time.perf_counter_ns()
        if mdl.lib.mdl_model_load_file(os.fsencode(a.model), None, ctypes.byref(m), ctypes.byref(err)):
            raise RuntimeError(err.msg.decode())
        t1 = time.perf_counter_ns()
        if mdl.lib.mdl_session_create(m, None, ctypes.byref(s), ctypes.byref(err)):
            raise RuntimeError(err.msg.decode())
        t2 = time.perf_counter_ns()
        res.update(load_ms=(t1 - t0) / 1e6, session_ms=(t2 - t1) / 1e6)
        for _ in range(10):
            for i, x in enumerate(inputs):
                ctypes.memmove(mdl.lib.mdl_session_input_data(s, i), x.ctypes.data, x.nbytes)
            if mdl.lib.mdl_session_run(s):
                raise RuntimeError(mdl.lib.mdl_session_message(s).decode())
    elif a.runtime == "ortpy":
        t1 = time.perf_counter_ns()
        so = onnxruntime.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
        so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        sess = onnxruntime.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
        t2 = time.perf_counter_ns()
        res.update(load_ms=0.0, session_ms=(t2 - t1) / 1e6)
        feed = dict(zip(spec["names"], inputs))
        for _ in range(10):
            sess.run(None, feed)
    else:
        t1 = time.perf_counter_ns()
        sess = api.session(a.model, threads=1)
        t2 = time.perf_counter_ns()
        res.update(load_ms=0.0, session_ms=(t2 - t1) / 1e6)
        sess.bind(spec["names"], inputs, spec["outputs"])
        for _ in range(10):
            sess.run()
    st = _status()
    res.update(baseline_rss=base, peak_rss=st["VmHWM"], peak_delta=st["VmHWM"] - base)
    print(json.dumps(res))


def probe(runtime, lib, model, spec, repeats=3):
    runs = []
    for _ in range(repeats):
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "probe", runtime, lib, model, json.dumps(spec)],
                           capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"{runtime} probe failed: {r.stderr.strip().splitlines()[-1:]}")
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    # times: the best of the repeats (the first may pay for a cold page cache); memory: median
    out = {k: min(x[k] for x in runs) for k in runs[0] if k.endswith("_ms")}
    out.update({k: float(np.median([x[k] for x in runs])) for k in runs[0] if not k.endswith("_ms")})
    out["total_ms"] = out["load_ms"] + out["session_ms"]
    return out


# ---- one model -------------------------------------------------------------------------------

def bench_model(spec, build, mdl, api, tl, budget, quick):
    row = dict(name=spec["name"], label=spec["label"], target=spec["target"], kind=spec["kind"],
               onnx=os.path.relpath(spec["onnx"], ROOT))
    t0 = time.perf_counter()
    mdl_path = convert(build, spec)
    row["convert_s"] = time.perf_counter() - t0
    inputs = [np.load(f) for f in spec["inputs"]]
    in_names, out_names = onnx_io(spec["onnx"])
    row["inputs"] = [dict(name=n, dtype=str(a.dtype), shape=list(a.shape)) for n, a in zip(in_names, inputs)]

    mr = MdlRunner(mdl, mdl_path, inputs)
    orr = OrtCRunner(api, spec["onnx"], in_names, inputs, out_names) if api else \
        OrtPyRunner(spec["onnx"], in_names, inputs, out_names)
    try:
        got = mr.run()
        row["max_rel_diff_vs_ort"] = agreement(got, orr.first)
        if spec["refs"]:
            refs = [np.load(f) for f in spec["refs"]]
            row["max_rel_diff_ort_vs_fixture"] = agreement(orr.first, refs)
        (ms, os_), rounds = interleaved([mr, orr], tl, budget)
    finally:
        mr.close()
        orr.close()
    row.update(mdeploy=ms, ort=os_, rounds=rounds, ratio=ms["median"] / os_["median"])

    # native mdeploy-bench: same model, C timing, per-operator profile
    r = subprocess.run([os.path.join(build, "bin", "mdeploy-bench"), mdl_path, "--json", "--profile", "--threads", "1",
                        "--time", str(0.3 if quick else 1.0)], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("mdeploy-bench: " + r.stderr.strip())
    nb = json.loads(r.stdout)
    row["native"] = {k: nb[k] for k in ("load_ms", "session_ms", "latency_ms", "arena_bytes", "activation_bytes",
                                        "weight_bytes", "peak_rss_bytes", "gflop_per_run", "iters")}
    row["profile"] = nb.get("profile", [])

    # fresh-process probes
    pspec = dict(shapes=[list(a.shape) for a in inputs], dtypes=[str(a.dtype) for a in inputs], names=in_names,
                 outputs=out_names)
    row["probe_mdeploy"] = probe("mdeploy", mdl.path, mdl_path, pspec, 1 if quick else 3)
    row["probe_ort"] = probe("ort" if api else "ortpy", api.path if api else "-", spec["onnx"], pspec,
                             1 if quick else 3)
    return row


def bench_threads(spec, build, mdl, api, tl, budget, threads=2):
    """mdeploy at 1 and `threads` threads and ORT at `threads` intra-op threads, interleaved (ABCCBA
    ...) in one process.  The 1-thread table above is unchanged; this one adds the threaded
    rows.  mdeploy's threaded outputs must be bit-identical to its 1-thread ones."""
    mdl_path = convert(build, spec)
    inputs = [np.load(f) for f in spec["inputs"]]
    in_names, out_names = onnx_io(spec["onnx"])
    runners = []
    try:
        runners.append(MdlRunner(mdl, mdl_path, inputs, threads=1))
        runners.append(MdlRunner(mdl, mdl_path, inputs, threads=threads))
        runners.append(OrtCRunner(api, spec["onnx"], in_names, inputs, out_names, threads=threads) if api else
                       OrtPyRunner(spec["onnx"], in_names, inputs, out_names, threads=threads))
        one, many = runners[0].run(), runners[1].run()
        identical = all(a.shape == b.shape and a.tobytes() == b.tobytes() for a, b in zip(one, many))
        (m1, mn, on), rounds = interleaved(runners, tl, budget)
    finally:
        for r in runners:
            r.close()
    return dict(name=spec["name"], label=spec["label"], threads=threads, mdeploy_1=m1, mdeploy_n=mn, ort_n=on,
                rounds=rounds, identical=identical, ratio_self=mn["median"] / m1["median"],
                ratio_ort=mn["median"] / on["median"], ratio_self_min=mn["min"] / m1["min"])


# ---- report ----------------------------------------------------------------------------------

def fmt_ms(x):
    return f"{x:.4f}" if x < 0.1 else f"{x:.3f}" if x < 10 else f"{x:.1f}"


def mib(x):
    return f"{x / 1048576:.1f}"


def verdict(row):
    t = row["target"]
    if t.startswith("≤"):
        limit = float(t.split()[1])
        return "yes" if row["ratio"] <= limit else "**no**"
    return ""


def markdown(res):
    L = []
    L.append("# mdeploy vs ONNX Runtime\n")
    L.append(f"- date: {res['date']}; machine: {res['cpu']}, {res['cores']} cores; "
             f"mdeploy {res['mdeploy_version']}, onnxruntime {res['ort_version']}")
    L.append(f"- timing: {res['method']}")
    L.append(f"- machine load (1-min load average) at start / end: {res['loadavg_start'][0]:.2f} / "
             f"{res.get('loadavg_end', [0])[0]:.2f}; interleaving spreads such noise over both runtimes, "
             "absolute times move with it")
    L.append("- settings: one thread each (ORT intra_op_num_threads=1, inter_op 1, ORT_ENABLE_ALL, sequential; "
             "mdeploy with OPENBLAS_NUM_THREADS=1); same ONNX file, same inputs; the two runtimes alternate in "
             "blocks of about 20 ms (ABBA) in one process")
    b = res.get("openblas")
    if b:
        L.append(f"- OpenBLAS (mdeploy's large GEMMs): {b.get('config', '')}, core **{b.get('core', '?')}**"
                 + (f" (OPENBLAS_CORETYPE={b['env_coretype']})" if b.get("env_coretype") else " (auto-detected)")
                 + (f" — a generic fallback on this {b['cpu_isa']} CPU: GEMMs run several times below what "
                    "OPENBLAS_CORETYPE=SkylakeX gives" if b.get("generic_fallback") else ""))
    else:
        L.append("- mdeploy built without BLAS")
    L.append("- ratio = mdeploy median / ORT median (< 1: mdeploy faster)\n")
    L.append("## Latency\n")
    L.append("| model | mdeploy median ms | ORT median ms | mdeploy/ORT | target | met | mdeploy p90 / p99 | ORT p90 / p99 "
             "| runs each | mdeploy-bench median ms | outputs agree (max rel diff) |")
    L.append("|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|")
    for r in res["models"]:
        if "error" in r:
            L.append(f"| {r['label']} | – | – | – | {r['target']} | | | | | | error: {r['error']} |")
            continue
        m, o = r["mdeploy"], r["ort"]
        L.append(f"| {r['label']} | {fmt_ms(m['median'])} | {fmt_ms(o['median'])} | **{r['ratio']:.2f}** | {r['target']} "
                 f"| {verdict(r)} | {fmt_ms(m['p90'])} / {fmt_ms(m['p99'])} | {fmt_ms(o['p90'])} / {fmt_ms(o['p99'])} "
                 f"| {min(m['n'], o['n'])} | {fmt_ms(r['native']['latency_ms']['median'])} "
                 f"| {r['max_rel_diff_vs_ort']:.1e} |")
    if res.get("threads"):
        t = res["threads"][0].get("threads", 2) if res["threads"] else 2
        L.append(f"\n## {t} threads\n")
        L.append(f"mdeploy at 1 and {t} threads (`mdl_session_options.threads`) and ORT at intra_op_num_threads={t} "
                 "(inter-op 1; ORT's default spinning workers), interleaved in one process like the table above.  "
                 "mdeploy's workers spin after a task for as long as a wake-up costs (measured by the pool, "
                 "2-50 µs), then sleep; ORT's spin for 10-20 ms after a run, so every block starts once the "
                 "process's other threads are idle (settle()), or ORT's spinning would slow the next block.  "
                 "On a shared 2-core machine the second "
                 "core is often busy with other work, which both runtimes suffer; the min column shows the "
                 "undisturbed case.  Targets: mdeploy 2 threads ≤ 0.6x its 1-thread time and ≤ 1.0x ORT at 2 threads.\n")
        L.append(f"| model | mdeploy 1 thread ms | mdeploy {t} threads ms | {t}t / 1t | ≤ 0.6 | min {t}t / min 1t "
                 f"| ORT {t} threads ms | mdeploy / ORT at {t}t | ≤ 1.0 | bit-identical to 1 thread |")
        L.append("|---|---:|---:|---:|---|---:|---:|---:|---|---|")
        for r in res["threads"]:
            if "error" in r:
                L.append(f"| {r['label']} | error: {r['error']} | | | | | | | | |")
                continue
            L.append(f"| {r['label']} | {fmt_ms(r['mdeploy_1']['median'])} | {fmt_ms(r['mdeploy_n']['median'])} "
                     f"| **{r['ratio_self']:.2f}** | {'yes' if r['ratio_self'] <= 0.6 else '**no**'} "
                     f"| {r['ratio_self_min']:.2f} | {fmt_ms(r['ort_n']['median'])} | **{r['ratio_ort']:.2f}** "
                     f"| {'yes' if r['ratio_ort'] <= 1.0 else '**no**'} | {'yes' if r['identical'] else '**no**'} |")
    L.append("\n## Load + session creation, memory\n")
    L.append(f"Each runtime alone in a fresh process (best time of {res.get('probe_repeats', 3)}; memory: median).  mdeploy: "
             "`mdl_model_load_file` + `mdl_session_create`; ORT: `CreateSession` from the ONNX file.  Peak memory = peak resident set (VmHWM) during load, session "
             "creation and 10 runs, minus the resident set before, when the runtime was ready (library mapped; "
             "for ORT also its one-time environment, which is left out of both its time and its memory"
             + (f": {res['ort_env_mib']:.1f} MiB, {res['ort_env_ms']:.1f} ms" if res.get("ort_env_mib") is not None else "")
             + ").  Target: "
             "mdeploy load + session ≤ 10 ms and peak below ORT's.\n")
    L.append("| model | mdeploy load + session ms | ORT session ms | ≤ 10 ms | mdeploy peak MiB | ORT peak MiB | "
             "below ORT | mdeploy arena KiB | weights KiB |")
    L.append("|---|---:|---:|---|---:|---:|---|---:|---:|")
    for r in res["models"]:
        if "error" in r:
            continue
        pm, po = r["probe_mdeploy"], r.get("probe_ort")
        L.append(f"| {r['label']} | {pm['load_ms']:.3f} + {pm['session_ms']:.3f} = {pm['total_ms']:.3f} "
                 f"| {po['total_ms']:.2f} | {'yes' if pm['total_ms'] <= 10 else '**no**'} "
                 f"| {mib(pm['peak_delta'])} | {mib(po['peak_delta'])} "
                 f"| {'yes' if pm['peak_delta'] < po['peak_delta'] else '**no**'} "
                 f"| {r['native']['arena_bytes'] / 1024:.1f} | {r['native']['weight_bytes'] / 1024:.1f} |"
                 if po else f"| {r['label']} | {pm['total_ms']:.3f} | – | | {mib(pm['peak_delta'])} | – | | | |")
    if res.get("int8"):
        L.append(int8.markdown(res["int8"], fmt_ms))
    ov = res["overhead"]
    L.append("\n## Fixed costs and overheads\n")
    if "tiny" in ov:
        t = ov["tiny"]
        L.append(f"- one run of a 1-node model (Relu on 16 floats), same interleaved C loop: mdeploy "
                 f"{t['mdeploy']['median'] * 1e3:.2f} µs, ORT {t['ort']['median'] * 1e3:.2f} µs (median)")
    L.append(f"- clock read pair (floor under every timed call): {ov['clock_floor_ns']} ns")
    if "python_call_us" in ov:
        L.append(f"- Python + ctypes per call (perf_counter loop around `mdl_session_run` on the 1-node model, "
                 f"minus the C loop's median): {ov['python_call_us']:.2f} µs — not part of any ratio above"
                 if res["method_key"] == "c" else
                 f"- Python + ctypes per call: {ov['python_call_us']:.2f} µs — included in both runtimes' times")
    pk = res.get("peak")
    if pk:
        L.append("\n## Machine peak and the largest layers\n")
        L.append(f"FMA microbenchmark (bench/peak.c, one core): {pk['peak_gflops']:.1f} GFLOP/s float32 "
                 f"(128-bit {pk['sse_128_gflops']:.1f}, 256-bit {pk['avx_256_gflops']:.1f}, "
                 f"512-bit {pk['avx512_gflops']:.1f}).  Largest GEMM/conv layers by FLOPs (mdeploy-bench --profile, "
                 "median per node):\n")
        L.append("| model | node | op | output | GFLOP | time ms | GFLOP/s | % of peak |")
        L.append("|---|---|---|---|---:|---:|---:|---:|")
        for x in res["largest_layers"]:
            L.append(f"| {x['model']} | `{x['name']}` | {x['op']} | {x['shape']} | {x['gflop']:.4f} | {fmt_ms(x['ms'])} "
                     f"| {x['gflops']:.1f} | {100 * x['gflops'] / pk['peak_gflops']:.1f} |")
    sp = res.get("sparse")
    if sp:
        L.append("\n## Sparse kernels (pruning) against mdeploy's own dense kernel\n")
        L.append("bench/sparse.c, one core, the same shapes and inputs: dense = the packed GEMM a FullyConnected or "
                 "stride-1 1x1 Conv2D runs (a GEMV for one row); sparse = the 8x1 block-sparse product "
                 "(src/ops/sparse.h) at this CPU's level.  Blocks of about 5 ms of each alternate; medians (min in "
                 "brackets).  Target (issue #15): block-pruned FC and 1x1 conv at 80% and 90% sparsity >= 2x faster "
                 "than dense at batch 1 and 32.  Element-wise pruning is shown for contrast: it leaves most 8x1 "
                 "blocks non-zero, and the converter keeps such layers dense.\n")
        L.append("| layer | pruning | rows | sparsity | block density | dense µs | sparse µs | speedup | ≥ 2x | "
                 "weights dense / sparse KiB |")
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---|---:|")
        for x in [x for x in sp if x.get("dtype") != "int8"]:
            tgt = "" if x["pruning"] != "block8x1" or x["layer"].startswith("conv1x1 128") else (
                "yes" if x["speedup"] >= 2 else "**no**")
            L.append(f"| {x['layer']} | {x['pruning']} | {x['M']} | {x['sparsity']:.2f} | {x['block_density']:.2f} "
                     f"| {x['dense_us']:.1f} ({x['dense_min_us']:.1f}) | {x['sparse_us']:.1f} ({x['sparse_min_us']:.1f}) "
                     f"| {x['speedup']:.2f} | {tgt} | {x['dense_weight_bytes'] / 1024:.0f} / "
                     f"{x['sparse_weight_bytes'] / 1024:.0f} |")
        q8 = [x for x in sp if x.get("dtype") == "int8"]
        if q8:
            L.append("\nThe same shapes with int8 weights: the sparse int8 product (mdl__qspmm) against the dense int8 "
                     "core of this CPU (VNNI/AMX where present), both bit-identical (outputs differing must be 0).  "
                     "The int8 sparse storage is for size (80% block pruning + int8: about 12x smaller than float); "
                     "against VNNI/AMX it is slower (the converter's int8 threshold, src/quant/prune_host.c).\n")
            L.append("| layer | rows | sparsity | block density | dense int8 µs | sparse int8 µs | speedup | "
                     "outputs differing | weights dense / sparse KiB |")
            L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for x in q8:
                L.append(f"| {x['layer']} | {x['M']} | {x['sparsity']:.2f} | {x['block_density']:.2f} "
                         f"| {x['dense_us']:.1f} ({x['dense_min_us']:.1f}) | {x['sparse_us']:.1f} ({x['sparse_min_us']:.1f}) "
                         f"| {x['speedup']:.2f} | {x['outputs_differing']} | {x['dense_weight_bytes'] / 1024:.0f} / "
                         f"{x['sparse_weight_bytes'] / 1024:.0f} |")
    L.append("\n## Where mdeploy's time goes\n")
    L.append("Top nodes per model (mdeploy-bench --profile; share of the summed node times):\n")
    for r in res["models"]:
        if "error" in r or not r.get("profile"):
            continue
        top = sorted(r["profile"], key=lambda n: -n["ms"])[:3]
        parts = [f"`{n['name']}` {n['op']} {n['shape']} {100 * n['share']:.0f}%"
                 + (f" ({n['gflops']:.1f} GFLOP/s)" if n.get("gflops") else "") for n in top]
        L.append(f"- {r['label']}: " + "; ".join(parts))
    return "\n".join(L) + "\n"


def chart(res, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker  # noqa: F401
    except ImportError:
        print("bench: matplotlib not installed: no chart")
        return False
    rows = [r for r in res["models"] if "ratio" in r]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 1.6))
    names = [r["label"] for r in rows][::-1]
    ratios = [r["ratio"] for r in rows][::-1]
    limits = [float(r["target"].split()[1]) if r["target"].startswith("≤") else None for r in rows][::-1]
    colors = ["#9e9e9e" if lim is None else "#2e7d32" if v <= lim else "#c62828" for v, lim in zip(ratios, limits)]
    ax.barh(names, ratios, color=colors)
    for i, (v, lim) in enumerate(zip(ratios, limits)):
        ax.text(v, i, f" {v:.2f}", va="center", fontsize=9)
        if lim:
            ax.plot([lim, lim], [i - 0.4, i + 0.4], color="black", lw=1.5)
    ax.axvline(1.0, color="#555555", ls="--", lw=0.8)
    ax.axvline(0.7, color="#2e7d32", ls=":", lw=0.8)
    ax.set_xlabel("median latency mdeploy / ONNX Runtime (lower is better; black ticks: targets)")
    ax.set_title(f"mdeploy {res['mdeploy_version']} vs onnxruntime {res['ort_version']}, one thread")
    if max(ratios) > 4 or min(ratios) < 0.25:
        ax.set_xscale("log", base=2)
        ax.set_xlim(min(ratios + [0.5]) / 1.5, max(ratios + [1.6]) * 1.6)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        ax.set_xlim(0, max(ratios + [1.6]) * 1.15)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "probe":
        ap = argparse.ArgumentParser()
        ap.add_argument("probe")
        ap.add_argument("runtime", choices=["mdeploy", "ort", "ortpy"])
        ap.add_argument("lib")
        ap.add_argument("model")
        ap.add_argument("spec")
        return probe_main(ap.parse_args())
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build", help="build directory holding libmdeploy.so and bin/")
    ap.add_argument("--budget", type=float, default=None, help="seconds of interleaved timing per model (default 6)")
    ap.add_argument("--quick", action="store_true", help="short runs (a smoke test, not a measurement)")
    ap.add_argument("--models", default="", help="comma-separated subset of: " + ", ".join(m[0] for m in MODELS))
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--python-timing", action="store_true", help="time both runtimes from Python (the fallback)")
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 rows (bench/int8.py)")
    ap.add_argument("--threads-models", default=",".join(THREAD_MODELS),
                    help="models that also get 2-thread rows (default: %(default)s; '' for none)")
    a = ap.parse_args()
    budget = a.budget or (1.0 if a.quick else 6.0)
    build = os.path.abspath(a.build)
    if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        print("bench: note: OPENBLAS_NUM_THREADS is not 1 (bench/run.sh sets it)")
    os.makedirs(CACHE, exist_ok=True)
    os.makedirs(a.out, exist_ok=True)

    mdl = Mdl(os.path.join(build, "libmdeploy.so"))
    blas = openblas_info()
    if blas:
        flags = cpu_flags()
        isa = "avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else ""
        blas["generic_fallback"] = bool(isa) and blas.get("core", "").lower() in (
            "prescott", "core2", "nehalem", "atom", "katmai", "coppermine", "northwood", "banias", "penryn", "dunnington")
        blas["cpu_isa"] = isa
        print(f"bench: OpenBLAS core: {blas.get('core')} ({blas.get('config')})"
              + (f"; OPENBLAS_CORETYPE={blas['env_coretype']}" if blas["env_coretype"] else ""))
        if blas["generic_fallback"]:
            print(f"bench: note: this OpenBLAS does not know this {isa} CPU and runs its generic "
                  f"{blas.get('core')} kernels; OPENBLAS_CORETYPE=SkylakeX (set by the caller) selects AVX-512 ones")
    api, why = None, ""
    if not a.python_timing:
        try:
            api = ort_capi.OrtCApi()
        except (ort_capi.OrtError, OSError, AttributeError) as e:
            why = str(e)
    tl = load_timeloop(build) if api else None
    if api:
        method, key = (f"ONNX Runtime through its C API ({os.path.basename(api.path)} from the onnxruntime wheel; "
                       "OrtApi::Run with inputs and outputs bound once) and mdeploy through its C API "
                       "(mdl_session_run), both timed by the same C loop (bench/timeloop.c, clock_gettime around "
                       "each call); mdeploy's input copy into its arena is outside the timed call"), "c"
        ort_version = api.version
    else:
        import onnxruntime

        method, key = ("both from Python with the same perf_counter_ns loop: ONNX Runtime through "
                       "InferenceSession.run, mdeploy through ctypes (mdl_session_run)"
                       + (f"; ORT's C library was not usable: {why}" if why else "")), "python"
        ort_version = onnxruntime.__version__
    print(f"bench: timing method: {method}")

    res = dict(date=datetime.datetime.now().isoformat(timespec="seconds"), cpu=cpu_name(), cores=os.cpu_count(),
               mdeploy_version=mdl.version, ort_version=ort_version, method=method, method_key=key,
               budget_s=budget, quick=a.quick, openblas_num_threads=os.environ.get("OPENBLAS_NUM_THREADS", ""),
               models=[], overhead={}, loadavg_start=list(os.getloadavg()), openblas=blas,
               probe_repeats=1 if a.quick else 3)

    names = [n for n in a.models.split(",") if n]
    specs = model_specs(names)
    for spec in specs:
        print(f"bench: {spec['name']} ...", flush=True)
        if not os.path.exists(spec["onnx"]):
            res["models"].append(dict(name=spec["name"], label=spec["label"], target=spec["target"],
                                      error=f"{os.path.relpath(spec['onnx'], ROOT)} missing (bench/export_models.py)"))
            continue
        try:
            row = bench_model(spec, build, mdl, api, tl, budget, a.quick)
        except Exception as e:  # one model's failure must not hide the others' numbers
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            print(f"bench: {spec['name']}: {msg}")
            res["models"].append(dict(name=spec["name"], label=spec["label"], target=spec["target"], error=msg))
            continue
        print(f"  mdeploy {fmt_ms(row['mdeploy']['median'])} ms, ORT {fmt_ms(row['ort']['median'])} ms, "
              f"ratio {row['ratio']:.2f}; load+session {row['probe_mdeploy']['total_ms']:.3f} ms; "
              f"peak {mib(row['probe_mdeploy']['peak_delta'])} MiB"
              + (f" vs ORT {mib(row['probe_ort']['peak_delta'])} MiB" if "probe_ort" in row else ""), flush=True)
        res["models"].append(row)

    res["threads"] = []
    tnames = [n for n in a.threads_models.split(",") if n]
    for spec in [s_ for s_ in specs if s_["name"] in tnames and os.path.exists(s_["onnx"])]:
        print(f"bench: {spec['name']} at 2 threads ...", flush=True)
        try:
            row = bench_threads(spec, build, mdl, api, tl, budget)
        except Exception as e:  # one model's failure must not hide the others' numbers
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            print(f"bench: {spec['name']} threads: {msg}")
            row = dict(name=spec["name"], label=spec["label"], error=msg)
        else:
            print(f"  mdeploy 1t {fmt_ms(row['mdeploy_1']['median'])} ms, 2t {fmt_ms(row['mdeploy_n']['median'])} ms "
                  f"({row['ratio_self']:.2f}x), ORT 2t {fmt_ms(row['ort_n']['median'])} ms "
                  f"(mdeploy/ORT {row['ratio_ort']:.2f}); bit-identical: {row['identical']}", flush=True)
        res["threads"].append(row)

    res["int8"] = []
    for spec in ([] if a.no_int8 else specs):
        if not os.path.exists(spec["onnx"]):
            continue
        print(f"bench: {spec['name']} int8 ...", flush=True)
        try:
            row = int8.bench_int8(spec, build, mdl, api, tl, budget, a.quick, sys.modules[__name__])
        except Exception as e:  # one model's failure must not hide the others' numbers
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            print(f"bench: {spec['name']} int8: {msg}")
            row = dict(name=spec["name"], label=spec["label"], error=msg)
        else:
            print(f"  int8 {fmt_ms(row['mdeploy_int8']['median'])} ms, float {fmt_ms(row['mdeploy_float']['median'])} ms, "
                  f"ORT int8 {fmt_ms(row['ort_int8']['median'])} ms; file {row['size_ratio']:.2f}x smaller", flush=True)
        res["int8"].append(row)

    envs = [r["probe_ort"] for r in res["models"] if "env_rss" in r.get("probe_ort", {})]
    if envs:
        res["ort_env_mib"] = float(np.median([e["env_rss"] for e in envs])) / 1048576
        res["ort_env_ms"] = float(np.median([e["env_ms"] for e in envs]))

    # fixed costs
    tiny = tiny_model()
    try:
        tiny_mdl = convert(build, tiny)
        x = [np.load(tiny["inputs"][0])]
        mr = MdlRunner(mdl, tiny_mdl, x)
        orr = OrtCRunner(api, tiny["onnx"], ["x"], x, ["y"]) if api else OrtPyRunner(tiny["onnx"], ["x"], x, ["y"])
        (tm, to), _ = interleaved([mr, orr], tl, min(budget, 2.0))
        res["overhead"]["tiny"] = dict(mdeploy=tm, ort=to)
        if tl is not None:
            py = []
            for _ in range(20):
                mr.py_loop(1000, py)
            res["overhead"]["python_call_us"] = (float(np.median(py)) / 1e6 - tm["median"]) * 1e3
        mr.close()
        orr.close()
    except Exception as e:
        print(f"bench: 1-node model: {e}")
    if tl is not None:
        res["overhead"]["clock_floor_ns"] = int(tl.tl_clock_floor(100000))
    else:
        res["overhead"]["clock_floor_ns"] = 0

    # machine peak and the largest layers
    try:
        peak_bin = build_helper(build, "peak.c", "peak", ["-O2", "-march=native", "-std=gnu11"])
        res["peak"] = json.loads(subprocess.run([peak_bin, "0.1" if a.quick else "0.3"], capture_output=True,
                                                text=True, check=True).stdout)
    except (subprocess.CalledProcessError, OSError, ValueError) as e:
        print(f"bench: FMA peak: {e}")
    # sparse against dense kernels (bench/sparse.c, built by `make bench`)
    sparse_bin = os.path.join(build, "bench", "sparse")
    if os.path.exists(sparse_bin):
        try:
            out = subprocess.run([sparse_bin, "0.2" if a.quick else "1.0"], capture_output=True, text=True,
                                 check=True).stdout
            res["sparse"] = [json.loads(l) for l in out.splitlines() if l.strip()]
        except (subprocess.CalledProcessError, OSError, ValueError) as e:
            print(f"bench: sparse kernels: {e}")
    else:
        print(f"bench: {sparse_bin} missing (make bench builds it): no sparse rows")
    layers = []
    for r in res["models"]:
        for n in r.get("profile", []):
            if n.get("gflops") and n["op"] in ("Conv2D", "DepthwiseConv2D", "FullyConnected", "MatMul", "LSTM", "GRU"):
                layers.append(dict(model=r["name"], name=n["name"], op=n["op"], shape=str(n["shape"]).replace(" ", ""),
                                   gflop=n["gflop"], ms=n["ms"], gflops=n["gflops"]))
    layers.sort(key=lambda x: -x["gflop"])
    # the largest layers overall plus the largest of each model
    keep, seen = layers[:6], {x["model"] for x in layers[:6]}
    for x in layers:
        if x["model"] not in seen:
            keep.append(x)
            seen.add(x["model"])
    res["largest_layers"] = keep

    res["loadavg_end"] = list(os.getloadavg())
    jpath, mpath, ppath = (os.path.join(a.out, f) for f in ("bench.json", "bench.md", "ratios.png"))
    with open(jpath, "w") as f:
        json.dump(res, f, indent=1)
    md = markdown(res)
    with open(mpath, "w") as f:
        f.write(md)
    has_chart = chart(res, ppath)
    print()
    print(md)
    print(f"bench: wrote {os.path.relpath(jpath)}, {os.path.relpath(mpath)}" + (f", {os.path.relpath(ppath)}" if has_chart else ""))
    return 0 if all("error" not in r for r in res["models"]) else 1


if __name__ == "__main__":
    sys.exit(main())
