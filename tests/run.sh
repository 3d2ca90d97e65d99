#!/usr/bin/env bash
# Runs every test binary of the given build directories, then the Python tests, and prints one
# closing line "N passed, N failed".  Exit status 1 if anything failed.
set -u
# sanitizer builds: a model may legitimately ask for more memory than exists; that must be an
# error status, not an ASan abort
export ASAN_OPTIONS="${ASAN_OPTIONS:-allocator_may_return_null=1}"
passed=0; failed=0; failed_names=()
for dir in "$@"; do
    for t in $(find "$dir/tests" -type f -perm -u+x -name 'test_*' | sort); do
        name="${t#$dir/tests/} ($(basename "$dir"))"
        out=$("$t" 2>&1); rc=$?
        p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -n1)
        f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -n1)
        p=${p:-0}; f=${f:-0}
        if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
        printf '%-48s %4d passed %4d failed\n' "$name" "$p" "$f"
        if [ "$f" != 0 ]; then printf '%s\n' "$out" | grep -E "FAIL|ERROR|error|Assert" | head -n 20; failed_names+=("$name"); fi
        passed=$((passed + p)); failed=$((failed + f))
    done
done
if [ -d bindings/python/tests ] && ls bindings/python/tests/test_*.py >/dev/null 2>&1; then
    out=$(MDEPLOY_LIB="$1/libmdeploy.so" PYTHONPATH=bindings/python python3 -m pytest -q bindings/python/tests 2>&1); rc=$?
    printf '%s\n' "$out" | tail -n 3
    p=$(printf '%s\n' "$out" | grep -oE '[0-9]+ passed' | tail -n1 | grep -oE '[0-9]+'); p=${p:-0}
    f=$(printf '%s\n' "$out" | grep -oE '[0-9]+ (failed|error)' | awk '{s+=$1} END {print s+0}')
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
    [ "$f" != 0 ] && failed_names+=("pytest")
    passed=$((passed + p)); failed=$((failed + f))
fi
[ ${#failed_names[@]} -gt 0 ] && echo "failed: ${failed_names[*]}"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
