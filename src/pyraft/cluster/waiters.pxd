# Types for the compiled build of waiters.py (Cython pure-Python mode: the .py is the source).
# The engine resolves the waiters after every Ready: compiled, a C method that returns at
# once when nobody waits, instead of an interpreted frame per Ready on every member.
cimport cython
from libc.stdint cimport int64_t


@cython.final
cdef class Waiters:
    cdef public dict reads
    cdef list _applied
    cdef list _commit
    cdef list _conditions
    cdef public dict failed_catch_up

    cpdef read_state(self, object context, int64_t index)
    cpdef catch_up_failed(self, int64_t member)
    @cython.locals(kept=list)
    cpdef resolve(self, int64_t committed, int64_t applied)
