"""Writes two small ONNX models whose initializer declares 2^40 floats (4 TiB) but carries 4 bytes
of raw_data / one float_data value: the importer must refuse them by comparing the data with the
shape before it allocates anything (fuzz_onnx found a 1.5 KB file reserving 12.9 GB).
tests/convert/test_convert.c converts them; fuzz-smoke replays them as seeds.
usage: python3 tests/fuzz/regress/make_huge_initializers.py"""
import os
import onnx
from onnx import TensorProto, helper

HERE = os.path.dirname(os.path.abspath(__file__))
dims = [1 << 20, 1 << 20]
for name, fill in (("raw", lambda t: setattr(t, "raw_data", b"\0\0\0\0")),
                   ("typed", lambda t: t.float_data.append(1.0))):
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=dims)
    fill(w)
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "huge",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with open(os.path.join(HERE, f"onnx-initializer-huge-{name}.onnx"), "wb") as f:
        f.write(m.SerializeToString())
