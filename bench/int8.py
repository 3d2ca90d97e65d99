"""int8 rows of `make bench`: mdeploy int8, mdeploy float and ONNX Runtime int8 side by side.

For each model the float ONNX file is quantized once by ONNX Runtime's own tool
(`onnxruntime.quantization.quantize_static`: QDQ format, int8 activations and weights, weights
per channel, MinMax calibration on 16 inputs made from the benchmark input by seeded noise) into
bench/cache/int8/.  Both runtimes then get that same QDQ file: ORT runs it with its int8 kernels,
mdeploy converts it (QDQ pairs become int8 operators) and runs its int8 kernels.  mdeploy's float
conversion of the float file is the third runner.  The three alternate in blocks (ABCCBA...) in one
process, timed by the same C loop as the float rows.

Targets (issue #10): mdeploy int8 <= 0.8x ORT int8 on the conv models; mdeploy int8 <= 0.5x its own
float on the 150x150 image CNN and MobileNetV2; the int8 file about 4x smaller than the float one.
"""
import os
import subprocess
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, "cache", "int8")

# model name -> target of int8 / ORT int8, target of int8 / own float
TARGETS = {
    "image_classifier": ("≤ 0.8", "≤ 0.5"),
    "mobilenet_v2": ("≤ 0.8", "≤ 0.5"),
    "resnet18": ("≤ 0.8", "report"),
    "mnist_cnn": ("≤ 0.8", "report"),
}


def calibration(inputs, n=16, seed=0):
    """n calibration feeds near the benchmark input: float inputs get seeded noise of the
    input's own spread, integer inputs (ids) are permuted."""
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(n):
        feed = []
        for a in inputs:
            if a.dtype.kind == "f":
                sd = float(np.std(a)) or 1.0
                feed.append((a + rng.normal(0.0, 0.5 * sd, a.shape)).astype(a.dtype))
            else:
                feed.append(rng.permutation(a.ravel()).reshape(a.shape).astype(a.dtype))
        feeds.append(feed)
    return feeds


def quantize_qdq(spec, inputs, in_names):
    """ORT's quantize_static QDQ model of spec['onnx'] (cached)."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    os.makedirs(CACHE, exist_ok=True)
    out = os.path.join(CACHE, spec["name"] + ".qdq.onnx")
    if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(spec["onnx"]):
        return out

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([dict(zip(in_names, f)) for f in calibration(inputs)])

        def get_next(self):
            return next(self.it, None)

    tmp = out + ".tmp.onnx"
    quantize_static(spec["onnx"], tmp, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    os.replace(tmp, out)
    return out


def output_scales(qdq_path):
    """Scale of the DequantizeLinear that produces each graph output (None where none does)."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(qdq_path).graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    scales = []
    for o in g.output:
        n = producer.get(o.name)
        s = None
        if n is not None and n.op_type == "DequantizeLinear" and n.input[1] in init:
            s = float(np.asarray(init[n.input[1]]).ravel()[0])
        scales.append(s)
    return scales


def bench_int8(spec, build, mdl, api, tl, budget, quick, h):
    """One int8 row; h is the harness module (runners, convert, interleaved)."""
    row = dict(name=spec["name"], label=spec["label"])
    inputs = [np.load(f) for f in spec["inputs"]]
    in_names, out_names = h.onnx_io(spec["onnx"])
    t0 = time.perf_counter()
    qdq = quantize_qdq(spec, inputs, in_names)
    row["quantize_s"] = time.perf_counter() - t0
    qspec = dict(spec, onnx=qdq, name=spec["name"] + ".int8")
    mdl_q = h.convert(build, qspec)
    mdl_f = h.convert(build, spec)
    row["bytes"] = dict(float_mdl=os.path.getsize(mdl_f), int8_mdl=os.path.getsize(mdl_q),
                        float_onnx=os.path.getsize(spec["onnx"]), int8_onnx=os.path.getsize(qdq))
    runners = [h.MdlRunner(mdl, mdl_q, inputs), h.MdlRunner(mdl, mdl_f, inputs),
               h.OrtCRunner(api, qdq, in_names, inputs, out_names) if api else
               h.OrtPyRunner(qdq, in_names, inputs, out_names)]
    try:
        got, ref = runners[0].run(), runners[2].first
        scales = output_scales(qdq)
        steps = []
        for g, r, s in zip(got, ref, scales):
            d = float(np.max(np.abs(np.asarray(g, np.float64) - np.asarray(r, np.float64))))
            steps.append(d / s if s else None)
        row["max_steps_vs_ort_int8"] = max((s for s in steps if s is not None), default=None)
        row["max_rel_diff_vs_ort_int8"] = h.agreement(got, ref)
        (mq, mf, oq), rounds = h.interleaved(runners, tl, budget)
    finally:
        for r in runners:
            r.close()
    t_ort, t_own = TARGETS.get(spec["name"], ("report", "report"))
    row.update(mdeploy_int8=mq, mdeploy_float=mf, ort_int8=oq, rounds=rounds,
               ratio_vs_ort_int8=mq["median"] / oq["median"], ratio_vs_float=mq["median"] / mf["median"],
               target_vs_ort_int8=t_ort, target_vs_float=t_own,
               size_ratio=row["bytes"]["float_mdl"] / row["bytes"]["int8_mdl"])
    return row


def _met(value, target):
    if not target.startswith("≤"):
        return ""
    return "yes" if value <= float(target.split()[1]) else "**no**"


def markdown(rows, fmt_ms):
    L = ["\n## int8\n",
         "Each float model quantized by ONNX Runtime's `quantize_static` (QDQ, int8 activations and "
         "per-channel int8 weights, MinMax on 16 seeded inputs); ORT runs that QDQ file, mdeploy converts "
         "the same file.  Three runners interleaved in one process (mdeploy int8, mdeploy float, ORT int8).  "
         "Agreement: max |mdeploy int8 - ORT int8| in quantization steps of the output scale.\n",
         "| model | mdeploy int8 ms | mdeploy float ms | ORT int8 ms | int8 / ORT int8 | target | met "
         "| int8 / own float | target | met | .mdl float / int8 KiB | size ratio | steps vs ORT int8 |",
         "|---|---:|---:|---:|---:|---|---|---:|---|---|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            L.append(f"| {r['label']} | – | – | – | – | | | – | | | | | error: {r['error']} |")
            continue
        b = r["bytes"]
        st = r.get("max_steps_vs_ort_int8")
        L.append(f"| {r['label']} | {fmt_ms(r['mdeploy_int8']['median'])} | {fmt_ms(r['mdeploy_float']['median'])} "
                 f"| {fmt_ms(r['ort_int8']['median'])} | **{r['ratio_vs_ort_int8']:.2f}** | {r['target_vs_ort_int8']} "
                 f"| {_met(r['ratio_vs_ort_int8'], r['target_vs_ort_int8'])} | **{r['ratio_vs_float']:.2f}** "
                 f"| {r['target_vs_float']} | {_met(r['ratio_vs_float'], r['target_vs_float'])} "
                 f"| {b['float_mdl'] / 1024:.1f} / {b['int8_mdl'] / 1024:.1f} | {r['size_ratio']:.2f} "
                 f"| {'–' if st is None else f'{st:.2f}'} |")
    return "\n".join(L) + "\n"
