# C-level interface of the index-table kernel, for other kernels to cimport.
from libc.stdint cimport int32_t, int64_t, uint64_t


cdef class IndexTable:
    # Three parallel columns of `_capacity` slots each; the live entries are the slots
    # [_head, _head + _count), slot _head holding log index _first.
    # Invariants: 0 <= _head, 0 <= _count, _head + _count <= _capacity,
    #             _capacity_min <= _capacity once __init__ has run,
    #             1 <= _first <= 2**63 - 1, _first + _count - 1 <= 2**63 - 2 when _count > 0,
    #             _terms[_head .. _head + _count) is non-decreasing and >= _prev_term.
    cdef uint64_t *_offsets
    cdef uint64_t *_terms
    cdef int32_t *_segments
    cdef Py_ssize_t _head
    cdef Py_ssize_t _count
    cdef Py_ssize_t _capacity
    cdef Py_ssize_t _capacity_min   # the capacity given to __init__; shrinking stops there
    cdef Py_ssize_t _high           # the most live entries since the last _reclaim
    cdef Py_ssize_t _high_before    # ... and between the two reclaims before it
    cdef int64_t _first             # first_index: the index of slot _head (the next append's
                                    # index when the table is empty)
    cdef uint64_t _prev_term        # term of _first - 1 (the snapshot's last entry; 0 for index 0)

    # Append n entries starting at log index `first`, with the checks of append().
    # `segments` may be NULL, in which case every entry gets `segment`. Entry k's offset is
    # offsets[k] + shift (the WAL passes a batch's record boundaries and where it wrote them).
    # the WAL asks it per sync and per read (a C call from there)
    cpdef term_at(self, index)

    cdef int c_append(self, int64_t first, const int32_t *segments, int32_t segment,
                      const uint64_t *offsets, uint64_t shift, const uint64_t *terms,
                      Py_ssize_t n) except -1
    # c_append of an EntryBatch's columns, written at byte `shift` of segment `segment`:
    # `offsets` holds its len(terms) + 1 record boundaries (the last one unused), `terms` one
    # term each; plain uint64 arrays are read in place, anything else is converted first.
    cdef int c_append_batch(self, int64_t first, int32_t segment, object offsets,
                            uint64_t shift, object terms) except -1
    # 0 and the term at `index` (first_index - 1 included), or -1 when it is outside the table.
    cdef int c_term_at(self, int64_t index, uint64_t *term) noexcept nogil
    # 0 and the record of `index`, or -1 when it is outside [first_index, last_index].
    cdef int c_lookup(self, int64_t index, int32_t *segment, uint64_t *offset,
                      uint64_t *term) noexcept nogil

    cdef int _reserve(self, Py_ssize_t n) except -1
    cdef bint _reallocate(self, Py_ssize_t capacity) noexcept
    cdef void _compact(self) noexcept nogil
    cdef void _reclaim(self) noexcept
    cdef object _lookup_error(self, int64_t index)
    cdef int _range(self, object lo, object hi, Py_ssize_t *start, Py_ssize_t *n) except -1
    cdef object _copy_range(self, object lo, object hi, const void *column, size_t itemsize,
                            int typenum)
