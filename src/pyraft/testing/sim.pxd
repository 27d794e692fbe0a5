# Types for the compiled build of sim.py (Cython pure-Python mode: the .py is the source).
# The simulated cluster and its members become extension classes: every attribute sim.py sets
# is declared here (an extension class has no __dict__); ticks, sequence numbers and Ready
# numbers are signed 64-bit integers. The harness runs every step, so untyped it would cost
# generic attribute lookups where CPython has inline caches (pyraft._compiled).
cimport cython
from libc.stdint cimport int64_t

from pyraft.core.log cimport RaftLog
from pyraft.core.messages cimport Message, Ready
from pyraft.core.raft cimport RaftNode


cdef class Simulation


@cython.locals(k=int, r=int64_t)
cpdef int64_t _below(object rng, int64_t n) except -1


@cython.final
cdef class SimNode:
    cdef public Simulation sim
    cdef public int64_t id
    cdef public object storage
    cdef public RaftNode core
    cdef public object sm
    cdef public object pending
    cdef public int64_t durable_number
    cdef public int64_t commit_seen
    cdef public dict proposals
    cdef public dict reads
    cdef public list ready_reads
    cdef public object checked_term

    @cython.locals(core=RaftNode, rd=Ready, m=Message, delay=int64_t)
    cpdef handle_ready(self)
    @cython.locals(done=list, rd=Ready)
    cpdef finish_due(self)
    @cython.locals(m=Message)
    cpdef finish_persist(self, Ready rd)
    @cython.locals(keep=list)
    cpdef serve_reads(self)
    @cython.locals(index=int64_t)
    cpdef maybe_snapshot(self)


@cython.final
cdef class Simulation:
    cdef public int64_t seed
    cdef public object config
    cdef public object rng
    cdef public int64_t now
    cdef public object active_faults
    cdef public list members
    cdef public object configuration
    cdef public bint fresh_start_guard
    cdef public set forgetful
    cdef public bint membership_changed
    cdef public int64_t append_bytes_max
    cdef public dict storages
    cdef public dict received
    cdef public dict nodes
    cdef public dict restart_at
    cdef public list queue
    cdef public int64_t seq
    cdef public set blocked
    cdef public int64_t heal_at
    cdef public object trace
    cdef public list leadership_lost
    cdef public dict leaders
    cdef public dict applied
    cdef public dict acknowledged
    cdef public list ops
    cdef public dict client_busy
    cdef public int64_t next_value
    cdef public object applied_log
    cdef public object recorder
    cdef public dict matching_cache

    cpdef SimNode live(self, int64_t member)
    @cython.locals(delay=int64_t, copies=int)
    cpdef send(self, Message m)
    @cython.locals(m=Message, node=SimNode)
    cpdef deliver(self)
    @cython.locals(sender=SimNode)
    cpdef _report_snapshot(self, Message m, bint ok)
    @cython.locals(node=SimNode)
    cpdef inject_faults(self)
    @cython.locals(node=SimNode, best=int64_t, best_term=int64_t)
    cpdef int64_t current_leader(self) except? -1
    cpdef run_clients(self)
    cpdef complete(self, object op_id, object result)
    cpdef check_apply(self, object member, object index, object term, object payload)
    @cython.locals(node=SimNode, core=RaftNode)
    cpdef check_step(self)
    cpdef check_ready_durable(self, Message m, SimNode node, int64_t ready)
    cpdef check_persisted_before_send(self, Message m)
    cpdef check_leader_counts_durable(self, int64_t member)
    cpdef check_leader_completeness(self, int64_t member)
    @cython.locals(node=SimNode, log=RaftLog, lo=int64_t, hi=int64_t, lo_a=int64_t,
                   lo_b=int64_t, i=Py_ssize_t)
    cpdef check_log_matching(self)
    @cython.locals(node=SimNode)
    cpdef step_once(self)
