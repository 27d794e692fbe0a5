# C-level interface of the write-ahead log kernel, for the durable log (pyraft.storage.log)
# to cimport: the positions it asks several times per write are C calls through this.
from libc.stdint cimport int64_t, uint64_t

from raftcore._index cimport IndexTable


cdef class WriteAheadLog:
    cdef readonly str directory
    cdef readonly uint64_t cluster_id
    cdef readonly int64_t segment_bytes_max
    cdef readonly str sync_policy
    cdef readonly double sync_interval_ms
    cdef readonly bint zero_fill
    cdef readonly uint64_t payload_bytes_max
    cdef readonly object recovery
    cdef public object deleter
    cdef list _segments
    cdef IndexTable _index
    cdef uint64_t _next_index       # index the next append must carry
    cdef uint64_t _prev_term        # term of _next_index - 1 when nothing is stored
    cdef uint64_t _written
    cdef uint64_t _durable
    cdef int _next_seq
    cdef double _last_sync
    cdef bint _closed
    cdef bint _dirty

    cpdef int64_t first_index(self) except? -1
    cpdef int64_t last_index(self) except? -1
    cpdef object term_at(self, object index)
    cpdef append(self, batch)
    cpdef object sync(self)
    cdef uint64_t _last_term(self) noexcept
    cdef int _require_open(self) except -1
    cdef int _zero_tail(self, int fd, int64_t offset, int64_t length) noexcept nogil
    cdef int64_t _zero_run(self, const unsigned char[::1] view, int64_t start, int64_t size)
