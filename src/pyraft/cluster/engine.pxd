# Types for the compiled build of engine.py (Cython pure-Python mode: the .py is the source).
# The parts a Ready passes through are extension classes: each step is a C call on a typed
# field, and a Ready's and a message's fields are read directly.
cimport cython
from libc.stdint cimport int64_t

from pyraft.cluster.ledger cimport ProposalLedger
from pyraft.cluster.persist cimport LogWriter, Written
from pyraft.cluster.waiters cimport Waiters
from pyraft.cluster.writes cimport Wake, Writes
from pyraft.core.log cimport RaftLog
from pyraft.core.messages cimport Message, Ready
from pyraft.core.raft cimport RaftNode
from pyraft.core.view cimport CoreView
from pyraft.instruments cimport Cell, Counter, Histogram
from raftcore._clock cimport perf_counter


cpdef Cell peer_cell(dict cells, Counter counter, int64_t peer)


@cython.final
cdef class Engine:
    cdef public int64_t id
    cdef public RaftNode core
    cdef public CoreView view
    cdef public Writes writes
    cdef public ProposalLedger ledger
    cdef public LogWriter writer
    cdef public Wake wake
    cdef public object transport
    cdef public object send_messages
    cdef public object metrics
    cdef public object state_machine
    cdef public Waiters waiters
    cdef public object leadership
    cdef public object peers
    cdef public object configuration_seen
    cdef public object loop
    cdef public object _fatal
    cdef public Counter _sent
    cdef public Counter _received
    cdef dict _sent_cells
    cdef dict _received_cells
    cdef public Histogram _ready_seconds
    cdef public Cell _term
    cdef public Cell _commit_index
    cdef public Cell _applied_index
    cdef public int64_t applied_index
    cdef public bint running
    cdef public bint failed
    cdef public bint persisting
    cdef public object pipeline
    cdef public object pipeline_fed
    cdef public object pipeline_empty
    cdef public bint pipelined
    cdef public bint batched
    cdef public bint stepped
    cdef public bint parked
    cdef public object handoff
    cdef public bint busy

    @cython.locals(cell=Cell)
    cpdef on_message(self, Message message)
    cpdef delivered(self)
    @cython.locals(core=RaftNode, writer=LogWriter, rd=Ready)
    cpdef drain(self)
    cpdef bint propose_now(self)
    cpdef stop_waiting(self)
    @cython.locals(started=double, written=Written)
    cpdef begin_ready(self, Ready rd)
    @cython.locals(core=RaftNode)
    cpdef ready_sent(self, Ready rd)
    @cython.locals(busy=bint)
    cpdef ready_done(self, Ready rd, double started)
    @cython.locals(core=RaftNode)
    cdef _ready_done(self, Ready rd, double started)
    @cython.locals(cells=dict, cell=Cell, message=Message)
    cpdef send_now(self, list messages)
    @cython.locals(ledger=ProposalLedger)
    cpdef apply(self, Ready rd)
    @cython.locals(raft_log=RaftLog)
    cpdef resolve_waiters(self)
