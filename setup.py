"""Build script for the Cython extensions in native/.

Each ``native/<name>.pyx`` becomes ``nexus_fast._native.<name>``. The build is forgiving on purpose: when a C
compiler or Cython is missing, or an extension fails to compile, the package still installs and every module
falls back to its pure-Python twin (``nexus-fast version`` says which is in use).

Environment switches:
  NEXUS_FAST_DEBUG=1          line tracing and C assertions (for coverage and debugging the native code)
  NEXUS_FAST_BUILD_ONLY=a,b   compile only these modules (handy while iterating on one .pyx)
  NEXUS_FAST_REQUIRE_NATIVE=1 make a failed compile an error instead of a warning (CI uses this)
"""

from __future__ import annotations

import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
DEBUG = os.environ.get("NEXUS_FAST_DEBUG") == "1"
REQUIRE_NATIVE = os.environ.get("NEXUS_FAST_REQUIRE_NATIVE") == "1"


def _native_names() -> list[str]:
    names = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(HERE, "native", "*.pyx")))
    only = os.environ.get("NEXUS_FAST_BUILD_ONLY")
    if only:
        wanted = {n.strip() for n in only.split(",") if n.strip()}
        names = [n for n in names if n in wanted]
    return names


def _extensions() -> list[Extension]:
    macros: list[tuple[str, str | None]] = []
    cflags = ["-O2", "-Wall", "-Wno-unused-function", "-Wno-unreachable-code"]
    if DEBUG:
        macros += [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]
        cflags = ["-O0", "-g", "-Wall", "-UNDEBUG"]
    return [
        Extension(
            f"nexus_fast._native.{name}",
            [os.path.join("native", f"{name}.pyx")],
            define_macros=macros,
            extra_compile_args=cflags,
        )
        for name in _native_names()
    ]


class ForgivingBuildExt(build_ext):
    """Compile what can be compiled; warn (or fail, with NEXUS_FAST_REQUIRE_NATIVE=1) for the rest."""

    def finalize_options(self) -> None:
        try:
            from Cython.Build import cythonize
        except ImportError:
            if REQUIRE_NATIVE:
                raise
            sys.stderr.write("nexus-fast: Cython not available; installing pure-Python twins only\n")
            self.distribution.ext_modules = []
        else:
            directives = {
                "language_level": "3",
                "boundscheck": DEBUG,
                "wraparound": DEBUG,
                "cdivision": True,
                "embedsignature": True,
                "linetrace": DEBUG,
            }
            self.distribution.ext_modules = cythonize(
                self.distribution.ext_modules or [], compiler_directives=directives, quiet=True
            )
        super().finalize_options()

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            if REQUIRE_NATIVE:
                raise
            sys.stderr.write(f"nexus-fast: could not compile {ext.name} ({exc}); its pure-Python twin will be used\n")


setup(ext_modules=_extensions(), cmdclass={"build_ext": ForgivingBuildExt})
