#!/usr/bin/env python3
"""Post-training quantization report (issue #11): writes bench/results/ptq.md and ptq.json.

Digits CNN (examples/digits/digits_cnn.onnx): calibrated on 200 images of the digits *training*
split only (the split of examples/digits/make_digits.py), measured on all 360 held-back images:
  - float           mdeploy-convert without quantization
  - mdeploy int8    mdeploy.convert(quantize="int8", calibration=those 200 images), minmax
  - ORT int8        onnxruntime.quantization.quantize_static on the same model and the same 200
                    images (QDQ, int8 activations, int8 per-channel weights: its recommended CPU
                    setting), run by ONNX Runtime
accuracy against the labels, file sizes, and batch-1 latency (mdeploy-bench medians; ORT's is
not measured here: see bench/results/bench.md for the runtime comparison).  Then the hybrid
models (text LSTM, recommender): size and max |int8 - float| on their fixture inputs.

usage: python3 bench/ptq.py [BUILD_DIR]     (default build/release; needs scikit-learn, onnxruntime)
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "release")
os.environ.setdefault("MDEPLOY_LIB", os.path.join(B, "libmdeploy.so"))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
import mdeploy  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static  # noqa: E402


def digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)


def mdl_accuracy(path, x, y):
    m = mdeploy.Model(path)
    return 100.0 * float(np.mean([np.argmax(m.run(x[i:i + 1])[0]) == y[i] for i in range(len(x))]))


def latency_us(path):
    out = subprocess.run([os.path.join(B, "bin", "mdeploy-bench"), path, "--json", "--time", "2"],
                         check=True, capture_output=True, text=True).stdout
    return 1000.0 * json.loads(out)["latency_ms"]["median"]


class Reader(CalibrationDataReader):
    def __init__(self, batches):
        self.batches, self.i = batches, 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return self.batches[self.i - 1]


def ort_session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def main():
    x_tr, x_te, y_tr, y_te = digits_split()
    calib = x_tr[:200]
    src = os.path.join(ROOT, "examples", "digits", "digits_cnn.onnx")
    res = {"calibration_images": 200, "eval_images": int(len(x_te))}
    with tempfile.TemporaryDirectory() as tmp:
        f32 = os.path.join(tmp, "digits_f32.mdl")
        q8 = os.path.join(tmp, "digits_int8.mdl")
        mdeploy.convert(src, f32)
        r = mdeploy.convert(src, q8, quantize="int8", calibration=calib, eval=(x_te, y_te))
        res["float"] = {"accuracy": mdl_accuracy(f32, x_te, y_te), "bytes": os.path.getsize(f32),
                        "latency_us": latency_us(f32)}
        res["mdeploy_int8"] = {"accuracy": mdl_accuracy(q8, x_te, y_te), "bytes": os.path.getsize(q8),
                               "latency_us": latency_us(q8), "report": r.quant}
        # ONNX Runtime: same model, same images (batches of 20 with a dynamic batch)
        ort_q = os.path.join(tmp, "digits_ort_int8.onnx")
        quantize_static(src, ort_q, Reader([{"image": calib[i:i + 20]} for i in range(0, 200, 20)]),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8)
        so = ort_session(ort_q)
        pred = so.run(None, {"image": x_te})[0].argmax(1)
        fo = ort_session(src).run(None, {"image": x_te})[0].argmax(1)
        res["ort_float"] = {"accuracy": 100.0 * float(np.mean(fo == y_te)), "bytes": os.path.getsize(src)}
        res["ort_int8"] = {"accuracy": 100.0 * float(np.mean(pred == y_te)), "bytes": os.path.getsize(ort_q)}
        # hybrid models
        hyb = {}
        rng = np.random.default_rng(11)
        for name, calib_data, feeds in [
            ("text_lstm", rng.integers(0, 10000, (32, 100), dtype=np.int64),
             [np.load(os.path.join(ROOT, "tests/models/text_lstm.in0.npy"))]),
            ("recommender", {"user": rng.integers(0, 1000, 4096, dtype=np.int64),
                             "item": rng.integers(0, 2000, 4096, dtype=np.int64)},
             [np.load(os.path.join(ROOT, f"tests/models/recommender.in{k}.npy")) for k in range(2)]),
        ]:
            onnx_path = os.path.join(ROOT, "tests", "models", name + ".onnx")
            a, b = os.path.join(tmp, name + "_f32.mdl"), os.path.join(tmp, name + "_int8.mdl")
            mdeploy.convert(onnx_path, a)
            rq = mdeploy.convert(onnx_path, b, quantize="int8", calibration=calib_data)
            ya = mdeploy.Model(a).run(list(feeds))[0]
            yb = mdeploy.Model(b).run(list(feeds))[0]
            ref = np.load(os.path.join(ROOT, "tests", "models", name + ".out0.npy"))
            hyb[name] = {"float_bytes": os.path.getsize(a), "int8_bytes": os.path.getsize(b),
                         "max_abs_vs_float": float(np.max(np.abs(yb - ya))),
                         "max_abs_vs_ort_float": float(np.max(np.abs(yb - ref))),
                         "layers": [(l["name"], l["precision"]) for l in rq.quant["layers"]]}
        res["hybrid"] = hyb
    res["versions"] = {"onnxruntime": ort.__version__, "mdeploy": mdeploy.__version__}
    out_dir = os.path.join(ROOT, "bench", "results")
    with open(os.path.join(out_dir, "ptq.json"), "w") as f:
        json.dump(res, f, indent=1)
    q = res["mdeploy_int8"]["report"]
    lines = [
        "# Post-training quantization: digits CNN, mdeploy vs ONNX Runtime",
        "",
        "Written by `python3 bench/ptq.py` (issue #11).  Calibration: 200 images of the digits training",
        "split; evaluation: the 360 held-back images (labels).  Same ONNX model and calibration images",
        "for both quantizers; ORT: `quantize_static`, QDQ, int8 activations, per-channel int8 weights.",
        "",
        "| model | top-1 accuracy | file bytes | batch-1 latency (mdeploy-bench median) |",
        "|---|---|---|---|",
        f"| float, mdeploy | {res['float']['accuracy']:.2f}% | {res['float']['bytes']} | {res['float']['latency_us']:.2f} µs |",
        f"| int8, mdeploy (minmax) | {res['mdeploy_int8']['accuracy']:.2f}% | {res['mdeploy_int8']['bytes']} | {res['mdeploy_int8']['latency_us']:.2f} µs |",
        f"| float, ONNX Runtime | {res['ort_float']['accuracy']:.2f}% | {res['ort_float']['bytes']} (.onnx) | |",
        f"| int8, ONNX Runtime quantize_static | {res['ort_int8']['accuracy']:.2f}% | {res['ort_int8']['bytes']} (.onnx) | |",
        "",
        f"mdeploy int8 vs float: drop {res['float']['accuracy'] - res['mdeploy_int8']['accuracy']:.2f} points "
        f"(target <= 0.3), top-1 agreement {q['top1_agreement']:.2f}%, max |int8 - float| probability "
        f"{q['max_abs_error']:.4f}.",
        "",
        "Per-layer SQNR (int8 activations vs float, held-back images):",
        "",
        "| layer | op | precision | SQNR dB |",
        "|---|---|---|---|",
    ]
    for l in q["layers"]:
        s = l["sqnr_db"]
        lines.append(f"| `{l['name']}` | {l['op']} | {l['precision']} | "
                     f"{'-' if s is None else s if isinstance(s, str) else f'{s:.1f}'} |")
    lines += ["", "Hybrid models (int8 weights widened at load; float compute), fixture inputs:", "",
              "| model | float bytes | int8 bytes | ratio | max abs vs float | vs ORT float |", "|---|---|---|---|---|---|"]
    for name, h in res["hybrid"].items():
        lines.append(f"| {name} | {h['float_bytes']} | {h['int8_bytes']} | {h['float_bytes'] / h['int8_bytes']:.2f}x | "
                     f"{h['max_abs_vs_float']:.5f} | {h['max_abs_vs_ort_float']:.5f} |")
    lines += ["", f"onnxruntime {ort.__version__}, mdeploy {mdeploy.__version__}.", ""]
    with open(os.path.join(out_dir, "ptq.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
