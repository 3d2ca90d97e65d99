#!/usr/bin/env python3
"""Convert an ONNX model and score a batch with it, from Python.

Uses the digits CNN of examples/digits/ (image float32 [N,1,8,8] -> probs [N,10]) and its 20
held-back test images.  After `make` (which builds build/release/libmdeploy.so), from the repo root:

    PYTHONPATH=bindings/python python3 examples/python/score_batch.py
    # or, after `pip install ./bindings/python`:  python3 examples/python/score_batch.py
"""
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import mdeploy

DIGITS = Path(__file__).resolve().parent.parent / "digits"


def main() -> int:
    images = np.load(DIGITS / "images.npy")  # float32 [20, 1, 8, 8]
    labels = np.load(DIGITS / "labels.npy")
    batch = images.shape[0]

    with tempfile.TemporaryDirectory() as tmp:
        mdl = Path(tmp) / "digits.mdl"
        # The ONNX batch dimension ("N") is dynamic and stays so: any batch size runs.
        report = mdeploy.convert(DIGITS / "digits_cnn.onnx", mdl, model_version="1.0")
        print(f"converted: {report.onnx_nodes} ONNX nodes -> {report.nodes_out} operators, "
              f"{report.file_bytes} bytes, dynamic: {report.dynamic}")

        model = mdeploy.Model(mdl)
        print("inputs: ", [(t.name, str(t.dtype), t.shape) for t in model.inputs])
        print("outputs:", [(t.name, str(t.dtype), t.shape) for t in model.outputs])

        # reusable working memory for this batch size: no allocation per run
        session = model.session(shapes={"image": images.shape})
        t0 = time.perf_counter()
        probs = session.run({"image": images}, as_dict=True)["probs"]
        ms = (time.perf_counter() - t0) * 1e3

    predicted = probs.argmax(axis=1)
    accuracy = float((predicted == labels).mean())
    print(f"scored {batch} images in {ms:.2f} ms: accuracy {accuracy:.0%}")
    print("predicted:", " ".join(map(str, predicted)))
    print("labels:   ", " ".join(map(str, labels)))
    return 0 if accuracy >= 0.8 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except mdeploy.Error as e:
        print(f"score_batch: {e} (status {getattr(e.status, 'name', e.status)})", file=sys.stderr)
        sys.exit(1)
