"""No memory growth over many runs: Python allocations (tracemalloc) and process RSS."""

from __future__ import annotations

import gc
import os
import tracemalloc

import numpy as np

import mdeploy
from conftest import build_embedding

RUNS = 10_000
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _measure(step, runs: int = RUNS, warmup: int = 500):
    """Python heap growth (tracemalloc) and RSS growth over `runs` calls of step(i), after
    `warmup` calls that let caches, pools and allocator arenas reach their steady size."""
    for i in range(warmup):
        step(i)
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(warmup):
            step(i)
        gc.collect()
        before = tracemalloc.take_snapshot()
        rss0 = rss_bytes()
        for i in range(runs):
            step(i)
        gc.collect()
        rss1 = rss_bytes()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    stats = after.compare_to(before, "filename")
    growth = sum(s.size_diff for s in stats)
    # Anything that grows by one object per run shows up as >= RUNS * tens of bytes.
    top = "\n".join(str(s) for s in stats[:5])
    return growth, rss1 - rss0, top


def test_model_run_no_growth(mlp):
    xs = [np.random.default_rng(i).standard_normal((2, 4)).astype(np.float32) for i in range(8)]

    def step(i: int) -> None:
        (y,) = mlp.run(xs[i % 8])
        assert y.shape == (2, 3)

    py, rss, top = _measure(step)
    assert py < 64 * 1024, f"Python heap grew by {py} bytes over {RUNS} runs:\n{top}"
    assert rss < 1024 * 1024, f"RSS grew by {rss} bytes over {RUNS} runs"


def test_session_run_no_growth(two_io):
    s = two_io.session()
    a = np.ones((2, 3), np.float32)
    b = np.full((2, 3), 2.0, np.float32)
    s2 = two_io.session()

    def step(i: int) -> None:
        out = s.run({"a": a, "b": b}, as_dict=True)
        assert out["sum"][0, 0] == 3.0
        s2.run([a, b], copy=False)

    py, rss, top = _measure(step)
    assert py < 64 * 1024, f"Python heap grew by {py} bytes over {RUNS} runs:\n{top}"
    assert rss < 1024 * 1024, f"RSS grew by {rss} bytes over {RUNS} runs"


def test_errors_no_growth(embedding):
    """Failed runs (out-of-range id, wrong dtype) leak nothing either."""
    bad_id = np.array([0, 1, 99, 2, 3], np.int64)
    bad_dtype = np.zeros(5, np.float32)

    def step(i: int) -> None:
        try:
            embedding.run(bad_id if i % 2 else bad_dtype)
        except mdeploy.Error:
            pass
        else:
            raise AssertionError("no error")

    py, rss, top = _measure(step, runs=2000, warmup=200)
    assert py < 64 * 1024, f"Python heap grew by {py} bytes:\n{top}"
    assert rss < 1024 * 1024, f"RSS grew by {rss} bytes"


def test_model_and_session_lifecycle_no_growth(mlp_bytes):
    """Loading and dropping models and sessions returns their C memory."""
    emb = build_embedding()
    x = np.ones((2, 4), np.float32)

    def step(i: int) -> None:
        m = mdeploy.Model(mlp_bytes if i % 2 else emb)
        s = m.session()
        if i % 2:
            s.run(x)
        del s, m

    py, rss, top = _measure(step, runs=2000, warmup=200)
    assert py < 64 * 1024, f"Python heap grew by {py} bytes:\n{top}"
    assert rss < 1024 * 1024, f"RSS grew by {rss} bytes"
