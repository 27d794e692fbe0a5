# C-level interface of the CRC32C kernel, for other kernels to cimport.
from libc.stdint cimport uint32_t

cdef uint32_t crc32c_update(uint32_t crc, const unsigned char *data, size_t size) noexcept nogil
# the same for a caller holding the GIL: released while a span of 64 KiB or more is summed
cdef uint32_t crc32c_span(uint32_t crc, const unsigned char *data, size_t size) noexcept
