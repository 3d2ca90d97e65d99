#!/usr/bin/env python3
"""Regenerates the Keras 3 conformance fixtures in tests/models/keras3/.

Each seed model is a small Keras 3 model with seeded random weights (random BatchNorm statistics
too), exported with tf2onnx (opset 15, fixed shapes).  For each one the script writes the ONNX
file, the inputs (.npy), Keras's own outputs (NAME.keras.outK.npy) and ONNX Runtime's outputs
(NAME.outK.npy), and records the fixture in tests/models/manifest.json (entries named keras3_*;
the other entries are left alone).  tests/convert/test_conformance.c checks mdeploy against both
references.

Integer inputs include negative ids: Keras 3's Embedding (ops.take) wraps id < 0 to id + n as
NumPy does, and tf2onnx exports that wrap as Less/Not/Cast/Mul/Add in front of the Gather.  Ids
>= n or < -n are an error in TensorFlow (and in ONNX Runtime, and in mdeploy), so none are used.

Needs tensorflow(-cpu), keras 3, tf2onnx, onnx, onnxruntime, numpy; the C tests need none of
them.  Seeded: a rerun with the same library versions writes the same numbers.

    python3 tests/models/make_keras3_fixtures.py      # from the repo root
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import keras
import tf2onnx

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(HERE, "keras3")
OPSET = 15
TOL = 1e-4  # the C test's bound: max |err| <= TOL * max(1, max |ref|)


def rel(path):
    return os.path.relpath(path, ROOT)


def randomize(model, rng):
    """Random BatchNorm statistics and non-zero biases, so a dropped or misplaced BatchNorm or
    bias changes the output."""
    for v in model.weights:
        if v.path.endswith("bias"):
            v.assign(rng.normal(0, 0.3, v.shape).astype(np.float32))
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape).astype(np.float32),
                               rng.normal(0, 0.2, b.shape).astype(np.float32),
                               rng.normal(0, 0.2, m.shape).astype(np.float32),
                               rng.uniform(0.5, 2.0, v.shape).astype(np.float32)])


def ids(rng, shape, n):
    """Ids in [-n, n): negative ones are wrapped by Keras (id + n)."""
    return rng.integers(-n, n, size=shape).astype(np.int32)


# ---- the seed models (functional API, fixed batch) ----------------------------------------------

def text_classifier(rng):
    x = keras.Input((12,), batch_size=2, dtype="int32", name="tokens")
    h = keras.layers.Embedding(200, 8)(x)
    h = keras.layers.LSTM(16)(h)
    y = keras.layers.Dense(1, activation="sigmoid")(h)
    return keras.Model(x, y), [ids(rng, (2, 12), 200)]


def recommender(rng):
    u = keras.Input((1,), batch_size=4, dtype="int32", name="user")
    i = keras.Input((1,), batch_size=4, dtype="int32", name="item")
    eu = keras.layers.Flatten()(keras.layers.Embedding(50, 8)(u))
    ei = keras.layers.Flatten()(keras.layers.Embedding(80, 8)(i))
    d = keras.layers.Dot(axes=1)([eu, ei])
    y = keras.layers.Dense(1, activation="sigmoid")(d)
    return keras.Model([u, i], y), [ids(rng, (4, 1), 50), ids(rng, (4, 1), 80)]


def gru_text(rng, **gru_kw):
    x = keras.Input((10,), batch_size=2, dtype="int32", name="tokens")
    h = keras.layers.Embedding(100, 8)(x)
    h = keras.layers.GRU(16, **gru_kw)(h)
    y = keras.layers.Dense(3)(h)
    return keras.Model(x, y), [ids(rng, (2, 10), 100)]


def bilstm(rng):
    x = keras.Input((10,), batch_size=2, dtype="int32", name="tokens")
    h = keras.layers.Embedding(100, 8)(x)
    h = keras.layers.Bidirectional(keras.layers.LSTM(8))(h)
    y = keras.layers.Dense(2, activation="softmax")(h)
    return keras.Model(x, y), [ids(rng, (2, 10), 100)]


def conv1d_text(rng):
    x = keras.Input((16,), batch_size=2, dtype="int32", name="tokens")
    h = keras.layers.Embedding(120, 8)(x)
    h = keras.layers.Conv1D(16, 3, activation="relu")(h)
    h = keras.layers.GlobalMaxPooling1D()(h)
    y = keras.layers.Dense(4)(h)
    return keras.Model(x, y), [ids(rng, (2, 16), 120)]


def mobilenet_block(rng):
    x = keras.Input((14, 14, 16), batch_size=1, name="image")
    h = keras.layers.Conv2D(48, 1, use_bias=False)(x)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU(6.0)(h)
    h = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(h)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU(6.0)(h)
    h = keras.layers.Conv2D(16, 1, use_bias=False)(h)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Add()([x, h])
    h = keras.layers.GlobalAveragePooling2D()(h)
    y = keras.layers.Dense(10)(h)
    return keras.Model(x, y), [rng.normal(0, 1, (1, 14, 14, 16)).astype(np.float32)]


MODELS = [
    ("keras3_text_classifier", text_classifier, "Embedding(200,8) -> LSTM(16) -> Dense(1, sigmoid)"),
    ("keras3_recommender", recommender, "user Embedding(50,8) . item Embedding(80,8) (Dot) -> Dense(1, sigmoid)"),
    ("keras3_gru_text", lambda r: gru_text(r, unroll=True), "Embedding(100,8) -> GRU(16, unroll=True) -> Dense(3)"),
    ("keras3_bilstm", bilstm, "Embedding(100,8) -> Bidirectional(LSTM(8)) -> Dense(2, softmax)"),
    ("keras3_conv1d_text", conv1d_text, "Embedding(120,8) -> Conv1D(16,3,relu) -> GlobalMaxPooling1D -> Dense(4)"),
    ("keras3_mobilenet_block", mobilenet_block, "MobileNetV2 inverted residual (NHWC): 1x1 expand + BN + ReLU6, depthwise 3x3 + BN + ReLU6, 1x1 project + BN, residual add -> GAP -> Dense(10)"),
]


def export(model, inputs, path):
    spec = [tf.TensorSpec(a.shape, tf.as_dtype(a.dtype), name=inp.name)
            for a, inp in zip(inputs, model.inputs)]
    fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0]))
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=OPSET, output_path=path)
    return proto


def build(name, make, seed):
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model, inputs = make(rng)
    randomize(model, rng)
    path = os.path.join(OUT, name + ".onnx")
    proto = export(model, inputs, path)
    kout = model(inputs if len(inputs) > 1 else inputs[0])
    kout = [np.asarray(kout)] if not isinstance(kout, (list, tuple)) else [np.asarray(k) for k in kout]
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    in_names = [i.name for i in sess.get_inputs()]
    out_names = [o.name for o in sess.get_outputs()]
    oout = sess.run(None, dict(zip(in_names, inputs)))
    errs = []
    for k, o in zip(kout, oout):
        e = float(np.max(np.abs(k.astype(np.float64) - o)))
        bound = TOL * max(1.0, float(np.max(np.abs(o))))
        if not e <= bound:
            sys.exit(f"{name}: Keras and ONNX Runtime differ by {e:g} (bound {bound:g})")
        errs.append(e)
    entry = {"name": name, "onnx": rel(path), "input_shapes": [], "inputs": [], "outputs": [],
             "ops": sorted({n.op_type for n in proto.graph.node}), "onnx_nodes": len(proto.graph.node)}
    for k, (n, a) in enumerate(zip(in_names, inputs)):
        f = os.path.join(OUT, f"{name}.in{k}.npy")
        np.save(f, a)
        entry["inputs"].append({"name": n, "file": rel(f)})
    for k, (n, o, ko) in enumerate(zip(out_names, oout, kout)):
        f = os.path.join(OUT, f"{name}.out{k}.npy")
        fk = os.path.join(OUT, f"{name}.keras.out{k}.npy")
        np.save(f, o.astype(np.float32))
        np.save(fk, ko.astype(np.float32))
        entry["outputs"].append({"name": n, "file": rel(f), "framework_file": rel(fk)})
    print(f"{name}: {len(proto.graph.node)} ONNX nodes {entry['ops']}, |keras - ort| {max(errs):.3g}")
    return entry


def main():
    os.makedirs(OUT, exist_ok=True)
    entries = [build(name, make, 1000 + i) for i, (name, make, _) in enumerate(MODELS)]
    for e, (_, _, what) in zip(entries, MODELS):
        e["note"] = f"Keras {keras.__version__} via tf2onnx {tf2onnx.__version__}: {what}"
    mpath = os.path.join(HERE, "manifest.json")
    with open(mpath) as f:
        manifest = json.load(f)
    manifest["fixtures"] = [e for e in manifest["fixtures"] if not e["name"].startswith("keras3_")] + entries
    manifest["keras3"] = {"keras": keras.__version__, "tensorflow": tf.__version__,
                          "tf2onnx": tf2onnx.__version__, "onnxruntime": ort.__version__, "opset": OPSET}
    with open(mpath, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
