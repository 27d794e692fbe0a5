"""The source distribution: built from the checkout, it carries what ``setup.py`` needs to
compile the kernels (``.pyx``, ``.pxd``, ``include/*.h``) and the typing files, and installs
into a fresh virtual environment, where ``tests/smoke`` passes against it.

This is what ``pip install --no-binary raftcore raftcore`` does on a platform without a wheel.
One module fixture does the slow part once (about 100 s on 2 cores: the build compiles the five
kernels from their Cython sources): ``python -m build --sdist``, a fresh venv (no system site
packages), ``pip install`` of the ``.tar.gz`` (an isolated build: setuptools, Cython and numpy
come from the configured index or pip's cache). When pip reaches no index the tests skip and
say so; any other failure of the build or the install fails them with the command's output.
Marked ``packaging``: ``pytest -m "not packaging"`` leaves it out.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "tests" / "smoke" / "test_smoke.py"
BUILD_TIMEOUT_S = 900
INSTALL_TIMEOUT_S = 900
SMOKE_TIMEOUT_S = 600
PROBE_TIMEOUT_S = 120


def _environ() -> dict[str, str]:
    """This process's environment without what would let the checkout leak in."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYRAFT_NO_EXTENSIONS",
                 "RAFTCORE_ONLY"):
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


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    """The ``.tar.gz`` built from a copy of the checkout's tracked and new files."""
    base = tmp_path_factory.mktemp("sdist")
    env = _environ()
    probe = _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary",
                  ":all:", "--retries", "1", "--timeout", "20", "--quiet", "--dest",
                  base / "probe", "msgpack"], PROBE_TIMEOUT_S, env)
    if probe.returncode != 0:
        pytest.skip("pip cannot reach a package index (the isolated build needs setuptools, "
                    f"Cython and numpy from one): {probe.stderr.strip()[-600:]}")
    # build from a copy without generated files, so that nothing the checkout happens to hold
    # (compiled .c, .so, egg-info) can stand in for what the sdist lacks
    tree = base / "tree"
    ignore = shutil.ignore_patterns("*.c", "*.so", "*.egg-info", "__pycache__", "build",
                                    ".hypothesis", ".pytest_cache", ".mypy_cache")
    tree.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy2(ROOT / name, tree / name)
    for name in ("src", "examples", "tests/smoke"):
        shutil.copytree(ROOT / name, tree / name, ignore=ignore)
    shutil.copy2(ROOT / "tests" / "__init__.py", tree / "tests" / "__init__.py")
    _require(_run([sys.executable, "-m", "build", "--sdist", "--outdir", base / "dist", tree],
                  BUILD_TIMEOUT_S, env), "python -m build --sdist")
    built = sorted((base / "dist").glob("raftcore-*.tar.gz"))
    assert len(built) == 1, built
    return built[0]


def test_sdist_carries_the_sources_the_build_needs(sdist):
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for kernel in ("_crc", "_framing", "_index", "_phi", "_wal"):
        assert f"src/raftcore/{kernel}.pyx" in names, kernel
        assert f"src/raftcore/{kernel}.pyi" in names, kernel
    for pxd in ("_crc", "_framing", "_index", "_phi"):
        assert f"src/raftcore/{pxd}.pxd" in names, pxd
    headers = sorted(p.name for p in (ROOT / "src" / "raftcore" / "include").glob("*.h"))
    assert headers and all(f"src/raftcore/include/{h}" in names for h in headers), headers
    for required in ("setup.py", "pyproject.toml", "LICENSE", "PKG-INFO",
                     "src/raftcore/py.typed", "src/pyraft/py.typed",
                     "src/raftcore/_version.py", "tests/smoke/test_smoke.py",
                     "examples/embed.py"):
        assert required in names, required
    # every Python module of both packages
    for package in ("raftcore", "pyraft"):
        for path in (ROOT / "src" / package).rglob("*.py"):
            assert str(path.relative_to(ROOT)) in names, path


def test_sdist_metadata_names_the_license_and_version(sdist):
    import raftcore

    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/", 1)[0]
        member = archive.extractfile(f"{top}/PKG-INFO")
        assert member is not None
        info = member.read().decode()
    assert re.search(r"^License-Expression: Apache-2.0$", info, re.MULTILINE), info[:1500]
    assert re.search(r"^License-File: LICENSE$", info, re.MULTILINE), info[:1500]
    assert f"\nVersion: {raftcore.__version__}\n" in info
    assert "Classifier: Typing :: Typed" in info
    assert "Classifier: License ::" not in info  # SPDX string only, never both
    assert re.search(r"^Requires-Dist: aiohttp", info, re.MULTILINE)
    assert re.search(r'^Requires-Dist: tomli.*python_version < "3.11"', info, re.MULTILINE)


@pytest.fixture(scope="module")
def installed(sdist, tmp_path_factory):
    """(venv python, environment, directory to run the smoke tests from)."""
    base = tmp_path_factory.mktemp("sdist-venv")
    try:
        env = _environ()
        venv_dir = base / "venv"
        _require(_run([sys.executable, "-m", "venv", venv_dir], INSTALL_TIMEOUT_S, env), "venv")
        python = venv_dir / "bin" / "python"
        bare = dict(env, PATH=f"{venv_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}",
                    PYRAFT_SMOKE_INSTALLED="1")
        _require(_run([python, "-m", "pip", "install", "--quiet", sdist, "pytest",
                       "hypothesis"], INSTALL_TIMEOUT_S, bare, cwd=base),
                 "installing the sdist")
        run_dir = base / "run"
        run_dir.mkdir()
        shutil.copy2(SMOKE, run_dir / SMOKE.name)
        (run_dir / "pytest.ini").write_text(
            "[pytest]\naddopts = -p no:cacheprovider -ra\nfilterwarnings = error\n")
        yield python, bare, run_dir
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_sdist_installs_and_passes_the_smoke_tests(installed):
    python, env, run_dir = installed
    done = _run([python, "-W", "error", "-m", "pytest", "-q", SMOKE.name], SMOKE_TIMEOUT_S,
                env, cwd=run_dir)
    output = _require(done, "the smoke tests against the installed sdist")
    assert "skipped" not in output and " passed" in output, output


def test_installed_from_sdist_is_compiled_and_outside_the_checkout(installed):
    python, env, run_dir = installed
    output = _require(_run([python, "-c", "import pyraft, raftcore, raftcore._wal as w; "
                            "print(pyraft.__file__, raftcore.__file__, w.__file__, "
                            "pyraft.__version__)"], 60, env, cwd=run_dir), "importing")
    *locations, version = output.split()
    for location in locations:
        assert str(ROOT) not in location and "site-packages" in location, output
    assert locations[2].endswith(".so"), output
    import raftcore

    assert version == raftcore.__version__


def test_server_commands_have_their_dependencies_in_a_plain_install(installed):
    # the venv holds raftcore and its own dependencies only (plus pytest and hypothesis):
    # the HTTP API of `pyraft node` and the client of `pyraft kv` must import there
    python, env, run_dir = installed
    _require(_run([python, "-c", "import pyraft.kv.http, pyraft.kv.node, pyraft.client"],
                  120, env, cwd=run_dir), "importing the HTTP API and the client")
    pyraft_command = Path(python).parent / "pyraft"
    for command in (["node", "--help"], ["kv", "--help"]):
        done = _run([pyraft_command, *command], 120, env, cwd=run_dir)
        output = _require(done, f"pyraft {' '.join(command)}")
        assert "usage:" in output and "Traceback" not in done.stderr, done.stderr
