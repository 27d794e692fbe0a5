"""The wheel for this machine: built by ``tools/build_wheel.py``, installed where no compiler
can be found, and passing ``tests/smoke`` from outside the checkout.

One module fixture does the slow part once (about a minute on 2 cores: the build compiles the
five Cython kernels): build into a temporary wheelhouse, create a fresh virtual environment
(no system site packages), install the wheel with ``--only-binary :all:`` and a ``PATH`` that
holds only the environment's ``bin`` and a directory of a few harmless tools, with
``CC=/bin/false CXX=/bin/false``. Its dependencies come from the configured package index or
pip's cache. When pip cannot reach any index, the tests skip and say so; any other failure
of the build or the install fails them, with the command's output.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "build_wheel.py"
SMOKE = ROOT / "tests" / "smoke" / "test_smoke.py"
BUILD_TIMEOUT_S = 900
INSTALL_TIMEOUT_S = 900
SMOKE_TIMEOUT_S = 600
PROBE_TIMEOUT_S = 120
COMPILERS = ("cc", "gcc", "c++", "g++", "clang", "clang++", "ld", "x86_64-linux-gnu-gcc",
             "aarch64-linux-gnu-gcc", "cl", "icc")
# the only programs besides the environment's own on PATH (none of them compiles anything)
HARMLESS_TOOLS = ("sh", "env", "uname")


def _load_tool():
    spec = importlib.util.spec_from_file_location("build_wheel", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _clean_environ() -> dict[str, str]:
    """This process's environment without what would let the checkout leak in."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYRAFT_NO_EXTENSIONS"):
        env.pop(name, None)
    return env


def _run(command: list, timeout: float, env: dict[str, str], cwd: Path | None = None):
    try:
        return subprocess.run([str(c) for c in command], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=cwd, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{command} did not finish in {timeout} s:\n{exc.stdout}\n{exc.stderr}")


def _require(done: subprocess.CompletedProcess, what: str) -> str:
    assert done.returncode == 0, (
        f"{what} failed (exit {done.returncode}): {done.args}\n"
        f"--- stdout ---\n{done.stdout[-6000:]}\n--- stderr ---\n{done.stderr[-6000:]}")
    return done.stdout


def _skip_unless_an_index_answers(python: str, env: dict[str, str], dest: Path) -> None:
    """Skip (saying why) when pip reaches no index; the wheel's dependencies come from one."""
    probe = _run([python, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                  "--retries", "1", "--timeout", "20", "--quiet", "--dest", dest, "msgpack"],
                 PROBE_TIMEOUT_S, env)
    if probe.returncode != 0:
        pytest.skip(f"pip cannot reach a package index (it needs one for numpy, msgpack, "
                    f"uvloop, pytest): {probe.stderr.strip()[-600:]}")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, environment without a compiler, directory to run tests from)."""
    base = tmp_path_factory.mktemp("wheel")
    try:
        env = _clean_environ()
        _skip_unless_an_index_answers(sys.executable, env, base / "probe")

        built = _require(_run([sys.executable, TOOL, "--out", base / "wheelhouse"],
                              BUILD_TIMEOUT_S, env), "tools/build_wheel.py")
        match = re.search(r"^wheel: (.+\.whl)$", built, re.MULTILINE)
        assert match, f"the build tool printed no 'wheel:' line:\n{built}"
        wheel = Path(match.group(1))
        assert wheel.parent == base / "wheelhouse" and wheel.is_file(), wheel

        venv_dir = base / "venv"
        _require(_run([sys.executable, "-m", "venv", venv_dir], INSTALL_TIMEOUT_S, env), "venv")
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
        reachable = _require(_run([python, "-c", lookup, *COMPILERS], 60, bare), "compiler lookup")
        assert reachable.split() == ["None"] * len(COMPILERS), f"compiler reachable: {reachable}"

        _require(_run([python, "-m", "pip", "install", "--only-binary", ":all:", wheel, "pytest",
                       "hypothesis"], INSTALL_TIMEOUT_S, bare), "installing the wheel")

        run_dir = base / "run"
        run_dir.mkdir()
        shutil.copy2(SMOKE, run_dir / SMOKE.name)
        (run_dir / "pytest.ini").write_text(
            "[pytest]\naddopts = -p no:cacheprovider -ra\nfilterwarnings = error\n")
        yield python, bare, run_dir
    finally:
        shutil.rmtree(base, ignore_errors=True)  # a venv and a wheel: about 200 MB


def test_wheel_installs_without_a_compiler_and_passes_the_smoke_tests(installed):
    python, env, run_dir = installed
    done = _run([python, "-W", "error", "-m", "pytest", "-q", SMOKE.name], SMOKE_TIMEOUT_S, env,
                cwd=run_dir)
    output = _require(done, "the smoke tests against the installed wheel")
    assert "skipped" not in output and " passed" in output, output


def test_installed_packages_are_the_wheels_not_the_checkout(installed):
    python, env, run_dir = installed
    output = _require(_run([python, "-c", "import pyraft, raftcore, raftcore._wal as w; "
                            "print(pyraft.__file__, raftcore.__file__, w.__file__)"],
                           60, env, cwd=run_dir), "importing from the environment")
    for location in output.split():
        assert str(ROOT) not in location and "site-packages" in location, output
    assert output.split()[2].endswith(".so"), output


def test_check_wheel_reports_sources_missing_kernels_and_a_pure_tag(tmp_path):
    tool = _load_tool()
    wheel = tmp_path / "raftcore-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("raftcore/_crc.cpython-311-x86_64-linux-gnu.so", b"")
        archive.writestr("raftcore/_framing.c", b"")
        archive.writestr("raftcore-0.1.0.dist-info/WHEEL", "Root-Is-Purelib: true\n")
    problems = "\n".join(tool.check_wheel(wheel, ROOT / "src"))
    for kernel in ("_framing", "_index", "_phi", "_wal"):
        assert f"raftcore.{kernel}" in problems
    assert "raftcore._crc" not in problems
    assert "raftcore/_framing.c" in problems
    assert "pyraft/cli.py" in problems and "raftcore/py.typed" in problems
    assert "console script" in problems and "Root-Is-Purelib" in problems
    assert "pure Python" in problems


def test_check_wheel_rejects_a_file_that_is_not_a_wheel(tmp_path):
    tool = _load_tool()
    bogus = tmp_path / "raftcore-0.1.0-cp311-cp311-linux_x86_64.whl"
    bogus.write_bytes(b"not a zip")
    assert tool.check_wheel(bogus, ROOT / "src")[0].startswith("cannot read")


def test_build_tool_refuses_an_unknown_interpreter(tmp_path):
    done = _run([sys.executable, TOOL, "--out", tmp_path, "--python", "no-such-python-3.99"],
                60, _clean_environ())
    assert done.returncode == 2 and "not found" in done.stderr, done
    assert not list(tmp_path.iterdir())
