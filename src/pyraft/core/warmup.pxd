# Types for the compiled build of warmup.py (Cython pure-Python mode: the .py is the source).
# Warmup is an extension class: the leader tests it (truth, membership) on every append answer
# and every commit, through C slots instead of Python-level __bool__ / __contains__ calls.
cimport cython


@cython.final
cdef class Warmup:
    cdef public dict catch_ups

    cpdef list to_promote(self)
