"""The typing stubs of the compiled kernels name only what the modules have: every function,
constant, class, method and property a ``raftcore/_*.pyi`` declares exists on the module
it describes (a stub that promises more than the kernel gives misleads every type checker)."""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest

import raftcore

STUBS = sorted(pathlib.Path(raftcore.__file__).parent.glob("_*.pyi"))


def _declared(tree: ast.Module) -> tuple[set[str], dict[str, set[str]]]:
    names: set[str] = set()
    members: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            members[node.name] = {
                item.name for item in node.body
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
            }
    return names, members


def test_every_compiled_kernel_has_a_stub():
    assert {path.stem for path in STUBS} >= {"_clock", "_crc", "_framing", "_index", "_phi",
                                             "_wal"}


@pytest.mark.parametrize("stub", STUBS, ids=lambda path: path.stem)
def test_a_stub_names_only_what_its_module_has(stub):
    module = importlib.import_module(f"raftcore.{stub.stem}")
    names, members = _declared(ast.parse(stub.read_text()))
    private = {"_Ints", "_SegmentDeleter"}  # aliases and protocols only the type checker has
    missing = sorted(n for n in names - private if not hasattr(module, n))
    assert not missing, f"{stub.name} declares what {module.__name__} lacks: {missing}"
    for cls, methods in members.items():
        if cls in private:
            continue
        target = getattr(module, cls)
        absent = sorted(m for m in methods if not hasattr(target, m))
        assert not absent, f"{stub.name}: {cls} lacks {absent}"
