# Types for the compiled build of log.py (Cython pure-Python mode: the .py is the source).
# DurableLogStorage is an extension class over the core's ExternalSnapshots, its fields in C:
# the core reads the log through it several times per write (first_index, last_index, term,
# entries) and the log writer appends and syncs through it. Its methods stay ``def``: a
# Python subclass (a test's faulty disk) overrides them as before, and ``__dict__`` keeps any
# attribute a caller adds. It extends pyraft.core.storage's class: naming that module in
# PYRAFT_PURE_MODULES needs this one named too.
from libc.stdint cimport int64_t

from pyraft.core.storage cimport ExternalSnapshots


cdef class DurableLogStorage(ExternalSnapshots):
    cdef dict __dict__
    cdef public object directory
    cdef public int64_t commit_hint_interval_entries
    cdef public int64_t recent_bytes_max
    cdef public object _recent
    cdef public int64_t _recent_bytes
    cdef public object wal
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
