"""The key-value store in SQLite: a disk state machine, for state larger than memory.

:class:`SqliteKVStateMachine` runs the commands and session rules of
:class:`~pyraft.kv.machine.KVRules` (the same results as :class:`KVStateMachine`, entry for
entry) over a SQLite database (the standard library's ``sqlite3``), ``pyraft node --state
sqlite`` keeps it in ``DATA_DIR/kv.sqlite3``. It is a
:class:`~pyraft.storage.state_machine.DiskStateMachine`: the database is its own snapshot,
so a restart replays only the entries applied after the last flush, and the log behind a
flush is released once the runtime recorded it.

Database (WAL journal): ``kv(key BLOB PRIMARY KEY, value BLOB)``; ``sessions(client,
last_active, last_sequence, last_result)`` (the result msgpack-encoded as in the memory
machine's snapshots); ``meta(name, value)`` holding ``applied_index``. Each batch is applied
in one transaction that also stores ``applied_index``, so the data and the index it is at are
always consistent, whatever a crash keeps. Batches commit with ``synchronous=NORMAL`` (no
fsync); ``flush`` commits with ``synchronous=FULL``, which syncs the WAL, so everything
applied is then durable: ``persisted_index()`` is the index of the last flush (or of what
the database held when it was opened, synced then). The sessions (at most ``sessions_max``)
are also kept in memory, written through at the end of each batch; the data is not.

Snapshots (``export_snapshot`` / ``import_snapshot``): a stream of msgpack values, cut in
chunks of about ``EXPORT_CHUNK_BYTES``: a header ``{"format": "pyraft-kv-sqlite", "version":
1, "index": n}``, then ``[0, key, value]`` per key in key order, ``[1, client, last_active,
last_sequence, result]`` per session, and ``[2, keys, sessions]`` (the counts) last, so a cut
stream is detected. An export reads in a read transaction of a connection of its own, opened
under the apply lock: it is the database as of that moment while applies go on (WAL readers
see a fixed snapshot). An import replaces every row in one transaction of the main
connection and commits it synced: atomic (a crash keeps the old state or the new, never a
mix) and never more than a chunk in memory.

Local reads (``data``, what the HTTP API serves) use a read-only connection: they see the
last committed batch, never a batch or an import half-way.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import cast

import msgpack

from pyraft.kv.machine import (
    SESSION_TTL_ENTRIES_DEFAULT,
    SESSIONS_MAX_DEFAULT,
    CasResult,
    CompareAndSet,
    Delete,
    KVRules,
    Put,
    SnapshotFormatError,
    _decode_result,
    _encode_result,
    _Session,
)
from pyraft.storage.state_machine import (
    SNAPSHOT_ENTRIES_DEFAULT,
    DiskStateMachine,
    SnapshotSink,
)
from raftcore.framing import EntryBatch

__all__ = ["DATABASE_NAME", "EXPORT_CHUNK_BYTES", "SqliteKVStateMachine"]

#: the database's file name in a member's data directory
DATABASE_NAME = "kv.sqlite3"
#: an export's chunks are cut at about this size
EXPORT_CHUNK_BYTES = 1024 * 1024
#: rows written per ``executemany`` while importing
_IMPORT_ROWS = 4096
_FORMAT = "pyraft-kv-sqlite"
_VERSION = 1
_KEY, _SESSION, _END = 0, 1, 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    client INTEGER PRIMARY KEY,
    last_active INTEGER NOT NULL,
    last_sequence INTEGER NOT NULL,
    last_result BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (name, value) VALUES ('applied_index', 0);
INSERT OR IGNORE INTO meta (name, value) VALUES ('flushes', 0);
"""


class _Data(Mapping):
    """The applied data, read through the read-only connection (see the module docstring)."""

    def __init__(self, machine: SqliteKVStateMachine) -> None:
        self._machine = machine

    def __getitem__(self, key: bytes) -> bytes:
        value = self._machine._read_committed(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key, default=None):
        value = self._machine._read_committed(key)
        return default if value is None else value

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._machine._committed_keys())

    def __len__(self) -> int:
        return self._machine._committed_count()


class SqliteKVStateMachine(DiskStateMachine, KVRules):
    """The key-value store in the SQLite database at ``path`` (created when absent); see the
    module docstring. Same options as :class:`~pyraft.kv.machine.KVStateMachine` but the
    compaction policy: ``snapshot_entries`` entries are applied between two flushes.

    State, besides the database: ``_sessions`` (as in :class:`KVRules`, mirrored in the
    ``sessions`` table at the end of every batch), ``_changed_sessions`` (clients whose row
    the current batch must write or delete), ``_applied`` (the index of the last applied
    entry, stored with each batch) and ``_durable`` (``persisted_index()``: the index of the
    last flush, ``<= _applied``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        session_ttl_entries: int = SESSION_TTL_ENTRIES_DEFAULT,
        sessions_max: int = SESSIONS_MAX_DEFAULT,
        snapshot_entries: int = SNAPSHOT_ENTRIES_DEFAULT,
        snapshot_sink: SnapshotSink | None = None,
    ) -> None:
        super().__init__(snapshot_entries=snapshot_entries, snapshot_sink=snapshot_sink)
        self._init_sessions(session_ttl_entries, sessions_max)
        self.path = os.fspath(path)
        self._changed_sessions: set[int] = set()
        # the main connection: applies, flushes, imports (under the apply lock, any thread)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._applied = self._stored_index(self._db)
        self._load_sessions()
        self._sync()  # what a crash of the process left in the page cache is durable now
        self._durable = self._applied
        # local reads: a connection of their own, which sees committed batches only
        self._reader = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                       isolation_level=None, check_same_thread=False)
        self._reader_lock = threading.Lock()

    apply = KVRules.apply  # StateMachine's abstract ``apply`` comes first in the MRO

    # ---- reading the local state -------------------------------------------------------------
    @property
    def data(self) -> Mapping[bytes, bytes]:
        """A read-only mapping of the data as applied (committed) on this replica."""
        return _Data(self)

    def _read_committed(self, key: bytes) -> bytes | None:
        with self._reader_lock:
            row = self._reader.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _committed_keys(self) -> list[bytes]:
        with self._reader_lock:
            return [row[0] for row in self._reader.execute("SELECT key FROM kv ORDER BY key")]

    def _committed_count(self) -> int:
        with self._reader_lock:
            return self._reader.execute("SELECT COUNT(*) FROM kv").fetchone()[0]

    # ---- KVRules' primitives (in the batch's transaction) ------------------------------------
    def _read(self, key: bytes) -> bytes | None:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _mutate(self, command: Put | Delete | CompareAndSet) -> object:
        key = command.key
        current = self._read(key)
        if type(command) is Put:
            self._store(key, command.value)
            return current
        if type(command) is Delete:
            if current is not None:
                self._db.execute("DELETE FROM kv WHERE key = ?", (key,))
            return current
        cas = cast(CompareAndSet, command)  # neither Put nor Delete
        if current != cas.expected:
            return CasResult(False, current)
        self._store(key, cas.new)
        return CasResult(True, cas.new)

    def _store(self, key: bytes, value: bytes) -> None:
        self._db.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _session_changed(self, client: int) -> None:
        self._changed_sessions.add(client)

    # ---- DiskStateMachine --------------------------------------------------------------------
    def _apply_entries(self, batch: EntryBatch) -> list[object]:
        """The whole batch in one transaction, with its sessions and its last index."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            results = super()._apply_entries(batch)
            self._write_sessions()
            db.execute("UPDATE meta SET value = ? WHERE name = 'applied_index'",
                       (batch.last_index,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._changed_sessions.clear()
            raise  # the machine is unusable now (StateMachine marks it); a restart recovers
        self._applied = batch.last_index
        return results

    def persisted_index(self) -> int:
        return self._durable

    def flush(self) -> None:
        if self._durable < self._applied:
            self._sync()
            self._durable = self._applied

    def export_snapshot(self) -> Iterator[bytes]:
        """The database as of now (after ``open_snapshot``'s flush: at ``persisted_index()``),
        streamed from a read transaction while applies continue."""
        reader = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                 isolation_level=None, check_same_thread=False)
        try:
            reader.execute("BEGIN")
            index = self._stored_index(reader)  # the read transaction starts here, fixed
        except BaseException:
            reader.close()
            raise
        return _export(reader, index)

    def import_snapshot(self, chunks: Iterable[bytes], index: int) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM kv")
            db.execute("DELETE FROM sessions")
            _import(db, chunks, index)
            db.execute("UPDATE meta SET value = ? WHERE name = 'applied_index'", (index,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._applied = index
        self._changed_sessions.clear()
        self._load_sessions()
        self._sync()
        self._durable = index

    def close(self) -> None:
        try:
            super().close()  # flushes
        finally:
            if self._db is not None:
                with self._reader_lock:
                    self._reader.close()
                try:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error:
                    pass  # a reader (an export) still open: the next open checkpoints
                self._db.close()
                self._db = None  # type: ignore[assignment]  # closed: nothing may use it

    # ---- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _stored_index(db: sqlite3.Connection) -> int:
        return db.execute("SELECT value FROM meta WHERE name = 'applied_index'").fetchone()[0]

    def _sync(self) -> None:
        """Commit a transaction with ``synchronous=FULL``: it syncs the WAL, so every
        transaction before it is durable too."""
        db = self._db
        db.execute("PRAGMA synchronous=FULL")
        try:
            db.execute("UPDATE meta SET value = value + 1 WHERE name = 'flushes'")
        finally:
            db.execute("PRAGMA synchronous=NORMAL")

    def _load_sessions(self) -> None:
        rows = self._db.execute(
            "SELECT client, last_active, last_sequence, last_result FROM sessions "
            "ORDER BY last_active"
        ).fetchall()
        self._sessions = OrderedDict(
            (client, _Session(active, sequence, _decode_result(msgpack.unpackb(result))))
            for client, active, sequence, result in rows
        )

    def _write_sessions(self) -> None:
        changed, self._changed_sessions = self._changed_sessions, set()
        if not changed:
            return
        sessions = self._sessions
        gone = [(client,) for client in changed if client not in sessions]
        kept = [
            (client, s.last_active, s.last_sequence, msgpack.packb(_encode_result(s.last_result)))
            for client in changed
            if (s := sessions.get(client)) is not None
        ]
        if gone:
            self._db.executemany("DELETE FROM sessions WHERE client = ?", gone)
        if kept:
            self._db.executemany(
                "INSERT OR REPLACE INTO sessions (client, last_active, last_sequence, "
                "last_result) VALUES (?, ?, ?, ?)",
                kept,
            )


def _export(reader: sqlite3.Connection, index: int) -> Iterator[bytes]:
    """The snapshot stream (module docstring), read from ``reader``'s open transaction;
    closes ``reader`` at the end (or when the iterator is closed or collected)."""
    try:
        buffer = bytearray(msgpack.packb({"format": _FORMAT, "version": _VERSION,
                                          "index": index}))
        keys = sessions = 0
        pack = msgpack.Packer().pack
        for key, value in reader.execute("SELECT key, value FROM kv ORDER BY key"):
            buffer += pack([_KEY, key, value])
            keys += 1
            if len(buffer) >= EXPORT_CHUNK_BYTES:
                yield bytes(buffer)
                buffer.clear()
        for row in reader.execute(
            "SELECT client, last_active, last_sequence, last_result FROM sessions "
            "ORDER BY client"
        ):
            buffer += pack([_SESSION, *row])
            sessions += 1
        buffer += pack([_END, keys, sessions])
        yield bytes(buffer)
    finally:
        reader.close()


def _import(db: sqlite3.Connection, chunks: Iterable[bytes], index: int) -> None:
    """Insert the rows of a snapshot stream (in ``db``'s open transaction); a stream that is
    not one, or not at ``index``, raises ``SnapshotFormatError``."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    header = None
    end = None
    keys: list[tuple[bytes, bytes]] = []
    sessions: list[tuple[int, int, int, bytes]] = []
    counts = [0, 0]

    def write_keys() -> None:
        db.executemany("INSERT INTO kv (key, value) VALUES (?, ?)", keys)
        keys.clear()

    try:
        for chunk in chunks:
            unpacker.feed(chunk)
            for item in unpacker:
                if header is None:
                    if type(item) is not dict or item.get("format") != _FORMAT \
                            or item.get("version") != _VERSION:
                        raise SnapshotFormatError("not a SQLite key-value snapshot")
                    if item.get("index") != index:
                        raise SnapshotFormatError(
                            f"the snapshot is at {item.get('index')!r}, not {index}")
                    header = item
                    continue
                if end is not None or type(item) is not list or not item:
                    raise SnapshotFormatError(f"unexpected {item!r} in a key-value snapshot")
                kind = item[0]
                if kind == _KEY and len(item) == 3 and all(type(v) is bytes for v in item[1:]):
                    keys.append((item[1], item[2]))
                    counts[0] += 1
                    if len(keys) >= _IMPORT_ROWS:
                        write_keys()
                elif kind == _SESSION and len(item) == 5 and all(
                        type(v) is int for v in item[1:4]) and type(item[4]) is bytes:
                    _decode_result(msgpack.unpackb(item[4]))  # checked before it is stored
                    sessions.append(tuple(item[1:]))
                    counts[1] += 1
                elif kind == _END and len(item) == 3:
                    end = item
                else:
                    raise SnapshotFormatError(f"bad record {item!r} in a key-value snapshot")
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        if isinstance(exc, SnapshotFormatError):
            raise
        raise SnapshotFormatError(f"a key-value snapshot does not decode: {exc}") from None
    if end is None or unpacker.read_bytes(1):
        raise SnapshotFormatError("the key-value snapshot is cut short (or has a tail)")
    if end[1:] != counts:
        raise SnapshotFormatError(f"the snapshot announces {end[1:]} records, holds {counts}")
    write_keys()
    db.executemany("INSERT INTO sessions (client, last_active, last_sequence, last_result) "
                   "VALUES (?, ?, ?, ?)", sessions)
