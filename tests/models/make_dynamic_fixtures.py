"""Dynamic-shape fixtures: small PyTorch models exported with dynamic_axes (batch, sequence
length) and ONNX Runtime reference outputs at several sizes (tests/models/dynamic/).

Two steps, because the export needs torch and the references need onnxruntime (which may live in
different interpreters; run from the repo root):

    /usr/bin/python3 tests/models/make_dynamic_fixtures.py export      # torch -> *.onnx
    python3 tests/models/make_dynamic_fixtures.py reference            # ORT -> *.npy, manifest.json

Without an argument both steps run in the current interpreter.  Seeded: the same library
versions rewrite identical files.  The C test (tests/convert/test_dynamic_convert.c) converts each
model once, without --input-shape, and runs it at every listed shape; the Python tests
(bindings/python/tests/test_dynamic.py) call ONNX Runtime themselves at more sizes.
"""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "dynamic")
OPSET = 13

# name -> list of input-shape cases; a case is {input name: shape}
CASES = {
    "dyn_mlp": [{"x": (1, 20)}, {"x": (7, 20)}, {"x": (64, 20)}],
    "dyn_cnn": [{"image": (1, 1, 14, 14)}, {"image": (7, 1, 14, 14)}, {"image": (64, 1, 14, 14)}],
    "dyn_text": [{"ids": (1, 5)}, {"ids": (7, 20)}, {"ids": (64, 33)}, {"ids": (3, 1)}, {"ids": (2, 64)}],
    "dyn_nopad": [{"x": (2, 3, 5, 9)}, {"x": (1, 3, 3, 3)}, {"x": (7, 3, 30, 4)}],
}
VOCAB = 500


def export():
    import torch
    from torch import nn

    torch.manual_seed(1212)

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(20, 32), nn.Linear(32, 4)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x)))

    class CNN(nn.Module):
        """conv -> relu -> pool -> conv -> relu, then x.view(x.size(0), -1): the exporter writes
        the Shape -> Gather -> Unsqueeze -> Concat -> Reshape chain that dynamic batches need."""

        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
            self.fc = nn.Linear(16 * 7 * 7, 10)

        def forward(self, x):
            y = torch.relu(self.c2(nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)))
            return torch.softmax(self.fc(y.view(y.size(0), -1)), dim=1)

    class Text(nn.Module):
        """Embedding -> LSTM (batch_first, zero initial state) -> per-token dense through a
        [batch*seq, 32] reshape and back to [batch, seq, 8] -> mean over the sequence, joined
        with the last hidden state -> dense 3."""

        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(VOCAB, 16)
            self.lstm = nn.LSTM(16, 32, batch_first=True)
            self.tok = nn.Linear(32, 8)
            self.out = nn.Linear(8 + 32, 3)

        def forward(self, ids):
            y, (h, _) = self.lstm(self.emb(ids))
            b, s = ids.size(0), ids.size(1)
            t = torch.tanh(self.tok(y.reshape(-1, 32))).reshape(b, s, 8)
            return self.out(torch.cat([t.mean(1), h[-1]], dim=1))

    os.makedirs(OUT, exist_ok=True)
    specs = {
        "dyn_mlp": (MLP(), (torch.zeros(2, 20),), ["x"], ["y"], {"x": {0: "batch"}, "y": {0: "batch"}}),
        "dyn_cnn": (CNN(), (torch.zeros(2, 1, 14, 14),), ["image"], ["probs"],
                    {"image": {0: "batch"}, "probs": {0: "batch"}}),
        "dyn_text": (Text(), (torch.zeros(2, 6, dtype=torch.int64),), ["ids"], ["logits"],
                     {"ids": {0: "batch", 1: "seq"}, "logits": {0: "batch"}}),
    }
    for name, (model, args, ins, outs, axes) in specs.items():
        model.eval()
        with torch.no_grad():
            for p in model.parameters():  # outputs far from constant: a wrong layout shows
                p.mul_(1.5)
        torch.onnx.export(model, args, os.path.join(OUT, name + ".onnx"), opset_version=OPSET,
                          input_names=ins, output_names=outs, dynamic_axes=axes)
        print("exported", name, "torch", torch.__version__)


def refused():
    """x [batch, 4] + ConstantOfShape(Shape(x), 1.0): a constant sized by the batch, which the
    converter must refuse (the runtime cannot recompute it) unless the batch is fixed."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    g = helper.make_graph([helper.make_node("Shape", ["x"], ["s"]),
                           helper.make_node("ConstantOfShape", ["s"], ["ones"], value=one),
                           helper.make_node("Add", ["x", "ones"], ["y"])], "refused", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(OUT, "dyn_refused.onnx"))


def nopad():
    """Conv 3x3 without padding over dynamic H and W -> global average pool -> Gemm: not valid
    with every dynamic dim at 1, so sessions must start at other sizes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    w = numpy_helper.from_array(rng.standard_normal((6, 3, 3, 3)).astype(np.float32), "W")
    fw = numpy_helper.from_array(rng.standard_normal((4, 6)).astype(np.float32), "FW")
    g = helper.make_graph([helper.make_node("Conv", ["x", "W"], ["c"]),
                           helper.make_node("GlobalAveragePool", ["c"], ["g"]),
                           helper.make_node("Flatten", ["g"], ["f"]),
                           helper.make_node("Gemm", ["f", "FW"], ["y"], transB=1)], "nopad", [x], [y], [w, fw])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(OUT, "dyn_nopad.onnx"))


def reference():
    import onnx
    import onnxruntime as ort

    refused()
    nopad()

    rng = np.random.default_rng(1212)
    manifest = {"onnxruntime": ort.__version__, "tolerance": "1e-4 * max(1, max|ref|)", "models": []}
    for name, cases in CASES.items():
        path = os.path.join(OUT, name + ".onnx")
        m = onnx.load(path)
        dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
                for i in m.graph.input}
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        entry = {"name": name, "onnx": os.path.relpath(path, os.path.dirname(HERE + "/../..")),
                 "input_dims": dims, "cases": []}
        for case in cases:
            feeds = {}
            tag = "_".join("x".join(str(d) for d in shape) for shape in case.values())
            files = {"inputs": [], "outputs": []}
            for k, (iname, shape) in enumerate(case.items()):
                if name == "dyn_text":
                    x = rng.integers(0, VOCAB, size=shape, dtype=np.int64)
                else:
                    x = rng.standard_normal(shape).astype(np.float32)
                feeds[iname] = x
                f = f"{name}.{tag}.in{k}.npy"
                np.save(os.path.join(OUT, f), x)
                files["inputs"].append({"name": iname, "file": "tests/models/dynamic/" + f})
            for k, (o, y) in enumerate(zip(sess.get_outputs(), sess.run(None, feeds))):
                f = f"{name}.{tag}.out{k}.npy"
                np.save(os.path.join(OUT, f), y)
                files["outputs"].append({"name": o.name, "file": "tests/models/dynamic/" + f})
            entry["cases"].append(files)
        entry["onnx"] = "tests/models/dynamic/" + name + ".onnx"
        manifest["models"].append(entry)
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print("references written with onnxruntime", ort.__version__)


if __name__ == "__main__":
    step = sys.argv[1] if len(sys.argv) > 1 else "all"
    if step in ("export", "all"):
        export()
    if step in ("reference", "all"):
        reference()
