# Types for the compiled build of progress.py (Cython pure-Python mode: the .py is the source).
cimport cython
from libc.stdint cimport int64_t


@cython.final
cdef class Inflights:
    cdef public int64_t capacity
    cdef public int64_t bytes_max
    cdef object _items
    cdef public int64_t bytes

    cpdef bint full(self)
    @cython.locals(items=object)
    cpdef add(self, int64_t last_index, int64_t size, int64_t tick=*)
    cpdef free_to(self, int64_t index)
    cpdef reset(self)


@cython.final
cdef class Progress:
    cdef public int64_t match
    cdef public int64_t next
    cdef public object state
    cdef public bint probe_sent
    cdef public int64_t pending_snapshot
    cdef public int64_t snapshot_offset
    cdef public int64_t snapshot_sent
    cdef public bint snapshot_done_sent
    cdef public bint snapshot_probing
    cdef public bint recent_active
    cdef public int64_t lease_tick
    cdef public int64_t response_tick
    cdef public int64_t heard_tick
    cdef public Inflights inflights

    cpdef become_probe(self)
    cpdef become_replicate(self)
    cpdef become_snapshot(self, int64_t index)
    cpdef snapshot_rewind(self, int64_t offset)
    cpdef bint is_paused(self)
    cpdef bint maybe_update(self, int64_t index)
    cpdef bint maybe_decrease_to(self, int64_t rejected, int64_t match_hint)


# ProgressState's members (module constants of progress.py, C globals here)
cdef object _PROBE
cdef object _REPLICATE
cdef object _SNAPSHOT
