"""pyraft: a Raft consensus engine for Python services.

The protocol core (``pyraft.core``) is pure and deterministic; the compiled kernels
(``raftcore``) do the byte-level work. See README.md and docs/.
"""

__version__ = "0.1.0.dev0"


def __getattr__(name: str):
    # ``pyraft.RaftCluster`` without importing the runtime for every ``import pyraft``
    if name == "RaftCluster":
        from pyraft.cluster import RaftCluster

        return RaftCluster
    raise AttributeError(name)
