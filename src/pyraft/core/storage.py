"""The storage protocol the core reads through, and an in-memory implementation of it.

The core never writes storage: the runtime persists what a ``Ready`` hands it and then calls
``advance``. The core reads only through the small protocol below (``LogStorage``, like
etcd's ``Storage`` and raft-rs's ``Storage``), which raises ``LogCompactedError`` below the
first index and ``LogUnavailableError`` past the last one. The runtime talks to its storage
through ``LogStore``: that protocol plus the write side, snapshots and compaction, with what
differs between a log in memory and one on disk declared as capabilities (``durable``,
``snapshot_files``, ``recovery``, ``directory``), never probed with ``hasattr``.

``MemoryLogStorage`` is the reference implementation: the simulator persists into it (so a
crash loses exactly what was not persisted), and it is the runtime's log when a member has
no data directory.

External snapshots (:class:`ExternalSnapshots`). A disk state machine's store is its own
snapshot: storage records only its metadata (index, term, configuration), and the log before
it may go. To send it to a follower, the leader needs an export of the store, which the
runtime prepares off the loop: ``snapshot()`` then raises ``SnapshotUnavailableError`` (the
core tries again later) after calling ``snapshot_wanted``, until the runtime hands the export
over with ``offer_export``. Invariant of every log storage: it never releases entries that no
durable snapshot covers (``compact(index)`` with ``index`` past the recorded snapshot is a bug).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from pyraft.core.membership import Configuration
from pyraft.core.messages import HardState, Snapshot, SnapshotMeta
from pyraft.errors import (
    InvariantError,
    LogCompactedError,
    LogUnavailableError,
    SnapshotUnavailableError,
    invariant,
)
from raftcore.framing import EntryBatch, concat_batches, empty_batch


class LogStorage(Protocol):
    """What the core reads (and the bootstrap membership the runtime records)."""

    def initial_state(self) -> tuple[HardState, Configuration | None]: ...
    def membership(self) -> Configuration | None: ...
    def record_membership(self, configuration: Configuration) -> None: ...
    def first_index(self) -> int: ...
    def last_index(self) -> int: ...
    def term(self, index: int) -> int: ...
    def terms(self, lo: int, hi: int) -> np.ndarray: ...
    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> EntryBatch: ...
    def snapshot(self) -> Snapshot: ...


class RecoveryReport(Protocol):
    """What opening a durable log found (``raftcore.wal.RecoveryReport``)."""

    @property
    def records(self) -> int: ...
    @property
    def segments(self) -> int: ...
    @property
    def torn_bytes(self) -> int: ...


class SnapshotReceiver(Protocol):
    """The file a snapshot received from the leader is written to, chunk by chunk:
    ``write_at`` is positional (a chunk already written is skipped), ``size`` the bytes
    written, ``abort`` drops the file."""

    meta: SnapshotMeta
    size: int

    def write_at(self, offset: int, chunk: bytes | bytearray | memoryview) -> None: ...
    def abort(self) -> None: ...


class SnapshotFiles(Protocol):
    """The capability of a log whose snapshots are files in a snapshot store: a snapshot is
    written on the I/O thread (``write_snapshot``, two fsyncs) and adopted on the loop
    (``adopt_snapshot``, which releases the log behind it); a snapshot from the leader is
    received straight into the store (``receive_snapshot``) and installed by a rename
    (``install_received``, given what ``receive_snapshot`` returned)."""

    def snapshot_meta(self, index: int, configuration: Configuration) -> SnapshotMeta: ...
    def write_snapshot(self, meta: SnapshotMeta, data: bytes | None) -> None: ...
    def adopt_snapshot(self, meta: SnapshotMeta, data: bytes | None) -> Snapshot: ...
    def receive_snapshot(self, meta: SnapshotMeta) -> SnapshotReceiver: ...
    def install_received(self, writer: Any) -> Snapshot: ...


class LogStore(LogStorage, Protocol):
    """What the runtime writes and reads: the core's ``LogStorage`` plus the write side,
    snapshots (external ones included) and compaction. Implemented by ``MemoryLogStorage``
    and ``pyraft.storage.log.DurableLogStorage``; the runtime asks no other question of its
    storage (no ``hasattr``): what differs between them is declared here.

    Accessor convention (storage and ``raftcore``): positions and terms are methods
    (``first_index()``, ``last_index()``, ``term(index)``): they may compute or read."""

    @property
    def durable(self) -> bool:
        """What was synced survives a restart (False: the member comes back as a new one)."""
    @property
    def directory(self) -> str | None:
        """Where spool files of received or exported snapshots go (None: the temp dir)."""
    @property
    def recovery(self) -> RecoveryReport | None:
        """What opening the log found (None: nothing was opened, a log in memory)."""
    @property
    def snapshot_files(self) -> SnapshotFiles | None:
        """Snapshots are files written off the loop (None: kept in memory, stored at once)."""
    #: called when the core needs an export of a disk state machine's store (the runtime)
    snapshot_wanted: Callable[[], None] | None

    def set_hard_state(self, hard_state: HardState) -> None: ...
    def append(self, batch: EntryBatch) -> None: ...
    def sync(self) -> object: ...
    def close(self) -> None: ...
    def apply_snapshot(self, snapshot: Snapshot, *, external: bool = False) -> None: ...
    def create_snapshot(self, index: int, data: bytes | None,
                        configuration: Configuration) -> Snapshot: ...
    def compact(self, index: int) -> None: ...
    def latest_snapshot_meta(self) -> SnapshotMeta: ...
    def snapshot_is_external(self) -> bool: ...
    def prepare_install(self, meta: SnapshotMeta) -> None: ...
    def resolve_install(self, persisted_index: int) -> SnapshotMeta | None: ...
    def offer_export(self, snapshot: Snapshot) -> bool: ...
    def drop_export(self) -> None: ...


def _release_data(data: object) -> None:
    """Close an export's data when it is a file-backed buffer (bytes need nothing)."""
    close = getattr(data, "close", None)
    if close is not None:
        close()


class ExternalSnapshots:
    """The export side of external snapshots, shared by the log storages (module docstring).

    State: ``_export``, the export of the store to send to followers, or ``None``; it is sent
    while it is at least as new as the recorded snapshot (the log then holds every entry after
    it), and dropped once a newer snapshot is recorded.
    """

    #: called (no arguments) when the core needs an export not prepared yet; set by the runtime
    snapshot_wanted: Callable[[], None] | None
    _export: Snapshot | None

    def __init__(self) -> None:
        # set here, not as class attributes: the compiled build makes this an extension class
        # (storage.pxd) whose fields are declared there
        self.snapshot_wanted = None
        self._export = None

    def latest_snapshot_meta(self) -> SnapshotMeta:
        """The recorded snapshot's metadata (index 0 when none), without reading its data."""
        raise NotImplementedError

    def snapshot_is_external(self) -> bool:
        """Whether the recorded snapshot is a disk state machine's store (metadata only)."""
        raise NotImplementedError

    # the reads the core makes several times per write (``RaftLog`` calls them through this
    # class: C calls on the memory and the durable storage, which implement them)
    def first_index(self) -> int:
        raise NotImplementedError

    def last_index(self) -> int:
        raise NotImplementedError

    def term(self, index: int) -> int:
        raise NotImplementedError

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> EntryBatch:
        raise NotImplementedError

    # the writes the log writer makes per Ready (``LogWriter`` calls them through this class
    # too: C calls in the compiled build)
    def append(self, batch: EntryBatch) -> None:
        raise NotImplementedError

    def sync(self) -> object:
        raise NotImplementedError

    def set_hard_state(self, hard_state: HardState) -> None:
        raise NotImplementedError

    def prepare_install(self, meta: SnapshotMeta) -> None:
        """A follower is about to import the external snapshot ``meta`` into its store; a
        durable storage notes it, so a crash before ``apply_snapshot`` can be resolved at the
        next start (``resolve_install``). Nothing to note in memory."""

    def resolve_install(self, persisted_index: int) -> SnapshotMeta | None:
        """At start, before the core reads storage: an install noted by ``prepare_install``
        and interrupted is finished (the metadata recorded, the log reset) when the store
        reached its index, ``persisted_index``, and forgotten otherwise (an import is atomic:
        the store kept its old state). Returns the finished install's metadata, or None."""
        return None

    def offer_export(self, snapshot: Snapshot) -> bool:
        """The runtime exported the store at ``snapshot.meta.index`` (its ``data`` is bytes or
        a buffer with ``len``, slicing and ``close``): it is what ``snapshot()`` returns from
        now on. Refused (``False``, and its data released) when the recorded snapshot is not
        external, is newer than it, or the log does not reach its index."""
        index = snapshot.meta.index
        if (
            not self.snapshot_is_external()
            or index < self.latest_snapshot_meta().index
            or index > self.last_index()
        ):
            _release_data(snapshot.data)
            return False
        self.drop_export()
        self._export = snapshot
        return True

    def _external_snapshot(self) -> Snapshot:
        """The export to send, or ``SnapshotUnavailableError`` after asking for one."""
        export = self._export
        if export is not None and export.meta.index >= self.latest_snapshot_meta().index:
            return export
        self.drop_export()
        wanted = self.snapshot_wanted
        if wanted is not None:
            wanted()
        raise SnapshotUnavailableError(
            "the snapshot is a state machine's store: its export is being prepared"
        )

    def drop_export(self) -> None:
        """Release the export held for followers (its file), if any."""
        export, self._export = self._export, None
        if export is not None:
            _release_data(export.data)


class MemoryLogStorage(ExternalSnapshots):
    """Entries kept as the batches they arrived in; ``first_index - 1`` is the snapshot point.

    Invariants: batches are contiguous and start at ``snapshot.meta.index + 1``; ``_starts[i]``
    is the first index of ``_batches[i]``; ``_external``: the snapshot is a disk state
    machine's store (its data is empty here). The membership a new store is given (or
    records with ``record_membership``) is the configuration of the snapshot at index 0.
    """

    #: nothing here survives the process: a restart starts empty
    durable = False
    #: spool files go to the system's temporary directory
    directory: str | None = None
    #: nothing is opened: nothing to report
    recovery: RecoveryReport | None = None
    #: snapshots are kept in memory (``create_snapshot``), not written as files
    snapshot_files: SnapshotFiles | None = None

    def __init__(self, configuration: Configuration | None = None) -> None:
        super().__init__()
        self.hard_state = HardState()
        self._external = False
        fields = configuration.snapshot_fields() if configuration else {"voters": ()}
        self._keep_snapshot(Snapshot(SnapshotMeta(0, 0, **fields), b""))
        self._batches: list[EntryBatch] = []
        self._starts: list[int] = []

    # ---- the protocol --------------------------------------------------------------------
    def initial_state(self) -> tuple[HardState, Configuration | None]:
        return self.hard_state, self.membership()

    def membership(self) -> Configuration | None:
        """The membership this store holds (its snapshot's; at index 0 the bootstrap
        membership), or None for a store that was never given one."""
        meta = self._snapshot.meta
        if meta.voters or meta.learners:
            return Configuration.from_snapshot(meta)
        return None

    def record_membership(self, configuration: Configuration) -> None:
        """Record the bootstrap membership of a store that holds none (the first start)."""
        invariant(self.membership() is None, "the store already holds a membership")
        self._keep_snapshot(Snapshot(SnapshotMeta(0, 0, **configuration.snapshot_fields()), b""))

    @property
    def bootstrap_configuration(self) -> Configuration | None:
        return self.membership()

    def _keep_snapshot(self, snapshot: Snapshot) -> None:
        """Hold ``snapshot``, its index and term as fields of their own: the core asks the
        first index, the last and terms several times per message, and reading them through
        the snapshot's metadata cost two attribute lookups each when compiled."""
        self._snapshot = snapshot
        self._snapshot_index = snapshot.meta.index
        self._snapshot_term = snapshot.meta.term

    def first_index(self) -> int:
        return self._snapshot_index + 1

    def last_index(self) -> int:
        if self._batches:
            last = self._batches[-1]
            return last.first_index + len(last) - 1  # its last_index, read in C when compiled
        return self._snapshot_index

    def term(self, index: int) -> int:
        snapshot_index = self._snapshot_index
        if index == snapshot_index:
            return self._snapshot_term
        if index < snapshot_index:
            raise LogCompactedError(f"index {index} is compacted (snapshot at {snapshot_index})")
        if index > self.last_index():
            raise LogUnavailableError(f"index {index} is past the last index {self.last_index()}")
        return self._batch_of(index).term_at(index)

    def terms(self, lo: int, hi: int) -> np.ndarray:
        """The terms of entries ``[lo, hi)``: ``entries(lo, hi).terms`` without joining the
        entries' bytes (the simulator's log-matching check asks for whole logs)."""
        if lo < self.first_index():
            raise LogCompactedError(f"index {lo} is compacted (first index {self.first_index()})")
        if hi > self.last_index() + 1:
            raise LogUnavailableError(f"index {hi - 1} is past the last index {self.last_index()}")
        if hi <= lo:
            return empty_batch(lo).terms
        return _terms_of(self._batches, self._starts, lo, hi)

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> EntryBatch:
        if lo < self.first_index():
            raise LogCompactedError(f"index {lo} is compacted (first index {self.first_index()})")
        if hi > self.last_index() + 1:
            raise LogUnavailableError(f"index {hi - 1} is past the last index {self.last_index()}")
        if hi <= lo:
            return empty_batch(lo)
        batches, starts = self._batches, self._starts
        count = len(batches)
        if lo >= starts[count - 1]:
            # all in the newest batch (what a leader or follower reads back most often)
            batch = batches[count - 1].slice(lo, hi)
        else:
            parts: list[EntryBatch] = []
            size = 0
            position = bisect.bisect_right(starts, lo) - 1
            while position < count and starts[position] < hi:
                part = batches[position].slice(lo, hi)
                if max_bytes is not None and parts and size + part.nbytes > max_bytes:
                    break
                parts.append(part)
                size += part.nbytes
                position += 1
            batch = parts[0] if len(parts) == 1 else concat_batches(parts)
        if max_bytes is not None and batch.nbytes > max_bytes and len(batch) > 1:
            batch = limit_bytes(batch, max_bytes)
        return batch

    def snapshot(self) -> Snapshot:
        if self._external:
            return self._external_snapshot()
        return self._snapshot

    def latest_snapshot_meta(self) -> SnapshotMeta:
        return self._snapshot.meta

    def snapshot_is_external(self) -> bool:
        return self._external

    # ---- writes (the runtime's side) -----------------------------------------------------
    def set_hard_state(self, hard_state: HardState) -> None:
        self.hard_state = hard_state

    def sync(self) -> None:
        """Nothing to sync: what was appended is as durable as it gets here."""

    def close(self) -> None:
        """Nothing to release (an export's spool file goes with ``drop_export``)."""

    def append(self, batch: EntryBatch) -> None:
        """Store ``batch``, replacing every entry with an index >= its first index."""
        if not len(batch):
            return
        first = batch.first_index
        if first < self.first_index():
            raise InvariantError(f"append at {first} below the first index")
        if first > self.last_index() + 1:
            raise InvariantError(f"append at {first} leaves a gap")
        self._truncate_from(first)
        self._batches.append(batch)
        self._starts.append(first)

    def apply_snapshot(self, snapshot: Snapshot, *, external: bool = False) -> None:
        """Replace the whole log by ``snapshot`` (a follower installing the leader's);
        ``external``: its data went into a disk state machine's store, only the metadata is
        recorded."""
        self._keep_snapshot(Snapshot(snapshot.meta, b"") if external else snapshot)
        self._external = external
        self.drop_export()
        self._batches, self._starts = [], []

    def create_snapshot(
        self, index: int, data: bytes | None, configuration: Configuration
    ) -> Snapshot:
        """Record a state-machine snapshot at ``index`` (<= last index) and drop the prefix;
        ``data`` None records an external snapshot (a disk state machine's store)."""
        invariant(index >= self._snapshot_index, "snapshot older than the current one")
        meta = SnapshotMeta(index, self.term(index), **configuration.snapshot_fields())
        self._keep_snapshot(Snapshot(meta, b"" if data is None else data))
        self._external = data is None
        if self._export is not None and self._export.meta.index < index:
            self.drop_export()
        self.compact(index)
        return self._snapshot

    def compact(self, index: int) -> None:
        """Release entries up to ``index``, which the snapshot must cover."""
        invariant(
            index <= self._snapshot_index,
            f"releasing the log up to {index}: the snapshot covers only up to "
            f"{self._snapshot_index}",
        )
        # batches are contiguous: those starting at or before ``index`` all end at or before
        # it but the last, which may straddle it; one cut, not one pop(0) per batch (that
        # was quadratic: 50,000 one-entry batches took ~0.2 s, long enough to lose the lead)
        cut = bisect.bisect_right(self._starts, index)
        if cut and self._batches[cut - 1].last_index > index:
            cut -= 1
        del self._batches[:cut]
        del self._starts[:cut]
        if self._batches and self._starts[0] <= index:
            self._batches[0] = self._batches[0].slice(index + 1, self._batches[0].last_index + 1)
            self._starts[0] = index + 1

    def _truncate_from(self, index: int) -> None:
        while self._batches and self._starts[-1] >= index:
            self._batches.pop()
            self._starts.pop()
        if self._batches and self._batches[-1].last_index >= index:
            self._batches[-1] = self._batches[-1].slice(self._starts[-1], index)

    def _batch_of(self, index: int) -> EntryBatch:
        if index >= self._starts[-1]:
            return self._batches[-1]  # the usual case: the newest batch
        return self._batches[bisect.bisect_right(self._starts, index) - 1]


def _terms_of(batches: list[EntryBatch], starts: list[int], lo: int, hi: int) -> np.ndarray:
    """The terms of ``[lo, hi)`` (within the log) from contiguous ``batches`` starting at
    ``starts``."""
    parts = []
    position = bisect.bisect_right(starts, lo) - 1
    count = len(starts)
    while position < count:
        start = starts[position]
        if start >= hi:
            break
        batch = batches[position]
        end = start + len(batch)
        parts.append(batch.terms[max(lo, start) - start : min(hi, end) - start])
        position += 1
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def limit_bytes(batch: EntryBatch, max_bytes: int) -> EntryBatch:
    """The longest prefix of ``batch`` within ``max_bytes`` (always at least one entry)."""
    count = int(np.searchsorted(batch.offsets, max_bytes, side="right")) - 1
    return batch.slice(batch.first_index, batch.first_index + max(count, 1))
