#!/usr/bin/env bash
# make install-check, after make install into B/install-check/prefix and (DESTDIR) into
# B/install-check/destdir/opt/mdeploy: checks what was installed and builds programs against it.
# usage: check.sh BUILD_DIR VERSION [SODIUM]   (SODIUM=0: the runtime must not need libsodium)
set -euo pipefail
# (no `cmd | grep -q` below: grep -q exits at the first match, cmd then dies of SIGPIPE and
# pipefail fails the pipeline at random)
B=$1 V=$2 M=${2%%.*} SODIUM=${3:-1}
ROOT=$(pwd)
W=$ROOT/$B/install-check
P=$W/prefix
fail() { echo "install-check: FAIL: $*" >&2; exit 1; }

# ---- the installed files, the SONAMEs and the links -------------------------------------------
for f in include/mdeploy/mdeploy.h include/mdeploy/convert.h lib/libmdeploy.a lib/libmdeploy-convert.a \
         lib/pkgconfig/mdeploy.pc lib/pkgconfig/mdeploy-convert.pc lib/cmake/mdeploy/mdeployConfig.cmake \
         lib/cmake/mdeploy/mdeployConfigVersion.cmake bin/mdeploy-convert bin/mdeploy-run; do
    [ -e "$P/$f" ] || fail "$P/$f not installed"
done
for l in libmdeploy libmdeploy-convert; do
    [ "$(readlink "$P/lib/$l.so")" = "$l.so.$M" ] || fail "$l.so is not a link to $l.so.$M"
    [ "$(readlink "$P/lib/$l.so.$M")" = "$l.so.$V" ] || fail "$l.so.$M is not a link to $l.so.$V"
    soname=$(objdump -p "$P/lib/$l.so.$V" | awk '$1 == "SONAME" {print $2}')
    echo "objdump -p $l.so.$V: SONAME $soname"
    [ "$soname" = "$l.so.$M" ] || fail "$l.so.$V: SONAME '$soname', expected $l.so.$M"
done
# The runtime needs libc, libm, (BLAS=1) OpenBLAS and (SODIUM=1) libsodium (signatures, encryption:
# src/io/sign_host.c), nothing of the converter's.
echo "ldd libmdeploy.so: $(ldd "$P/lib/libmdeploy.so" | awk '{print $1}' | grep -v vdso | tr '\n' ' ')"
! ldd "$P/lib/libmdeploy.so" | grep protobuf >/dev/null || fail "libmdeploy.so depends on protobuf-c"
ldd "$P/lib/libmdeploy-convert.so" | grep 'libprotobuf-c' >/dev/null || fail "libmdeploy-convert.so does not link protobuf-c (the ldd check above could not fail)"
for n in $(objdump -p "$P/lib/libmdeploy.so" | awk '$1 == "NEEDED" {print $2}'); do
    case $n in libc.so.*|libm.so.*|libopenblas.so.*|libpthread.so.*) ;;
        libsodium.so.*) [ "$SODIUM" = 1 ] || fail "libmdeploy.so needs $n in a SODIUM=0 build";;
        *) fail "libmdeploy.so needs $n";; esac
done
# The converter exports its own API only (the runtime code it carries stays internal).
extra=$(nm -D --defined-only "$P/lib/libmdeploy-convert.so" | awk '{print $3}' |
        grep -vE '^(mdl_convert_|mdl_onnx_|mdl_eval_|mdl_parse_input_shape$)' || true)
[ -z "$extra" ] || fail "libmdeploy-convert.so exports $(echo $extra | head -c 200)"
! nm -D --defined-only "$P/lib/libmdeploy.so" | grep ' mdl_convert_onnx$' >/dev/null || fail "the runtime exports the converter"
# DESTDIR: staged under destdir, paths inside the files are the final ones.
D=$W/destdir/opt/mdeploy
[ -f "$D/lib/libmdeploy.so.$V" ] && [ -L "$D/lib/libmdeploy.so" ] || fail "DESTDIR install: $D/lib incomplete"
grep -qx 'prefix=/opt/mdeploy' "$D/lib/pkgconfig/mdeploy.pc" || fail "DESTDIR install: mdeploy.pc has the staging prefix"
grep -q '"/opt/mdeploy/lib"' "$D/lib/cmake/mdeploy/mdeployConfig.cmake" || fail "DESTDIR install: CMake config has the staging prefix"

# ---- programs built against the installed tree -----------------------------------------------
# Each prints the first outputs of tests/models/mlp.onnx at an input of 0.5 (examples/minimal.c);
# ONNX Runtime on the ONNX file is the reference.
$P/bin/mdeploy-convert tests/models/mlp.onnx -o "$W/mlp.mdl" >/dev/null
ort_check() { # LABEL OUTPUT_LINE
    python3 - "$ROOT/tests/models/mlp.onnx" "$2" "$1" <<'PY' || fail "$1: output differs from ONNX Runtime"
import sys
import numpy as np
import onnxruntime as ort
path, line, label = sys.argv[1:]
s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]
x = np.full([d if isinstance(d, int) else 1 for d in i.shape], 0.5, np.float32)
ref = s.run(None, {i.name: x})[0].ravel()[:10]
got = np.array([float(v) for v in line.split(":", 1)[1].split()])
ok = got.shape == ref.shape and np.allclose(got, ref, rtol=1e-4, atol=2e-5)
print(f"  {label}: {line.strip()}   (ONNX Runtime: {' '.join(f'{v:.5f}' for v in ref)})")
sys.exit(0 if ok else 1)
PY
}
needs_from() { # BINARY LIB: BINARY loads LIB from the installed tree
    ldd "$1" | grep "$2 => $P/lib/" >/dev/null || fail "$1 does not load $2 from $P/lib: $(ldd "$1" | grep mdeploy || echo none)"
}
needs_none() { # BINARY PATTERN
    ! objdump -p "$1" | awk '$1 == "NEEDED" {print $2}' | grep "$2" >/dev/null || fail "$1 needs $2"
}

echo "== CMake (find_package(mdeploy), examples/cmake) against $P"
cmake -S examples/cmake -B "$W/cmake" -DCMAKE_PREFIX_PATH="$P" -DCMAKE_BUILD_TYPE=Release >"$W/cmake.log" 2>&1 &&
    cmake --build "$W/cmake" >>"$W/cmake.log" 2>&1 || { tail -n 30 "$W/cmake.log"; fail "CMake build"; }
needs_from "$W/cmake/minimal" "libmdeploy.so.$M"
needs_none "$W/cmake/minimal" protobuf
needs_from "$W/cmake/convert" "libmdeploy-convert.so.$M"
"$W/cmake/convert" tests/models/mlp.onnx "$W/mlp-cmake.mdl" | sed 's/^/  convert: /'
ort_check "minimal (CMake, shared)" "$("$W/cmake/minimal" "$W/mlp-cmake.mdl")"

echo "== pkg-config (mdeploy, mdeploy-convert) against $P"
export PKG_CONFIG_PATH=$P/lib/pkgconfig
cc=${CC:-cc}
$cc examples/minimal.c $(pkg-config --cflags --libs mdeploy) -Wl,-rpath,"$P/lib" -o "$W/pc-minimal"
$cc examples/convert.c $(pkg-config --cflags --libs mdeploy-convert) -Wl,-rpath,"$P/lib" -o "$W/pc-convert"
needs_from "$W/pc-minimal" "libmdeploy.so.$M"
needs_none "$W/pc-minimal" protobuf
needs_from "$W/pc-convert" "libmdeploy-convert.so.$M"
# static: the archives in place of -lmdeploy / -lmdeploy-convert, the private libraries after them
static() { pkg-config --static --libs "$1" | sed -E 's/-lmdeploy(-convert)?( |$)/-l:libmdeploy\1.a\2/g'; }
$cc examples/minimal.c $(pkg-config --cflags mdeploy) $(static mdeploy) -o "$W/pc-minimal-static"
$cc examples/convert.c $(pkg-config --cflags mdeploy-convert) $(static mdeploy-convert) -o "$W/pc-convert-static"
needs_none "$W/pc-minimal-static" mdeploy
needs_none "$W/pc-minimal-static" protobuf
needs_none "$W/pc-convert-static" mdeploy
"$W/pc-convert" tests/models/mlp.onnx "$W/mlp-pc.mdl" >/dev/null
"$W/pc-convert-static" tests/models/mlp.onnx "$W/mlp-pc-static.mdl" >/dev/null
ort_check "minimal (pkg-config, shared)" "$("$W/pc-minimal" "$W/mlp-pc.mdl")"
ort_check "minimal (pkg-config, static)" "$("$W/pc-minimal-static" "$W/mlp-pc-static.mdl")"
ort_check "minimal (installed mdeploy-convert)" "$("$W/pc-minimal" "$W/mlp.mdl")"
echo "== make install: headers, libraries (SONAME libmdeploy.so.$M, no protobuf-c in the runtime), tools, pkg-config and CMake packages work from $P"
