"""PyTorch-export fixtures for transformer-era operators (tests/models/torch/): nn.GELU,
nn.LayerNorm (opset 13: decomposed; opset 17: LayerNormalization), F.interpolate (Resize) and a
small BERT-style encoder, each with reference outputs from torch AND from ONNX Runtime.

Two steps, because torch (Debian's, /usr/bin/python3) and onnxruntime live in different
interpreters here; run from the repo root:

    /usr/bin/python3 tests/models/make_torch_fixtures.py export     # torch -> *.onnx, inputs, torch outputs
    python3 tests/models/make_torch_fixtures.py reference           # ORT -> outputs, manifest.json

The reference step checks that torch and ORT agree within 1e-4 of the output scale before it
writes the manifest, and records both max differences.  tests/convert/test_conformance.c
compares mdeploy with both (`outputs` = ORT, `torch_outputs` = torch).  Seeded.
"""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "torch")
REL = "tests/models/torch/"
TOL = 1e-4

# BERT-style encoder size (the bench row uses the same fixture)
VOCAB, HIDDEN, HEADS, LAYERS, INTER, SEQ = 300, 64, 4, 2, 256, 128


def models():
    import torch
    from torch import nn
    import torch.nn.functional as F

    class GeluMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(16, 32), nn.Linear(32, 8)
            self.act = nn.GELU()

        def forward(self, x):
            return self.b(self.act(self.a(x)))

    class LNModel(nn.Module):
        """Linear -> LayerNorm(32) -> Linear -> LayerNorm over the last two dims (5, 8)."""

        def __init__(self):
            super().__init__()
            self.a, self.ln = nn.Linear(16, 32), nn.LayerNorm(32, eps=1e-5)
            self.b, self.ln2 = nn.Linear(32, 8), nn.LayerNorm([5, 8], eps=1e-6)

        def forward(self, x):
            return self.ln2(self.b(self.ln(self.a(x))))

    class Interp(nn.Module):
        def __init__(self, **kw):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 3, padding=1)
            self.kw = kw

        def forward(self, x):
            return self.c2(F.interpolate(torch.relu(self.c1(x)), **self.kw))

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(HIDDEN, HIDDEN) for _ in range(4))
            self.ln1, self.ln2 = nn.LayerNorm(HIDDEN, eps=1e-12), nn.LayerNorm(HIDDEN, eps=1e-12)
            self.f1, self.f2 = nn.Linear(HIDDEN, INTER), nn.Linear(INTER, HIDDEN)
            self.act = nn.GELU()

        def heads(self, t):
            b, s, _ = t.shape
            return t.view(b, s, HEADS, HIDDEN // HEADS).transpose(1, 2)

        def forward(self, x, ext):
            b, s, _ = x.shape
            q, k, v = self.heads(self.q(x)), self.heads(self.k(x)), self.heads(self.v(x))
            scores = q @ k.transpose(-1, -2) / float(np.sqrt(HIDDEN // HEADS)) + ext
            ctx = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, s, HIDDEN)
            x = self.ln1(x + self.o(ctx))
            return self.ln2(x + self.f2(self.act(self.f1(x))))

    class Bert(nn.Module):
        """BERT-style encoder as transformers' BertModel computes it: word + position +
        token-type embeddings, LayerNorm, layers of multi-head self-attention with an additive
        mask ((1 - mask) * -10000), residual + LayerNorm, GELU FFN, residual + LayerNorm; pooler
        tanh(Linear(first token))."""

        def __init__(self):
            super().__init__()
            self.word, self.pos, self.ttype = (nn.Embedding(VOCAB, HIDDEN), nn.Embedding(SEQ, HIDDEN),
                                              nn.Embedding(2, HIDDEN))
            self.register_buffer("pos_ids", torch.arange(SEQ).unsqueeze(0))
            self.ln = nn.LayerNorm(HIDDEN, eps=1e-12)
            self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))
            self.pool = nn.Linear(HIDDEN, HIDDEN)

        def forward(self, ids, mask, types):
            s = ids.shape[1]
            x = self.ln(self.word(ids) + self.pos(self.pos_ids[:, :s]) + self.ttype(types))
            ext = (1.0 - mask[:, None, None, :]) * -10000.0
            for layer in self.layers:
                x = layer(x, ext)
            return x, torch.tanh(self.pool(x[:, 0]))

    rng = np.random.default_rng(1313)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)

    def bert_inputs(b, s, pad):
        ids = rng.integers(0, VOCAB, size=(b, s), dtype=np.int64)
        mask = np.ones((b, s), np.float32)
        mask[:, s - pad:] = 0  # padding at the end
        types = np.zeros((b, s), np.int64)
        types[:, s // 2:] = 1
        return [("ids", ids), ("mask", mask), ("types", types)]
    # name: (module, inputs (name, array), output names, opset)
    return {
        "gelu_mlp": (GeluMLP(), [("x", f32(4, 16))], ["y"], 13),
        "layernorm13": (LNModel(), [("x", f32(3, 5, 16))], ["y"], 13),
        "layernorm17": (LNModel(), [("x", f32(3, 5, 16))], ["y"], 17),
        "resize_nearest": (Interp(scale_factor=2, mode="nearest"), [("x", f32(1, 3, 7, 6))], ["y"], 13),
        "resize_linear": (Interp(size=(13, 11), mode="bilinear", align_corners=False),
                          [("x", f32(1, 3, 7, 6))], ["y"], 13),
        "resize_linear_ac": (Interp(scale_factor=1.5, mode="bilinear", align_corners=True),
                             [("x", f32(2, 3, 6, 5))], ["y"], 13),
        "bert": (Bert(), bert_inputs(1, SEQ, 28), ["hidden", "pooled"], 13),
    }


# The BERT encoder is exported once with dynamic batch and sequence dims; each case runs it at
# one size (the first, "bert", converted with these shapes fixed: the bench row).
BERT_CASES = {"bert": (1, SEQ, 28, True), "bert_dyn": (2, 37, 5, False), "bert_dyn_3x1": (3, 1, 0, False)}


def export():
    import torch

    torch.manual_seed(1313)
    os.makedirs(OUT, exist_ok=True)
    ms = models()
    for name, (model, inputs, outs, opset) in ms.items():
        model.eval()
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "ln" in pname:  # LayerNorm affine parameters away from 1 / 0
                    p.add_(0.3 * torch.randn_like(p))
            args = tuple(torch.from_numpy(a) for _, a in inputs)
            ys = model(*args)
            ys = ys if isinstance(ys, tuple) else (ys,)
        axes = None
        if name == "bert":
            axes = {n: {0: "batch", 1: "seq"} for n, _ in inputs}
            axes.update(hidden={0: "batch", 1: "seq"}, pooled={0: "batch"})
        torch.onnx.export(model, args, os.path.join(OUT, name + ".onnx"), opset_version=opset,
                          input_names=[n for n, _ in inputs], output_names=outs, dynamic_axes=axes)
        cases = {name: inputs}
        if name == "bert":
            rng = np.random.default_rng(77)
            for case, (b, sq, pad, _) in BERT_CASES.items():
                if case != "bert":
                    cases[case] = [("ids", rng.integers(0, VOCAB, size=(b, sq), dtype=np.int64)),
                                   ("mask", np.concatenate([np.ones((b, sq - pad), np.float32),
                                                            np.zeros((b, pad), np.float32)], 1)),
                                   ("types", (np.arange(sq) >= sq // 2).astype(np.int64)[None].repeat(b, 0))]
        for case, ins in cases.items():
            with torch.no_grad():
                ys = model(*(torch.from_numpy(a) for _, a in ins))
                ys = ys if isinstance(ys, tuple) else (ys,)
            for k, (_, a) in enumerate(ins):
                np.save(os.path.join(OUT, f"{case}.in{k}.npy"), a)
            for k, y in enumerate(ys):
                np.save(os.path.join(OUT, f"{case}.torch{k}.npy"), y.numpy())
        print("exported", name, "opset", opset, "torch", torch.__version__)
    with open(os.path.join(OUT, "torch_version.txt"), "w") as f:
        f.write(torch.__version__ + "\n")


def reference():
    import onnx
    import onnxruntime as ort

    fixtures = []
    cases = [(n, n) for n in ("gelu_mlp", "layernorm13", "layernorm17", "resize_nearest",
                              "resize_linear", "resize_linear_ac")] + [(c, "bert") for c in BERT_CASES]
    for name, model_name in cases:
        path = os.path.join(OUT, model_name + ".onnx")
        m = onnx.load(path)
        init = {t.name for t in m.graph.initializer}
        in_names = [i.name for i in m.graph.input if i.name not in init]
        feeds = {n: np.load(os.path.join(OUT, f"{name}.in{k}.npy")) for k, n in enumerate(in_names)}
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        opset = m.opset_import[0].version
        shapes = []
        if name in BERT_CASES and BERT_CASES[name][3]:  # converted with the sizes fixed
            shapes = [f"{n}={'x'.join(str(d) for d in feeds[n].shape)}" for n in in_names]
        entry = {"name": name, "onnx": REL + model_name + ".onnx", "input_shapes": shapes,
                 "inputs": [{"name": n, "file": f"{REL}{name}.in{k}.npy"} for k, n in enumerate(in_names)],
                 "outputs": [], "torch_outputs": [], "opset": opset,
                 "ops": sorted({n.op_type for n in m.graph.node}), "onnx_nodes": len(m.graph.node)}
        worst = 0.0
        for k, (o, y) in enumerate(zip(sess.get_outputs(), sess.run(None, feeds))):
            t = np.load(os.path.join(OUT, f"{name}.torch{k}.npy"))
            d = float(np.max(np.abs(y - t)))
            bound = TOL * max(1.0, float(np.max(np.abs(t))))
            if not d <= bound:
                sys.exit(f"{name}: torch and ORT differ by {d} (bound {bound})")
            worst = max(worst, d)
            np.save(os.path.join(OUT, f"{name}.out{k}.npy"), y)
            entry["outputs"].append({"name": o.name, "file": f"{REL}{name}.out{k}.npy"})
            entry["torch_outputs"].append({"name": o.name, "file": f"{REL}{name}.torch{k}.npy"})
        entry["note"] = f"max |torch - ORT| = {worst:.3g}" + (
            "; converted with dynamic batch and seq" if name in BERT_CASES and not shapes else "")
        fixtures.append(entry)
        print(f"{name}: {entry['onnx_nodes']} ONNX nodes {entry['ops']}; max |torch - ORT| {worst:.3g}")
    tv = open(os.path.join(OUT, "torch_version.txt")).read().strip()
    manifest = {"tolerance": TOL, "torch": tv, "onnxruntime": ort.__version__, "fixtures": fixtures}
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    step = sys.argv[1] if len(sys.argv) > 1 else "all"
    if step in ("export", "all"):
        export()
    if step in ("reference", "all"):
        reference()
