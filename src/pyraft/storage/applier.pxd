# Types for the compiled build of applier.py (Cython pure-Python mode: the .py is the source).
# Every member applies every committed batch through ``apply_batch``: compiled, the checks and
# the apply lock are C calls on C fields, and a batch's length and indexes are read directly.
cimport cython
from libc.stdint cimport int64_t

from raftcore._framing cimport EntryBatch as CEntryBatch


cdef class Applier:
    cdef public object _lock
    cdef public object _cv
    cdef public int64_t _applied_index
    cdef public int64_t _snapshot_index
    cdef public object _broken
    cdef public object _failure
    cdef public bint _closed
    cdef public int64_t snapshot_entries
    cdef public bint _plain_entries
    cdef public object _commands

    @cython.locals(count=Py_ssize_t, first=int64_t, lock=object, results=object)
    cpdef apply_batch(self, CEntryBatch batch)
    cpdef _refuse(self, CEntryBatch batch)
    cpdef apply_commands(self, CEntryBatch batch)
    @cython.locals(count=Py_ssize_t, first=int64_t, start=Py_ssize_t, position=Py_ssize_t)
    cpdef _apply_entries(self, CEntryBatch batch)
    cpdef _after_apply(self)
    cpdef _raise_failure(self)
