# Types for the compiled build of persist.py (Cython pure-Python mode: the .py is the source).
# Every handled Ready passes through LogWriter.begin (pipelined) or persist: compiled, its
# steps are C calls, and what they read of the Ready and its batches are C fields; pyraft's
# storages (pyraft.core.storage's class) are appended to and synced through C calls too, so
# naming pyraft.core.storage in PYRAFT_PURE_MODULES needs this module named as well.
cimport cython
from libc.stdint cimport int64_t

from pyraft.core.messages cimport Ready
from pyraft.core.storage cimport ExternalSnapshots
from pyraft.instruments cimport Histogram
from raftcore._clock cimport perf_counter
from raftcore._framing cimport EntryBatch as CEntryBatch


@cython.final
cdef class Written:
    cdef public object job
    cdef public object error


@cython.final
cdef class SyncJob:
    cdef public object hard_state
    cdef public bint entries
    cdef public bint started
    cdef public object future
    cdef public bint observed
    cdef public object lock

    cpdef bint join(self, object hard_state, bint entries) except -1


@cython.final
cdef class LogWriter:
    cdef public int64_t id
    cdef public object storage
    cdef public ExternalSnapshots _stored
    cdef public bint _durable
    cdef public object metrics
    cdef public Histogram _append_seconds
    cdef public Histogram _append_entries
    cdef public Histogram _fsync_seconds
    cdef public object _snapshots
    cdef public double inline_sync_max_ms
    cdef public int64_t inline_sync_bytes_max
    cdef public object _installed
    cdef public object failed
    cdef public double sync_seconds
    cdef public int64_t _syncs_running
    cdef public SyncJob _last_job
    cdef public bint _rewriting
    cdef public object _loop
    cdef public object _executor

    @cython.locals(first=CEntryBatch, stored=ExternalSnapshots)
    cpdef bint can_pipeline(self, Ready rd) except -1
    @cython.locals(written=Written, job=SyncJob, entries=bint, started=double)
    cpdef Written begin(self, Ready rd)
    @cython.locals(ended=double, count=int64_t, batch=CEntryBatch, stored=ExternalSnapshots)
    cpdef double _append(self, list entries, double started=*) except? -1.0
    cpdef _failed(self, object error)
    cpdef pipeline_empty(self)
    cpdef double _run_job(self, SyncJob job) except? -1.0
    cpdef double _timed_sync(self, object hard_state, bint entries,
                             double started=*) except? -1.0
    cpdef _synced(self, double elapsed, bint entries)
    @cython.locals(size=int64_t, batch=CEntryBatch)
    cpdef bint sync_inline(self, Ready rd) except -1
    @cython.locals(stored=ExternalSnapshots)
    cpdef sync(self, object hard_state, bint entries)
