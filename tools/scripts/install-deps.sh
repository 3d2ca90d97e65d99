#!/usr/bin/env bash
# Installs what mdeploy needs and is missing: Debian packages with apt-get, Python ones with pip.
# usage: install-deps.sh
set -eu
debs=(build-essential pkg-config libopenblas-dev libcjson-dev libcmocka-dev libprotobuf-c-dev libsodium-dev
      protobuf-c-compiler flatbuffers-compiler gcc-arm-none-eabi picolibc-arm-none-eabi
      qemu-system-arm clang libclang-rt-14-dev python3 python3-pip
      default-jre-headless)  # Java: the Spark batch-scoring test (make check-spark)
# firmware images under QEMU (make firmware-check): RV32 toolchain, picolibc and emulator
debs+=(gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc)
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
py=()
# pyspark, pandas, pyarrow: examples/spark (make check-spark); prometheus_client: the metrics test
# (bindings/python/tests/test_metrics.py) parses the exposition with its parser; cryptography: an
# independent Ed25519 check of signed models (bindings/python/tests/test_security.py)
for m in numpy onnx onnxruntime pytest pyspark pandas pyarrow prometheus_client cryptography; do
    python3 -c "import $m" 2>/dev/null || py+=("$m")
done
if [ ${#py[@]} -gt 0 ]; then
    echo "install-deps: pip install ${py[*]}"
    python3 -m pip install -q "${py[@]}" 2>/dev/null ||
        python3 -m pip install -q --break-system-packages "${py[@]}"
fi
exit 0
