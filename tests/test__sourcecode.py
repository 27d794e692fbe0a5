"""The layering rules and code style, as tests (see ARCHITECTURE.md "Layers").

- ``pyraft.core`` is pure: no I/O, clocks, asyncio or global randomness.
- ``raftcore`` never imports ``pyraft``.
- ruff passes on the Python sources.
"""

from __future__ import annotations

import ast
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "src"

CORE_FORBIDDEN = {
    "asyncio", "socket", "time", "random", "os", "threading", "selectors", "ssl", "subprocess",
    "pathlib", "io", "uvloop", "datetime", "pyraft.storage", "pyraft.transport",
    "pyraft.cluster", "pyraft.cli",
}


def imports_of(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def forbidden(name: str, rules: set[str]) -> bool:
    return any(name == rule or name.startswith(rule + ".") for rule in rules)


def sources(package: str, suffixes=(".py", ".pyx", ".pxd")) -> list[pathlib.Path]:
    return sorted(p for p in (SRC / package).rglob("*") if p.suffix in suffixes)


def test_source_tree_is_where_expected():
    assert (SRC / "raftcore" / "__init__.py").exists()
    assert (SRC / "pyraft" / "__init__.py").exists()


def test_core_is_pure():
    core = SRC / "pyraft" / "core"
    files = sorted(core.rglob("*.py")) if core.exists() else []
    for path in files:
        bad = {n for n in imports_of(path) if forbidden(n, CORE_FORBIDDEN)}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_kernels_do_not_import_pyraft():
    for path in sources("raftcore", (".py",)):
        bad = {n for n in imports_of(path) if forbidden(n, {"pyraft"})}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
    for path in sources("raftcore", (".pyx", ".pxd")):
        text = path.read_text()
        assert "import pyraft" not in text and "from pyraft" not in text, path


def test_ruff_is_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is part of the test extras; install with pip install '.[test]'")
    result = subprocess.run(
        [ruff, "check", "--no-cache", str(SRC), str(ROOT / "tests"), str(ROOT / "benchmarks")],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_info_runs():
    result = subprocess.run(
        [sys.executable, "-m", "pyraft", "info", "--json"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert '"crc32c"' in result.stdout
