# cython: language_level=3
"""Log-entry records, entry batches and transport frames (format: docs/format.md).

A batch of entries is ONE contiguous buffer of self-describing records. Encoding writes the
buffer and the index (terms, kinds, offsets as numpy arrays) in the same pass; decoding
validates every record and builds the same index without copying payloads. The bytes a
leader writes to its log are the bytes it sends and the bytes a follower appends.

Every defect in input raises a typed error carrying the byte offset of the offending record:
``CorruptRecordError`` (damaged), ``TruncatedRecordError`` (the buffer ends inside a record),
``OversizedRecordError`` (a length beyond the configured maximum). Decoding never reads past
the buffer: each read is preceded by a bounds check against the remaining size.
"""

cimport cython
cimport numpy as cnp
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
    _PyBytes_Resize,
)
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

import numpy as np

from raftcore._crc cimport NOGIL_BYTES_MIN, crc32c_span, crc32c_update
from raftcore.errors import (
    CorruptFrameError,
    CorruptRecordError,
    OversizedFrameError,
    OversizedRecordError,
    TruncatedRecordError,
)

cnp.import_array()


cdef extern from *:
    """
    /* what a memoryview views (NULL for one made over raw memory): memoryview.obj in C */
    static CYTHON_INLINE PyObject *rc_exporter(PyObject *view) {
        return PyMemoryView_GET_BUFFER(view)->obj;
    }
    """
    PyObject *_exporter "rc_exporter" (object view)


cdef extern from "rc_endian.h":
    uint16_t rc_le16(const unsigned char *p) nogil
    uint32_t rc_le32(const unsigned char *p) nogil
    uint64_t rc_le64(const unsigned char *p) nogil
    void rc_put16(unsigned char *p, uint16_t v) nogil
    void rc_put32(unsigned char *p, uint32_t v) nogil
    void rc_put64(unsigned char *p, uint64_t v) nogil


IMPLEMENTATION = "compiled"

RECORD_HEADER_BYTES = 32
RECORD_VERSION = 1
KIND_COMMAND = 0
KIND_CONFIGURATION = 1
KIND_NOOP = 2
#: Default bound on one record's payload (the transport and WAL may set their own, lower).
RECORD_PAYLOAD_BYTES_MAX = 64 * 1024 * 1024

FRAME_HEADER_BYTES = 16
FRAME_MAGIC = 0x5246
FRAME_VERSION = 1
#: Default bound on one frame's body.
FRAME_BYTES_MAX = 64 * 1024 * 1024

cdef enum:
    HDR = 32
    FHDR = 16
    KIND_MAX = 2
    KIND_CONFIGURATION_C = 1  # KIND_CONFIGURATION as a C constant (the Python one is an object)
    VERSION = 1
    FMAGIC = 0x5246
    FVERSION = 1
    #: the least room a frame's body gets when its header comes before it (``FrameDecoder``)
    BODY_BYTES_MIN = 65536

# Error codes of the scanner, in the order the checks run.
cdef enum ScanError:
    SCAN_OK = 0
    SCAN_TRUNCATED_HEADER
    SCAN_HEADER_CRC
    SCAN_VERSION
    SCAN_FLAGS
    SCAN_KIND
    SCAN_OVERSIZED
    SCAN_TRUNCATED_PAYLOAD
    SCAN_PAYLOAD_CRC
    SCAN_INDEX
    SCAN_TERM

_SCAN_MESSAGES = {
    SCAN_TRUNCATED_HEADER: (TruncatedRecordError, "buffer ends inside a record header"),
    SCAN_HEADER_CRC: (CorruptRecordError, "record header checksum mismatch"),
    SCAN_VERSION: (CorruptRecordError, "unknown record format version"),
    SCAN_FLAGS: (CorruptRecordError, "reserved record flags are set"),
    SCAN_KIND: (CorruptRecordError, "unknown record kind"),
    SCAN_OVERSIZED: (OversizedRecordError, "record payload length exceeds the maximum"),
    SCAN_TRUNCATED_PAYLOAD: (TruncatedRecordError, "buffer ends inside a record payload"),
    SCAN_PAYLOAD_CRC: (CorruptRecordError, "record payload checksum mismatch"),
    SCAN_INDEX: (CorruptRecordError, "record index out of sequence"),
    SCAN_TERM: (CorruptRecordError, "record term is zero or lower than the previous one"),
}


cdef struct Scan:
    Py_ssize_t count        # valid records
    Py_ssize_t end          # byte offset just past the last valid record
    int error               # ScanError of the first invalid record, SCAN_OK if none
    uint64_t first_index    # index of the first record (or the expected one)
    uint64_t last_term


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Scan _scan(const unsigned char *p, Py_ssize_t size, uint64_t expected_first,
                uint64_t payload_max, uint64_t prev_term) noexcept nogil:
    """Validate records from the start of ``p`` until the first defect or the end."""
    cdef Scan s
    cdef Py_ssize_t pos = 0
    cdef uint64_t length, index, term
    cdef const unsigned char *h
    s.count = 0
    s.end = 0
    s.error = SCAN_OK
    s.first_index = expected_first
    s.last_term = prev_term
    while pos < size:
        if size - pos < HDR:
            s.error = SCAN_TRUNCATED_HEADER
            break
        h = p + pos
        if crc32c_update(0, h + 4, HDR - 4) != rc_le32(h):
            s.error = SCAN_HEADER_CRC
            break
        if h[13] != VERSION:
            s.error = SCAN_VERSION
            break
        if rc_le16(h + 14) != 0:
            s.error = SCAN_FLAGS
            break
        if h[12] > KIND_MAX:
            s.error = SCAN_KIND
            break
        length = rc_le32(h + 8)
        if length > payload_max:
            s.error = SCAN_OVERSIZED
            break
        if <uint64_t>(size - pos - HDR) < length:
            s.error = SCAN_TRUNCATED_PAYLOAD
            break
        if crc32c_update(0, h + HDR, <size_t>length) != rc_le32(h + 4):
            s.error = SCAN_PAYLOAD_CRC
            break
        index = rc_le64(h + 24)
        term = rc_le64(h + 16)
        if s.count == 0 and expected_first == 0:
            if index == 0:
                s.error = SCAN_INDEX
                break
            s.first_index = index
        elif index != s.first_index + <uint64_t>s.count:
            s.error = SCAN_INDEX
            break
        if term == 0 or term < s.last_term:
            s.error = SCAN_TERM
            break
        s.last_term = term
        s.count += 1
        pos += HDR + <Py_ssize_t>length
        s.end = pos
    return s


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _fill_index(const unsigned char *p, Py_ssize_t count, uint64_t *terms, uint8_t *kinds,
                      uint64_t *offsets) noexcept nogil:
    """Second pass over records already validated by _scan: copy out terms, kinds, offsets."""
    cdef Py_ssize_t i
    cdef uint64_t pos = 0
    for i in range(count):
        offsets[i] = pos
        terms[i] = rc_le64(p + pos + 16)
        kinds[i] = p[pos + 12]
        pos += HDR + rc_le32(p + pos + 8)
    offsets[count] = pos


cdef inline void _write_header(unsigned char *h, uint32_t length, uint8_t kind, uint64_t term,
                               uint64_t index) noexcept nogil:
    rc_put32(h + 4, crc32c_update(0, h + HDR, length))
    rc_put32(h + 8, length)
    h[12] = kind
    h[13] = VERSION
    rc_put16(h + 14, 0)
    rc_put64(h + 16, term)
    rc_put64(h + 24, index)
    rc_put32(h, crc32c_update(0, h + 4, HDR - 4))


@cython.no_gc  # holds bytes and views of them: it can close no reference cycle, and a log of
# millions of batches must not make every full collection walk them all
@cython.freelist(64)
cdef class EntryBatch:
    """A validated, contiguous run of log entries stored as one buffer of records.

    Attributes:
      buffer       the object holding the bytes (usually ``bytes``); never mutate it.
      base         byte offset of the first record inside ``buffer``.
      nbytes       size in bytes of the records (``data`` is ``buffer[base:base + nbytes]``).
      first_index  index of the first entry; for an empty batch, the index the next one would have.
      last_index   index of the last entry; ``first_index - 1`` when empty.
      terms        uint64 array, one term per entry (non-decreasing).
      kinds        uint8 array, one kind per entry (KIND_COMMAND / KIND_CONFIGURATION / KIND_NOOP).
      offsets      uint64 array of ``len + 1`` record boundaries relative to ``base``:
                   record ``i`` spans ``offsets[i]:offsets[i + 1]``, ``offsets[0] == 0``.

    The batch keeps its terms, kinds and offsets in C (inside the object for a few entries):
    ``terms``, ``kinds`` and ``offsets`` are read-only numpy arrays made when asked, and the
    methods below read the columns without making them. Built by ``encode_entries``,
    ``decode_entries``, ``scan_entries``, ``concat_batches`` and ``slice``; the constructor
    copies the columns it is given and checks their lengths.
    """

    def __cinit__(self, *args, **kwargs):
        # the columns of an empty batch until any are given: a batch made by __new__ alone
        # reads as empty at index 0, never through a NULL pointer
        self._inline[0] = 0
        self._offsets = self._inline
        self._terms = self._inline
        self._kinds = <const uint8_t *>self._inline

    def __init__(self, buffer, Py_ssize_t base, Py_ssize_t nbytes, uint64_t first_index,
                 terms, kinds, offsets):
        cdef cnp.ndarray t = np.ascontiguousarray(terms, dtype=np.uint64)
        cdef cnp.ndarray k = np.ascontiguousarray(kinds, dtype=np.uint8)
        cdef cnp.ndarray o = np.ascontiguousarray(offsets, dtype=np.uint64)
        cdef Py_ssize_t n
        if cnp.PyArray_NDIM(t) != 1 or cnp.PyArray_NDIM(k) != 1 or cnp.PyArray_NDIM(o) != 1:
            raise ValueError("terms, kinds and offsets must be one-dimensional")
        n = cnp.PyArray_DIM(t, 0)
        if cnp.PyArray_DIM(k, 0) != n or cnp.PyArray_DIM(o, 0) != n + 1:
            raise ValueError(f"a batch of {n} terms needs {n} kinds and {n + 1} offsets, got "
                             f"{cnp.PyArray_DIM(k, 0)} and {cnp.PyArray_DIM(o, 0)}")
        if self.buffer is not None:
            raise TypeError("EntryBatch is immutable: __init__ ran already")
        _init_batch(self, buffer, base, nbytes, first_index, n)
        memcpy(<void *>self._terms, cnp.PyArray_DATA(t), n * sizeof(uint64_t))
        memcpy(<void *>self._kinds, cnp.PyArray_DATA(k), n * sizeof(uint8_t))
        memcpy(<void *>self._offsets, cnp.PyArray_DATA(o), (n + 1) * sizeof(uint64_t))

    def __dealloc__(self):
        PyMem_Free(self._heap)

    cdef int _allocate(self, Py_ssize_t n) except -1:
        """Room for ``n`` entries' columns (inline when they fit), uninitialized."""
        cdef Py_ssize_t words = 2 * n + 1 + (n + 7) // 8
        cdef uint64_t *mem
        if n <= INLINE_ENTRIES:
            mem = self._inline
        else:
            mem = <uint64_t *>PyMem_Malloc(words * sizeof(uint64_t))
            if mem == NULL:
                raise MemoryError()
            self._heap = mem
        self._offsets = mem
        self._terms = mem + n + 1
        self._kinds = <const uint8_t *>(mem + 2 * n + 1)
        return 0

    def __len__(self):
        return self._n

    def __repr__(self):
        return (f"EntryBatch(first_index={self.first_index}, last_index={self.last_index}, "
                f"entries={self._n}, nbytes={self.nbytes})")

    @property
    def terms(self):
        """The terms, one per entry: a read-only uint64 array over the batch's own column."""
        return _column(self, <const void *>self._terms, self._n, cnp.NPY_UINT64)

    @property
    def kinds(self):
        """The kinds, one per entry: a read-only uint8 array over the batch's own column."""
        return _column(self, <const void *>self._kinds, self._n, cnp.NPY_UINT8)

    @property
    def offsets(self):
        """The ``len + 1`` record boundaries relative to ``base`` (read-only uint64 array)."""
        cdef cnp.ndarray shifted
        cdef uint64_t *out
        cdef Py_ssize_t i
        if self._offsets[0] == 0:
            return _column(self, <const void *>self._offsets, self._n + 1, cnp.NPY_UINT64)
        shifted = _new_array(self._n + 1, cnp.NPY_UINT64)  # a slice's: shifted to 0
        out = <uint64_t *>cnp.PyArray_DATA(shifted)
        for i in range(self._n + 1):
            out[i] = self._offset(i)
        cnp.PyArray_CLEARFLAGS(shifted, cnp.NPY_ARRAY_WRITEABLE)
        return shifted

    @property
    def last_term(self):
        """Term of the last entry; 0 when empty."""
        return self._terms[self._n - 1] if self._n else 0

    cdef object _memoryview(self):
        # made on demand, never kept: a view is an object the garbage collector tracks, and a
        # log keeps its batches for long (see the class's no_gc)
        if type(self.buffer) is bytes:
            return memoryview(self.buffer)
        return memoryview(self.buffer).cast("B")

    @property
    def data(self):
        """The records as a memoryview (zero-copy): what goes into a WAL segment or a message."""
        view = self._memoryview()
        if self.base == 0 and self.nbytes == len(view):
            return view
        return view[self.base:self.base + self.nbytes]

    def tobytes(self):
        """The records as ``bytes`` (no copy when the batch spans all of a ``bytes`` buffer)."""
        if type(self.buffer) is bytes and self.base == 0 and self.nbytes == len(self.buffer):
            return self.buffer
        return bytes(self.data)

    cdef Py_ssize_t _position(self, index) except -1:
        cdef long long value
        cdef int overflow = 0
        if type(index) is int:
            # the common case in C: a Python-level comparison and subtraction cost ~200
            # instructions, and the core asks a term per append, response and commit
            value = PyLong_AsLongLongAndOverflow(index, &overflow)
            if (overflow == 0 and value >= 0 and <uint64_t>value >= self.first_index
                    and <uint64_t>value - self.first_index < <uint64_t>self._n):
                return <Py_ssize_t>(<uint64_t>value - self.first_index)
        if index < self.first_index or index >= self.first_index + <uint64_t>self._n:
            raise IndexError(f"log index {index} is not in this batch "
                             f"[{self.first_index}, {self.first_index + self._n - 1}]")
        return <Py_ssize_t>(index - self.first_index)

    cpdef term_at(self, index):
        """Term of the entry at log ``index``."""
        return self._terms[self._position(index)]

    def kind_at(self, index):
        """Kind of the entry at log ``index``."""
        return self._kinds[self._position(index)]

    cpdef Py_ssize_t count_kind(self, int kind) except -1:
        """How many entries have ``kind`` (a state machine asks whether all are commands)."""
        cdef Py_ssize_t i, count = 0
        for i in range(self._n):
            if self._kinds[i] == kind:
                count += 1
        return count

    def all_of_term(self, lo, hi, uint64_t term):
        """True when every entry with a log index in ``[lo, hi)`` (clamped to the batch) has
        ``term``: a write learns whether its entries survived, without an array per check."""
        cdef Py_ssize_t a, b, i
        self._clamp(lo, hi, &a, &b)
        for i in range(a, b):
            if self._terms[i] != term:
                return False
        return True

    cdef int _clamp(self, lo, hi, Py_ssize_t *a, Py_ssize_t *b) except -1:
        """The positions of log indexes ``[lo, hi)`` clamped to the batch (``a >= b``: none)."""
        first = self.first_index
        start = max(lo, first) - first
        end = min(hi, first + self._n) - first
        if end <= start:
            a[0] = b[0] = 0
        else:
            a[0], b[0] = start, end
        return 0

    def payload(self, Py_ssize_t i):
        """Payload of the ``i``-th entry of the batch (position, not log index), zero-copy."""
        if i < 0 or i >= self._n:
            raise IndexError(f"entry position {i} out of range for a batch of {self._n}")
        return self._memoryview()[self.base + <Py_ssize_t>self._offset(i) + HDR:
                                  self.base + <Py_ssize_t>self._offset(i + 1)]

    def payload_at(self, index):
        """Payload of the entry at log ``index``, zero-copy."""
        return self.payload(self._position(index))

    def payloads(self):
        """Every payload, as a list of zero-copy memoryviews."""
        cdef Py_ssize_t i, start = self.base - <Py_ssize_t>self._offsets[0]
        cdef list out = []
        view = self._memoryview()
        for i in range(self._n):
            out.append(view[start + <Py_ssize_t>self._offsets[i] + HDR:
                            start + <Py_ssize_t>self._offsets[i + 1]])
        return out

    @property
    def config_positions(self):
        """Positions (not indexes) of configuration entries, as an int64 array."""
        # asked of every batch appended (nearly always none): a C scan, an array on a hit
        cdef Py_ssize_t i, count = 0
        cdef cnp.ndarray found
        cdef cnp.npy_intp *out
        for i in range(self._n):
            if self._kinds[i] == KIND_CONFIGURATION_C:
                count += 1
        if count == 0:
            return _EMPTY_INTP
        found = _new_array(count, cnp.NPY_INTP)
        out = <cnp.npy_intp *>cnp.PyArray_DATA(found)
        count = 0
        for i in range(self._n):
            if self._kinds[i] == KIND_CONFIGURATION_C:
                out[count] = i
                count += 1
        return found

    cpdef slice(self, lo, hi):
        """The entries with log indexes in ``[lo, hi)`` as a new batch over the same buffer."""
        cdef Py_ssize_t a, b
        cdef long long l, h
        cdef int lo_over = 0, hi_over = 0
        cdef uint64_t start_at, end_at
        if type(lo) is int and type(hi) is int:
            # the common case with C integers (the core slices per append and per send)
            l = PyLong_AsLongLongAndOverflow(lo, &lo_over)
            h = PyLong_AsLongLongAndOverflow(hi, &hi_over)
            if lo_over == 0 and hi_over == 0 and l >= 0 and h >= 0:
                start_at = max(<uint64_t>l, self.first_index)
                end_at = min(<uint64_t>h, self.first_index + <uint64_t>self._n)
                if end_at <= start_at:
                    return _empty(start_at)
                return self._positions(<Py_ssize_t>(start_at - self.first_index),
                                       <Py_ssize_t>(end_at - self.first_index))
        first = self.first_index
        if lo < first:
            lo = first
        if hi > first + self._n:
            hi = first + self._n
        if hi <= lo:
            return _empty(lo if lo >= first else first)
        a = lo - first
        b = hi - first
        return self._positions(a, b)

    cdef EntryBatch _positions(self, Py_ssize_t a, Py_ssize_t b):
        """The entries at positions ``[a, b)`` (``0 <= a < b <= len``) over the same buffer and
        the same columns: nothing is copied."""
        cdef EntryBatch part
        if a == 0 and b == self._n:
            return self
        part = EntryBatch.__new__(EntryBatch)
        part.buffer = self.buffer
        part.base = self.base + <Py_ssize_t>self._offset(a)
        part.nbytes = <Py_ssize_t>(self._offsets[b] - self._offsets[a])
        part.first_index = self.first_index + <uint64_t>a
        part._n = b - a
        part.last_index = part.first_index + <uint64_t>part._n - 1
        part._owner = self if self._owner is None else self._owner
        part._terms = self._terms + a
        part._kinds = self._kinds + a
        part._offsets = self._offsets + a
        return part

    def byte_size(self, lo, hi):
        """Bytes the records of log indexes ``[lo, hi)`` occupy (clamped to the batch)."""
        cdef Py_ssize_t a, b
        self._clamp(lo, hi, &a, &b)
        if b <= a:
            return 0
        return self._offsets[b] - self._offsets[a]

    def __iter__(self):
        """Yield ``(index, term, kind, payload)`` per entry; payloads are zero-copy memoryviews."""
        cdef Py_ssize_t i, start = self.base - <Py_ssize_t>self._offsets[0]
        view = self._memoryview()
        for i in range(self._n):
            yield (self.first_index + <uint64_t>i, self._terms[i], self._kinds[i],
                   view[start + <Py_ssize_t>self._offsets[i] + HDR:
                        start + <Py_ssize_t>self._offsets[i + 1]])

    def __reduce__(self):
        return (decode_entries, (self.tobytes(),))


cdef object _EMPTY_INTP = np.zeros(0, dtype=np.intp)  # no configuration entry (read-only)
_EMPTY_INTP.flags.writeable = False


cdef EntryBatch _new_batch(object buffer, Py_ssize_t base, Py_ssize_t nbytes,
                           uint64_t first_index, Py_ssize_t n):
    """A batch of ``n`` entries whose columns the caller fills (their memory is the batch's)."""
    cdef EntryBatch batch = EntryBatch.__new__(EntryBatch)
    _init_batch(batch, buffer, base, nbytes, first_index, n)
    return batch


cdef int _init_batch(EntryBatch batch, object buffer, Py_ssize_t base, Py_ssize_t nbytes,
                     uint64_t first_index, Py_ssize_t n) except -1:
    batch._allocate(n)
    batch.buffer = buffer
    batch.base = base
    batch.nbytes = nbytes
    batch.first_index = first_index
    batch._n = n
    # a field, not a property: compiled callers (the core, the WAL) read it in C
    batch.last_index = first_index + <uint64_t>n - 1
    return 0


cdef inline EntryBatch _empty(uint64_t next_index):
    cdef EntryBatch batch = _new_batch(b"", 0, 0, next_index, 0)
    (<uint64_t *>batch._offsets)[0] = 0
    return batch


cdef object _column(EntryBatch batch, const void *data, Py_ssize_t n, int typenum):
    """A read-only numpy array over ``n`` items of a batch's column; it keeps the batch (and
    so the column's memory) alive."""
    cdef cnp.npy_intp dims[1]
    cdef cnp.ndarray array
    dims[0] = n
    array = cnp.PyArray_SimpleNewFromData(1, dims, typenum, <void *>data)
    cnp.PyArray_CLEARFLAGS(array, cnp.NPY_ARRAY_WRITEABLE)
    cnp.set_array_base(array, batch)
    return array


cdef inline cnp.ndarray _new_array(Py_ssize_t n, int typenum):
    """A new uninitialized 1-D array of ``n`` items, through numpy's C API (a Python-level
    ``np.empty(n, dtype=...)`` costs a few thousand instructions)."""
    cdef cnp.npy_intp dims[1]
    dims[0] = n
    return cnp.PyArray_EMPTY(1, dims, typenum, 0)


def empty_batch(uint64_t next_index=1):
    """An empty batch positioned at ``next_index``."""
    return _empty(next_index)


cdef object _scan_buffer(data, uint64_t expected_first_index, uint64_t payload_bytes_max,
                         uint64_t prev_term, bint strict, Py_ssize_t start=0,
                         Py_ssize_t length=0, bint to_end=True):
    """Scan the records of ``data`` from byte ``start`` to its end (``to_end``), or the
    ``length`` bytes from there (a negative ``length`` is then a ValueError, as any region
    outside ``data``); the offsets in errors and ``end`` count from ``start``."""
    cdef Py_buffer view
    cdef PyObject *exporter
    cdef Scan s
    cdef EntryBatch batch
    cdef bint release
    cdef const unsigned char *p
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if to_end:
            length = view.len - start
        if start < 0 or length < 0 or start > view.len - length:
            raise ValueError(f"{length} bytes at {start} of a {view.len}-byte buffer")
        p = <const unsigned char *>view.buf + start
        # the GIL is released only for a long scan: the usual batch is a few hundred bytes
        release = length >= NOGIL_BYTES_MIN
        if release:
            with nogil:
                s = _scan(p, length, expected_first_index, payload_bytes_max, prev_term)
        else:
            s = _scan(p, length, expected_first_index, payload_bytes_max, prev_term)
        error = None
        if s.error != SCAN_OK:
            cls, message = _SCAN_MESSAGES[s.error]
            error = cls(message, s.end)
            if strict:
                raise error
        first = s.first_index if s.count or expected_first_index else 1
        buffer, base = data, start
        exporter = _exporter(data) if type(data) is memoryview else NULL
        if exporter != NULL and type(<object>exporter) is bytes:
            # keep the bytes, not the view: a view is a tracked object (see EntryBatch); its
            # exporter read in C (``memoryview.obj`` is an attribute lookup)
            owner = <object>exporter
            base = <const char *>p - PyBytes_AS_STRING(owner)
            if 0 <= base and base + length <= PyBytes_GET_SIZE(owner):
                buffer = owner
            else:  # cannot happen for a contiguous view of bytes; keep the view then
                base = start
        batch = _new_batch(buffer, base, s.end, first, s.count)
        if release:
            with nogil:
                _fill_index(p, s.count, <uint64_t *>batch._terms, <uint8_t *>batch._kinds,
                            <uint64_t *>batch._offsets)
        else:
            _fill_index(p, s.count, <uint64_t *>batch._terms, <uint8_t *>batch._kinds,
                        <uint64_t *>batch._offsets)
        return batch, s.end, error
    finally:
        PyBuffer_Release(&view)


def decode_entries(data, uint64_t expected_first_index=0, *,
                   uint64_t payload_bytes_max=RECORD_PAYLOAD_BYTES_MAX,
                   uint64_t prev_term=0):
    """Validate ``data`` (any contiguous buffer) as a batch of records and index it, zero-copy.

    ``expected_first_index`` (0: any) is the index the first record must carry; ``prev_term``
    is a lower bound for the first term. Raises CorruptRecordError, TruncatedRecordError or
    OversizedRecordError with the byte offset of the first bad record. Do not mutate ``data``
    while the batch is alive: its payloads are views into it.
    """
    return _scan_buffer(data, expected_first_index, payload_bytes_max, prev_term, True)[0]


cpdef EntryBatch decode_entries_at(data, Py_ssize_t start, Py_ssize_t length,
                                   uint64_t expected_first_index=0):
    """``decode_entries(memoryview(data)[start:start + length], expected_first_index)``
    without making the slice: the records ``length`` bytes from byte ``start`` of ``data``
    (what a message body carries after its header). The batch views ``data``; offsets in
    errors count from ``start``; a region outside ``data`` is a ValueError."""
    return _scan_buffer(data, expected_first_index, RECORD_PAYLOAD_BYTES_MAX, 0, True, start,
                        length, False)[0]


def scan_entries(data, uint64_t expected_first_index=0, *,
                 uint64_t payload_bytes_max=RECORD_PAYLOAD_BYTES_MAX, uint64_t prev_term=0):
    """Like ``decode_entries`` but tolerant: return ``(batch, end, error)``.

    ``batch`` holds the valid prefix, ``end`` is the byte offset just past it, ``error`` is the
    typed error describing the record at ``end`` (None when the whole buffer is valid). WAL
    recovery uses this to tell a torn tail (TruncatedRecordError) from corruption.
    """
    return _scan_buffer(data, expected_first_index, payload_bytes_max, prev_term, False)


@cython.boundscheck(False)
@cython.wraparound(False)
def encode_entries(uint64_t first_index, terms, payloads, kinds=KIND_COMMAND, *,
                   uint64_t payload_bytes_max=RECORD_PAYLOAD_BYTES_MAX):
    """Encode entries ``first_index, first_index + 1, ...`` into one buffer and index it.

    ``terms`` and ``kinds`` are an int (the same for every entry) or a sequence with one value
    per payload; ``payloads`` is a sequence (or any iterable) of buffers. Returns an
    :class:`EntryBatch` whose ``buffer`` is a new ``bytes`` object. Raises ValueError on an
    index of 0, a term of 0 or a decreasing term, an unknown kind, or a payload over
    ``payload_bytes_max``.
    """
    # a tuple: read twice without checks or a generic item lookup, and no exporter's code
    # (PyObject_GetBuffer) can change it between the passes
    cdef tuple items = payloads if type(payloads) is tuple else tuple(payloads)
    cdef Py_ssize_t n = len(items)
    cdef Py_ssize_t i, total = 0
    cdef Py_ssize_t plen
    cdef Py_buffer view
    cdef cnp.ndarray t_arr
    cdef cnp.ndarray k_arr
    cdef uint64_t term_value
    cdef uint8_t kind_value
    cdef uint64_t *tp
    cdef uint8_t *kp
    cdef uint64_t *op
    cdef unsigned char *out
    cdef unsigned char *h
    cdef uint64_t prev = 0
    cdef bytes result
    cdef EntryBatch batch
    if first_index == 0:
        raise ValueError("first_index must be >= 1 (Raft log indexes start at 1)")
    # the columns are the batch's: filled here, the buffer set once it is written
    batch = _new_batch(None, 0, 0, first_index, n)
    tp = <uint64_t *>batch._terms
    kp = <uint8_t *>batch._kinds
    op = <uint64_t *>batch._offsets
    if isinstance(terms, int):
        if terms <= 0:
            raise ValueError("terms must be >= 1")
        term_value = terms
        for i in range(n):
            tp[i] = term_value
    else:
        t_arr = np.ascontiguousarray(terms, dtype=np.uint64)
        if cnp.PyArray_NDIM(t_arr) != 1 or cnp.PyArray_DIM(t_arr, 0) != n:
            raise ValueError(f"terms has {t_arr.size} values for {n} payloads")
        memcpy(tp, cnp.PyArray_DATA(t_arr), n * sizeof(uint64_t))
    if isinstance(kinds, int):
        if kinds < 0 or kinds > KIND_MAX:
            raise ValueError(f"unknown entry kind {kinds}")
        kind_value = kinds
        for i in range(n):
            kp[i] = kind_value
    else:
        k_arr = np.array(kinds, dtype=np.int64).astype(np.uint8) if len(kinds) else \
            np.zeros(0, dtype=np.uint8)
        if cnp.PyArray_NDIM(k_arr) != 1 or cnp.PyArray_DIM(k_arr, 0) != n:
            raise ValueError(f"kinds has {k_arr.size} values for {n} payloads")
        if n and (np.asarray(kinds).min() < 0 or np.asarray(kinds).max() > KIND_MAX):
            raise ValueError("unknown entry kind in kinds")
        memcpy(kp, cnp.PyArray_DATA(k_arr), n * sizeof(uint8_t))
    for i in range(n):
        if tp[i] == 0 or tp[i] < prev:
            raise ValueError(f"term of entry {i} is zero or lower than the previous one")
        prev = tp[i]
    # Pass 1: sizes.
    for i in range(n):
        p = items[i]
        if type(p) is bytes:
            plen = PyBytes_GET_SIZE(p)
        else:
            PyObject_GetBuffer(p, &view, PyBUF_SIMPLE)
            plen = view.len
            PyBuffer_Release(&view)
        if <uint64_t>plen > payload_bytes_max or <uint64_t>plen > <uint64_t>0xFFFFFFFF:
            raise ValueError(f"payload {i} has {plen} bytes, over the maximum "
                             f"of {payload_bytes_max}")
        op[i] = total
        total += HDR + plen
    op[n] = total
    result = PyBytes_FromStringAndSize(NULL, total)
    out = <unsigned char *>PyBytes_AS_STRING(result)
    # Pass 2: payloads and headers.
    for i in range(n):
        p = items[i]
        h = out + op[i]
        plen = <Py_ssize_t>(op[i + 1] - op[i]) - HDR
        if type(p) is bytes:
            memcpy(h + HDR, PyBytes_AS_STRING(p), plen)
        else:
            PyObject_GetBuffer(p, &view, PyBUF_SIMPLE)
            try:
                if view.len != plen:
                    raise ValueError(f"payload {i} changed size during encoding")
                memcpy(h + HDR, view.buf, plen)
            finally:
                PyBuffer_Release(&view)
        _write_header(h, <uint32_t>plen, kp[i], tp[i], first_index + <uint64_t>i)
    batch.buffer = result
    batch.nbytes = total
    return batch


def concat_batches(batches):
    """Join contiguous batches into one (one copy of the bytes). An empty list gives an empty batch."""
    cdef list kept = []
    cdef EntryBatch b, left = None, joined
    cdef Py_ssize_t total = 0, count = 0, at = 0, pos = 0, i
    cdef uint64_t *off
    cdef char *out
    cdef Py_buffer view
    for item in batches:
        b = <EntryBatch?>item
        if b._n == 0:
            continue
        if left is not None:
            if b.first_index != left.last_index + 1:
                raise ValueError(f"batches are not contiguous: {left.last_index} then "
                                 f"{b.first_index}")
            if b._terms[0] < left._terms[left._n - 1]:
                raise ValueError("terms decrease between batches")
        kept.append(b)
        total += b.nbytes
        count += b._n
        left = b
    if not kept:
        return empty_batch()
    if len(kept) == 1:
        return kept[0]
    # one pass in C over each part: its bytes, terms, kinds and shifted offsets (the core
    # joins the stored batches of every send and read that spans several)
    data = PyBytes_FromStringAndSize(NULL, total)
    out = PyBytes_AS_STRING(data)
    joined = _new_batch(data, 0, total, (<EntryBatch>kept[0]).first_index, count)
    off = <uint64_t *>joined._offsets
    for item in kept:
        b = <EntryBatch>item
        PyObject_GetBuffer(b.buffer, &view, PyBUF_SIMPLE)
        try:
            if b.base < 0 or b.base + b.nbytes > view.len:
                raise ValueError(f"batch at {b.first_index} spans bytes its buffer lacks")
            memcpy(out + at, <char *>view.buf + b.base, b.nbytes)
        finally:
            PyBuffer_Release(&view)
        memcpy(<uint64_t *>joined._terms + pos, b._terms, b._n * sizeof(uint64_t))
        memcpy(<uint8_t *>joined._kinds + pos, b._kinds, b._n * sizeof(uint8_t))
        for i in range(b._n):
            off[pos + i] = b._offset(i) + <uint64_t>at
        at += b.nbytes
        pos += b._n
    off[count] = <uint64_t>total
    return joined


# ---- transport frames ------------------------------------------------------------------------

cpdef bytes frame_header(unsigned int message_type, body, tail=None):
    """The 16-byte header that precedes ``body`` on the wire (write both with writelines).

    With ``tail``, the header of one frame whose body is ``body`` then ``tail``, never joined
    (a message's fixed part and its entries): the checksum runs across both, the length is
    their sum; write the header, ``body`` and ``tail``."""
    cdef Py_buffer view
    cdef unsigned char h[FHDR]
    cdef uint32_t crc
    cdef Py_ssize_t size
    if message_type > 255:
        raise ValueError(f"message type {message_type} does not fit in a byte")
    PyObject_GetBuffer(body, &view, PyBUF_SIMPLE)
    try:
        size = view.len
        crc = crc32c_span(0, <const unsigned char *>view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)
    if tail is not None:  # a large tail (a snapshot chunk) is summed without the GIL
        PyObject_GetBuffer(tail, &view, PyBUF_SIMPLE)
        try:
            size += view.len
            if size <= 0xFFFFFFFF:
                crc = crc32c_span(crc, <const unsigned char *>view.buf, <size_t>view.len)
        finally:
            PyBuffer_Release(&view)
    if size > 0xFFFFFFFF:
        raise ValueError("frame body over 4 GiB")
    rc_put32(h + 4, crc)
    rc_put32(h + 8, <uint32_t>size)
    rc_put16(h + 12, FMAGIC)
    h[14] = FVERSION
    h[15] = <unsigned char>message_type
    rc_put32(h, crc32c_update(0, h + 4, FHDR - 4))
    return PyBytes_FromStringAndSize(<char *>h, FHDR)


# ---- the fixed head of a Raft message body ---------------------------------------------------
# 88 bytes: version, type code, flags and a reserved byte, three 32-bit lengths (context, entries,
# snapshot chunk) and nine 64-bit fields (src, dst, term, log_term, index, commit,
# reject_hint, hint_term, snapshot_offset), little-endian: the layout of pyraft's codec
# (docs/format.md), packed and read here in C so that a message's fields go from and to its
# extension object without a Python integer each.

MESSAGE_HEAD_BYTES = MHEAD


cpdef bytes pack_message_head(uint8_t version, uint8_t code, uint8_t flags,
                              uint32_t context_length, uint32_t entries_length,
                              uint32_t chunk_length, uint64_t src, uint64_t dst, uint64_t term,
                              uint64_t log_term, uint64_t index, uint64_t commit,
                              uint64_t reject_hint, uint64_t hint_term,
                              uint64_t snapshot_offset):
    """The 88-byte head of a Raft message body (its reserved byte 0). A value that does not
    fit its field raises OverflowError, one that is not an integer TypeError."""
    cdef bytes out = PyBytes_FromStringAndSize(NULL, MHEAD)
    cdef unsigned char *p = <unsigned char *>PyBytes_AS_STRING(out)
    p[0] = version
    p[1] = code
    p[2] = flags
    p[3] = 0
    rc_put32(p + 4, context_length)
    rc_put32(p + 8, entries_length)
    rc_put32(p + 12, chunk_length)
    rc_put64(p + 16, src)
    rc_put64(p + 24, dst)
    rc_put64(p + 32, term)
    rc_put64(p + 40, log_term)
    rc_put64(p + 48, index)
    rc_put64(p + 56, commit)
    rc_put64(p + 64, reject_hint)
    rc_put64(p + 72, hint_term)
    rc_put64(p + 80, snapshot_offset)
    return out


cdef class MessageHead:
    """The fields of a message body's head, as :func:`read_message_head` found them (no check
    of their values: the codec makes those)."""

    def __repr__(self):
        return (f"MessageHead(version={self.version}, code={self.code}, flags={self.flags}, "
                f"reserved={self.reserved}, context_length={self.context_length}, "
                f"entries_length={self.entries_length}, chunk_length={self.chunk_length}, "
                f"src={self.src}, dst={self.dst}, term={self.term}, log_term={self.log_term}, "
                f"index={self.index}, commit={self.commit}, reject_hint={self.reject_hint}, "
                f"hint_term={self.hint_term}, snapshot_offset={self.snapshot_offset})")


cpdef MessageHead read_message_head(data):
    """The head at the start of ``data`` (a buffer of at least 88 bytes; ValueError when
    shorter)."""
    cdef Py_buffer view
    cdef const unsigned char *p
    cdef MessageHead head = MessageHead.__new__(MessageHead)
    if type(data) is bytes:  # what FrameDecoder yields: no buffer request
        if PyBytes_GET_SIZE(data) < MHEAD:
            raise ValueError(f"a message head is {MHEAD} bytes, not {PyBytes_GET_SIZE(data)}")
        _read_head(head, <const unsigned char *>PyBytes_AS_STRING(data))
        return head
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if view.len < MHEAD:
            raise ValueError(f"a message head is {MHEAD} bytes, not {view.len}")
        _read_head(head, <const unsigned char *>view.buf)
    finally:
        PyBuffer_Release(&view)
    return head


cdef inline void _read_head(MessageHead head, const unsigned char *p) noexcept:
    head.version = p[0]
    head.code = p[1]
    head.flags = p[2]
    head.reserved = p[3]
    head.context_length = rc_le32(p + 4)
    head.entries_length = rc_le32(p + 8)
    head.chunk_length = rc_le32(p + 12)
    head.src = rc_le64(p + 16)
    head.dst = rc_le64(p + 24)
    head.term = rc_le64(p + 32)
    head.log_term = rc_le64(p + 40)
    head.index = rc_le64(p + 48)
    head.commit = rc_le64(p + 56)
    head.reject_hint = rc_le64(p + 64)
    head.hint_term = rc_le64(p + 72)
    head.snapshot_offset = rc_le64(p + 80)


def encode_frame(unsigned int message_type, body):
    """Header and body as one ``bytes`` (copies the body; prefer frame_header for large bodies)."""
    return frame_header(message_type, body) + bytes(body)


cdef class FrameDecoder:
    """Incremental decoder of a stream of frames (one per connection).

    ``feed(data)`` returns the complete frames now available as ``(type, body)`` pairs, bodies
    as ``bytes``. Errors are typed and carry the offset from the start of the stream; after
    an error the decoder stays failed (the connection must be closed).

    Each received byte of a body is copied once, into the body returned: a frame whole in one
    ``data`` is sliced out of it; a frame whose body runs past ``data`` gets its body object
    as soon as its header is read and checked, filled by this and the next calls (with room
    for at most twice the bytes of it that came, 64 KiB at least, grown in place as more
    come: a header alone cannot make the decoder allocate its frame's length), and summed
    as it fills. Only a partial header (under 16
    bytes) waits in a buffer. The pure twin keeps the whole stream in one buffer; both return
    the same frames and raise the same errors at the same offsets for any chunking.
    """

    # fields: _framing.pxd

    def __cinit__(self, *args, **kwargs):
        self._body = NULL

    def __init__(self, Py_ssize_t frame_bytes_max=FRAME_BYTES_MAX):
        if frame_bytes_max <= 0 or frame_bytes_max > 0xFFFFFFFF:
            raise ValueError("frame_bytes_max must be in [1, 2**32 - 1]")
        self._buffer = bytearray()
        self._consumed = self._received = 0
        self.frame_bytes_max = frame_bytes_max
        self._error = None
        self._drop_body()

    def __dealloc__(self):
        Py_XDECREF(self._body)

    cdef void _drop_body(self) noexcept:
        Py_XDECREF(self._body)
        self._body = NULL
        self._body_length = self._filled = 0
        self._body_crc = self._crc = 0
        self._body_type = 0

    @property
    def buffered(self):
        """Bytes received but not yet returned as frames."""
        return self._received - self._consumed

    @property
    def stream_offset(self):
        """Bytes of the stream consumed as complete frames so far."""
        return self._consumed

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cpdef list feed(self, data):
        cdef list frames = []
        cdef Py_buffer view
        cdef const unsigned char *p
        cdef const unsigned char *head
        cdef unsigned char header[FHDR]
        cdef Py_ssize_t n, off = 0, have, take, room
        cdef uint32_t length
        cdef object body
        if self._error is not None:
            raise self._error
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            p = <const unsigned char *>view.buf
            n = view.len
            self._received += n
            while True:
                if self._body != NULL:  # a body that runs past the last call: fill it
                    take = min(n - off, self._body_length - self._filled)
                    room = PyBytes_GET_SIZE(<object>self._body)
                    if self._filled + take > room:
                        _PyBytes_Resize(&self._body, min(self._body_length,
                                                         max(self._filled + take, 2 * room)))
                    memcpy(PyBytes_AS_STRING(<object>self._body) + self._filled, p + off, take)
                    self._crc = crc32c_span(self._crc, p + off, take)
                    self._filled += take
                    off += take
                    if self._filled < self._body_length:
                        break  # everything given is in the body
                    if self._crc != self._body_crc:
                        raise CorruptFrameError("frame body checksum mismatch", self._consumed)
                    body = <object>self._body
                    frames.append((self._body_type, body))
                    self._consumed += FHDR + self._body_length
                    self._drop_body()
                    continue
                have = len(self._buffer)  # a partial header from the last call
                if have + n - off < FHDR:
                    if off < n:
                        self._buffer += p[off:n]
                    break
                if have:
                    memcpy(header, PyByteArray_AS_STRING(self._buffer), have)
                    memcpy(header + have, p + off, FHDR - have)
                    head = header
                    off += FHDR - have
                else:
                    head = p + off
                    off += FHDR
                if crc32c_update(0, head + 4, FHDR - 4) != rc_le32(head):
                    raise CorruptFrameError("frame header checksum mismatch", self._consumed)
                if rc_le16(head + 12) != FMAGIC or head[14] != FVERSION:
                    raise CorruptFrameError("bad frame magic or version", self._consumed)
                length = rc_le32(head + 8)
                if length > <uint64_t>self.frame_bytes_max:
                    raise OversizedFrameError(
                        f"frame body of {length} bytes exceeds frame_bytes_max "
                        f"{self.frame_bytes_max}", self._consumed)
                if have:
                    del self._buffer[:]
                if n - off >= length:  # the whole body is here
                    if crc32c_span(0, p + off, length) != rc_le32(head + 4):
                        raise CorruptFrameError("frame body checksum mismatch", self._consumed)
                    frames.append((head[15], PyBytes_FromStringAndSize(<char *>p + off, length)))
                    off += length
                    self._consumed += FHDR + length
                    continue
                # the body runs past this call: its object now, sized for what has come
                self._body_type = head[15]
                self._body_crc = rc_le32(head + 4)
                self._body_length = length
                self._filled = 0
                self._crc = 0
                body = PyBytes_FromStringAndSize(NULL, min(<Py_ssize_t>length,
                                                           max(2 * (n - off), BODY_BYTES_MIN)))
                Py_INCREF(body)
                self._body = <PyObject *>body
                body = None
        except Exception as exc:
            # Frames decoded before the defect are delivered; the error comes on the next call.
            self._error = exc
            if not frames:
                raise
        finally:
            PyBuffer_Release(&view)
        return frames
