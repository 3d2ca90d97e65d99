#!/usr/bin/env python3
"""Checks that a firmware image links exactly the kernels its model registers.

usage: check_kernels.py NM IMAGE.elf NAME.h include/mdeploy/resolver.h

NAME.h (from mdeploy-embed) lists the model's kernels in NAME_OPS(X) as X(OPERATOR, DTYPE);
resolver.h's MDL_KERNEL_MAP names the kernel object of each (mdl__<kernel>).  The image's symbol
table must hold the kernel objects of the registered pairs and no other kernel object: anything
more means the full table (or another kernel) was linked in.
"""
import re
import subprocess
import sys


def main(nm, elf, header, resolver_h):
    kmap = {}
    for op, dt, k in re.findall(r"X\((\w+), (\w+), (\w+)\)", open(resolver_h).read()):
        kmap[(op, dt)] = "mdl__" + k
    ops = re.search(r"_OPS\(X\)((?:\s*\\\s*X\(\w+, \w+\))*)", open(header).read())
    want = {kmap[p] for p in re.findall(r"X\((\w+), (\w+)\)", ops.group(1))}
    syms = set(subprocess.run([nm, elf], capture_output=True, text=True, check=True).stdout.split())
    have = {k for k in set(kmap.values()) if k in syms}
    if have != want:
        print("%s: kernels linked %s, registered %s" % (elf, sorted(have), sorted(want)))
        if "kernels" in syms or "mdl__kernel_find" in syms:
            print("%s: the full kernel table is linked" % elf)
        return 1
    if "mdl__kernel_find" in syms:
        print("%s: the full kernel table (mdl__kernel_find) is linked" % elf)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
