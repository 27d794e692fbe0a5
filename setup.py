"""Build script: only the list of compiled kernels lives here; metadata is in pyproject.toml.

The extensions are required. A machine without a C compiler fails the install with a message
that says what to install, instead of producing a package that would run without its kernels.

Environment:
  RAFTCORE_DEBUG=1   compile with extra checks (bounds checks on, assertions, -O0 -g),
                     the equivalent of asyncpg's PG_DEBUG / uvloop's UVLOOP_DEBUG.
  RAFTCORE_OPT=-O0   the optimization level of a release build (default -O2; one of -O0,
                     -O1, -O2, -O3, -Os). Only the packaging tests lower it: they check what
                     a wheel holds and that it installs, and -O0 compiles about 4x faster.
  RAFTCORE_PGO=1     a profile-guided build (GCC only; the x86_64 Linux wheels are built
                     so): the extensions are compiled instrumented, ``python -m
                     pyraft.bench.pgo`` runs a training load over them, and they are
                     compiled again with its profile (see that module for what it runs and
                     what it gains).
"""

import os
import re
import runpy
import subprocess
import sys
import sysconfig
import tempfile

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("RAFTCORE_DEBUG", "") not in ("", "0")
OPT = os.environ.get("RAFTCORE_OPT", "") or "-O2"
PGO = os.environ.get("RAFTCORE_PGO", "") not in ("", "0")
if OPT not in ("-O0", "-O1", "-O2", "-O3", "-Os"):
    sys.exit(f"raftcore: RAFTCORE_OPT must be one of -O0, -O1, -O2, -O3, -Os, not {OPT!r}")

# compiled modules are private (raftcore._crc, ...); raftcore.crc etc. are the public facades
KERNELS = ["_clock", "_crc", "_framing", "_index", "_phi", "_wal"]
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


def training_environ(where, environ):
    """The environment of a profile-guided build's training run: the packages just built
    first on PYTHONPATH, then whatever the build's own environment has there (pip's isolated
    build puts its build requirements there, uvloop and msgpack among them, which the
    training imports), and neither switch to a pure build set."""
    inherited = [path for path in environ.get("PYTHONPATH", "").split(os.pathsep) if path]
    env = dict(environ, PYTHONPATH=os.pathsep.join([where, *inherited]))
    for name in ("PYRAFT_NO_EXTENSIONS", "PYRAFT_PURE_CORE", "PYRAFT_PURE_MODULES"):
        env.pop(name, None)
    return env


class RequiredBuildExt(build_ext):
    """Turn a compiler failure into an instruction rather than a stack of distutils output."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:  # the compiled modules build side by side
            self.parallel = os.cpu_count() or 1

    #: the profile-guided pass being built: None (a plain build), "generate" or "use"
    pgo_pass = None
    pgo_partial = False

    def run(self):
        # translated here, not when setup.py is read: the sdist and the metadata steps need
        # no generated C (translating everything takes 7 s of a 2-core machine)
        pgo = PGO and not DEBUG
        if pgo:
            self._require_gcc()  # before the 30 s of translation
        _cythonize(self.extensions)
        if pgo:
            self._run_pgo()
            return
        self._build()

    def _build(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            raise SystemExit(_NO_COMPILER.format(exc=exc)) from exc

    def _run_pgo(self):
        """Instrumented build, training run, build with its profile (RAFTCORE_PGO)."""
        self.force = True  # both passes compile every module, whatever is built already
        chosen = self.compiler  # run() replaces it by the compiler object it makes
        # counts of an earlier training would merge into (or mismatch) this one's
        for root, _, files in os.walk(self.build_temp):
            for name in files:
                if name.endswith(".gcda"):
                    os.remove(os.path.join(root, name))
        self.pgo_pass = "generate"
        self._build()
        if not self.inplace:  # the training imports the packages from the build directory
            self.run_command("build_py")
        where = os.path.abspath("src" if self.inplace else self.build_lib)
        env = training_environ(where, os.environ)
        print(f"raftcore: PGO: training the instrumented build ({where})", flush=True)
        done = subprocess.run([sys.executable, "-m", "pyraft.bench.pgo"], env=env,
                              cwd=tempfile.gettempdir(), check=False, timeout=1800)
        if done.returncode != 0:
            raise SystemExit(f"raftcore: PGO: the training run failed (exit {done.returncode});"
                             " its output is above. Build without RAFTCORE_PGO to skip it.")
        self.pgo_pass = "use"
        self.compiler = chosen
        self._build()
        profiles = sum(1 for root, _, files in os.walk(self.build_temp)
                       for name in files if name.endswith(".gcda"))
        print(f"raftcore: PGO: {len(self.extensions)} extensions built with the profile "
              f"({profiles} modules have counts)", flush=True)

    def _require_gcc(self):
        # the compiler distutils will use: $CC, else the one Python was built with
        words = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
        if len(words) > 1 and os.path.basename(words[0]) == "ccache":
            words = words[1:]  # the compiler ccache runs
        command = words[:1]
        try:
            banner = subprocess.run(command + ["--version"], capture_output=True, text=True,
                                    check=False, timeout=60).stdout
        except OSError as exc:
            raise SystemExit(f"raftcore: RAFTCORE_PGO=1: cannot run the compiler: {exc}") \
                from exc
        if "Free Software Foundation" not in banner or "clang" in banner.lower():
            raise SystemExit("raftcore: RAFTCORE_PGO=1 needs GCC (the compiler here is "
                             f"{banner.splitlines()[0] if banner else command[0]!r}); "
                             "build without it")
        # GCC 10 added -fprofile-partial-training: code the training did not run keeps its
        # normal optimization instead of being treated as never run (optimized for size)
        found = re.search(r"\) (\d+)\.", banner.splitlines()[0])
        major = int(found.group(1)) if found else None
        if major is not None and major < 7:  # -fprofile-update=prefer-atomic came in GCC 7
            raise SystemExit(f"raftcore: RAFTCORE_PGO=1 needs GCC 7 or later (this is GCC "
                             f"{major}); build without it")
        self.pgo_partial = major is not None and major >= 10

    def build_extension(self, ext):
        # The training runs the kernels on several threads at once (each member's log is
        # written and synced on its own I/O thread, the GIL released): counters incremented
        # there without atomics can lose counts, and GCC refuses a profile whose counts do
        # not add up ("corrupted profile info") unless told to repair it. Atomic updates
        # where the target has them, repair of whatever is left.
        flags = {"generate": (["-fprofile-generate", "-fprofile-update=prefer-atomic"],
                              ["-fprofile-generate"]),
                 "use": (["-fprofile-use", "-fprofile-correction", "-Wno-missing-profile",
                          "-DRAFTCORE_PROFILE_GUIDED=1"]
                         + (["-fprofile-partial-training"] if self.pgo_partial else []), [])
                 }.get(self.pgo_pass, ([], []))
        # extension objects persist between the passes: each pass sets its own flags
        base_compile = getattr(ext, "_plain_compile_args", None)
        if base_compile is None:
            ext._plain_compile_args = base_compile = list(ext.extra_compile_args)
            ext._plain_link_args = list(ext.extra_link_args)
        ext.extra_compile_args = base_compile + flags[0]
        ext.extra_link_args = ext._plain_link_args + flags[1]
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
