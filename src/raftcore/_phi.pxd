# C-level interface of the phi-accrual failure detector kernel, for other kernels to cimport.

cdef extern from "rc_phi.h":
    ctypedef struct rc_phi_window:
        double *intervals_ms
        size_t capacity
        size_t count
        size_t next
        size_t since_rebuild
        double shift_ms
        double sum_ms
        double sum_squares_ms2

    void rc_phi_window_init(rc_phi_window *w, double *storage, size_t capacity,
                            double shift_ms) noexcept nogil
    void rc_phi_window_clear(rc_phi_window *w, double shift_ms) noexcept nogil
    void rc_phi_window_push(rc_phi_window *w, double interval_ms) noexcept nogil
    double rc_phi_window_mean(const rc_phi_window *w) noexcept nogil
    double rc_phi_window_std(const rc_phi_window *w) noexcept nogil
    double rc_phi_value(double delta_ms, double mean_ms, double std_ms) noexcept nogil


cdef class PhiAccrualDetector:
    # the last `window_size` inter-arrival intervals and their running sums; its storage is
    # NULL until __init__ has run, and owned (freed in __dealloc__) afterwards
    cdef rc_phi_window _window
    # constructor parameters, validated: 2 <= window_size <= WINDOW_SIZE_MAX, the three
    # durations finite, min_std_deviation_ms > 0, acceptable_heartbeat_pause_ms >= 0,
    # first_heartbeat_estimate_ms > 0
    cdef Py_ssize_t _window_size
    cdef double _min_std_deviation_ms
    cdef double _acceptable_heartbeat_pause_ms
    cdef double _first_heartbeat_estimate_ms
    # whether a heartbeat arrived since construction or reset(); when false the window is empty
    cdef bint _has_heartbeat
    # time of the latest heartbeat (meaningful only when _has_heartbeat); never decreases
    cdef double _last_heartbeat_ms

    cpdef void heartbeat(self, double now_ms) except *
    cpdef double phi(self, double now_ms) except -1.0
    cpdef bint is_available(self, double now_ms, double threshold=*) except -1
    cpdef void reset(self) except *
