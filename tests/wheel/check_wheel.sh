#!/usr/bin/env bash
# make check-wheel: builds the Python wheel from the BLAS=0 libraries, makes it portable with
# auditwheel repair (libprotobuf-c goes into the wheel), installs it into a fresh venv and, from a
# directory outside the repository with no PYTHONPATH/MDEPLOY_LIB, converts the bundled digits
# CNN and runs it; the outputs are compared with ONNX Runtime's (computed outside the venv).
# usage: check_wheel.sh BUILD_DIR(of the BLAS=0 build) OUT_DIR
set -euo pipefail
B=$(realpath "$1")
W=$(realpath -m "$2")
ROOT=$(pwd)
fail() { echo "check-wheel: FAIL: $*" >&2; exit 1; }
rm -rf "$W" && mkdir -p "$W/dist" "$W/run"

# The wheel: pip builds it from bindings/python (setup.py bundles the two libraries).
MDEPLOY_LIB=$B/libmdeploy.so python3 -m pip wheel -q --no-deps -w "$W/dist" ./bindings/python \
    >"$W/pip-wheel.log" 2>&1 || { tail -n 30 "$W/pip-wheel.log"; fail "pip wheel"; }
rm -rf bindings/python/build bindings/python/*.egg-info
whl=$(ls "$W"/dist/mdeploy-*.whl)
python3 -m auditwheel repair --strip -w "$W/wheelhouse" "$whl" >"$W/auditwheel.log" 2>&1 ||
    { cat "$W/auditwheel.log"; fail "auditwheel repair"; }
fixed=$(ls "$W"/wheelhouse/mdeploy-*.whl)
echo "wheel: $(basename "$fixed") ($(du -k "$fixed" | cut -f1) KiB): $(python3 -m zipfile -l "$fixed" |
      awk '/\.so/ {print $1}' | xargs -n1 basename | tr '\n' ' ')"
python3 -m zipfile -l "$fixed" | grep 'mdeploy.libs/libprotobuf-c' >/dev/null || fail "libprotobuf-c not bundled"

# The reference: ONNX Runtime on the ONNX file, outside the venv.
cp examples/digits/digits_cnn.onnx examples/digits/images.npy "$W/run/"
python3 - "$W/run" <<'PY'
import sys
import numpy as np
import onnxruntime as ort
d = sys.argv[1]
s = ort.InferenceSession(f"{d}/digits_cnn.onnx", providers=["CPUExecutionProvider"])
x = np.load(f"{d}/images.npy").astype(np.float32)
np.save(f"{d}/reference.npy", s.run(None, {s.get_inputs()[0].name: x})[0])
PY

# A fresh venv; the wheel's dependency (numpy) comes from the package index or pip's cache.
python3 -m venv "$W/venv"
"$W/venv/bin/python" -m pip install -q "$fixed" >"$W/pip-install.log" 2>&1 ||
    { tail -n 20 "$W/pip-install.log"; fail "pip install of the wheel"; }
cat >"$W/run/use_wheel.py" <<'PY'
import os, subprocess, sys
import numpy as np
import mdeploy
from mdeploy import _lib
venv = sys.prefix
assert mdeploy.library_path.startswith(venv), f"runtime not from the wheel: {mdeploy.library_path}"
report = mdeploy.convert("digits_cnn.onnx", "digits_cnn.mdl")
assert _lib.convert_library_path.startswith(venv), _lib.convert_library_path
# the converter's protobuf-c is the wheel's copy, not the system's
ldd = subprocess.run(["ldd", _lib.convert_library_path], capture_output=True, text=True).stdout
proto = [l for l in ldd.splitlines() if "protobuf-c" in l]
assert proto and venv in proto[0], f"protobuf-c not from the wheel: {proto}"
m = mdeploy.Model("digits_cnn.mdl")
x = np.load("images.npy").astype(np.float32)
(y,) = m.run(x)
ref = np.load("reference.npy")
err = float(np.max(np.abs(y - ref)))
assert y.shape == ref.shape and err < 1e-4, f"max |mdeploy - onnxruntime| = {err}"
print(f"mdeploy {mdeploy.__version__} from the wheel: digits_cnn converted ({report.nodes_out} operators), "
      f"{len(x)} images, max |mdeploy - onnxruntime| = {err:.2e}")
PY
(cd "$W/run" && env -u PYTHONPATH -u MDEPLOY_LIB -u MDEPLOY_CONVERT_LIB -u LD_LIBRARY_PATH \
    "$W/venv/bin/python" use_wheel.py) || fail "the installed wheel"
