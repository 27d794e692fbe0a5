# C-level interface of the CRC32C kernel, for other kernels to cimport.
from libc.stdint cimport uint32_t

# Work on a buffer at least this large runs with the GIL released (a CRC, a scan, a write):
# below it, releasing and taking the GIL back costs more than the work lets other threads win.
cdef enum:
    NOGIL_BYTES_MIN = 65536

cdef uint32_t crc32c_update(uint32_t crc, const unsigned char *data, size_t size) noexcept nogil
# the same for a caller holding the GIL: released while a span of 64 KiB or more is summed
cdef uint32_t crc32c_span(uint32_t crc, const unsigned char *data, size_t size) noexcept
