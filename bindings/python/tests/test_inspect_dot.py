"""mdeploy-inspect --dot: the Graphviz graph of a converted model.

The structure is checked against the model as `mdeploy-inspect --json` lists it (every operator a
box, one edge per non-constant tensor it reads, from its producer or a graph-input ellipse, each
labelled with that tensor's shape, the weights' shapes on the boxes, every output an ellipse fed
by its producer) and, when Graphviz is installed (make check installs it), the file is parsed
and rendered by Graphviz's own `dot` (an independent reader of the language)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mdeploy import _lib
from conftest import REPO

BIN = Path(_lib.library_path).resolve().parent / "bin"
MODELS = [REPO / "examples" / "digits" / "digits_cnn.onnx", REPO / "tests" / "models" / "recommender.onnx",
          REPO / "tests" / "models" / "text_lstm.onnx"]


def _shape(t):
    """The tensor's label: its dtype unless float32, and its shape."""
    return ("" if t["dtype"] == "float32" else t["dtype"] + " ") + "[" + ",".join(str(d) for d in t["shape"]) + "]"


def _norm(label):
    """A shape label with its dynamic dims ("N", "batch<=64", "?") written as --json writes them: -1."""
    def dims(m):
        if not m.group(1):
            return "[]"
        return "[" + ",".join(d if re.fullmatch(r"-?\d+", d) else "-1" for d in m.group(1).split(",")) + "]"
    return re.sub(r"\[([^\]]*)\]", dims, label)


@pytest.mark.parametrize("onnx", MODELS, ids=lambda p: p.stem)
def test_dot_graph(onnx, tmp_path):
    mdl = tmp_path / "m.mdl"
    subprocess.run([str(BIN / "mdeploy-convert"), str(onnx), "-o", str(mdl), "-q"], check=True)
    info = json.loads(subprocess.run([str(BIN / "mdeploy-inspect"), str(mdl), "--json"], check=True,
                                     capture_output=True, text=True).stdout)
    dot = tmp_path / "m.dot"
    subprocess.run([str(BIN / "mdeploy-inspect"), str(mdl), "--dot", str(dot)], check=True)
    text = dot.read_text()
    tensors, ops = info["tensors"], info["operators"]
    producer = {t: i for i, op in enumerate(ops) for t in op["outputs"]}
    boxes = dict(re.findall(r'^  n(\d+) \[shape=box, style=rounded, label="(.*)"\];$', text, re.M))
    assert len(boxes) == len(ops)
    edges = [(a, b, _norm(c)) for a, b, c in re.findall(r'^  ([nt]\d+) -> n(\d+) \[label="(.*)"\];$', text, re.M)]
    want = []
    for i, op in enumerate(ops):
        label = [_norm(x) for x in boxes[str(i)].split("\\n")]
        assert label[0] == op["op"] and label[1] == op["name"].replace('"', '\\"')
        for t in op["inputs"]:
            if t < 0:
                continue
            if tensors[t]["constant"]:
                assert f"const {_shape(tensors[t])}" in label[2:], (op["name"], label)
            else:
                src = f"n{producer[t]}" if t in producer else f"t{t}"
                want.append((src, str(i), _shape(tensors[t])))
    assert sorted(edges) == sorted(want)
    outs = re.findall(r'^  (n\d+|t\d+) -> out(\d+);$', text, re.M)
    assert len(outs) == len(info["outputs"])
    if shutil.which("dot"):
        svg = tmp_path / "m.svg"
        r = subprocess.run(["dot", "-Tsvg", str(dot), "-o", str(svg)], capture_output=True, text=True)
        assert r.returncode == 0 and not r.stderr, r.stderr
        assert svg.read_text().count('class="node"') == len(ops) + len(outs) + len(set(e[0] for e in edges if e[0][0] == "t"))


def test_dot_errors(tmp_path):
    r = subprocess.run([str(BIN / "mdeploy-inspect"), str(MODELS[0]), "--dot", str(tmp_path / "x.dot")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "convert" in r.stderr
    mdl = tmp_path / "m.mdl"
    subprocess.run([str(BIN / "mdeploy-convert"), str(MODELS[0]), "-o", str(mdl), "-q"], check=True)
    r = subprocess.run([str(BIN / "mdeploy-inspect"), str(mdl), "--dot", str(tmp_path / "no" / "x.dot")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "cannot write" in r.stderr
