#!/usr/bin/env bash
# `make bench`: mdeploy side by side with ONNX Runtime (see bench/README.md).
# usage: bash bench/run.sh BUILD_DIR [harness options, e.g. --quick, --models mlp,resnet18]
# Installs what is missing (Debian python3-torch for the export, pip matplotlib), exports the larger models into
# bench/cache/ once, then runs bench/harness.py, which writes bench/results/.
set -euo pipefail
B=${1:?usage: bash bench/run.sh BUILD_DIR [options]}
shift
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

for f in "$B/libmdeploy.so" "$B/bin/mdeploy-convert" "$B/bin/mdeploy-bench"; do
    [ -e "$f" ] || { echo "bench: $f missing: build first (make all)" >&2; exit 1; }
done

pip_install() {
    "$PY" -m pip install -q "$@" 2>/dev/null || "$PY" -m pip install -q --break-system-packages "$@"
}

# numpy, onnx and onnxruntime come with `make deps`.  torch/torchvision only export the larger
# models: Debian's python3-torch/python3-torchvision (for /usr/bin/python3, with python3-onnx) are
# used when the Python above has no torch — PyPI's torch wheel pulls gigabytes of CUDA libraries.
# matplotlib draws the chart.
"$PY" -c "import matplotlib" 2>/dev/null || pip_install matplotlib || echo "bench: no matplotlib: no chart" >&2
EXPORT_PY="$PY"
if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
    EXPORT_PY=/usr/bin/python3
    if ! "$EXPORT_PY" -c "import torch, torchvision, onnx" 2>/dev/null; then
        echo "bench: apt-get install python3-torch python3-torchvision python3-onnx"
        sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
        $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 \
            python3-torch python3-torchvision python3-onnx >/dev/null ||
            echo "bench: could not install torch; going on with what is there" >&2
    fi
fi

# The exported models are cached; without torch the benchmark still runs on the fixtures.
"$EXPORT_PY" bench/export_models.py || echo "bench: model export failed: those rows will show the error" >&2

# One thread each: OpenBLAS for mdeploy here, intra_op_num_threads=1 for ORT in the harness.
# (OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, where the machine sets them, are left as they are.)
export OPENBLAS_NUM_THREADS=1
exec "$PY" bench/harness.py "$B" "$@"
