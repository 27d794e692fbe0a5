# cython: language_level=3
"""CRC32C (Castagnoli) kernel: hardware instructions where the CPU has them, tables elsewhere.

The implementation is chosen once, when this module is imported; ``crc32c_implementation()``
names it ("sse4.2", "armv8" or "table").
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t


cdef extern from "rc_crc32c.h":
    void rc_crc32c_init(int force_table)
    uint32_t rc_crc32c_update(uint32_t crc, const unsigned char *p, size_t n) nogil
    uint32_t rc_crc32c_table_update(uint32_t crc, const unsigned char *p, size_t n) nogil
    const char *rc_crc_impl_name


rc_crc32c_init(0)

cdef uint32_t crc32c_update(uint32_t crc, const unsigned char *data, size_t size) noexcept nogil:
    return rc_crc32c_update(crc, data, size)


cdef uint32_t crc32c_span(uint32_t crc, const unsigned char *data, size_t size) noexcept:
    """``crc32c_update`` for a caller holding the GIL: released for spans of
    ``NOGIL_BYTES_MIN`` or more, so that other threads run meanwhile."""
    if size >= <size_t>NOGIL_BYTES_MIN:
        with nogil:
            crc = rc_crc32c_update(crc, data, size)
        return crc
    return rc_crc32c_update(crc, data, size)


def crc32c(data, uint32_t value=0):
    """Return the CRC32C of ``data`` (any contiguous buffer), continuing from ``value``.

    ``crc32c(b, crc32c(a)) == crc32c(a + b)``.
    """
    cdef Py_buffer view
    cdef uint32_t crc
    if type(data) is bytes:
        return rc_crc32c_update(value, <const unsigned char *>PyBytes_AS_STRING(data),
                                <size_t>PyBytes_GET_SIZE(data))
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        crc = crc32c_span(value, <const unsigned char *>view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)
    return crc


def crc32c_portable(data, uint32_t value=0):
    """The table-driven C implementation, whatever the CPU offers (tests compare the two)."""
    cdef Py_buffer view
    cdef uint32_t crc
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        crc = rc_crc32c_table_update(value, <const unsigned char *>view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)
    return crc


def crc32c_implementation():
    """Name the implementation chosen at import: "sse4.2", "armv8" or "table"."""
    return (<bytes>rc_crc_impl_name).decode("ascii")


IMPLEMENTATION = "compiled"

cdef extern from "rc_build.h":
    int RAFTCORE_PROFILE_GUIDED

#: True when the extensions were compiled with a training run's profile (RAFTCORE_PGO=1)
PROFILE_GUIDED = bool(RAFTCORE_PROFILE_GUIDED)
