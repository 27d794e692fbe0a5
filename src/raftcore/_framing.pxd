# C-level interface of the framing kernel, for other kernels (the WAL) to cimport.
cimport cython
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from cpython.object cimport PyObject

# The columns of a batch of at most INLINE_ENTRIES entries live inside the batch object.
cdef enum:
    INLINE_WORDS = 10
    INLINE_ENTRIES = 4   # offsets 5 + terms 4 + kinds 1 word


cdef class EntryBatch:
    cdef readonly object buffer
    cdef readonly Py_ssize_t base
    cdef readonly Py_ssize_t nbytes
    cdef readonly uint64_t first_index
    cdef readonly uint64_t last_index  # first_index + len - 1 (first_index - 1 when empty)
    cdef Py_ssize_t _n
    # The index columns, in C (numpy views are made only when Python code asks for them):
    # _n terms, _n kinds and _n + 1 record boundaries. Record i spans bytes
    # [_offsets[i] - _offsets[0], _offsets[i + 1] - _offsets[0]) from ``base``: a slice points
    # into its parent's columns, so _offsets[0] is 0 only for a batch that owns them.
    cdef const uint64_t *_terms
    cdef const uint64_t *_offsets
    cdef const uint8_t *_kinds
    cdef object _owner        # the batch whose columns a slice points into (None: its own)
    cdef uint64_t *_heap      # columns too large for _inline (freed with the batch)
    cdef uint64_t _inline[INLINE_WORDS]

    cdef int _allocate(self, Py_ssize_t n) except -1
    cdef inline uint64_t _offset(self, Py_ssize_t i) noexcept:
        return self._offsets[i] - self._offsets[0]
    cdef object _memoryview(self)
    cdef Py_ssize_t _position(self, index) except -1
    cdef int _clamp(self, lo, hi, Py_ssize_t *a, Py_ssize_t *b) except -1
    cpdef term_at(self, index)
    cpdef Py_ssize_t count_kind(self, int kind) except -1
    cpdef slice(self, lo, hi)
    cdef EntryBatch _positions(self, Py_ssize_t a, Py_ssize_t b)


# A frame's header over its body (and tail): the codec frames every message it encodes with it.
cpdef bytes frame_header(unsigned int message_type, body, tail=*)


# The records inside a message body, without slicing it (pyraft's codec cimports it).
cpdef EntryBatch decode_entries_at(data, Py_ssize_t start, Py_ssize_t length,
                                   uint64_t expected_first_index=*)


# The fixed head of a Raft message body (pyraft's codec cimports these: C calls, C fields).
cdef enum:
    MHEAD = 88

cpdef bytes pack_message_head(uint8_t version, uint8_t code, uint8_t flags,
                              uint32_t context_length, uint32_t entries_length,
                              uint32_t chunk_length, uint64_t src, uint64_t dst, uint64_t term,
                              uint64_t log_term, uint64_t index, uint64_t commit,
                              uint64_t reject_hint, uint64_t hint_term,
                              uint64_t snapshot_offset)


@cython.final
cdef class MessageHead:
    cdef readonly uint8_t version, code, flags, reserved
    cdef readonly uint32_t context_length, entries_length, chunk_length
    cdef readonly uint64_t src, dst, term, log_term, index, commit, reject_hint, hint_term
    cdef readonly uint64_t snapshot_offset


cpdef MessageHead read_message_head(data)


# One connection's incremental frame decoder (pyraft's transport cimports it: feed is a C call
# for every chunk a connection reads).
cdef class FrameDecoder:
    cdef bytearray _buffer  # a partial frame header (under 16 bytes)
    cdef Py_ssize_t _consumed  # stream offset of the frame being received
    cdef Py_ssize_t _received  # bytes of the stream fed so far
    cdef readonly Py_ssize_t frame_bytes_max
    cdef object _error
    # the body of a frame whose header came and whose body runs past the last call: a bytes
    # object owned here alone (grown in place), its first _filled bytes received so far
    cdef PyObject *_body
    cdef Py_ssize_t _body_length, _filled
    cdef uint32_t _body_crc, _crc  # the header's body checksum; the sum of what came
    cdef uint8_t _body_type

    cdef void _drop_body(self) noexcept
    cpdef list feed(self, data)
