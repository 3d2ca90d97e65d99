#!/usr/bin/env python3
"""Malformed HTTP against mdeploy-serve (issue #19): bad request lines and headers, huge or
negative Content-Length, broken chunked encoding, truncated bodies, and predict bodies that are
mutated JSON and .npy.  Checks that every complete request gets an HTTP answer (a status line;
4xx for what the client got wrong, never a 5xx other than 503 busy), that an incomplete one ends
with the server closing the connection, and that the server is alive and healthy afterwards and
exits cleanly on SIGTERM with nothing from the sanitizers in its log.

    python3 tests/tools/serve_http_fuzz.py --build build/release-noblas-san --rounds 3000

starts the server of that build (make SAN=1 for ASan+UBSan) on a temporary model directory
written by the build's tests/tools/serve_fixtures.  bindings/python/tests/test_serve.py runs a
short pass of it (run_cases) against the release server in make check.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

try:
    import numpy as np
except ImportError:  # only the .npy cases need it
    np = None


def read_answer(sock: socket.socket, timeout: float) -> Tuple[Optional[int], bool]:
    """Reads one HTTP response: (status or None, whether the server closed the connection)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            return _status(data), True
        if not chunk:
            return _status(data), True
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            if m and len(body) >= int(m.group(1)):
                return _status(data), False
            if not m and b"chunked" not in head.lower():
                return _status(data), False
    return _status(data), False


def _status(data: bytes) -> Optional[int]:
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", data)
    return int(m.group(1)) if m else None


def _npy(a) -> bytes:
    f = io.BytesIO()
    np.save(f, a)
    return f.getvalue()


def _mutate(rng: random.Random, b: bytes) -> bytes:
    b = bytearray(b)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(5)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1 and b:
            del b[rng.randrange(len(b)) :]
        elif op == 2:
            at = rng.randrange(len(b) + 1)
            b[at:at] = rng.choice([b"[", b"]", b"{", b"}", b",", b'"', b"1e999", b"-", b"\x00", b"\xff" * 4, b"NaN"])
        elif op == 3 and len(b) > 2:
            i, j = sorted(rng.sample(range(len(b)), 2))
            b[i:j] = b[i:j] * rng.randint(2, 5)
        else:
            b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(b)


def bodies(rng: random.Random) -> List[Tuple[str, str, bytes]]:
    """(path, content type, body): valid bodies for the fixture models, then mutated."""
    good = [
        ("/v1/models/addc:predict", "application/json", b'{"instances": [[1, 2, 3, 4]]}'),
        ("/v1/models/addc:predict", "application/json", b'{"inputs": {"x": [[1, 2, 3, 4]]}}'),
        ("/v1/models/emb:predict", "application/json", b'{"instances": [1, 3]}'),
        ("/v1/models/emb/versions/1:predict", "application/json", b'{"inputs": [0, 2]}'),
    ]
    if np is not None:
        good += [
            ("/v1/models/addc:predict", "application/x-npy", _npy(np.ones((1, 4), np.float32))),
            ("/v1/models/emb:predict", "application/x-npy", _npy(np.array([1, 2], np.int64))),
        ]
    path, ctype, body = rng.choice(good)
    out = [(path, ctype, _mutate(rng, body))]
    if rng.random() < 0.2:  # another model's body, or the other content type
        out.append((rng.choice(good)[0], rng.choice(["application/json", "application/x-npy"]), body))
    if rng.random() < 0.05:
        out.append((path, "application/json", b"[" * 5000 + b"]" * 5000))
    return out


ANSWER, ANSWER_OR_CLOSE, INCOMPLETE = "answer", "answer or close", "incomplete"


def raw_cases(port: int, rng: random.Random) -> List[Tuple[str, bytes, str]]:
    """(name, bytes sent, expectation): malformed requests below the body level.  A request
    libmicrohttpd cannot parse as HTTP at all (no request line, a chunk size that is not one) it
    may answer or just close the connection (ANSWER_OR_CLOSE); an incomplete one it closes after
    --timeout (INCOMPLETE); everything else must be answered."""
    h = f"Host: 127.0.0.1:{port}\r\n"
    big = "A" * 100000
    return [
        ("garbage line", b"GARBAGE\r\n\r\n", ANSWER_OR_CLOSE),
        ("bad version", b"GET /healthz HTTP/9.9\r\n" + h.encode() + b"\r\n", ANSWER),
        ("header without colon", ("GET /healthz HTTP/1.1\r\n" + h + "BadHeader\r\n\r\n").encode(), ANSWER),
        ("huge header", ("GET /healthz HTTP/1.1\r\n" + h + "X-Big: " + big + "\r\n\r\n").encode(), ANSWER),
        ("huge url", ("GET /v1/models/" + big + " HTTP/1.1\r\n" + h + "\r\n").encode(), ANSWER),
        ("nul in url", ("GET /v1/models/a%00b HTTP/1.1\r\n" + h + "\r\n").encode(), ANSWER),
        ("dot dot", ("GET /v1/models/..%2f..%2fetc HTTP/1.1\r\n" + h + "\r\n").encode(), ANSWER),
        ("bad version path", ("POST /v1/models/addc/versions/-1:predict HTTP/1.1\r\n" + h + "Content-Length: 2\r\n\r\n{}").encode(), ANSWER),
        ("huge content-length", ("POST /v1/models/addc:predict HTTP/1.1\r\n" + h + "Content-Length: 99999999999999999999999\r\n\r\n").encode(), ANSWER),
        ("negative content-length", ("POST /v1/models/addc:predict HTTP/1.1\r\n" + h + "Content-Length: -5\r\n\r\n").encode(), ANSWER),
        ("two content-lengths", ("POST /v1/models/addc:predict HTTP/1.1\r\n" + h + "Content-Length: 2\r\nContent-Length: 9\r\n\r\n{}").encode(), ANSWER),
        ("bad chunk size", ("POST /v1/models/addc:predict HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n").encode(), ANSWER),
        ("huge chunk size", ("POST /v1/models/addc:predict HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n{}\r\n0\r\n\r\n").encode(), ANSWER_OR_CLOSE),
        ("expect continue, too large", ("POST /v1/models/addc:predict HTTP/1.1\r\n" + h + "Expect: 100-continue\r\nContent-Length: 999999999999\r\n\r\n").encode(), ANSWER),
        ("many headers", ("GET /healthz HTTP/1.1\r\n" + h + "".join(f"X-{i}: {i}\r\n" for i in range(3000)) + "\r\n").encode(), ANSWER),
        ("pipelined", ("GET /healthz HTTP/1.1\r\n" + h + "\r\nGET /readyz HTTP/1.1\r\n" + h + "\r\n").encode(), ANSWER),
        ("random bytes", bytes(rng.randrange(256) for _ in range(rng.randint(1, 2000))) + b"\r\n\r\n", ANSWER_OR_CLOSE),
        ("truncated body", ("POST /v1/models/addc:predict HTTP/1.1\r\n" + h + "Content-Length: 1000\r\n\r\n{\"instances\"").encode(), INCOMPLETE),
        ("truncated headers", ("POST /v1/models/addc:predict HTTP/1.1\r\n" + h + "Content-Le").encode(), INCOMPLETE),
    ]


def post(path: str, ctype: str, body: bytes, port: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def run_cases(port: int, rounds: int, seed: int = 1, idle_timeout: float = 2.0, alive=None) -> Dict[str, int]:
    """Sends the raw cases once and `rounds` mutated bodies; returns counts by outcome and raises
    AssertionError on a request left unanswered or a 5xx other than 503."""
    rng = random.Random(seed)
    stats: Dict[str, int] = {}
    problems: List[str] = []

    def one(name: str, data: bytes, expect: str) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered and closed before reading it all (e.g. 413 at once)
            status, closed = read_answer(s, idle_timeout + 8 if expect == INCOMPLETE else 10)
        if expect != INCOMPLETE:
            if status is None and not (expect == ANSWER_OR_CLOSE and closed):
                problems.append(f"{name}: no answer")
            elif status and status >= 500 and status not in (503, 505):
                problems.append(f"{name}: {status}")
            key = f"{status // 100}xx" if status else "closed unanswered (not HTTP)"
        else:
            if status is None and not closed:
                problems.append(f"{name}: the incomplete request was neither answered nor closed")
            key = "incomplete closed" if closed or status else "open"
        stats[key] = stats.get(key, 0) + 1
        if alive is not None and not alive():
            raise AssertionError(f"the server died on case {name!r}")

    for name, data, expect in raw_cases(port, rng):
        one(name, data, expect)
    for i in range(rounds):
        for path, ctype, body in bodies(rng):
            one(f"body {i} {path} {ctype} {body[:60]!r}", post(path, ctype, body, port), ANSWER)
    assert not problems, "; ".join(problems[:20])
    return stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build/release", help="build directory (e.g. build/release-noblas-san)")
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    build = Path(a.build)
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([str(build / "tests/tools/serve_fixtures"), d, "addc/1=addc:1", "emb/1=emb:4"], check=True)
        log = open(Path(d) / "server.log", "w+")
        env = dict(os.environ, ASAN_OPTIONS="allocator_may_return_null=1:detect_leaks=1")
        p = subprocess.Popen([str(build / "bin/mdeploy-serve"), "--model-dir", d, "--port", "0", "--address",
                              "127.0.0.1", "--timeout", "2", "--max-body", "1M", "--poll", "0"],
                             stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        try:
            ready, _, _ = select.select([p.stdout], [], [], 60)
            line = p.stdout.readline() if ready else ""
            m = re.search(r":(\d+) \(", line)
            if not m:
                print(f"the server did not start: {line!r}", file=sys.stderr)
                return 1
            port = int(m.group(1))
            t0 = time.monotonic()
            stats = run_cases(port, a.rounds, a.seed, alive=lambda: p.poll() is None)
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
                assert read_answer(s, 10)[0] == 200, "not healthy afterwards"
            print(f"{sum(stats.values())} requests in {time.monotonic() - t0:.1f} s: {json.dumps(stats)}")
        finally:
            p.send_signal(signal.SIGTERM)
            rc = p.wait(60)
        log.seek(0)
        text = log.read()
        bad = [l for l in text.splitlines() if "ERROR: AddressSanitizer" in l or "runtime error" in l
               or "LeakSanitizer" in l]
        if rc != 0 or bad:
            print(f"server exit status {rc}\n" + "\n".join(text.splitlines()[-40:]), file=sys.stderr)
            return 1
        print(f"server exited cleanly (status 0), no sanitizer reports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
