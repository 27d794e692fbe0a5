# Types for the compiled build of confhistory.py (Cython pure-Python mode: the .py is the source).
# An extension class, so the leader and followers ask it for the newest configuration entry
# (once per append) with a C call (raft.pxd cimports it).
cimport cython
from libc.stdint cimport int64_t


@cython.final
cdef class ConfigurationHistory:
    cdef public object base
    cdef public list entries

    cpdef object latest(self)
    cpdef int64_t latest_index(self) except? -1
    cpdef object before_latest(self)
