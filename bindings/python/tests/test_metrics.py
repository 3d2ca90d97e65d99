"""Run metrics (Model(metrics=True)): exact counts for a known sequence of good and failing runs,
the Prometheus exposition read back with prometheus_client's own parser, several models on one
page, label escaping, and counts from several threads."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

import mdeploy
from conftest import EMB_TABLE, Builder, build_embedding, build_mlp

parser = pytest.importorskip("prometheus_client.parser")  # make deps installs it

# The documented buckets (include/mdeploy/metrics.h), seconds.
BOUNDS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, math.inf]
STATUSES = ["INVALID_ARGUMENT", "OUT_OF_MEMORY", "IO", "CORRUPT_MODEL", "VERSION", "UNSUPPORTED",
            "SHAPE", "DTYPE", "OUT_OF_RANGE", "BUFFER_TOO_SMALL", "INTERNAL", "LIMIT"]
NAME = 'emb "q"\\x\ny'  # every character a label value must escape


def named_embedding(name: str, version: str) -> bytes:
    b = Builder()
    ids = b.tensor("ids", np.int64, (5,))
    table = b.tensor("table", np.float32, (10, 4), EMB_TABLE)
    out = b.tensor("emb", np.float32, None)
    b.node("GATHER", "embedding", [table, ids], [out])
    b.io([ids], [out])
    b.meta("name", name)
    b.meta("version", version)
    return b.finish()


def families(text: str):
    return {f.name: f for f in parser.text_string_to_metric_families(text)}


def run_sequence(m: mdeploy.Model):
    """6 good runs, 2 with an id out of range, one wrong shape, one wrong dtype; returns the wall
    time of the good runs."""
    good = 0.0
    for i in range(6):
        ids = np.array([i, 1, 2, 3, 9], np.int64)
        t0 = time.perf_counter()
        (y,) = m.run(ids)
        good += time.perf_counter() - t0
        np.testing.assert_array_equal(y, EMB_TABLE[ids])
    for bad in (np.array([0, 1, 10, 3, 4], np.int64), np.array([-11, 0, 0, 0, 0], np.int64)):
        with pytest.raises(mdeploy.Error) as e:
            m.run(bad)
        assert e.value.status == mdeploy.Status.OUT_OF_RANGE
    with pytest.raises(mdeploy.Error) as e:
        m.run(np.zeros(4, np.int64))
    assert e.value.status == mdeploy.Status.SHAPE
    with pytest.raises(mdeploy.Error) as e:
        m.run(np.zeros(5, np.float32))
    assert e.value.status == mdeploy.Status.DTYPE
    return good


def test_counts_and_prometheus_parse():
    m = mdeploy.Model(named_embedding(NAME, "2.0"), op_metrics=True)
    wall = run_sequence(m)

    d = m.metrics()
    assert d["runs"] == 10
    assert d["errors"] == {s: {"OUT_OF_RANGE": 2, "SHAPE": 1, "DTYPE": 1}.get(s, 0) for s in STATUSES}
    lat = d["latency"]
    assert lat["count"] == 6
    assert [b for b, _ in lat["buckets"]] == pytest.approx(BOUNDS)
    counts = [c for _, c in lat["buckets"]]
    assert counts == sorted(counts) and counts[-1] == 6
    assert 0 < lat["sum_seconds"] <= wall
    assert list(d["ops"]) == ["Gather"] and 0 < d["ops"]["Gather"] <= lat["sum_seconds"] + 1e-3

    text = m.metrics_prometheus()
    fam = families(text)
    labels = {"model": NAME, "version": "2.0"}  # the parser unescapes: must give the name back

    runs = fam["mdeploy_runs"]
    assert runs.type == "counter"
    assert [(s.name, s.labels, s.value) for s in runs.samples] == [("mdeploy_runs_total", labels, 10)]

    errs = fam["mdeploy_run_errors"]
    assert errs.type == "counter"
    got = {s.labels["status"]: s.value for s in errs.samples}
    assert got == {s: float(d["errors"][s]) for s in STATUSES}
    assert all({k: v for k, v in s.labels.items() if k != "status"} == labels for s in errs.samples)

    hist = fam["mdeploy_run_duration_seconds"]
    assert hist.type == "histogram"
    buckets = [(float(s.labels["le"]), s.value) for s in hist.samples if s.name.endswith("_bucket")]
    assert [b for b, _ in buckets] == pytest.approx(BOUNDS)
    assert [c for _, c in buckets] == counts
    (count,) = [s.value for s in hist.samples if s.name.endswith("_count")]
    (total,) = [s.value for s in hist.samples if s.name.endswith("_sum")]
    assert count == 6
    assert total == pytest.approx(lat["sum_seconds"], abs=1e-9)

    ops = fam["mdeploy_operator_seconds"]
    assert ops.type == "counter"
    assert [(s.labels["op"], s.value) for s in ops.samples] == [("Gather", pytest.approx(d["ops"]["Gather"], abs=1e-9))]


def test_several_models_one_page():
    a = mdeploy.Model(named_embedding("emb-a", "1"), metrics=True)
    b = mdeploy.Model(build_mlp(), metrics=True)  # name test-mlp, version 3.1
    off = mdeploy.Model(build_embedding())  # no metrics: left out
    run_sequence(a)
    for _ in range(3):
        b.run(np.zeros((2, 4), np.float32))
    off.run(np.arange(5, dtype=np.int64))
    text = mdeploy.metrics_prometheus([a, b, off])
    fam = families(text)  # the parser refuses a family that appears twice
    assert "mdeploy_operator_seconds" not in fam
    runs = {(s.labels["model"], s.labels["version"]): s.value for s in fam["mdeploy_runs"].samples}
    assert runs == {("emb-a", "1"): 10, ("test-mlp", "3.1"): 3}
    counts = {s.labels["model"]: s.value for s in fam["mdeploy_run_duration_seconds"].samples
              if s.name.endswith("_count")}
    assert counts == {"emb-a": 6, "test-mlp": 3}
    assert mdeploy.metrics_prometheus([off]) == ""
    with pytest.raises(mdeploy.Error) as e:
        off.metrics()
    assert e.value.status == mdeploy.Status.UNSUPPORTED


def test_threads_count_exactly():
    m = mdeploy.Model(build_embedding(), metrics=True)
    n_threads, runs = 4, 200

    def work(k: int) -> None:
        for i in range(runs):
            ids = np.array([i % 10, 0, 0, 0, 10 if (i + k) % 5 == 0 else 1], np.int64)
            try:
                m.run(ids)
            except mdeploy.Error as e:
                assert e.status == mdeploy.Status.OUT_OF_RANGE

    ts = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    bad = sum((i + k) % 5 == 0 for k in range(n_threads) for i in range(runs))
    d = m.metrics()
    assert d["runs"] == n_threads * runs
    assert d["errors"]["OUT_OF_RANGE"] == bad
    assert d["latency"]["count"] == n_threads * runs - bad
    assert d["ops"] is None
