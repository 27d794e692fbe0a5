"""``DurableLogStorage``: the core's log on disk.

It implements the ``pyraft.core.storage.LogStore`` protocol: the ``LogStorage`` the core
reads through, and the write side the runtime calls after each Ready, exactly like
``MemoryLogStorage`` (so the simulator runs on either): ``set_hard_state``, ``append``,
``sync``, ``apply_snapshot``, ``create_snapshot``, ``compact``; its snapshots are files
(``snapshot_files``: written off the loop, received straight into the store). Build one for a
member with ``DurableLogStorage.from_config(config)``.

Accessor convention (with ``raftcore.wal``): positions and terms are methods
(``first_index()``, ``last_index()``, ``term(index)``), never properties.

Layout under ``directory``: ``wal/`` (``raftcore.wal`` segments), ``snapshots/``
(``SnapshotStore``), ``state/`` (``FileHardStateStore``, and ``membership``: the bootstrap
membership, recorded durably at the first start before the member sends or answers anything)
and ``cluster`` (the cluster id, a checked file written at the first open). The WAL's
segments carry the cluster id too, but a snapshot covering the whole log leaves none (the log
is empty until the next append), and the hard state and snapshot files record no cluster id:
without ``cluster`` another cluster's directory could then be opened, and taken over,
unnoticed. Another cluster's directory raises ``ClusterMismatchError`` (never
``CorruptStateError``: nothing is damaged).

Membership is durable from the first start: ``membership()`` is the newest snapshot's
configuration, else the recorded bootstrap membership (the core then replays the
configuration entries of the log after it). A store that holds one never takes another from
a command line: on a restart the stored membership wins.

Durability: term and vote are saved (atomically, fsynced) as soon as they change, before the
runtime sends anything that depends on them. The commit index in the hard state is only a
hint (safe to lose: it is recomputed from the leader), so it is saved with the next term or
vote change, on ``close()``, and otherwise at most every ``commit_hint_interval_entries``
entries and every ``commit_hint_interval_ms`` (a save is a file replaced and fsynced twice, on
the event loop's thread: at 2.4 million writes/s the entry bound alone asked for 240 a second).
After a crash a member replays its state machine up to the hint it saved, then applies the rest
once a leader of the new term commits; the time bound only moves entries from the first part
to the second.
Log entries are durable after ``sync()`` (one fdatasync for every append since the last;
with ``sync="interval"``, at most one every ``sync_interval_ms``).

Snapshots may be external (a disk state machine's store; see ``pyraft.core.storage``): the
snapshot store then records only the metadata, which survives restarts like any snapshot.
The log is released only up to the newest durably recorded snapshot, never past it.
"""

from __future__ import annotations

import os
import struct
from time import monotonic
from typing import TYPE_CHECKING, cast

import numpy as np

from pyraft.core.membership import Configuration
from pyraft.core.messages import HardState, Snapshot, SnapshotMeta
from pyraft.core.storage import ExternalSnapshots, limit_bytes
from pyraft.errors import (
    ClusterMismatchError,
    ConfigError,
    CorruptStateError,
    InvariantError,
    LogCompactedError,
    LogUnavailableError,
    StorageError,
    invariant,
)
from pyraft.storage.files import (
    BackgroundDeleter,
    atomic_write,
    pack_checked,
    read_checked,
    remove_temp_files,
    storage_error,
)
from pyraft.storage.hardstate import FileHardStateStore
from pyraft.storage.snapshots import SnapshotStore, SnapshotWriter
from raftcore import WalClusterMismatchError, WalCorruptionError
from raftcore.framing import EntryBatch, concat_batches, empty_batch
from raftcore.wal import RELEASED_SUFFIX, RecoveryReport, WriteAheadLog

if TYPE_CHECKING:
    from pyraft.config import ClusterConfig

#: at most this many recent batches are kept (a read looks through them newest first); past
#: it, the oldest ``RECENT_BATCHES_DROP`` go at once (one move of the list's items, not one
#: per append)
RECENT_BATCHES_MAX = 256
RECENT_BATCHES_DROP = 64
#: the bootstrap membership's file in ``state/``, a checked file replaced atomically
MEMBERSHIP_FILE = "membership"
_MEMBERSHIP_KIND = b"MEMB"
#: the file under the data directory naming the cluster the directory belongs to
CLUSTER_FILE = "cluster"
_CLUSTER_KIND = b"CLID"
_CLUSTER_ID = struct.Struct(">Q")


def _storage_error(exc: OSError, what: str) -> StorageError:
    return storage_error(exc, what, exc.filename or "write-ahead log")


def _recorded_cluster_id(directory: str) -> int | None:
    """The cluster id ``directory`` records, or None when it records none (yet)."""
    path = os.path.join(directory, CLUSTER_FILE)
    payload = read_checked(path, _CLUSTER_KIND)
    if payload is None:
        return None
    if len(payload) != _CLUSTER_ID.size:
        raise CorruptStateError(f"a cluster id of {len(payload)} bytes, not 8", path)
    return _CLUSTER_ID.unpack(payload)[0]


def _record_cluster_id(directory: str, cluster_id: int) -> None:
    remove_temp_files(directory, CLUSTER_FILE + ".")
    atomic_write(os.path.join(directory, CLUSTER_FILE),
                 pack_checked(_CLUSTER_KIND, _CLUSTER_ID.pack(cluster_id)))


class DurableLogStorage(ExternalSnapshots):
    """The log, hard state and snapshots of one member, on disk.

    ``_snapshot_meta``: the newest durable snapshot (None: none yet); ``_snapshot_external``:
    it is external (metadata only); ``_snapshot_cache``: the snapshot as the core reads it, its
    data a file-backed view (``StoredSnapshotData``): no snapshot is held whole in memory.
    Invariant: the WAL holds no entry below ``_snapshot_meta.index + 1`` that was released
    without it (``compact``)."""

    #: what was synced survives a restart
    durable = True

    @property
    def recovery(self) -> RecoveryReport:
        """What opening the WAL found (records read, segments, a torn tail cut)."""
        return self.wal.recovery

    @property
    def snapshot_files(self) -> DurableLogStorage:
        """Snapshots are files in the snapshot store, written off the loop (``LogStore``)."""
        return self

    @classmethod
    def from_config(cls, config: ClusterConfig) -> DurableLogStorage:
        """The storage of the member ``config`` describes: in its ``data_dir``, for its
        ``cluster_id``, with its ``sync`` policy and ``sync_interval_ms``."""
        if config.data_dir is None:
            raise ConfigError("data_dir", "a durable log needs a directory (None keeps the "
                                          "log in memory: MemoryLogStorage)")
        return cls(config.data_dir, cluster_id=config.cluster_id, sync=config.sync,
                   sync_interval_ms=config.sync_interval_ms)

    def __init__(
        self,
        directory: str | os.PathLike[str],
        configuration: Configuration | None = None,
        *,
        cluster_id: int = 0,
        sync: str = "always",
        sync_interval_ms: float = 10.0,
        segment_bytes_max: int = 64 << 20,
        snapshots_kept: int = 2,
        commit_hint_interval_entries: int = 10_000,
        commit_hint_interval_ms: float = 1_000.0,
        repair: bool = False,
        recent_bytes_max: int = 4 << 20,
    ) -> None:
        super().__init__()
        self.directory = os.fspath(directory)
        self.commit_hint_interval_entries = commit_hint_interval_entries
        #: 0 leaves only the entry bound (the simulator: saves that depend on no clock)
        self.commit_hint_interval_ms = commit_hint_interval_ms
        self._saved_at = 0.0  # time.monotonic() of the last commit hint saved
        #: the newest appended batches, in index order and contiguous, up to
        #: ``recent_bytes_max`` bytes: reading what was just appended (to apply it, or to send
        #: it to a follower one batch behind) needs no read from disk (a list, oldest first:
        #: its items are read and appended in C when compiled)
        self.recent_bytes_max = recent_bytes_max
        self._recent: list[EntryBatch] = []
        self._recent_bytes = 0
        recorded = _recorded_cluster_id(self.directory)
        if recorded is not None and recorded != cluster_id:
            raise ClusterMismatchError(self.directory, recorded, cluster_id)
        try:
            self.wal = WriteAheadLog(
                os.path.join(self.directory, "wal"),
                cluster_id=cluster_id,
                sync=sync,
                sync_interval_ms=sync_interval_ms,
                segment_bytes_max=segment_bytes_max,
                repair=repair,
            )
        except WalClusterMismatchError as exc:  # another cluster's directory: not damage
            # the WAL names the id it found in a segment header (set for this error)
            raise ClusterMismatchError(self.directory, cast(int, exc.stored_cluster_id),
                                       cluster_id) from exc
        except WalCorruptionError as exc:
            raise CorruptStateError(exc.reason, exc.path, exc.offset) from exc
        except OSError as exc:
            raise _storage_error(exc, "cannot open the write-ahead log") from exc
        if recorded is None:  # a new directory (or one from before the file existed)
            try:
                _record_cluster_id(self.directory, cluster_id)
            except BaseException:
                self.wal.close()
                raise
        # segments a snapshot released are deleted off the caller's thread (the event loop)
        self._deleter = BackgroundDeleter(f"pyraft-wal-deleter-{os.path.basename(self.directory)}",
                                          suffix=RELEASED_SUFFIX)
        self.wal.deleter = self._deleter
        self.snapshots = SnapshotStore(os.path.join(self.directory, "snapshots"),
                                       keep=snapshots_kept)
        self.state = FileHardStateStore(os.path.join(self.directory, "state"))
        self.hard_state = self.state.load()
        self._saved = self.hard_state
        self._snapshot_meta = self.snapshots.latest()
        self._snapshot_external = (
            self._snapshot_meta is not None and self.snapshots.external(self._snapshot_meta)
        )
        self._snapshot_cache: Snapshot | None = None
        self._membership_path = os.path.join(self.state.directory, MEMBERSHIP_FILE)
        self._membership = self._load_membership()
        self._reconcile()
        if configuration is not None and self.membership() is None:
            self.record_membership(configuration)

    def _load_membership(self) -> Configuration | None:
        payload = read_checked(self._membership_path, _MEMBERSHIP_KIND)
        if payload is None:
            return None
        try:
            return Configuration.decode(payload)
        except Exception as error:  # msgpack and the configuration raise several types
            raise CorruptStateError(f"undecodable membership ({error})",
                                    self._membership_path) from error

    def membership(self) -> Configuration | None:
        """The membership this store holds: the newest snapshot's configuration, else the
        bootstrap membership recorded at the first start; None for a store never started."""
        meta = self._snapshot_meta
        if meta is not None and (meta.voters or meta.learners):
            return Configuration.from_snapshot(meta)
        return self._membership

    def record_membership(self, configuration: Configuration) -> None:
        """Record the bootstrap membership durably (the first start, before the member
        sends or answers anything)."""
        invariant(self.membership() is None, "the store already holds a membership")
        try:
            atomic_write(self._membership_path,
                         pack_checked(_MEMBERSHIP_KIND, configuration.encode()))
        except OSError as exc:
            raise _storage_error(exc, "cannot record the membership") from exc
        self._membership = configuration

    @property
    def bootstrap_configuration(self) -> Configuration | None:
        """The bootstrap membership recorded at the first start (None before)."""
        return self._membership

    def _reconcile(self) -> None:
        """Make the log and the newest snapshot agree after a restart."""
        meta = self._snapshot_meta
        if meta is None or meta.index == 0:
            return
        wal = self.wal
        if wal.last_index() < meta.index or (
            len(wal) and wal.first_index() <= meta.index and wal.term_at(meta.index) != meta.term
        ):
            # the snapshot is newer than the log (installed from the leader): start after it
            wal.reset(meta.index + 1, meta.term)
        elif wal.first_index() > meta.index + 1:
            raise CorruptStateError(
                f"the log starts at {wal.first_index()} but the snapshot ends at {meta.index}",
                wal.segments[0] if wal.segments else self.directory,
            )
        else:
            wal.release_prefix(meta.index)

    # ---- the LogStorage protocol -------------------------------------------------------------
    def initial_state(self) -> tuple[HardState, Configuration | None]:
        return self.hard_state, self.membership()

    # first_index, last_index, term and entries run several times per write: each takes the
    # common case (an index the write-ahead log holds, the batch just appended) first
    def first_index(self) -> int:
        first = self.wal.first_index()  # >= 1
        meta = self._snapshot_meta
        return meta.index + 1 if meta is not None and meta.index >= first else first

    def last_index(self) -> int:
        last = self.wal.last_index()  # >= 0
        meta = self._snapshot_meta
        return meta.index if meta is not None and meta.index > last else last

    def term(self, index: int) -> int:
        wal = self.wal
        meta = self._snapshot_meta
        if wal.first_index() <= index <= wal.last_index() and (meta is None
                                                               or index > meta.index):
            return wal.term_at(index)
        if meta is not None and index == meta.index:
            return meta.term
        first = self.first_index()
        if index < first - 1 or (index == first - 1 and meta is None and index > 0):
            raise LogCompactedError(f"index {index} is compacted (first index {first})")
        if index == 0:
            return 0
        if index > self.last_index():
            raise LogUnavailableError(f"index {index} is past the last index {self.last_index()}")
        return self.wal.term_at(index)

    def terms(self, lo: int, hi: int) -> np.ndarray:
        self._check_range(lo, hi)
        return self.wal.terms(lo, hi) if hi > lo else np.zeros(0, dtype=np.uint64)

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> EntryBatch:
        recent = self._recent
        if recent:  # the batch just appended, whole: what a leader sends and then applies
            newest = recent[-1]
            if lo == newest.first_index and hi == lo + len(newest) and (
                    max_bytes is None or newest.nbytes <= max_bytes) and \
                    lo >= self.wal.first_index() and (
                    self._snapshot_meta is None or lo > self._snapshot_meta.index):
                return newest  # (lo >= self.first_index(), without its call)
        self._check_range(lo, hi)
        if hi <= lo:
            return empty_batch(lo)
        recent = self._recent
        if recent and recent[0].first_index <= lo and hi <= recent[-1].last_index + 1:
            return self._read_recent(lo, hi, max_bytes)
        try:
            return self.wal.read(lo, hi, max_bytes)
        except OSError as exc:
            raise _storage_error(exc, "cannot read the log") from exc

    def _read_recent(self, lo: int, hi: int, max_bytes: int | None) -> EntryBatch:
        """Entries lo..hi-1 from the recent batches, cut as ``WriteAheadLog.read`` cuts
        them: at least one entry, then whole entries up to ``max_bytes``."""
        covering = []  # newest first: reads are mostly of the newest entries
        for batch in reversed(self._recent):
            if batch.first_index < hi:
                covering.append(batch)
            if batch.first_index <= lo:
                break
        parts = []
        total = 0
        for batch in reversed(covering):
            part = batch.slice(lo, hi)
            parts.append(part)
            total += part.nbytes
            if max_bytes is not None and total >= max_bytes:
                break
        batch = parts[0] if len(parts) == 1 else concat_batches(parts)
        if max_bytes is not None and batch.nbytes > max_bytes and len(batch) > 1:
            batch = limit_bytes(batch, max_bytes)
        return batch

    def _remember(self, batch: EntryBatch) -> None:
        recent = self._recent
        first = batch.first_index
        while recent:
            newest = recent[-1]
            if newest.last_index < first:
                break
            cut = recent.pop()  # replaced by this batch
            self._recent_bytes -= cut.nbytes
            if cut.first_index < first:
                kept = cut.slice(cut.first_index, first)
                recent.append(kept)
                self._recent_bytes += kept.nbytes
                break
        if recent:
            newest = recent[-1]
            if newest.last_index + 1 != first:
                self._forget()
        if batch.nbytes > self.recent_bytes_max:
            self._forget()
            return
        recent.append(batch)
        self._recent_bytes += batch.nbytes
        if self._recent_bytes > self.recent_bytes_max or len(recent) > RECENT_BATCHES_MAX:
            drop = 0
            if len(recent) > RECENT_BATCHES_MAX:
                drop = len(recent) - RECENT_BATCHES_MAX + RECENT_BATCHES_DROP
                for old in recent[:drop]:
                    self._recent_bytes -= old.nbytes
            while self._recent_bytes > self.recent_bytes_max:
                self._recent_bytes -= recent[drop].nbytes
                drop += 1
            del recent[:drop]

    def _forget(self) -> None:
        self._recent.clear()
        self._recent_bytes = 0

    def snapshot(self) -> Snapshot:
        meta = self._snapshot_meta
        if meta is None:
            return Snapshot(self.latest_snapshot_meta(), b"")
        if self._snapshot_external:
            return self._external_snapshot()
        cached = self._snapshot_cache
        if cached is None or cached.meta != meta:
            data = self.snapshots.data(meta)
            # a file-backed view read like bytes (len, slicing): never the whole file
            cached = self._snapshot_cache = Snapshot(data.meta, cast(bytes, data))
        return cached

    def latest_snapshot_meta(self) -> SnapshotMeta:
        meta = self._snapshot_meta
        if meta is None:
            bootstrap = self.bootstrap_configuration
            fields = bootstrap.snapshot_fields() if bootstrap else {"voters": ()}
            return SnapshotMeta(0, 0, **fields)
        return meta

    def snapshot_is_external(self) -> bool:
        return self._snapshot_meta is not None and self._snapshot_external

    def _check_range(self, lo: int, hi: int) -> None:
        if lo < self.first_index():
            raise LogCompactedError(f"index {lo} is compacted (first index {self.first_index()})")
        if hi > self.last_index() + 1:
            raise LogUnavailableError(f"index {hi - 1} is past the last index {self.last_index()}")

    # ---- writes (the runtime's side) ---------------------------------------------------------
    def set_hard_state(self, hard_state: HardState) -> None:
        new = hard_state  # typed in the compiled build (log.pxd): its fields are C reads
        saved = self._saved
        self.hard_state = new
        if new.term != saved.term or new.vote != saved.vote:
            self.state.save(new)  # the commit index with it: a hint saved now
            self._saved = new
            self._saved_at = monotonic()
        elif new.commit - saved.commit >= self.commit_hint_interval_entries:
            now = monotonic()
            if now - self._saved_at >= self.commit_hint_interval_ms * 1e-3:
                self.state.save(new)
                self._saved = new
                self._saved_at = now

    def append(self, batch: EntryBatch) -> None:
        """Store ``batch``, replacing every entry with an index >= its first index."""
        entries = batch  # typed in the compiled build (log.pxd), as the WAL reads it
        if not len(entries):
            return
        first = entries.first_index
        meta = self._snapshot_meta  # first < self.first_index(), without its call:
        if first < self.wal.first_index() or (meta is not None and first <= meta.index):
            raise InvariantError(f"append at {first} below the first index")
        try:
            if first <= self.wal.last_index():
                self.wal.truncate_suffix(first)
            self.wal.append(entries)
        except OSError as exc:
            self._forget()  # what the log holds is for the log to say
            raise _storage_error(exc, "cannot append to the log") from exc
        self._remember(entries)

    def sync(self) -> int:
        """Make every append durable; returns the durable index."""
        try:
            return self.wal.sync()
        except OSError as exc:
            raise _storage_error(exc, "cannot sync the log") from exc

    def apply_snapshot(self, snapshot: Snapshot, *, external: bool = False) -> None:
        """Install the leader's snapshot: it replaces the whole log. ``external``: its data
        is already in a disk state machine's store; only the metadata is recorded."""
        meta = snapshot.meta
        with self.snapshots.begin(meta, external) as writer:
            if not external:
                writer.write(snapshot.data)
            writer.commit()
        if external:
            self.snapshots.clear_pending()
        self._installed(meta, external)

    def receive_snapshot(self, meta: SnapshotMeta) -> SnapshotWriter:
        """A writer for the snapshot ``meta`` arriving from the leader in chunks
        (``write_at``): a temporary file in the snapshot store, installed by
        ``install_received`` without being read back."""
        return self.snapshots.begin(meta)

    def install_received(self, writer: SnapshotWriter) -> Snapshot:
        """Install the snapshot ``writer`` received (every chunk written): it becomes durable
        and replaces the whole log. Retryable after a ``StorageError`` (a full disk)."""
        writer.commit_retryable()
        self._installed(writer.meta, False)
        return self.snapshot()

    def _installed(self, meta: SnapshotMeta, external: bool) -> None:
        self._snapshot_meta = meta
        self._snapshot_external = external
        self._snapshot_cache = None
        self.drop_export()
        self._forget()
        self.wal.reset(meta.index + 1, meta.term)

    def prepare_install(self, meta: SnapshotMeta) -> None:
        self.snapshots.write_pending(meta)

    def resolve_install(self, persisted_index: int) -> SnapshotMeta | None:
        pending = self.snapshots.pending()
        if pending is None:
            return None
        current = self._snapshot_meta
        if persisted_index >= pending.index and (current is None or current.index < pending.index):
            self.apply_snapshot(Snapshot(pending, b""), external=True)  # clears the note
            return pending
        self.snapshots.clear_pending()
        return None

    def create_snapshot(
        self, index: int, data: bytes | None, configuration: Configuration
    ) -> Snapshot:
        """Record a state-machine snapshot at ``index`` (<= last index) and release the log
        segments it covers: ``snapshot_meta``, ``write_snapshot``, ``adopt_snapshot`` in one
        call. A caller that must not wait for the file (a 64 MiB snapshot takes ~200 ms to
        write and sync here) calls the three itself, the second on another thread. ``data``
        None records an external snapshot (a disk state machine's store, durable up to
        ``index``); the returned snapshot's data is then empty."""
        meta = self.snapshot_meta(index, configuration)
        self.write_snapshot(meta, data)
        return self.adopt_snapshot(meta, data)

    def snapshot_meta(self, index: int, configuration: Configuration) -> SnapshotMeta:
        """What a snapshot of the state at ``index`` (<= last index) records."""
        return SnapshotMeta(index, self.term(index), **configuration.snapshot_fields())

    def write_snapshot(self, meta: SnapshotMeta, data: bytes | None) -> None:
        """Write the snapshot file durably (``data`` None: an external snapshot's metadata).
        Touches only the snapshot store: it may run on another thread while the log is used
        (one snapshot write at a time)."""
        with self.snapshots.begin(meta, data is None) as writer:
            if data is not None:
                writer.write(data)
            writer.commit()

    def adopt_snapshot(self, meta: SnapshotMeta, data: bytes | None) -> Snapshot:
        """A written snapshot becomes the current one and releases the log it covers (unless
        a newer snapshot was installed meanwhile: then it changes nothing). ``data`` is what
        was written (None: external)."""
        current = self._snapshot_meta
        if current is not None and current.index >= meta.index:
            return Snapshot(current, b"") if self._snapshot_external else self.snapshot()
        written = self.snapshots.list_snapshots()  # a newer one may have replaced its file
        invariant(
            bool(written) and written[-1][0] >= meta.index,
            f"adopting the snapshot at {meta.index}, but no snapshot file covers it",
        )
        self._snapshot_meta = meta
        self._snapshot_external = data is None
        self._snapshot_cache = None
        if self._export is not None and self._export.meta.index < meta.index:
            self.drop_export()
        self.compact(meta.index)
        return Snapshot(meta, b"") if data is None else self.snapshot()

    def compact(self, index: int) -> None:
        """Release the log up to ``index``, which the durable snapshot must cover: storage
        never releases entries that no durable snapshot covers (issue 15)."""
        covered = self._snapshot_meta.index if self._snapshot_meta is not None else 0
        invariant(
            index <= covered,
            f"releasing the log up to {index}: the durable snapshot covers only up to {covered}",
        )
        self.wal.release_prefix(min(index, self.wal.last_index()))

    def close(self) -> None:
        if self.hard_state != self._saved:
            self.state.save(self.hard_state)
            self._saved = self.hard_state
        self.drop_export()
        self.wal.close()
        self._deleter.close()
