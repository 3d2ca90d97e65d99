#!/usr/bin/env python3
"""Regenerates the ONNX conformance fixtures in tests/models/.

For each seed model: export ONNX with the TorchScript exporter (opset 13, fixed shapes unless
noted), write the inputs as .npy, run ONNX Runtime on them and write its outputs as the reference
.npy files, then write manifest.json, which tests/convert/test_conformance.c reads.

Needs torch, onnx, onnxruntime and numpy (the tests themselves need none of them).  Everything is
seeded, so a rerun with the same library versions rewrites the same numbers.

    python3 tests/models/make_fixtures.py          # from the repo root
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OPSET = 13
# The test's bound (max abs error <= TOL * max(1, max |reference|)); the exporter check below
# uses the same bound between torch and ORT so a fixture whose reference is itself shaky is caught.
TOL = 1e-4


def rel(path):
    return os.path.relpath(path, ROOT)


# ---- the seed models ---------------------------------------------------------------------------

class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                                 nn.Linear(64, 1), nn.Sigmoid())

    def forward(self, x):
        return self.net(x)


class MnistCNN(nn.Module):
    # The Keras MNIST tutorial network: valid convolutions, 28 -> 26 -> 13 -> 11 -> 5 -> 3.
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 3 * 3, 64), nn.ReLU(), nn.Linear(64, 10),
            nn.Softmax(dim=1))

    def forward(self, x):
        return self.net(x)


class TextLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10000, 16)
        self.lstm = nn.LSTM(16, 128, batch_first=True)
        self.fc = nn.Linear(128, 1)

    def forward(self, ids):
        _, (h, _) = self.lstm(self.emb(ids))
        return torch.sigmoid(self.fc(h[-1]))


class Recommender(nn.Module):
    def __init__(self):
        super().__init__()
        self.user = nn.Embedding(1000, 32)
        self.item = nn.Embedding(2000, 32)
        self.fc = nn.Linear(1, 1)

    def forward(self, user, item):
        dot = (self.user(user) * self.item(item)).sum(dim=1, keepdim=True)
        return torch.sigmoid(self.fc(dot))


class BiLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, bidirectional=True)

    def forward(self, x):
        y, _ = self.lstm(x)
        return y


class GRU(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(8, 16)

    def forward(self, x):
        return self.gru(x)


class MobileNetBlock(nn.Module):
    """MobileNetV2 inverted residual (expand 6, stride 1) + a small classifier head."""

    def __init__(self, c=16, expand=6, classes=10):
        super().__init__()
        h = c * expand
        self.expand = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False),
                                nn.BatchNorm2d(h), nn.ReLU6())
        self.project = nn.Sequential(nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        y = x + self.project(self.dw(self.expand(x)))
        return self.fc(torch.flatten(self.pool(y), 1))


def spread_weights(model, rnn_scale=1.0, head_gain=1.0):
    """Re-initializes weights so that signals keep an O(1) scale through the network.

    PyTorch's default init shrinks activations layer by layer, which leaves a random network's
    output near a constant (sigmoid ~0.5, a flat softmax): a wrong layout or a dropped bias would
    then move the output by less than the test's tolerance.  He-normal weights and non-zero biases
    keep every layer's contribution visible in the output.  head_gain scales the last Linear, to
    move a single sigmoid output away from 0.5 (where it is least sensitive to its logit's error
    relative to the tolerance)."""
    last = ([None] + [m for m in model.modules() if isinstance(m, nn.Linear)])[-1]
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            fan_in = m.weight[0].numel()
            nn.init.normal_(m.weight, 0.0, (2.0 / fan_in) ** 0.5)
            if m.bias is not None:
                nn.init.uniform_(m.bias, -0.2, 0.2)
            if m is last:
                m.weight.mul_(head_gain)
        elif isinstance(m, (nn.LSTM, nn.GRU)):
            for p in m.parameters():
                p.data.mul_(rnn_scale)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.5)


def randomize_bn(model, gen):
    # Fresh BatchNorm layers are the identity in eval mode, which would let a converter that
    # drops or misfolds them pass; give them statistics far from (0, 1).
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.25)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.2)


# ---- export + reference ------------------------------------------------------------------------

def export(model, args, path, input_names, output_names, dynamic_axes=None, preserve=False):
    model.eval()
    kw = {}
    if preserve:
        # The exporter's eval-mode peephole folds BatchNorm into Conv itself; PRESERVE (with the
        # model in eval mode) keeps the BatchNormalization nodes so the converter's folding is what
        # gets tested.
        kw["training"] = torch.onnx.TrainingMode.PRESERVE
    torch.onnx.export(model, args, path, opset_version=OPSET, input_names=input_names,
                      output_names=output_names, dynamic_axes=dynamic_axes,
                      do_constant_folding=True, dynamo=False, **kw)
    m = onnx.load(path)
    onnx.checker.check_model(m)
    return sorted({n.op_type for n in m.graph.node})


def reference(path, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def max_err(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def fixture(manifest, name, onnx_path, model, inputs, input_names, output_names,
            input_shapes=(), ops=None, note=""):
    """Writes name.inK.npy / name.outK.npy (ORT's outputs) and a manifest entry."""
    feeds = dict(zip(input_names, inputs))
    outs = reference(onnx_path, feeds)
    with torch.no_grad():
        t = model(*[torch.from_numpy(x) for x in inputs])
    t = [t] if isinstance(t, torch.Tensor) else list(t)
    entry = {"name": name, "onnx": rel(onnx_path), "input_shapes": list(input_shapes),
             "inputs": [], "outputs": [], "ops": ops or [], "note": note}
    for k, x in enumerate(inputs):
        p = os.path.join(HERE, f"{name}.in{k}.npy")
        np.save(p, x)
        entry["inputs"].append({"name": input_names[k], "file": rel(p)})
    for k, y in enumerate(outs):
        y = np.ascontiguousarray(y.astype(np.float32))
        e = max_err(y, t[k].numpy())
        bound = TOL * max(1.0, float(np.max(np.abs(y))))
        if e > bound:
            sys.exit(f"{name}: ORT and torch disagree on output {k}: {e:g} > {bound:g}")
        p = os.path.join(HERE, f"{name}.out{k}.npy")
        np.save(p, y)
        entry["outputs"].append({"name": output_names[k], "file": rel(p)})
    manifest["fixtures"].append(entry)
    print(f"{name:16s} in {[list(x.shape) for x in inputs]} out {[list(y.shape) for y in outs]} "
          f"ops {' '.join(entry['ops'])}")


def main():
    torch.set_num_threads(1)
    manifest = {"tolerance": TOL, "opset": OPSET, "torch": torch.__version__,
                "onnxruntime": ort.__version__, "fixtures": []}
    path = lambda n: os.path.join(HERE, n + ".onnx")  # noqa: E731

    # mlp: one ONNX file with a dynamic batch dimension, converted twice (batch 1 by the
    # converter's default for dynamic dims, batch 64 via an input shape) -- the same weights.
    torch.manual_seed(1)
    m = MLP()
    with torch.no_grad():
        spread_weights(m, head_gain=4.0)
    ops = export(m, (torch.zeros(1, 784),), path("mlp"), ["x"], ["y"],
                 dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    rng = np.random.default_rng(1)
    fixture(manifest, "mlp", path("mlp"), m, [rng.random((1, 784), dtype=np.float32)],
            ["x"], ["y"], ops=ops)
    fixture(manifest, "mlp_b64", path("mlp"), m, [rng.random((64, 784), dtype=np.float32)],
            ["x"], ["y"], input_shapes=["x=64x784"], ops=ops,
            note="mlp.onnx converted with --input-shape x=64x784")

    torch.manual_seed(2)
    m = MnistCNN()
    with torch.no_grad():
        spread_weights(m)
    ops = export(m, (torch.zeros(1, 1, 28, 28),), path("mnist_cnn"), ["image"], ["probs"])
    rng = np.random.default_rng(2)
    fixture(manifest, "mnist_cnn", path("mnist_cnn"), m,
            [rng.random((1, 1, 28, 28), dtype=np.float32)], ["image"], ["probs"], ops=ops)

    torch.manual_seed(3)
    m = TextLSTM()
    with torch.no_grad():
        spread_weights(m, rnn_scale=3.0, head_gain=4.0)
    ops = export(m, (torch.zeros(1, 100, dtype=torch.int64),), path("text_lstm"), ["tokens"],
                 ["prob"])
    rng = np.random.default_rng(3)
    fixture(manifest, "text_lstm", path("text_lstm"), m,
            [rng.integers(0, 10000, (1, 100), dtype=np.int64)], ["tokens"], ["prob"], ops=ops)

    torch.manual_seed(4)
    m = Recommender()
    with torch.no_grad():
        spread_weights(m)
    z = torch.zeros(64, dtype=torch.int64)
    ops = export(m, (z, z), path("recommender"), ["user", "item"], ["score"])
    rng = np.random.default_rng(4)
    fixture(manifest, "recommender", path("recommender"), m,
            [rng.integers(0, 1000, 64, dtype=np.int64), rng.integers(0, 2000, 64, dtype=np.int64)],
            ["user", "item"], ["score"], ops=ops)

    torch.manual_seed(5)
    m = BiLSTM()
    with torch.no_grad():
        spread_weights(m, rnn_scale=3.0)
    ops = export(m, (torch.zeros(10, 2, 8),), path("bilstm"), ["x"], ["y"])
    rng = np.random.default_rng(5)
    fixture(manifest, "bilstm", path("bilstm"), m,
            [rng.standard_normal((10, 2, 8), dtype=np.float32)], ["x"], ["y"], ops=ops)

    torch.manual_seed(6)
    m = GRU()
    with torch.no_grad():
        spread_weights(m, rnn_scale=3.0)
    ops = export(m, (torch.zeros(10, 1, 8),), path("gru"), ["x"], ["y", "h"])
    rng = np.random.default_rng(6)
    fixture(manifest, "gru", path("gru"), m,
            [rng.standard_normal((10, 1, 8), dtype=np.float32)], ["x"], ["y", "h"], ops=ops)

    torch.manual_seed(7)
    m = MobileNetBlock()
    with torch.no_grad():
        spread_weights(m)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        randomize_bn(m, gen)
    ops = export(m, (torch.zeros(1, 16, 14, 14),), path("mobilenet_block"), ["x"], ["logits"],
                 preserve=True)
    if "BatchNormalization" not in ops:
        sys.exit("mobilenet_block: the exporter folded BatchNorm; the fixture must keep it")
    rng = np.random.default_rng(7)
    fixture(manifest, "mobilenet_block", path("mobilenet_block"), m,
            [rng.standard_normal((1, 16, 14, 14), dtype=np.float32)], ["x"], ["logits"], ops=ops)

    # The demo model (trained by examples/digits/make_digits.py) is checked here too, on its 20
    # held-back images, against ORT.  Its file and images are not regenerated here.
    digits = os.path.join(ROOT, "examples", "digits", "digits_cnn.onnx")
    if os.path.exists(digits):
        images = np.load(os.path.join(ROOT, "examples", "digits", "images.npy"))
        outs = reference(digits, {"image": images})
        p = os.path.join(HERE, "digits.out0.npy")
        np.save(p, outs[0].astype(np.float32))
        ops = sorted({n.op_type for n in onnx.load(digits).graph.node})
        manifest["fixtures"].append({
            "name": "digits", "onnx": rel(digits), "input_shapes": [f"image={'x'.join(map(str, images.shape))}"],
            "inputs": [{"name": "image", "file": "examples/digits/images.npy"}],
            "outputs": [{"name": "probs", "file": rel(p)}], "ops": ops,
            "note": "the demo model of examples/digits on its 20 held-back images"})
        print(f"{'digits':16s} in {[list(images.shape)]} out {[list(outs[0].shape)]} ops {' '.join(ops)}")
    else:
        print("examples/digits/digits_cnn.onnx missing: run examples/digits/make_digits.py first")

    with open(os.path.join(HERE, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
