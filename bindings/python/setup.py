"""Bundles the shared libraries into the package at build time (everything else is in pyproject.toml).

The package itself is pure Python (ctypes); its binaries are the two libraries that ``make``
builds: ``libmdeploy.so`` (the runtime) and ``libmdeploy-convert.so`` (the ONNX converter, for
``mdeploy.convert``).  They are taken from:

1. ``MDEPLOY_LIB`` (a path to ``libmdeploy.so``), the converter from ``MDEPLOY_CONVERT_LIB`` or
   beside it;
2. else ``build/release`` of the repository this directory belongs to, built there with
   ``make lib`` first when it is missing.

When neither works the build fails with a message saying what to do; it never makes a package
without its library.  The wheel is tagged ``py3-none-<platform>``: the libraries do not depend on
the Python version (ctypes), only on the platform.  ``make wheel`` builds a portable one (BLAS=0,
then ``auditwheel repair`` bundles libprotobuf-c), see the README.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NAMES = ("libmdeploy.so", "libmdeploy-convert.so")


def _fail(msg):
    sys.exit(f"mdeploy: error: {msg}")


def _env_path(var):
    env = os.environ.get(var)
    if not env:
        return None
    p = Path(env)
    # pip runs this script inside the package directory; a relative path was meant relative
    # to where pip was started, which the shell leaves in PWD.
    if not p.is_absolute() and not p.is_file() and os.environ.get("PWD"):
        p = Path(os.environ["PWD"]) / p
    if not p.is_file():
        _fail(f"{var}={env}: no such file")
    return p.resolve()


def _libraries():
    """The two libraries to bundle, as paths; builds them in the repository when needed."""
    lib = _env_path("MDEPLOY_LIB")
    if lib is not None:
        conv = _env_path("MDEPLOY_CONVERT_LIB") or lib.parent / NAMES[1]
        if not conv.is_file():
            _fail(f"{conv}: no such file (MDEPLOY_LIB={lib}; set MDEPLOY_CONVERT_LIB to the "
                  "converter library, or build both with 'make lib')")
        return lib, conv
    build = REPO / "build" / "release"
    paths = [build / n for n in NAMES]
    if all(p.is_file() for p in paths):
        return paths
    if not (REPO / "Makefile").is_file() or not (REPO / "src").is_dir():
        _fail("libmdeploy.so not found and no mdeploy source tree to build it in: set MDEPLOY_LIB "
              "to the path of a built libmdeploy.so (libmdeploy-convert.so beside it)")
    print(f"mdeploy: building the libraries: make -C {REPO} lib", file=sys.stderr)
    jobs = str(os.cpu_count() or 1)
    r = subprocess.run(["make", "-C", str(REPO), "-j" + jobs, "lib"], stdout=sys.stderr)
    if r.returncode != 0 or not all(p.is_file() for p in paths):
        _fail(f"'make -C {REPO} lib' failed: the build needs a C compiler, protobuf-c and "
              "libonnx-dev (make deps-demo installs them on Debian), or set MDEPLOY_LIB")
    return paths


class BuildPyWithLibrary(build_py):
    def run(self):
        super().run()
        for src, name in zip(_libraries(), NAMES):
            dst = Path(self.build_lib) / "mdeploy" / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)  # the file itself, not a lib*.so -> lib*.so.MAJOR link
            os.chmod(dst, 0o755)
            print(f"mdeploy: bundling {src}", file=sys.stderr)


class LibraryDistribution(Distribution):
    # A bundled .so is platform-specific: tag the wheel for this platform, not "any".
    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    # ctypes only: any Python 3 on this platform ("py3-none-linux_x86_64").
    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(
    cmdclass={"build_py": BuildPyWithLibrary, "bdist_wheel": PlatformWheel},
    distclass=LibraryDistribution,
)
