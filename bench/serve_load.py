#!/usr/bin/env python3
"""Loopback load test of mdeploy-serve (issue #19): the MLP (tests/models/mlp.onnx, batch 1) and
the MNIST CNN (tests/models/mnist_cnn.onnx), JSON and .npy bodies, with wrk (Debian's wrk) when it
is installed, else a Python client with a fixed request count and a few connections.  Reports
requests/s, p50/p99 latency, non-200 answers, and the server's RSS at start and after each
round (a leak would grow it round after round).

    python3 bench/serve_load.py [--build build/release] [--seconds 10] [--rounds 3]
        [--connections 4] [--server-threads 2] [--out bench/results/serve.md]

Not part of make check (the machine is shared; the numbers are only meaningful side by side).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "tests" / "models"


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def wrk_round(port: int, path: str, body: bytes, ctype: str, seconds: int, conns: int, tmp: Path):
    body_file = tmp / "body.bin"
    body_file.write_bytes(body)
    lua = tmp / "post.lua"
    lua.write_text(
        'wrk.method = "POST"\n'
        f'wrk.headers["Content-Type"] = "{ctype}"\n'
        f'local f = io.open("{body_file}", "rb"); wrk.body = f:read("*all"); f:close()\n')
    out = subprocess.run(["wrk", "-t", str(min(2, conns)), "-c", str(conns), "-d", f"{seconds}s", "--latency",
                          "-s", str(lua), f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                         check=True).stdout

    def lat(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v

    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    if m:
        errs += sum(int(x) for x in re.findall(r"\d+", m.group(1)))
    return reqs, rps, lat(50), lat(99), errs


def py_round(port: int, path: str, body: bytes, ctype: str, count: int, conns: int):
    lat, errs = [], [0]
    lock = threading.Lock()

    def client(n):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        for _ in range(n):
            t0 = time.perf_counter()
            c.request("POST", path, body=body, headers={"Content-Type": ctype})
            r = c.getresponse()
            r.read()
            mine.append(time.perf_counter() - t0)
            if r.status != 200:
                with lock:
                    errs[0] += 1
        with lock:
            lat.extend(mine)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=client, args=(count // conns,)) for _ in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    a = np.array(lat) * 1000
    return len(lat), len(lat) / dt, float(np.percentile(a, 50)), float(np.percentile(a, 99)), errs[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--seconds", type=int, default=10, help="per round with wrk")
    ap.add_argument("--requests", type=int, default=20000, help="per round with the Python client")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--server-threads", type=int, default=2)
    ap.add_argument("--python-client", action="store_true", help="even when wrk is installed")
    ap.add_argument("--out", help="write the results as markdown here")
    a = ap.parse_args()
    build = Path(a.build)
    use_wrk = shutil.which("wrk") and not a.python_client
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        md = d / "models"
        for name, onnx in (("mlp", "mlp"), ("cnn", "mnist_cnn")):
            (md / name / "1").mkdir(parents=True)
            subprocess.run([str(build / "bin/mdeploy-convert"), str(MODELS / f"{onnx}.onnx"), "-o",
                            str(md / name / "1/model.mdl"), "-q"], check=True)
        log = open(d / "server.log", "w")
        p = subprocess.Popen([str(build / "bin/mdeploy-serve"), "--model-dir", str(md), "--port", "0", "--address",
                              "127.0.0.1", "--threads", str(a.server_threads), "--poll", "0"],
                             stdout=subprocess.PIPE, stderr=log, text=True,
                             env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
        try:
            select.select([p.stdout], [], [], 60)
            port = int(re.search(r":(\d+) \(", p.stdout.readline()).group(1))
            rss0 = rss_kib(p.pid)
            x_mlp = np.load(MODELS / "mlp.in0.npy")
            x_cnn = np.load(MODELS / "mnist_cnn.in0.npy")
            cases = []
            for model, x in (("mlp", x_mlp), ("cnn", x_cnn)):
                f = io.BytesIO()
                np.save(f, x)
                cases.append((model, "json", json.dumps({"instances": x.tolist()}).encode(), "application/json"))
                cases.append((model, "npy", f.getvalue(), "application/x-npy"))
            for model, fmt, body, ctype in cases:
                path = f"/v1/models/{model}:predict"
                py_round(port, path, body, ctype, 200, 2)  # warm up (sessions created)
                rss = [rss_kib(p.pid)]
                res = []
                for _ in range(a.rounds):
                    res.append(wrk_round(port, path, body, ctype, a.seconds, a.connections, d) if use_wrk else
                               py_round(port, path, body, ctype, a.requests, a.connections))
                    rss.append(rss_kib(p.pid))
                reqs = sum(r[0] for r in res)
                errs = sum(r[4] for r in res)
                rps = [r[1] for r in res]
                row = dict(model=model, body=fmt, bytes=len(body), requests=reqs, rps=rps,
                           p50=[r[2] for r in res], p99=[r[3] for r in res], errors=errs, rss=rss)
                rows.append(row)
                print(f"{model:4} {fmt:5} {len(body):6} B body: {reqs} requests, "
                      f"{' / '.join(f'{v:.0f}' for v in rps)} req/s, p50 {' / '.join(f'{v:.2f}' for v in row['p50'])} ms, "
                      f"p99 {' / '.join(f'{v:.2f}' for v in row['p99'])} ms, {errs} errors, RSS KiB {rss}", flush=True)
        finally:
            p.send_signal(signal.SIGTERM)
            rc = p.wait(60)
    if a.out:
        tool = (f"wrk 4.1 (-t {min(2, a.connections)} -c {a.connections} -d {a.seconds}s --latency)" if use_wrk
                else f"a Python client ({a.requests} requests per round, {a.connections} connections)")
        lines = [
            "# mdeploy-serve load test (loopback)",
            "",
            f"`python3 bench/serve_load.py --build {a.build} --rounds {a.rounds} --connections {a.connections}"
            f" --server-threads {a.server_threads}` ({time.strftime('%Y-%m-%d')}): {tool} against",
            f"`mdeploy-serve --threads {a.server_threads}` on 127.0.0.1, keep-alive connections, one request per",
            "row of the stored conformance input (MLP: x [1,784] -> [1,1]; CNN: image [1,1,28,28] -> [1,10]).",
            f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with other jobs (noisy:",
            "compare rows side by side).  Each cell lists the rounds in order; RSS is the server's VmRSS",
            "after the warm-up and after each round (flat = no growth under load).",
            "",
            "| model | body | bytes | requests | req/s | p50 ms | p99 ms | errors | RSS KiB |",
            "|---|---|---:|---:|---|---|---|---:|---|",
        ]
        for r in rows:
            lines.append(f"| {r['model']} | {r['body']} | {r['bytes']} | {r['requests']} | "
                         f"{' / '.join(f'{v:.0f}' for v in r['rps'])} | {' / '.join(f'{v:.2f}' for v in r['p50'])} | "
                         f"{' / '.join(f'{v:.2f}' for v in r['p99'])} | {r['errors']} | "
                         f"{' / '.join(str(v) for v in r['rss'])} |")
        lines += ["", f"Server RSS at start (models loaded, before any request): {rss0} KiB; exit status {rc}."]
        Path(a.out).write_text("\n".join(lines) + "\n")
    return 0 if rc == 0 and all(r["errors"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
