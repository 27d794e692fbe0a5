"""The layering rules and code style, as tests (see ARCHITECTURE.md "Layers").

- ``pyraft.core`` is pure: no I/O, clocks, asyncio or global randomness.
- ``raftcore`` never imports ``pyraft``.
- The product (``pyraft.core``, ``storage``, ``transport``, ``cluster``, ``config``) never
  imports the tools and services above it (``pyraft.kv``, ``testing``, ``bench``,
  ``playground``); ``pyraft.bench`` never imports ``pyraft.playground`` (``LAYER_RULES``).
- Every package of pyraft has its place in ``LAYERS`` and imports, at run time, only from
  its own layer and those below (imports under ``if TYPE_CHECKING:`` are annotations and may
  name any layer): the import layers the README's "Layout" table shows.
- ruff passes on the Python sources (mypy: ``tests/test_types.py``).

Rules name packages, never file lists: a module added to a package is checked at once. An
import counts wherever it is written (module level, inside a function, under
``TYPE_CHECKING``), relative imports are resolved, ``from pyraft import testing`` names
``pyraft.testing``, and ``importlib.import_module("...")`` of a constant name counts too.
"""

from __future__ import annotations

import ast
import json
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


#: the tools and services: users start there, the product below them never imports them
TOOLS = {"pyraft.kv", "pyraft.testing", "pyraft.bench", "pyraft.playground"}
#: (package, what no module of it may import, why)
LAYER_RULES: list[tuple[str, frozenset[str], str]] = [
    *[(package, frozenset(TOOLS), "the product does not import the tools above it")
      for package in ("pyraft.core", "pyraft.storage", "pyraft.transport", "pyraft.cluster",
                      "pyraft.config")],
    ("raftcore", frozenset({"pyraft"}), "the kernels know nothing of pyraft"),
    ("pyraft.bench", frozenset({"pyraft.playground"}), "the benchmarks need no demo"),
]


def module_name(path: pathlib.Path) -> str:
    """``src/pyraft/cluster/runtime.py`` -> ``pyraft.cluster.runtime`` (a package's
    ``__init__.py`` is the package)."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The ids of the nodes inside ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    inside_ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
                (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
                or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")):
            for statement in node.body:
                inside_ids.update(id(child) for child in ast.walk(statement))
    return inside_ids


def imports_of(path: pathlib.Path, source: str | None = None,
               module: str | None = None, *, type_checking: bool = True) -> set[str]:
    """The absolute names of the modules the file at ``path`` (or ``source``, as if it were
    that file, module ``module``) imports; ``from a import b`` gives ``a`` and ``a.b``.
    ``type_checking=False`` leaves out the imports under ``if TYPE_CHECKING:``."""
    text = path.read_text() if source is None else source
    tree = ast.parse(text, filename=str(path))
    if module is None:
        module = module_name(path) if path.is_relative_to(SRC) else path.stem
    is_package = path.name == "__init__.py"
    skipped = set() if type_checking else _type_checking_only(tree)
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this module is in
                package = module.split(".")
                up = node.level - 1 if is_package else node.level
                anchor = package[:len(package) - up] if up else package
                base = ".".join(anchor + ([base] if base else []))
            if base:
                names.add(base)
            names.update(f"{base}.{alias.name}" if base else alias.name
                         for alias in node.names if alias.name != "*")
        elif (isinstance(node, ast.Call) and _is_import_call(node.func) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)
    return names


def _is_import_call(func: ast.expr) -> bool:
    """``importlib.import_module(...)``, ``import_module(...)`` or ``__import__(...)``."""
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id in ("import_module", "__import__")


def forbidden(name: str, rules: set[str] | frozenset[str]) -> bool:
    return any(name == rule or name.startswith(rule + ".") for rule in rules)


def inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layer_violations(module: str, names: set[str]) -> list[tuple[str, str, str]]:
    """(package of the rule, the forbidden import, why) for each import of ``module`` that
    a rule of ``LAYER_RULES`` forbids."""
    return sorted((package, name, why) for package, banned, why in LAYER_RULES
                  if inside(module, package) for name in names if forbidden(name, banned))


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


def test_layers_do_not_import_the_layers_above_them():
    checked: set[str] = set()
    bad = []
    for path in sources("pyraft", (".py",)) + sources("raftcore", (".py",)):
        module = module_name(path)
        checked.add(module)
        bad += [f"{path.relative_to(ROOT)} imports {name} ({why})"
                for _, name, why in layer_violations(module, imports_of(path))]
    assert not bad, "\n".join(bad)
    # every package a rule names exists, so no rule checks nothing
    for package, _, _ in LAYER_RULES:
        assert any(inside(module, package) for module in checked), package


#: the import layers of pyraft, lowest first (the README's "Layout" table). ``"pyraft"`` is the
#: package's own ``__init__`` (the public API), not everything under it
LAYERS: list[tuple[str, frozenset[str]]] = [
    ("errors and argument types", frozenset({"pyraft.errors", "pyraft.argtypes"})),
    ("pure core", frozenset({"pyraft.core"})),
    ("configuration", frozenset({"pyraft.config"})),
    ("storage and metrics", frozenset({"pyraft.storage", "pyraft.metrics", "pyraft.instruments"})),
    ("transports", frozenset({"pyraft.transport"})),
    ("runtime", frozenset({"pyraft.cluster"})),
    ("public API and key-value service", frozenset({"pyraft", "pyraft.kv", "pyraft.client"})),
    ("tools: test helpers and benchmarks", frozenset({"pyraft.testing", "pyraft.bench"})),
    ("playground", frozenset({"pyraft.playground"})),
    ("command line", frozenset({"pyraft.cli", "pyraft.__main__"})),
]


def layer_of(name: str) -> int | None:
    """The index in ``LAYERS`` of the module ``name`` (None outside pyraft); a name under
    ``pyraft`` that no layer lists (``pyraft.__version__``) is the package's own."""
    if not inside(name, "pyraft"):
        return None
    for index, (_, packages) in enumerate(LAYERS):
        if any(package != "pyraft" and inside(name, package) for package in packages):
            return index
    return next(i for i, (_, packages) in enumerate(LAYERS) if "pyraft" in packages)


def upward_imports(module: str, names: set[str]) -> list[str]:
    """The imports of ``module`` that name a layer above its own."""
    own = layer_of(module)
    assert own is not None, module
    return sorted(name for name in names
                  if (layer := layer_of(name)) is not None and layer > own)


def test_every_module_imports_only_its_layer_and_those_below():
    bad = []
    for path in sources("pyraft", (".py",)):
        module = module_name(path)
        for name in upward_imports(module, imports_of(path, type_checking=False)):
            bad.append(f"{path.relative_to(ROOT)} ({LAYERS[layer_of(module)][0]}) imports "
                       f"{name} ({LAYERS[layer_of(name)][0]})")
    assert not bad, "\n".join(bad)


def test_every_package_of_pyraft_has_its_layer():
    listed = {package for _, packages in LAYERS for package in packages}
    for path in sorted((SRC / "pyraft").iterdir()):
        if path.name.startswith(("_", ".")) and path.name != "__main__.py":
            continue
        if path.suffix == ".py" or (path / "__init__.py").exists():
            assert f"pyraft.{path.stem}" in listed, f"pyraft.{path.stem} has no layer"


@pytest.mark.parametrize("module, source, upward", [
    ("pyraft.core.raft", "from pyraft.config import ClusterConfig", True),
    ("pyraft.config", "import pyraft.storage.log", True),
    ("pyraft.metrics", "from pyraft.cluster.runtime import RaftCluster", True),
    ("pyraft.cluster.ledger", "import pyraft", True),
    ("pyraft.metrics",
     "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pyraft.cluster import x\n",
     False),
    ("pyraft.cluster.runtime", "from pyraft.transport.tcp import TcpTransport", False),
    ("pyraft.testing.member", "from pyraft.bench.load import run_load", False),
])
def test_the_layer_order_sees_an_import_from_above(module, source, upward):
    path = SRC.joinpath(*module.split(".")).with_suffix(".py")
    names = imports_of(path, source, module, type_checking=False)
    assert bool(upward_imports(module, names)) is upward, names


VIOLATIONS = [
    (package, f"import {name}.x" if name != "pyraft" else "import pyraft")
    for package, banned, _ in LAYER_RULES for name in sorted(banned)]


@pytest.mark.parametrize("package, source", VIOLATIONS)
def test_each_layer_rule_catches_a_forbidden_import(package, source):
    path = SRC.joinpath(*package.split("."), "added_later.py")
    module = f"{package}.added_later"
    found = layer_violations(module, imports_of(path, source, module))
    assert found and all(rule == package for rule, _, _ in found), found


@pytest.mark.parametrize("module, source, expected", [
    ("pyraft.cluster.ledger", "from pyraft import testing", "pyraft.testing"),
    ("pyraft.cluster.ledger", "from ..bench.load import run_load", "pyraft.bench.load"),
    ("pyraft.cluster", "from ..kv import client", "pyraft.kv"),
    ("pyraft.storage.log", "def f():\n    from pyraft.playground import run\n",
     "pyraft.playground"),
    ("pyraft.transport.tcp",
     "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pyraft.kv.node\n",
     "pyraft.kv.node"),
    ("pyraft.config", "import importlib\nimportlib.import_module('pyraft.testing.sim')\n",
     "pyraft.testing.sim"),
    ("pyraft.bench.workloads", "from pyraft.playground import KVNode", "pyraft.playground"),
    ("raftcore.wal", "__import__('pyraft.errors')", "pyraft.errors"),
])
def test_the_checker_sees_every_way_of_importing(module, source, expected):
    is_package = module in ("pyraft.cluster",)
    path = SRC.joinpath(*module.split("."), "__init__.py") if is_package else \
        SRC.joinpath(*module.split(".")).with_suffix(".py")
    names = imports_of(path, source, module)
    assert expected in names
    assert layer_violations(module, names)


@pytest.mark.parametrize("module, source", [
    ("pyraft.cluster.runtime", "from pyraft.core import RaftNode\nimport pyraft.storage.log"),
    ("pyraft.bench.workloads", "from pyraft.testing.processes import KVNode"),
    ("pyraft.testing.member", "from pyraft.bench.load import run_load"),
    ("pyraft.playground", "from pyraft.kv.client import KVClient"),
    ("pyraft.kv.node", "from pyraft.cluster.runtime import RaftCluster"),
    ("pyraft.configuration", "import pyraft.kv"),  # a name that only starts like a layer's
])
def test_allowed_imports_are_not_reported(module, source):
    path = SRC.joinpath(*module.split(".")).with_suffix(".py")
    assert layer_violations(module, imports_of(path, source, module)) == []


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
    facts = json.loads(result.stdout)
    import raftcore.crc

    # a plain build (what the tests install) says so; a RAFTCORE_PGO=1 build says it is one
    # (tests/packaging/test_pgo.py builds one)
    assert facts["profile_guided"] is raftcore.crc.PROFILE_GUIDED
    assert ("profile-guided" in facts["build"]) is raftcore.crc.PROFILE_GUIDED
