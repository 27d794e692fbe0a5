# C-level interface of the framing kernel, for other kernels (the WAL) to cimport.
from libc.stdint cimport uint8_t, uint64_t

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
    cpdef slice(self, lo, hi)
    cdef EntryBatch _positions(self, Py_ssize_t a, Py_ssize_t b)
