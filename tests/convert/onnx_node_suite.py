#!/usr/bin/env python3
"""Conformance over ONNX's own backend node tests (onnx/backend/test/data/node/*, from the
onnx==1.17.0 wheel: later wheels ship none).

Each case (model.onnx + test_data_set_0/{input,output}_*.pb, expected outputs computed by ONNX's
reference implementation) is converted with mdeploy, run, and compared with the expected outputs,
in two variants:
  input   the case as it is: its inputs are run-time inputs
  const   its inputs made initializers (constants), so the converter folds the whole graph, plus
          one unused run-time input (a model needs one): this exercises constant folding
and classified as
  pass     converted, ran, every output matches (float: |d| <= atol + rtol*|expected| with
           rtol 1e-3, atol 1e-5, NaN where NaN is expected; integers and bool: exactly; shapes
           and element kinds exactly)
  refused  the converter or the runtime said no, with a message
  WRONG    ran and gave another answer (or another shape or element kind)
  CRASH    the process died or a case took longer than --case-timeout seconds
The run fails on any WRONG or CRASH, and on any refusal not in the allow-list
(tests/convert/onnx_node_allow.txt: one "case variant  # reason class" per line), so a case that
starts being refused fails too.  Allowed cases that now pass are listed: shrink the list with
--write-allow.

usage: onnx_node_suite.py [--lib build/release/libmdeploy.so] [--cache build/onnx-node-tests]
                          [--jobs 2] [--filter SUBSTR] [--write-allow] [--verbose]
The data is fetched once into the cache (pip download of the wheel, only the node-test
directory extracted; bounded by --fetch-timeout).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ALLOW = os.path.join(HERE, "onnx_node_allow.txt")
WHEEL = "onnx==1.17.0"
PREFIX = "onnx/backend/test/data/node/"
RTOL, ATOL = 1e-3, 1e-5
VARIANTS = ("input", "const")
DUMMY = "mdeploy_suite_unused"
# Cases whose stored expected outputs contradict the ONNX spec: compared with ONNX Runtime instead.
ORT_ORACLE = {
    f"test_qlinearmatmul_{d}_int8_{f}": "the stored outputs wrap int8 overflow; the spec saturates, as ONNX Runtime does"
    for d in ("2D", "3D") for f in ("float16", "float32")
}
ORT_ORACLE["test_resize_downsample_scales_linear_align_corners"] = (
    "the stored outputs divide by in*scale-1 = 1.4 (onnx.reference); ONNX Runtime and PyTorch divide "
    "by the output length-1 = 1, as mdeploy does")


# ---- data -------------------------------------------------------------------------------------

def fetch(cache: str, timeout: float) -> str:
    """The node-test directory in the cache, downloaded and extracted when absent."""
    node = os.path.join(cache, "node")
    stamp = os.path.join(cache, "stamp")
    if os.path.exists(stamp):
        return node
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", WHEEL, "--no-deps", "-d", tmp],
                       check=True, timeout=timeout)
        wheels = glob.glob(os.path.join(tmp, "onnx-*.whl"))
        if not wheels:
            raise SystemExit(f"pip download {WHEEL} gave no wheel")
        with zipfile.ZipFile(wheels[0]) as z:
            for name in z.namelist():
                if name.startswith(PREFIX) and not name.endswith("/"):
                    dst = os.path.join(node, name[len(PREFIX):])
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    with z.open(name) as src, open(dst, "wb") as out:
                        out.write(src.read())
    with open(stamp, "w") as f:
        f.write(WHEEL + "\n")
    return node


def read_allow() -> dict:
    allow = {}
    if os.path.exists(ALLOW):
        for line in open(ALLOW):
            body, _, why = line.partition("#")
            parts = body.split()
            if len(parts) == 2:
                allow[(parts[0], parts[1])] = why.strip()
    return allow


def reason_class(msg: str) -> str:
    """A coarse class of a refusal message, for the allow-list and the summary."""
    rules = [
        (r"unsupported operator", "operator"),
        (r"domain '|imports no ONNX operator set", "domain"),
        (r"element type|data type|dtype|kernel for \w+ data|ONNX type|cast to|bool|float16|double", "dtype"),
        (r"not a tensor", "non-tensor"),
        (r"must be a constant|must be constants|supported only on constants|computed at run time|run-time|constant", "runtime-operand"),
        (r"rank|shape|dims?\b|size 0|empty|broadcast", "shape"),
        (r"output \d+ |output is not supported|outputs", "output"),
        (r"opset \d+ is too old", "opset"),
        (r"=|attribute|mode|approximate|auto_pad|dilat|pads|group|axis|axes", "attribute"),
        (r"quantiz|peephole|sequence_lens", "feature"),
    ]
    msg = re.sub(r"^\S+ '[^']*' \(opset \d+\): ", "", msg)  # "Op 'node' (opset N): " prefix
    for pat, cls in rules:
        if re.search(pat, msg):
            return cls
    return "other"


# ---- one case (worker side) -------------------------------------------------------------------

def load_case(case_dir: str):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(os.path.join(case_dir, "model.onnx"))
    data = os.path.join(case_dir, "test_data_set_0")
    init = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in init]

    def read(kind, infos):
        out = []
        for k, vi in enumerate(infos):
            path = os.path.join(data, f"{kind}_{k}.pb")
            if not vi.type.HasField("tensor_type"):
                return None
            t = onnx.TensorProto()
            with open(path, "rb") as f:
                t.ParseFromString(f.read())
            out.append((vi.name, numpy_helper.to_array(t), t))
        return out

    return model, read("input", graph_inputs), read("output", model.graph.output)


def as_const(model, inputs):
    """The model with its inputs made initializers and one unused float input."""
    import onnx
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    names = {n for n, _, _ in inputs}
    keep = [i for i in m.graph.input if i.name not in names]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    m.graph.input.append(helper.make_tensor_value_info(DUMMY, onnx.TensorProto.FLOAT, [1]))
    for name, _, proto in inputs:  # the stored tensor as it is (bfloat16 has no numpy type)
        t = onnx.TensorProto()
        t.CopyFrom(proto)
        t.name = name
        vi = next(i for i in model.graph.input if i.name == name)
        # the test data keeps bfloat16 (and float8) as their raw bits in uint16 (uint8) tensors;
        # the model's type says what they are (a size mismatch is the converter's to report)
        t.data_type = vi.type.tensor_type.elem_type
        m.graph.initializer.append(t)
    return m


def compare(name, got, exp):
    """None when got matches the expected array, else what differs."""
    import numpy as np

    got = np.asarray(got)
    if got.shape != exp.shape:
        return f"output '{name}': shape {got.shape}, expected {exp.shape}"
    ek, gk = exp.dtype.kind, got.dtype.kind
    if ek == "f" or gk == "f":
        if ek != gk:
            return f"output '{name}': element kind {got.dtype}, expected {exp.dtype}"
        g, e = got.astype(np.float64), exp.astype(np.float64)
        bad = ~np.isclose(g, e, rtol=RTOL, atol=ATOL, equal_nan=True)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            return (f"output '{name}': {int(bad.sum())} of {bad.size} elements differ, e.g. "
                    f"[{i}] {g.flat[i]!r} vs {e.flat[i]!r}")
        return None
    if ek == "b" and gk not in "bu":
        return f"output '{name}': element kind {got.dtype}, expected bool"
    if ek in "iu" and gk not in "iu":
        return f"output '{name}': element kind {got.dtype}, expected {exp.dtype}"
    e = exp.astype(np.int64) if ek != "u" else exp.astype(np.uint64)
    if not np.array_equal(got.astype(e.dtype), e):
        bad = np.flatnonzero(got.astype(e.dtype).ravel() != e.ravel())
        i = int(bad[0])
        return f"output '{name}': {bad.size} of {e.size} elements differ, e.g. [{i}] {got.flat[i]!r} vs {exp.flat[i]!r}"
    return None


def run_case(case_dir: str, variant: str, tmp: str):
    """(status, message) for one case and variant."""
    import numpy as np
    import onnx

    import mdeploy

    try:
        model, inputs, expected = load_case(case_dir)
    except Exception as e:  # a case this onnx cannot read: not ours to judge
        return "refused", f"suite: cannot read the case: {e}"
    if inputs is None or expected is None:
        return "refused", "suite: a graph input or output is not a tensor"
    feeds = {n: a for n, a, _ in inputs}
    if os.path.basename(case_dir) in ORT_ORACLE:
        import onnxruntime

        sess = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        expected = [(n, a, None) for (n, _, _), a in zip(expected, sess.run(None, feeds))]
    if variant == "const":
        model = as_const(model, inputs)
        feeds = {DUMMY: np.zeros([1], np.float32)}
    src = os.path.join(tmp, "model.onnx")
    dst = os.path.join(tmp, "model.mdl")
    onnx.save(model, src)
    try:
        mdeploy.convert(src, dst)
    except mdeploy.Error as e:
        return "refused", str(e)
    try:
        with mdeploy.Model(dst) as m:
            names = set(m.input_names)
            outs = m.run({k: v for k, v in feeds.items() if k in names}, as_dict=True)
    except mdeploy.Error as e:
        return "refused", "runtime: " + str(e)
    finally:
        if os.path.exists(dst):
            os.remove(dst)
    note = ""
    for name, exp, _ in expected:
        if name not in outs:
            return "WRONG", f"output '{name}' missing"
        diff = compare(name, outs[name], exp)
        if diff:
            return "WRONG", diff
        if outs[name].dtype != exp.dtype and exp.dtype.kind == "f":
            note = f"{outs[name].dtype} output for {exp.dtype}"
    return "pass", note


def worker() -> None:
    """Reads "case_dir variant" lines, prints one JSON result line per case."""
    with tempfile.TemporaryDirectory(prefix="mdl-node-") as tmp:
        for line in sys.stdin:
            case_dir, variant = line.rstrip("\n").rsplit(" ", 1)
            try:
                st, msg = run_case(case_dir, variant, tmp)
            except Exception as e:  # a bug of the suite or the bindings: counted as a crash
                st, msg = "CRASH", f"{type(e).__name__}: {e}"
            print(json.dumps({"status": st, "msg": msg}), flush=True)


# ---- driver -----------------------------------------------------------------------------------

class Slot:
    """One worker process; restarted after a crash or a timeout."""

    def __init__(self, env):
        self.env, self.p = env, None

    def start(self):
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"], env=self.env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, bufsize=1)

    def run(self, case_dir, variant, timeout):
        if self.p is None or self.p.poll() is not None:
            self.start()
        try:
            self.p.stdin.write(f"{case_dir} {variant}\n")
            self.p.stdin.flush()
        except BrokenPipeError:
            self.stop()
            return "CRASH", "the worker died"
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        line = self.p.stdout.readline() if r else ""
        if not line:
            code = self.p.poll()
            self.stop()
            return "CRASH", (f"timeout after {timeout:.0f} s" if code is None
                             else f"the process died (exit status {code})")
        d = json.loads(line)
        return d["status"], d["msg"]

    def stop(self, kill=True):
        if self.p:
            if not kill:  # end of input: the worker removes its directory and exits
                self.p.stdin.close()
                try:
                    self.p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()
        self.p = None


def op_of(case_dir: str) -> str:
    import onnx

    m = onnx.load(os.path.join(case_dir, "model.onnx"), load_external_data=False)
    ops = [n.op_type for n in m.graph.node]
    return ops[0] if len(ops) == 1 else (ops[0] + "+" if ops else "?")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--lib", default=os.path.join(ROOT, "build/release/libmdeploy.so"))
    ap.add_argument("--cache", default=os.path.join(ROOT, "build/onnx-node-tests"))
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--filter", default="")
    ap.add_argument("--case-timeout", type=float, default=30.0)
    ap.add_argument("--fetch-timeout", type=float, default=300.0)
    ap.add_argument("--write-allow", action="store_true", help="rewrite the allow-list from this run")
    ap.add_argument("--per-op", action="store_true", help="print the pass/refused counts per operator")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    if a.write_allow and a.filter:
        ap.error("--write-allow rewrites the whole list: no --filter")
    if a.worker:
        worker()
        return 0

    node = fetch(a.cache, a.fetch_timeout)
    cases = sorted(d for d in os.listdir(node) if a.filter in d and os.path.exists(os.path.join(node, d, "model.onnx")))
    env = dict(os.environ, MDEPLOY_LIB=os.path.abspath(a.lib),
               PYTHONPATH=os.path.join(ROOT, "bindings/python") + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    todo = collections.deque((c, v) for c in cases for v in VARIANTS)
    results = {}
    lock = threading.Lock()
    t0 = time.time()

    def loop():
        slot = Slot(env)
        while True:
            with lock:
                if not todo:
                    break
                c, v = todo.popleft()
            results[(c, v)] = slot.run(os.path.join(node, c), v, a.case_timeout)
        slot.stop(kill=False)

    threads = [threading.Thread(target=loop) for _ in range(max(1, a.jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - t0

    allow = read_allow()
    counts = collections.Counter(st for st, _ in results.values())
    failures, newly = [], []
    per_op = collections.defaultdict(collections.Counter)
    classes = collections.Counter()
    for (c, v), (st, msg) in sorted(results.items()):
        op = op_of(os.path.join(node, c))
        per_op[op][(v, st)] += 1
        if st == "refused":
            classes[reason_class(msg)] += 1
        if st in ("WRONG", "CRASH"):
            failures.append(f"{st:7s} {c} {v}: {msg}")
        elif st == "refused" and (c, v) not in allow and not a.write_allow:
            failures.append(f"REFUSED {c} {v} (not in the allow-list): {msg}")
        elif st == "pass" and (c, v) in allow:
            newly.append(f"{c} {v}")
        if a.verbose and st != "pass":
            print(f"{st:7s} {c} {v}: {msg}")

    if a.per_op:
        print(f"{'operator':32s} {'input pass/refused':>20s} {'const pass/refused':>20s}")
        for op in sorted(per_op):
            k = per_op[op]
            cell = lambda v: f"{k[(v, 'pass')]}/{k[(v, 'refused')]}" + (
                f" +{k[(v, 'WRONG')] + k[(v, 'CRASH')]}!" if k[(v, 'WRONG')] + k[(v, 'CRASH')] else "")
            print(f"{op:32s} {cell('input'):>20s} {cell('const'):>20s}")
    for v in VARIANTS:
        c = collections.Counter(st for (_, vv), (st, _) in results.items() if vv == v)
        other = sum(1 for (_, vv), (st, msg) in results.items() if vv == v and st == "pass" and msg)
        print(f"onnx node tests ({v}): {c['pass']} pass ({other} of them in float32 for float16/double), "
              f"{c['refused']} refused, {c['WRONG']} WRONG, {c['CRASH']} CRASH")
    print("refusals by class: " + ", ".join(f"{k} {n}" for k, n in classes.most_common()))
    print(f"{len(cases)} cases x {len(VARIANTS)} variants in {elapsed:.0f} s ({a.jobs} jobs)")

    if a.write_allow:
        with open(ALLOW, "w") as f:
            f.write("# ONNX backend node tests (onnx 1.17.0) that mdeploy refuses today: \"case variant  # class\".\n"
                    "# Written by tests/convert/onnx_node_suite.py --write-allow; a case listed here that passes\n"
                    "# is reported so the list can shrink; a refusal not listed fails make check.\n")
            for (c, v), (st, msg) in sorted(results.items()):
                if st == "refused":
                    f.write(f"{c} {v}  # {reason_class(msg)}\n")
        print(f"wrote {ALLOW}")
    if newly:
        print(f"{len(newly)} allow-listed cases now pass (shrink the list with --write-allow):")
        for n in newly[:40]:
            print("  " + n)
    for f in failures[:200]:
        print(f)
    if failures:
        print(f"FAILED: {len(failures)} cases (wrong answers, crashes or refusals not allowed)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
