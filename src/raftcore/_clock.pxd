# C-level interface of the clock kernel, for compiled modules to cimport.

cpdef double perf_counter() noexcept
