# Types for the compiled build of codec.py (Cython pure-Python mode: the .py is the source).
# The encoder reads a Message's fields straight from the extension object (messages.pxd)
# instead of through generic attribute lookups; everything else stays Python objects.
cimport cython

from pyraft.core.messages cimport Message


@cython.locals(msg=Message, after=object, context_length=Py_ssize_t, entries_length=Py_ssize_t,
               chunk_length=Py_ssize_t, size=Py_ssize_t)
cpdef list encode_message(object message, object frame_bytes_max=*)
