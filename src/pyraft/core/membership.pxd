# Types for the compiled build of membership.py (Cython pure-Python mode: the .py is the source).
# Only the quorum function the leader calls on every commit is typed (raft.pxd cimports it:
# a C call); Configuration stays a Python dataclass.
cimport cython
from libc.stdint cimport int64_t


@cython.locals(ordered=list)
cpdef int64_t majority_index(list values) except? -1
