"""Persisting one Ready: received snapshot chunks, an installed snapshot, entries, the sync and
the hard state, in that order, retried every second while storage fails.

Entries are written to the log on the loop (a positional write into the page cache); the
fdatasync and the hard-state save run on the member's I/O thread, or on the loop's thread
when that is cheaper: handing a sync to a thread and back costs two thread wake-ups (~0.1 ms
here), more than a fast disk's fdatasync of a small batch. So a sync runs inline when the
storage has nothing to sync (in memory), or when syncs have been fast (under
``inline_sync_max_ms`` on average, a moving average over the syncs of entries) and the batch
holds at most ``inline_sync_bytes_max`` bytes. A slow disk keeps the loop free.

Disk failures stop writes: ``failed`` holds the ``StorageError`` (``StorageFullError`` for a
full disk) while persisting the same Ready is retried every second, so the member resumes by
itself when space returns and nothing acknowledged is lost.

Pipelined Readys (``ready_pipeline_max`` above 1): ``begin`` writes a Ready's entries at once
and starts its sync, and ``finish`` waits for that sync, so the runtime can write and send the
next Ready while an earlier one syncs. Writes happen in the order of the Readys (on the loop);
syncs and hard-state saves run in that order too (inline only when no earlier sync is still
running; the I/O thread is one thread, first in first out), so a sync covers every write
before it. Readys written while a sync waits for the I/O thread share it (``SyncJob``):
pipelining adds no syncs, one runs and at most one waits. Readys that replace stored entries
or carry a snapshot are not pipelined (``can_pipeline``): the runtime lets the earlier ones
finish and persists them with ``persist``, as a truncation or an install must not run under
a sync. After a failed write or sync, that Ready and every Ready written after it (whose
entries its rewrite may cut) are persisted again with ``persist``, in order, until the
pipeline is empty.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from pyraft.cluster.iothread import IOThread
from pyraft.cluster.snapshots import Snapshotting
from pyraft.core.messages import HardState, Ready
from pyraft.core.storage import ExternalSnapshots, LogStore
from pyraft.errors import StorageError
from pyraft.metrics import Metrics
from raftcore.clock import perf_counter  # a C call when compiled (the .pxd cimports it)
from raftcore.framing import EntryBatch

__all__ = ["LogWriter", "SyncJob", "Written"]

log = logging.getLogger("pyraft.cluster")

#: seconds between two attempts to persist a Ready while storage fails
RETRY_SECONDS = 1.0


class Written:
    """A Ready ``LogWriter.begin`` wrote: the sync on the I/O thread that makes it durable
    (``job``), or None when that is done already; ``error``: the write or the inline sync
    failed (the Ready is persisted again by ``finish``)."""

    __slots__ = ("job", "error")

    def __init__(self) -> None:
        self.job: SyncJob | None = None
        self.error: StorageError | None = None


class SyncJob:
    """One sync (and hard-state save) on the I/O thread for every Ready written while it
    waits to start: a Ready written then joins it rather than queueing a sync of its own,
    as the sync covers every write made before it starts (group commit across Readys).
    ``hard_state``: the newest hard state of those Readys (it supersedes the older ones);
    ``started`` turns True on the I/O thread, under ``lock``, before the sync reads them;
    ``future`` resolves to the sync's seconds; ``observed``: its time went to the metrics."""

    __slots__ = ("hard_state", "entries", "started", "future", "observed", "lock")

    def __init__(self, hard_state: HardState | None, entries: bool) -> None:
        self.hard_state = hard_state
        self.entries = entries
        self.started = False
        self.future: asyncio.Future[float]
        self.observed = False
        self.lock = threading.Lock()

    def join(self, hard_state: HardState | None, entries: bool) -> bool:
        """Add a Ready's sync to this one, unless it started already."""
        with self.lock:
            if self.started:
                return False
            if hard_state is not None:
                self.hard_state = hard_state
            self.entries = self.entries or entries
            return True


class LogWriter:
    """Persists Readys into ``storage`` (module docstring). State: ``failed``: the storage
    failure refusing writes now, or None; ``sync_seconds``: the moving average (1/8 weight)
    of the syncs of entries, in seconds (``>= 0``)."""

    def __init__(self, member_id: int, storage: LogStore, metrics: Metrics,
                 snapshots: Snapshotting, *, inline_sync_max_ms: float,
                 inline_sync_bytes_max: int, installed: Callable[[int], None]) -> None:
        self.id = member_id
        self.storage = storage
        #: ``storage`` again when it is one of pyraft's (the memory or the durable storage, or
        #: a subclass): the compiled build appends and syncs through this typed reference, C
        #: calls instead of Python ones (persist.pxd); None for other ``LogStore``s
        self._stored = storage if isinstance(storage, ExternalSnapshots) else None
        #: whether syncing takes a disk's time (a storage's durability does not change)
        self._durable = bool(storage.durable)
        self.metrics = metrics
        # the instruments every Ready records into, held directly (typed: C calls)
        self._append_seconds = metrics.append_seconds
        self._append_entries = metrics.append_entries
        self._fsync_seconds = metrics.fsync_seconds
        self._snapshots = snapshots
        #: sync on the loop's thread while syncs take less than this on average (and the
        #: batch is under ``inline_sync_bytes_max``); 0 always uses the I/O thread
        self.inline_sync_max_ms = inline_sync_max_ms
        self.inline_sync_bytes_max = inline_sync_bytes_max
        self._installed = installed
        self.failed: StorageError | None = None
        self.sync_seconds = 0.0
        #: pipelined Readys whose sync went to the I/O thread and did not finish: while there
        #: are any, later syncs go there too (in order, behind them)
        self._syncs_running = 0
        #: the newest sync handed to the I/O thread (Readys join it until it starts)
        self._last_job: SyncJob | None = None
        #: a pipelined Ready failed: it and every Ready written after it are persisted again
        #: (``persist``) until the runtime's pipeline is empty (``pipeline_empty``)
        self._rewriting = False
        # given by ``bind`` at start
        self._loop: asyncio.AbstractEventLoop
        self._executor: IOThread

    def bind(self, loop: asyncio.AbstractEventLoop, executor: IOThread) -> None:
        self._loop, self._executor = loop, executor

    async def persist(self, rd: Ready) -> None:
        metrics = self.metrics
        snapshots = self._snapshots
        while True:
            try:
                if rd.snapshot_chunks:  # written before their acknowledgements leave
                    await self._executor.run(snapshots.write_chunks, rd.snapshot_chunks)
                if rd.snapshot is not None:
                    started = perf_counter()
                    size = await snapshots.install_received(rd.snapshot.meta)
                    self._installed(rd.snapshot.meta.index)
                    metrics.snapshots.inc(1, ("installed",))
                    metrics.snapshot_seconds.observe(perf_counter() - started,
                                                     ("installed",))
                    metrics.snapshot_bytes.observe(size, ("installed",))
                if snapshots.received_whole:  # and not installed: the file goes
                    snapshots.discard_unused_receive()
                if rd.entries:
                    self._append(rd.entries)
                if rd.hard_state is not None and not rd.must_sync and self.sync_inline(rd):
                    self.sync(rd.hard_state, False)  # the commit index alone: untimed (begin)
                elif rd.hard_state is not None or rd.must_sync:
                    started = perf_counter()
                    if self.sync_inline(rd):
                        self.sync(rd.hard_state, bool(rd.entries))
                    else:
                        await self._executor.run(self.sync, rd.hard_state, bool(rd.entries))
                    self._synced(perf_counter() - started, bool(rd.entries))
                if self.failed is not None:
                    log.warning("member %d: storage works again", self.id)
                    self.failed = None
                return
            except StorageError as error:
                if self.failed is None:
                    log.error("member %d: cannot persist (%s); refusing writes and retrying",
                              self.id, error)
                self.failed = error
                metrics.storage_failures.inc()
                await asyncio.sleep(RETRY_SECONDS)

    # ---- pipelined Readys ------------------------------------------------------------------
    def can_pipeline(self, rd: Ready) -> bool:
        """May ``rd`` be written while earlier Readys sync? Not with a snapshot or its chunks
        (an install replaces the log), not when its entries replace stored ones (a truncation
        under a running sync), not while storage fails or Readys are being written again."""
        if rd.snapshot is not None or rd.snapshot_chunks or self.failed is not None:
            return False
        if self._rewriting:
            return False
        if not rd.entries:
            return True
        first = rd.entries[0]
        stored = self._stored
        return first.first_index > (stored.last_index() if stored is not None
                                    else self.storage.last_index())

    def begin(self, rd: Ready) -> Written:
        """Write ``rd``'s entries now and start its sync (module docstring). An inline sync
        is timed from where the append's timing ended (one clock reading fewer)."""
        written = Written()
        started = -1.0
        try:
            snapshots = self._snapshots
            if snapshots.received_whole:  # received and not installed: the file goes
                snapshots.discard_unused_receive()
            if rd.entries:
                started = self._append(rd.entries, started)
            if rd.hard_state is not None or rd.must_sync:
                entries = bool(rd.entries)
                if self._syncs_running == 0 and self.sync_inline(rd):
                    if rd.must_sync:
                        self._synced(self._timed_sync(rd.hard_state, entries, started), entries)
                    else:  # the commit index alone: stored as a hint, nothing to make durable
                        self.sync(rd.hard_state, False)  # (nothing synced: nothing timed)
                else:
                    job = self._last_job
                    if job is None or not job.join(rd.hard_state, entries):
                        job = self._last_job = SyncJob(rd.hard_state, entries)
                        job.future = self._executor.run(self._run_job, job)
                    self._syncs_running += 1
                    written.job = job
        except StorageError as error:
            written.error = error
            self._rewriting = True  # the log may not take the next Ready's entries now
        return written

    async def finish(self, rd: Ready, written: Written) -> None:
        """Return once ``rd`` (written by ``begin``) is durable; after a failure, persist it
        and every later Ready again (module docstring)."""
        job = written.job
        if job is not None:
            try:
                elapsed = await job.future
            except StorageError as error:
                written.error = error
                if not job.observed:  # one failure, however many Readys shared the sync
                    job.observed = True
                    self._failed(error)
            else:
                if not job.observed:
                    job.observed = True
                    self._synced(elapsed, job.entries)
            finally:
                self._syncs_running -= 1
                if self._syncs_running == 0:
                    self._last_job = None
        elif written.error is not None:
            self._failed(written.error)
        if written.error is not None:
            self._rewriting = True
        if self._rewriting:
            await self.persist(rd)

    def _append(self, entries: list[EntryBatch], started: float = -1.0) -> float:
        """Write a Ready's entries (into the page cache: the sync follows), timed from
        ``started`` if given (>= 0); returns the clock at the end."""
        stored = self._stored
        if started < 0.0:
            started = perf_counter()
        count = 0
        for batch in entries:
            if stored is not None:
                stored.append(batch)
            else:
                self.storage.append(batch)
            count += len(batch)
        ended = perf_counter()
        self._append_seconds.observe(ended - started)
        self._append_entries.observe(count)
        return ended

    def _failed(self, error: StorageError) -> None:
        if self.failed is None:
            log.error("member %d: cannot persist (%s); refusing writes and retrying",
                      self.id, error)
        self.failed = error
        self.metrics.storage_failures.inc()

    def pipeline_empty(self) -> None:
        """Every Ready begun has finished: nothing written after a failure is left."""
        self._rewriting = False

    def _run_job(self, job: SyncJob) -> float:
        """On the I/O thread: no Ready joins ``job`` from now on; sync what they wrote."""
        with job.lock:
            job.started = True
        return self._timed_sync(job.hard_state, job.entries)

    def _timed_sync(self, hard_state: HardState | None, entries: bool,
                    started: float = -1.0) -> float:
        """Sync, timed from ``started`` if given (>= 0: where the step before ended)."""
        if started < 0.0:
            started = perf_counter()
        self.sync(hard_state, entries)
        return perf_counter() - started

    def _synced(self, elapsed: float, entries: bool) -> None:
        self._fsync_seconds.observe(elapsed)
        if entries:
            self.sync_seconds += (elapsed - self.sync_seconds) / 8

    def sync_inline(self, rd: Ready) -> bool:
        """Sync on the loop's thread rather than on the I/O thread? (module docstring)"""
        if not self._durable:
            return True
        if self.inline_sync_max_ms <= 0 or self.sync_seconds * 1e3 > self.inline_sync_max_ms:
            return False
        size = 0
        for batch in rd.entries:
            size += batch.nbytes
        return size <= self.inline_sync_bytes_max

    def sync(self, hard_state: HardState | None, entries: bool) -> None:
        stored = self._stored
        if stored is None:
            if entries:
                self.storage.sync()
            if hard_state is not None:
                self.storage.set_hard_state(hard_state)
            return
        if entries:
            stored.sync()
        if hard_state is not None:
            stored.set_hard_state(hard_state)
