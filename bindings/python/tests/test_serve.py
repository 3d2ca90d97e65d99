"""mdeploy-serve (tools/serve, issue #19) over HTTP on a loopback port: every endpoint, both body
formats checked against ONNX Runtime (the MLP and the MNIST CNN) or the fixtures' closed forms,
the 4xx errors, version pick-up by polling, manual rollback, the canary split over 2,000
requests, the automatic rollback of a failing canary, the bounded queue (503 + Retry-After),
the command line, and a short pass of malformed HTTP (tests/tools/serve_http_fuzz.py).

The server is the build's bin/mdeploy-serve (next to the library under test; MDEPLOY_SERVE=PATH
selects another, e.g. the ASan+UBSan build's); model directories are written by the build's
tests/tools/serve_fixtures (addc:C is y = x + C on float32 [1,4]; emb:V is y = table[ids] with
table[i][j] = 10 i + j and V rows, ids int64 [2]) and by converting the conformance fixtures."""

from __future__ import annotations

import http.client
import importlib.util
import io
import json
import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import pytest

from mdeploy import _lib
from conftest import REPO, MODELS, build_slow, build_two_io

BUILD = Path(_lib.library_path).resolve().parent
# MDEPLOY_SERVE runs these tests against another build's server, e.g. the ASan+UBSan one
SERVER = Path(os.environ.get("MDEPLOY_SERVE", BUILD / "bin" / "mdeploy-serve"))
FIXTURES = BUILD / "tests" / "tools" / "serve_fixtures"
TOL = 1e-4


def fixtures(model_dir: Path, *specs: str) -> None:
    assert FIXTURES.is_file(), f"{FIXTURES} not built (make tests)"
    subprocess.run([str(FIXTURES), str(model_dir), *specs], check=True, capture_output=True)


class Server:
    """mdeploy-serve on 127.0.0.1 and a free port (--port 0: the server prints the one it got)."""

    def __init__(self, model_dir: Path, *args: str) -> None:
        assert SERVER.is_file(), f"{SERVER} not built: make all needs libmicrohttpd-dev (make deps)"
        self.log = open(Path(model_dir).parent / f"server-{id(self)}.log", "w+")
        self.proc = subprocess.Popen([str(SERVER), f"--model-dir={model_dir}", "--port=0", "--address", "127.0.0.1",
                                      *args], stdout=subprocess.PIPE, stderr=self.log, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        m = re.search(r"on http://127\.0\.0\.1:(\d+) ", line)
        assert m, f"the server did not start: {line!r} {self.stderr()}"
        self.port = int(m.group(1))
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def stderr(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def request(self, method: str, path: str, body: Optional[bytes] = None,
                headers: Optional[Dict[str, str]] = None, conn: Optional[http.client.HTTPConnection] = None):
        c = conn or self.conn
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            if conn:  # a kept-alive connection the server closed when idle (--timeout): once more
                raise
            c.close()
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
        data = r.read()
        if r.getheader("Connection", "").lower() == "close":
            c.close()
        return r.status, r, data

    def get_json(self, path: str) -> Tuple[int, dict]:
        st, r, data = self.request("GET", path)
        assert r.getheader("Content-Type") == "application/json", data
        return st, json.loads(data)

    def predict(self, path: str, obj, conn=None) -> Tuple[int, dict, Optional[str]]:
        st, r, data = self.request("POST", path, json.dumps(obj).encode(), {"Content-Type": "application/json"}, conn)
        assert r.getheader("Content-Type") == "application/json", data
        return st, json.loads(data), r.getheader("X-Model-Version")

    def stop(self) -> None:
        self.conn.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(60) == 0, self.stderr()
        assert self.proc.returncode == 0, self.stderr()
        self.log.close()


def npy_bytes(*arrays) -> bytes:
    f = io.BytesIO()
    for a in arrays:
        np.save(f, a)
    return f.getvalue()


def close(got, ref) -> None:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert np.max(np.abs(got - ref)) <= TOL * max(1.0, float(np.max(np.abs(ref))))


def wait_until(cond, what: str, timeout: float = 20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def ort():
    ort = pytest.importorskip("onnxruntime")  # make deps installs it
    return {n: ort.InferenceSession(str(MODELS / f"{n}.onnx"), providers=["CPUExecutionProvider"])
            for n in ("mlp", "mnist_cnn")}


@pytest.fixture(scope="module")
def server(tmp_path_factory, converted):
    """mlp (dynamic batch), cnn (MNIST, [1,1,28,28]), emb/1 = emb:4, addc/1 = addc:1.5."""
    d = tmp_path_factory.mktemp("serve") / "models"
    for name, fixture in (("mlp", "mlp"), ("cnn", "mnist_cnn")):
        (d / name / "1").mkdir(parents=True)
        shutil.copy(converted(fixture), d / name / "1" / "model.mdl")
    fixtures(d, "emb/1=emb:4", "addc/1=addc:1.5")
    (d / "two" / "1").mkdir(parents=True)
    (d / "two" / "1" / "model.mdl").write_bytes(build_two_io())  # a, b [2,3] -> sum, prod
    s = Server(d, "--max-body", "256K", "--poll", "0", "--threads", "2", "--timeout", "2")
    yield s
    s.stop()


# ---- endpoints -------------------------------------------------------------------------------


def test_health_ready_and_list(server):
    assert server.get_json("/healthz") == (200, {"status": "ok"})
    assert server.get_json("/readyz") == (200, {"ready": True})
    st, j = server.get_json("/v1/models")
    assert st == 200 and sorted(j["models"]) == ["addc", "cnn", "emb", "mlp", "two"]


def test_describe(server):
    st, j = server.get_json("/v1/models/mlp")
    assert st == 200
    (v,) = j["model_version_status"]
    assert v["version"] == "1" and v["state"] == "AVAILABLE" and v["role"] == "stable"
    assert v["status"] == {"error_code": "OK", "error_message": ""}
    assert v["signature"]["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 784]}]
    assert v["signature"]["outputs"] == [{"name": "y", "dtype": "float32", "shape": [-1, 1]}]
    st, j1 = server.get_json("/v1/models/mlp/versions/1")
    assert st == 200 and [e["version"] for e in j1["model_version_status"]] == ["1"]
    st, j = server.get_json("/v1/models/cnn")
    assert j["model_version_status"][0]["signature"]["inputs"][0]["shape"] == [1, 1, 28, 28]
    st, j = server.get_json("/v1/models/mlp/versions/7")
    assert st == 404 and "no version 7" in j["error"]
    st, j = server.get_json("/v1/models/nope")
    assert st == 404 and "unknown model 'nope'" in j["error"]


def test_predict_json_rows_mlp(server, ort):
    x = np.random.default_rng(0).standard_normal((3, 784)).astype(np.float32)
    (ref,) = ort["mlp"].run(None, {"x": x})
    for path in ("/v1/models/mlp:predict", "/v1/models/mlp/versions/1:predict"):
        st, j, ver = server.predict(path, {"instances": x.tolist()})
        assert st == 200 and ver == "1", j
        assert list(j) == ["predictions"] and len(j["predictions"]) == 3
        close(j["predictions"], ref)
    # the stored input and ONNX Runtime's stored output
    x0, y0 = np.load(MODELS / "mlp.in0.npy"), np.load(MODELS / "mlp.out0.npy")
    st, j, _ = server.predict("/v1/models/mlp:predict", {"instances": x0.tolist(), "signature_name": "serving_default"})
    close(j["predictions"], y0)
    # named instances
    st, j, _ = server.predict("/v1/models/mlp:predict", {"instances": [{"x": row} for row in x.tolist()]})
    assert st == 200
    close(j["predictions"], ref)


def test_predict_json_columns_cnn(server, ort):
    x = np.load(MODELS / "mnist_cnn.in0.npy")
    ref = np.load(MODELS / "mnist_cnn.out0.npy")
    st, j, ver = server.predict("/v1/models/cnn:predict", {"inputs": x.tolist()})
    assert st == 200 and ver == "1" and list(j) == ["outputs"]
    close(j["outputs"], ref)
    st, j, _ = server.predict("/v1/models/cnn:predict", {"inputs": {"image": x.tolist()}})
    close(j["outputs"], ref)
    st, j, _ = server.predict("/v1/models/cnn:predict", {"instances": x.tolist()})  # one row
    close(j["predictions"], ref)
    x2 = np.random.default_rng(1).random((1, 1, 28, 28), dtype=np.float32)
    (ref2,) = ort["mnist_cnn"].run(None, {"image": x2})
    st, j, _ = server.predict("/v1/models/cnn/versions/1:predict", {"inputs": x2.tolist()})
    close(j["outputs"], ref2)


def test_predict_npy(server, ort):
    x = np.random.default_rng(2).standard_normal((5, 784)).astype(np.float32)
    (ref,) = ort["mlp"].run(None, {"x": x})
    st, r, data = server.request("POST", "/v1/models/mlp:predict", npy_bytes(x), {"Content-Type": "application/x-npy"})
    assert st == 200 and r.getheader("Content-Type") == "application/x-npy" and r.getheader("X-Model-Version") == "1"
    y = np.load(io.BytesIO(data))
    assert y.dtype == np.float32
    close(y, ref)
    xc = np.load(MODELS / "mnist_cnn.in0.npy")
    st, r, data = server.request("POST", "/v1/models/cnn/versions/1:predict", npy_bytes(xc),
                                 {"Content-Type": "application/x-npy"})
    close(np.load(io.BytesIO(data)), np.load(MODELS / "mnist_cnn.out0.npy"))
    # .npy in, JSON out (Accept) and JSON in, .npy out
    st, r, data = server.request("POST", "/v1/models/mlp:predict", npy_bytes(x),
                                 {"Content-Type": "application/x-npy", "Accept": "application/json"})
    assert st == 200 and r.getheader("Content-Type") == "application/json"
    close(json.loads(data)["outputs"], ref)
    st, r, data = server.request("POST", "/v1/models/mlp:predict", json.dumps({"instances": x.tolist()}).encode(),
                                 {"Content-Type": "application/json", "Accept": "application/x-npy"})
    assert st == 200 and r.getheader("Content-Type") == "application/x-npy"
    close(np.load(io.BytesIO(data)), ref)


def test_predict_integer_input(server):
    st, j, _ = server.predict("/v1/models/emb:predict", {"instances": [1, 3]})
    assert st == 200 and j == {"predictions": [[10, 11, 12], [30, 31, 32]]}
    st, r, data = server.request("POST", "/v1/models/emb:predict", npy_bytes(np.array([2, 0], np.int64)),
                                 {"Content-Type": "application/x-npy"})
    assert st == 200 and np.array_equal(np.load(io.BytesIO(data)), [[20, 21, 22], [0, 1, 2]])
    st, j, _ = server.predict("/v1/models/addc:predict", {"inputs": [[1, 2, 3, 4.25]]})
    assert st == 200 and j == {"outputs": [[2.5, 3.5, 4.5, 5.75]]}


def test_predict_two_inputs_two_outputs(server):
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float32)
    st, j, _ = server.predict("/v1/models/two:predict", {"instances": [{"a": a[i].tolist(), "b": b[i].tolist()}
                                                                      for i in range(2)]})
    assert st == 200 and [sorted(p) for p in j["predictions"]] == [["prod", "sum"]] * 2, j
    close([p["sum"] for p in j["predictions"]], a + b)
    close([p["prod"] for p in j["predictions"]], a * b)
    st, j, _ = server.predict("/v1/models/two:predict", {"inputs": {"b": b.tolist(), "a": a.tolist()}})
    assert st == 200 and sorted(j["outputs"]) == ["prod", "sum"]
    close(j["outputs"]["sum"], a + b)
    close(j["outputs"]["prod"], a * b)
    st, r, data = server.request("POST", "/v1/models/two:predict", npy_bytes(a, b), {"Content-Type": "application/x-npy"})
    assert st == 200
    f = io.BytesIO(data)
    close(np.load(f), a + b)  # the outputs in order, one array after the other
    close(np.load(f), a * b)
    assert f.read() == b""
    for body, words in (({"inputs": {"a": a.tolist()}}, ["2 inputs", "'a', 'b'"]),
                        ({"instances": [a[0].tolist()]}, ["2 inputs", "object"]),
                        ({"instances": [{"a": a[0].tolist()}]}, ["no input 'b'"])):
        st, j, _ = server.predict("/v1/models/two:predict", body)
        assert st == 400 and all(w in j["error"] for w in words), j
    st, r, data = server.request("POST", "/v1/models/two:predict", npy_bytes(a), {"Content-Type": "application/x-npy"})
    assert st == 400 and "the body holds 1 .npy array" in json.loads(data)["error"]


BIG = {"instances": [[0.0] * 784] * 80}  # about 300 KB of JSON: above --max-body 256K

ERRORS = [
    # (name, method, path, body, content type, status, words the message must contain)
    ("unknown model", "POST", "/v1/models/nope:predict", b'{"instances": [[1]]}', None, 404, ["unknown model", "nope"]),
    ("unknown version", "POST", "/v1/models/mlp/versions/7:predict", b'{"instances": [[1]]}', None, 404, ["7"]),
    ("bad version", "POST", "/v1/models/mlp/versions/x:predict", b"{}", None, 404, ["malformed path"]),
    ("wrong width", "POST", "/v1/models/mlp:predict", b'{"instances": [[1, 2]]}', None, 400,
     ["input 'x'", "dim 1 is 784", "has 2"]),
    ("wrong rank", "POST", "/v1/models/cnn:predict", b'{"inputs": [[1, 2]]}', None, 400,
     ["input 'image'", "rank 4", "rank 2"]),
    ("fixed batch", "POST", "/v1/models/cnn:predict",
     json.dumps({"instances": np.zeros((2, 1, 28, 28)).tolist()}).encode(), None, 400, ["1 instance per request, got 2"]),
    ("not rectangular", "POST", "/v1/models/emb:predict", b'{"inputs": [[1], [2, 3]]}', None, 400, ["input 'ids'"]),
    ("ragged rows", "POST", "/v1/models/mlp:predict", json.dumps({"inputs": [[0] * 784, [0] * 783]}).encode(), None,
     400, ["input 'x'[1]", "not rectangular", "783"]),
    ("fraction for int64", "POST", "/v1/models/emb:predict", b'{"instances": [1.5, 2]}', None, 400,
     ["input 'ids'", "1.5", "int64"]),
    ("string value", "POST", "/v1/models/emb:predict", b'{"instances": ["a", 2]}', None, 400, ["expected a number"]),
    ("float32 overflow", "POST", "/v1/models/addc:predict", b'{"instances": [[1e39, 0, 0, 0]]}', None, 400,
     ["overflows float32"]),
    ("id out of range (run)", "POST", "/v1/models/emb:predict", b'{"instances": [9, 0]}', None, 400, ["run failed"]),
    ("malformed JSON", "POST", "/v1/models/mlp:predict", b'{"instances": [[1, 2', None, 400, ["malformed JSON at byte"]),
    ("not an object", "POST", "/v1/models/mlp:predict", b"[1, 2]", None, 400, ["must be an object"]),
    ("both keys", "POST", "/v1/models/mlp:predict", b'{"instances": [], "inputs": []}', None, 400, ["both"]),
    ("neither key", "POST", "/v1/models/mlp:predict", b'{"data": []}', None, 400, ["unknown key", "data"]),
    ("unknown input", "POST", "/v1/models/mlp:predict", b'{"inputs": {"z": [[1]]}}', None, 400, ["unknown input 'z'"]),
    ("empty body", "POST", "/v1/models/mlp:predict", b"", None, 400, ["empty body"]),
    ("npy dtype", "POST", "/v1/models/mlp:predict", npy_bytes(np.zeros((1, 784), np.int64)), "application/x-npy", 400,
     ["input 'x'", "int64", "float32"]),
    ("npy float64", "POST", "/v1/models/mlp:predict", npy_bytes(np.zeros((1, 784))), "application/x-npy", 400,
     ["input 'x'", "'<f8' is not supported"]),
    ("npy shape", "POST", "/v1/models/mlp:predict", npy_bytes(np.zeros((1, 783), np.float32)), "application/x-npy",
     400, ["input 'x'", "dim 1 is 784"]),
    ("npy malformed", "POST", "/v1/models/mlp:predict", b"\x93NUMPY\x01\x00\x10\x00{'descr': oops}", "application/x-npy",
     400, ["input 'x'"]),
    ("npy truncated", "POST", "/v1/models/mlp:predict", npy_bytes(np.zeros((1, 784), np.float32))[:-100],
     "application/x-npy", 400, ["input 'x'"]),
    ("npy extra array", "POST", "/v1/models/mlp:predict",
     npy_bytes(np.zeros((1, 784), np.float32), np.zeros(3, np.float32)), "application/x-npy", 400,
     ["after the last input"]),
    ("content type", "POST", "/v1/models/mlp:predict", b"x", "text/html", 415, ["unsupported Content-Type"]),
    ("body too large", "POST", "/v1/models/mlp:predict", json.dumps(BIG).encode(), None, 413, ["body too large"]),
    ("GET on predict", "GET", "/v1/models/mlp:predict", None, None, 405, ["use POST"]),
    ("POST on healthz", "POST", "/healthz", b"", None, 405, ["use GET"]),
    ("unknown endpoint", "GET", "/v2/whatever", None, None, 404, ["no such endpoint"]),
    ("unknown verb", "POST", "/v1/models/mlp:classify", b"{}", None, 404, [":classify"]),
    ("rollback without previous", "POST", "/v1/models/mlp:rollback", b"", None, 409, []),
]


@pytest.mark.parametrize("case", ERRORS, ids=[c[0] for c in ERRORS])
def test_errors(server, case):
    name, method, path, body, ctype, status, words = case
    headers = {"Content-Type": ctype} if ctype else {"Content-Type": "application/json"} if body is not None else {}
    st, r, data = server.request(method, path, body, headers)
    assert st == status, data
    assert r.getheader("Content-Type") == "application/json"
    msg = json.loads(data)["error"]
    for w in words:
        assert w in msg, msg


def test_body_too_large_chunked(server):
    """No Content-Length (chunked): the limit holds while the body streams in."""
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    chunks = (b"[" + b"0," * 50000 + b"0]" for _ in range(4))
    c.request("POST", "/v1/models/mlp:predict", body=chunks, headers={"Content-Type": "application/json"},
              encode_chunked=True)
    r = c.getresponse()
    assert r.status == 413 and "body too large" in json.loads(r.read())["error"]
    c.close()


def test_metrics(server):
    parser = pytest.importorskip("prometheus_client.parser")  # make deps installs it

    def read():
        st, r, data = server.request("GET", "/metrics")
        assert st == 200 and r.getheader("Content-Type").startswith("text/plain; version=0.0.4")
        out = {}
        for fam in parser.text_string_to_metric_families(data.decode()):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    before = read()
    x = np.zeros((1, 784), np.float32).tolist()
    for _ in range(5):
        assert server.predict("/v1/models/mlp:predict", {"instances": x})[0] == 200
    assert server.predict("/v1/models/mlp:predict", {"instances": [[1]]})[0] == 400  # refused before the run
    after = read()
    runs = ("mdeploy_runs_total", (("model", "mlp"), ("version", "1")))
    assert after[runs] - before.get(runs, 0) == 5
    ok = ("mdeploy_serve_http_responses_total", (("code", "200"),))
    assert after[ok] - before.get(ok, 0) == 5 + 1  # the first /metrics read counts too
    bad = ("mdeploy_serve_http_responses_total", (("code", "400"),))
    assert after[bad] - before.get(bad, 0) == 1
    assert after[("mdeploy_serve_requests_in_flight", ())] == 0
    assert ("mdeploy_serve_rollbacks_total", (("model", "mlp"),)) in after


# ---- versions ---------------------------------------------------------------------------------


def addc_predict(s: Server, path: str = "/v1/models/addc:predict", conn=None):
    x = [1.0, 2.0, 3.0, 4.0]
    st, j, ver = s.predict(path, {"instances": [x]}, conn)
    assert st == 200, j
    c = j["predictions"][0][0] - x[0]
    assert j["predictions"] == [[v + c for v in x]]
    return ver, c


def test_version_pickup_and_manual_rollback(tmp_path):
    d = tmp_path / "models"
    fixtures(d, "addc/1=addc:1")
    s = Server(d, "--poll", "0.2")
    try:
        assert addc_predict(s) == ("1", 1.0)
        fixtures(d, "addc/2=addc:5")  # a new version directory appears
        wait_until(lambda: addc_predict(s)[0] == "2", "version 2 to serve")
        assert addc_predict(s) == ("2", 5.0)
        assert addc_predict(s, "/v1/models/addc/versions/1:predict") == ("1", 1.0)  # kept loaded
        st, j = s.get_json("/v1/models/addc")
        roles = {e["version"]: e["role"] for e in j["model_version_status"]}
        assert roles == {"1": "previous", "2": "stable"}, j
        st, r, data = s.request("POST", "/v1/models/addc:rollback", b"")
        assert st == 200, data
        assert addc_predict(s) == ("1", 1.0)
        assert "version 2" in s.stderr()  # the poller's log
    finally:
        s.stop()


def test_canary_split(tmp_path):
    d = tmp_path / "models"
    fixtures(d, "addc/1=addc:1")
    s = Server(d, "--poll", "0.2", "--canary", "10", "--promote-after", "0", "--threads", "2")
    try:
        fixtures(d, "addc/2=addc:2")

        def canary():
            st, j = s.get_json("/v1/models/addc")
            return any(e["version"] == "2" and e["role"] == "canary" for e in j["model_version_status"])

        wait_until(canary, "version 2 as the canary")
        counts = {"1": 0, "2": 0}
        for _ in range(2000):
            ver, c = addc_predict(s)
            assert c == {"1": 1.0, "2": 2.0}[ver]  # the answer is the version's
            counts[ver] += 1
        share = 100.0 * counts["2"] / 2000
        print(f"canary share: {share:.2f}% of 2000 requests (--canary 10)")
        assert abs(share - 10.0) <= 2.0, counts
        assert addc_predict(s, "/v1/models/addc/versions/1:predict") == ("1", 1.0)  # pinned
        assert addc_predict(s, "/v1/models/addc/versions/2:predict") == ("2", 2.0)
    finally:
        s.stop()


def test_canary_rollback(tmp_path):
    """emb:2 fails every run on ids {2, 3}, which emb:4 serves: the canary is rolled back."""
    d = tmp_path / "models"
    fixtures(d, "emb/1=emb:4")
    s = Server(d, "--poll", "0.2", "--canary", "50", "--rollback-window", "20", "--rollback-error-rate", "0.1",
               "--promote-after", "0")
    try:
        fixtures(d, "emb/2=emb:2")
        wait_until(lambda: any(e["role"] == "canary" for e in s.get_json("/v1/models/emb")[1]["model_version_status"]),
                   "version 2 as the canary")
        outcomes = []
        for _ in range(200):
            st, j, ver = s.predict("/v1/models/emb:predict", {"instances": [2, 3]})
            outcomes.append((st, ver))
            if st == 200:
                assert ver == "1" and j == {"predictions": [[20, 21, 22], [30, 31, 32]]}
            else:
                assert st == 400 and "version 2" in j["error"] and "run failed" in j["error"], j
        failed = sum(st != 200 for st, _ in outcomes)
        assert 1 <= failed <= 25, outcomes  # judged over 20 canary requests, then out of routing
        assert all(st == 200 for st, _ in outcomes[-100:])
        st, j = s.get_json("/v1/models/emb")
        v2 = [e for e in j["model_version_status"] if e["version"] == "2"][0]
        assert v2["role"] == "rolled_back" and v2["state"] != "AVAILABLE", j
        st, r, data = s.request("GET", "/metrics")
        assert re.search(rb'mdeploy_serve_rollbacks_total\{model="emb"\} 1\b', data), data[-2000:]
        st, j, _ = s.predict("/v1/models/emb/versions/2:predict", {"instances": [0, 1]})
        assert st == 404  # not serving
    finally:
        s.stop()


def test_readyz_without_serving_version(tmp_path):
    d = tmp_path / "models"
    fixtures(d, "bad/1=corrupt:1")
    s = Server(d, "--poll", "0")
    try:
        st, j = s.get_json("/readyz")
        assert st == 503 and j["ready"] is False
        st, j, _ = s.predict("/v1/models/bad:predict", {"instances": [[1, 2, 3, 4]]})
        assert st in (404, 503) and "bad" in j["error"]
    finally:
        s.stop()


# ---- the bounded queue --------------------------------------------------------------------------


@pytest.mark.parametrize("limit, words", [(["--queue", "0"], "1 requests running and 0 waiting"),
                                          (["--queue", "8", "--queue-timeout", "1"], "within 1 ms")],
                         ids=["queue full", "queue timeout"])
def test_busy_503(tmp_path, limit, words):
    """One inference slot and no queue (or a 1 ms wait): concurrent requests to a slow model get
    503 + Retry-After."""
    d = tmp_path / "models"
    (d / "slow" / "1").mkdir(parents=True)
    (d / "slow" / "1" / "model.mdl").write_bytes(build_slow(layers=300))
    s = Server(d, "--poll", "0", "--threads", "1", *limit)
    body = npy_bytes(np.ones((64, 512), np.float32))
    results = []

    def client():
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=120)
        st, r, data = s.request("POST", "/v1/models/slow:predict", body, {"Content-Type": "application/x-npy"}, c)
        results.append((st, r.getheader("Retry-After"), data))
        c.close()

    try:
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(st for st, _, _ in results)
        assert codes.count(200) >= 1 and codes.count(503) >= 1, codes
        for st, retry, data in results:
            if st == 503:
                assert retry == "1" and "server busy" in json.loads(data)["error"]
                assert words in json.loads(data)["error"]
        st, r, data = s.request("GET", "/metrics")
        assert re.search(rb"mdeploy_serve_rejected_total %d\b" % codes.count(503), data)
    finally:
        s.stop()


# ---- command line and malformed HTTP -------------------------------------------------------------


def test_cli():
    r = subprocess.run([str(SERVER), "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    src = (REPO / "tools" / "serve" / "serve.c").read_text()
    options = re.findall(r'\{"([a-z0-9-]+)", (?:\'[a-z]\'|O_[A-Z0-9_]+), ', src)
    assert len(options) >= 19
    for o in options:
        assert f"--{o}" in r.stdout, o
    assert "examples:" in r.stdout and "curl" in r.stdout
    r = subprocess.run([str(SERVER), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == f"mdeploy-serve (mdeploy) {_lib.lib.mdl_version().decode()}"
    for args, words in ((["--port=99999", "--model-dir", "x"], "--port"), (["--port"], "needs a value"),
                        ([], "--model-dir"), (["--model-dir=/nonexistent/dir"], "/nonexistent/dir"),
                        (["--canary", "101", "-m", "x"], "--canary"), (["--max-body=12Q", "-m", "x"], "--max-body")):
        r = subprocess.run([str(SERVER), *args], capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and words in r.stderr, (args, r.stderr)


def test_malformed_http(server):
    spec = importlib.util.spec_from_file_location("serve_http_fuzz", REPO / "tests" / "tools" / "serve_http_fuzz.py")
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    stats = fuzz.run_cases(server.port, rounds=150, alive=lambda: server.proc.poll() is None)
    assert stats.get("4xx", 0) > 100, stats
    assert server.get_json("/healthz")[0] == 200
