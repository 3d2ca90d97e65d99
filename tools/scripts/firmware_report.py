#!/usr/bin/env python3
"""Writes the firmware size table (bench/results/firmware.md) from the linker maps and QEMU logs.

usage: firmware_report.py BUILD_DIR "TARGETS" "MODELS" > bench/results/firmware.md

Sizes come from the input sections the linker kept (BUILD_DIR/TARGET/MODEL.map, after
--gc-sections), grouped by who they belong to: the mdeploy runtime (members of
libmdeploy-core.a), the model and its inputs (NAME_model / NAME_inputK arrays), the example
application (main.c) and the C library (picolibc, libm, libgcc, crt0).  Arena, loader memory and
peak stack are what the image printed under QEMU (BUILD_DIR/TARGET/MODEL.log).
"""
import re
import subprocess
import sys
from collections import defaultdict

KINDS = (("text", (".text", ".init", ".ARM.exidx")), ("rodata", (".rodata", ".srodata")),
         ("data", (".data", ".sdata", ".tdata")), ("bss", (".bss", ".sbss", ".tbss", "COMMON")))

# runtime object -> part of the runtime it belongs to
PARTS = {
    "fb.o": "loader: FlatBuffers verifier + reader", "mdl_format.o": "loader: FlatBuffers verifier + reader",
    "model.o": "loader: model, graph check, memory plan", "graph.o": "loader: model, graph check, memory plan",
    "session.o": "session + executor", "util.o": "status, dtype/op names, allocators",
    "resolver.o": "operator resolver", "quant.o": "quantization math",
    "registry.o": "kernel: shared float checks (registry.c; its table is not linked)",
}


# What each size change saved on the digits int8 runtime (Cortex-M4 .text, bytes), measured when
# it was made (issue #14); the report lists them with the current breakdown.
CHANGES = [
    ("int8 Transpose -> Reshape -> FullyConnected folded into the dense weights by the QDQ pass "
     "(no transpose kernel or node; outputs bit-identical)", 2576),
    ("`MDL_NO_DYNAMIC`: no symbol, resize or computed-shape code", 2712),
    ("`MDL_SMALL_CODE`: the int8 conv row path and im2col's contiguous runs left out", 1868),
    ("load planner as a registration: weight widening and the arena planner linked only for models "
     "that need them", 946),
    ("conv geometry in `ptrdiff_t` with overflow checks (no `int64_t` on 32-bit cores)", 692),
    ("int8 max and average pool runs split; quantize, dequantize, softmax and FC indices in "
     "`ptrdiff_t`", 812),
    ("option fields read from a descriptor table instead of a switch per kind", 462),
    ("int8 GEMM reference, packing and checks, int8 conv im2col, reshape: indices in `ptrdiff_t`",
     634),
    ("the planner's lifetime update a function instead of a macro expanded four times", 198),
]


def kind_of(sec):
    for kind, prefixes in KINDS:
        if any(sec == p or sec.startswith(p + ".") or sec.startswith(p + "$") for p in prefixes):
            return kind
    return None


def owner_of(sec, path, model):
    m = re.search(r"libmdeploy-core\.a\((\w+)\.o\)", path)
    if m:
        return "runtime", m.group(1) + ".o"
    if re.search(r"\.%s_(model|input\d+)$" % re.escape(model), sec):
        return "model", sec.rsplit(".", 1)[-1]
    if re.search(r"/tmp/|main\.o|cc\w+\.o", path) and "lib" not in path.rsplit("/", 1)[-1][:3]:
        return "app", "main.c"
    return "libc", re.sub(r".*/", "", path)


FUNCS = {}  # map path -> [(bytes, function, object)] of the runtime's kept .text sections


def parse_map(path, model):
    """{(owner, kind): bytes}, {runtime object: {kind: bytes}}"""
    sizes, objs = defaultdict(int), defaultdict(lambda: defaultdict(int))
    funcs = FUNCS.setdefault(path, [])
    lines = open(path).read().split("Linker script and memory map", 1)[1].splitlines()
    pending = None
    one = re.compile(r"^ (\S+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
    cont = re.compile(r"^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
    for ln in lines:
        sec = size = src = None
        m = one.match(ln)
        if m and not ln.startswith(" *fill*"):
            sec, size, src = m.group(1), int(m.group(3), 16), m.group(4)
        elif pending and cont.match(ln):
            m = cont.match(ln)
            sec, size, src = pending, int(m.group(2), 16), m.group(3)
        pending = None
        if sec is None:
            m = re.match(r"^ (\.\S+)$", ln)
            if m:
                pending = m.group(1)
            continue
        kind = kind_of(sec)
        if not kind or not size:
            continue
        owner, obj = owner_of(sec, src, model)
        sizes[(owner, kind)] += size
        if owner == "runtime":
            objs[obj][kind] += size
            if kind == "text":
                funcs.append((size, sec.split(".", 2)[-1] if sec.startswith(".text.") else sec, obj))
    return sizes, objs


def parse_log(path):
    d = {}
    try:
        for ln in open(path, errors="replace"):
            for k, v in re.findall(r"(\w+)=(\d+)", ln) if ln.startswith(("ram ", "model ")) else []:
                d[k] = int(v)
    except OSError:
        pass
    return d


def kb(n):
    return "%.1f" % (n / 1024.0)


def main(argv):
    build, targets, models = argv[1], argv[2].split(), argv[3].split()
    out = []
    w = out.append
    w("# Firmware sizes per target and model")
    w("")
    w("Written by `make firmware-report` from the linker maps and the images' own output under QEMU.")
    w("Every image: `-Os`, the runtime core built with `MDL_NO_ERROR_STRINGS MDL_NO_MALLOC")
    w("MDL_NO_DEFAULT_KERNELS MDL_MAX_NODE_IO=16 MDL_NO_DYNAMIC MDL_SMALL_CODE`, `-ffunction-sections")
    w("-fdata-sections -Wl,--gc-sections` (only the kernels the model registers are linked: checked at")
    w("link; the load planner only where registered, `text_s8`), picolibc with")
    w("integer-only printf over semihosting, the model in flash (used in place), no heap (`malloc`/`free`")
    w("absent from every image: checked at link).  Cortex-M4: `-mcpu=cortex-m4 -mfpu=fpv4-sp-d16")
    w("-mfloat-abi=hard` on QEMU `mps2-an386`; Cortex-M7: `-mcpu=cortex-m7 -mfpu=fpv5-d16` on `mps2-an500`;")
    w("RV32: `-march=rv32imac -mabi=ilp32` (soft float) on QEMU `virt`.")
    w("")
    w("Columns (bytes): **runtime .text** = mdeploy's own code kept in the image (kernels, loader,")
    w("session); **.text/.rodata/.data/.bss** = the whole image (runtime + application + model + C")
    w("library); **model** = the `.mdl` bytes in flash (in `.rodata`); **arena** = the static session")
    w("arena, exactly `mdl_model_arena_size()`; **loader** = memory `mdl_model_load_buffer` took from")
    w("its bump allocator (model record, tensor/node tables, plan, packed int8 parameters, weights")
    w("widened at load) / the static buffer reserved for it (mdeploy-embed's host-measured bound);")
    w("**stack** = peak stack by painting; **RAM** = .data + .bss + stack, where .bss holds the arena")
    w("and the loader buffer: nothing else is allocated.")
    w("")
    w("| target | model | runtime .text | .text | .rodata | .data | .bss | model | arena | loader used / reserved | stack | RAM |")
    w("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    details = {}
    for t in targets:
        for mname in models:
            mp = "%s/%s/%s.map" % (build, t, mname)
            try:
                sizes, objs = parse_map(mp, mname)
            except OSError:
                continue
            log = parse_log("%s/%s/%s.log" % (build, t, mname))
            tot = {k: sum(v for (o, kk), v in sizes.items() if kk == k) for k, _ in KINDS}
            rt = sizes[("runtime", "text")]
            ram = tot["data"] + tot["bss"] + log.get("stack", 0)
            w("| %s | %s | %d | %d | %d | %d | %d | %d | %d | %d / %d | %d | %d |" % (
                t, mname, rt, tot["text"], tot["rodata"], tot["data"], tot["bss"],
                sizes[("model", "rodata")], log.get("arena", 0), log.get("load", 0),
                _reserved(mp), log.get("stack", 0), ram))
            details[(t, mname)] = (sizes, objs)
    w("")
    if ("cortex-m4", "digits_s8") in details:
        rt = details[("cortex-m4", "digits_s8")][0][("runtime", "text")]
        w("The runtime's own code for the digits int8 model on Cortex-M4 (`-Os`): **%d bytes of .text"
          " (%s KiB)**; the goal is below 20 KiB (20480 bytes): %s.  The breakdown below says where it goes."
          % (rt, kb(rt), ("**met** (%d bytes to spare)" % (20480 - rt)) if rt < 20 * 1024 else "**not met**"))
        w("")
    for t, mname in (("cortex-m4", "digits_s8"), ("cortex-m4", "digits_f32")):
        if (t, mname) not in details:
            continue
        sizes, objs = details[(t, mname)]
        w("## What the runtime costs: %s on %s" % (mname, t))
        w("")
        w("The runtime's own code and constants in this image, by source file (kept input sections of")
        w("`libmdeploy-core.a`); everything else in the image is the application, the C library and the")
        w("model itself:")
        w("")
        w("| part | file | .text | .rodata | .data+.bss |")
        w("|---|---|--:|--:|--:|")
        rows = []
        for obj, k in objs.items():
            part = PARTS.get(obj, "kernel")
            rows.append((part, obj, k["text"], k["rodata"], k["data"] + k["bss"]))
        rows.sort(key=lambda r: (r[0] != "kernel", r[0], -r[2]))
        for r in rows:
            w("| %s | %s | %d | %d | %d |" % r)
        rt = sum(r[2] for r in rows)
        w("| **runtime total** | | **%d** (%s KiB) | %d | %d |" % (rt, kb(rt), sum(r[3] for r in rows),
                                                               sum(r[4] for r in rows)))
        w("")
        groups = defaultdict(int)
        for r in rows:
            groups[r[0].split(":")[0]] += r[2]
        w("By part: " + ", ".join("%s %d B" % (g, v) for g, v in sorted(groups.items(), key=lambda kv: -kv[1])) + ".")
        w("")
        other = [("application (examples/firmware/main.c)", "app"), ("C library: picolibc, libm, libgcc, crt0", "libc"),
                 ("model bytes and fixed inputs", "model")]
        top = sorted(FUNCS.get("%s/%s/%s.map" % (build, t, mname), []), reverse=True)[:16]
        if top:
            w("The largest functions (kept `.text` sections; static helpers are inlined into them):")
            w("")
            w("| function | file | .text |")
            w("|---|---|--:|")
            for size, fn, obj in top:
                w("| `%s` | %s | %d |" % (fn, obj, size))
            w("")
        w("| rest of the image | .text | .rodata | .data+.bss |")
        w("|---|--:|--:|--:|")
        for label, o in other:
            w("| %s | %d | %d | %d |" % (label, sizes[(o, "text")], sizes[(o, "rodata")],
                                        sizes[(o, "data")] + sizes[(o, "bss")]))
        w("")
    w("## Notes")
    w("")
    w("- How the digits int8 runtime went from 31140 to about 20 KiB (Cortex-M4 `.text`, measured with")
    w("  this report's map parser after each change, in order; later changes were measured on top of")
    w("  the earlier ones):")
    w("")
    w("  | change | saved |")
    w("  |---|--:|")
    for what, saved in CHANGES:
        w("  | %s | %d |" % (what, saved))
    w("")
    w("- What is left is mostly what any model needs: the FlatBuffers verifier and reader (`fb.o`,")
    w("  `mdl_format.o`: every offset, vector and table of an untrusted file is checked), the graph")
    w("  check and the stored plan's verification (`graph.o`), and each kernel's validation (`prepare`")
    w("  runs at load on the target too).  The int8 convolution carries the im2col gather, the GEMM")
    w("  driving and the depthwise loop that grouped convolutions need.")
    w("- Still on the table (measured, not done): the rest of `conv_int8.c`'s index arithmetic in")
    w("  `ptrdiff_t` like `im2col` (`run_common`, the depthwise loop: about 640 B more; left for after")
    w("  the concurrent x86 int8 work in that file), and the pooling window in `ptrdiff_t` (its argument")
    w("  record is shared with the x86 float pooling: about 400 B).")
    w("- The text classifier as ONNX Runtime quantizes it (`quantize_dynamic`) keeps int8 weights in")
    w("  flash but the runtime widens the LSTM's (and the last layer's) weights to float at load (there")
    w("  is no int8 LSTM kernel): ~289 KiB of its ~295 KiB loader memory, plus a 205 KiB LSTM scratch in the")
    w("  arena.  An int8 LSTM kernel would take its RAM from ~565 KiB to tens of KiB.")
    w("- `loader reserved` is mdeploy-embed's host measurement (64-bit records), an upper bound for the")
    w("  32-bit targets; `loader used` is what the target's bump allocator handed out.")
    w("- Stack: kernel contexts hold `MDL_MAX_NODE_IO`-sized arrays; firmware builds set it to 16")
    w("  (peak stack ~8.3 KiB -> ~3.5 KiB).")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def _reserved(mp):
    """Size of the static loader buffer (load_heap in main.c) from the map's symbol sizes."""
    elf = mp[:-4] + ".elf"
    for nm in ("arm-none-eabi-nm", "riscv64-unknown-elf-nm"):
        try:
            out = subprocess.run([nm, "-S", elf], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            continue
        for ln in out.splitlines():
            f = ln.split()
            if len(f) == 4 and f[3] == "load_heap":
                return int(f[1], 16)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
