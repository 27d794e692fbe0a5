# Types for the compiled build of storage.py (Cython pure-Python mode: the .py is the source).
cimport cython
from libc.stdint cimport int64_t


@cython.locals(position=Py_ssize_t, count=Py_ssize_t, start=int64_t, end=int64_t)
cpdef object _terms_of(list batches, list starts, int64_t lo, int64_t hi)
