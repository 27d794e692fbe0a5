# Types for the compiled build of ledger.py (Cython pure-Python mode: the .py is the source).
# Every write passes through the ledger twice (enqueue, then applied): compiled, a Proposal is
# a C struct with 64-bit indexes and the per-write loops run on typed locals.
cimport cython
from libc.stdint cimport int64_t

from raftcore._framing cimport EntryBatch as CEntryBatch


cdef object _Future, _future_done, _future_set_result


@cython.final
cdef class Proposal:
    cdef public int64_t first
    cdef public int64_t last
    cdef public int64_t term
    cdef public object future
    cdef public bint many
    cdef public object results
    cdef public bint lost
    cdef public int64_t next


@cython.locals(proposal=Proposal)
cpdef Proposal _proposal(int64_t first, int64_t last, int64_t term, object future, bint many)


@cython.final
cdef class QueuedBatch:
    cdef public list items
    cdef public list payloads


@cython.locals(batch=QueuedBatch)
cpdef QueuedBatch _queued_batch(list items, list payloads)


@cython.final
cdef class ProposalLedger:
    cdef public int64_t queue_max
    cdef public str queue_full
    cdef public list _queue
    cdef public list _payloads
    cdef public int64_t queued
    cdef public list _space_waiters
    cdef public object proposals
    cdef public Py_ssize_t last_batch_writes

    cpdef bint has_room(self, Py_ssize_t count)
    @cython.locals(count=Py_ssize_t)
    cpdef enqueue(self, list payloads, object future, bint many)
    cpdef enqueue_command(self, bytes command, object future)
    @cython.locals(items=list, batch=QueuedBatch)
    cpdef QueuedBatch take_queue(self)
    cpdef wake_space_waiters(self)
    @cython.locals(oldest=Proposal)
    cpdef bint leads_term(self, int64_t term) except -1
    @cython.locals(proposals=object, index=int64_t, items=list, proposal=Proposal)
    cpdef proposed(self, QueuedBatch batch, int64_t first, int64_t term)
    @cython.locals(proposals=object, first=int64_t, last=int64_t, proposal=Proposal,
                   lo=Py_ssize_t, hi=Py_ssize_t, popleft=object, shared_term=int64_t,
                   term=int64_t)
    cpdef applied(self, CEntryBatch batch, object results)
