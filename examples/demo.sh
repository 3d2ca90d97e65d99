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
echo
echo "== mdeploy-convert --quantize int8 (calibrated on 200 training images, measured on the 360 held-back ones)"
X=tests/models/quant/digits_test.images.npy
Y=tests/models/quant/digits_test.labels.npy
"$B/bin/mdeploy-convert" examples/digits/digits_cnn.onnx -o "$B/demo/digits_cnn_int8.mdl" \
    --name digits-cnn-int8 --model-version 1.0 --quantize int8 \
    --calibration examples/digits/calibration.npy --eval "$X" "$Y" --report "$B/demo/digits_cnn_int8.report.json"
echo
echo "== float and int8 side by side (360 held-back images)"
printf '%-7s %-10s %-12s %s\n' model accuracy "file bytes" "batch-1 latency (median)"
for v in "float:$B/demo/digits_cnn.mdl" "int8:$B/demo/digits_cnn_int8.mdl"; do
    name=${v%%:*}
    file=${v#*:}
    acc=$("$B/examples/digits" "$file" "$X" "$Y" | tail -1 | sed -E 's/.*= ([0-9.]+%).*/\1/')
    lat=$("$B/bin/mdeploy-bench" "$file" --time 1 | grep -E '^latency' | sed -E 's/.*median ([0-9.]+).*/\1 ms/')
    printf '%-7s %-10s %-12s %s\n' "$name" "$acc" "$(stat -c %s "$file")" "$lat"
done
