#!/usr/bin/env python3
"""Writes the pre-quantized ONNX fixtures in tests/models/quant/ (issue #10).

Takes the committed float seed models (tests/models/*.onnx written by make_fixtures.py and the
digits demo model of examples/digits/) and quantizes each with onnxruntime.quantization the ways
applications do:

    qdq_s8   quantize_static, QDQ format, int8 activations, int8 weights per channel
    qdq_u8   quantize_static, QDQ format, uint8 activations, int8 weights per channel
    qop      quantize_static, QOperator format (QLinearConv, QLinearMatMul, com.microsoft
             QLinearAdd/...), uint8 activations, int8 weights per channel
    dyn      quantize_dynamic (DynamicQuantizeLinear + MatMulInteger / ConvInteger,
             DynamicQuantizeLSTM), int8 weights

Calibration data: the digits model is calibrated on 200 images of its training split (the same
stratified split as examples/digits/make_digits.py: those images were not held back), the others
on seeded random inputs.  Each fixture gets ORT's outputs on fixed inputs (.npy) and an entry in
quant_manifest.json with the scale of each output's final DequantizeLinear (None for dynamic
models, whose float outputs come from float arithmetic on run-time quantized activations), so the
tests express their tolerance in quantization steps.  The digits models also get all 360
held-back images and their labels, and ORT's accuracy on them (float and quantized).

Needs onnx, onnxruntime, numpy and scikit-learn (for the digits training images).  Seeded: a rerun
with the same library versions writes the same files.

    python3 tests/models/make_quant_fixtures.py        # from the repo root
"""
import json
import os
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(HERE, "quant")
SEED = 0


def rel(path):
    return os.path.relpath(path, ROOT)


class Reader(CalibrationDataReader):
    def __init__(self, feeds):
        self.feeds = list(feeds)
        self.i = 0

    def get_next(self):
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def rewind(self):
        self.i = 0


def run(path, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]).run(None, feeds)


def digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    # the split of examples/digits/make_digits.py
    return train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)


# (name, onnx, input specs, calibration feeds, test feeds, variants)
def seeds():
    rng = np.random.default_rng(SEED)
    out = []

    def rand(shape):
        return rng.random(shape, dtype=np.float32)

    out.append(("mlp", "tests/models/mlp.onnx", [{"x": rand((1, 784))} for _ in range(16)],
                [{"x": rand((4, 784))}], ["x=4x784"], ["qdq_s8", "qop", "dyn"]))
    out.append(("mnist_cnn", "tests/models/mnist_cnn.onnx",
                [{"image": rand((1, 1, 28, 28))} for _ in range(16)], [{"image": rand((1, 1, 28, 28))}],
                [], ["qdq_s8", "qop", "dyn"]))
    out.append(("mobilenet_block", "tests/models/mobilenet_block.onnx",
                [{"x": rng.standard_normal((1, 16, 14, 14), dtype=np.float32)} for _ in range(16)],
                [{"x": rng.standard_normal((1, 16, 14, 14), dtype=np.float32)}], [],
                ["qdq_s8", "qdq_u8", "qop", "dyn"]))
    out.append(("recommender", "tests/models/recommender.onnx",
                [{"user": rng.integers(0, 1000, 64, dtype=np.int64),
                  "item": rng.integers(0, 2000, 64, dtype=np.int64)} for _ in range(8)],
                [{"user": rng.integers(0, 1000, 64, dtype=np.int64),
                  "item": rng.integers(0, 2000, 64, dtype=np.int64)}], [], ["qdq_s8", "dyn"]))
    out.append(("text_lstm", "tests/models/text_lstm.onnx",
                [{"tokens": rng.integers(0, 10000, (1, 100), dtype=np.int64)} for _ in range(8)],
                [{"tokens": rng.integers(0, 10000, (1, 100), dtype=np.int64)}], [], ["dyn"]))
    x_tr, x_te, y_tr, y_te = digits_split()
    out.append(("digits", "examples/digits/digits_cnn.onnx",
                [{"image": x_tr[i:i + 20]} for i in range(0, 200, 20)], [{"image": x_te}],
                [f"image={'x'.join(map(str, x_te.shape))}"], ["qdq_s8", "qdq_u8", "qop", "dyn"]))
    return out, (x_te, y_te)


def quantize(variant, src, dst, calib):
    if variant == "dyn":
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=False)
        return
    act = QuantType.QInt8 if variant == "qdq_s8" else QuantType.QUInt8
    fmt = QuantFormat.QOperator if variant == "qop" else QuantFormat.QDQ
    quantize_static(src, dst, Reader(calib), quant_format=fmt, per_channel=True,
                    activation_type=act, weight_type=QuantType.QInt8)


def output_scales(model):
    """Scale and zero point of the DequantizeLinear that produces each graph output (None when
    the output comes from another op)."""
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    prod = {o: n for n in model.graph.node for o in n.output}
    res = []
    for o in model.graph.output:
        n = prod.get(o.name)
        # step over float ops after the last DequantizeLinear that do not change the scale
        while n is not None and n.op_type in ("Reshape", "Flatten", "Squeeze", "Identity"):
            n = prod.get(n.input[0])
        if n is not None and n.op_type == "DequantizeLinear" and n.input[1] in inits:
            s = inits[n.input[1]].astype(np.float64).ravel()
            zp = inits[n.input[2]].ravel() if len(n.input) > 2 and n.input[2] in inits else [0]
            res.append({"scale": float(s.max()), "zero_point": int(zp[0])})
        else:
            res.append(None)
    return res


def qop_misc(manifest):
    """The QOperator ops ORT's quantizer did not write for the seeds, in one small hand-built
    model: QLinearAveragePool, QLinearLeakyRelu, QLinearMul, QLinearConcat (com.microsoft, uint8)
    and QLinearMatMul (ai.onnx, int8 per-tensor weights)."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(11)
    f32 = lambda n, v: numpy_helper.from_array(np.array(v, dtype=np.float32), n)  # noqa: E731
    u8 = lambda n, v: numpy_helper.from_array(np.array(v, dtype=np.uint8), n)  # noqa: E731
    i8 = lambda n, v: numpy_helper.from_array(np.array(v, dtype=np.int8), n)  # noqa: E731
    inits = [f32("xs", 0.02), u8("xz", 128), f32("ps", 0.015), u8("pz", 120), f32("ls", 0.012),
             u8("lz", 30), f32("ms", 0.0009), u8("mz", 10), f32("cs", 0.011), u8("cz", 25),
             f32("as", 0.03), i8("az", 0), i8("B", rng.integers(-127, 128, (72, 5))), f32("bs", 0.004),
             i8("bz", 0), f32("ys", 0.05), i8("yz", -3)]
    ms = "com.microsoft"
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("QLinearAveragePool", ["xq", "xs", "xz", "ps", "pz"], ["p"], domain=ms,
                         kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("QLinearLeakyRelu", ["p", "ps", "pz", "ls", "lz"], ["l"], domain=ms, alpha=0.1),
        helper.make_node("QLinearMul", ["l", "ls", "lz", "p", "ps", "pz", "ms", "mz"], ["m"], domain=ms),
        helper.make_node("QLinearConcat", ["cs", "cz", "m", "ms", "mz", "l", "ls", "lz"], ["c"], domain=ms, axis=1),
        helper.make_node("DequantizeLinear", ["c", "cs", "cz"], ["y"]),
        helper.make_node("Flatten", ["y"], ["yf"], axis=1),
        helper.make_node("QuantizeLinear", ["yf", "as", "az"], ["a"]),
        helper.make_node("QLinearMatMul", ["a", "as", "az", "B", "bs", "bz", "ys", "yz"], ["z"]),
        helper.make_node("DequantizeLinear", ["z", "ys", "yz"], ["out"]),
    ]
    g = helper.make_graph(nodes, "qop_misc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 3, 3]),
                           helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 5])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(ms, 1)])
    onnx.checker.check_model(m)
    p = os.path.join(OUT, "qop_misc.onnx")
    onnx.save(m, p)
    x = rng.standard_normal((1, 4, 6, 6), dtype=np.float32)
    np.save(os.path.join(OUT, "qop_misc.in0.npy"), x)
    outs = run(p, {"x": x})
    entry = {"name": "qop_misc", "onnx": rel(p), "variant": "qop", "seed": None, "input_shapes": [],
             "inputs": [{"name": "x", "file": rel(os.path.join(OUT, "qop_misc.in0.npy"))}], "outputs": [],
             "ops": sorted({(n.domain + "." if n.domain else "") + n.op_type for n in nodes}),
             "onnx_bytes": os.path.getsize(p), "float_onnx_bytes": None}
    for k, (name, sc) in enumerate((("y", 0.011), ("out", 0.05))):
        q = os.path.join(OUT, f"qop_misc.out{k}.npy")
        np.save(q, outs[k].astype(np.float32))
        entry["outputs"].append({"name": name, "file": rel(q), "scale": sc, "zero_point": None,
                                 "max_abs_vs_float": None})
    manifest["fixtures"].append(entry)
    print(f"{'qop_misc':24s} {entry['onnx_bytes']:8d} B  {' '.join(entry['ops'])}")


def refusals():
    """Small models the converter must refuse with a message (no guessing)."""
    from onnx import TensorProto, helper, numpy_helper
    out = []
    # asymmetric int8 weights: the digits QDQ model with a non-zero zero point on its first conv
    m = onnx.load(os.path.join(OUT, "digits_qdq_s8.onnx"))
    for t in m.graph.initializer:
        if t.name.endswith("weight_zero_point") and "features.0" in t.name:
            z = numpy_helper.to_array(t).copy()
            z[:] = 3
            t.CopyFrom(numpy_helper.from_array(z, t.name))
            break
    else:
        sys.exit("digits_qdq_s8: no weight zero point found")
    p = os.path.join(OUT, "refuse_asym_weight.onnx")
    onnx.save(m, p)
    out.append({"onnx": rel(p), "message": "not symmetric"})
    # a DynamicQuantizeLinear output read by something else than MatMulInteger/ConvInteger
    g = helper.make_graph(
        [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
         helper.make_node("Cast", ["xq"], ["y"], to=TensorProto.FLOAT)],
        "dyn_misuse", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m)
    p = os.path.join(OUT, "refuse_dyn_misuse.onnx")
    onnx.save(m, p)
    out.append({"onnx": rel(p), "message": "run-time quantization value"})
    # blocked quantization (opset 21 block_size)
    w = numpy_helper.from_array(np.arange(16, dtype=np.int8).reshape(4, 4), "w")
    sc = numpy_helper.from_array(np.full((4, 2), 0.1, dtype=np.float32), "ws")
    g = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["w", "ws"], ["wf"], axis=1, block_size=2),
         helper.make_node("MatMul", ["x", "wf"], ["y"])],
        "blocked", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w, sc])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    p = os.path.join(OUT, "refuse_blocked.onnx")
    onnx.save(m, p)
    out.append({"onnx": rel(p), "message": "block_size"})
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    seed_list, (x_te, y_te) = seeds()
    manifest = {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "fixtures": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name, src, calib, tests, shapes, variants in seed_list:
            src = os.path.join(ROOT, src)
            pre = os.path.join(tmp, name + ".pre.onnx")
            # what the ORT docs recommend before quantizing (folds BatchNorm into Conv, shapes)
            quant_pre_process(src, pre, skip_symbolic_shape=True)
            feeds = tests[0]
            float_out = run(src, feeds)
            for v in variants:
                fname = f"{name}_{v}"
                dst = os.path.join(OUT, fname + ".onnx")
                quantize(v, pre, dst, calib)
                m = onnx.load(dst)
                onnx.checker.check_model(m)
                outs = run(dst, feeds)
                entry = {"name": fname, "onnx": rel(dst), "variant": v, "seed": name,
                         "input_shapes": shapes, "inputs": [], "outputs": [],
                         "ops": sorted({(n.domain + "." if n.domain else "") + n.op_type
                                        for n in m.graph.node}),
                         "onnx_bytes": os.path.getsize(dst), "float_onnx_bytes": os.path.getsize(src)}
                for k, (iname, x) in enumerate(feeds.items()):
                    if name == "digits":
                        p = os.path.join(OUT, "digits_test.images.npy")
                    else:
                        p = os.path.join(OUT, f"{name}.in{k}.npy")
                    np.save(p, x)
                    entry["inputs"].append({"name": iname, "file": rel(p)})
                scales = output_scales(m)
                for k, (o, y) in enumerate(zip(m.graph.output, outs)):
                    p = os.path.join(OUT, f"{fname}.out{k}.npy")
                    np.save(p, np.ascontiguousarray(y.astype(np.float32)))
                    e = {"name": o.name, "file": rel(p),
                         "scale": scales[k]["scale"] if scales[k] else None,
                         "zero_point": scales[k]["zero_point"] if scales[k] else None,
                         "max_abs_vs_float": float(np.abs(y.astype(np.float64) - float_out[k]).max())}
                    entry["outputs"].append(e)
                if name == "digits":
                    p = os.path.join(OUT, "digits_test.labels.npy")
                    np.save(p, y_te)
                    entry["labels"] = rel(p)
                    entry["ort_accuracy"] = float((outs[0].argmax(1) == y_te).mean())
                    entry["float_accuracy"] = float((float_out[0].argmax(1) == y_te).mean())
                manifest["fixtures"].append(entry)
                sc = [e["scale"] for e in entry["outputs"]]
                print(f"{fname:24s} {entry['onnx_bytes']:8d} B  out scale {sc}  "
                      f"vs float {[round(e['max_abs_vs_float'], 4) for e in entry['outputs']]}  "
                      f"{' '.join(entry['ops'])}"
                      + (f"  acc ort {entry['ort_accuracy']:.4f} float {entry['float_accuracy']:.4f}"
                         if name == "digits" else ""))
    qop_misc(manifest)
    manifest["refusals"] = refusals()
    with open(os.path.join(OUT, "quant_manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"total {total} bytes in {rel(OUT)}")
    if total > 2_000_000:
        sys.exit("fixtures exceed 2 MB")


if __name__ == "__main__":
    main()
