"""Both implementations of a kernel: the compiled one and its pure-Python twin (the oracle).

Kernel tests run every case against each. With PYRAFT_NO_EXTENSIONS=1 only the twin runs.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from raftcore._select import USE_TWINS


def implementations(name: str) -> list[ModuleType]:
    twin = importlib.import_module(f"raftcore._{name}_py")
    if USE_TWINS:
        return [twin]
    return [importlib.import_module(f"raftcore._{name}"), twin]


def implementation_id(module: ModuleType) -> str:
    return module.IMPLEMENTATION
