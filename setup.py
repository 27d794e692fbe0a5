"""Build script: only the list of compiled kernels lives here; metadata is in pyproject.toml.

The extensions are required. A machine without a C compiler fails the install with a message
that says what to install, instead of producing a package that would run without its kernels.

Environment:
  RAFTCORE_DEBUG=1   compile with extra checks (bounds checks on, assertions, -O0 -g),
                     the equivalent of asyncpg's PG_DEBUG / uvloop's UVLOOP_DEBUG.
  RAFTCORE_OPT=-O0   the optimization level of a release build (default -O2; one of -O0,
                     -O1, -O2, -O3, -Os). Only the packaging tests lower it: they check what
                     a wheel holds and that it installs, and -O0 compiles about 4x faster.
"""

import os
import runpy
import sys

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("RAFTCORE_DEBUG", "") not in ("", "0")
OPT = os.environ.get("RAFTCORE_OPT", "") or "-O2"
if OPT not in ("-O0", "-O1", "-O2", "-O3", "-Os"):
    sys.exit(f"raftcore: RAFTCORE_OPT must be one of -O0, -O1, -O2, -O3, -Os, not {OPT!r}")

# compiled modules are private (raftcore._crc, ...); raftcore.crc etc. are the public facades
KERNELS = ["_crc", "_framing", "_index", "_phi", "_wal"]
# RAFTCORE_ONLY=_phi,_index builds a subset (a developer's shortcut; releases build all)
if os.environ.get("RAFTCORE_ONLY"):
    KERNELS = [k for k in KERNELS if k in os.environ["RAFTCORE_ONLY"].split(",")]


def _flags():
    if sys.platform == "win32":
        return ["/O2"], []
    if DEBUG:
        return ["-O0", "-g3", "-Wall", "-UNDEBUG", "-DRAFTCORE_DEBUG=1"], []
    return [OPT, "-Wall", "-Wno-unused-function", "-Wno-unreachable-code"], []


compile_args, link_args = _flags()

extensions = [
    Extension(
        f"raftcore.{name}",
        [f"src/raftcore/{name}.pyx"],
        include_dirs=["src/raftcore/include", numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    for name in KERNELS
]

# pyraft's core and write path: the same .py files the simulator drives, compiled (typed by the
# .pxd beside each). The list lives in src/pyraft/_compiled.py, which also picks the build at
# import (PYRAFT_PURE_CORE=1 imports the .py files instead).
PYRAFT_MODULES = runpy.run_path("src/pyraft/_compiled.py")["MODULES"]
if os.environ.get("RAFTCORE_ONLY"):
    PYRAFT_MODULES = [m for m in PYRAFT_MODULES if m in os.environ["RAFTCORE_ONLY"].split(",")]
pyraft_extensions = [
    Extension(
        name,
        ["src/" + name.replace(".", "/") + ".py"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    for name in PYRAFT_MODULES
]

directives = {
    "language_level": "3",
    "embedsignature": True,
    "cdivision": True,
    # bounds checks stay on by default; kernels turn them off per function where proven safe
    "boundscheck": True,
    "wraparound": True,
    "initializedcheck": DEBUG,
}
# The compiled .py files keep Python's semantics exactly (the simulator proves the two builds
# make the same decisions): floor division and modulo as in Python, and annotations are
# documentation (an ``int`` annotation would otherwise refuse numpy integers); C types come
# only from the .pxd files.
pyraft_directives = dict(directives, cdivision=False, annotation_typing=False)


class RequiredBuildExt(build_ext):
    """Turn a compiler failure into an instruction rather than a stack of distutils output."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:  # the compiled modules build side by side
            self.parallel = os.cpu_count() or 1

    def run(self):
        # translated here, not when setup.py is read: the sdist and the metadata steps need
        # no generated C (translating everything takes 7 s of a 2-core machine)
        _cythonize(self.extensions)
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            raise SystemExit(_NO_COMPILER.format(exc=exc)) from exc

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            raise SystemExit(_NO_COMPILER.format(exc=exc)) from exc


_NO_COMPILER = """
raftcore: building the compiled kernels failed: {exc}

raftcore's CRC32C, framing, index and phi-accrual kernels are required (a slow fallback would
show up later as missed heartbeats and spurious elections). Install a C compiler and the Python
headers, then retry:
  Debian/Ubuntu:  apt-get install build-essential python3-dev
  Fedora/RHEL:    dnf install gcc python3-devel
  macOS:          xcode-select --install
or install a prebuilt wheel for your platform.
"""

def _cythonize(wanted):
    """Give each of ``wanted`` (extensions of .pyx / .py sources, as build_ext finalized them)
    its translated C sources: each set with its directives, side by side (Cython's own pool;
    the C compiler runs per build_ext)."""
    for group_directives, kernels in ((directives, True), (pyraft_directives, False)):
        chosen = [ext for ext in wanted if ext.name.startswith("raftcore.") == kernels]
        if chosen:
            translated = cythonize(chosen, compiler_directives=group_directives,
                                   annotate=False, nthreads=os.cpu_count() or 1)
            for ext, done in zip(chosen, translated, strict=True):
                assert ext.name == done.name, (ext.name, done.name)
                ext.sources = done.sources


setup(
    ext_modules=extensions + pyraft_extensions,
    cmdclass={"build_ext": RequiredBuildExt},
    zip_safe=False,
)
