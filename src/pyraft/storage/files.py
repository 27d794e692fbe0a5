"""Durable small files: atomic replacement, directory fsync, a checked container, and the one
mapping from ``OSError`` to the storage errors that every store uses.

Atomic replacement (the pattern every store relies on): write the new content to a temporary
file in the same directory, fsync it, ``os.replace`` it over the old name, then fsync the
directory so the rename itself survives a power loss. A crash at any point leaves either the
old file or the new one under the name, never a mixture; a crash before the rename can leave
a temporary file behind, which the stores remove when they open (``remove_temp_files``).

Checked container (hard state, configuration): a fixed header then the payload::

    offset  size  field
    0       4     magic  b"PYRF"
    4       4     kind   (which store wrote it, e.g. b"HARD")
    8       2     version (big endian, currently 1)
    10      4     payload length in bytes (big endian)
    14      4     crc32c of bytes 0..13 followed by the payload
    18      n     payload

The checksum covers the header fields as well as the payload, so any single flipped bit is
detected; the length must match the file size exactly, so truncation and trailing bytes are
detected too. Every defect is a ``CorruptStateError`` naming the file and the byte offset.

Background deletion (``BackgroundDeleter``): released log segments are removed by a worker
thread, in the order handed over, renamed first and then shrunk in steps, so that freeing
64 MiB files neither stalls the member's event loop nor, through the discards it causes,
every fdatasync on the disk.

Errors: ``ENOSPC`` (and ``EDQUOT``, a full quota) become ``StorageFullError``, other
``OSError`` become ``StorageError``; both keep ``errno`` and the path (``storage_error``,
``translate_os_errors``).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import secrets
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator

from pyraft.errors import CorruptStateError, StorageError, StorageFullError, invariant
from raftcore.crc import crc32c

__all__ = [
    "BackgroundDeleter",
    "CHECKED_HEADER_BYTES",
    "CHECKED_PAYLOAD_BYTES_MAX",
    "CHECKED_VERSION",
    "SpooledData",
    "TEMP_SUFFIX",
    "atomic_write",
    "ensure_directory",
    "fsync_directory",
    "pack_checked",
    "read_checked",
    "read_file",
    "remove_temp_files",
    "storage_error",
    "sync_file",
    "temp_path",
    "translate_os_errors",
    "unpack_checked",
    "write_all",
]

PathLike = str | os.PathLike[str]

#: Error numbers that mean "no space left": the disk, or the user's quota.
_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})

_MAGIC = b"PYRF"
#: Version of the checked container layout (not of the payloads inside it).
CHECKED_VERSION = 1
_HEADER = struct.Struct(">4s4sHI")  # magic, kind, version, payload length
_CRC = struct.Struct(">I")
#: Size of the checked container header, checksum included.
CHECKED_HEADER_BYTES = _HEADER.size + _CRC.size
#: Largest payload a checked file may hold. The stores keep small records (a hard state, a
#: membership list); a larger length field can only come from corruption.
CHECKED_PAYLOAD_BYTES_MAX = 16 * 1024 * 1024

#: Temporary files are named ``<final name>.<random hex>.tmp`` in the final file's directory.
TEMP_SUFFIX = ".tmp"


# -- errors -----------------------------------------------------------------------------------


def storage_error(error: OSError, action: str, path: PathLike) -> StorageError:
    """The storage error for ``error`` raised while doing ``action`` on ``path``.

    ``StorageFullError`` for a full disk or quota, ``StorageError`` otherwise; both keep the
    errno and the path. A ``StorageError`` is returned unchanged (it already says where).
    """
    if isinstance(error, StorageError):
        return error
    code = error.errno
    kind = StorageFullError if code in _FULL_ERRNOS else StorageError
    detail = error.strerror or str(error) or type(error).__name__
    return kind(f"{action}: {detail}", path=os.fspath(path), errno=code)


@contextlib.contextmanager
def translate_os_errors(action: str, path: PathLike) -> Iterator[None]:
    """Turn an ``OSError`` raised in the block into ``storage_error(error, action, path)``."""
    try:
        yield
    except StorageError:
        raise
    except OSError as error:
        raise storage_error(error, action, path) from error


# -- low-level helpers (raise OSError; callers translate) ----------------------------------------


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of ``data`` to ``fd``, continuing after short writes."""
    view = memoryview(data).cast("B")
    while view:
        written = os.write(fd, view)
        if written <= 0:  # a regular file never does this; guard against a busy loop
            raise OSError(errno.EIO, "write made no progress")
        view = view[written:]


def sync_file(fd: int) -> None:
    """Flush ``fd`` to stable storage (``F_FULLFSYNC`` on macOS, where fsync is not enough)."""
    if sys.platform == "darwin":  # pragma: no cover - exercised on macOS only
        import fcntl

        full_fsync = getattr(fcntl, "F_FULLFSYNC", None)
        if full_fsync is not None:
            try:
                fcntl.fcntl(fd, full_fsync)
                return
            except OSError:
                pass  # not supported by this file system: plain fsync below
    os.fsync(fd)


log = logging.getLogger("pyraft.storage")


class BackgroundDeleter:
    """Removes files on a worker thread, in the order ``delete`` received them (the
    ``deleter`` of ``raftcore.wal.WriteAheadLog``): each is first renamed with ``suffix``
    (its owner removes such files when it opens; the rename is made durable before the next
    one, so a crash keeps a suffix of the files in order), then shrunk ``step_bytes`` at a
    time with a ``pause_s`` pause between steps, then unlinked (an unlink a crash undoes
    leaves a renamed file, which the owner removes). Freeing a large file at once makes the
    file system discard all of its blocks at the next journal commit, and every fdatasync on
    the disk waits behind that (measured here: 20-70 ms syncs for a few hundred ms after
    deleting four 64 MiB segments; with 4 MiB steps, under 10 ms).

    ``wait()`` returns once no file handed over is left under its name (renames are quick);
    ``close()`` finishes the deletions without pauses and ends the thread. A file that cannot
    be removed is logged and skipped: whoever handed it over must tolerate that."""

    def __init__(self, name: str = "pyraft-deleter", suffix: str = ".released",
                 step_bytes: int = 4 << 20, pause_s: float = 0.005) -> None:
        if not suffix or step_bytes < 1 or pause_s < 0:
            raise ValueError("suffix must be set, step_bytes >= 1 and pause_s >= 0")
        self.name = name
        self.suffix = suffix
        self.step_bytes = step_bytes
        self.pause_s = pause_s
        self._pending: collections.deque[str] = collections.deque()
        self._named = 0  # handed over, still under their own name
        self._busy = 0  # handed over, not yet unlinked
        self._hurry = False
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.deleted = 0

    def delete(self, path: str) -> None:
        with self._condition:
            if self._closed:
                raise RuntimeError("the deleter is closed")
            self._pending.append(os.fspath(path))
            self._named += 1
            self._busy += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._condition.notify_all()

    def wait(self) -> None:
        """Return once every file handed over has left its name."""
        with self._condition:
            while self._named:
                self._condition.wait()

    def close(self) -> None:
        """Delete what is left without pauses, then end the thread."""
        with self._condition:
            self._hurry = self._closed = True
            self._condition.notify_all()
            while self._busy:
                self._condition.wait()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._closed:
                    self._condition.wait()
                if not self._pending:
                    return
                path = self._pending.popleft()
            target = path + self.suffix
            released: str | None = target
            try:
                os.rename(path, target)
                # durable before the next rename: whatever a crash keeps of the files handed
                # over is a suffix of them in order (a log's prefix stays contiguous)
                fsync_directory(os.path.dirname(path) or ".")
            except FileNotFoundError:
                released = None
            except (OSError, StorageError) as error:
                log.warning("cannot rename %s (%s); it is left for recovery", path, error)
            with self._condition:
                self._named -= 1
                self._condition.notify_all()
            if released is not None:
                self._shrink_and_unlink(released)
            with self._condition:
                self._busy -= 1
                self._condition.notify_all()

    def _shrink_and_unlink(self, path: str) -> None:
        try:
            size = os.path.getsize(path)
            while size > self.step_bytes:
                size -= self.step_bytes
                os.truncate(path, size)
                if not self._hurry:
                    time.sleep(self.pause_s)
            os.unlink(path)
            self.deleted += 1
        except FileNotFoundError:
            pass
        except OSError as error:
            log.warning("cannot delete %s (%s); it is left for recovery", path, error)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def temp_path(path: PathLike) -> str:
    """A fresh temporary name next to ``path``, recognised by ``remove_temp_files``."""
    path = os.fspath(path)
    return f"{path}.{secrets.token_hex(8)}{TEMP_SUFFIX}"


# -- public operations (raise StorageError / StorageFullError) --------------------------------


def fsync_directory(path: PathLike) -> None:
    """Make the directory entries of ``path`` (created, renamed, removed files) durable."""
    path = os.fspath(path)
    with translate_os_errors("cannot sync directory", path):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            sync_file(fd)
        finally:
            os.close(fd)


def ensure_directory(path: PathLike) -> str:
    """Create the directory ``path`` (and missing parents) if needed, durably; return its
    absolute path."""
    path = os.path.abspath(os.fspath(path))
    missing = []
    current = path
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):  # outermost first
        with translate_os_errors("cannot create directory", directory):
            os.mkdir(directory)
        fsync_directory(os.path.dirname(directory))
    return path


def atomic_write(path: PathLike, data: bytes | bytearray | memoryview) -> None:
    """Replace the file ``path`` by ``data`` atomically and durably.

    When this returns, ``path`` holds ``data`` and that survives a crash. When it raises, the
    old content (or the absence of a file) is untouched and the temporary file is removed.
    """
    path = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(path)
    temporary = temp_path(path)
    with translate_os_errors("cannot write", path):
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                write_all(fd, data)
                sync_file(fd)
            finally:
                os.close(fd)
            os.replace(temporary, path)
        except BaseException:
            _remove_quietly(temporary)
            raise
    fsync_directory(directory)


def remove_temp_files(directory: PathLike, prefix: str = "") -> list[str]:
    """Remove temporary files left in ``directory`` by a crash; return their names.

    Only names starting with ``prefix`` and ending with ``TEMP_SUFFIX`` are removed. Call it
    when a store opens, before anything else writes in the directory.
    """
    directory = os.fspath(directory)
    with translate_os_errors("cannot list directory", directory):
        names = sorted(
            name
            for name in os.listdir(directory)
            if name.startswith(prefix) and name.endswith(TEMP_SUFFIX)
        )
    for name in names:
        path = os.path.join(directory, name)
        with translate_os_errors("cannot remove temporary file", path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    if names:
        fsync_directory(directory)
    return names


def read_file(path: PathLike, bytes_max: int) -> bytes | None:
    """The content of ``path``, or None when it does not exist.

    A file larger than ``bytes_max`` is a ``CorruptStateError`` (reading it would be unbounded).
    """
    path = os.fspath(path)
    with translate_os_errors("cannot read", path):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            size = os.fstat(fd).st_size
            if size > bytes_max:
                raise CorruptStateError(
                    f"file is {size} bytes, more than the {bytes_max} a valid one can hold",
                    path,
                    bytes_max,
                )
            pieces: list[bytes] = []
            total = 0
            while True:
                want = min(bytes_max + 1 - total, max(size - total, 0) + 4096, 1 << 20)
                piece = os.read(fd, want)
                if not piece:
                    break
                pieces.append(piece)
                total += len(piece)
                if total > bytes_max:
                    raise CorruptStateError("file grew while being read", path, bytes_max)
            return b"".join(pieces)
        finally:
            os.close(fd)


# -- checked container ----------------------------------------------------------------------------


def pack_checked(kind: bytes, payload: bytes | bytearray | memoryview) -> bytes:
    """``payload`` wrapped in the checked container of type ``kind`` (4 bytes)."""
    invariant(isinstance(kind, bytes) and len(kind) == 4, f"kind must be 4 bytes, not {kind!r}")
    length = memoryview(payload).nbytes
    invariant(
        length <= CHECKED_PAYLOAD_BYTES_MAX,
        f"payload of {length} bytes exceeds {CHECKED_PAYLOAD_BYTES_MAX}",
    )
    header = _HEADER.pack(_MAGIC, kind, CHECKED_VERSION, length)
    checksum = crc32c(payload, crc32c(header))
    return header + _CRC.pack(checksum) + bytes(payload)


def unpack_checked(path: PathLike, data: bytes | bytearray | memoryview, kind: bytes) -> bytes:
    """The payload of a checked container read from ``path``, after checking every field.

    Raises ``CorruptStateError`` (with ``path`` and the offset of the defect) on a bad magic,
    kind, version, length or checksum, on truncation and on trailing bytes.
    """
    invariant(isinstance(kind, bytes) and len(kind) == 4, f"kind must be 4 bytes, not {kind!r}")
    path = os.fspath(path)
    view = memoryview(data).cast("B")
    size = len(view)
    if size < CHECKED_HEADER_BYTES:
        raise CorruptStateError(
            f"truncated: {size} bytes, shorter than the {CHECKED_HEADER_BYTES}-byte header",
            path,
            size,
        )
    magic, stored_kind, version, length = _HEADER.unpack_from(view, 0)
    if magic != _MAGIC:
        raise CorruptStateError(f"bad magic {magic!r}, expected {_MAGIC!r}", path, 0)
    if stored_kind != kind:
        raise CorruptStateError(f"kind {stored_kind!r}, expected {kind!r}", path, 4)
    if version != CHECKED_VERSION:
        raise CorruptStateError(
            f"unsupported version {version}, expected {CHECKED_VERSION}", path, 8
        )
    if length > CHECKED_PAYLOAD_BYTES_MAX:
        raise CorruptStateError(
            f"payload length {length} exceeds {CHECKED_PAYLOAD_BYTES_MAX}", path, 10
        )
    end = CHECKED_HEADER_BYTES + length
    if size < end:
        raise CorruptStateError(f"truncated: {size} bytes, the header announces {end}", path, size)
    if size > end:
        raise CorruptStateError(
            f"{size - end} trailing bytes after the {end} the header announces", path, end
        )
    (stored_crc,) = _CRC.unpack_from(view, _HEADER.size)
    payload = view[CHECKED_HEADER_BYTES:]
    computed = crc32c(payload, crc32c(view[: _HEADER.size]))
    if computed != stored_crc:
        raise CorruptStateError(
            f"checksum mismatch: stored {stored_crc:#010x}, computed {computed:#010x}",
            path,
            _HEADER.size,
        )
    return bytes(payload)


def read_checked(path: PathLike, kind: bytes) -> bytes | None:
    """The verified payload of the checked file ``path``, or None when it does not exist."""
    data = read_file(path, CHECKED_HEADER_BYTES + CHECKED_PAYLOAD_BYTES_MAX)
    if data is None:
        return None
    return unpack_checked(path, data, kind)


class FileSlices:
    """Data that lives in a file and is read slice by slice: ``len(data)``, ``data[a:b]``
    (read then, by ``_read(offset, size)``), ``chunks(n)``, ``bytes(data)`` (the whole)."""

    _size: int

    def _read(self, offset: int, size: int) -> bytes:
        raise NotImplementedError

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, item: slice) -> bytes:
        invariant(isinstance(item, slice) and item.step in (None, 1), "slices only")
        start, stop, _ = item.indices(self._size)
        if stop <= start:
            return b""
        return self._read(start, stop - start)

    def __bytes__(self) -> bytes:
        return self[0 : self._size]

    def chunks(self, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        """The whole data in slices of at most ``chunk_bytes``."""
        for offset in range(0, self._size, chunk_bytes):
            yield self[offset : offset + chunk_bytes]


class SpooledData(FileSlices):
    """Bytes written once to an unnamed temporary file, then read back in slices: the
    leader's copy of a disk state machine's export, so a snapshot as large as the store is
    sent chunk by chunk without being held in memory.

    ``len(data)`` is the size; ``data[a:b]`` reads those bytes (``pread``); ``close()``
    releases the file (the data is gone with it). Built by :meth:`spool`.
    """

    def __init__(self, file, size: int) -> None:
        self._file = file
        self._size = size

    @classmethod
    def spool(cls, chunks: Iterable[bytes], directory: PathLike | None = None,
              keep_going=lambda: True) -> SpooledData | None:
        """Write ``chunks`` to a temporary file in ``directory`` (the system's default when
        None); None when ``keep_going()`` turned false between two chunks."""
        file = tempfile.TemporaryFile(prefix="pyraft-export-", dir=directory)
        size = 0
        try:
            fd = file.fileno()
            for chunk in chunks:
                if not keep_going():
                    file.close()
                    return None
                write_all(fd, chunk)
                size += len(memoryview(chunk).cast("B"))
        except BaseException:
            file.close()
            raise
        return cls(file, size)

    def _read(self, offset: int, size: int) -> bytes:
        invariant(not self._file.closed, "reading spooled data after close()")
        pieces, stop = [], offset + size
        while offset < stop:
            piece = os.pread(self._file.fileno(), stop - offset, offset)
            invariant(len(piece) > 0, "the spool file is shorter than written")
            pieces.append(piece)
            offset += len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def close(self) -> None:
        self._file.close()


class SpoolWriter:
    """A snapshot received from the leader, written chunk by chunk to an unnamed temporary
    file (``write_at``: positional, a chunk already written is skipped, a failed write may be
    repeated), then read back as ``SpooledData`` (``data()``, which takes the file over):
    for a follower whose snapshot goes into a disk state machine's store, or into a log kept
    in memory. ``meta`` is the snapshot's metadata; ``size`` the bytes written."""

    def __init__(self, meta, directory: PathLike | None = None) -> None:
        self.meta = meta
        self.size = 0
        self._directory = os.fspath(directory) if directory is not None else tempfile.gettempdir()
        with translate_os_errors("cannot create a file for the received snapshot",
                                 self._directory):
            self._file = tempfile.TemporaryFile(prefix="pyraft-receive-", dir=directory)

    def write_at(self, offset: int, chunk: bytes | bytearray | memoryview) -> None:
        view = memoryview(chunk).cast("B")
        if offset + len(view) <= self.size:
            return
        invariant(offset == self.size, f"a chunk at {offset} after {self.size} bytes written")
        invariant(not self._file.closed, "writing to a closed spool file")
        position = offset
        with translate_os_errors("cannot write the received snapshot", self._directory):
            while view:
                written = os.pwrite(self._file.fileno(), view, position)
                view = view[written:]
                position += written
        self.size = position

    def data(self) -> SpooledData:
        """The bytes written, file-backed; the file now belongs to the returned object."""
        return SpooledData(self._file, self.size)

    def abort(self) -> None:
        self._file.close()
