# cython: language_level=3
"""The write-ahead log: a directory of segment files of log-entry records.

Layout: ``<first index, 20 digits>.wal`` segment files, each a 64-byte header (magic,
format version, header checksum, cluster id, first index) followed by records exactly as
``raftcore.framing`` encodes them, then zeros up to the preallocated size. A batch is
appended with one positional write of its encoded buffer (the same bytes that travel in
AppendEntries); ``sync()`` makes everything written durable with one ``fdatasync`` however
many batches came before it (group commit). A segment is synced when it is sealed, so only
the newest segment can end in a torn write.

Recovery on open validates every record with its checksums. In the newest segment, a bad
or partial record followed only by zeros or by bytes that never form a valid record is a
torn tail: it is cut and reported. Anything else (a bad record with valid records after it,
a bad sealed segment, a gap between segments, a header of another cluster) raises
``WalCorruptionError`` naming the file and offset, unless ``repair=True`` asks to truncate
there. Directory entries are fsynced after creating, renaming or deleting segment files.
Files ending ``.wal.tmp`` (a segment being created) or ``.wal.released`` (a released segment
being deleted by a ``deleter``) are not part of the log: recovery removes them.

I/O failures raise ``OSError`` with the errno (ENOSPC included) and the path; the log stays
consistent: a failed append leaves the durable and written positions where they were.

Accessor convention (shared with ``pyraft.storage`` and the core's ``LogStorage``): positions
and terms are methods, ``first_index()``, ``last_index()``, ``durable_index()``,
``last_term()``, ``term_at(index)``; what describes the log as a whole and does not move with
appends is an attribute (``recovery``, ``segments``, ``directory``).
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.time cimport monotonic
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, memset

import mmap
import os
import time
from dataclasses import dataclass, field

import numpy as np

from raftcore._crc cimport NOGIL_BYTES_MIN, crc32c_update
from raftcore._framing import concat_batches, decode_entries, empty_batch, scan_entries
from raftcore._framing import RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX
from raftcore._framing cimport EntryBatch
from raftcore._index cimport IndexTable
from raftcore.errors import WalClusterMismatchError, WalCorruptionError


cdef extern from "rc_wal.h":
    int rc_pwrite_all(int fd, const unsigned char *buf, size_t len, int64_t offset) nogil
    int rc_pread_all(int fd, unsigned char *buf, size_t len, int64_t offset) nogil
    int rc_datasync(int fd) nogil
    int rc_allocate(int fd, int64_t offset, int64_t len) nogil
    int rc_write_zeros(int fd, int64_t offset, int64_t len) nogil
    int rc_truncate(int fd, int64_t size) nogil
    int rc_all_zero(const unsigned char *buf, size_t len) nogil

cdef extern from "rc_endian.h":
    uint32_t rc_le32(const unsigned char *p) nogil
    uint64_t rc_le64(const unsigned char *p) nogil
    void rc_put32(unsigned char *p, uint32_t v) nogil
    void rc_put64(unsigned char *p, uint64_t v) nogil


IMPLEMENTATION = "compiled"
SEGMENT_HEADER_BYTES = 64
SEGMENT_MAGIC = b"RAFTWAL\x00"
SEGMENT_VERSION = 1
SYNC_POLICIES = ("always", "interval", "never")
#: a released segment renamed with this suffix is no longer part of the log: a deleter
#: renames before it deletes, and recovery removes what a crash left behind
RELEASED_SUFFIX = ".released"

cdef enum:
    HDR = 64
    RECORD_HDR = 32

cdef bytes _MAGIC = SEGMENT_MAGIC


def _segment_name(uint64_t first_index):
    return f"{first_index:020d}.wal"


def encode_segment_header(uint64_t cluster_id, uint64_t first_index):
    """The 64-byte header of a segment whose first record has ``first_index``."""
    cdef unsigned char h[HDR]
    memset(h, 0, HDR)
    memcpy(h, <const char *>_MAGIC, 8)
    rc_put32(h + 8, SEGMENT_VERSION)
    rc_put64(h + 16, cluster_id)
    rc_put64(h + 24, first_index)
    rc_put32(h + 12, crc32c_update(0, h + 16, HDR - 16))
    return PyBytes_FromStringAndSize(<char *>h, HDR)


def decode_segment_header(data, str path):
    """Return ``(cluster_id, first_index)``; WalCorruptionError on any defect."""
    cdef Py_buffer view
    cdef const unsigned char *h
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if view.len < HDR:
            raise WalCorruptionError("segment shorter than its header", path, 0)
        h = <const unsigned char *>view.buf
        if memcmp(h, <const char *>_MAGIC, 8) != 0:
            raise WalCorruptionError("not a write-ahead log segment (bad magic)", path, 0)
        if rc_le32(h + 8) != SEGMENT_VERSION:
            raise WalCorruptionError(f"unknown segment format version {rc_le32(h + 8)}", path, 8)
        if crc32c_update(0, h + 16, HDR - 16) != rc_le32(h + 12):
            raise WalCorruptionError("segment header checksum mismatch", path, 12)
        return rc_le64(h + 16), rc_le64(h + 24)
    finally:
        PyBuffer_Release(&view)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _find_record(const unsigned char *p, Py_ssize_t size, Py_ssize_t start,
                             uint64_t min_index) noexcept nogil:
    """First offset >= start holding a record header that passes its checksum and carries an
    index >= min_index; -1 if none. Used only to tell a torn tail from corruption."""
    cdef Py_ssize_t pos
    for pos in range(start, size - RECORD_HDR + 1):
        if p[pos + 13] != 1 or p[pos + 14] != 0 or p[pos + 15] != 0 or p[pos + 12] > 2:
            continue  # version, flags, kind: a cheap filter before the checksum
        if crc32c_update(0, p + pos + 4, RECORD_HDR - 4) != rc_le32(p + pos):
            continue
        if rc_le64(p + pos + 24) >= min_index:
            return pos
    return -1


cdef int _index_columns(IndexTable index, EntryBatch batch, int32_t segment,
                        uint64_t offset) except -1:
    """Index a compiled batch written at byte ``offset`` of ``segment``, from its columns in
    C. A slice's boundaries are its parent's (its first need not be 0): each is shifted by
    ``offset - first``, through a copy when that is negative."""
    cdef uint64_t start = batch._offsets[0]
    cdef uint64_t *shifted
    cdef Py_ssize_t k
    if start <= offset:
        return index.c_append(<int64_t>batch.first_index, NULL, segment, batch._offsets,
                              offset - start, batch._terms, batch._n)
    shifted = <uint64_t *>PyMem_Malloc((batch._n + 1) * sizeof(uint64_t))
    if shifted == NULL:
        raise MemoryError()
    try:
        for k in range(batch._n + 1):
            shifted[k] = batch._offsets[k] - start
        return index.c_append(<int64_t>batch.first_index, NULL, segment, shifted, offset,
                              batch._terms, batch._n)
    finally:
        PyMem_Free(shifted)


cdef int _check(int err, str what, str path) except -1:
    if err:
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return 0


def _fsync_directory(str path):
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class RecoveryReport:
    """What opening the log found. ``torn_bytes`` were cut from the newest segment."""

    segments: int = 0
    records: int = 0
    bytes: int = 0
    first_index: int = 1
    last_index: int = 0
    torn_bytes: int = 0
    torn_segment: str | None = None
    repaired: list = field(default_factory=list)
    seconds: float = 0.0


cdef class _Segment:
    cdef public int seq
    cdef public uint64_t first_index
    cdef public uint64_t last_index   # first_index - 1 when empty
    cdef public int64_t end           # byte offset just past the last record
    cdef public int64_t allocated     # preallocated size
    cdef public str path
    cdef public int fd

    def __repr__(self):
        return f"_Segment({self.path!r}, [{self.first_index}, {self.last_index}], end={self.end})"


cdef class WriteAheadLog:
    """A segmented, checksummed, group-committed log of ``raftcore.framing`` records.

    ``sync`` policy: ``"always"`` (``sync()`` issues one fdatasync for everything written
    since the last one; the default, durable), ``"interval"`` (``sync()`` reports what was
    written as durable and issues the fdatasync at most every ``sync_interval_ms``: a power
    loss can lose up to that much acknowledged data, a process crash loses nothing), and
    ``"never"`` (no fdatasync; for tests and benchmarks).

    ``zero_fill``: new segments are preallocated with ``fallocate`` (default: fast to create,
    ~90% of the raw sync rate) or by writing zeros (``True``: creating a 64 MiB segment costs
    a 64 MiB write, then every sync overwrites allocated blocks: ~100% of the raw sync rate).

    Threads: appends, truncations and releases must come from one thread at a time; one other
    thread may run ``sync()`` concurrently with appends (group commit: the runtime appends on
    its event loop and syncs in a worker). ``durable_index`` only covers appends that had
    completed when the sync began.

    ``deleter``: None (segments released by ``release_prefix`` are deleted at once), or an
    object whose ``delete(path)`` takes each released segment's path, oldest first, once its
    file is closed, and removes them from the log in that order later, by renaming each with
    ``RELEASED_SUFFIX`` before it deletes it (deleting a 64 MiB segment costs ~13 ms on a disk
    mounted with online discard, and slows every fdatasync on that disk while the blocks are
    discarded: a deleter spreads that out); its ``wait()`` returns once no path handed over
    is left under its name. A crash can leave segments not yet renamed, an older contiguous
    prefix covered by a snapshot (recovery keeps them and the owner releases them again),
    and renamed ones, which recovery removes. ``reset`` and ``close`` wait for the deleter.
    """

    # fields: _wal.pxd

    def __init__(self, directory, *, uint64_t cluster_id=0, int64_t segment_bytes_max=64 << 20,
                 str sync="always", double sync_interval_ms=10.0, bint zero_fill=False,
                 uint64_t payload_bytes_max=RECORD_PAYLOAD_BYTES_MAX, bint repair=False):
        if sync not in SYNC_POLICIES:
            raise ValueError(f"sync must be one of {SYNC_POLICIES}, not {sync!r}")
        if segment_bytes_max < HDR + RECORD_HDR:
            raise ValueError("segment_bytes_max is too small for one record")
        if sync_interval_ms <= 0:
            raise ValueError("sync_interval_ms must be positive")
        self.directory = os.fspath(directory)
        self.cluster_id = cluster_id
        self.segment_bytes_max = segment_bytes_max
        self.sync_policy = sync
        self.sync_interval_ms = sync_interval_ms
        self.zero_fill = zero_fill
        self.payload_bytes_max = payload_bytes_max
        self._segments = []
        self._index = IndexTable()
        self._next_index = 1
        self._prev_term = 0
        self._next_seq = 0
        self._closed = False
        self._dirty = False
        self.deleter = None
        os.makedirs(self.directory, exist_ok=True)
        self.recovery = self._recover(repair)
        self._written = self._durable = self._next_index - 1
        self._last_sync = time.monotonic()

    # ---- positions ---------------------------------------------------------------------------
    cpdef int64_t first_index(self) except? -1:
        """Index of the oldest stored entry (the next index when the log is empty)."""
        return self._index._first if self._index._count else <int64_t>self._next_index

    cpdef int64_t last_index(self) except? -1:
        """Index of the newest written entry (``first_index - 1`` when empty)."""
        return <int64_t>self._next_index - 1

    def durable_index(self):
        """Highest index known durable under the sync policy."""
        return self._durable

    @property
    def segments(self):
        return [s.path for s in self._segments]

    def __len__(self):
        return len(self._index)

    cpdef object term_at(self, object index):
        """Term of the entry at ``index`` (or of ``first_index - 1`` after a release)."""
        return self._index.term_at(index)

    def last_term(self):
        return self._last_term()

    cdef uint64_t _last_term(self) noexcept:
        cdef IndexTable index = self._index
        if index._count:
            return index._terms[index._head + index._count - 1]
        return self._prev_term

    def terms(self, lo, hi):
        return self._index.terms(lo, hi)

    def _index_offset(self, index):
        """Byte offset of the entry's record in its segment (for tests and tools)."""
        return self._index.lookup(index)[1]

    # ---- writing -----------------------------------------------------------------------------
    cpdef append(self, batch):
        """Write ``batch`` (an EntryBatch starting at ``last_index + 1``) with one write."""
        cdef Py_buffer view
        cdef _Segment seg
        cdef int err
        cdef int64_t offset, size
        cdef Py_ssize_t n, skip
        cdef uint64_t first, last
        cdef EntryBatch typed = None
        self._require_open()
        # the batch's columns: read in C from the compiled EntryBatch (every append), through
        # its Python attributes from another (the framing twin's, under NO_EXTENSIONS)
        if type(batch) is EntryBatch:
            typed = <EntryBatch>batch
            n = typed._n
            if n == 0:
                return self._next_index - 1
            first = typed.first_index
            first_term = typed._terms[0]
            size = typed.nbytes
            data = typed._memoryview()
            skip = typed.base
        else:
            n = len(batch)
            if n == 0:
                return self._next_index - 1
            first = batch.first_index
            first_term = batch.terms[0]
            size = batch.nbytes
            data = batch.data
            skip = 0
            offsets = batch.offsets
            terms = batch.terms
        last = first + <uint64_t>n - 1
        if first != self._next_index:
            raise ValueError(f"append at {first}, expected {self._next_index} "
                             "(truncate_suffix first to replace entries)")
        if first_term < self._last_term():
            raise ValueError("appended term is lower than the last term")
        seg = self._segments[-1] if self._segments else None
        if seg is None or (seg.end + size > self.segment_bytes_max and
                           seg.last_index >= seg.first_index):
            seg = self._roll()
        offset = seg.end
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            if skip + size > view.len:  # never for a valid batch: its records fit its buffer
                raise ValueError(f"a batch of {size} bytes at {skip} of a {view.len}-byte buffer")
            if size >= NOGIL_BYTES_MIN:  # a small write lands in the page cache in a few us
                with nogil:
                    err = rc_pwrite_all(seg.fd, <const unsigned char *>view.buf + skip,
                                        <size_t>size, offset)
            else:
                err = rc_pwrite_all(seg.fd, <const unsigned char *>view.buf + skip, <size_t>size,
                                    offset)
        finally:
            PyBuffer_Release(&view)
        if err:
            # nothing is registered: the bytes written (if any) are past ``end`` and will be
            # overwritten by the next append or cut by recovery
            _check(err, "append", seg.path)
        # each entry at its record boundary plus where the batch landed, added in C
        if typed is not None:
            _index_columns(self._index, typed, seg.seq, <uint64_t>offset)
        else:
            self._index.c_append_batch(first, seg.seq, offsets, <uint64_t>offset, terms)
        seg.end = offset + size
        if seg.end > seg.allocated:
            seg.allocated = seg.end
        seg.last_index = last
        self._next_index = last + 1
        self._written = last
        self._dirty = True
        if self.sync_policy != "always":
            self._durable = self._written
        return last

    cpdef object sync(self):
        """Make what was written durable (per the policy); returns the durable index."""
        cdef int err, fd
        self._require_open()
        if not self._dirty:
            return self._durable
        if self.sync_policy == "never":
            self._dirty = False
            return self._durable
        now = monotonic()  # C (cpython.time): every sync asks
        if self.sync_policy == "interval" and (now - self._last_sync) * 1000.0 < self.sync_interval_ms:
            return self._durable
        written = self._written
        seg = self._segments[-1]
        fd = (<_Segment>seg).fd
        with nogil:
            err = rc_datasync(fd)
        _check(err, "fdatasync", (<_Segment>seg).path)
        self._last_sync = now
        self._dirty = written != self._written
        if written > self._durable:
            self._durable = written
        return self._durable

    def truncate_suffix(self, index):
        """Remove every entry with an index >= ``index`` (a conflict with the leader's log)."""
        cdef _Segment seg
        cdef int err, fd
        cdef int64_t offset, allocated
        self._require_open()
        if index >= self._next_index:
            return
        if index < self.first_index():
            raise ValueError(f"truncate at {index} below the first index {self.first_index()}")
        seq, position, _term = self._index.lookup(index)
        offset = position
        while self._segments and (<_Segment>self._segments[-1]).seq > seq:
            self._delete_segment(self._segments.pop())
        seg = self._segments[-1]
        fd = seg.fd
        allocated = seg.allocated
        with nogil:
            err = rc_truncate(fd, offset)
            if not err:
                err = self._zero_tail(fd, offset, allocated - offset)
            if not err:
                err = rc_datasync(fd)
        _check(err, "truncate", seg.path)
        _fsync_directory(self.directory)
        self._index.truncate_suffix(index)
        seg.end = offset
        seg.last_index = index - 1
        self._next_index = index
        self._written = index - 1
        if self._durable > index - 1:
            self._durable = index - 1

    def release_prefix(self, index, prev_term=None):
        """Entries up to ``index`` are covered by a snapshot: delete whole segments that hold
        nothing newer. With ``index`` at or past the last entry the log becomes empty and the
        next append must be ``index + 1`` (``prev_term`` is then the snapshot's term)."""
        self._require_open()
        if index < self.first_index():
            return
        if index >= self._next_index - 1:
            if prev_term is None:
                prev_term = self._index.term_at(index) if index == self._next_index - 1 else None
            if prev_term is None:
                raise ValueError("prev_term is required to release past the last index")
            self.reset(index + 1, prev_term)
            return
        deleter = self.deleter
        released = False
        while len(self._segments) > 1 and (<_Segment>self._segments[0]).last_index <= index:
            seg = <_Segment>self._segments.pop(0)
            released = True
            if deleter is None:
                self._delete_segment(seg)
            else:
                os.close(seg.fd)
                deleter.delete(seg.path)
        if released and deleter is None:
            _fsync_directory(self.directory)
        first_kept = (<_Segment>self._segments[0]).first_index
        if first_kept > self._index.first_index:
            self._index.release_prefix(first_kept - 1)

    def reset(self, uint64_t next_index, uint64_t prev_term=0):
        """Delete everything; the next append must carry ``next_index`` (after installing a
        snapshot at ``next_index - 1`` of term ``prev_term``)."""
        self._require_open()
        if next_index < 1:
            raise ValueError("next_index must be >= 1")
        if self.deleter is not None:  # no released segment may outlive the log they preceded
            self.deleter.wait()
        for seg in self._segments:
            self._delete_segment(seg)
        self._segments = []
        _fsync_directory(self.directory)
        self._index.reset(next_index, prev_term)
        self._next_index = next_index
        self._prev_term = prev_term
        self._written = self._durable = next_index - 1
        self._dirty = False

    # ---- reading -----------------------------------------------------------------------------
    def read(self, lo, hi, max_bytes=None):
        """Entries ``[lo, hi)`` as a validated EntryBatch (checksums verified on the way in,
        pair-checking what was verified on the way out); at least one entry when the range is
        not empty, then no more than ``max_bytes``."""
        cdef _Segment seg
        cdef int err, fd
        cdef int64_t begin_at, length
        cdef unsigned char *target
        cdef bytes buf
        self._require_open()
        if hi <= lo:
            return empty_batch(lo)
        if lo < self.first_index() or hi > self._next_index:
            raise IndexError(f"range [{lo}, {hi}) is outside the log "
                             f"[{self.first_index()}, {self._next_index})")
        if max_bytes is not None:
            # no more entries than could fit: every record is at least its header
            hi = min(hi, lo + max(1, max_bytes // RECORD_HEADER_BYTES + 1))
        segs = self._index.segments(lo, hi)
        offs = self._index.offsets(lo, hi)
        by_seq = {(<_Segment>s).seq: s for s in self._segments}
        parts = []
        total = 0
        start = 0
        count = hi - lo
        while start < count:
            seq = segs[start]
            stop = start + int(np.searchsorted(segs[start:], seq, side="right"))
            seg = by_seq[int(seq)]
            begin = int(offs[start])
            if stop < count:
                end = seg.end  # the group holds this segment's last entry
            else:
                # the last wanted entry: its end is the next entry's offset or the segment end
                following = lo + stop
                if following < self._next_index and self._index.lookup(following)[0] == seq:
                    end = self._index.lookup(following)[1]
                else:
                    end = seg.end
            last_group = False
            if max_bytes is not None and total + (end - begin) > max_bytes:
                # read only the entries of this group that fit (at least one overall): never
                # a whole segment for a small budget
                ends = offs[start + 1:stop].astype(np.int64) - begin  # entries start..stop-2
                fit = int(np.searchsorted(ends, max_bytes - total, side="right"))
                if fit == 0 and not parts:
                    fit = 1
                if fit == 0:
                    break
                if fit < stop - start:
                    stop = start + fit
                    end = int(offs[stop])
                last_group = True
            buf = PyBytes_FromStringAndSize(NULL, end - begin)
            fd = seg.fd
            begin_at = begin
            length = end - begin
            target = <unsigned char *>PyBytes_AS_STRING(buf)
            with nogil:
                err = rc_pread_all(fd, target, <size_t>length, begin_at)
            _check(err, "read", seg.path)
            parts.append(decode_entries(buf, lo + start, payload_bytes_max=self.payload_bytes_max))
            total += end - begin
            start = stop
            if last_group:
                break
        batch = concat_batches(parts) if len(parts) != 1 else parts[0]
        if max_bytes is not None and batch.nbytes > max_bytes and len(batch) > 1:
            keep = max(1, int(np.searchsorted(batch.offsets, max_bytes, side="right")) - 1)
            batch = batch.slice(batch.first_index, batch.first_index + keep)
        return batch

    # ---- lifecycle ---------------------------------------------------------------------------
    def close(self):
        """Sync (unless the policy is "never") and close every segment."""
        if self._closed:
            return
        try:
            if self.deleter is not None:
                self.deleter.wait()
            if self._dirty and self.sync_policy != "never" and self._segments:
                seg = self._segments[-1]
                _check(rc_datasync((<_Segment>seg).fd), "fdatasync", seg.path)
                self._durable = self._written
        finally:
            for seg in self._segments:
                os.close((<_Segment>seg).fd)
            self._segments = []
            self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __dealloc__(self):
        if not self._closed:
            for seg in self._segments or ():
                try:
                    os.close((<_Segment>seg).fd)
                except OSError:
                    pass

    # ---- internals ---------------------------------------------------------------------------
    cdef int _require_open(self) except -1:
        if self._closed:
            raise ValueError("the write-ahead log is closed")
        return 0

    cdef int _zero_tail(self, int fd, int64_t offset, int64_t length) noexcept nogil:
        if length <= 0:
            return 0
        if self.zero_fill:
            return rc_write_zeros(fd, offset, length)
        return rc_allocate(fd, offset, length)

    def _roll(self):
        """Seal the newest segment (synced) and start a new one at the next index."""
        cdef _Segment seg
        cdef int err, fd
        if self._segments:
            old = <_Segment>self._segments[-1]
            with nogil:
                err = rc_datasync(old.fd)
            _check(err, "fdatasync", old.path)
            if self._written > self._durable and self.sync_policy == "always":
                pass  # the newest entries are in the new segment's future: not yet durable
        first = self._next_index
        path = os.path.join(self.directory, _segment_name(first))
        temp = path + ".tmp"
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            header = encode_segment_header(self.cluster_id, first)
            err = rc_pwrite_all(fd, <const unsigned char *>PyBytes_AS_STRING(header), HDR, 0)
            if not err:
                with nogil:
                    err = self._zero_tail(fd, HDR, self.segment_bytes_max - HDR)
            if not err:
                with nogil:
                    err = rc_datasync(fd)
            _check(err, "create segment", temp)
            os.replace(temp, path)
            _fsync_directory(self.directory)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise
        seg = _Segment()
        seg.seq = self._next_seq
        self._next_seq += 1
        seg.first_index = first
        seg.last_index = first - 1
        seg.end = HDR
        seg.allocated = self.segment_bytes_max
        seg.path = path
        seg.fd = fd
        self._segments.append(seg)
        return seg

    def _delete_segment(self, _Segment seg):
        os.close(seg.fd)
        os.unlink(seg.path)

    def _recover(self, bint repair):
        started = time.monotonic()
        report = RecoveryReport()
        names = sorted(os.listdir(self.directory))
        for name in names:
            # a segment whose creation did not finish, or one released and being deleted
            if name.endswith(".wal.tmp") or name.endswith(".wal" + RELEASED_SUFFIX):
                os.unlink(os.path.join(self.directory, name))
        paths = [os.path.join(self.directory, n) for n in names if n.endswith(".wal")]
        expected = 0
        for position, path in enumerate(paths):
            newest = position == len(paths) - 1
            try:
                stop = self._recover_segment(path, expected, newest, repair, report)
            except WalClusterMismatchError:
                raise
            except WalCorruptionError as exc:
                # A damaged header (or a gap before this segment): a repair drops this
                # segment and every later one; the log ends where the previous one ends.
                if not repair or exc.offset >= HDR:
                    raise
                for later in paths[position:]:
                    os.unlink(later)
                    report.repaired.append(f"deleted {later}: {exc.reason} at byte offset "
                                           f"{exc.offset}")
                _fsync_directory(self.directory)
                break
            seg = <_Segment>self._segments[-1]
            expected = seg.last_index + 1
            if stop:  # repaired: everything after this point is dropped
                for later in paths[position + 1:]:
                    os.unlink(later)
                    report.repaired.append(f"deleted {later}")
                break
        if self._segments:
            _fsync_directory(self.directory)
            first_seg = <_Segment>self._segments[0]
            self._next_index = (<_Segment>self._segments[-1]).last_index + 1
            if len(self._index) == 0:
                self._index.reset(self._next_index, 0)
        report.segments = len(self._segments)
        report.records = len(self._index)
        report.first_index = self.first_index()
        report.last_index = self._next_index - 1
        report.seconds = time.monotonic() - started
        return report

    def _recover_segment(self, str path, uint64_t expected, bint newest, bint repair, report):
        """Validate one segment; returns True when a repair cut the log here."""
        cdef _Segment seg
        cdef Py_ssize_t found
        cdef const unsigned char[::1] view
        cdef int err
        fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            if size < HDR:
                raise WalCorruptionError("segment shorter than its header", path, 0)
            with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped:
                data = memoryview(mapped)
                try:
                    cluster_id, first = decode_segment_header(data[:HDR], path)
                    if cluster_id != self.cluster_id:
                        raise WalClusterMismatchError(
                            f"segment of cluster {cluster_id}, this log is cluster "
                            f"{self.cluster_id}", path, 16, cluster_id, self.cluster_id)
                    if expected and first != expected:
                        raise WalCorruptionError(
                            f"segment starts at index {first}, expected {expected} (a gap)",
                            path, 24)
                    batch, end, error = scan_entries(data[HDR:], first,
                                                     payload_bytes_max=self.payload_bytes_max,
                                                     prev_term=self._index.last_term
                                                     if len(self._index) else 0)
                    cut = None
                    if error is not None:
                        view = data
                        at = HDR + end
                        if rc_all_zero(&view[at], size - at):
                            pass  # a clean end: preallocated zeros follow the last record
                        else:
                            found = -1
                            if newest:
                                found = _find_record(&view[0], size, at + 1, first + len(batch))
                            if newest and found < 0:
                                cut = at  # a torn tail: nothing valid follows
                                report.torn_bytes += size - at - self._zero_run(view, at, size)
                                report.torn_segment = path
                            elif repair:
                                cut = at
                                report.repaired.append(f"truncated {path} at {at}: {error}")
                            else:
                                raise WalCorruptionError(
                                    f"{error.reason}, "
                                    + ("with valid records after it" if newest else
                                       "in a sealed segment"), path, at)
                    offsets = batch.offsets[:-1] + HDR
                    terms = batch.terms.copy()  # a view would hold the mapping open
                    nbytes = batch.nbytes
                finally:
                    # drop every view of the mapping before it is closed
                    batch = None
                    view = None
                    data.release()
            if cut is not None:
                err = rc_truncate(fd, cut)
                if not err:
                    err = self._zero_tail(fd, cut, max(size, self.segment_bytes_max) - cut)
                if not err:
                    err = rc_datasync(fd)
                _check(err, "truncate torn tail", path)
        except BaseException:
            os.close(fd)
            raise
        seg = _Segment()
        seg.seq = self._next_seq
        self._next_seq += 1
        seg.first_index = first
        seg.last_index = first + len(terms) - 1
        seg.end = HDR + nbytes
        seg.allocated = max(size, self.segment_bytes_max)
        seg.path = path
        seg.fd = fd
        if len(terms):
            if len(self._index) == 0:
                self._index.reset(first, 0)
            self._index.append(first, seg.seq, offsets, terms)
        elif len(self._index) == 0:
            self._index.reset(first, 0)
        self._segments.append(seg)
        report.bytes += nbytes
        return cut is not None and not newest

    cdef int64_t _zero_run(self, const unsigned char[::1] view, int64_t start, int64_t size):
        """Bytes of zeros at the end of view[start:size] (preallocated space, not torn data)."""
        cdef int64_t end = size
        while end > start and view[end - 1] == 0:
            end -= 1
        return size - end
