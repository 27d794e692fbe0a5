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
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable

from pyraft.cluster.snapshots import Snapshotting
from pyraft.core import Ready
from pyraft.core.messages import HardState
from pyraft.core.storage import LogStore
from pyraft.errors import StorageError
from pyraft.metrics import Metrics

__all__ = ["LogWriter"]

log = logging.getLogger("pyraft.cluster")

#: seconds between two attempts to persist a Ready while storage fails
RETRY_SECONDS = 1.0


class LogWriter:
    """Persists Readys into ``storage`` (module docstring). State: ``failed``: the storage
    failure refusing writes now, or None; ``sync_seconds``: the moving average (1/8 weight)
    of the syncs of entries, in seconds (``>= 0``)."""

    def __init__(self, member_id: int, storage: LogStore, metrics: Metrics,
                 snapshots: Snapshotting, *, inline_sync_max_ms: float,
                 inline_sync_bytes_max: int, installed: Callable[[int], None]) -> None:
        self.id = member_id
        self.storage = storage
        self.metrics = metrics
        self._snapshots = snapshots
        #: sync on the loop's thread while syncs take less than this on average (and the
        #: batch is under ``inline_sync_bytes_max``); 0 always uses the executor
        self.inline_sync_max_ms = inline_sync_max_ms
        self.inline_sync_bytes_max = inline_sync_bytes_max
        self._installed = installed
        self.failed: StorageError | None = None
        self.sync_seconds = 0.0
        # given by ``bind`` at start
        self._loop: asyncio.AbstractEventLoop
        self._executor: concurrent.futures.ThreadPoolExecutor

    def bind(self, loop: asyncio.AbstractEventLoop,
             executor: concurrent.futures.ThreadPoolExecutor) -> None:
        self._loop, self._executor = loop, executor

    async def persist(self, rd: Ready) -> None:
        storage = self.storage
        metrics = self.metrics
        snapshots = self._snapshots
        while True:
            try:
                if rd.snapshot_chunks:  # written before their acknowledgements leave
                    await self._loop.run_in_executor(self._executor, snapshots.write_chunks,
                                                     rd.snapshot_chunks)
                if rd.snapshot is not None:
                    started = time.perf_counter()
                    size = await snapshots.install_received(rd.snapshot.meta)
                    self._installed(rd.snapshot.meta.index)
                    metrics.snapshots.inc(1, ("installed",))
                    metrics.snapshot_seconds.observe(time.perf_counter() - started,
                                                     ("installed",))
                    metrics.snapshot_bytes.observe(size, ("installed",))
                snapshots.discard_unused_receive()
                if rd.entries:
                    started = time.perf_counter()
                    for batch in rd.entries:
                        storage.append(batch)
                    metrics.append_seconds.observe(time.perf_counter() - started)
                    metrics.append_entries.observe(sum(len(batch) for batch in rd.entries))
                if rd.hard_state is not None or rd.must_sync:
                    started = time.perf_counter()
                    if self.sync_inline(rd):
                        self.sync(rd.hard_state, bool(rd.entries))
                    else:
                        await self._loop.run_in_executor(self._executor, self.sync,
                                                         rd.hard_state, bool(rd.entries))
                    elapsed = time.perf_counter() - started
                    metrics.fsync_seconds.observe(elapsed)
                    if rd.entries:
                        self.sync_seconds += (elapsed - self.sync_seconds) / 8
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

    def sync_inline(self, rd: Ready) -> bool:
        """Sync on the loop's thread rather than in the executor? (module docstring)"""
        if not self.storage.durable:
            return True
        if self.sync_seconds * 1e3 > self.inline_sync_max_ms:
            return False
        return sum(batch.nbytes for batch in rd.entries) <= self.inline_sync_bytes_max

    def sync(self, hard_state: HardState | None, entries: bool) -> None:
        if entries:
            self.storage.sync()
        if hard_state is not None:
            self.storage.set_hard_state(hard_state)
