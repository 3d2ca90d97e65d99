#!/usr/bin/env bash
# make demo: convert the bundled digits CNN (PyTorch -> ONNX) and classify held-back images in C.
set -euo pipefail
B=${1:-build/release}
mkdir -p "$B/demo"
echo "== mdeploy-convert examples/digits/digits_cnn.onnx"
"$B/bin/mdeploy-convert" examples/digits/digits_cnn.onnx -o "$B/demo/digits_cnn.mdl" \
    --name digits-cnn --model-version 1.0 --description "8x8 digit classifier (scikit-learn digits)"
echo
echo "== mdeploy-inspect"
"$B/bin/mdeploy-inspect" "$B/demo/digits_cnn.mdl"
echo
echo "== classify held-back digits (examples/digits.c)"
"$B/examples/digits" "$B/demo/digits_cnn.mdl" examples/digits/images.npy examples/digits/labels.npy
