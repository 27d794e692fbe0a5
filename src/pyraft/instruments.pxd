# Types for the compiled build of instruments.py (Cython pure-Python mode: the .py is the
# source). Every field stays a Python object (the registry, the Prometheus text and the
# OpenTelemetry mirror read them as before); what is compiled is the recording itself.
cimport cython
from libc.stdint cimport int64_t


cdef class _Instrument:
    cdef public object name
    cdef public object help
    cdef public object labels
    cdef public bint pulled
    cdef public object otel
    cdef public bint otel_proxied
    cdef public object _proxy
    cdef public dict _proxy_fields
    cdef public dict otel_attributes
    cdef public dict _attribute_cache
    cdef object __weakref__  # the OpenTelemetry mirror keeps live instruments in a WeakSet


@cython.final
cdef class Cell:
    cdef public object value


cdef class _Values(_Instrument):
    cdef dict _values
    cdef dict _cells

    @cython.locals(cell=Cell)
    cpdef Cell cell(self, object labels=*)
    @cython.locals(cell=Cell)
    cpdef set(self, object value, object labels=*)
    @cython.locals(cell=Cell)
    cpdef value(self, object labels=*)


@cython.final
cdef class Counter(_Values):
    @cython.locals(cell=Cell, values=dict)
    cpdef inc(self, object amount=*, object labels=*)


@cython.final
cdef class Gauge(_Values):
    pass


@cython.final
cdef class _Series:
    cdef int64_t[::1] counts
    cdef public double total
    cdef public int64_t count

    cpdef list as_list(self)


@cython.final
cdef class Histogram(_Instrument):
    cdef public tuple buckets
    cdef double[::1] _bounds
    cdef dict _series
    cdef _Series _unlabelled

    @cython.locals(series=_Series, x=double, bounds="double[::1]", size=Py_ssize_t,
                   slot=Py_ssize_t, attributes=object)
    cpdef observe(self, double value, object labels=*)
    @cython.locals(series=_Series)
    cpdef count(self, object labels=*)
    @cython.locals(series=_Series)
    cpdef total(self, object labels=*)
