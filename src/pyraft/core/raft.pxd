# Types for the compiled build of raft.py (Cython pure-Python mode: the .py is the source).
# Every attribute RaftNode sets is declared here (an extension class has no __dict__); terms,
# indexes, ids and tick counts are signed 64-bit integers.
cimport cython
from libc.stdint cimport int64_t

from pyraft.core.confhistory cimport ConfigurationHistory
from pyraft.core.log cimport RaftLog
from pyraft.core.membership cimport majority_index
from pyraft.core.messages cimport HardState, Message, Ready, wire_message
from pyraft.core.progress cimport Progress
from pyraft.core.warmup cimport Warmup
from raftcore._framing cimport EntryBatch as CEntryBatch


@cython.final
cdef class RaftNode:
    cdef public object options
    cdef public int64_t id
    cdef public object rng
    cdef public RaftLog log
    cdef public int64_t term
    cdef public int64_t vote
    cdef public int64_t lead
    cdef public object role
    cdef public ConfigurationHistory _history
    cdef public object configuration
    cdef public dict progress
    cdef list _others
    cdef list _voter_progress
    cdef object _voters_of
    cdef bint _voter_self
    cdef Progress _own_progress
    cdef public dict votes
    cdef public int64_t ticks
    cdef public int64_t election_elapsed
    cdef public int64_t heartbeat_elapsed
    cdef public int64_t randomized_election_timeout
    cdef public int64_t lead_transferee
    cdef public int64_t pending_conf_index
    cdef public int64_t uncommitted_bytes
    cdef public object _uncommitted_batches
    cdef public Warmup _warmup
    cdef public object _failures
    cdef public list events
    cdef public object _snapshot_receiving
    cdef public list _snapshot_chunks
    cdef public object _reads
    cdef public dict _commit_sent
    cdef public bint _commit_unsent
    cdef public list read_states
    cdef public list _messages
    cdef public int64_t _ready_number
    cdef public int64_t _persisted_number
    cdef public list _unpersisted
    cdef public int64_t _soft_lead
    cdef public object _soft_role
    cdef public int64_t _hard_term
    cdef public int64_t _hard_vote
    cdef public int64_t _hard_commit
    cdef public int64_t _ready_pipeline_max
    cdef public int64_t _append_bytes_max
    cdef public int64_t _apply_bytes_max
    cdef public int64_t _term_start
    cdef public bint fresh
    cdef public set _fresh_votes
    cdef public object _own_info
    cdef public int64_t _info_sent_tick
    cdef public bint _resigning
    cdef public list _leadership_lost
    cdef public object leadership_lost
    cdef public object _tick

    cpdef step(self, Message m)
    @cython.locals(last=int64_t, first=int64_t, bound=int64_t, batch=CEntryBatch)
    cpdef tuple propose(self, object payloads, int kind=*)
    cpdef bint has_ready(self) except -1
    cpdef bint _state_changed(self) except -1
    cpdef bint _hard_changed(self) except -1
    cpdef bint _soft_changed(self) except -1
    @cython.locals(rd=Ready, m=Message, term=int64_t, last=CEntryBatch)
    cpdef Ready ready(self)
    cpdef list take_leader_traffic(self)
    cpdef advance(self, Ready rd)
    cpdef on_persist_ready(self, int64_t number)
    @cython.locals(log=RaftLog, snapshot_index=int64_t, last_index=int64_t, last_term=int64_t,
                   pending=list, done=Py_ssize_t, ready_number=int64_t)
    cpdef _stable_to(self, int64_t number)
    @cython.locals(pr=Progress)
    cpdef _count_self(self)
    @cython.locals(last=CEntryBatch)
    cpdef advance_apply(self, Ready rd)
    @cython.locals(pr=Progress, oldest=object, last=int64_t)
    cpdef _step_as_role(self, Message m)
    cpdef _step_leader(self, Message m)
    cpdef _step_follower(self, Message m)
    cpdef _step_candidate(self, Message m)
    @cython.locals(me=Progress)
    cpdef _append_as_leader(self, CEntryBatch batch)
    cpdef _after_commit(self)
    cpdef _maybe_promote(self)
    cpdef _release_reads_waiting_for_commit(self)
    @cython.locals(member=int64_t)
    cpdef _broadcast_append(self, bint send_if_empty=*)
    cpdef _progress_changed(self)
    @cython.locals(pr=Progress, prev=int64_t, commit=int64_t, log=RaftLog, entries=CEntryBatch)
    cpdef bint _send_append(self, int64_t to, bint send_if_empty=*) except -1
    @cython.locals(hint=int64_t)
    cpdef _handle_append_response(self, Message m, Progress pr)
    @cython.locals(index=int64_t)
    cpdef bint _maybe_commit(self) except -1
    @cython.locals(voters=list, count=Py_ssize_t, first=Progress, second=Progress,
                   third=Progress, a=int64_t, b=int64_t, c=int64_t)
    cpdef int64_t _quorum_match(self) except? -1
    @cython.locals(progress=dict)
    cpdef _track_voters(self)
    cpdef bint _in_own_term(self, int64_t index) except -1
    @cython.locals(pr=Progress, member=int64_t)
    cpdef _broadcast_heartbeat(self, object context)
    @cython.locals(before=int64_t, hint=int64_t, entries=CEntryBatch)
    cpdef _handle_append(self, Message m)
    cpdef _after_append(self, int64_t from_index, CEntryBatch entries)
    cpdef _handle_heartbeat(self, Message m)
    cpdef _maybe_end_fresh(self)
    cpdef HardState _hard_state(self)


# the enum members of raft.py's module constants (C globals in the compiled build)
cdef object _T_APPEND
cdef object _T_APPEND_RESPONSE
cdef object _T_CHECK_QUORUM
cdef object _T_HEARTBEAT
cdef object _T_HEARTBEAT_RESPONSE
cdef object _T_HUP
cdef object _T_MEMBER_INFO
cdef object _T_PRE_VOTE
cdef object _T_PRE_VOTE_RESPONSE
cdef object _T_READ_INDEX
cdef object _T_READ_INDEX_RESPONSE
cdef object _T_SNAPSHOT
cdef object _T_SNAPSHOT_RESPONSE
cdef object _T_SNAPSHOT_STATUS
cdef object _T_TIMEOUT_NOW
cdef object _T_TRANSFER_LEADER
cdef object _T_VOTE
cdef object _T_VOTE_RESPONSE
cdef object _R_CANDIDATE
cdef object _R_FOLLOWER
cdef object _R_LEADER
cdef object _R_PRE_CANDIDATE
cdef Progress _NO_PROGRESS
cdef object _P_PROBE
cdef object _P_REPLICATE
cdef object _P_SNAPSHOT
