# Types for the compiled build of log.py (Cython pure-Python mode: the .py is the source).
# DurableLogStorage is an extension class over the core's ExternalSnapshots, its fields in C:
# the core reads the log through it several times per write (first_index, last_index, term,
# entries) and the log writer appends and syncs through it. Most methods stay ``def``; the
# few a write passes through with batches and hard states are ``cpdef`` to read those in C
# (a Python subclass, a test's faulty disk, still overrides them), and ``__dict__`` keeps any
# attribute a caller adds. It extends pyraft.core.storage's class and reads
# pyraft.core.messages' HardState: naming either module in PYRAFT_PURE_MODULES needs this one
# named too.
cimport cython
from libc.stdint cimport int64_t

from pyraft.core.messages cimport HardState
from pyraft.core.storage cimport ExternalSnapshots
from raftcore._framing cimport EntryBatch as CEntryBatch
from raftcore._wal cimport WriteAheadLog as CWriteAheadLog


cdef class DurableLogStorage(ExternalSnapshots):
    cdef dict __dict__
    cdef public object directory
    cdef public int64_t commit_hint_interval_entries
    cdef public double commit_hint_interval_ms
    cdef public double _saved_at
    cdef public int64_t recent_bytes_max
    cdef public list _recent
    cdef public int64_t _recent_bytes
    cdef public CWriteAheadLog wal  # its positions are C calls (raftcore/_wal.pxd)
    cdef public object _deleter
    cdef public object snapshots
    cdef public object state
    cdef public object hard_state
    cdef public object _saved
    cdef public object _snapshot_meta
    cdef public bint _snapshot_external
    cdef public object _snapshot_cache
    cdef public object _membership_path
    cdef public object _membership

    cpdef int64_t first_index(self) except? -1
    cpdef int64_t last_index(self) except? -1
    cpdef int64_t term(self, int64_t index) except? -1
    @cython.locals(newest=CEntryBatch)
    cpdef object entries(self, int64_t lo, int64_t hi, object max_bytes=*)
    @cython.locals(first=int64_t, newest=CEntryBatch, cut=CEntryBatch, kept=CEntryBatch,
                   old=CEntryBatch, recent=list, drop=Py_ssize_t)
    cpdef _remember(self, CEntryBatch batch)
    @cython.locals(new=HardState, saved=HardState, now=double)
    cpdef set_hard_state(self, object hard_state)
    @cython.locals(entries=CEntryBatch, first=int64_t)
    cpdef append(self, object batch)
    cpdef object sync(self)
