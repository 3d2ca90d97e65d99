#!/usr/bin/env python3
"""Compares firmware output under QEMU with the host's output of the same program and model.

usage: compare.py TARGET_LOG:HOST_OUT:TOL ...

Each "out I ROW DTYPE HEX..." line of the target must match the host's line for the same output
and row: integer dtypes byte for byte; float32 within TOL (absolute; TOL 0 = the same bits).  The
target must also print every "check ... ok" line, no "FAIL", and end with "PASSED"; the host
must have the same set of output lines.  Any difference fails (exit 1) with the first few.
"""
import math
import struct
import sys


def parse(path):
    outs, checks, lines = {}, [], open(path, errors="replace").read().splitlines()
    for ln in lines:
        f = ln.split()
        if len(f) >= 4 and f[0] == "out":
            outs[(int(f[1]), int(f[2]))] = (f[3], f[4:])
        elif f and f[0] == "check":
            checks.append(ln)
    return outs, checks, lines


def f32(h):
    return struct.unpack("<f", struct.pack("<I", int(h, 16)))[0]


def compare(log, ref, tol):
    errs = []
    t_out, t_checks, t_lines = parse(log)
    h_out, _, _ = parse(ref)
    if not t_lines or t_lines[-1].strip() != "PASSED":
        errs.append("did not finish with PASSED (last line: %r)" % (t_lines[-1] if t_lines else ""))
    errs += ["%s" % c for c in t_checks if " ok " not in c]
    if not h_out:
        errs.append("host output %s has no outputs" % ref)
    if set(t_out) != set(h_out):
        errs.append("outputs/rows differ: target %d lines, host %d" % (len(t_out), len(h_out)))
    worst = 0.0
    for key in sorted(set(t_out) & set(h_out)):
        (td, tv), (hd, hv) = t_out[key], h_out[key]
        if td != hd or len(tv) != len(hv):
            errs.append("output %d row %d: %s[%d] vs host %s[%d]" % (*key, td, len(tv), hd, len(hv)))
            continue
        for k, (a, b) in enumerate(zip(tv, hv)):
            if a == b:
                continue
            if td == "float32" and tol > 0:
                x, y = f32(a), f32(b)
                d = abs(x - y) if math.isfinite(x) and math.isfinite(y) else math.inf
                worst = max(worst, d)
                if d <= tol:
                    continue
                errs.append("output %d row %d [%d]: %.9g vs host %.9g (|diff| %.3g > %g)" % (*key, k, x, y, d, tol))
            else:
                errs.append("output %d row %d [%d]: %s vs host %s (%s must match exactly)" % (*key, k, a, b, td))
    return errs, len(t_out), worst


def self_test(log, ref, tol):
    """The comparison must be able to fail: a copy of the log with one output value changed by
    more than the tolerance (or by one bit, for exact comparison) must be rejected."""
    import os
    import tempfile
    lines = open(log, errors="replace").read().splitlines()
    for i, ln in enumerate(lines):
        f = ln.split()
        if len(f) >= 5 and f[0] == "out":
            v = int(f[4], 16)
            if f[3] == "float32":
                x = f32(f[4])
                v = struct.unpack("<I", struct.pack("<f", x + (0.5 if abs(x) < 1 else x / 2)))[0]
            else:
                v ^= 1
            f[4] = "%0*x" % (len(f[4]), v)
            lines[i] = " ".join(f)
            break
    else:
        return False
    fd, tmp = tempfile.mkstemp(suffix=".log")
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    errs, _, _ = compare(tmp, ref, tol)
    os.unlink(tmp)
    return bool(errs)


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    bad = 0
    log, ref, tol = argv[1].rsplit(":", 2)
    if not self_test(log, ref, float(tol)):
        print("FAIL compare.py self-test: a changed output was not detected")
        bad += 1
    for spec in argv[1:]:
        log, ref, tol = spec.rsplit(":", 2)
        errs, n, worst = compare(log, ref, float(tol))
        name = log.split("build/fw/")[-1]
        if errs:
            bad += 1
            print("FAIL %s vs host (%s):" % (name, "exact" if float(tol) == 0 else "tol %s" % tol))
            for e in errs[:8]:
                print("    " + e)
        else:
            how = "bit-identical" if worst == 0 else "max |diff| %.2g" % worst
            print("ok   %-36s %3d output rows %s to the host" % (name, n, how))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
