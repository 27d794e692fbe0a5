"""Which of pyraft's own modules are compiled, and the switch between the two builds.

The core and the per-write path are ordinary ``.py`` files, the ones the deterministic
simulator drives; ``setup.py`` compiles the same files with Cython (typed through the
augmenting ``.pxd`` beside each), so one source gives two builds:

- compiled (the default): every module in :data:`MODULES` is its extension module. One
  that is missing is a loud ``ImportError`` with build instructions, as for the kernels: a
  silently pure core would be several times slower and nobody would know why;
- pure: ``PYRAFT_PURE_CORE=1`` imports the ``.py`` files instead, over the compiled
  kernels (``raftcore``), and ``PYRAFT_NO_EXTENSIONS=1`` runs everything pure, kernels
  included. The pure build is the oracle of the differential tests and the baseline of the
  benchmarks; never a fallback.

The choice is made once, when ``pyraft`` is first imported (:func:`install`), by a finder
placed first on ``sys.meta_path`` that answers for :data:`MODULES` only. This file imports
nothing from pyraft: ``setup.py`` reads :data:`MODULES` from it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import CodeType, ModuleType

#: pyraft's modules compiled from their ``.py`` source (``setup.py`` builds exactly these)
MODULES: tuple[str, ...] = (
    # the core, typed by the .pxd beside each module (extension classes, 64-bit fields)
    "pyraft.core.messages",
    "pyraft.core.progress",
    "pyraft.core.storage",
    "pyraft.core.log",
    "pyraft.core.raft",
    # the core's small parts the typed ones call, and the wire codec (fuzzed against its twin)
    "pyraft.core.membership",
    "pyraft.core.confhistory",
    "pyraft.core.readonly",
    "pyraft.core.warmup",
    "pyraft.core.failure",
    "pyraft.transport.codec",
    # the core's read-only status view: the runtime reads it many times per write
    "pyraft.core.view",
    # the TCP transport's per-message path (typed classes; tcp.py keeps the rest, uncompiled)
    "pyraft.transport.stream",
    # the runtime's per-write bookkeeping: every write is queued and settled here
    "pyraft.cluster.ledger",
    "pyraft.cluster.writes",
    # the callers waiting on the log, resolved after every Ready (at once when none waits)
    "pyraft.cluster.waiters",
    # persisting each Ready: its entries written, its sync inline or on the I/O thread
    "pyraft.cluster.persist",
    # the per-Ready path: each message into the core, each Ready handled (typed by the
    # parts above: naming one of those or pyraft.instruments pure needs this one named too)
    "pyraft.cluster.engine",
    # the metrics' instruments: each handled Ready records into several of them
    "pyraft.instruments",
    # what every state machine does per committed batch (checks, the apply lock), below the
    # user's code: every member applies every batch
    "pyraft.storage.applier",
    # the durable log the core reads and the log writer appends through, several calls per
    # write (typed by log.pxd over pyraft.core.storage's class and messages' HardState: naming
    # either pure needs this one named too)
    "pyraft.storage.log",
    # the deterministic simulator's harness: the same source in both builds, so a seed's
    # trace compares across them and the compiled build runs more seeds per minute
    "pyraft.testing.sim",
)
#: Not compiled: the rest of the runtime (``pyraft.cluster``), the TCP transport's
#: connections and handshakes (``tcp.py``; its per-message path is ``stream``), the storage
#: around the log (files, hard state, snapshots), the state machines (but their per-batch
#: part, ``applier``), the metrics'
#: registries and exports (their instruments are) and the key-value service. Compiled
#: untyped, they measured slower than CPython 3.11's specializing interpreter in member
#: processes (generic attribute lookups where the interpreter has inline caches: leader user
#: CPU per write at one write in flight 190-250 us against 160-200 us pure, three member
#: processes, in memory); they join MODULES once typed.


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


#: the pure build: ``PYRAFT_PURE_CORE=1`` or ``PYRAFT_NO_EXTENSIONS=1``
PURE: bool = _flag("PYRAFT_PURE_CORE") or _flag("PYRAFT_NO_EXTENSIONS")
#: a developer's bisection tool: ``PYRAFT_PURE_MODULES=pyraft.cluster.runtime,...`` runs the
#: modules named pure and the others compiled (to find which one a difference comes from).
#: A compiled module typed with another's classes (``cimport`` in its ``.pxd``) needs that
#: one compiled: naming ``pyraft.core.raft`` pure needs ``pyraft.testing.sim`` named too
#: (``sim.pxd`` types the harness with ``RaftNode``, ``Message`` and ``Ready``), and
#: ``pyraft.core.view`` (``view.pxd`` types the view's node and log); naming
#: ``pyraft.cluster.ledger``, ``pyraft.core.raft``, ``pyraft.cluster.persist`` or
#: ``pyraft.instruments`` needs ``pyraft.cluster.writes`` (``writes.pxd`` types its ledger,
#: and the core, log writer and histogram it calls);
#: naming ``pyraft.instruments`` needs ``pyraft.cluster.persist`` (its histograms are typed);
#: naming ``pyraft.cluster.waiters`` needs ``pyraft.cluster.engine`` (``engine.pxd`` types it);
#: naming ``pyraft.core.storage`` or ``pyraft.core.messages`` needs ``pyraft.storage.log`` (its
#: class extends the core's and stores ``HardState``s), and ``pyraft.core.storage`` needs
#: ``pyraft.cluster.persist`` (the log writer calls pyraft's storages through their class).
PURE_MODULES: frozenset[str] = frozenset(
    name.strip() for name in os.environ.get("PYRAFT_PURE_MODULES", "").split(",") if name.strip())

_MISSING = """pyraft: the compiled module {name} is missing ({path}: no {suffix} beside it).
pyraft's core and write path are compiled from their .py files; a pure core would run
several times slower without saying so. Reinstall from a wheel for your platform, or build
from source with a C compiler present:  pip install --force-reinstall --no-binary raftcore
raftcore  (from a checkout:  pip install .). To run the pure build on purpose, set
PYRAFT_PURE_CORE=1."""


def _source_path(name: str) -> str:
    """The ``.py`` file of module ``name`` (in this installation)."""
    here = os.path.dirname(os.path.abspath(__file__))  # .../pyraft
    parts = name.split(".")[1:]
    return os.path.join(here, *parts) + ".py"


def _extension_path(name: str) -> str | None:
    base = _source_path(name)[: -len(".py")]
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if os.path.exists(base + suffix):
            return base + suffix
    return None


class _ExtensionLoader(importlib.machinery.ExtensionFileLoader):
    """An extension that ``python -m`` can run: its "code" imports the module and calls its
    ``main()`` (what the ``.py`` file's ``if __name__ == "__main__"`` block does)."""

    def get_code(self, fullname: str) -> CodeType:  # type: ignore[override]
        return compile(f"import sys\nfrom {fullname} import main\nsys.exit(main())\n",
                       self.path, "exec")


class _Finder:
    """Answers for :data:`MODULES`: the ``.py`` in the pure build, the extension otherwise."""

    def __init__(self, pure: bool) -> None:
        self.pure = pure
        self._names = frozenset(MODULES)

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._names:
            return None
        source = _source_path(fullname)
        if self.pure or fullname in PURE_MODULES:
            return importlib.util.spec_from_file_location(fullname, source)
        extension = _extension_path(fullname)
        if extension is None:
            raise ImportError(_MISSING.format(
                name=fullname, path=source,
                suffix=importlib.machinery.EXTENSION_SUFFIXES[0]), name=fullname)
        loader = _ExtensionLoader(fullname, extension)
        return importlib.util.spec_from_file_location(fullname, extension, loader=loader)


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once). Called by ``pyraft/__init__``."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder(PURE))  # type: ignore[arg-type]


def is_compiled(module: ModuleType) -> bool:
    """Whether ``module`` was loaded from an extension (not from its ``.py``)."""
    return isinstance(getattr(module, "__loader__", None),
                      importlib.machinery.ExtensionFileLoader)


def status() -> dict[str, str]:
    """Each module of :data:`MODULES` and how it runs here: ``compiled``, ``pure`` (forced),
    or ``missing: ...`` (the import failed)."""
    out: dict[str, str] = {}
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # surfaced, never hidden
            out[name] = f"missing: {str(exc).splitlines()[0]}"
            continue
        out[name] = "compiled" if is_compiled(module) else "pure"
    return out


def load_twin(name: str) -> ModuleType:
    """A fresh import of ``name``'s ``.py`` source under the name ``<name>__twin``, whatever
    the build: the oracle the differential fuzzers compare the compiled module against.
    Its own imports resolve as usual (to the build in use)."""
    if name not in MODULES:
        raise ValueError(f"{name} is not one of pyraft's compiled modules")
    twin_name = name + "__twin"
    if twin_name in sys.modules:
        return sys.modules[twin_name]
    spec = importlib.util.spec_from_file_location(twin_name, _source_path(name))
    if spec is None or spec.loader is None:  # pragma: no cover - the file ships with pyraft
        raise ImportError(f"cannot load the source of {name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[twin_name] = module
    spec.loader.exec_module(module)
    return module
