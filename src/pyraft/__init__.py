"""pyraft: a Raft consensus engine for Python services.

The protocol core (``pyraft.core``) is pure and deterministic; the compiled kernels
(``raftcore``) do the byte-level work. See README.md and docs/.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyraft import _compiled
from raftcore._version import __version__

_compiled.install()  # before any compiled module loads: see pyraft._compiled

if TYPE_CHECKING:  # what type checkers see; at run time __getattr__ imports it on first use
    from pyraft.cluster import RaftCluster

__all__ = ["RaftCluster", "__version__"]


def __getattr__(name: str) -> object:
    # ``pyraft.RaftCluster`` without importing the runtime for every ``import pyraft``
    if name == "RaftCluster":
        from pyraft.cluster import RaftCluster

        return RaftCluster
    raise AttributeError(f"module 'pyraft' has no attribute {name!r}")
