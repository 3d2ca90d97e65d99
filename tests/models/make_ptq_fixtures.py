#!/usr/bin/env python3
"""Fixtures of the post-training quantizer tests (issue #11): tests/models/ptq/.

- examples/digits/calibration.npy: the first 200 images of the digits *training* split of
  examples/digits/make_digits.py (the images ORT's quantize_static was calibrated on in
  tests/models/quant/; make demo calibrates on them too); the held-back images and labels are
  tests/models/quant/digits_test.*.
- text_lstm_calib.npy, recommender_calib.npz: seeded random token / id batches.
- outlier.onnx: a made-up 4-layer MLP classifier (16-32-64-32-10, ReLU) whose second layer has one
  unit scaled by 2000 that the next layer reads with a tiny weight: the float model hardly sees
  it, but it stretches that activation's int8 scale until the other 63 units round to a few
  levels, so plain int8 loses many points of accuracy.  outlier_calib.npy (256 rows),
  outlier_eval.x.npy / outlier_eval.y.npy (512 rows; labels = the float model's argmax computed
  here in NumPy, an oracle independent of mdeploy; ORT checks the ONNX model agrees).

Needs numpy, onnx, onnxruntime, scikit-learn.  Seeded: reruns write identical files.
"""
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "models", "ptq")


def digits_train():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    x_tr, _, _, _ = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return x_tr


def outlier_model(rng):
    sizes = [16, 32, 64, 32, 10]
    ws, bs = [], []
    for i in range(4):
        w = (rng.standard_normal((sizes[i + 1], sizes[i])) * np.sqrt(2.0 / sizes[i])).astype(np.float32)
        b = (rng.standard_normal(sizes[i + 1]) * 0.1).astype(np.float32)
        ws.append(w)
        bs.append(b)
    # layer 2 (index 1): unit 0 always strongly positive and 2000x larger
    ws[1][0] = np.abs(ws[1][0]) * 2000.0
    bs[1][0] = 2000.0
    ws[2][:, 0] *= 1e-5  # the next layer barely reads it
    nodes, inits = [], []
    prev = "x"
    for i in range(4):
        inits.append(numpy_helper.from_array(ws[i], f"w{i}"))
        inits.append(numpy_helper.from_array(bs[i], f"b{i}"))
        out = f"h{i}" if i < 3 else "logits"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [out + ("_pre" if i < 3 else "")],
                                      name=f"fc{i}", transB=1))
        if i < 3:
            nodes.append(helper.make_node("Relu", [out + "_pre"], [out], name=f"relu{i}"))
        prev = out
    g = helper.make_graph(nodes, "outlier_mlp",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="make_ptq_fixtures")
    m.ir_version = 8
    onnx.checker.check_model(m)

    def forward(x):
        h = x
        for i in range(4):
            h = h @ ws[i].T + bs[i]
            if i < 3:
                h = np.maximum(h, 0)
        return h

    return m, forward


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(11)
    np.save(os.path.join(ROOT, "examples", "digits", "calibration.npy"), digits_train()[:200])
    np.save(os.path.join(OUT, "text_lstm_calib.npy"), rng.integers(0, 10000, (32, 100), dtype=np.int64))
    np.savez(os.path.join(OUT, "recommender_calib.npz"), user=rng.integers(0, 1000, 4096, dtype=np.int64),
             item=rng.integers(0, 2000, 4096, dtype=np.int64))
    m, forward = outlier_model(rng)
    path = os.path.join(OUT, "outlier.onnx")
    onnx.save(m, path)
    calib = rng.standard_normal((256, 16), dtype=np.float32)
    ex = rng.standard_normal((512, 16), dtype=np.float32)
    ey = forward(ex.astype(np.float64)).argmax(1).astype(np.int64)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    ort_y = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]).run(None, {"x": ex})[0]
    agree = (ort_y.argmax(1) == ey).mean()
    if agree < 0.999:
        raise SystemExit(f"ORT and NumPy disagree on the outlier model ({agree})")
    np.save(os.path.join(OUT, "outlier_calib.npy"), calib)
    np.save(os.path.join(OUT, "outlier_eval.x.npy"), ex)
    np.save(os.path.join(OUT, "outlier_eval.y.npy"), ey)
    # bad calibration data (each must be refused with a message naming the file and the input)
    bad = os.path.join(OUT, "bad")
    os.makedirs(bad, exist_ok=True)
    good = digits_train()[:8]
    np.save(os.path.join(bad, "shape.npy"), good[:, :, :7, :])           # 8x7 images
    np.save(os.path.join(bad, "int32.npy"), (good * 16).astype(np.int32))  # integers for a float input
    nan = good.copy()
    nan[3, 0, 2, 5] = np.nan
    np.save(os.path.join(bad, "nan.npy"), nan)
    np.savez(os.path.join(bad, "wrongname.npz"), images=good)  # ok for one input...
    np.savez(os.path.join(bad, "recommender_missing.npz"), user=np.arange(64, dtype=np.int64))
    np.savez(os.path.join(bad, "recommender_extra.npz"), user=np.arange(64, dtype=np.int64),
             item=np.arange(64, dtype=np.int64), itme=np.arange(64, dtype=np.int64))
    np.savez_compressed(os.path.join(bad, "compressed.npz"), image=good)
    print("wrote", sorted(os.listdir(OUT)), sorted(os.listdir(bad)))


if __name__ == "__main__":
    main()
