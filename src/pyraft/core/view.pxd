# Types for the compiled build of view.py (Cython pure-Python mode: the .py is the source).
# The runtime, the metrics and the key-value API read the core's status through a CoreView
# many times per write; compiled, each property is a C getter that reads the node's typed
# fields instead of a Python frame.
cimport cython

from pyraft.core.log cimport RaftLog
from pyraft.core.raft cimport RaftNode


@cython.final
cdef class CoreView:
    cdef RaftNode _node
    cdef RaftLog _log
