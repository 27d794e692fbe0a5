# Types for the compiled build of codec.py (Cython pure-Python mode: the .py is the source).
# The encoder reads a Message's fields straight from the extension object (messages.pxd)
# instead of through generic attribute lookups; the decoder checks the fixed header as C
# integers and builds the Message with messages.wire_message, a C call.
cimport cython
from libc.stdint cimport uint64_t

from pyraft.core.messages cimport Message, wire_message
from raftcore._framing cimport EntryBatch as CEntryBatch
from raftcore._framing cimport (
    MessageHead,
    decode_entries_at,
    frame_header,
    pack_message_head,
    read_message_head,
)


@cython.locals(msg=Message, after=object, entries=CEntryBatch, context_length=Py_ssize_t,
               entries_length=Py_ssize_t, chunk_length=Py_ssize_t, size=Py_ssize_t)
cpdef list encode_message(object message, object frame_bytes_max=*)


# decoding: the fixed header's fields are C integers (the range and flag checks are C
# operations); the Message is built from them by messages.wire_message (C fields set directly)
cdef int _FLAG_REJECT, _FLAG_TRANSFER, _FLAG_SNAPSHOT_DONE, _FLAG_FRESH, _FLAGS_KNOWN
cdef Py_ssize_t _BODY_SIZE
cdef dict _TYPE_BY_CODE
@cython.locals(size=Py_ssize_t, version=int, code=int, flags=int, reserved=int,
               context_length=Py_ssize_t, entries_length=Py_ssize_t, chunk_length=Py_ssize_t,
               src=uint64_t, dst=uint64_t, term=uint64_t, log_term=uint64_t, index=uint64_t,
               commit=uint64_t, reject_hint=uint64_t, hint_term=uint64_t,
               snapshot_offset=uint64_t, pos=Py_ssize_t, head=MessageHead)
cpdef object decode_body(object body)
