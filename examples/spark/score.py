#!/usr/bin/env python3
"""Batch scoring of a table (Parquet or CSV) with an mdeploy model: on Spark, or on one machine.

    python3 examples/spark/score.py MODEL.mdl IN.parquet OUT.parquet                # Spark, local[*]
    python3 examples/spark/score.py MODEL.mdl IN.csv OUT.csv --engine processes     # multiprocessing
    python3 examples/spark/score.py MODEL.mdl IN.parquet OUT.parquet --master spark://host:7077

Engines:
  spark      PySpark DataFrame.mapInPandas: the .mdl file is shipped to the executors with
             SparkContext.addFile, each executor Python process loads it once (a module-level
             cache, kept across tasks because Spark reuses its Python workers) and scores the
             Arrow batches of its partitions, many rows per mdeploy run.  Executors need the
             `mdeploy` package (pip install ./bindings/python, or PYTHONPATH and MDEPLOY_LIB as
             here); this file is shipped with addPyFile.
  processes  the same on one machine with multiprocessing: one model per worker process,
             contiguous chunks of rows, results in input order.
  single     one process (the reference the others are tested against).

Columns: each model input reads the columns named by --input NAME=COL[,COL...]; without it an
input reads the column of its own name, or, for a model with one input, every column not kept
(--keep).  An input of shape [B, F...] takes prod(F) columns per row, in order; one of shape
[B] one column.  Each output becomes one column (shape [B] or [B, 1]) named after it, or
prod(F) columns NAME_0, NAME_1, ...; the --keep columns (e.g. an id) are passed through.

Batches: a model whose batch dimension is fixed (converted with --input-shape x=1024x...) runs
exactly that many rows per run; a model with a dynamic batch runs --batch rows per run.  The
last batch of every chunk is padded with zeros (valid ids for embedding lookups) and the padding
dropped, so every run has the same batch size and a row's score does not depend on which rows
share its batch (kernels choose their blocking from the batch size): Spark, multiprocessing and
one process give bit-identical results, whatever the partitioning.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

DEFAULT_BATCH = 1024

# One model per process: (path, threads) -> Scorer.  Spark keeps its Python workers between tasks
# (spark.python.worker.reuse, on by default) and multiprocessing's pool keeps its processes, so
# each process loads and verifies the model once.
_SCORERS: Dict[tuple, "Scorer"] = {}


class Scorer:
    """Scores pandas DataFrames with one model: columns in, columns out."""

    def __init__(self, model_path: str, inputs: Optional[Dict[str, List[str]]] = None,
                 keep: Sequence[str] = (), batch: int = DEFAULT_BATCH, threads: int = 1) -> None:
        import mdeploy

        self.model = mdeploy.Model(model_path, threads=threads)
        self.session = self.model.session()
        self.keep = list(keep)
        self.user_inputs = dict(inputs or {})
        b = self.model.inputs[0].shape[0] if self.model.inputs[0].shape else None
        # a fixed batch dimension is an int; a dynamic one (symbolic) is not
        self.batch = int(b) if isinstance(b, (int, np.integer)) and int(b) > 0 else int(batch)
        self.outputs = []  # (name, column names)
        for t in self.model.outputs:
            per = int(np.prod(t.shape[1:])) if len(t.shape) > 1 else 1
            self.outputs.append((t.name, [t.name] if per == 1 else [f"{t.name}_{j}" for j in range(per)]))

    def columns_for(self, columns: Sequence[str]) -> Dict[str, List[str]]:
        """The table columns each input reads (see the module doc)."""
        out = {}
        for t in self.model.inputs:
            if t.name in self.user_inputs:
                out[t.name] = self.user_inputs[t.name]
            elif t.name in columns:
                out[t.name] = [t.name]
            elif len(self.model.inputs) == 1:
                out[t.name] = [c for c in columns if c not in self.keep]
            else:
                raise ValueError(f"input '{t.name}': no column of that name; map it with --input {t.name}=COLS")
            per = int(np.prod(t.shape[1:])) if len(t.shape) > 1 else 1
            if len(out[t.name]) != per:
                raise ValueError(f"input '{t.name}' {list(t.shape)} takes {per} column(s) per row, "
                                 f"{len(out[t.name])} given: {out[t.name][:8]}")
        return out

    def output_columns(self) -> List[str]:
        return [c for _, cols in self.outputs for c in cols]

    def score(self, pdf):
        """pandas DataFrame -> DataFrame of the kept columns and the outputs, same rows in order."""
        import pandas as pd

        n = len(pdf)
        cols = self.columns_for(list(pdf.columns))
        arrays = {}
        for t in self.model.inputs:
            a = pdf[cols[t.name]].to_numpy()
            arrays[t.name] = np.ascontiguousarray(a.astype(t.dtype, copy=False).reshape((n,) + tuple(t.shape[1:])))
        results = [np.empty((n,) + tuple(t.shape[1:]), t.dtype) for t in self.model.outputs]
        B = self.batch
        for r0 in range(0, n, B):
            m = min(B, n - r0)
            feed = {}
            for t in self.model.inputs:
                x = arrays[t.name][r0:r0 + m]
                if m < B:  # pad: every run has the same batch size
                    x = np.concatenate([x, np.zeros((B - m,) + x.shape[1:], x.dtype)])
                feed[t.name] = x
            ys = self.session.run(feed)
            for res, y in zip(results, ys):
                res[r0:r0 + m] = y[:m]
        data = {c: pdf[c].to_numpy() for c in self.keep}
        for (name, names), res in zip(self.outputs, results):
            flat = res.reshape(n, -1)
            for j, c in enumerate(names):
                data[c] = flat[:, j]
        return pd.DataFrame(data)


def scorer(model_path: str, inputs=None, keep=(), batch: int = DEFAULT_BATCH, threads: int = 1) -> Scorer:
    """This process's Scorer for the model (created on first use)."""
    key = (os.path.abspath(model_path), threads, tuple(sorted((inputs or {}).items())), tuple(keep), batch)
    s = _SCORERS.get(key)
    if s is None:
        s = _SCORERS[key] = Scorer(model_path, inputs, keep, batch, threads)
    return s


# ---- tables ------------------------------------------------------------------------------------

def read_table(path: str):
    import pandas as pd

    if path.endswith(".csv"):
        # exact decimal -> double parsing (pandas 3 always does it and deprecates the option)
        kw = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
        return pd.read_csv(path, **kw)
    return pd.read_parquet(path)


def write_table(df, path: str) -> None:
    if path.endswith(".csv"):
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)


# ---- engines ------------------------------------------------------------------------------------

def score_single(model_path: str, src: str, dst: Optional[str] = None, **kw):
    df = read_table(src)
    out = scorer(model_path, **kw).score(df)
    if dst:
        write_table(out, dst)
    return out


_POOL_CFG: dict = {}


def _pool_init(model_path: str, kw: dict) -> None:
    _POOL_CFG["path"], _POOL_CFG["kw"] = model_path, kw
    scorer(model_path, **kw)  # load once per process, before the first chunk


def _pool_score(chunk):
    return scorer(_POOL_CFG["path"], **_POOL_CFG["kw"]).score(chunk)


def score_processes(model_path: str, src: str, dst: Optional[str] = None, workers: Optional[int] = None, **kw):
    """multiprocessing: contiguous chunks (multiples of the batch) over `workers` processes."""
    import multiprocessing as mp

    import pandas as pd

    df = read_table(src)
    workers = workers or os.cpu_count() or 1
    # the batch, from a one-thread scorer: a forked child must not inherit a session whose worker
    # threads exist only in the parent
    B = scorer(model_path, **dict(kw, threads=1)).batch
    per = max(B, -(-len(df) // (workers * 4)) // B * B)  # a few chunks per worker, whole batches
    chunks = [df.iloc[i:i + per] for i in range(0, len(df), per)]
    ctx = mp.get_context("spawn" if sys.platform == "darwin" else "fork")
    with ctx.Pool(workers, initializer=_pool_init, initargs=(model_path, kw)) as pool:
        parts = pool.map(_pool_score, chunks)
    out = pd.concat(parts, ignore_index=True)
    if dst:
        write_table(out, dst)
    return out


def _spark_partitions(batches: Iterator, name: str, kw: dict) -> Iterator:
    """mapInPandas body, on an executor: the model file shipped with addFile, loaded once per
    Python worker process."""
    from pyspark import SparkFiles

    s = scorer(SparkFiles.get(name), **kw)
    for pdf in batches:
        yield s.score(pdf)


def spark_session(master: str = "local[*]", app: str = "mdeploy-score"):
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master(master).appName(app)
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate())


def score_spark(spark, model_path: str, src: str, dst: Optional[str] = None, partitions: int = 0, **kw):
    """Reads src with Spark, scores it with mapInPandas, writes dst (a directory of part files);
    returns the scored DataFrame (lazy when dst is None).  Input with fewer partitions than the
    cluster's default parallelism (e.g. one file) is repartitioned to it (or to `partitions`)."""
    from pyspark.sql import types as T

    import score as this  # by reference: executors import this file (addPyFile) and keep its cache

    sc = spark.sparkContext
    model_path = os.path.abspath(model_path)
    sc.addFile(model_path)
    sc.addPyFile(os.path.abspath(this.__file__))
    if src.endswith(".csv"):
        df = spark.read.csv(src, header=True, inferSchema=True)
    else:
        df = spark.read.parquet(src)
    # a single input file is one partition: spread it over the executors' cores
    if partitions or df.rdd.getNumPartitions() < sc.defaultParallelism:
        df = df.repartition(partitions or sc.defaultParallelism)
    # output schema from the model, on the driver
    local = scorer(model_path, **kw)
    local.columns_for(df.columns)  # fail early, with the message, on a column mismatch
    spark_type = {np.dtype(np.float32): T.FloatType(), np.dtype(np.int8): T.ByteType(),
                  np.dtype(np.uint8): T.ShortType(), np.dtype(np.int32): T.IntegerType(),
                  np.dtype(np.int64): T.LongType()}
    fields = [df.schema[c] for c in local.keep]
    for (name, cols), t in zip(local.outputs, local.model.outputs):
        fields += [T.StructField(c, spark_type[np.dtype(t.dtype)], False) for c in cols]
    name = os.path.basename(model_path)
    out = df.mapInPandas(lambda it: this._spark_partitions(it, name, kw), T.StructType(fields))
    if dst:
        w = out.write.mode("overwrite")
        if dst.endswith(".csv"):
            w.option("header", True).csv(dst)
        else:
            w.parquet(dst)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("src", help="input table: .parquet (file or directory) or .csv")
    ap.add_argument("dst", help="output table: .parquet or .csv (Spark writes a directory of part files)")
    ap.add_argument("--engine", choices=["spark", "processes", "single"], default="spark")
    ap.add_argument("--master", default="local[*]", help="Spark master (default local[*])")
    ap.add_argument("--workers", type=int, default=None, help="processes for --engine processes (default: cores)")
    ap.add_argument("--input", action="append", default=[], metavar="NAME=COL[,COL...]",
                    help="columns of a model input (repeat per input)")
    ap.add_argument("--keep", default="", help="comma-separated columns copied to the output (e.g. an id)")
    ap.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                    help=f"rows per run for a model with a dynamic batch (default {DEFAULT_BATCH})")
    ap.add_argument("--threads", type=int, default=1, help="mdeploy threads per run (default 1)")
    a = ap.parse_args(argv)
    inputs = {}
    for spec in a.input:
        name, _, cols = spec.partition("=")
        inputs[name] = [c for c in cols.split(",") if c]
    kw = dict(inputs=inputs, keep=[c for c in a.keep.split(",") if c], batch=a.batch, threads=a.threads)
    t0 = time.perf_counter()
    if a.engine == "spark":
        spark = spark_session(a.master)
        t1 = time.perf_counter()
        score_spark(spark, a.model, a.src, a.dst, **kw)
        rows = spark.read.parquet(a.dst).count() if not a.dst.endswith(".csv") else None
        spark.stop()
    else:
        t1 = t0
        out = (score_processes(a.model, a.src, a.dst, workers=a.workers, **kw) if a.engine == "processes"
               else score_single(a.model, a.src, a.dst, **kw))
        rows = len(out)
    dt = time.perf_counter() - t1
    print(f"score: {rows if rows is not None else '?'} rows in {dt:.2f} s"
          + (f" ({rows / dt:,.0f} rows/s)" if rows else "")
          + (f"; Spark start {t1 - t0:.1f} s" if a.engine == "spark" else ""))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # so that `import score` finds this file
    sys.exit(main())
