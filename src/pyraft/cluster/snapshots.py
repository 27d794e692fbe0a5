"""Snapshotting of one member: taking, storing, receiving, installing and exporting snapshots.

The runtime owns the loop; this part owns every snapshot path and the thread hops they take:

- **recovering** (``finish_interrupted_install``, ``recover``; at start, before the member
  speaks): a disk state machine's install that a stop interrupted is finished; the state
  machine recovers from the stored snapshot (its metadata only, for a disk state machine
  whose store holds the state) and the log up to the commit index, and receives the sink;
- **taking** (``sink``): the state machine calls the sink it was given at recovery with a
  snapshot at ``index`` (bytes, chunks, or None for a disk state machine's store). Called on
  the loop's thread, or on the state machine's background worker, which hands the rest to
  the loop and waits. A log on disk writes the file on the I/O thread (one write at a time;
  the newest snapshot asked for meanwhile waits, older ones are dropped) and the loop adopts
  it, then the core releases the log behind it (``compacted_to``). A log in memory records
  it at once. A storage failure loses nothing: the log keeps the entries; it is logged and
  counted (``storage_failures``).
- **receiving** (``write_chunks``, on the I/O thread): the chunks the core hands out in its
  Ready are written to a temporary file (in the snapshot store, or a spool file for a disk
  state machine or a log in memory) before their acknowledgements leave; a transfer
  interrupted resumes from the bytes written.
- **installing** (``install_received``): the last chunk written, the snapshot goes into the
  snapshot store (a rename), the memory state machine restores from it, or a disk state
  machine imports it into its store before storage records the metadata
  (``prepare_install`` first, for a crash in between).
- **exporting** (``snapshot_wanted``): a leader whose snapshot is a disk state machine's
  store exports it on a thread of its own (never the I/O thread: syncs must not wait behind
  it), spooled to a file and offered to storage (``offer_export``); a failure is retried
  after a second.

State: ``_snapshot_writing``: a file is being written on the I/O thread, ``_snapshot_waiting``
the newest snapshot asked for meanwhile (meta, data, started); ``_receiving``: the writer of
the snapshot being received (``write_at``, ``size``, ``meta``, ``abort``) and
``received_whole`` whether its last chunk is written (the log writer reads it before each
Ready and calls ``discard_unused_receive`` only when it is set); ``_export_task``: the
export running, ``_export_retry_at`` the loop time before which a failed export is not
retried.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, cast

from pyraft.core.membership import Configuration
from pyraft.core.messages import Snapshot, SnapshotChunk, SnapshotMeta
from pyraft.core.storage import LogStore, SnapshotReceiver
from pyraft.errors import (
    InvariantError,
    LogCompactedError,
    LogUnavailableError,
    StorageError,
)
from pyraft.metrics import Metrics
from pyraft.storage.files import SpooledData, SpoolWriter
from pyraft.storage.state_machine import DiskStateMachine, SnapshotData, StateMachine

__all__ = ["Snapshotting", "read_whole"]

log = logging.getLogger("pyraft.cluster")


class SnapshotCore(Protocol):
    """What snapshotting asks of the core: the configuration in force at an index (recorded
    with a snapshot), and that storage was compacted up to an index."""

    def configuration_at(self, index: int) -> Configuration: ...
    def compacted_to(self, index: int) -> None: ...


class Snapshotting:
    """The snapshot paths of one member (module docstring). Built with the member's storage,
    state machine and metrics; ``bind`` gives it the loop, the I/O executor and the core at
    start. ``running()`` tells whether the member runs, ``failed()`` whether it stopped on an
    error; ``fatal(error)`` stops it on a bug; ``track``/``untrack`` register the export task
    with the member's tasks (cancelled on stop)."""

    def __init__(self, member_id: int, storage: LogStore, state_machine: StateMachine,
                 metrics: Metrics, *, chunk_bytes: int, running: Callable[[], bool],
                 failed: Callable[[], bool], fatal: Callable[[Exception], None],
                 track: Callable[[asyncio.Task[None]], None],
                 untrack: Callable[[asyncio.Task[Any]], None]) -> None:
        self.id = member_id
        self.storage = storage
        self.state_machine = state_machine
        self.metrics = metrics
        self._chunk_bytes = chunk_bytes
        self._running = running
        self._failed = failed
        self._fatal = fatal
        self._track, self._untrack = track, untrack
        # given by ``bind`` at start
        self.core: SnapshotCore
        self._loop: asyncio.AbstractEventLoop
        self._executor: concurrent.futures.Executor
        self._loop_thread: int | None = None  # the thread the member runs on, once bound
        self._snapshot_writing = False
        self._snapshot_waiting: tuple[SnapshotMeta, bytes | None, float] | None = None
        self._receiving: SnapshotReceiver | None = None
        self.received_whole = False
        self._export_task: asyncio.Task[None] | None = None
        self._export_retry_at = 0.0

    def bind(self, loop: asyncio.AbstractEventLoop,
             executor: concurrent.futures.Executor, core: SnapshotCore) -> None:
        """The member starts: the sink hops to ``loop`` from other threads from now on."""
        self._loop, self._executor, self.core = loop, executor, core
        self._loop_thread = threading.get_ident()

    def finish_interrupted_install(self) -> None:
        """At start, before the core reads storage: a disk state machine's snapshot install
        that a stop interrupted is finished (storage records what the store holds)."""
        machine = self.state_machine
        if isinstance(machine, DiskStateMachine):
            finished = self.storage.resolve_install(machine.persisted_index())
            if finished is not None:
                log.warning("member %d: finished installing the snapshot at %d that a stop "
                            "interrupted", self.id, finished.index)

    def recover(self) -> int:
        """At start: the state machine recovers from the stored snapshot and the log up to
        the commit index, receiving ``sink``; returns the index it has applied. A disk state
        machine's store is exported through ``snapshot_wanted`` from now on."""
        machine = self.state_machine
        storage = self.storage
        if isinstance(machine, DiskStateMachine):
            # the store holds the state: only the metadata is needed
            snapshot = Snapshot(storage.latest_snapshot_meta(), b"")
        else:  # a state machine restores from bytes: the stored file is read once, here
            snapshot = storage.snapshot()
            snapshot = Snapshot(snapshot.meta, read_whole(snapshot.data))
        hard, _ = storage.initial_state()
        commit = min(max(hard.commit, snapshot.meta.index), storage.last_index())
        applied = machine.recover(storage, commit, snapshot if snapshot.meta.index else None,
                                  sink=self.sink)
        if isinstance(machine, DiskStateMachine):
            storage.snapshot_wanted = self.snapshot_wanted
        return applied

    def discard_unused_receive(self) -> None:
        """A snapshot received whole but not installed (the log had the entries already): its
        file goes."""
        if self.received_whole:
            self.received_whole = False
            receiving, self._receiving = self._receiving, None
            if receiving is not None:
                receiving.abort()

    def abort_receive(self) -> None:
        """The member stopped (after the I/O thread's last write): a partial received
        snapshot is dropped, and sent again after a restart."""
        receiving, self._receiving = self._receiving, None
        if receiving is not None:
            receiving.abort()

    def sink(self, index: int, data: SnapshotData) -> None:
        """The state machine took a snapshot at ``index``: store it and release the log.

        Called on the loop's thread, or (background compaction) on the state machine's
        worker: that one reads the chunks, then hands the rest to the loop and waits for it,
        since the log and the core belong to the loop's thread; a member that stops
        meanwhile drops the snapshot (the log keeps the entries).

        A storage failure (a full disk) loses nothing: the log keeps every entry the snapshot
        would cover. It is logged and counted (``storage_failures``); the state machine takes
        its next snapshot as usual."""
        payload: bytes | bytearray | None = data \
            if isinstance(data, (bytes, bytearray)) or data is None else b"".join(data)
        if self._loop_thread is None or threading.get_ident() == self._loop_thread:
            self._store_snapshot(index, payload)
            return
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def store() -> None:
            try:
                if self._running():
                    self._store_snapshot(index, payload)
                done.set_result(None)
            except BaseException as error:  # the state machine's worker reports it
                done.set_exception(error)

        try:
            self._loop.call_soon_threadsafe(store)
        except RuntimeError:  # the loop is closed: the member is gone
            return
        while self._running():
            try:
                done.result(timeout=0.1)
                return
            except concurrent.futures.TimeoutError:
                continue

    def _store_snapshot(self, index: int, payload: bytes | bytearray | None) -> None:
        if index < self.storage.first_index():
            return  # a background build older than a snapshot installed meanwhile: ignored
        configuration = self.core.configuration_at(index)
        started = time.perf_counter()
        storage = self.storage
        try:
            files = storage.snapshot_files
            if self._running() and files is not None:
                # the file is written on the I/O thread (a 64 MiB one takes ~200 ms: longer
                # than an election timeout); the loop adopts it and releases the log after.
                # None: a disk state machine's store is durable up to ``index``: only the
                # metadata is recorded (an external snapshot), still before the release
                data = None if payload is None else bytes(payload)
                meta = files.snapshot_meta(index, configuration)
                if self._snapshot_writing:
                    # One write at a time; a newer snapshot replaces the one waiting (it
                    # covers more). Queued one by one, the writes fell behind for good when
                    # snapshots came faster than files are written, and the log with them:
                    # a member appending ~1.5M entries/s, a snapshot every 1000 entries and
                    # 5-8 ms per file (two fsyncs) released 5,000 entries of 50,000.
                    self._snapshot_waiting = (meta, data, started)
                    return
                self._write_snapshot(meta, data, started)
                return
            else:
                storage.create_snapshot(index, None if payload is None else bytes(payload),
                                        configuration)
        except StorageError as error:
            self._snapshot_failed(index, error)
            return
        self._snapshot_stored(index, payload, started)

    def _write_snapshot(self, meta: SnapshotMeta, data: bytes | None, started: float) -> None:
        files = self.storage.snapshot_files
        if files is None:
            raise InvariantError("a snapshot file written by a log without files")
        self._snapshot_writing = True
        written = self._loop.run_in_executor(self._executor, files.write_snapshot, meta, data)
        written.add_done_callback(lambda done: self._snapshot_written(done, meta, data, started))

    def _snapshot_written(self, done: asyncio.Future[None], meta: SnapshotMeta,
                          data: bytes | None, started: float) -> None:
        self._snapshot_writing = False
        if not self._running() or done.cancelled():
            return
        try:
            self._adopt_written_snapshot(done, meta, data, started)
        finally:
            waiting, self._snapshot_waiting = self._snapshot_waiting, None
            if waiting is not None and self._running() and not self._failed() \
                    and waiting[0].index >= self.storage.first_index():
                self._write_snapshot(*waiting)

    def _adopt_written_snapshot(self, done: asyncio.Future[None], meta: SnapshotMeta,
                                data: bytes | None, started: float) -> None:
        error = done.exception()
        if isinstance(error, StorageError):
            self._snapshot_failed(meta.index, error)
            return
        if error is not None:  # a bug: stop serving rather than go on half-broken
            self._fatal(error if isinstance(error, Exception) else RuntimeError(error))
            return
        if meta.index < self.storage.first_index():
            return  # a newer snapshot was installed while this one was written
        files = self.storage.snapshot_files
        if files is not None:  # a log with files wrote it
            files.adopt_snapshot(meta, data)
        self._snapshot_stored(meta.index, data, started)

    def _snapshot_failed(self, index: int, error: StorageError) -> None:
        log.error("member %d: cannot store the snapshot at %d (%s); the log keeps the "
                  "entries", self.id, index, error)
        self.metrics.storage_failures.inc()

    def _snapshot_stored(self, index: int, payload: bytes | bytearray | None,
                         started: float) -> None:
        self.metrics.snapshots.inc(1, ("created",))  # payload None: an external snapshot
        self.metrics.snapshot_seconds.observe(time.perf_counter() - started, ("created",))
        if payload is not None:
            self.metrics.snapshot_bytes.observe(len(payload), ("created",))
        self.core.compacted_to(index)
        log.info("member %d: snapshot at %d", self.id, index)


    def write_chunks(self, chunks: list[SnapshotChunk]) -> None:
        """On the I/O thread: write received chunks to the snapshot's temporary file. A chunk
        at offset 0 starts a new one. Repeatable when the Ready is retried after a storage
        failure (a chunk already written is skipped)."""
        for chunk in chunks:
            receiving = self._receiving
            if chunk.offset == 0 and (receiving is None or receiving.meta != chunk.meta
                                      or receiving.size > 0):
                self._receiving = None
                if receiving is not None:
                    receiving.abort()
                receiving = self._receiving = self._begin_receive(chunk.meta)
                self.received_whole = False
            if receiving is None or receiving.meta != chunk.meta:
                raise InvariantError(f"a chunk at {chunk.offset} of a snapshot not being "
                                     "received")
            receiving.write_at(chunk.offset, chunk.data)
            self.received_whole = chunk.done

    def _begin_receive(self, meta: SnapshotMeta) -> SnapshotReceiver:
        files = self.storage.snapshot_files
        if files is not None and not isinstance(self.state_machine, DiskStateMachine):
            return files.receive_snapshot(meta)  # becomes the snapshot file: no copy
        return SpoolWriter(meta, self.storage.directory)

    async def install_received(self, meta: SnapshotMeta) -> int:
        """Install the snapshot whose chunks were written; returns its size in bytes."""
        receiving = self._receiving
        if receiving is None or receiving.meta != meta or not self.received_whole:
            raise InvariantError(f"installing the snapshot at {meta.index} before it was "
                                 "received whole")
        loop, executor, storage = self._loop, self._executor, self.storage
        size = receiving.size
        files = storage.snapshot_files
        machine = self.state_machine
        if isinstance(receiving, SpoolWriter) and isinstance(machine, DiskStateMachine):
            # the spool file, read in chunks by the import (kept until it succeeded: a
            # storage failure retries the install)
            await self._install_into_store(machine, meta, receiving.data())
            receiving.abort()
        elif isinstance(receiving, SpoolWriter):  # a log kept in memory holds the bytes
            whole = await loop.run_in_executor(executor, read_whole, receiving.data())
            snapshot = Snapshot(meta, whole)
            await loop.run_in_executor(executor, storage.apply_snapshot, snapshot)
            receiving.abort()
            machine.install_snapshot(snapshot)
        else:  # the temporary file in the snapshot store is synced and renamed into place
            if files is None:
                raise InvariantError("a snapshot received into a log without files")
            await loop.run_in_executor(executor, files.install_received, receiving)
            stored = storage.snapshot()
            # a memory state machine restores from bytes: the file is read once, here
            whole = await loop.run_in_executor(executor, read_whole, stored.data)
            self.state_machine.install_snapshot(Snapshot(meta, whole))
        self._receiving, self.received_whole = None, False
        return size

    async def _install_into_store(self, machine: DiskStateMachine, meta: SnapshotMeta,
                                  data: SpooledData) -> None:
        """A disk state machine installs the leader's snapshot into its store (durable at
        ``meta.index``), then storage records the metadata and resets the log: in this order,
        so a recorded snapshot always has its data behind it (``prepare_install`` notes the
        install first, for a crash in between: see ``resolve_install``). ``data`` is read
        chunk by chunk from its file as the import consumes it."""
        chunk_bytes = self._chunk_bytes
        chunks = data.chunks(chunk_bytes)
        loop = self._loop
        # noted first: a crash after the import, before the metadata, is finished at start
        await loop.run_in_executor(self._executor, self.storage.prepare_install, meta)
        await loop.run_in_executor(self._executor, machine.install_chunks, meta.index, chunks)
        await loop.run_in_executor(self._executor, lambda: self.storage.apply_snapshot(
            Snapshot(meta, b""), external=True))

    def snapshot_wanted(self) -> None:
        """The core needs a snapshot of the disk state machine's store to send: export it on
        a thread of its own (never the I/O thread: syncs must not wait behind it)."""
        if (self._running() and self._export_task is None
                and self._loop.time() >= self._export_retry_at):
            task = self._loop.create_task(self._export_snapshot(),
                                          name=f"pyraft-{self.id}-export")
            self._export_task = task
            self._track(task)

    async def _export_snapshot(self) -> None:
        started = time.perf_counter()
        machine = self.state_machine
        directory = self.storage.directory
        try:
            if not isinstance(machine, DiskStateMachine):
                raise InvariantError("an export asked of a state machine that is not a disk one")

            def export() -> tuple[int, SpooledData | None]:
                index, chunks = machine.open_snapshot()
                return index, SpooledData.spool(chunks, directory, lambda: self._running())

            exported: asyncio.Future[tuple[int, SpooledData | None]] = \
                self._loop.run_in_executor(None, export)
            try:
                index, data = await asyncio.shield(exported)
            except asyncio.CancelledError:  # stopping: the thread's file is closed when done
                exported.add_done_callback(_close_export)
                raise
            if data is None:
                return
            storage = self.storage
            term: int | None
            try:
                term = storage.term(index)
            except (LogCompactedError, LogUnavailableError):
                term = None  # the log moved past it meanwhile: the next request exports again
            if term is None or index < storage.latest_snapshot_meta().index:
                data.close()
                return
            meta = SnapshotMeta(index, term,
                                **self.core.configuration_at(index).snapshot_fields())
            # the export's data is a file-backed buffer read like bytes (len, slicing)
            if storage.offer_export(Snapshot(meta, cast(bytes, data))):
                self.metrics.snapshots.inc(1, ("exported",))
                self.metrics.snapshot_seconds.observe(time.perf_counter() - started,
                                                      ("exported",))
                self.metrics.snapshot_bytes.observe(len(data), ("exported",))
                log.info("member %d: exported the store at %d (%d bytes) for a follower",
                         self.id, index, len(data))
        except OSError as error:  # a full disk (StorageError), the spool file: retry later
            log.error("member %d: cannot export the store for a follower (%s); retrying",
                      self.id, error)
            self.metrics.storage_failures.inc()
            self._export_retry_at = self._loop.time() + 1.0
        except Exception as error:  # a bug or a broken store: stop serving
            self._fatal(error)
        finally:
            self._export_task = None
            current = asyncio.current_task()
            if current is not None:
                self._untrack(current)


def read_whole(data: Any) -> bytes:
    """A snapshot's data as bytes (a file-backed buffer is read whole)."""
    if isinstance(data, bytes):
        return data
    return bytes(data[0:len(data)])


def _close_export(done: asyncio.Future[tuple[int, SpooledData | None]]) -> None:
    """Release the spool file of an export finished after its member stopped waiting."""
    if not done.cancelled() and done.exception() is None:
        data = done.result()[1]
        if data is not None:
            data.close()
