#!/usr/bin/env bash
# make demo: convert the bundled digits CNN (PyTorch -> ONNX), look inside, classify held-back
# images in C, then the same model quantized to int8, side by side.  Kept to one screen: the
# tools' full output is in B/demo/*.txt.
set -euo pipefail
B=${1:-build/release}
D=$B/demo
mkdir -p "$D"
X=tests/models/quant/digits_test.images.npy
Y=tests/models/quant/digits_test.labels.npy

echo "== mdeploy-convert examples/digits/digits_cnn.onnx -o $D/digits_cnn.mdl"
"$B/bin/mdeploy-convert" examples/digits/digits_cnn.onnx -o "$D/digits_cnn.mdl" \
    --name digits-cnn --model-version 1.0 --description "8x8 digit classifier (scikit-learn digits)" \
    | sed 1d
echo "== mdeploy-inspect: the operators after fusion (all in $D/inspect.txt)"
"$B/bin/mdeploy-inspect" "$D/digits_cnn.mdl" >"$D/inspect.txt"
grep -E '^(input|output|weights|arena) ' "$D/inspect.txt" | sed 's/^/  /'
# "    1 Conv2D   NAME [attrs] inputs -> outputs": the operator and its attributes
sed -nE 's/^ +([0-9]+) ([A-Za-z0-9]+) +[^ ]+ *(\[[^]]*\])?.*/  \1 \2 \3/p' "$D/inspect.txt"
"$B/bin/mdeploy-inspect" "$D/digits_cnn.mdl" --dot "$D/digits_cnn.dot"
if command -v dot >/dev/null 2>&1 && dot -Tsvg "$D/digits_cnn.dot" -o "$D/digits_cnn.svg"; then
    echo "  graph: $D/digits_cnn.svg (mdeploy-inspect --dot, rendered by Graphviz)"
else
    echo "  graph: $D/digits_cnn.dot (mdeploy-inspect --dot; apt-get install graphviz renders it)"
fi
echo "== examples/digits.c classifies 20 held-back digits (all in $D/digits.txt)"
"$B/examples/digits" "$D/digits_cnn.mdl" examples/digits/images.npy examples/digits/labels.npy >"$D/digits.txt"
grep -E 'wrong|^accuracy' "$D/digits.txt" | sed 's/^/  /'
echo "== mdeploy-convert --quantize int8 (calibrated on 200 training images; all in $D/quantize.txt)"
"$B/bin/mdeploy-convert" examples/digits/digits_cnn.onnx -o "$D/digits_cnn_int8.mdl" \
    --name digits-cnn-int8 --model-version 1.0 --quantize int8 \
    --calibration examples/digits/calibration.npy --eval "$X" "$Y" --report "$D/digits_cnn_int8.report.json" \
    >"$D/quantize.txt"
grep -E '^ +(layers|size|top-1 accuracy):?' "$D/quantize.txt" | sed 's/^ */  /'
echo "== float and int8 side by side (360 held-back images)"
printf '  %-7s %-10s %-12s %s\n' model accuracy "file bytes" "batch-1 latency (median)"
for v in "float:$D/digits_cnn.mdl" "int8:$D/digits_cnn_int8.mdl"; do
    name=${v%%:*}
    file=${v#*:}
    acc=$("$B/examples/digits" "$file" "$X" "$Y" | tail -1 | sed -E 's/.*= ([0-9.]+%).*/\1/')
    lat=$("$B/bin/mdeploy-bench" "$file" --time 1 | grep -E '^latency' | sed -E 's/.*median ([0-9.]+).*/\1 ms/')
    printf '  %-7s %-10s %-12s %s\n' "$name" "$acc" "$(stat -c %s "$file")" "$lat"
done
