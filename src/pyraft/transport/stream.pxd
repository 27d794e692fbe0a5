# Types for the compiled build of stream.py (Cython pure-Python mode: the .py is the source).
# Every attribute each class sets is declared here (an extension class has no __dict__).
# Member ids stay Python integers: a member id is unsigned 64-bit, a Message's fields signed.
cimport cython
from libc.stdint cimport int64_t

from pyraft.core.messages cimport Message
from raftcore._framing cimport FrameDecoder


@cython.locals(left=Py_ssize_t)
cpdef list feed_frames(FrameDecoder decoder, object connection, object data)


@cython.final
cdef class TransportCounters:
    cdef public int64_t sent
    cdef public int64_t received
    cdef public int64_t dropped
    cdef public int64_t connections
    cdef public int64_t refused
    cdef public int64_t errors
    cdef public int64_t shed
    cdef public int64_t user_dropped


@cython.final
cdef class Hub:
    cdef public object member_id
    cdef public TransportCounters counters
    cdef public object frame_bytes_max
    cdef public object deliver
    cdef public object loop
    cdef public bint serving
    cdef public dict outboxes
    cdef public list dirty
    cdef public object handle
    cdef public bint sending
    cdef public object missed
    cdef public object delivered

    @cython.locals(msg=Message, outbox=Outbox, parts=list)
    cpdef int send(self, object message) except -1
    @cython.locals(result=int)
    cpdef send_all(self, list messages)
    cpdef flush(self)
    @cython.locals(outbox=Outbox, dirty=list)
    cpdef run(self)


@cython.final
cdef class Outbox:
    cdef public Hub hub
    cdef public list pending
    cdef public Py_ssize_t queued
    cdef public Py_ssize_t queued_max
    cdef public object wire
    cdef public bint scheduled
    cdef public bint accepting
    cdef public int64_t bytes_sent

    @cython.locals(hub=Hub)
    cpdef int put(self, list parts) except -1
    @cython.locals(queued=Py_ssize_t, size=Py_ssize_t, pending=list)
    cpdef flush(self)
    @cython.locals(dropped=Py_ssize_t)
    cpdef Py_ssize_t discard(self)


@cython.final
cdef class Inbox:
    cdef public Hub hub
    cdef public object connection
    cdef public object decoder
    cdef public object member
    cdef public int64_t bytes_received

    @cython.locals(frames=list, hub=Hub, received=Py_ssize_t, frame=tuple, message=Message)
    cpdef receive(self, object data)
