# Types for the compiled build of storage.py (Cython pure-Python mode: the .py is the source).
# The storages are extension classes (fields declared here, no __dict__; Python subclasses such
# as DurableLogStorage get one); the methods the core reads through are cpdef, so a Python
# subclass may still override them.
cimport cython
from libc.stdint cimport int64_t

from raftcore._framing cimport EntryBatch as CEntryBatch


cdef class ExternalSnapshots:
    cdef public object snapshot_wanted
    cdef public object _export

    cpdef int64_t first_index(self) except? -1
    cpdef int64_t last_index(self) except? -1
    cpdef int64_t term(self, int64_t index) except? -1
    cpdef object entries(self, int64_t lo, int64_t hi, object max_bytes=*)
    cpdef append(self, object batch)
    cpdef object sync(self)
    cpdef set_hard_state(self, object hard_state)


cdef class MemoryLogStorage(ExternalSnapshots):
    cdef public object hard_state
    cdef public bint _external
    cdef public object _snapshot
    cdef public int64_t _snapshot_index
    cdef public int64_t _snapshot_term
    cdef public list _batches
    cdef public list _starts

    cpdef _keep_snapshot(self, object snapshot)
    cpdef int64_t first_index(self) except? -1
    @cython.locals(last=CEntryBatch)
    cpdef int64_t last_index(self) except? -1
    @cython.locals(snapshot_index=int64_t)
    cpdef int64_t term(self, int64_t index) except? -1
    @cython.locals(batches=list, starts=list, parts=list, size=int64_t, position=Py_ssize_t,
                   count=Py_ssize_t, part=CEntryBatch, batch=CEntryBatch)
    cpdef object entries(self, int64_t lo, int64_t hi, object max_bytes=*)
    @cython.locals(first=int64_t)
    cpdef append(self, object batch)
    cpdef object sync(self)
    cpdef set_hard_state(self, object hard_state)
    cpdef _truncate_from(self, int64_t index)
    cpdef object _batch_of(self, int64_t index)


@cython.locals(position=Py_ssize_t, count=Py_ssize_t, start=int64_t, end=int64_t)
cpdef object _terms_of(list batches, list starts, int64_t lo, int64_t hi)
