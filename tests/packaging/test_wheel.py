"""The wheel for this machine: built by ``tools/build_wheel.py`` from the source distribution
(the ``sdist`` fixture), installed where no compiler can be found, and passing
``tests/smoke`` from outside the checkout. So the sdist builds (its ``.pyx``, ``.pxd`` and
headers suffice) and the wheel installs as a user gets it.

One module fixture does the slow part once: build into a temporary wheelhouse (the build
compiles the five kernels and pyraft's compiled modules at ``RAFTCORE_OPT=-O0`` and without
debugging information, ``CFLAGS=-g0``: about 5x faster than the release's -O2 -g; these tests
check what the wheel holds and that it installs, and the rest of the suite runs the -O2 build;
with the build requirements installed, it builds without build isolation), create a fresh
virtual environment (no system site packages), install the wheel with ``--only-binary :all:``
and a ``PATH`` that holds only the environment's ``bin`` and a directory of a few harmless
tools, with ``CC=/bin/false CXX=/bin/false``. Its dependencies come from the configured
package index or pip's cache. When pip cannot reach any index, the tests skip and say so; any
other failure of the build or the install fails them, with the command's output.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from tests.packaging.builds import (
    BUILD_TIMEOUT_S,
    INSTALL_TIMEOUT_S,
    ROOT,
    TOOL,
    clean_environ,
    isolation_options,
    load_tool,
    require,
    run,
    run_smoke,
    skip_unless_an_index_answers,
    smoke_directory,
)

pytestmark = pytest.mark.packaging

COMPILERS = ("cc", "gcc", "c++", "g++", "clang", "clang++", "ld", "x86_64-linux-gnu-gcc",
             "aarch64-linux-gnu-gcc", "cl", "icc")
# the only programs besides the environment's own on PATH (none of them compiles anything)
HARMLESS_TOOLS = ("sh", "env", "uname")


@pytest.fixture(scope="module")
def installed(sdist, tmp_path_factory):
    """(venv python, environment without a compiler, directory to run tests from)."""
    base = tmp_path_factory.mktemp("wheel")
    try:
        env = clean_environ()
        skip_unless_an_index_answers(sys.executable, env, base / "probe")

        built = require(run([sys.executable, TOOL, "--out", base / "wheelhouse", "--sdist", sdist,
                             *isolation_options()], BUILD_TIMEOUT_S,
                            dict(env, RAFTCORE_OPT="-O0", CFLAGS="-g0")),
                        "tools/build_wheel.py")
        match = re.search(r"^wheel: (.+\.whl)$", built, re.MULTILINE)
        assert match, f"the build tool printed no 'wheel:' line:\n{built}"
        wheel = Path(match.group(1))
        assert wheel.parent == base / "wheelhouse" and wheel.is_file(), wheel

        venv_dir = base / "venv"
        require(run([sys.executable, "-m", "venv", venv_dir], INSTALL_TIMEOUT_S, env), "venv")
        pyvenv = (venv_dir / "pyvenv.cfg").read_text()
        assert re.search(r"include-system-site-packages\s*=\s*false", pyvenv), pyvenv
        bindir = venv_dir / "bin"
        tools = base / "tools"
        tools.mkdir()
        for name in HARMLESS_TOOLS:
            found = shutil.which(name)
            if found:
                (tools / name).symlink_to(found)
        bare = dict(env, PATH=f"{bindir}{os.pathsep}{tools}", CC="/bin/false", CXX="/bin/false",
                    PYRAFT_SMOKE_INSTALLED="1")
        python = str(bindir / "python")

        lookup = "import shutil, sys; print(*[shutil.which(c) for c in sys.argv[1:]])"
        reachable = require(run([python, "-c", lookup, *COMPILERS], 60, bare), "compiler lookup")
        assert reachable.split() == ["None"] * len(COMPILERS), f"compiler reachable: {reachable}"

        require(run([python, "-m", "pip", "install", "--only-binary", ":all:", wheel, "pytest",
                       "hypothesis"], INSTALL_TIMEOUT_S, bare), "installing the wheel")

        run_dir = smoke_directory(base)
        yield python, bare, run_dir
    finally:
        shutil.rmtree(base, ignore_errors=True)  # a venv and a wheel: about 200 MB


def test_wheel_installs_without_a_compiler_and_passes_the_smoke_tests(installed):
    python, env, run_dir = installed
    run_smoke(python, env, run_dir, "the installed wheel")


def test_installed_packages_are_the_wheels_not_the_checkout(installed):
    import raftcore

    python, env, run_dir = installed
    output = require(run([python, "-c", "import pyraft, raftcore, raftcore._wal as w; "
                          "print(pyraft.__file__, raftcore.__file__, w.__file__, "
                          "pyraft.__version__)"], 60, env, cwd=run_dir),
                     "importing from the environment")
    *locations, version = output.split()
    for location in locations:
        assert str(ROOT) not in location and "site-packages" in location, output
    assert locations[2].endswith(".so"), output
    assert version == raftcore.__version__


def test_server_commands_have_their_dependencies_in_a_plain_install(installed):
    # the venv holds raftcore and its own dependencies only (plus pytest and hypothesis):
    # the HTTP API of `pyraft node` and the client of `pyraft kv` must import there
    python, env, run_dir = installed
    require(run([python, "-c", "import pyraft.kv.http, pyraft.kv.node, pyraft.kv.client, "
                 "pyraft.client"], 120, env, cwd=run_dir),
            "importing the HTTP API and the client (and its former module)")
    pyraft_command = Path(python).parent / "pyraft"
    for command in (["node", "--help"], ["kv", "--help"]):
        done = run([pyraft_command, *command], 120, env, cwd=run_dir)
        output = require(done, f"pyraft {' '.join(command)}")
        assert "usage:" in output and "Traceback" not in done.stderr, done.stderr


def test_check_wheel_reports_sources_missing_kernels_and_a_pure_tag(tmp_path):
    tool = load_tool()
    wheel = tmp_path / "raftcore-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("raftcore/_crc.cpython-311-x86_64-linux-gnu.so", b"")
        archive.writestr("pyraft/core/raft.cpython-311-x86_64-linux-gnu.so", b"")
        archive.writestr("raftcore/_framing.c", b"")
        archive.writestr("raftcore-0.1.0.dist-info/WHEEL", "Root-Is-Purelib: true\n")
    problems = "\n".join(tool.check_wheel(wheel, ROOT / "src"))
    for kernel in ("_clock", "_framing", "_index", "_phi", "_wal"):
        assert f"raftcore.{kernel}" in problems
    assert "raftcore._crc" not in problems
    # pyraft's modules compiled from their .py files are checked the same way
    assert "no compiled extension for pyraft.core.log" in problems
    assert "pyraft.core.raft" not in problems.replace("pyraft/core/raft.py", "")
    assert "raftcore/_framing.c" in problems
    assert "pyraft/cli.py" in problems and "raftcore/py.typed" in problems
    assert "console script" in problems and "Root-Is-Purelib" in problems
    assert "pure Python" in problems


def test_check_wheel_rejects_a_file_that_is_not_a_wheel(tmp_path):
    tool = load_tool()
    bogus = tmp_path / "raftcore-0.1.0-cp311-cp311-linux_x86_64.whl"
    bogus.write_bytes(b"not a zip")
    assert tool.check_wheel(bogus, ROOT / "src")[0].startswith("cannot read")


def test_build_tool_refuses_an_unknown_interpreter(tmp_path):
    done = run([sys.executable, TOOL, "--out", tmp_path, "--python", "no-such-python-3.99"],
                60, clean_environ())
    assert done.returncode == 2 and "not found" in done.stderr, done
    assert not list(tmp_path.iterdir())


def test_build_tool_without_isolation_names_the_build_requirements_missing(tmp_path):
    # a bare venv has no build requirements: --no-isolation must stop before pip, naming them
    env = clean_environ()
    require(run([sys.executable, "-m", "venv", "--without-pip", tmp_path / "venv"], 120, env),
            "venv")
    bare = str(tmp_path / "venv" / "bin" / "python")
    done = run([sys.executable, TOOL, "--out", tmp_path / "out", "--python", bare,
                "--no-isolation"], 120, env)
    assert done.returncode == 1, done
    assert "lacks the build requirements" in done.stderr, done.stderr
    for requirement in load_tool().build_requirements(ROOT):
        assert requirement in done.stderr, (requirement, done.stderr)
    assert not (tmp_path / "out").exists()


def test_build_requirements_are_read_from_pyproject():
    """msgpack and uvloop are the profile-guided build's training run's (its members)."""
    assert load_tool().build_requirements(ROOT) == [
        "setuptools>=77", "Cython>=3,<4", "numpy>=1.25", "msgpack>=1.0",
        "uvloop>=0.19; sys_platform == 'linux' or sys_platform == 'darwin'"]


def test_a_build_requirement_for_another_platform_is_not_missing(tmp_path):
    """A requirement whose marker excludes this platform is not reported missing; one for
    this platform that is not installed is."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools", '
        '"no-such-package-anywhere; sys_platform == \'no-such-platform\'", '
        '"another-missing-package>=1"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "x"\n')
    assert load_tool().missing_build_requirements(sys.executable, tree) == \
        ["another-missing-package>=1"]
