# cython: language_level=3
"""Index-table kernel: log index -> (segment, offset, term) for the write-ahead log and the
in-memory log, with the term searches Raft's replication needs.

Entries sit in three malloc'ed columns (uint64 offsets, uint64 terms, int32 segments) with a
head position, so releasing a prefix after a snapshot is O(1); the columns are compacted when
the released head passes half of the capacity and shrunk when they are mostly empty, so a
long-running log's table stays proportional to the entries it holds.

Argument rules (the pure-Python twin ``raftcore._index_py`` follows the same ones):

- an index argument is an integer in ``[0, 2**63 - 1]``; anything else is a ``ValueError``
  (a non-integer is a ``TypeError``); a log entry's index is at least 1 and at most
  ``2**63 - 2``, so ``last_index + 1`` always fits in a signed 64-bit integer;
- terms and offsets are integers in ``[0, 2**64 - 1]``, segments in the int32 range;
- arrays must be one-dimensional and hold integers (``TypeError`` for other dtypes).
  C-contiguous native uint64 arrays (int32 for segments) are read in place; anything else
  is converted first.

Pointers into the columns are only dereferenced after an explicit range check against
``_count``, so no function needs Cython's bounds checks (they do not apply to raw pointers).
"""

cimport cython
cimport numpy as cnp
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.number cimport PyNumber_Index
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.stdint cimport INT64_MAX, UINT64_MAX, int32_t, int64_t, uint64_t
from libc.string cimport memcpy, memmove

import operator

import numpy as np

from raftcore.errors import IndexLookupError

cnp.import_array()

IMPLEMENTATION = "compiled"

cdef object _U64_MAX = 0xFFFFFFFFFFFFFFFF
cdef object _I32_MIN = -(1 << 31)
cdef object _I32_MAX = (1 << 31) - 1
cdef Py_ssize_t _CAPACITY_MAX = 1 << 24
# no column may need more than this many slots (8 bytes each must fit in a Py_ssize_t)
cdef Py_ssize_t _SLOTS_MAX = PY_SSIZE_T_MAX // 16


cdef inline int64_t _index_arg(object value, str name) except -1:
    """An index argument as int64: TypeError for non-integers, ValueError outside [0, 2**63-1]."""
    cdef int overflow = 0
    cdef long long v
    if not PyLong_CheckExact(value):
        value = PyNumber_Index(value)
    v = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow == 0 and v >= 0:
        return v
    if overflow < 0 or (overflow == 0 and v < 0):
        raise ValueError(f"{name} must be >= 0, got {value}")
    raise ValueError(f"{name} must be <= 2**63 - 1, got {value}")


cdef int _u64_arg(object value, str name, uint64_t *out) except -1:
    if not PyLong_CheckExact(value):
        value = PyNumber_Index(value)
    if value < 0 or value > _U64_MAX:
        raise ValueError(f"{name} must be in [0, 2**64 - 1], got {value}")
    out[0] = value
    return 0


cdef object _convert(object values, str name, object lo, object hi, object dtype):
    """The slow path of _u64_array / _i32_array: check and convert anything else."""
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got {values.ndim} dimensions")
        kind = values.dtype.kind
        if kind == "i" or kind == "u":
            if values.size and (int(values.min()) < lo or int(values.max()) > hi):
                raise ValueError(f"{name} must hold values in [{lo}, {hi}]")
            return np.ascontiguousarray(values, dtype=dtype)
        if kind != "O":
            raise TypeError(f"{name} must hold integers, not {values.dtype}")
        values = values.tolist()
    else:
        values = list(values)
    out = [operator.index(v) for v in values]
    for v in out:
        if v < lo or v > hi:
            raise ValueError(f"{name} must hold values in [{lo}, {hi}], got {v}")
    return np.array(out, dtype=dtype)


cdef inline bint _is_plain(object values, bint unsigned, Py_ssize_t itemsize):
    """True for a 1-D, C-contiguous, aligned, native-order integer array of the wanted type."""
    cdef cnp.ndarray arr
    if not cnp.PyArray_Check(values):
        return False
    arr = <cnp.ndarray>values
    if cnp.PyArray_NDIM(arr) != 1 or cnp.PyArray_ITEMSIZE(arr) != itemsize:
        return False
    if not cnp.PyArray_ISCARRAY_RO(arr):
        return False
    if unsigned:
        return cnp.PyArray_ISUNSIGNED(arr)
    return cnp.PyArray_ISSIGNED(arr)


cdef inline cnp.ndarray _u64_array(object values, str name):
    if _is_plain(values, True, 8):
        return <cnp.ndarray>values
    return <cnp.ndarray>_convert(values, name, 0, _U64_MAX, np.uint64)


cdef inline cnp.ndarray _i32_array(object values, str name):
    if _is_plain(values, False, 4):
        return <cnp.ndarray>values
    return <cnp.ndarray>_convert(values, name, _I32_MIN, _I32_MAX, np.int32)


cdef Py_ssize_t _upper_bound(const uint64_t *a, Py_ssize_t n, uint64_t t) noexcept nogil:
    """Number of leading elements <= t of the non-decreasing a[0:n]."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = lo + ((hi - lo) >> 1)
        if a[mid] <= t:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef Py_ssize_t _lower_bound(const uint64_t *a, Py_ssize_t n, uint64_t t) noexcept nogil:
    """Number of leading elements < t of the non-decreasing a[0:n]."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = lo + ((hi - lo) >> 1)
        if a[mid] < t:
            lo = mid + 1
        else:
            hi = mid
    return lo


@cython.auto_pickle(False)
cdef class IndexTable:
    """Maps a contiguous range of log indexes [first_index, last_index] to (segment, offset, term).

    ``IndexTable(capacity=1024)``: ``capacity`` slots are allocated up front; the columns
    double when full and shrink back towards ``capacity`` when mostly empty.
    """

    def __cinit__(self):
        self._offsets = NULL
        self._terms = NULL
        self._segments = NULL
        self._head = 0
        self._count = 0
        self._capacity = 0
        self._capacity_min = 1
        self._high = 0
        self._high_before = 0
        self._first = 1
        self._prev_term = 0

    def __init__(self, capacity=1024):
        cdef Py_ssize_t cap
        capacity = operator.index(capacity)
        if capacity < 1 or capacity > _CAPACITY_MAX:
            raise ValueError(f"capacity must be in [1, {_CAPACITY_MAX}], got {capacity}")
        cap = capacity
        self._count = 0
        self._head = 0
        self._first = 1
        self._prev_term = 0
        self._capacity_min = cap
        if not self._reallocate(cap):
            raise MemoryError()

    def __dealloc__(self):
        PyMem_Free(self._offsets)
        PyMem_Free(self._terms)
        PyMem_Free(self._segments)

    # -- memory -------------------------------------------------------------------------------

    cdef bint _reallocate(self, Py_ssize_t capacity) noexcept:
        """Move the live entries to slot 0 of new columns of `capacity` (>= _count) slots.

        Returns False, leaving everything as it was, when memory cannot be had.
        """
        cdef uint64_t *offsets
        cdef uint64_t *terms
        cdef int32_t *segments
        if capacity < self._count or capacity > _SLOTS_MAX:
            return False
        offsets = <uint64_t *>PyMem_Malloc(<size_t>capacity * sizeof(uint64_t))
        terms = <uint64_t *>PyMem_Malloc(<size_t>capacity * sizeof(uint64_t))
        segments = <int32_t *>PyMem_Malloc(<size_t>capacity * sizeof(int32_t))
        if offsets == NULL or terms == NULL or segments == NULL:
            PyMem_Free(offsets)
            PyMem_Free(terms)
            PyMem_Free(segments)
            return False
        if self._count:
            memcpy(offsets, self._offsets + self._head, <size_t>self._count * sizeof(uint64_t))
            memcpy(terms, self._terms + self._head, <size_t>self._count * sizeof(uint64_t))
            memcpy(segments, self._segments + self._head,
                   <size_t>self._count * sizeof(int32_t))
        PyMem_Free(self._offsets)
        PyMem_Free(self._terms)
        PyMem_Free(self._segments)
        self._offsets = offsets
        self._terms = terms
        self._segments = segments
        self._capacity = capacity
        self._head = 0
        return True

    cdef void _compact(self) noexcept nogil:
        """Slide the live entries down to slot 0, keeping the capacity."""
        if self._head == 0:
            return
        if self._count:
            memmove(self._offsets, self._offsets + self._head,
                    <size_t>self._count * sizeof(uint64_t))
            memmove(self._terms, self._terms + self._head, <size_t>self._count * sizeof(uint64_t))
            memmove(self._segments, self._segments + self._head,
                    <size_t>self._count * sizeof(int32_t))
        self._head = 0

    cdef int _reserve(self, Py_ssize_t n) except -1:
        """Make room for n more entries after the live ones.

        Compacting happens only when the live entries and the new ones fill at most half of
        the columns, and growing at least doubles them, so after either the free tail is at
        least half the columns: the copying is amortised O(1) per appended entry.
        """
        cdef Py_ssize_t need, capacity
        if n > _SLOTS_MAX - self._count:
            raise MemoryError()
        need = self._count + n
        if self._head + need <= self._capacity:
            return 0
        if need <= self._capacity // 2:
            self._compact()
            return 0
        capacity = self._capacity if self._capacity > 0 else 1
        while capacity < need:
            capacity = capacity * 2 if capacity <= _SLOTS_MAX // 2 else _SLOTS_MAX
        if not self._reallocate(capacity):
            raise MemoryError()
        return 0

    cdef void _reclaim(self) noexcept:
        """After entries were dropped: shrink mostly-empty columns, compact a long-released head.

        Halving only while the entries fill at most an eighth leaves the shrunk columns at most
        a quarter full: growing again needs more appends than the shrink copied, and a table
        that swings between a few and a few more batches does not reallocate on every swing.

        Nor does one that fills and empties in cycles (a log compacted every N entries): the
        columns keep room for twice the most entries held in both of the last two cycles
        (between reclaims), so a burst after a quiet cycle is given back at once, and a
        cycle as large as the one before it keeps its columns. Before, every compaction gave
        the memory back and the next N appends doubled the columns from small again, a fresh
        allocation (and its page faults) each time: 7% of a leader's time at 2.7 million
        writes/s (three members on a 2-vCPU VM, 32 x 1,024 writes in flight).
        """
        cdef Py_ssize_t capacity = self._capacity
        cdef Py_ssize_t keep = self._capacity_min
        cdef Py_ssize_t steady = self._high if self._high < self._high_before \
            else self._high_before
        if steady > keep // 2:
            keep = steady * 2 if steady <= _SLOTS_MAX // 2 else _SLOTS_MAX
        self._high_before = self._high
        self._high = self._count
        while capacity // 2 >= keep and self._count <= capacity // 8:
            capacity //= 2
        if capacity != self._capacity and self._reallocate(capacity):
            return
        if self._head > self._capacity // 2:
            self._compact()

    # -- C-level interface --------------------------------------------------------------------

    cdef int c_append(self, int64_t first, const int32_t *segments, int32_t segment,
                      const uint64_t *offsets, uint64_t shift, const uint64_t *terms,
                      Py_ssize_t n) except -1:
        cdef Py_ssize_t k, at
        cdef int64_t expected = self._first + self._count
        cdef uint64_t last_term
        if first < 1:
            raise ValueError("first_index must be >= 1: log indexes start at 1")
        if n <= 0:
            return 0
        if first != expected:
            raise ValueError(f"first_index must be last_index + 1 = {expected}, got {first}")
        if n - 1 > INT64_MAX - 1 - first:
            raise ValueError("the batch would run past the largest log index, 2**63 - 2")
        # Raft thesis 3.6: a leader's log holds entries in order of the term they were created
        # in, so terms never decrease along the log.
        last_term = self._terms[self._head + self._count - 1] if self._count else self._prev_term
        if terms[0] < last_term:
            raise ValueError(f"term {terms[0]} at index {first} is below last_term {last_term}")
        for k in range(1, n):
            if terms[k] < terms[k - 1]:
                raise ValueError(
                    f"terms decrease at index {first + k}: {terms[k - 1]} then {terms[k]}")
        if shift:
            for k in range(n):
                if offsets[k] > UINT64_MAX - shift:
                    raise OverflowError(f"offset {offsets[k]} + {shift} of index {first + k} "
                                        "does not fit 64 bits")
        self._reserve(n)
        at = self._head + self._count
        if shift:
            for k in range(n):
                self._offsets[at + k] = offsets[k] + shift
        else:
            memcpy(self._offsets + at, offsets, <size_t>n * sizeof(uint64_t))
        memcpy(self._terms + at, terms, <size_t>n * sizeof(uint64_t))
        if segments != NULL:
            memcpy(self._segments + at, segments, <size_t>n * sizeof(int32_t))
        else:
            for k in range(n):
                self._segments[at + k] = segment
        self._count += n
        if self._count > self._high:
            self._high = self._count
        return 0

    cdef int c_append_batch(self, int64_t first, int32_t segment, object offsets,
                            uint64_t shift, object terms) except -1:
        cdef cnp.ndarray offs = _u64_array(offsets, "offsets")
        cdef cnp.ndarray tms = _u64_array(terms, "terms")
        cdef Py_ssize_t n = cnp.PyArray_DIM(tms, 0)
        if cnp.PyArray_DIM(offs, 0) != n + 1:
            raise ValueError(f"offsets has {cnp.PyArray_DIM(offs, 0)} boundaries, terms has "
                             f"{n} entries (a batch has one boundary more)")
        return self.c_append(first, NULL, segment, <const uint64_t *>cnp.PyArray_DATA(offs),
                             shift, <const uint64_t *>cnp.PyArray_DATA(tms), n)

    cdef int c_term_at(self, int64_t index, uint64_t *term) noexcept nogil:
        cdef int64_t p = index - self._first
        if p == -1:
            term[0] = self._prev_term
            return 0
        if p < 0 or p >= self._count:
            return -1
        term[0] = self._terms[self._head + p]
        return 0

    cdef int c_lookup(self, int64_t index, int32_t *segment, uint64_t *offset,
                      uint64_t *term) noexcept nogil:
        cdef int64_t p = index - self._first
        if p < 0 or p >= self._count:
            return -1
        p += self._head
        segment[0] = self._segments[p]
        offset[0] = self._offsets[p]
        term[0] = self._terms[p]
        return 0

    cdef object _lookup_error(self, int64_t index):
        return IndexLookupError(index, self._first, self._first + self._count - 1)

    cdef int _range(self, object lo, object hi, Py_ssize_t *start, Py_ssize_t *n) except -1:
        """Check [lo, hi) against the table; its first slot and length."""
        cdef int64_t a = _index_arg(lo, "lo")
        cdef int64_t b = _index_arg(hi, "hi")
        if a > b:
            raise ValueError(f"lo must be <= hi, got lo={a}, hi={b}")
        if a < self._first:
            raise self._lookup_error(a)
        if b > self._first + self._count:
            raise self._lookup_error(b - 1)
        start[0] = self._head + <Py_ssize_t>(a - self._first)
        n[0] = <Py_ssize_t>(b - a)
        return 0

    # -- properties ---------------------------------------------------------------------------

    @property
    def first_index(self):
        """The index of the first entry; when empty, the index the next append must start at."""
        return self._first

    @property
    def last_index(self):
        """The index of the last entry; first_index - 1 when empty."""
        return self._first + self._count - 1

    @property
    def last_term(self):
        """The term of last_index (the prev term recorded by reset/release when empty)."""
        if self._count:
            return self._terms[self._head + self._count - 1]
        return self._prev_term

    @property
    def nbytes(self):
        """Bytes held by the columns (allocated, not just live)."""
        return self._capacity * (2 * sizeof(uint64_t) + sizeof(int32_t))

    def __len__(self):
        return self._count

    def __repr__(self):
        return (f"IndexTable(first_index={self.first_index}, last_index={self.last_index}, "
                f"last_term={self.last_term})")

    # -- mutation -----------------------------------------------------------------------------

    def reset(self, next_index, prev_term=0):
        """Empty the table; the next append must start at next_index (>= 1).

        For a snapshot installed at next_index - 1 whose last entry has term prev_term.
        """
        cdef int64_t first = _index_arg(next_index, "next_index")
        cdef uint64_t term
        _u64_arg(prev_term, "prev_term", &term)
        if first < 1:
            raise ValueError("next_index must be >= 1: log indexes start at 1")
        if first == 1 and term != 0:
            raise ValueError("prev_term must be 0 when next_index is 1 (index 0 has term 0)")
        self._count = 0
        self._head = 0
        self._first = first
        self._prev_term = term
        self._reclaim()

    def append(self, first_index, segment, offsets, terms):
        """Append entries first_index, first_index + 1, ... (first_index == last_index + 1).

        segment: one segment for every entry (an integer) or one per entry (int32 values);
        offsets, terms: uint64 values, as many as there are entries. Terms must not decrease,
        and the first must be >= last_term. An empty batch does nothing.
        """
        cdef int64_t first = _index_arg(first_index, "first_index")
        cdef object seg_values = None
        cdef cnp.ndarray seg_array = None
        cdef cnp.ndarray offs
        cdef cnp.ndarray tms
        cdef int32_t seg = 0
        cdef Py_ssize_t n
        if first < 1:
            raise ValueError("first_index must be >= 1: log indexes start at 1")
        # Every conversion (which may run arbitrary __index__ / __iter__ code) happens before
        # the table's state is read.
        if PyLong_CheckExact(segment) or (not cnp.PyArray_Check(segment)
                                          and hasattr(type(segment), "__index__")):
            seg_values = operator.index(segment)
            if seg_values < _I32_MIN or seg_values > _I32_MAX:
                raise ValueError(f"segment must be in the int32 range, got {seg_values}")
            seg = seg_values
        else:
            seg_array = _i32_array(segment, "segment")
        offs = _u64_array(offsets, "offsets")
        tms = _u64_array(terms, "terms")
        n = cnp.PyArray_DIM(tms, 0)
        if cnp.PyArray_DIM(offs, 0) != n:
            raise ValueError(f"offsets has {cnp.PyArray_DIM(offs, 0)} entries, terms has {n}")
        if seg_array is not None and cnp.PyArray_DIM(seg_array, 0) != n:
            raise ValueError(f"segment has {cnp.PyArray_DIM(seg_array, 0)} entries, terms has {n}")
        if n == 0:
            return
        self.c_append(first,
                      <const int32_t *>cnp.PyArray_DATA(seg_array) if seg_array is not None
                      else NULL,
                      seg,
                      <const uint64_t *>cnp.PyArray_DATA(offs), 0,
                      <const uint64_t *>cnp.PyArray_DATA(tms),
                      n)

    def truncate_suffix(self, index):
        """Drop every entry at or after index, which must be in [first_index, last_index + 1].

        A follower does this on a conflict (Raft paper, figure 2, AppendEntries step 3).
        """
        cdef int64_t i = _index_arg(index, "index")
        if i < self._first or i > self._first + self._count:
            raise self._lookup_error(i)
        self._count = <Py_ssize_t>(i - self._first)
        self._reclaim()

    def release_prefix(self, index, prev_term=None):
        """Drop every entry at or before index, which a snapshot now covers (Raft thesis 5.1).

        The term of index becomes the prev term (term_at(first_index - 1)). When index is
        beyond last_index the table becomes empty, starting at index + 1, and prev_term (the
        snapshot's term, >= last_term) is required; otherwise prev_term, if given, must equal
        the term at index. An index below first_index - 1 is already released: nothing happens.
        """
        cdef int64_t i = _index_arg(index, "index")
        cdef uint64_t pt = 0
        cdef bint has_pt = prev_term is not None
        cdef uint64_t term, last_term
        cdef int64_t last
        if has_pt:
            _u64_arg(prev_term, "prev_term", &pt)
        if i < self._first - 1:
            return
        last = self._first + self._count - 1
        if i <= last:
            self.c_term_at(i, &term)
            if has_pt and pt != term:
                raise ValueError(f"prev_term {pt} differs from the term at index {i}, {term}")
            self._head += <Py_ssize_t>(i - self._first + 1)
            self._count -= <Py_ssize_t>(i - self._first + 1)
            self._first = i + 1
            self._prev_term = term
            self._reclaim()
            return
        last_term = self._terms[self._head + self._count - 1] if self._count else self._prev_term
        if not has_pt:
            raise ValueError(f"prev_term is required to release past last_index {last}")
        if pt < last_term:
            raise ValueError(f"prev_term {pt} is below last_term {last_term}")
        if i >= INT64_MAX:
            raise ValueError("index must be <= 2**63 - 2 (the next index must fit)")
        self._count = 0
        self._head = 0
        self._first = i + 1
        self._prev_term = pt
        self._reclaim()

    # -- queries ------------------------------------------------------------------------------

    def lookup(self, index):
        """(segment, offset, term) of index; IndexLookupError outside [first_index, last_index]."""
        cdef int64_t i = _index_arg(index, "index")
        cdef int64_t p = i - self._first
        if p < 0 or p >= self._count:
            raise self._lookup_error(i)
        p += self._head
        return (self._segments[p], self._offsets[p], self._terms[p])

    cpdef term_at(self, index):
        """The term of index; for first_index - 1, the prev term (the snapshot's)."""
        cdef int64_t i = _index_arg(index, "index")
        cdef int64_t p = i - self._first
        if p == -1:
            return self._prev_term
        if p < 0 or p >= self._count:
            raise self._lookup_error(i)
        return self._terms[self._head + p]

    cdef object _copy_range(self, object lo, object hi, const void *column, size_t itemsize,
                            int typenum):
        """A numpy copy of one column's values for indexes [lo, hi)."""
        cdef Py_ssize_t start, n
        cdef cnp.npy_intp dim
        self._range(lo, hi, &start, &n)
        dim = n
        out = cnp.PyArray_SimpleNew(1, &dim, typenum)
        if n:
            memcpy(cnp.PyArray_DATA(<cnp.ndarray>out),
                   <const char *>column + <size_t>start * itemsize, <size_t>n * itemsize)
        return out

    def terms(self, lo, hi):
        """A uint64 copy of the terms of indexes [lo, hi)."""
        return self._copy_range(lo, hi, self._terms, sizeof(uint64_t), cnp.NPY_UINT64)

    def offsets(self, lo, hi):
        """A uint64 copy of the offsets of indexes [lo, hi)."""
        return self._copy_range(lo, hi, self._offsets, sizeof(uint64_t), cnp.NPY_UINT64)

    def segments(self, lo, hi):
        """An int32 copy of the segments of indexes [lo, hi)."""
        return self._copy_range(lo, hi, self._segments, sizeof(int32_t), cnp.NPY_INT32)

    def find_conflict(self, first_index, terms):
        """The first index of [first_index, first_index + len(terms)) that this table lacks or
        holds with another term; 0 when every entry is present with an equal term.

        The follower's check in AppendEntries (Raft paper, figure 2, receiver step 3). Indexes
        below first_index are inside a snapshot, hence committed, hence the same in every log
        that could be sending them (Log Matching, Leader Completeness): they count as matching.
        """
        cdef int64_t fi = _index_arg(first_index, "first_index")
        cdef cnp.ndarray tms
        cdef const uint64_t *theirs
        cdef const uint64_t *ours
        cdef Py_ssize_t n, k0, m, j
        cdef int64_t avail
        if fi < 1:
            raise ValueError("first_index must be >= 1: log indexes start at 1")
        tms = _u64_array(terms, "terms")
        n = cnp.PyArray_DIM(tms, 0)
        if n == 0:
            return 0
        if n - 1 > INT64_MAX - fi:
            raise ValueError("the batch would run past the largest index, 2**63 - 1")
        theirs = <const uint64_t *>cnp.PyArray_DATA(tms)
        k0 = 0
        if fi < self._first:
            if self._first - fi >= n:
                return 0
            k0 = <Py_ssize_t>(self._first - fi)
        # from here on index fi + k0 >= first_index; the table holds `avail` entries from it
        avail = self._first + self._count - (fi + k0)
        m = n - k0
        if avail < m:
            m = <Py_ssize_t>avail if avail > 0 else 0
        if m > 0:
            ours = self._terms + self._head + <Py_ssize_t>(fi + k0 - self._first)
        for j in range(m):
            if ours[j] != theirs[k0 + j]:
                return fi + k0 + j
        if k0 + m < n:
            return fi + k0 + m
        return 0

    def last_index_at_or_below_term(self, index, term):
        """The largest i <= index whose term is <= term: where a log known to hold an entry
        (index, term) can be assumed to match this one (fast backtracking, Raft thesis 5.3).

        index is clamped to last_index. first_index - 1 when no entry qualifies; an index
        below first_index is returned as is (a snapshot covers it, so it matches).
        """
        cdef int64_t i = _index_arg(index, "index")
        cdef uint64_t t
        cdef int64_t hi
        _u64_arg(term, "term", &t)
        if i < self._first:
            return i
        hi = self._first + self._count - 1
        if i < hi:
            hi = i
        if hi < self._first:
            return self._first - 1
        return self._first - 1 + _upper_bound(self._terms + self._head,
                                              <Py_ssize_t>(hi - self._first + 1), t)

    def first_index_of_term(self, term, hi=None):
        """The smallest index below hi (default: all of the table) whose term is term; 0 if
        the table has no such entry."""
        cdef uint64_t t
        cdef int64_t h = -1
        cdef Py_ssize_t k, p
        _u64_arg(term, "term", &t)
        if hi is not None:
            h = _index_arg(hi, "hi")
        if h < 0 or h > self._first + self._count:
            h = self._first + self._count
        if h <= self._first:
            return 0
        k = <Py_ssize_t>(h - self._first)
        p = _lower_bound(self._terms + self._head, k, t)
        if p < k and self._terms[self._head + p] == t:
            return self._first + p
        return 0
