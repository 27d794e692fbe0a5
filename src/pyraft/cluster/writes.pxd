# Types for the compiled build of writes.py (Cython pure-Python mode: the .py is the source).
# Every write enters through Writes.enqueue_now: compiled, a C method over the typed ledger;
# pyraft's core, log writer and histogram are reached through typed references (naming
# pyraft.core.raft, pyraft.cluster.persist or pyraft.instruments in PYRAFT_PURE_MODULES needs
# this module named too).
cimport cython
from libc.stdint cimport int64_t

from pyraft.cluster.ledger cimport ProposalLedger, QueuedBatch
from pyraft.cluster.persist cimport LogWriter
from pyraft.core.raft cimport RaftNode
from pyraft.instruments cimport Histogram


@cython.locals(payloads=list, i=Py_ssize_t)
cpdef list payloads_of(object commands)


@cython.final
cdef class Wake:
    cdef object _loop
    cdef bint _set
    cdef object _waiter

    cpdef set(self)
    cpdef clear(self)
    cpdef bint is_set(self)
    cpdef object wait(self)


@cython.final
cdef class Writes:
    cdef public int64_t id
    cdef public ProposalLedger ledger
    cdef public object _metrics
    cdef public Histogram _proposal_batch
    cdef public RaftNode _node
    cdef public LogWriter _writer
    cdef public object _writable
    cdef public object _not_leader
    cdef public object _loop
    cdef object _new_future
    cdef public object _wake
    cdef public object _core
    cdef public object _storage
    cdef public bint open
    cdef public object propose_now

    @cython.locals(node=RaftNode, writer=LogWriter)
    cpdef check_writable(self)
    cpdef object enqueue_now(self, list payloads, bint many)
    @cython.locals(ledger=ProposalLedger, propose_now=object)
    cdef object _enqueue_now(self, list payloads, bytes command, bint many)
    cpdef object enqueue_command(self, object command)
    @cython.locals(ledger=ProposalLedger, batch=QueuedBatch, first=int64_t, node=RaftNode)
    cpdef propose_queued(self)
    @cython.locals(ledger=ProposalLedger)
    cpdef settle_replaced(self, object entries, object snapshot, bint leading, int64_t term)
