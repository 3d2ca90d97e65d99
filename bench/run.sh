#!/usr/bin/env bash
# `make bench`: mdeploy side by side with ONNX Runtime (see bench/README.md).
# usage: bash bench/run.sh BUILD_DIR [harness options, e.g. --quick, --models mlp,resnet18]
# Installs what is missing (pip: torch, torchvision, matplotlib), exports the larger models into
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

# numpy, onnx and onnxruntime come with `make deps`; torch/torchvision export the larger models,
# matplotlib draws the chart.  An installed torch is pinned (by its public version) so that
# resolving torchvision never replaces it.
# The export needs torch (+ torchvision for two models) and onnx, in any Python: when $PY has no
# torch but the system one does (Debian's python3-torch), that one exports and $PY only times.
EXPORT_PY=$PY
want=(numpy onnx onnxruntime torch torchvision matplotlib)
if ! "$PY" -c "import torch" 2>/dev/null && /usr/bin/python3 -c "import torch, onnx" 2>/dev/null; then
    EXPORT_PY=/usr/bin/python3
    want=(numpy onnx onnxruntime matplotlib)
    /usr/bin/python3 -c "import torchvision" 2>/dev/null ||
        echo "bench: /usr/bin/python3 has no torchvision (apt-get install python3-torchvision): mobilenet_v2 and resnet18 will be missing" >&2
fi
missing=()
for m in "${want[@]}"; do
    "$PY" -c "import $m" 2>/dev/null || missing+=("$m")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench: pip install ${missing[*]}"
    pins=()
    tv=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)
    if [ -n "$tv" ]; then
        printf 'torch==%s\n' "$tv" >"${TMPDIR:-/tmp}/mdeploy-bench-constraints.txt"
        pins=(-c "${TMPDIR:-/tmp}/mdeploy-bench-constraints.txt")
    fi
    pip_install "${pins[@]}" "${missing[@]}" || echo "bench: pip install failed; going on with what is there" >&2
fi

# The exported models are cached; without torch the benchmark still runs on the fixtures.
"$EXPORT_PY" bench/export_models.py || echo "bench: model export failed: those rows will show the error" >&2

# One thread each: OpenBLAS for mdeploy here, intra_op_num_threads=1 for ORT in the harness.
# (OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, where the machine sets them, are left as they are.)
export OPENBLAS_NUM_THREADS=1
exec "$PY" bench/harness.py "$B" "$@"
