"""Bundles libmdeploy.so into the package at build time (everything else is in pyproject.toml).

The package itself is pure Python (ctypes); the only binary is the library that ``make`` builds.
It is taken from ``MDEPLOY_LIB`` if set, else from ``build/release/libmdeploy.so`` of the
repository this directory belongs to.  When neither exists the package is built without it and
finds the library at run time (``MDEPLOY_LIB``, or ``make install``'s system path).
"""

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent


def _library():
    env = os.environ.get("MDEPLOY_LIB")
    if env:
        p = Path(env)
        # pip runs this script inside the package directory; a relative path was meant relative
        # to where pip was started, which the shell leaves in PWD.
        if not p.is_absolute() and not p.is_file() and os.environ.get("PWD"):
            p = Path(os.environ["PWD"]) / p
        if not p.is_file():
            sys.exit(f"MDEPLOY_LIB={env}: no such file")
        return p.resolve()
    lib = HERE.parent.parent / "build" / "release" / "libmdeploy.so"
    return lib if lib.is_file() else None


LIB = _library()


class BuildPyWithLibrary(build_py):
    def run(self):
        super().run()
        dst = Path(self.build_lib) / "mdeploy" / "libmdeploy.so"
        if LIB is not None:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(LIB, dst)
            print(f"mdeploy: bundling {LIB}")
        else:
            print(
                "mdeploy: warning: libmdeploy.so not found (run 'make' first, or set MDEPLOY_LIB); "
                "the package will look for it at run time",
                file=sys.stderr,
            )


class LibraryDistribution(Distribution):
    # A bundled .so is platform-specific: tag the wheel for this platform, not "any".
    def has_ext_modules(self):
        return LIB is not None


setup(cmdclass={"build_py": BuildPyWithLibrary}, distclass=LibraryDistribution)
