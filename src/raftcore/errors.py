"""Typed errors raised by the raftcore kernels.

Every error about bad input subclasses the matching builtin (``ValueError``), so callers who
only know Python's conventions still catch it, and carries the byte offset where the defect
was found, so a log or a transport can say exactly where a buffer went wrong.
"""

from __future__ import annotations

__all__ = [
    "RaftcoreError",
    "FramingError",
    "CorruptRecordError",
    "TruncatedRecordError",
    "OversizedRecordError",
    "CorruptFrameError",
    "OversizedFrameError",
    "IndexLookupError",
    "WalCorruptionError",
    "WalClusterMismatchError",
]


class RaftcoreError(Exception):
    """Base class of every error raised by raftcore."""


class FramingError(RaftcoreError, ValueError):
    """A buffer does not hold valid records; ``offset`` is where it stops being valid."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at byte offset {offset})")
        self.offset = offset
        self.reason = message

    def __reduce__(self):  # keep the offset across pickling (multiprocessing, logging handlers)
        return (type(self), (self.reason, self.offset))


class CorruptRecordError(FramingError):
    """A record's checksum, index sequence, kind or reserved bits are wrong: the bytes were damaged.

    Never a torn write: a header that passes its own checksum but whose payload runs past the end
    of the buffer is a :class:`TruncatedRecordError` instead.
    """


class TruncatedRecordError(FramingError):
    """The buffer ends inside a record (a torn tail, or a short read)."""


class OversizedRecordError(CorruptRecordError):
    """A record header announces a payload larger than the configured maximum."""


class CorruptFrameError(FramingError):
    """A transport frame's header or body checksum, magic or version is wrong."""


class OversizedFrameError(CorruptFrameError):
    """A transport frame announces a body larger than ``frame_bytes_max``."""


class IndexLookupError(RaftcoreError, LookupError):
    """A log index is outside the range an index table covers."""

    def __init__(self, index: int, first: int, last: int) -> None:
        super().__init__(f"log index {index} is outside the table's range [{first}, {last}]")
        self.index = index
        self.first = first
        self.last = last

    def __reduce__(self):
        return (type(self), (self.index, self.first, self.last))


class WalCorruptionError(RaftcoreError, ValueError):
    """A write-ahead log segment is damaged where a torn write cannot explain it: a bad
    record with valid records after it, a bad sealed segment, a bad segment header or a gap
    between segments. ``path`` names the segment file and ``offset`` the byte in it.

    The log refuses to open; ``WriteAheadLog(..., repair=True)`` truncates at the damage
    (losing what follows) once an operator decided so.
    """

    def __init__(self, message: str, path: str, offset: int) -> None:
        super().__init__(f"{message}: {path} at byte offset {offset}")
        self.reason = message
        self.path = path
        self.offset = offset

    def __reduce__(self):
        return (type(self), (self.reason, self.path, self.offset))


class WalClusterMismatchError(WalCorruptionError):
    """A segment belongs to another cluster (its header carries another cluster id):
    ``stored_cluster_id`` is the id in the header, ``cluster_id`` the log's own (None when
    unknown). Not damage: the files are intact, they are another cluster's, and recovery
    refuses them even with ``repair=True``."""

    def __init__(self, message: str, path: str, offset: int,
                 stored_cluster_id: int | None = None, cluster_id: int | None = None) -> None:
        super().__init__(message, path, offset)
        self.stored_cluster_id = stored_cluster_id
        self.cluster_id = cluster_id

    def __reduce__(self):
        return (type(self), (self.reason, self.path, self.offset, self.stored_cluster_id,
                             self.cluster_id))
