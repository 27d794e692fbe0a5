# Types for the compiled build of messages.py (Cython pure-Python mode: the .py is the source).
cimport cython
from libc.stdint cimport int64_t


@cython.final
cdef class Message:
    cdef public object type
    cdef public int64_t src
    cdef public int64_t dst
    cdef public int64_t term
    cdef public int64_t log_term
    cdef public int64_t index
    cdef public int64_t commit
    cdef public object entries
    cdef public bint reject
    cdef public int64_t reject_hint
    cdef public int64_t hint_term
    cdef public object context
    cdef public object snapshot
    cdef public bint transfer
    cdef public int64_t snapshot_offset
    cdef public bint snapshot_done
    cdef public bint fresh


# the new message typed: its fields are set as C fields, not through their descriptors
@cython.locals(message=Message)
cpdef Message wire_message(object type, int64_t src, int64_t dst, int64_t term,
                           int64_t log_term, int64_t index, int64_t commit, object entries,
                           bint reject, int64_t reject_hint, int64_t hint_term, object context,
                           object snapshot, bint transfer, int64_t snapshot_offset,
                           bint snapshot_done, bint fresh)


# a frozen dataclass in messages.py, an extension class here: built once per Ready that moves
# the commit index. Fields stay objects: HardState is also the storages' record, and their
# validation must see what they were given (a float, a bool, 2**64) to refuse it
@cython.final
cdef class HardState:
    cdef readonly object term
    cdef readonly object vote
    cdef readonly object commit


@cython.final
cdef class Ready:
    cdef public int64_t number
    cdef public object soft_state
    cdef public object hard_state
    cdef public object snapshot
    cdef public list snapshot_chunks
    cdef public list entries
    cdef public list committed
    cdef public list messages
    cdef public list persisted_messages
    cdef public list read_states
    cdef public list events
    cdef public list leadership_lost
    cdef public bint must_sync
