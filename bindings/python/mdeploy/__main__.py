"""``python -m mdeploy run|inspect|convert ...``: the command-line tools, from Python.

The same option names as ``mdeploy-run``, ``mdeploy-inspect`` and ``mdeploy-convert`` (each
subcommand's ``--help`` lists its options; README.md, "Command-line tools", lists the few the C
tools have that these do not)::

    python -m mdeploy convert net.onnx -o net.mdl --input-shape x=64x784 --model-version 1.0
    python -m mdeploy inspect net.mdl [--json] [--verify --public-key release.pub]
    python -m mdeploy run net.mdl -i x.npy -o y.npy [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, NoReturn, Optional

import numpy as np

from . import Error, Model, TensorInfo, __version__, convert, encrypt, inspect_onnx, seal_info, sign


def _shape(shape: Any) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _info_json(t: TensorInfo) -> Dict[str, Any]:
    o: Dict[str, Any] = {"name": t.name, "dtype": str(t.dtype), "shape": list(t.shape), "bytes": t.nbytes}
    if t.quantization is not None:
        q = t.quantization
        o["quant"] = {"count": len(q.scale), "axis": q.axis, "scale0": q.scale[0], "zero_point0": q.zero_point[0]}
    return o


def _onnx_shape(shape: Any) -> str:
    if shape is None:
        return "(no shape)"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _inspect_onnx(args: argparse.Namespace) -> int:
    o = inspect_onnx(args.model)
    if args.json:
        print(json.dumps(o, indent=2))
        return 0
    print(f"model        {args.model} (ONNX)")
    print(f"graph        {o['graph']}")
    print(f"producer     {o['producer']} {o['producer_version']}")
    print(f"opset        {o['opset']} (IR version {o['ir_version']})")
    for k, v in o["metadata"].items():
        print(f"meta         {k} = {v}")
    for kind, key in (("input ", "inputs"), ("output", "outputs")):
        for i, v in enumerate(o[key]):
            print(f"{kind} {i}     {v['name']} {v['type']} {_onnx_shape(v['shape'])}")
    print(f"nodes        {o['nodes']} ({o['initializers']} initializers)")
    print(f"operators    {len(o['operators'])} types, {o['unsupported']} unsupported")
    for op in o["operators"]:
        name = (op["domain"] + ":" if op["domain"] else "") + op["op_type"]
        first = f"'{op['first_node']}'" if op["first_node"] else f"#{op['first_index']}"
        print(f"  {name:<28s} {op['count']:5d}  {op['support']:<12s} first {first}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    """``--verify``: the checks of mdeploy-inspect --verify, one line each, in its words; 1 when
    one fails."""
    keys = args.public_key or []
    failed = 0
    with open(args.model, "rb") as f:
        data = f.read()
    print(args.model)
    info = None
    try:
        info = seal_info(data)
    except Error as e:
        print(f"  digest:    FAILED: {e}")
        failed += 1
    if info is not None:
        if not info["has_seal"]:
            print("  digest:    none (written before format 2.3: the content cannot be checked)")
        else:
            print(f"  digest:    ok (SHA-256 {info['digest']})")
        if not info["signed"]:
            print("  signature: unsigned" + (" (FAILED: public keys were given)" if keys else ""))
            failed += bool(keys)
        elif not keys:
            print(f"  signature: present, not checked (key id {info['key_id']}; give --public-key)")
        else:
            try:
                seal_info(data, keys)
                print(f"  signature: ok (Ed25519, key id {info['key_id']})")
            except Error as e:
                print(f"  signature: FAILED: {e}")
                failed += 1
        low = info["security_counter"] < args.min_counter
        print(f"  counter:   {info['security_counter']}" + (" (FAILED: below --min-counter)" if low else ""))
        failed += low
        enc = ("yes (XChaCha20-Poly1305)" if args.decryption_key else "yes (give --decryption-key to check inside)"
               ) if info["encrypted"] else "no"
        print(f"  encrypted: {enc}")
        if not (info["encrypted"] and not args.decryption_key):
            try:
                m = Model(args.model, public_keys=keys or None, decryption_key=args.decryption_key,
                          min_counter=args.min_counter)
            except Error as e:
                print(f"  load:      FAILED: {e}")
                failed += 1
            else:
                print(f"  load:      ok (version '{m.version}', security counter {m.security_counter})")
                try:
                    r = m.selftest()
                    if not r["cases"]:
                        print("  selftest:  none (the file has no self-test vectors)")
                    else:
                        print(f"  selftest:  passed: {r['passed']} cases, {r['elements']} output elements, max |error| "
                              f"{r['max_abs_error']:.3g} (oracle {r['oracle'] or 'unnamed'}, atol {r['atol']:g}, "
                              f"rtol {r['rtol']:g})")
                except Error as e:
                    print(f"  selftest:  FAILED: {e}")
                    failed += 1
    print("verify: FAILED" if failed else "verify: ok")
    return 1 if failed else 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    if str(args.model).lower().endswith(".onnx"):
        return _inspect_onnx(args)
    if args.verify:
        return _verify(args)
    m = Model(args.model, public_keys=args.public_key or None, decryption_key=args.decryption_key,
              min_counter=args.min_counter)
    tensors = m.tensors
    if args.json:
        md = m.metadata
        fixed = ("name", "version", "producer", "description")
        o: Dict[str, Any] = {k: md[k] for k in fixed}
        o["format"] = "%d.%d" % m.format_version
        o["metadata"] = {k: v for k, v in md.items() if k not in fixed}
        o["inputs"] = [_info_json(t) for t in m.inputs]
        o["outputs"] = [_info_json(t) for t in m.outputs]
        o["tensors"] = [dict(_info_json(t), index=i, constant=t.constant) for i, t in enumerate(tensors)]
        o["operators"] = [
            {"op": n.op, "name": n.name, "attrs": n.attrs, "inputs": list(n.inputs), "outputs": list(n.outputs), "scratch_bytes": n.scratch_bytes}
            for n in m.nodes
        ]
        o["weight_bytes"] = m.weight_bytes
        o["activation_bytes"] = m.activation_bytes
        o["session_bytes"] = m.arena_bytes
        print(json.dumps(o, indent=2))
        return 0

    def tensor(i: int) -> str:
        if i < 0:
            return "-"
        t = tensors[i]
        return f"{'const ' if t.constant else ''}{t.name} {t.dtype} {_shape(t.shape)}"

    md = m.metadata
    print(f"model        {args.model}")
    print(f"name         {m.name}")
    print(f"version      {m.version}")
    print(f"producer     {m.producer}")
    if m.description:
        print(f"description  {m.description}")
    print("format       %d.%d" % m.format_version)
    for k, v in list(md.items())[4:]:
        print(f"meta         {k} = {v}")
    for i, t in enumerate(m.inputs):
        print(f"input  {i}     {t.name} {t.dtype} {_shape(t.shape)}")
    for i, t in enumerate(m.outputs):
        print(f"output {i}     {t.name} {t.dtype} {_shape(t.shape)}")
    nodes = m.nodes
    print(f"operators    {len(nodes)}")
    for i, n in enumerate(nodes):
        line = f"  {i:3d} {n.op:<16s} {n.name:<24s} "
        if n.attrs:
            line += f"[{n.attrs}] "
        line += ", ".join(tensor(k) for k in n.inputs) + " -> " + ", ".join(tensor(k) for k in n.outputs)
        if n.scratch_bytes:
            line += f"  (scratch {n.scratch_bytes} B)"
        print(line)
    print(f"weights      {m.weight_bytes} bytes")
    print(f"arena        {m.activation_bytes} bytes (activations), {m.arena_bytes} bytes for a session")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    if str(args.model).lower().endswith(".onnx"):
        raise SystemExit(f"mdeploy run: '{args.model}' is an ONNX model: convert it first "
                         f"(python -m mdeploy convert {args.model} -o MODEL.mdl)")
    m = Model(args.model, threads=args.threads)
    ins: List[str] = args.input or []
    outs: List[str] = args.output or []
    if len(ins) != len(m.inputs):
        n = len(m.inputs)
        raise SystemExit(f"mdeploy run: the model takes {n} input{'s' if n != 1 else ''}, {len(ins)} given with -i")
    if len(outs) > len(m.outputs):
        n = len(m.outputs)
        raise SystemExit(f"mdeploy run: the model has {n} output{'s' if n != 1 else ''}, {len(outs)} given with -o")
    arrays = [np.load(p, allow_pickle=False) for p in ins]
    # a model with dynamic dims runs at the arrays' shapes (set before the timed run)
    s = m.session(shapes=[a.shape for a in arrays]) if m.dynamic else m.session()
    t0 = time.perf_counter()
    ys = s.run(arrays, copy=False)
    ms = (time.perf_counter() - t0) * 1e3
    assert isinstance(ys, list)
    for path, y in zip(outs, ys):
        np.save(path, y)
    if args.json:
        o = {
            "model": args.model,
            "inputs": [dict(name=t.name, dtype=str(t.dtype), shape=list(t.shape), file=f) for t, f in zip(s.inputs, ins)],
            "outputs": [
                dict(name=t.name, dtype=str(t.dtype), shape=list(t.shape), **({"file": outs[i]} if i < len(outs) else {}))
                for i, t in enumerate(s.outputs)
            ],
            "run_ms": ms,
        }
        print(json.dumps(o, indent=2))
    else:
        print(f"ran {args.model} in {ms:.3f} ms")
        for i, t in enumerate(s.outputs):
            dest = f" -> {outs[i]}" if i < len(outs) else ""
            print(f"output {i} '{t.name}': {t.dtype} {_shape(t.shape)}{dest}")
    return 0


def _human(n: int) -> str:
    if n >= 10 * 1024 * 1024:
        return f"{n / (1024.0 * 1024.0):.1f} MiB"
    if n >= 10 * 1024:
        return f"{n / 1024.0:.1f} KiB"
    return f"{n} B"


def _top1(mdl_path: str, x: str, y: str) -> "tuple[float, int]":
    """Top-1 accuracy (%) and rows of a .mdl file on X.npy with integer labels Y.npy, run by the
    runtime (mdl_eval_top1: what mdeploy-convert --eval X Y measures)."""
    import ctypes

    from . import _lib
    from ._security import _error

    with open(mdl_path, "rb") as f:
        data = f.read()
    acc, rows, err = ctypes.c_double(), ctypes.c_int64(), _lib.mdl_error()
    st = _lib.convert_lib().mdl_eval_top1(data, len(data), os.fsencode(x), os.fsencode(y), ctypes.byref(acc),
                                          ctypes.byref(rows), ctypes.byref(err))
    if st:
        raise _error(err, st)
    return acc.value, rows.value


def _eval_lines(args: argparse.Namespace, x: str, y: str) -> List[str]:
    """mdeploy-convert's --eval X Y lines (tools/mdeploy-convert.c, eval_and_report): top-1 of
    the float source (converted as it is) and of the written model; with --prune-sensitivity,
    of float conversions with one prunable layer pruned at each of a few sparsities."""
    import tempfile

    lines: List[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        fl = os.path.join(tmp, "float.mdl")
        fr = convert(args.onnx, fl, sparse_density=1.0)  # every prunable layer listed
        before, rows = _top1(fl, x, y)
        after, rows = _top1(args.output, x, y)
        lines.append(f"  eval on {rows} rows: top-1 float source {before:.2f}%, converted {after:.2f}% "
                     f"({after - before:+.2f} points)")
        if args.prune_sensitivity:
            levels = (0.5, 0.7, 0.8, 0.9, 0.95)
            lines.append("  prune sensitivity (top-1 %, float, that layer alone pruned):")
            lines.append(f"  {'layer':44s}" + "".join(f" {100 * v:7.0f}%" for v in levels))
            for layer in fr.pruning:
                name = layer["name"]
                if "," in name or "=" in name:
                    continue  # not expressible as NAME=S
                accs = []
                for v in levels:
                    pm = os.path.join(tmp, "pruned.mdl")
                    convert(args.onnx, pm, prune_layers={name: v})
                    accs.append(_top1(pm, x, y)[0])
                lines.append(f"  {name:44s}" + "".join(f" {a:7.2f}%" for a in accs))
    return lines


def _cmd_convert(args: argparse.Namespace) -> int:
    eval_xy = args.eval if args.eval and len(args.eval) == 2 else None
    if args.prune_sensitivity and not eval_xy:
        raise SystemExit("mdeploy convert: --prune-sensitivity needs --eval X.npy Y.npy (rows and labels)")
    if not args.quantize and args.eval and not eval_xy:
        raise SystemExit("mdeploy convert: quantization options need --quantize int8")
    quant: dict = {}
    if args.quantize:
        ev = None
        if args.eval:
            if len(args.eval) > 2:
                raise SystemExit("--eval takes X.npy [Y.npy]")
            ev = (args.eval[0], args.eval[1]) if len(args.eval) == 2 else args.eval[0]
        quant = dict(quantize=args.quantize, calibration=args.calibration,
                     calibration_method=args.calibration_method, percentile=args.percentile,
                     per_tensor=args.per_tensor, float_ops=args.float_ops, eval=ev,
                     max_accuracy_drop=args.max_accuracy_drop, max_output_error=args.max_output_error)
        if args.max_calibration_rows is not None:
            quant["max_calibration_rows"] = args.max_calibration_rows
    prune: dict = {}
    for spec in args.prune or []:
        kind, _, value = spec.partition(":")
        key = {"magnitude": "prune", "channels": "prune_channels"}.get(kind)
        try:
            if key is None:
                raise ValueError(spec)
            prune[key] = float(value)
        except ValueError:
            raise SystemExit(f"--prune '{spec}': expected magnitude:S or channels:S with S in [0, 1)") from None
    if args.prune_layer:
        layers = {}
        for item in args.prune_layer:
            name, eq, value = item.rpartition("=")
            try:
                layers[name] = float(value)
            except ValueError:
                name = ""
            if not eq or not name:
                raise SystemExit(f"--prune-layer '{item}': expected NAME=S")
        prune["prune_layers"] = layers
    if args.sparse_density is not None:
        prune["sparse_density"] = args.sparse_density
    metadata = _metadata_args(args.metadata) or {}
    if args.security_counter is not None:
        metadata["security_counter"] = args.security_counter  # as mdeploy-convert: a metadata key
    selftest: dict = {}
    if args.selftest_from:
        selftest["selftest_inputs"] = _named_npy(args.selftest_from)
        if args.selftest_expect:
            selftest["selftest_expected"] = _named_npy(args.selftest_expect)
        if args.selftest_oracle:
            selftest["selftest_oracle"] = args.selftest_oracle
        if args.selftest_tolerance:
            atol, _, rtol = args.selftest_tolerance.partition(",")
            selftest["selftest_tolerance"] = (float(atol), float(rtol) if rtol else 1e-3)
    elif args.selftest_expect or args.selftest_oracle or args.selftest_tolerance:
        raise SystemExit("--selftest-expect / --selftest-oracle / --selftest-tolerance need --selftest-from")
    r = convert(
        args.onnx,
        args.output,
        input_shapes=args.input_shape or None,
        max_shapes=args.max_shape or None,
        name=args.name,
        model_version=args.model_version,
        description=args.description,
        metadata=metadata or None,
        **quant,
        **prune,
        **selftest,
    )
    if args.sign or args.encrypt:
        _seal_file(args.output, args.sign, args.encrypt)
    try:
        eval_lines = _eval_lines(args, *eval_xy) if eval_xy else []
    except Exception:
        os.remove(args.output)  # no output file on failure, as mdeploy-convert
        raise
    pruned = bool(prune.get("prune") or prune.get("prune_layers")) or any(
        l["storage"] == "sparse" for l in r.pruning)
    if args.report:
        doc = dict(r.quant or {})
        if pruned:
            doc["pruning"] = r.pruning
        with open(args.report, "w") as f:
            json.dump(doc, f, indent=1)
    if not args.quiet:
        print(f"{args.onnx} -> {args.output} (opset {r.opset})")
        print(
            f"  ops:     {r.onnx_nodes} ONNX nodes -> {r.nodes_out} operators "
            f"({r.folded} folded, {r.fused} fused, {r.removed} removed)"
        )
        print(f"  weights: {_human(r.weight_bytes)}   arena: {_human(r.arena_bytes)}   file: {_human(r.file_bytes)}")
        if r.nsymbols:
            print(f"  dynamic: {r.dynamic} (kept symbolic; sessions choose them, --input-shape fixes them)")
        q = r.quant
        if q is not None:
            print(f"  quantize: int8, {q['method']} calibration on {q['calibration_rows']} rows; "
                  f"{q['int8_ops']} int8 ops, {q['float_ops']} float/hybrid; "
                  f"{_human(q['float_bytes'])} -> {_human(q['int8_bytes'])}")
            if q["int8_accuracy"] is not None:
                print(f"  top-1:    float {q['float_accuracy']:.2f}%  int8 {q['int8_accuracy']:.2f}%")
            print(f"  output:   max |int8 - float| {q['max_abs_error']:.4g}")
            if q["budget"]:
                b = q["budget"]
                print(f"  budget:   {b['kind']} <= {b['limit']}: {'met' if b['met'] else 'NOT met'}; "
                      f"kept float: {', '.join(b['kept_float']) or 'none'}")
        if pruned:
            print(f"  {'prunable layer':44} {'op':15} {'weights':>9} {'sparsity':>9} {'blocks':>8} {'storage':10} {'bytes':>10}")
            for l in r.pruning:
                print(f"  {l['name']:44} {l['op']:15} {l['weights']:9d} {100 * l['sparsity']:8.1f}% "
                      f"{100 * l['block_density']:7.1f}% {l['storage']:10} {_human(l['bytes']):>10}")
        for line in eval_lines:
            print(line)
    return 0


def _seal_file(path: str, sign_key: Optional[str], enc_key: Optional[str]) -> None:
    """Signs and/or encrypts the written model as mdeploy-convert does (tools/seal_util.h: the
    inner file signed, encrypted, the outer one signed); no output file on failure."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        if sign_key:
            data = sign(data, sign_key)
        if enc_key:
            data = encrypt(data, enc_key)
            if sign_key:
                data = sign(data, sign_key)
    except Exception:
        os.remove(path)
        raise
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)


def _named_npy(items: List[str]) -> Any:
    """``[NAME=]X.npy`` options: a dict by input/output name when named, else a list in order."""
    named = [item.partition("=") for item in items]
    if all(eq for _, eq, _ in named):
        return {name: np.load(path, allow_pickle=False) for name, _, path in named}
    if any(eq for _, eq, _ in named):
        raise SystemExit("--selftest-from / --selftest-expect: name all of them (NAME=X.npy) or none")
    return [np.load(item, allow_pickle=False) for item in items]


def _metadata_args(items: Optional[List[str]]) -> Optional[Dict[str, str]]:
    """``--metadata KEY=VALUE`` options as a dict (split at the first '=')."""
    if not items:
        return None
    out: Dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--metadata '{item}': expected KEY=VALUE")
        out[key] = value
    return out


class _Parser(argparse.ArgumentParser):
    """A bad command line: the message (naming the option) and where the help is; exit status 2,
    as the C tools (tools/tool_util.h)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m mdeploy", description="mdeploy command-line tools (Python front end)")
    p.add_argument("--version", action="version", version=f"mdeploy {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    version = dict(action="version", version=f"mdeploy {__version__}", help="print the version and exit")
    r = sub.add_parser("run", help="run a model on .npy inputs, write .npy outputs",
                       epilog="example: python -m mdeploy run net.mdl -i x.npy -o y.npy --threads 2 --json")
    r.add_argument("model")
    r.add_argument("-i", "--input", action="append", metavar="IN.npy", help="an input, in the model's order (repeat for each input)")
    r.add_argument("-o", "--output", action="append", metavar="OUT.npy", help="write an output, in the model's order (repeatable)")
    r.add_argument("--threads", type=int, default=1, metavar="N", help="threads for the run (1..64, default 1; same results as 1)")
    r.add_argument("--json", action="store_true", help="print shapes, dtypes and the run time as JSON")
    r.add_argument("--version", **version)
    r.set_defaults(fn=_cmd_run)

    i = sub.add_parser("inspect", help="metadata, inputs/outputs, operators, sizes",
                       epilog="example: python -m mdeploy inspect net.mdl --json")
    i.add_argument("model")
    i.add_argument("--json", action="store_true", help="print it all as JSON")
    i.add_argument("--verify", action="store_true",
                   help="check digest, signature (with --public-key), counter, load and self-test; exit status 1 when one fails")
    i.add_argument("--public-key", action="append", metavar="PUB", help="an Ed25519 public key file (repeatable): the model must be signed by one")
    i.add_argument("--decryption-key", metavar="KEY", help="open an encrypted model with this key file")
    i.add_argument("--min-counter", type=int, default=0, metavar="N", help="refuse a security counter below N (anti-rollback)")
    i.add_argument("--version", **version)
    i.set_defaults(fn=_cmd_inspect)

    c = sub.add_parser("convert", help="convert an ONNX model to .mdl",
                       epilog="example: python -m mdeploy convert net.onnx -o net.mdl --input-shape x=1x3x224x224")
    c.add_argument("onnx")
    c.add_argument("-o", "--output", required=True, metavar="OUT.mdl", help="the .mdl file to write (required)")
    c.add_argument("--input-shape", action="append", metavar="NAME=1x3x224x224", help="fix a dynamic input shape (repeatable)")
    c.add_argument("--max-shape", action="append", metavar="NAME=64x512", help="upper bounds of an input's dynamic dims (repeatable)")
    c.add_argument("--name", metavar="N", help="model name (default: the ONNX graph name)")
    c.add_argument("--model-version", metavar="V", help="model version (default: the ONNX model_version)")
    c.add_argument("--description", metavar="D", help="description (default: the ONNX doc_string)")
    c.add_argument("--metadata", action="append", metavar="KEY=VALUE", help="extra metadata (repeatable)")
    c.add_argument("--quantize", choices=["int8"], help="post-training quantization")
    c.add_argument("--calibration", metavar="DATA", help=".npy, .npz or a directory of them")
    c.add_argument("--calibration-method", default="minmax", choices=["minmax", "percentile", "entropy"],
                   help="minmax (default), percentile or entropy (KL)")
    c.add_argument("--percentile", type=float, metavar="P", help="percentile method's clip point (default 99.99)")
    c.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor (default: per channel)")
    c.add_argument("--float-ops", metavar="NAME,...", help="keep these nodes in float")
    c.add_argument("--eval", nargs="+", metavar="X.npy [Y.npy]",
                   help="measure on these rows (Y: integer labels); with Y also the top-1 of the float source and the converted model")
    c.add_argument("--max-accuracy-drop", type=float, metavar="P", help="keep sensitive layers float until top-1 drops at most P points")
    c.add_argument("--max-output-error", type=float, metavar="E", help="same, until max |int8 - float| <= E")
    c.add_argument("--max-calibration-rows", type=int, metavar="N", help="use at most N calibration rows")
    c.add_argument("--prune", action="append", metavar="magnitude:S|channels:S",
                   help="prune the prunable layers' 8x1 weight blocks to sparsity S, or remove the share S of their channels")
    c.add_argument("--prune-layer", action="append", metavar="NAME=S", help="prune one layer at S (repeatable)")
    c.add_argument("--sparse-density", type=float, metavar="D", help="store sparse below this block density (0: never)")
    c.add_argument("--prune-sensitivity", action="store_true",
                   help="with --eval X Y: top-1 per prunable layer pruned alone at 0.5, 0.7, 0.8, 0.9 and 0.95")
    c.add_argument("--report", metavar="FILE.json", help="write the conversion report (quantization, pruning)")
    c.add_argument("--selftest-from", action="append", metavar="[NAME=]X.npy", help="an input of the stored self-test cases (repeatable)")
    c.add_argument("--selftest-expect", action="append", metavar="[NAME=]Y.npy", help="expected outputs from an outside oracle")
    c.add_argument("--selftest-oracle", metavar="NAME", help="the oracle's name stored in the file")
    c.add_argument("--selftest-tolerance", metavar="ATOL[,RTOL]", help="default 1e-4,1e-3 (0,0: exact)")
    c.add_argument("--security-counter", metavar="N", help="anti-rollback counter")
    c.add_argument("--sign", metavar="KEY", help="sign with this Ed25519 secret key file (mdeploy-keygen)")
    c.add_argument("--encrypt", metavar="KEY", help="encrypt the model at rest (mdeploy-keygen --encryption)")
    c.add_argument("-q", "--quiet", action="store_true", help="no summary")
    c.add_argument("--version", **version)
    c.set_defaults(fn=_cmd_convert)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except Error as e:
        print(f"mdeploy {args.command}: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:  # unreadable or non-.npy input, unwritable output
        print(f"mdeploy {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
