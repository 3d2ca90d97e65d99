"""Quantized graph inputs and outputs: Model.run takes and returns real (float32) values,
quantizing as ONNX QuantizeLinear does; raw=True returns the stored integers."""
import numpy as np
import pytest

import mdeploy
from conftest import Builder


def _model(dtype, scale, zp):
    b = Builder()
    x = b.tensor("x", dtype, (2, 3))
    y = b.tensor("y", dtype, (3, 2))
    b.quant(x, [scale], [zp])
    b.quant(y, [scale], [zp])
    b.node("RESHAPE", "r", [x], [y])
    b.io([x], [y])
    return mdeploy.Model(b.finish())


def _quantize_oracle(v, scale, zp, lo, hi):
    # Python's round() is round-half-to-even, as ONNX QuantizeLinear specifies
    return [min(hi, max(lo, round(float(e) / scale) + zp)) for e in v]


@pytest.mark.parametrize("dtype,lo,hi,zp", [(np.int8, -128, 127, 3), (np.uint8, 0, 255, 128)])
def test_float_in_float_out(dtype, lo, hi, zp):
    scale = 0.5
    m = _model(dtype, scale, zp)
    assert m.inputs[0].dtype == np.dtype(dtype)
    assert m.inputs[0].quantization.scale == (0.5,)
    assert m.inputs[0].quantization.zero_point == (zp,)
    x = np.array([[0.25, 0.75, -1.25], [1000.0, -1000.0, 2.0]], dtype=np.float32)
    (y,) = m.run(x)
    assert y.dtype == np.float32 and y.shape == (3, 2)
    q = _quantize_oracle(x.ravel(), scale, zp, lo, hi)
    expect = np.array([(v - zp) * scale for v in q], dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(y, expect)
    (raw,) = m.run(x, raw=True)
    assert raw.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(raw.ravel(), np.array(q, dtype=dtype))


def test_integer_input_taken_as_stored():
    m = _model(np.int8, 0.5, 3)
    q = np.arange(-3, 3, dtype=np.int8).reshape(2, 3)
    (raw,) = m.run(q, raw=True)
    np.testing.assert_array_equal(raw.ravel(), q.ravel())


def test_quantized_input_wrong_shape_names_input():
    m = _model(np.int8, 0.5, 3)
    with pytest.raises(mdeploy.Error, match="input 'x' must have shape"):
        m.run(np.zeros((3, 3), np.float32))
