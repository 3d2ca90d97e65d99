#!/usr/bin/env python3
"""Trains the demo model: a small CNN on scikit-learn's bundled handwritten digits.

The digits set (1797 8x8 grey images, pixel values 0..16) ships inside scikit-learn, so nothing is
downloaded.  Pixels are scaled to [0, 1] (divided by 16); a stratified 20% test split is held
back.  Writes, next to this script:

    digits_cnn.onnx  the model: image float32 [N,1,8,8] -> probs float32 [N,10] (softmax);
                     N is a dynamic dimension (mdeploy-convert fixes it, default 1)
    images.npy       20 held-back test images, float32 [20,1,8,8], scaled as in training
    labels.npy       their labels, int64 [20]

Needs torch, scikit-learn, onnx (and onnxruntime for the check at the end).  Seeded: a rerun
with the same library versions gives the same model.  Takes a few seconds on a laptop CPU.

    python3 examples/digits/make_digits.py
"""
import os

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from digits_model import DigitsCNN, WithSoftmax  # noqa: F401  (the model, shared)

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 0
EPOCHS = 30


def accuracy(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)
    x_tr, y_tr = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    x_te_t, y_te_t = torch.from_numpy(x_te), torch.from_numpy(y_te)

    net = DigitsCNN()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(SEED)
    for epoch in range(EPOCHS):
        net.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        for i in range(0, len(perm), 32):
            b = perm[i:i + 32]
            opt.zero_grad()
            loss = loss_fn(net(x_tr[b]), y_tr[b])
            loss.backward()
            opt.step()
        net.eval()
        if (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1:2d}  loss {loss.item():.4f}  "
                  f"train acc {accuracy(net, x_tr, y_tr):.4f}  test acc {accuracy(net, x_te_t, y_te_t):.4f}")

    net.eval()
    acc = accuracy(net, x_te_t, y_te_t)
    print(f"torch test accuracy: {acc:.4f} ({int(round(acc * len(y_te)))}/{len(y_te)} held-back images)")

    model = WithSoftmax(net).eval()
    onnx_path = os.path.join(HERE, "digits_cnn.onnx")
    torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), onnx_path, opset_version=13,
                      input_names=["image"], output_names=["probs"],
                      dynamic_axes={"image": {0: "N"}, "probs": {0: "N"}},
                      do_constant_folding=True, dynamo=False)

    images, labels = x_te[:20].copy(), y_te[:20].copy()
    np.save(os.path.join(HERE, "images.npy"), images)
    np.save(os.path.join(HERE, "labels.npy"), labels)

    try:
        import onnxruntime as ort
    except ImportError:
        return
    probs = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).run(
        None, {"image": images})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(images)).numpy()
    print(f"onnxruntime on the 20 saved images: {int((probs.argmax(1) == labels).sum())}/20 correct, "
          f"max |ort - torch| = {np.abs(probs - ref).max():.2e}")


if __name__ == "__main__":
    main()
