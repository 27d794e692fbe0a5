"""Choose between a compiled kernel and its pure-Python twin, once, at import.

The compiled kernels are required. If one is missing the import fails loudly with build
instructions: a silently slow CRC or framing path would surface much later as missed
heartbeats and spurious elections. ``PYRAFT_NO_EXTENSIONS=1`` forces the pure-Python twins;
that is for tests (the twins are the oracle) and for debugging, never a fallback.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

USE_TWINS: bool = os.environ.get("PYRAFT_NO_EXTENSIONS", "") not in ("", "0")

_MISSING = """raftcore: the compiled kernel raftcore.{name} cannot be imported ({exc}).
raftcore needs its compiled kernels. Reinstall from a wheel for your platform, or build from
source with a C compiler present:  pip install --force-reinstall --no-binary raftcore raftcore
(from a checkout:  pip install .). To run on the slow pure-Python twins on purpose, set
PYRAFT_NO_EXTENSIONS=1."""


def load(name: str) -> ModuleType:
    """Return ``raftcore._<name>`` (compiled) or ``raftcore._<name>_py`` (twin, when forced)."""
    if USE_TWINS:
        return importlib.import_module(f"raftcore._{name}_py")
    try:
        return importlib.import_module(f"raftcore._{name}")
    except ImportError as exc:
        raise ImportError(_MISSING.format(name=name, exc=exc)) from exc
