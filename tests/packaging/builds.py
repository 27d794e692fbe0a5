"""What the packaging tests share: running a build or install command with a bounded time,
requiring its success (its output in the failure), and the checks that a package index
answers and that the smoke tests run from outside the checkout."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "tests" / "smoke" / "test_smoke.py"
TOOL = ROOT / "tools" / "build_wheel.py"
BUILD_TIMEOUT_S = 900
INSTALL_TIMEOUT_S = 900
SMOKE_TIMEOUT_S = 600
PROBE_TIMEOUT_S = 120


def load_tool():
    """``tools/build_wheel.py`` as a module."""
    spec = importlib.util.spec_from_file_location("build_wheel", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def isolation_options() -> tuple[str, ...]:
    """``("--no-isolation",)`` (the option of ``python -m build`` and of the build tool alike)
    when this interpreter has ``pyproject.toml``'s build requirements (the test extra names
    them): the sdist and the wheel then build with the same setuptools, Cython and numpy,
    installed once instead of twice per run (about 20 s); else ``()``. CI's
    ``pip install ".[test]"`` still proves the isolated build on every run."""
    if load_tool().missing_build_requirements(sys.executable, ROOT):
        return ()
    return ("--no-isolation",)


def clean_environ() -> dict[str, str]:
    """This process's environment without what would let the checkout leak in."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYRAFT_NO_EXTENSIONS",
                 "RAFTCORE_ONLY"):
        env.pop(name, None)
    return env


def run(command: list, timeout: float, env: dict[str, str], cwd: Path | None = None):
    try:
        return subprocess.run([str(c) for c in command], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=cwd, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{command} did not finish in {timeout} s:\n{exc.stdout}\n{exc.stderr}")


def require(done: subprocess.CompletedProcess, what: str) -> str:
    if done.returncode != 0:
        # a parallel build prints a compiler's error long before the build gives up: the
        # lines that say what went wrong come first, wherever they were in the output
        said = [line.strip() for line in (done.stdout + done.stderr).splitlines()
                if _WHAT_WENT_WRONG.search(line)]
        pytest.fail(f"{what} failed (exit {done.returncode}): {done.args}\n"
                    f"--- errors ---\n" + "\n".join(said[:40]) + "\n"
                    f"--- stdout ---\n{done.stdout[-6000:]}\n--- stderr ---\n"
                    f"{done.stderr[-6000:]}")
    return done.stdout


_WHAT_WENT_WRONG = re.compile(r"\berror\b|\bfatal\b|Traceback|No space left|Killed",
                              re.IGNORECASE)


def why_no_index_answers(python: str, env: dict[str, str], dest: Path) -> str | None:
    """None when pip reaches a package index, else why not (pip's own words)."""
    probe = run([python, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                 "--retries", "1", "--timeout", "20", "--quiet", "--dest", dest, "msgpack"],
                PROBE_TIMEOUT_S, env)
    if probe.returncode == 0:
        return None
    return ("pip cannot reach a package index (builds and installs take their dependencies "
            f"from one): {probe.stderr.strip()[-600:]}")


def skip_unless_an_index_answers(python: str, env: dict[str, str], dest: Path) -> None:
    """Skip (saying why) when pip reaches no index: builds and installs take their
    dependencies (setuptools, Cython, numpy, msgpack, pytest) from one."""
    why = why_no_index_answers(python, env, dest)
    if why is not None:
        pytest.skip(why)


def smoke_directory(base: Path) -> Path:
    """A directory outside the checkout holding the smoke tests and a pytest.ini."""
    run_dir = base / "run"
    run_dir.mkdir()
    shutil.copy2(SMOKE, run_dir / SMOKE.name)
    (run_dir / "pytest.ini").write_text(
        "[pytest]\naddopts = -p no:cacheprovider -ra\nfilterwarnings = error\n")
    return run_dir


def run_smoke(python, env: dict[str, str], run_dir: Path, what: str) -> str:
    """Run the smoke tests with ``python``; they must all pass, none skipped."""
    done = run([python, "-W", "error", "-m", "pytest", "-q", SMOKE.name], SMOKE_TIMEOUT_S, env,
               cwd=run_dir)
    output = require(done, f"the smoke tests against {what}")
    assert "skipped" not in output and " passed" in output, output
    return output
