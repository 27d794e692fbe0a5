"""Snapshot storage: state-machine snapshots written as a stream, committed atomically, read
back in chunks (InstallSnapshot) or whole (restart).

A snapshot is one file ``snapshot-<index:020d>-<term:020d>.snap``::

    offset      size  field
    0           4     magic b"RSNP"
    4           2     version (big endian, currently 1)
    6           4     m: length of the encoded metadata (big endian)
    10          m     SnapshotMeta, msgpack-encoded {index, term, voters, learners, members}
                      plus ``external: true`` for an external snapshot (below)
    10+m        8     n: length of the data (big endian)
    18+m        n     the data
    18+m+n      4     trailer: crc32c of bytes 0 .. 18+m+n-1 (header and data)

Writing (``begin`` -> ``SnapshotWriter``): the header goes to a temporary file in the same
directory with a placeholder data length, chunks are appended as they come (from a
state-machine snapshot builder, or from InstallSnapshot messages) without holding the data in
memory, and ``commit`` patches the length, appends the trailer, fsyncs, renames the file into
place, fsyncs the directory and then releases the snapshots beyond the ``keep`` newest (a
release is not fsynced: a file a crash brings back is older and goes at the next commit). The
trailer checksum is computed while streaming: the header's checksum (known only once the
length is) is combined with the data's (``crc32c_combine``), so nothing is read back.

Reading: ``latest()`` verifies the newest snapshot in full (once per file per store instance)
and raises ``CorruptStateError`` naming the file when it is damaged: falling back to an older
snapshot silently would hide the damage, so that takes ``latest(skip_corrupt=True)``.
``read`` serves bounded chunks of a verified snapshot; ``data(meta)`` is a file-backed view
of the data (``len`` and slices, each slice read when asked: what a leader sends from, chunk
by chunk, without holding the snapshot); ``load`` reads and verifies the whole data.

Receiving (InstallSnapshot): the follower's chunks go to a writer with ``write_at(offset,
chunk)``, positional and retryable (a failed write or commit leaves the writer open, so the
same chunk or commit is tried again, as the runtime retries a Ready after a full disk).
A crash leaves at most temporary files, removed when the store opens.

External snapshots (``begin(meta, external=True)``): a disk state machine's store is its own
snapshot, so what is recorded is only the metadata (the data is empty): the store holds the
state up to ``meta.index`` durably, and the log before it may go. ``external(meta)`` tells
them apart; sending one to a follower takes an export of the store (the runtime's job).
A follower installing one into its store first records it as pending (``write_pending``, the
checked file ``install-pending``): after a crash between the store's import and the commit of
the metadata, ``pending()`` lets the runtime finish (or forget) the install.

``MemorySnapshotStore`` has the same API and keeps everything in memory.
"""

from __future__ import annotations

import errno
import os
import re
import struct
import warnings
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import msgpack

from pyraft.core.messages import Snapshot, SnapshotMeta
from pyraft.errors import (
    ConfigError,
    CorruptStateError,
    LogCompactedError,
    StorageError,
    invariant,
)
from pyraft.storage.files import (
    FileSlices,
    atomic_write,
    ensure_directory,
    fsync_directory,
    pack_checked,
    read_checked,
    remove_temp_files,
    sync_file,
    temp_path,
    translate_os_errors,
    write_all,
)
from raftcore.crc import crc32c

__all__ = [
    "SNAPSHOT_META_BYTES_MAX",
    "SNAPSHOT_VERSION",
    "FileSnapshotStore",
    "MemorySnapshotStore",
    "SnapshotStore",
    "SnapshotStoreProtocol",
    "SnapshotWriter",
    "StoredSnapshotData",
    "crc32c_combine",
    "snapshot_file_name",
]

_MAGIC = b"RSNP"
#: Version of the snapshot file layout.
SNAPSHOT_VERSION = 1
_PREFIX = struct.Struct(">4sHI")  # magic, version, metadata length
_DATA_LENGTH = struct.Struct(">Q")
_TRAILER = struct.Struct(">I")
#: Largest encoded SnapshotMeta (a membership list); a larger length field is corruption.
SNAPSHOT_META_BYTES_MAX = 1024 * 1024
#: Bytes read per call while verifying a snapshot file.
_VERIFY_CHUNK_BYTES = 1024 * 1024

_FILE_PREFIX = "snapshot-"
_PENDING_NAME = "install-pending"
_PENDING_KIND = b"PINS"
_FILE_NAME = re.compile(r"snapshot-(\d{20})-(\d{20})\.snap")


def snapshot_file_name(index: int, term: int) -> str:
    """The file name of the snapshot at ``index`` of ``term``."""
    return f"{_FILE_PREFIX}{index:020d}-{term:020d}.snap"


# -- crc32c of a concatenation ------------------------------------------------------------------
# CRC arithmetic over GF(2) polynomials modulo the (reflected) Castagnoli polynomial, as in
# zlib's crc32_combine: crc(A + B) = crc(A) * x^(8 * len(B)) mod P  xor  crc(B).

_POLY = 0x82F63B78


def _multiply_mod_p(a: int, b: int) -> int:
    """a * b modulo P, both reflected 32-bit polynomials."""
    product = 0
    mask = 1 << 31
    while a:
        if a & mask:
            product ^= b
            a ^= mask
        mask >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return product


def _make_powers() -> list[int]:
    powers = [1 << 30]  # x^1; entry k is x^(2^k)
    for _ in range(31):
        powers.append(_multiply_mod_p(powers[-1], powers[-1]))
    return powers


_X_POWERS = _make_powers()


def _x_power_mod_p(exponent_bytes: int) -> int:
    """x^(8 * exponent_bytes) modulo P."""
    result = 1 << 31  # x^0
    k = 3  # 8 = 2^3
    while exponent_bytes:
        if exponent_bytes & 1:
            result = _multiply_mod_p(_X_POWERS[k & 31], result)
        exponent_bytes >>= 1
        k += 1
    return result


def crc32c_combine(crc_first: int, crc_second: int, length_second: int) -> int:
    """crc32c(A + B) from crc32c(A), crc32c(B) and len(B), without reading A or B."""
    invariant(length_second >= 0, "length must be non-negative")
    return _multiply_mod_p(_x_power_mod_p(length_second), crc_first) ^ crc_second


# -- metadata -----------------------------------------------------------------------------------


def _is_count(value: object) -> bool:
    """A non-negative integer that fits the 64 bits the formats give it."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 64


def _check_meta(meta: SnapshotMeta) -> None:
    invariant(isinstance(meta, SnapshotMeta), f"expected SnapshotMeta, not {type(meta).__name__}")
    invariant(_is_count(meta.index) and _is_count(meta.term), f"invalid snapshot meta {meta}")
    invariant(
        all(_is_count(m) and m > 0 for m in (*meta.voters, *meta.learners)),
        f"snapshot member ids must be positive integers: {meta}",
    )


def _encode_meta(meta: SnapshotMeta, external: bool = False) -> bytes:
    record = {
        "index": meta.index,
        "term": meta.term,
        "voters": list(meta.voters),
        "learners": list(meta.learners),
        "members": [[m, a, dict(md)] for m, a, md in meta.members_info],
    }
    if external:  # absent otherwise: the files of other snapshots stay as they were
        record["external"] = True
    encoded = msgpack.packb(record)
    invariant(len(encoded) <= SNAPSHOT_META_BYTES_MAX, "snapshot metadata is too large")
    return encoded


def _decode_meta(path: str, payload: bytes) -> tuple[SnapshotMeta, bool]:
    """The metadata, and whether the snapshot is external."""
    try:
        record = msgpack.unpackb(payload)
        fields = {"index", "term", "voters", "learners"}
        if not isinstance(record, dict) or not (
            fields <= set(record) <= fields | {"members", "external"}
        ):
            raise ValueError("unexpected fields")
        if record.get("external", True) is not True:
            raise ValueError("external must be true when present")
        voters, learners = record["voters"], record["learners"]
        if not isinstance(voters, list) or not isinstance(learners, list):
            raise ValueError("voters and learners must be lists")
        if not (_is_count(record["index"]) and _is_count(record["term"])):
            raise ValueError("index and term must be non-negative integers")
        if not all(_is_count(m) and m > 0 for m in voters + learners):
            raise ValueError("member ids must be positive integers")
        members = tuple(
            sorted((int(m), str(a), tuple(sorted((str(k), str(v)) for k, v in md.items())))
                   for m, a, md in record.get("members", ()))
        )
        meta = SnapshotMeta(
            record["index"], record["term"], tuple(voters), tuple(learners), members
        )
        return meta, "external" in record
    except Exception as error:  # msgpack raises several unrelated types
        raise CorruptStateError(
            f"invalid snapshot metadata ({error})", path, _PREFIX.size
        ) from error


def _check_order(existing: list[tuple[int, int]], meta: SnapshotMeta) -> None:
    """Refuse a snapshot older than the newest stored one (``LogCompactedError``), or one whose
    term contradicts it (``InvariantError``: terms never decrease along a log)."""
    if not existing:
        return
    index, term = max(existing)
    if meta.index < index:
        raise LogCompactedError(
            f"snapshot at index {meta.index} is older than the stored snapshot at {index}"
        )
    invariant(
        meta.term >= term and (meta.index > index or meta.term == term),
        f"snapshot {meta.index}/{meta.term} contradicts the stored snapshot {index}/{term}",
    )


# -- the common API -----------------------------------------------------------------------------


class SnapshotWriter:
    """A snapshot being written: ``write`` chunks, then ``commit`` (or ``abort``).

    As a context manager it aborts on leaving the block unless ``commit`` was called (so an
    exception discards the partial snapshot). A writer whose ``write`` or ``commit`` raised is
    aborted: start again with ``begin``. Using a writer after commit or abort is a bug
    (``InvariantError``); ``abort`` after either is a no-op.
    """

    def __init__(self, meta: SnapshotMeta, external: bool = False) -> None:
        #: What the snapshot covers.
        self.meta = meta
        #: Metadata only: the data lives in a disk state machine's store (nothing is written).
        self.external = external
        #: Data bytes written so far (the offset the next chunk lands at).
        self.size = 0
        #: "open", then "committed" or "aborted".
        self.state = "open"

    def write_at(self, offset: int, chunk: bytes | bytearray | memoryview) -> None:
        """Write ``chunk`` at data offset ``offset``: chunks come in order, a chunk already
        written is skipped, and a failure leaves the writer open so the same chunk can be
        written again (a received snapshot: the runtime retries after a full disk)."""
        self._check_open("write to")
        view = memoryview(chunk).cast("B")
        if offset + len(view) <= self.size:
            return
        invariant(offset == self.size, f"a chunk at {offset} after {self.size} bytes written")
        invariant(not self.external, "an external snapshot has no data to write")
        self._write_at(view)
        self.size += len(view)

    def commit_retryable(self) -> SnapshotMeta:
        """``commit``, except that a ``StorageError`` (a full disk) leaves the writer open to
        commit again; a newer snapshot committed meanwhile still aborts it."""
        if self.state == "committed":
            return self.meta
        return self._finish(keep_open_on=StorageError)

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Append ``chunk`` (any contiguous buffer) to the snapshot data."""
        self._check_open("write to")
        view = memoryview(chunk).cast("B")
        if not view:
            return
        invariant(not self.external, "an external snapshot has no data to write")
        try:
            self._append(view)
        except BaseException:
            self.abort()
            raise
        self.size += len(view)

    def commit(self) -> SnapshotMeta:
        """Make the snapshot durable and current; release the ones beyond ``keep``.

        Raises ``LogCompactedError`` if a newer snapshot was committed meanwhile (the writer is
        then aborted). A ``StorageError`` from releasing old snapshots comes after the new one
        is committed (``state == "committed"``); any earlier error aborts the writer.
        """
        return self._finish()

    def _finish(self, keep_open_on: type[BaseException] | tuple = ()) -> SnapshotMeta:
        """Commit; an error aborts the writer unless it is a ``keep_open_on`` one."""
        self._check_open("commit")
        try:
            self._commit()
        except keep_open_on:
            raise
        except BaseException:
            self.abort()
            raise
        self.state = "committed"
        self._after_commit()
        return self.meta

    def abort(self) -> None:
        """Discard the snapshot being written (no-op once committed or aborted)."""
        if self.state == "open":
            self.state = "aborted"
            self._discard()

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.abort()

    def _check_open(self, action: str) -> None:
        invariant(self.state == "open", f"cannot {action} a snapshot writer that is {self.state}")

    # implemented by each store's writer
    def _append(self, view: memoryview) -> None:
        raise NotImplementedError

    def _write_at(self, view: memoryview) -> None:
        """Write ``view`` at data offset ``self.size``, repeatable after a failure."""
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _after_commit(self) -> None:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError


@runtime_checkable
class SnapshotStoreProtocol(Protocol):
    """What ``SnapshotStore`` and ``MemorySnapshotStore`` both provide."""

    keep: int

    def begin(self, meta: SnapshotMeta, external: bool = False) -> SnapshotWriter: ...
    def latest(self, skip_corrupt: bool = False) -> SnapshotMeta | None: ...
    def external(self, meta: SnapshotMeta) -> bool: ...
    def read(self, meta: SnapshotMeta, offset: int, size: int) -> bytes: ...
    def load(self, meta: SnapshotMeta) -> bytes: ...
    def snapshot(self, meta: SnapshotMeta) -> Snapshot: ...
    def list_snapshots(self) -> list[tuple[int, int]]: ...


def _check_keep(keep: object) -> int:
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
        raise ConfigError("keep", f"must be an integer >= 1, not {keep!r}")
    return keep


def _check_range(offset: int, size: int) -> None:
    if not _is_count(offset):
        raise ValueError(f"offset must be a non-negative integer, not {offset!r}")
    if not _is_count(size) or size == 0:
        raise ValueError(f"size must be a positive integer, not {size!r}")


# -- in files -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where things are in one snapshot file."""

    meta: SnapshotMeta
    header: bytes  # bytes 0 .. data_offset - 1
    data_offset: int
    data_length: int
    external: bool = False

    @property
    def end(self) -> int:  # offset of the trailer
        return self.data_offset + self.data_length


def _pread_exact(fd: int, count: int, offset: int, path: str) -> bytes:
    """``count`` bytes at ``offset``; a short file is a ``CorruptStateError``."""
    first = os.pread(fd, count, offset)
    if len(first) == count:
        return first
    pieces = [first]
    got = len(first)
    while got < count:
        piece = os.pread(fd, count - got, offset + got)
        if not piece:
            raise CorruptStateError("file ended early (truncated while open?)", path, offset + got)
        pieces.append(piece)
        got += len(piece)
    return b"".join(pieces)


def _parse_header(fd: int, path: str, name_key: tuple[int, int]) -> _Layout:
    """Check everything but the checksum; the size checks come before any read they guard."""
    size = os.fstat(fd).st_size
    if size < _PREFIX.size:
        raise CorruptStateError(f"truncated: {size} bytes, shorter than a header", path, size)
    prefix = _pread_exact(fd, _PREFIX.size, 0, path)
    magic, version, meta_length = _PREFIX.unpack(prefix)
    if magic != _MAGIC:
        raise CorruptStateError(f"bad magic {magic!r}, expected {_MAGIC!r}", path, 0)
    if version != SNAPSHOT_VERSION:
        raise CorruptStateError(
            f"unsupported version {version}, expected {SNAPSHOT_VERSION}", path, 4
        )
    if meta_length > SNAPSHOT_META_BYTES_MAX:
        raise CorruptStateError(
            f"metadata length {meta_length} exceeds {SNAPSHOT_META_BYTES_MAX}", path, 6
        )
    data_offset = _PREFIX.size + meta_length + _DATA_LENGTH.size
    if size < data_offset + _TRAILER.size:
        raise CorruptStateError(f"truncated: {size} bytes, header incomplete", path, size)
    rest = _pread_exact(fd, meta_length + _DATA_LENGTH.size, _PREFIX.size, path)
    (data_length,) = _DATA_LENGTH.unpack_from(rest, meta_length)
    expected = data_offset + data_length + _TRAILER.size
    if size < expected:
        raise CorruptStateError(
            f"truncated: {size} bytes, the header announces {expected}", path, size
        )
    if size > expected:
        raise CorruptStateError(
            f"{size - expected} trailing bytes after the {expected} the header announces",
            path,
            expected,
        )
    meta, external = _decode_meta(path, rest[:meta_length])
    if external and data_length:
        raise CorruptStateError(
            f"an external snapshot holds {data_length} data bytes", path, _PREFIX.size
        )
    if (meta.index, meta.term) != name_key:
        raise CorruptStateError(
            f"metadata says index {meta.index} term {meta.term}, unlike the file name",
            path,
            _PREFIX.size,
        )
    return _Layout(meta, prefix + rest, data_offset, data_length, external)


def _check_trailer(fd: int, path: str, layout: _Layout, computed: int) -> None:
    (stored,) = _TRAILER.unpack(_pread_exact(fd, _TRAILER.size, layout.end, path))
    if stored != computed:
        raise CorruptStateError(
            f"checksum mismatch: stored {stored:#010x}, computed {computed:#010x}",
            path,
            layout.end,
        )


def _stat_key(path: str) -> tuple[int, int, int, int]:
    status = os.stat(path)
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


class _FileSnapshotWriter(SnapshotWriter):
    def __init__(self, store: SnapshotStore, meta: SnapshotMeta, external: bool) -> None:
        super().__init__(meta, external)
        self._store = store
        #: Where the snapshot goes on commit, and where it is written until then.
        self._path = os.path.join(store.directory, snapshot_file_name(meta.index, meta.term))
        self._temporary = temp_path(self._path)
        encoded = _encode_meta(meta, external)
        #: Header up to (not including) the data length, which commit fills in.
        self._header = _PREFIX.pack(_MAGIC, SNAPSHOT_VERSION, len(encoded)) + encoded
        #: crc32c of the data written so far.
        self._crc = 0
        self._fd = -1
        self._renamed = False
        with translate_os_errors("cannot create snapshot", self._temporary):
            self._fd = os.open(
                self._temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644
            )
            try:
                write_all(self._fd, self._header + _DATA_LENGTH.pack(0))
            except BaseException:
                self.state = "aborted"
                self._discard()
                raise

    def _append(self, view: memoryview) -> None:
        with translate_os_errors("cannot write snapshot", self._temporary):
            write_all(self._fd, view)
        self._crc = crc32c(view, self._crc)

    def _write_at(self, view: memoryview) -> None:
        with translate_os_errors("cannot write snapshot", self._temporary):
            _pwrite_all(self._fd, view, len(self._header) + _DATA_LENGTH.size + self.size)
        self._crc = crc32c(view, self._crc)

    def _commit(self) -> None:
        _check_order(self._store._keys(), self.meta)
        header = self._header + _DATA_LENGTH.pack(self.size)
        checksum = crc32c_combine(crc32c(header), self._crc, self.size)
        with translate_os_errors("cannot commit snapshot", self._path):
            if self._fd >= 0:  # every step below may be repeated after a failure
                os.pwrite(self._fd, _DATA_LENGTH.pack(self.size), len(self._header))
                _pwrite_all(self._fd, memoryview(_TRAILER.pack(checksum)),
                            len(header) + self.size)
                os.ftruncate(self._fd, len(header) + self.size + _TRAILER.size)
                sync_file(self._fd)
                os.close(self._fd)
                self._fd = -1
            if not self._renamed:
                os.replace(self._temporary, self._path)
                self._renamed = True
        fsync_directory(self._store.directory)
        layout = _Layout(self.meta, header, len(header), self.size, self.external)
        self._store._remember(self._path, layout)

    def _after_commit(self) -> None:
        self._store._release()

    def _discard(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.unlink(self._temporary)
        except OSError:
            pass

    def __del__(self) -> None:
        if getattr(self, "state", None) == "open" and getattr(self, "_fd", -1) >= 0:
            self.abort()  # first: the warning below may be turned into an exception
            warnings.warn(
                f"snapshot writer for {self._path} was neither committed nor aborted",
                ResourceWarning,
                stacklevel=1,
            )


class SnapshotStore:
    """Snapshot files in ``directory``; the ``keep`` newest are kept (``keep >= 1``).

    Opening creates the directory if needed and removes temporary files a crash left behind.
    """

    def __init__(self, directory: str | os.PathLike[str], keep: int = 2) -> None:
        #: How many snapshots survive a commit (the newest ones).
        self.keep = _check_keep(keep)
        #: Absolute path of the store's directory.
        self.directory = ensure_directory(directory)
        remove_temp_files(self.directory, _FILE_PREFIX)
        remove_temp_files(self.directory, _PENDING_NAME)
        #: Verified files: path -> (stat key when verified, layout).
        self._verified: dict[str, tuple[tuple[int, int, int, int], _Layout]] = {}
        #: Files found corrupt: path -> (stat key when checked, the error's reason and offset).
        self._corrupt: dict[str, tuple[tuple[int, int, int, int], str, int | None]] = {}

    # -- listing and verification -------------------------------------------------------------

    def _entries(self) -> list[tuple[int, int, str]]:
        """(index, term, path) of every snapshot file, oldest first."""
        with translate_os_errors("cannot list snapshots", self.directory):
            names = os.listdir(self.directory)
        found = []
        for name in names:
            match = _FILE_NAME.fullmatch(name)
            if match:
                found.append((int(match[1]), int(match[2]), os.path.join(self.directory, name)))
        return sorted(found)

    def _keys(self) -> list[tuple[int, int]]:
        """(index, term) of the snapshots not known to be corrupt."""
        return [(i, t) for i, t, path in self._entries() if path not in self._corrupt]

    def _path(self, meta: SnapshotMeta) -> str:
        return os.path.join(self.directory, snapshot_file_name(meta.index, meta.term))

    def _remember(self, path: str, layout: _Layout) -> None:
        self._corrupt.pop(path, None)
        with translate_os_errors("cannot stat snapshot", path):
            self._verified[path] = (_stat_key(path), layout)

    def _verify(self, fd: int, path: str, key: tuple[int, int]) -> _Layout:
        layout = _parse_header(fd, path, key)
        crc = crc32c(layout.header)
        position = layout.data_offset
        while position < layout.end:
            count = min(_VERIFY_CHUNK_BYTES, layout.end - position)
            chunk = _pread_exact(fd, count, position, path)
            crc = crc32c(chunk, crc)
            position += count
        _check_trailer(fd, path, layout, crc)
        return layout

    def _layout(self, meta: SnapshotMeta) -> _Layout:
        """The verified layout of the snapshot ``meta`` names (verified once per version)."""
        path = self._path(meta)
        with translate_os_errors("cannot read snapshot", path):
            stat_key = _stat_key(path)
            known = self._verified.get(path)
            if known is not None and known[0] == stat_key:
                return known[1]
            failed = self._corrupt.get(path)
            if failed is not None and failed[0] == stat_key:
                raise CorruptStateError(failed[1], path, failed[2])
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                layout = self._verify(fd, path, (meta.index, meta.term))
            except CorruptStateError as error:
                self._corrupt[path] = (stat_key, error.reason, error.offset)
                self._verified.pop(path, None)
                raise
            finally:
                os.close(fd)
        self._verified[path] = (stat_key, layout)
        return layout

    # -- the API --------------------------------------------------------------------------------

    def begin(self, meta: SnapshotMeta, external: bool = False) -> SnapshotWriter:
        """Start writing the snapshot ``meta`` describes (``external``: metadata only, the
        data being a disk state machine's store; the writer takes no data).

        Raises ``LogCompactedError`` when a newer snapshot is already stored (checked again at
        commit, as another writer may commit first).
        """
        _check_meta(meta)
        _check_order(self._keys(), meta)
        return _FileSnapshotWriter(self, meta, external)

    def external(self, meta: SnapshotMeta) -> bool:
        """Whether the snapshot ``meta`` names is external (its data is in a disk state
        machine's store, not here); verifies the file as ``read`` does."""
        return self._layout(meta).external

    def latest(self, skip_corrupt: bool = False) -> SnapshotMeta | None:
        """The newest snapshot, verified; None when there is none.

        A damaged newest snapshot raises ``CorruptStateError`` naming its file, unless
        ``skip_corrupt``: then the newest one that verifies is returned (the damaged files are
        left in place for inspection).
        """
        for index, term, _ in reversed(self._entries()):
            try:
                return self._layout(SnapshotMeta(index, term, ())).meta
            except CorruptStateError:
                if not skip_corrupt:
                    raise
        return None

    def read(self, meta: SnapshotMeta, offset: int, size: int) -> bytes:
        """At most ``size`` data bytes from ``offset`` (b"" at or past the end).

        The file is verified in full the first time it is read from (or listed by ``latest``,
        or committed) by this store.
        """
        _check_range(offset, size)
        layout = self._layout(meta)
        if offset >= layout.data_length:
            return b""
        count = min(size, layout.data_length - offset)
        path = self._path(meta)
        with translate_os_errors("cannot read snapshot", path):
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                return _pread_exact(fd, count, layout.data_offset + offset, path)
            finally:
                os.close(fd)

    def load(self, meta: SnapshotMeta) -> bytes:
        """The whole data of the snapshot ``meta`` names, verified as it is read."""
        path = self._path(meta)
        with translate_os_errors("cannot read snapshot", path):
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                stat_key = _stat_key(path)
                try:
                    layout = _parse_header(fd, path, (meta.index, meta.term))
                    data = _pread_exact(fd, layout.data_length, layout.data_offset, path)
                    _check_trailer(fd, path, layout, crc32c(data, crc32c(layout.header)))
                except CorruptStateError as error:
                    self._corrupt[path] = (stat_key, error.reason, error.offset)
                    self._verified.pop(path, None)
                    raise
            finally:
                os.close(fd)
        self._verified[path] = (stat_key, layout)
        return data

    def snapshot(self, meta: SnapshotMeta) -> Snapshot:
        """The snapshot ``meta`` names, as the core takes it (metadata as stored)."""
        data = self.load(meta)
        return Snapshot(self._verified[self._path(meta)][1].meta, data)  # b"" when external

    def data(self, meta: SnapshotMeta) -> StoredSnapshotData:
        """The data of the snapshot ``meta`` names, read slice by slice when asked (the file
        is verified in full, in bounded chunks, the first time)."""
        return StoredSnapshotData(self, meta, self._layout(meta).data_length)

    def _release(self) -> None:
        """Remove the snapshots older than the ``keep`` newest sound ones (newer damaged
        files are left alone).

        The removals are not made durable (no directory fsync): the commit before made the
        new snapshot durable, and a crash that brings an older file back loses nothing,
        since ``latest`` reads the newest and the next commit removes it again. One fsync
        fewer per snapshot on the I/O thread, where every sync of the log waits behind it."""
        entries = self._entries()
        sound = [(i, t) for i, t, path in entries if path not in self._corrupt]
        if len(sound) <= self.keep:
            return
        oldest_kept = sound[-self.keep]
        released = [path for i, t, path in entries if (i, t) < oldest_kept]
        for path in released:
            with translate_os_errors("cannot release snapshot", path):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            self._verified.pop(path, None)
            self._corrupt.pop(path, None)

    def list_snapshots(self) -> list[tuple[int, int]]:
        """(index, term) of every stored snapshot file, oldest first, as named (unverified)."""
        return [(index, term) for index, term, _ in self._entries()]

    # -- an external snapshot being installed (see the module docstring) -----------------------

    def write_pending(self, meta: SnapshotMeta) -> None:
        """Durably note that the external snapshot ``meta`` is being installed."""
        _check_meta(meta)
        atomic_write(os.path.join(self.directory, _PENDING_NAME),
                     pack_checked(_PENDING_KIND, _encode_meta(meta, external=True)))

    def pending(self) -> SnapshotMeta | None:
        """The install noted by ``write_pending`` and not cleared, or None."""
        path = os.path.join(self.directory, _PENDING_NAME)
        payload = read_checked(path, _PENDING_KIND)
        return None if payload is None else _decode_meta(path, payload)[0]

    def clear_pending(self) -> None:
        path = os.path.join(self.directory, _PENDING_NAME)
        with translate_os_errors("cannot remove", path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                return
        fsync_directory(self.directory)


class StoredSnapshotData(FileSlices):
    """A stored snapshot's data, read from its file slice by slice: ``len(data)``,
    ``data[a:b]`` (read then), ``chunks(n)``, ``bytes(data)`` (the whole, for a state
    machine that restores from bytes), ``close()`` (nothing to release)."""

    def __init__(self, store: SnapshotStore, meta: SnapshotMeta, size: int) -> None:
        self._store = store
        self.meta = meta
        self._size = size

    def _read(self, offset: int, size: int) -> bytes:
        return self._store.read(self.meta, offset, size)

    def close(self) -> None:
        pass


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


#: The file-backed store under the name the other storage modules use.
FileSnapshotStore = SnapshotStore


# -- in memory ----------------------------------------------------------------------------------


class _MemorySnapshotWriter(SnapshotWriter):
    def __init__(self, store: MemorySnapshotStore, meta: SnapshotMeta, external: bool) -> None:
        super().__init__(meta, external)
        self._store = store
        self._data = bytearray()

    def _append(self, view: memoryview) -> None:
        self._data += view

    def _write_at(self, view: memoryview) -> None:
        del self._data[self.size :]
        self._data += view

    def _commit(self) -> None:
        _check_order(list(self._store._snapshots), self.meta)
        key = (self.meta.index, self.meta.term)
        self._store._snapshots[key] = Snapshot(self.meta, bytes(self._data))
        if self.external:
            self._store._external.add(key)
        else:
            self._store._external.discard(key)
        self._data = bytearray()

    def _after_commit(self) -> None:
        self._store._release()

    def _discard(self) -> None:
        self._data = bytearray()


class MemorySnapshotStore:
    """Snapshots kept in memory, with the API of ``SnapshotStore`` (nothing is ever corrupt)."""

    def __init__(self, keep: int = 2) -> None:
        #: How many snapshots survive a commit (the newest ones).
        self.keep = _check_keep(keep)
        #: (index, term) -> snapshot.
        self._snapshots: dict[tuple[int, int], Snapshot] = {}
        #: the keys of the external snapshots (metadata only)
        self._external: set[tuple[int, int]] = set()

    def _get(self, meta: SnapshotMeta) -> Snapshot:
        snapshot = self._snapshots.get((meta.index, meta.term))
        if snapshot is None:
            raise StorageError(
                f"no snapshot at index {meta.index} term {meta.term}",
                path=snapshot_file_name(meta.index, meta.term),
                errno=errno.ENOENT,
            )
        return snapshot

    def begin(self, meta: SnapshotMeta, external: bool = False) -> SnapshotWriter:
        _check_meta(meta)
        _check_order(list(self._snapshots), meta)
        return _MemorySnapshotWriter(self, meta, external)

    def external(self, meta: SnapshotMeta) -> bool:
        self._get(meta)
        return (meta.index, meta.term) in self._external

    def latest(self, skip_corrupt: bool = False) -> SnapshotMeta | None:
        if not self._snapshots:
            return None
        return self._snapshots[max(self._snapshots)].meta

    def read(self, meta: SnapshotMeta, offset: int, size: int) -> bytes:
        _check_range(offset, size)
        return self._get(meta).data[offset : offset + size]

    def load(self, meta: SnapshotMeta) -> bytes:
        return self._get(meta).data

    def snapshot(self, meta: SnapshotMeta) -> Snapshot:
        return self._get(meta)

    def _release(self) -> None:
        for key in sorted(self._snapshots)[: -self.keep]:
            del self._snapshots[key]
            self._external.discard(key)

    def list_snapshots(self) -> list[tuple[int, int]]:
        return sorted(self._snapshots)
