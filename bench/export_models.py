#!/usr/bin/env python3
"""Exports the benchmark's larger models to ONNX under bench/cache/ (git-ignored; nothing large is
committed).  Each model is written once and reused while its stamp (torch and torchvision
versions, exporter settings) is unchanged.

  image_classifier  the seed image classifier: 150x150x3 input, four conv3x3+ReLU+maxpool2
                    blocks of 32/64/128/128 channels (valid padding, as the Keras original),
                    flatten, dense 512 + ReLU, dense 1 + sigmoid
  mobilenet_v2      torchvision.models.mobilenet_v2(weights=None), 1x3x224x224
  resnet18          torchvision.models.resnet18(weights=None), 1x3x224x224

Weights are random (seeded; torchvision's own initialization), BatchNorm in inference mode.
Inputs are NCHW as PyTorch exports them.  Next to each NAME.onnx: NAME.in0.npy, a seeded
standard-normal input.

usage: python3 bench/export_models.py [--cache DIR] [--force] [NAME ...]
"""
import argparse
import inspect
import json
import os
import sys
import warnings

import numpy as np

OPSET = 13
HERE = os.path.dirname(os.path.abspath(__file__))


def image_classifier():
    import torch.nn as nn

    layers, cin = [], 3
    for cout in (32, 64, 128, 128):
        layers += [nn.Conv2d(cin, cout, 3), nn.ReLU(), nn.MaxPool2d(2)]
        cin = cout
    # 150 -> 148 -> 74 -> 72 -> 36 -> 34 -> 17 -> 15 -> 7: 128 x 7 x 7 features
    layers += [nn.Flatten(), nn.Linear(128 * 7 * 7, 512), nn.ReLU(), nn.Linear(512, 1), nn.Sigmoid()]
    return nn.Sequential(*layers), (1, 3, 150, 150)


def mobilenet_v2():
    import torchvision

    return torchvision.models.mobilenet_v2(weights=None), (1, 3, 224, 224)


def resnet18():
    import torchvision

    return torchvision.models.resnet18(weights=None), (1, 3, 224, 224)


MODELS = {"image_classifier": image_classifier, "mobilenet_v2": mobilenet_v2, "resnet18": resnet18}


def stamp():
    import torch

    s = {"torch": torch.__version__, "opset": OPSET, "exporter": "torchscript"}
    try:
        import torchvision

        s["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    return s


def export(name, cache, force):
    onnx_path = os.path.join(cache, name + ".onnx")
    in_path = os.path.join(cache, name + ".in0.npy")
    stamp_path = os.path.join(cache, name + ".stamp.json")
    want = stamp()
    if not force and os.path.exists(onnx_path) and os.path.exists(in_path) and os.path.exists(stamp_path):
        with open(stamp_path) as f:
            if json.load(f) == want:
                print(f"export: {name}: cached ({onnx_path})")
                return
    import torch

    torch.manual_seed(0)
    model, shape = MODELS[name]()
    model.eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    tmp = onnx_path + ".tmp"
    with torch.no_grad():
        kw = {}
        if "dynamo" in inspect.signature(torch.onnx.export).parameters:
            kw["dynamo"] = False  # torch >= 2.5: the TorchScript exporter (older ones have no other)
        torch.onnx.export(model, (x,), tmp, opset_version=OPSET, input_names=["input"],
                          output_names=["output"], do_constant_folding=True, **kw)
    os.replace(tmp, onnx_path)
    np.save(in_path, x.numpy())
    with open(stamp_path, "w") as f:
        json.dump(want, f)
    print(f"export: {name}: wrote {onnx_path} ({os.path.getsize(onnx_path) / 1e6:.1f} MB)")


def main():
    # the TorchScript exporter is deprecated but is what the fixtures use too
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=os.path.join(HERE, "cache"))
    ap.add_argument("--force", action="store_true", help="export again even if cached")
    ap.add_argument("names", nargs="*", help="models to export (default: all)")
    a = ap.parse_args()
    names = a.names or list(MODELS)
    for n in names:
        if n not in MODELS:
            sys.exit(f"export: unknown model '{n}' (known: {', '.join(MODELS)})")
    os.makedirs(a.cache, exist_ok=True)
    for n in names:
        export(n, a.cache, a.force)


if __name__ == "__main__":
    main()
