"""examples/spark/score.py: Spark (local mode) and multiprocessing give exactly the scores of one
process, on 100k rows.  Run by `make check-spark` (which `make check` calls when Java is there):

    PYTHONPATH=bindings/python MDEPLOY_LIB=build/release/libmdeploy.so python3 -m pytest -s examples/spark
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

import mdeploy  # noqa: E402
import score  # noqa: E402

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")
ROWS = 100_000


@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark")
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java (apt-get install default-jre-headless)")
    # the executors' Python workers find mdeploy and this file like the driver does
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "bindings" / "python"), str(HERE),
                                                os.environ.get("PYTHONPATH", "")])
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    t0 = time.perf_counter()
    s = score.spark_session("local[2]", "mdeploy-score-test")
    s.sparkContext.setLogLevel("ERROR")
    print(f"\nspark: local[2] session started in {time.perf_counter() - t0:.1f} s")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def recommender(tmp_path_factory):
    """The recommender fixture (user, item ids -> score) at its fixed batch of 64, and a table of
    100k (row_id, user, item) rows."""
    d = tmp_path_factory.mktemp("rec")
    mdl = d / "recommender.mdl"
    mdeploy.convert(ROOT / "tests" / "models" / "recommender.onnx", mdl)
    rng = np.random.default_rng(7)
    df = pd.DataFrame({"row_id": np.arange(ROWS, dtype=np.int64),
                       "user": rng.integers(0, 1000, ROWS, dtype=np.int64),
                       "item": rng.integers(0, 2000, ROWS, dtype=np.int64)})
    df.to_parquet(d / "rows.parquet", index=False)
    df.iloc[:20_000].to_csv(d / "rows.csv", index=False)
    return mdl, d


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The digits CNN (64 pixel columns -> 10 probabilities), converted at a batch of 256, and
    20k rows of pixels (the held-back images, jittered)."""
    d = tmp_path_factory.mktemp("digits")
    mdl = d / "digits.mdl"
    mdeploy.convert(ROOT / "examples" / "digits" / "digits_cnn.onnx", mdl, input_shapes={"image": (256, 1, 8, 8)})
    images = np.load(ROOT / "examples" / "digits" / "images.npy").reshape(-1, 64)
    rng = np.random.default_rng(3)
    n = 20_000
    px = images[rng.integers(0, len(images), n)] + rng.standard_normal((n, 64)).astype(np.float32)
    df = pd.DataFrame(px.astype(np.float32), columns=[f"p{i}" for i in range(64)])
    df.insert(0, "row_id", np.arange(n, dtype=np.int64))
    df.to_parquet(d / "pixels.parquet", index=False)
    return mdl, d


def _same(got, ref, cols):
    got = got.sort_values("row_id").reset_index(drop=True)
    assert len(got) == len(ref)
    np.testing.assert_array_equal(got["row_id"].to_numpy(), ref["row_id"].to_numpy())
    for c in cols:
        np.testing.assert_array_equal(got[c].to_numpy(), ref[c].to_numpy())  # bit-identical


def test_spark_matches_single_process(spark, recommender):
    mdl, d = recommender
    kw = dict(keep=["row_id"])
    t0 = time.perf_counter()
    ref = score.score_single(str(mdl), str(d / "rows.parquet"), **kw)
    t_single = time.perf_counter() - t0
    assert ref["score"].notna().all() and len(ref) == ROWS
    times = []
    for run in range(2):  # the first job also starts the Python workers and loads the model
        t0 = time.perf_counter()
        score.score_spark(spark, str(mdl), str(d / "rows.parquet"), str(d / "out.parquet"), **kw)
        times.append(time.perf_counter() - t0)
        got = pd.read_parquet(d / "out.parquet")
        _same(got, ref, ["score"])
    print(f"\nrecommender, {ROWS} rows: one process {ROWS / t_single:,.0f} rows/s (score only); "
          f"Spark local[2] (read, score, write) {ROWS / times[1]:,.0f} rows/s warm ({times[1]:.1f} s), "
          f"{ROWS / times[0]:,.0f} rows/s for the first job ({times[0]:.1f} s)")


def test_spark_csv(spark, recommender):
    mdl, d = recommender
    ref = score.score_single(str(mdl), str(d / "rows.csv"), keep=["row_id"])
    score.score_spark(spark, str(mdl), str(d / "rows.csv"), str(d / "out.csv"), keep=["row_id"])
    got = pd.concat([score.read_table(str(f)) for f in sorted((d / "out.csv").glob("*.csv"))], ignore_index=True)
    got["score"] = got["score"].astype(np.float32)
    _same(got, ref, ["score"])


def test_spark_float_columns(spark, digits):
    mdl, d = digits
    ref = score.score_single(str(mdl), str(d / "pixels.parquet"), keep=["row_id"])
    assert list(ref.columns) == ["row_id"] + [f"probs_{j}" for j in range(10)]
    score.score_spark(spark, str(mdl), str(d / "pixels.parquet"), str(d / "out.parquet"), keep=["row_id"], threads=2)
    got = pd.read_parquet(d / "out.parquet")
    _same(got, ref, [f"probs_{j}" for j in range(10)])


def test_processes_match_single_process(recommender):
    mdl, d = recommender
    ref = score.score_single(str(mdl), str(d / "rows.parquet"), keep=["row_id"])
    t0 = time.perf_counter()
    got = score.score_processes(str(mdl), str(d / "rows.parquet"), str(d / "mp.parquet"), workers=2, keep=["row_id"])
    dt = time.perf_counter() - t0
    _same(got, ref, ["score"])
    _same(pd.read_parquet(d / "mp.parquet"), ref, ["score"])
    print(f"\nrecommender, {ROWS} rows: multiprocessing (2 processes) {ROWS / dt:,.0f} rows/s")


def test_batch_padding_is_invisible(recommender):
    """A table that is not a multiple of the batch: the padded last run changes no score."""
    mdl, d = recommender
    df = pd.read_parquet(d / "rows.parquet").iloc[:1000]
    s = score.Scorer(str(mdl), keep=["row_id"])
    whole = s.score(df)
    parts = pd.concat([s.score(df.iloc[i:i + 37]) for i in range(0, 1000, 37)], ignore_index=True)
    np.testing.assert_array_equal(whole["score"].to_numpy(), parts["score"].to_numpy())


def test_column_errors_name_the_input(recommender):
    mdl, d = recommender
    s = score.Scorer(str(mdl))
    with pytest.raises(ValueError, match="input 'item'"):
        s.columns_for(["user", "row_id"])
    with pytest.raises(ValueError, match="takes 1 column"):
        score.Scorer(str(mdl), inputs={"user": ["a", "b"]}).columns_for(["a", "b", "item"])
