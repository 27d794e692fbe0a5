# C-level interface of the framing kernel, for other kernels (the WAL) to cimport.
from libc.stdint cimport uint64_t


cdef class EntryBatch:
    cdef readonly object buffer
    cdef readonly Py_ssize_t base
    cdef readonly Py_ssize_t nbytes
    cdef readonly uint64_t first_index
    cdef readonly uint64_t last_index  # first_index + len - 1 (first_index - 1 when empty)
    cdef readonly object terms
    cdef readonly object kinds
    cdef readonly object offsets
    cdef Py_ssize_t _n

    cdef object _memoryview(self)
    cdef Py_ssize_t _position(self, index) except -1
    cpdef term_at(self, index)
    cpdef slice(self, lo, hi)
    cdef EntryBatch _positions(self, Py_ssize_t a, Py_ssize_t b)
