"""State-machine base classes: what the runtime applies committed entries to.

The runtime drives every state machine through the same small surface (:class:`StateMachine`):

- ``recover(log, commit_index, snapshot, sink=...)`` once at start: take the runtime's
  snapshot sink, restore the snapshot (if any), then replay the committed entries after it,
  ``(snapshot.meta.index, commit_index]`` and never beyond: an entry past the commit index
  may still be replaced by a new leader;
- ``apply_batch(batch)`` for every committed batch of a ``Ready``, in log order, without gaps;
  it returns one result per entry (``None`` for no-op and configuration entries, which never
  reach user code);
- ``install_snapshot(snapshot)`` when the leader sent a snapshot (InstallSnapshot);
- ``force_compaction()`` to take a snapshot now, ``start()`` / ``close()`` around the whole.

Three families implement it:

- :class:`MemoryStateMachine`: the user's state lives in memory; it is rebuilt at start from
  the latest snapshot plus a replay of the log. The user writes ``apply`` and a snapshot
  builder; the compaction policy (``sequential``, ``background``, ``incremental``) decides when
  and where snapshots are built.
- :class:`DiskStateMachine`: the user's state lives in the user's own durable store, which is
  its own snapshot; start replays only what the store had not made durable.
- :class:`ConsensusOnlyState`: no user data at all (the runtime's default): its empty
  snapshots keep the member's log bounded.

Snapshots leave a state machine through ``snapshot_sink(index, data_or_chunks)``, a callable
given at construction or, by the runtime, as ``recover``'s ``sink`` argument (nothing assigns
the attribute from outside). The runtime's sink goes to the snapshot store and to log
compaction: ``index`` is the last entry
the snapshot covers (the runtime looks up its term and configuration), ``data_or_chunks`` is
``bytes``, an iterable of ``bytes`` chunks that the sink must consume before it returns, or
``None`` for a disk state machine (its store is the snapshot, durable up to ``index``: the
runtime records a snapshot of metadata only, an external snapshot, and then the log prefix up
to ``index`` may go). The sink runs in the thread that applies, except with the ``background``
policy, where it runs in the worker thread (the runtime then hops to its loop, e.g. with
``call_soon_threadsafe``). Without a sink no state machine takes an automatic snapshot.

Failures. An exception raised by the user's ``apply`` (or while restoring a snapshot) leaves
the state half-done: it propagates, and every later ``apply_batch`` raises
``InvariantError``; the node must stop, and a new instance recovers from the snapshot and the
log. A failed
compaction (the builder or the sink raised) leaves the state intact: the exception is kept and
raised by the next ``apply_batch`` (before it applies anything), ``force_compaction`` or
``close``; the compaction is retried after the next batch. So ``apply_batch`` either raises
before applying anything or applies the whole batch and returns every result, except when the
user's own ``apply`` raised.

Threads. Applies, ``recover`` and ``install_snapshot`` hold the state machine's apply lock;
``force_compaction`` may be called from any thread and takes the same lock. Only the
``background`` policy starts a thread (in ``start()``, joined by ``close()``).
"""

from __future__ import annotations

import importlib.machinery
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

import msgpack

import pyraft.storage.applier
from pyraft.config import SNAPSHOT_ENTRIES_DEFAULT
from pyraft.core.membership import Configuration
from pyraft.core.messages import Snapshot
from pyraft.core.storage import LogStorage
from pyraft.errors import ConfigError, LogCompactedError, invariant
from pyraft.storage.applier import Applier
from raftcore.framing import EntryBatch

_SM = TypeVar("_SM", bound="StateMachine")

__all__ = [
    "COMPACTION_MODES",
    "REPLAY_BYTES_MAX",
    "SNAPSHOT_ENTRIES_DEFAULT",
    "SnapshotData",
    "SnapshotSink",
    "StateMachine",
    "MemoryStateMachine",
    "DiskStateMachine",
    "ConsensusOnlyState",
]

#: ``bytes``, an iterable of ``bytes`` chunks, or ``None`` (a disk state machine's store)
SnapshotData = bytes | Iterable[bytes] | None
SnapshotSink = Callable[[int, SnapshotData], None]

COMPACTION_MODES = ("sequential", "background", "incremental")
#: whether a state machine is given a dictionary of its own keys (``StateMachine.__init__``):
#: an instance of a Python class built on a compiled one (``Applier``, compiled) starts
#: without the inline attribute storage CPython gives instances of Python classes, and the
#: dictionary its first assignment makes shares its keys with the class. CPython 3.11's
#: specialized attribute access misses on every such dictionary (3.12's is slower on it
#: too), so each ``self.x`` in the user's ``apply``, several per write, took the generic
#: lookup (3.11: a method reading one attribute, 36 ns against 23 ns). 3.13 keeps both fast;
#: the pure build's instances have the inline storage.
OWN_DICTIONARY = isinstance(getattr(pyraft.storage.applier, "__loader__", None),
                            importlib.machinery.ExtensionFileLoader) \
    and sys.version_info < (3, 13)  # the loader test of pyraft._compiled.is_compiled
#: byte budget of one batch read from the log while ``recover`` replays it
REPLAY_BYTES_MAX = 4 * 1024 * 1024

_INCREMENTAL_KEY_TYPES = (int, str, bytes)


def _checked_snapshot_entries(value: object) -> int:
    if type(value) is not int or value < 1:
        raise ConfigError("snapshot_entries", f"must be an integer >= 1, not {value!r}")
    return value


class StateMachine(Applier, ABC):
    """What the runtime drives; see the module docstring for the contract.

    ``apply_batch`` and the state it guards (``_applied_index``, ``_snapshot_index``,
    ``_broken``, ``_failure``, ``_closed``, the apply lock ``_lock``) are ``Applier``'s, the
    compiled part every committed batch passes through (``pyraft.storage.applier``); a
    subclass hooks into it through ``_apply_entries`` and ``_after_apply``.
    """

    def __init__(self, *, snapshot_sink: SnapshotSink | None = None) -> None:
        super().__init__()  # cooperative: a mixin such as CommandInterpreter may follow
        if OWN_DICTIONARY:  # the attributes set so far kept (see OWN_DICTIONARY)
            object.__setattr__(self, "__dict__", dict(vars(self)))
        #: where snapshots go (see the module docstring); may be assigned before ``start()``
        self.snapshot_sink = snapshot_sink
        self._lock = threading.Lock()
        self._cv = threading.Condition()
        self._applied_index = 0
        self._snapshot_index = 0
        self._broken = None
        self._failure = None
        self._closed = False
        self.snapshot_entries = 0  # ``_after_apply`` after every batch (``Applier``)
        self._plain_entries = type(self)._apply_entries is Applier._apply_entries
        self._commands = type(self).apply_commands  # a function of the class (Applier)

    # ---- what the user implements --------------------------------------------------------
    @abstractmethod
    def apply(self, index: int, command: memoryview) -> object:
        """Apply one command; the return value is the result the proposer receives.

        ``command`` is a view into the batch's buffer: copy it (``bytes(command)``) to keep it.
        Must be deterministic: every member applies the same commands in the same order.
        """

    def apply_commands(self, batch: EntryBatch) -> list[object]:
        """Apply a batch holding only command entries; return one result per entry.

        Override it to apply a batch faster than one ``apply`` call per entry (the batch's
        ``kinds``/``terms``/``offsets`` arrays and ``payloads()`` are there for that). The
        framework never passes no-op or configuration entries here.
        """
        apply = self.apply
        return [apply(index, payload) for index, _term, _kind, payload in batch]

    # ---- what the runtime drives ---------------------------------------------------------
    @property
    def applied_index(self) -> int:
        return self._applied_index

    @property
    def snapshot_index(self) -> int:
        """The last entry covered by the latest snapshot produced, restored or installed."""
        return self._snapshot_index

    def start(self) -> None:
        """Start what runs beside the applies (only the ``background`` policy has a worker)."""
        invariant(not self._closed, "start() after close()")

    def close(self) -> None:
        """Stop and join any worker, then report a compaction failure not yet reported.

        Idempotent; nothing may be applied afterwards.
        """
        self._closed = True
        self._raise_failure()

    def __enter__(self: _SM) -> _SM:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def recover(
        self,
        log: LogStorage,
        commit_index: int,
        snapshot: Snapshot | None = None,
        *,
        sink: SnapshotSink | None = None,
        replay_bytes_max: int = REPLAY_BYTES_MAX,
    ) -> int:
        """Rebuild the state at start: the snapshot (if any), then the committed entries after
        it up to ``commit_index`` and no further. Returns the applied index.

        ``sink`` is where snapshots go from now on (the runtime passes its own, before the
        replay, which may take a snapshot already); a sink given at construction is kept.

        Call once, on a fresh instance, before ``start()``. The log must still hold every entry
        after the restored point (``LogCompactedError`` otherwise); ``commit_index`` below the
        restored point replays nothing (the commit index in the hard state is only a hint).
        """
        if sink is not None and self.snapshot_sink is None:
            self.snapshot_sink = sink
        with self._lock:
            invariant(not self._closed, "recover() after close()")
            invariant(
                self._applied_index == 0 and self._broken is None,
                "recover() is for a fresh state machine",
            )
            self._recover_base(log, commit_index, snapshot)
        lo, hi = self._applied_index + 1, commit_index + 1
        while lo < hi:
            batch = log.entries(lo, hi, replay_bytes_max)
            invariant(
                len(batch) > 0 and batch.first_index == lo,
                f"the log returned entries from {batch.first_index} ({len(batch)}) for {lo}",
            )
            self.apply_batch(batch)
            lo = batch.last_index + 1
        return self._applied_index

    @abstractmethod
    def install_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole state by a snapshot received from the leader."""

    @abstractmethod
    def force_compaction(self) -> int:
        """Take a snapshot now at the applied index; return the index it covers."""

    # ---- for subclasses ----------------------------------------------------------------
    @abstractmethod
    def _recover_base(self, log: LogStorage, commit_index: int, snapshot: Snapshot | None) -> None:
        """Restore the durable base of the state (under the apply lock); set the indexes."""

    def _report_failure(self, exc: BaseException) -> None:
        with self._cv:
            if self._failure is None:
                self._failure = exc
            self._cv.notify_all()

    def _sink(self, index: int, data: SnapshotData) -> None:
        sink = self.snapshot_sink
        if sink is not None:
            sink(index, data)


class MemoryStateMachine(StateMachine):
    """A state machine whose state lives in memory, rebuilt from a snapshot plus the log.

    The user implements ``apply(index, command)`` (or ``apply_commands(batch)`` for speed) and
    ``restore_snapshot(data)``, plus the snapshot builder of the chosen ``compaction`` policy:

    ``"sequential"`` (default)
        ``build_snapshot()`` returns ``bytes`` or an iterator of chunks describing the state at
        the applied index. After a batch that brings the entries applied since the last
        snapshot to ``snapshot_entries`` or more, the snapshot is built and handed to the sink
        inline, in the thread that applies, before ``apply_batch`` returns; so snapshots fall
        on batch ends (a batch is never split), and applies wait for the build.

    ``"background"``
        Applies continue while a worker thread builds. At the same point as above (and only
        when no build is in flight), ``capture()`` runs in the applying thread under the apply
        lock, with the state exactly at the snapshot index, and returns a consistent copy (a
        deep copy, an immutable structure, a copy-on-write handle: anything that later applies
        cannot change). The worker then calls ``build_snapshot_from(captured)`` and hands the
        result to the sink, in the worker thread; neither may touch the live state. The worker
        runs between ``start()`` and ``close()``; ``close()`` lets the build in flight finish
        (its sink call included) and joins the worker. While the worker is not running no
        automatic snapshot is taken. At most one build is in flight, so sink calls are in
        increasing index order; a snapshot installed from the leader meanwhile does not cancel
        a build in flight, so the sink may receive an index below the runtime's latest
        snapshot, which it then ignores.

    ``"incremental"``
        Each snapshot is the previous one updated with the keys changed since. The state is a
        mapping of keys (``int``, ``str`` or ``bytes``) to values; ``apply`` calls
        ``self.mark_dirty(key)`` for every key it sets or deletes. At a snapshot point (as for
        ``sequential``, inline), the framework calls ``snapshot_item(key)`` once per dirty key:
        it returns the key's current value encoded as ``bytes``, or ``None`` when the key is
        absent. The framework keeps the encoded items of the last snapshot and emits them as
        one msgpack map; building costs one ``snapshot_item`` per changed key instead of
        encoding the whole state, at the price of keeping the encoded copy in memory. Restoring
        calls ``restore_items(items)`` with a read-only mapping of key to encoded value (valid
        during the call only), which replaces the whole state. ``build_snapshot`` and
        ``restore_snapshot`` are not used.

    ``None``
        No automatic snapshot; ``force_compaction()`` uses ``build_snapshot()``.

    ``build_snapshot()`` defaults to ``build_snapshot_from(capture())``: a class written for
    ``background`` works with every policy.
    """

    def __init__(
        self,
        *,
        compaction: str | None = "sequential",
        snapshot_entries: int = SNAPSHOT_ENTRIES_DEFAULT,
        snapshot_sink: SnapshotSink | None = None,
    ) -> None:
        super().__init__(snapshot_sink=snapshot_sink)
        if compaction is not None and compaction not in COMPACTION_MODES:
            raise ConfigError("compaction", f"{compaction!r} is not one of {COMPACTION_MODES}")
        self.compaction = compaction
        self.snapshot_entries = _checked_snapshot_entries(snapshot_entries)
        self._check_hooks()
        #: the index of the last snapshot taken, including a build in flight: the automatic
        #: policies count ``snapshot_entries`` from here (``_snapshot_index <= _taken_index``)
        self._taken_index = 0
        # background worker (guarded by ``_cv``): ``_job`` is the build queued or in flight
        self._worker: threading.Thread | None = None
        self._job: tuple[int, object] | None = None
        self._stopping = False
        # incremental policy: keys changed since the last snapshot, and its encoded items
        self._dirty: set[Hashable] = set()
        self._items: dict[Hashable, bytes] = {}

    # ---- what the user implements (the policy decides which) -------------------------------
    def build_snapshot(self) -> bytes | Iterable[bytes]:
        """The state at the applied index, as ``bytes`` or an iterator of chunks."""
        return self.build_snapshot_from(self.capture())

    def restore_snapshot(self, data: bytes) -> None:
        """Replace the whole state by the one ``data`` (from a snapshot builder) describes."""
        raise NotImplementedError(f"{type(self).__name__} must implement restore_snapshot()")

    def capture(self) -> object:
        """A consistent copy of the state, safe to read while applies continue."""
        raise NotImplementedError(f"{type(self).__name__} must implement capture()")

    def build_snapshot_from(self, captured: object) -> bytes | Iterable[bytes]:
        """The snapshot of a state returned by ``capture()`` (runs in the worker thread)."""
        raise NotImplementedError(f"{type(self).__name__} must implement build_snapshot_from()")

    def snapshot_item(self, key: Any) -> bytes | None:
        """Incremental policy: the encoded current value of ``key``, ``None`` when absent."""
        raise NotImplementedError(f"{type(self).__name__} must implement snapshot_item()")

    def restore_items(self, items: Mapping[Any, bytes]) -> None:
        """Incremental policy: replace the whole state by these encoded items."""
        raise NotImplementedError(f"{type(self).__name__} must implement restore_items()")

    def mark_dirty(self, key: int | str | bytes) -> None:
        """Incremental policy: ``key`` was set or deleted by the command being applied.

        Does nothing under the other policies (so one ``apply`` serves every policy).
        """
        if self.compaction != "incremental":
            return
        if type(key) not in _INCREMENTAL_KEY_TYPES:
            raise TypeError(f"incremental snapshot keys are int, str or bytes, not {type(key)}")
        self._dirty.add(key)

    # ---- the runtime's side --------------------------------------------------------------
    def start(self) -> None:
        super().start()
        if self.compaction != "background":
            return
        with self._cv:
            invariant(self._worker is None, "start() called twice")
            self._stopping = False
            self._worker = threading.Thread(
                target=self._run_worker, name="pyraft-compaction", daemon=True
            )
            self._worker.start()

    def close(self) -> None:
        with self._cv:
            self._stopping = True
            worker, self._worker = self._worker, None
            self._cv.notify_all()
        if worker is not None:
            worker.join()
        super().close()

    def install_snapshot(self, snapshot: Snapshot) -> None:
        index = snapshot.meta.index
        with self._lock:
            invariant(
                index >= self._applied_index,
                f"snapshot at {index} is older than the applied index {self._applied_index}",
            )
            try:
                self._restore(snapshot.data)
            except BaseException:
                self._broken = f"restoring the snapshot at {index} raised"
                raise
            with self._cv:
                self._applied_index = self._snapshot_index = index
                self._taken_index = max(self._taken_index, index)

    def force_compaction(self) -> int:
        """Take a snapshot at the applied index now and hand it to the sink before returning.

        In the ``background`` policy with the worker running, the build runs in the worker
        (after the one in flight, if any) and this call waits for it; otherwise it runs in the
        calling thread. Returns the snapshot's index (nothing is taken when no entry was applied
        since the last snapshot). A failure is raised here.
        """
        self._raise_failure()
        invariant(self.snapshot_sink is not None, "force_compaction() without a snapshot_sink")
        if self.compaction == "background":
            return self._force_background()
        with self._lock:
            index = self._applied_index
            if index > self._taken_index:
                self._sink(index, self._build())
                self._taken_index = self._snapshot_index = index
            return self._taken_index

    # ---- internals -----------------------------------------------------------------------
    def _check_hooks(self) -> None:
        cls = type(self)

        def missing(*names: str) -> list[str]:
            return [n for n in names if getattr(cls, n) is getattr(MemoryStateMachine, n)]

        if self.compaction == "background":
            absent = missing("capture", "build_snapshot_from", "restore_snapshot")
        elif self.compaction == "incremental":
            absent = missing("snapshot_item", "restore_items")
        else:
            absent = missing("restore_snapshot")
            if missing("build_snapshot") and missing("capture", "build_snapshot_from"):
                absent.append("build_snapshot")
        if absent:
            raise TypeError(
                f"{cls.__name__} uses compaction={self.compaction!r} and must implement "
                + ", ".join(absent)
            )

    def _recover_base(self, log: LogStorage, commit_index: int, snapshot: Snapshot | None) -> None:
        if snapshot is not None and snapshot.meta.index > 0:
            index = snapshot.meta.index
            try:
                self._restore(snapshot.data)
            except BaseException:
                self._broken = f"restoring the snapshot at {index} raised"
                raise
            self._applied_index = self._snapshot_index = self._taken_index = index

    def _restore(self, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            # a stored snapshot's file-backed data: a memory state machine restores from
            # bytes, so the file is read whole, once (its state is in memory anyway)
            data = bytes(data[0 : len(data)])
        if self.compaction != "incremental":
            self.restore_snapshot(data)
            return
        items = msgpack.unpackb(data, strict_map_key=False) if len(data) else {}
        if not isinstance(items, dict):
            raise ValueError("an incremental snapshot is a msgpack map of key to bytes")
        self._items = items
        self._dirty = set()
        self.restore_items(MappingProxyType(items))

    def _build(self) -> bytes | Iterable[bytes]:
        if self.compaction != "incremental":
            return self.build_snapshot()
        items, item = self._items, self.snapshot_item
        for key in self._dirty:
            value = item(key)
            if value is None:
                items.pop(key, None)
            else:
                items[key] = bytes(value)
        self._dirty = set()
        packed: bytes = msgpack.packb(items)
        return packed

    def _after_apply(self) -> None:
        if (
            self.compaction is None
            or self.snapshot_sink is None
            or self._applied_index - self._taken_index < self.snapshot_entries
        ):
            return
        if self.compaction == "background":
            self._submit_background()
            return
        index = self._applied_index
        try:
            self._sink(index, self._build())
        except Exception as exc:  # reported by the next call; the state is intact
            self._report_failure(exc)
            return
        self._taken_index = self._snapshot_index = index

    def _submit_background(self) -> tuple[int, object] | None:
        """Capture the state for the worker (under the apply lock); None when it is busy."""
        with self._cv:
            if self._worker is None or self._stopping or self._job is not None:
                return None
        index = self._applied_index
        try:
            job = (index, self.capture())
        except Exception as exc:
            self._report_failure(exc)
            return None
        with self._cv:
            self._job = job
            self._taken_index = index
            self._cv.notify_all()
        return job

    def _force_background(self) -> int:
        while True:
            with self._cv:
                while self._job is not None and self._failure is None:
                    self._cv.wait()
                running = self._worker is not None and not self._stopping
            self._raise_failure()
            with self._lock:
                index = self._applied_index
                if not running:
                    # no worker: build here, holding the apply lock (nothing runs beside)
                    if index > self._taken_index:
                        self._sink(index, self.build_snapshot_from(self.capture()))
                        with self._cv:
                            self._taken_index = self._snapshot_index = index
                    return self._taken_index
                with self._cv:
                    job = self._job
                if index > self._taken_index:
                    job = self._submit_background()
                    if job is None:
                        continue  # an automatic build was submitted meanwhile: wait for it
                index = self._taken_index
            with self._cv:
                while job is not None and self._job is job and self._failure is None:
                    self._cv.wait()
            self._raise_failure()
            return index

    def _run_worker(self) -> None:
        while True:
            with self._cv:
                while self._job is None and not self._stopping:
                    self._cv.wait()
                job = self._job
                if job is None:
                    return
            index, captured = job
            failure: BaseException | None = None
            try:
                self._sink(index, self.build_snapshot_from(captured))
            except BaseException as exc:  # kept for the applying thread; the worker goes on
                failure = exc
            with self._cv:
                if failure is None:
                    self._snapshot_index = max(self._snapshot_index, index)
                else:
                    if self._failure is None:
                        self._failure = failure
                    if self._taken_index == index:
                        self._taken_index = self._snapshot_index  # retried after a batch
                self._job = None
                self._cv.notify_all()


class DiskStateMachine(StateMachine):
    """A state machine whose state lives in the user's durable store, its own snapshot.

    The user implements:
    - ``apply(index, command)`` (or ``apply_commands``), writing to the store;
    - ``persisted_index()``: the last index whose effects are durable in the store (0 for an
      empty store); it must never exceed the applied index;
    - ``flush()``: make every applied entry durable (``persisted_index()`` then equals the
      applied index);
    - ``export_snapshot()``: an iterator of ``bytes`` chunks describing the store as of the
      moment of the call (right after a ``flush()``, so at ``persisted_index()``), which stays
      valid while applies continue (a read transaction, a checkpoint, a copied file);
    - ``import_snapshot(chunks, index)``: replace the whole store by the chunks of another
      member's ``export_snapshot()`` and make it durable at ``index``.

    ``recover`` replays the committed entries after ``persisted_index()``. After a batch that
    brings the entries applied since the last flush to ``snapshot_entries`` or more, the
    applying thread calls ``flush()`` and then the sink with ``(persisted_index(), None)``: the
    runtime durably records an external snapshot at that index (its term and configuration,
    no data), and only then releases the log up to there. ``open_snapshot()`` gives the
    runtime what to send in an InstallSnapshot (it spools the chunks to a temporary file on a
    thread of its own, while applies continue); a follower receives it through
    ``install_chunks``. ``close()`` flushes.
    """

    def __init__(
        self,
        *,
        snapshot_entries: int = SNAPSHOT_ENTRIES_DEFAULT,
        snapshot_sink: SnapshotSink | None = None,
    ) -> None:
        super().__init__(snapshot_sink=snapshot_sink)
        self.snapshot_entries = _checked_snapshot_entries(snapshot_entries)

    @abstractmethod
    def persisted_index(self) -> int: ...

    @abstractmethod
    def flush(self) -> None: ...

    @abstractmethod
    def export_snapshot(self) -> Iterable[bytes]: ...

    @abstractmethod
    def import_snapshot(self, chunks: Iterable[bytes], index: int) -> None: ...

    def open_snapshot(self) -> tuple[int, Iterator[bytes]]:
        """Flush, then return ``(index, chunks)``: the store's state at ``index``."""
        with self._lock:
            self.flush()
            index = self.persisted_index()
            chunks = iter(self.export_snapshot())
            self._snapshot_index = max(self._snapshot_index, index)
        return index, chunks

    def install_snapshot(self, snapshot: Snapshot) -> None:
        self.install_chunks(snapshot.meta.index, (snapshot.data,))

    def install_chunks(self, index: int, chunks: Iterable[bytes]) -> None:
        """Replace the store by a snapshot at ``index`` arriving as chunks."""
        with self._lock:
            invariant(
                index >= self._applied_index,
                f"snapshot at {index} is older than the applied index {self._applied_index}",
            )
            try:
                self.import_snapshot(chunks, index)
            except BaseException:
                self._broken = f"importing the snapshot at {index} raised"
                raise
            persisted = self.persisted_index()
            invariant(
                persisted == index,
                f"import_snapshot left persisted_index() at {persisted}, not {index}",
            )
            self._applied_index = self._snapshot_index = index

    def force_compaction(self) -> int:
        """Flush now; hand ``(persisted_index(), None)`` to the sink; return that index."""
        self._raise_failure()
        with self._lock:
            return self._flush_and_report()

    def close(self) -> None:
        try:
            if not self._closed and self._broken is None:
                with self._lock:
                    self.flush()
        finally:
            super().close()

    def _flush_and_report(self) -> int:
        self.flush()
        index = self.persisted_index()
        invariant(
            index <= self._applied_index,
            f"persisted_index() {index} is past the applied index {self._applied_index}",
        )
        if index > self._snapshot_index:
            self._sink(index, None)
            self._snapshot_index = index
        return self._snapshot_index

    def _recover_base(self, log: LogStorage, commit_index: int, snapshot: Snapshot | None) -> None:
        persisted = self.persisted_index()
        first = log.first_index()
        if snapshot is not None and snapshot.meta.index > persisted:
            raise LogCompactedError(
                f"the store is durable up to {persisted} but the snapshot covers up to "
                f"{snapshot.meta.index}: the store lost data"
            )
        if persisted < commit_index and persisted + 1 < first:
            raise LogCompactedError(
                f"the store is durable up to {persisted} but the log starts at {first}: "
                f"entries {persisted + 1}..{first - 1} are gone"
            )
        self._applied_index = self._snapshot_index = persisted

    def _after_apply(self) -> None:
        # called once ``snapshot_entries`` are applied past the snapshot (``Applier``)
        try:
            self._flush_and_report()
        except Exception as exc:
            self._report_failure(exc)


class ConsensusOnlyState(StateMachine):
    """No user data: what a member applies to when it is given no state machine (the
    runtime's ``state_machine=None``), on memory and durable storage alike.

    Applying only advances the applied index (and follows configuration entries:
    ``configuration`` is the last one applied). The log it would otherwise grow without
    bound is not its own: after a batch that brings the entries applied since the last
    snapshot to ``snapshot_entries`` or more, it hands an empty snapshot ``(applied_index,
    b"")`` to the sink, in the applying thread, and the runtime records it (with the term
    and configuration at that index) in the member's log storage and releases the log up to
    there, in memory or on disk. Without a sink it takes no automatic snapshot.

    ``install_snapshot`` takes the leader's snapshot (its data is empty; its configuration
    becomes ``configuration``); ``recover`` restores the applied index from the storage's
    snapshot and replays the committed configuration entries after it.
    """

    def __init__(
        self,
        configuration: Configuration | None = None,
        *,
        snapshot_entries: int = SNAPSHOT_ENTRIES_DEFAULT,
        snapshot_sink: SnapshotSink | None = None,
    ) -> None:
        super().__init__(snapshot_sink=snapshot_sink)
        self.snapshot_entries = _checked_snapshot_entries(snapshot_entries)
        #: the configuration of the last applied configuration entry (or the initial one)
        self._configuration = configuration or Configuration(frozenset())

    @property
    def configuration(self) -> Configuration:
        """The configuration of the last applied configuration entry (or the initial one)."""
        return self._configuration

    def apply(self, index: int, command: memoryview) -> object:
        return None

    def install_snapshot(self, snapshot: Snapshot) -> None:
        meta = snapshot.meta
        with self._lock:
            invariant(
                meta.index >= self._applied_index,
                f"snapshot at {meta.index} is older than the applied index {self._applied_index}",
            )
            if meta.voters or meta.learners:
                self._configuration = Configuration.from_snapshot(meta)
            self._applied_index = self._snapshot_index = meta.index

    def force_compaction(self) -> int:
        """Hand ``(applied_index, b"")`` to the sink now (unless a snapshot covers it
        already); return the index the latest snapshot covers."""
        self._raise_failure()
        with self._lock:
            if self._applied_index > self._snapshot_index:
                self._take_snapshot()
            return self._snapshot_index

    def _recover_base(self, log: LogStorage, commit_index: int, snapshot: Snapshot | None) -> None:
        if snapshot is None or snapshot.meta.index == 0:
            _, initial = log.initial_state()
            if initial is not None:
                self._configuration = initial
            return
        meta = snapshot.meta
        if meta.voters or meta.learners:
            self._configuration = Configuration.from_snapshot(meta)
        self._applied_index = self._snapshot_index = meta.index

    def _apply_entries(self, batch: EntryBatch) -> list[object]:
        positions = batch.config_positions
        if len(positions):
            self._configuration = Configuration.decode(batch.payload(int(positions[-1])))
        return [None] * len(batch)

    def _after_apply(self) -> None:
        # called once ``snapshot_entries`` are applied past the snapshot (``Applier``)
        if self.snapshot_sink is None:
            return
        try:
            self._take_snapshot()
        except Exception as exc:  # reported by the next call; nothing was released
            self._report_failure(exc)

    def _take_snapshot(self) -> None:
        index = self._applied_index
        self._sink(index, b"")
        self._snapshot_index = index
