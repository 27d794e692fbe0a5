# Types for the compiled build of log.py (Cython pure-Python mode: the .py is the source).
cimport cython
from libc.stdint cimport int64_t

from pyraft.core.storage cimport ExternalSnapshots
from raftcore._framing cimport EntryBatch as CEntryBatch


@cython.final
cdef class RaftLog:
    cdef public object storage
    cdef ExternalSnapshots _stored
    cdef public list unstable
    cdef public int64_t unstable_offset
    cdef public object unstable_snapshot
    cdef public bint snapshot_in_progress
    cdef public int64_t in_progress
    cdef public int64_t committed
    cdef public int64_t applied
    cdef public int64_t applying
    cdef public int64_t _last

    @cython.locals(stored=ExternalSnapshots)
    cpdef int64_t first_index(self) except? -1
    cpdef int64_t last_index(self)
    cpdef int64_t last_term(self) except? -1
    @cython.locals(batch=CEntryBatch, stored=ExternalSnapshots)
    cpdef int64_t term(self, int64_t index) except? -1
    cpdef object term_or_none(self, int64_t index)
    cpdef bint match_term(self, int64_t index, int64_t term) except -1
    @cython.locals(mine=int64_t)
    cpdef bint is_up_to_date(self, int64_t last_index, int64_t term) except -1
    @cython.locals(stable_hi=int64_t, typed=ExternalSnapshots, parts=list, stored=CEntryBatch,
                   batch=CEntryBatch)
    cpdef object entries(self, int64_t lo, int64_t hi, object max_bytes=*)
    cpdef object terms(self, int64_t lo, int64_t hi)
    @cython.locals(first=int64_t, last=int64_t, part=CEntryBatch)
    cpdef append(self, CEntryBatch batch)
    @cython.locals(lo=int64_t, hi=int64_t)
    cpdef int64_t find_conflict(self, CEntryBatch batch) except? -1
    @cython.locals(last_new=int64_t, conflict=int64_t)
    cpdef object maybe_append(self, int64_t index, int64_t log_term, int64_t commit,
                              CEntryBatch batch)
    @cython.locals(lo=int64_t, hi=int64_t, middle=int64_t)
    cpdef int64_t find_conflict_by_term(self, int64_t index, int64_t term) except? -1
    cpdef bint commit_to(self, int64_t index) except -1
    @cython.locals(out=list, batch=CEntryBatch)
    cpdef list take_unstable(self)
    @cython.locals(kept=list, batch=CEntryBatch)
    cpdef stable_to(self, int64_t index, int64_t term)
    cpdef restore(self, object snapshot)
    cpdef stable_snapshot_to(self, int64_t index)
    @cython.locals(lo=int64_t, hi=int64_t, batch=CEntryBatch)
    cpdef list take_committed(self, int64_t max_bytes)
    cpdef applied_to(self, int64_t index)
