"""The two libraries: the runtime the package opens at import, the converter opened on first use
(beside the runtime, or MDEPLOY_CONVERT_LIB), and a clear error when the converter is missing."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import mdeploy
from mdeploy import _lib

REPO = pathlib.Path(__file__).resolve().parents[3]
MLP = REPO / "tests" / "models" / "mlp.onnx"


def test_runtime_has_no_converter(tmp_path):
    assert not hasattr(_lib.lib, "mdl_convert_onnx")  # the converter is not in the runtime
    mdeploy.convert(str(MLP), str(tmp_path / "mlp.mdl"))
    conv = _lib.convert_library_path
    assert conv and os.path.basename(conv).startswith("libmdeploy-convert.so")
    if not os.environ.get("MDEPLOY_CONVERT_LIB"):  # found beside the runtime
        assert os.path.dirname(conv) == os.path.dirname(_lib.library_path)
    assert mdeploy.Model(str(tmp_path / "mlp.mdl")).inputs[0].name == "x"


def _in_child(code: str, **env: str) -> subprocess.CompletedProcess:
    e = dict(os.environ, PYTHONPATH=str(REPO / "bindings" / "python"), **env)
    return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True)


def test_missing_converter_is_a_clear_error(tmp_path):
    code = (
        "import mdeploy\n"
        "try:\n"
        f"    mdeploy.convert({str(MLP)!r}, {str(tmp_path / 'x.mdl')!r})\n"
        "except mdeploy.Error as e:\n"
        "    print('status', e.status.name); print(e)\n"
    )
    r = _in_child(code, MDEPLOY_CONVERT_LIB=str(tmp_path / "nowhere.so"))
    assert r.returncode == 0, r.stderr
    assert "status UNSUPPORTED" in r.stdout and "MDEPLOY_CONVERT_LIB" in r.stdout, r.stdout
    assert "nowhere.so" in r.stdout
    # the runtime still works without it
    r = _in_child("import mdeploy; print(mdeploy.library_version())",
                  MDEPLOY_CONVERT_LIB=str(tmp_path / "nowhere.so"))
    assert r.returncode == 0 and r.stdout.strip() == mdeploy.__version__, r.stderr
