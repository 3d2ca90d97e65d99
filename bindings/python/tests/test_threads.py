"""One model shared by threads: same results as single-threaded, and the GIL is released."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import mdeploy
from conftest import build_slow, fixture_io, manifest_fixtures

THREADS = 4


def _batches(n: int, shape, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]


def test_model_run_from_threads_matches_serial(mlp):
    xs = _batches(400, (2, 4))
    serial = [mlp.run(x)[0] for x in xs]
    with ThreadPoolExecutor(THREADS) as pool:
        parallel = list(pool.map(lambda x: mlp.run(x)[0], xs))
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)


def test_sessions_per_thread_match_serial(two_io):
    xs = _batches(200, (2, 3), seed=1)
    ys = _batches(200, (2, 3), seed=2)
    serial = [two_io.run([a, b]) for a, b in zip(xs, ys)]
    results = [None] * THREADS
    barrier = threading.Barrier(THREADS)

    def work(k: int) -> None:
        s = mdeploy.Session(two_io)
        barrier.wait()  # all threads run at the same time
        mine = []
        for i in range(k, len(xs), THREADS):
            mine.append((i, s.run({"a": xs[i], "b": ys[i]})))
        results[k] = mine

    threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seen = 0
    for mine in results:
        for i, (s_, p_) in mine:
            np.testing.assert_array_equal(s_, serial[i][0])
            np.testing.assert_array_equal(p_, serial[i][1])
            seen += 1
    assert seen == len(xs)


@pytest.mark.parametrize("name", ["mnist_cnn", "text_lstm"])
def test_fixture_from_threads_matches_serial(converted, name):
    f = {x["name"]: x for x in manifest_fixtures()}[name]
    m = mdeploy.Model(converted(name))
    ins, _ = fixture_io(f)
    rng = np.random.default_rng(5)
    inputs = []
    for _ in range(12):
        d = {}
        for k, v in ins.items():
            if v.dtype.kind == "f":
                d[k] = (v + rng.standard_normal(v.shape).astype(v.dtype) * 0.1).astype(v.dtype)
            else:
                d[k] = rng.permutation(v.ravel()).reshape(v.shape)
        inputs.append(d)
    serial = [m.run(d)[0] for d in inputs]
    with ThreadPoolExecutor(THREADS) as pool:
        parallel = list(pool.map(lambda d: m.run(d)[0], inputs))
    for a, b in zip(serial, parallel):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.fixture(scope="module")
def slow_model():
    """A model whose single run takes long enough (>= ~60 ms) to observe other threads."""
    layers = 8
    while True:
        m = mdeploy.Model(build_slow(layers))
        s = m.session()
        x = np.ones(m.inputs[0].shape, np.float32)
        s.run(x)
        t0 = time.perf_counter()
        s.run(x)
        dt = time.perf_counter() - t0
        if dt >= 0.06 or layers >= 512:
            return m
        layers = min(512, int(layers * max(2.0, 0.08 / max(dt, 1e-4))))


def test_gil_released_during_run(slow_model):
    """While one thread is inside Session.run, pure-Python code in another keeps running."""
    s = slow_model.session()
    x = np.ones(slow_model.inputs[0].shape, np.float32)
    stamps = []
    stop = threading.Event()

    def ticker() -> None:
        while not stop.is_set():
            stamps.append(time.perf_counter())

    t = threading.Thread(target=ticker)
    t.start()
    try:
        time.sleep(0.01)
        t0 = time.perf_counter()
        s.run(x, copy=False)
        t1 = time.perf_counter()
    finally:
        stop.set()
        t.join()
    inside = [v for v in stamps if t0 < v < t1]
    # Holding the GIL, the ticker could run at most one switch interval (5 ms) inside the window.
    assert inside, "no Python thread ran during Session.run: the GIL was not released"
    covered = inside[-1] - inside[0]
    assert covered > 0.5 * (t1 - t0), f"ticker ran {covered * 1e3:.1f} ms of a {(t1 - t0) * 1e3:.1f} ms run"


def test_session_refuses_concurrent_use(slow_model):
    s = slow_model.session()
    x = np.ones(slow_model.inputs[0].shape, np.float32)
    t = threading.Thread(target=s.run, args=(x,))
    t.start()
    deadline = time.monotonic() + 5
    while not s._busy.locked() and time.monotonic() < deadline:
        time.sleep(0.0005)
    assert s._busy.locked()
    with pytest.raises(mdeploy.Error) as e:
        s.run(x)
    assert "another thread" in str(e.value)
    t.join()
    s.run(x)  # usable again once the other thread is done


def test_close_while_threads_run(mlp_bytes):
    """Closing a model (and a session) while other threads run it: they finish or get a clean
    Error; nothing is freed under a running call."""
    m = mdeploy.Model(mlp_bytes)
    shared = m.session()
    x = np.ones((2, 4), np.float32)
    ref = m.run(x)[0]
    problems = []
    started = threading.Barrier(THREADS + 1)

    def work(k: int) -> None:
        started.wait()
        own = m.session() if k % 2 else None
        for _ in range(2000 if own is not None else 200000):
            try:
                y = (own.run(x) if own is not None else m.run(x))[0]
                if not np.array_equal(y, ref):
                    problems.append("wrong result")
            except mdeploy.Error as e:
                if "closed" not in str(e):
                    problems.append(repr(e))
                return
        if own is None:
            problems.append("Model.run kept working after close()")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.05)
    m.close()
    shared.close()
    for t in threads:
        t.join()
    assert not problems, problems[:5]


# ---- intra-op threads: one run split over a session's own workers ------------------------------


@pytest.mark.parametrize("name", ["mlp_b64", "mnist_cnn", "text_lstm", "bilstm", "recommender", "digits"])
def test_intra_op_threads_bit_identical(converted, name):
    f = {x["name"]: x for x in manifest_fixtures()}[name]
    path = converted(name)
    one = mdeploy.Model(path)
    ins, _ = fixture_io(f)
    for n in (2, 3):
        many = mdeploy.Model(path, threads=n)
        assert many.threads == n
        with many.session() as s:
            assert s.threads == n
            for a, b in zip(one.run(ins), s.run(ins)):
                np.testing.assert_array_equal(a, b)  # bit-identical, not just close
        for a, b in zip(one.run(ins), many.run(ins)):
            np.testing.assert_array_equal(a, b)


def test_intra_op_threads_large_batch_bit_identical():
    m1 = mdeploy.Model(build_slow(3, batch=64, width=256))
    m2 = mdeploy.Model(build_slow(3, batch=64, width=256), threads=2)
    x = np.random.default_rng(3).standard_normal(m1.inputs[0].shape).astype(np.float32)
    np.testing.assert_array_equal(m1.run(x)[0], m2.run(x)[0])
    assert mdeploy.Session(m1, threads=2).threads == 2


@pytest.mark.parametrize("bad", [0, -1, 65])
def test_intra_op_threads_out_of_range(mlp_path, bad):
    with pytest.raises(mdeploy.Error) as e:
        mdeploy.Model(mlp_path, threads=bad)
    assert e.value.status == mdeploy.Status.INVALID_ARGUMENT
    with pytest.raises(TypeError):
        mdeploy.Model(mlp_path, threads=2.0)
