#!/usr/bin/env bash
# Runs libFuzzer targets for a while and prints the executions of each.
# usage: bash tests/fuzz/run.sh FUZZ_BUILD_DIR SECONDS parallel|sequential TARGET...
# Each target fuzzes its own growing corpus (FUZZ_BUILD_DIR/corpus-TARGET) from its seeds:
#   load, file  the model corpus (tests/fuzz/corpus; file: with the one-byte mode prefix)
#   run         the model corpus with a 64-byte payload (NaN, 0xff...) and its length byte
#   npy         the .npy fixtures, onnx  the .onnx fixtures and tests/fuzz/regress (under 64 KiB)
#   serve_request  tests/fuzz/serve_seeds (request bodies, see fuzz_serve_request.c)
# Crash inputs go to FUZZ_BUILD_DIR/artifacts/TARGET-*.  Exit status 1 if any target failed.
set -u
B=${1:?usage}; SECONDS_EACH=${2:?usage}; MODE=${3:?usage}; shift 3
cd "$(dirname "$0")/../.."
S=$B/seeds
rm -rf "$S"; mkdir -p "$S/run" "$S/file" "$S/npy" "$S/onnx" "$B/artifacts"
for f in tests/fuzz/corpus/*.mdl; do
    n=$(basename "$f")
    { cat "$f"; head -c 60 /dev/zero | tr '\0' '\377'; printf '\000\000\300\177\020'; } >"$S/run/$n"
    { printf '\000'; cat "$f"; } >"$S/file/0-$n"
    { printf '\001'; cat "$f"; } >"$S/file/1-$n"
done
find tests/models -name '*.npy' -size -64k -exec cp {} "$S/npy/" \;
find tests/models examples tests/fuzz/regress -name '*.onnx' -size -64k -exec cp {} "$S/onnx/" \;
seeds() { case $1 in load) echo tests/fuzz/corpus ;; serve_request) echo tests/fuzz/serve_seeds ;; *) echo "$S/$1" ;; esac; }

one() {
    local t=$1
    mkdir -p "$B/corpus-$t"
    "$B/fuzz_$t" -max_total_time="$SECONDS_EACH" -print_final_stats=1 -rss_limit_mb=2048 -max_len=65536 \
        -timeout=30 -artifact_prefix="$B/artifacts/$t-" "$B/corpus-$t" "$(seeds "$t")" >"$B/$t.log" 2>&1
}

fail=0
if [ "$MODE" = parallel ]; then
    pids=()
    for t in "$@"; do one "$t" & pids+=($!); done
    for i in "${!pids[@]}"; do wait "${pids[$i]}" || fail=1; done
else
    for t in "$@"; do one "$t" || fail=1; done
fi
total=0
for t in "$@"; do
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$B/$t.log" | tail -n1)
    r=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$B/$t.log" | tail -n1)
    # sanitizer reports ("==N==ERROR: AddressSanitizer"), libFuzzer's own ("==N== ERROR: libFuzzer:
    # out-of-memory", timeouts, leaks), signals, UBSan
    crash=$(grep -cE '^==[0-9]+== ?ERROR|deadly signal|runtime error' "$B/$t.log")
    printf 'fuzz %-5s %10s executions (%s/s), %s crash/OOM/timeout reports\n' "$t" "${n:-?}" "${r:-?}" "$crash"
    total=$((total + ${n:-0}))
    if [ "$crash" != 0 ] || [ -z "$n" ]; then fail=1; tail -n 30 "$B/$t.log"; fi
done
echo "fuzz total: $total executions"
exit $fail
