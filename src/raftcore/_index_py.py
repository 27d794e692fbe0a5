"""Pure-Python twin of ``raftcore._index``: same API, results and exceptions; the test oracle.

Entries live in three ``array`` columns whose position 0 is ``first_index``. Releasing a
prefix deletes it from the front of the arrays (O(n), fine for an oracle); CPython's array
gives the memory back when it shrinks by more than a little, so ``nbytes`` stays bounded.

Argument rules shared with the compiled kernel (tests hold both to them):

- an index argument is an integer in ``[0, 2**63 - 1]``; anything else is a ``ValueError``
  (a non-integer is a ``TypeError``); a log entry's index is at least 1 and at most
  ``2**63 - 2``, so ``last_index + 1`` always fits in a signed 64-bit integer;
- terms and offsets are integers in ``[0, 2**64 - 1]``, segments in the int32 range;
- arrays must be one-dimensional and hold integers (``TypeError`` for other dtypes).
"""

from __future__ import annotations

import operator
import sys
from array import array
from bisect import bisect_left, bisect_right
from itertools import pairwise

import numpy as np

from raftcore.errors import IndexLookupError

__all__ = ["IndexTable", "IMPLEMENTATION"]

IMPLEMENTATION = "python"

_INDEX_MAX = (1 << 63) - 1  # largest index argument; the largest entry index is one less
_U64_MAX = (1 << 64) - 1
_I32_MIN = -(1 << 31)
_I32_MAX = (1 << 31) - 1
_CAPACITY_MAX = 1 << 24
_I32_CODE = next(code for code in "ihl" if array(code).itemsize == 4)


def _index_arg(value, name: str) -> int:
    v = operator.index(value)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    if v > _INDEX_MAX:
        raise ValueError(f"{name} must be <= 2**63 - 1, got {v}")
    return v


def _u64_arg(value, name: str) -> int:
    v = operator.index(value)
    if v < 0 or v > _U64_MAX:
        raise ValueError(f"{name} must be in [0, 2**64 - 1], got {v}")
    return v


def _int_list(values, name: str, lo: int, hi: int) -> list[int]:
    """``values`` (a 1-D integer ndarray or any iterable of integers) as a checked list."""
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got {values.ndim} dimensions")
        kind = values.dtype.kind
        if kind == "i" or kind == "u":
            if values.size and (int(values.min()) < lo or int(values.max()) > hi):
                raise ValueError(f"{name} must hold values in [{lo}, {hi}]")
            return values.tolist()
        if kind != "O":
            raise TypeError(f"{name} must hold integers, not {values.dtype}")
        values = values.tolist()
    else:
        values = list(values)
    out = [operator.index(v) for v in values]
    for v in out:
        if v < lo or v > hi:
            raise ValueError(f"{name} must hold values in [{lo}, {hi}], got {v}")
    return out


def _segment_arg(segment) -> int | list[int]:
    """One segment for the whole batch (an integer) or one per entry (a sequence)."""
    if not isinstance(segment, np.ndarray) and hasattr(type(segment), "__index__"):
        s = operator.index(segment)
        if s < _I32_MIN or s > _I32_MAX:
            raise ValueError(f"segment must be in the int32 range, got {s}")
        return s
    return _int_list(segment, "segment", _I32_MIN, _I32_MAX)


class IndexTable:
    """Maps a contiguous range of log indexes [first_index, last_index] to (segment, offset, term).

    State, with its invariants:
      _first      the index of position 0 of the columns (``first_index``), >= 1
      _prev_term  the term of ``_first - 1`` (the last entry covered by a snapshot, or 0 for
                  index 0); <= every term in the table
      _segments, _offsets, _terms
                  the columns, all of the same length; ``_terms`` is non-decreasing
    """

    __slots__ = ("_first", "_prev_term", "_segments", "_offsets", "_terms")

    def __init__(self, capacity: int = 1024) -> None:
        capacity = operator.index(capacity)
        if capacity < 1 or capacity > _CAPACITY_MAX:
            raise ValueError(f"capacity must be in [1, {_CAPACITY_MAX}], got {capacity}")
        self._first = 1
        self._prev_term = 0
        self._clear()

    def _clear(self) -> None:
        self._segments = array(_I32_CODE)
        self._offsets = array("Q")
        self._terms = array("Q")

    def _lookup_error(self, index: int) -> IndexLookupError:
        return IndexLookupError(index, self._first, self._first + len(self._terms) - 1)

    # -- properties ---------------------------------------------------------------------------

    @property
    def first_index(self) -> int:
        return self._first

    @property
    def last_index(self) -> int:
        return self._first + len(self._terms) - 1

    @property
    def last_term(self) -> int:
        return self._terms[-1] if self._terms else self._prev_term

    @property
    def nbytes(self) -> int:
        return sum(sys.getsizeof(a) for a in (self._segments, self._offsets, self._terms))

    def __len__(self) -> int:
        return len(self._terms)

    def __repr__(self) -> str:
        return (
            f"IndexTable(first_index={self.first_index}, last_index={self.last_index}, "
            f"last_term={self.last_term})"
        )

    # -- mutation -----------------------------------------------------------------------------

    def reset(self, next_index, prev_term=0) -> None:
        first = _index_arg(next_index, "next_index")
        term = _u64_arg(prev_term, "prev_term")
        if first < 1:
            raise ValueError("next_index must be >= 1: log indexes start at 1")
        if first == 1 and term != 0:
            raise ValueError("prev_term must be 0 when next_index is 1 (index 0 has term 0)")
        self._clear()
        self._first = first
        self._prev_term = term

    def append(self, first_index, segment, offsets, terms) -> None:
        first = _index_arg(first_index, "first_index")
        if first < 1:
            raise ValueError("first_index must be >= 1: log indexes start at 1")
        seg = _segment_arg(segment)
        offs = _int_list(offsets, "offsets", 0, _U64_MAX)
        tms = _int_list(terms, "terms", 0, _U64_MAX)
        n = len(tms)
        if len(offs) != n:
            raise ValueError(f"offsets has {len(offs)} entries, terms has {n}")
        if isinstance(seg, list) and len(seg) != n:
            raise ValueError(f"segment has {len(seg)} entries, terms has {n}")
        if n == 0:
            return
        last = self.last_index
        if first != last + 1:
            raise ValueError(f"first_index must be last_index + 1 = {last + 1}, got {first}")
        if n - 1 > _INDEX_MAX - 1 - first:
            raise ValueError("the batch would run past the largest log index, 2**63 - 2")
        # Raft thesis 3.6: a leader's log holds entries in order of the term they were created
        # in, so terms never decrease along the log.
        if tms[0] < self.last_term:
            raise ValueError(f"term {tms[0]} at index {first} is below last_term {self.last_term}")
        for k, (a, b) in enumerate(pairwise(tms)):
            if b < a:
                raise ValueError(f"terms decrease at index {first + k + 1}: {a} then {b}")
        self._segments.extend(seg if isinstance(seg, list) else [seg] * n)
        self._offsets.extend(offs)
        self._terms.extend(tms)

    def truncate_suffix(self, index) -> None:
        i = _index_arg(index, "index")
        if i < self._first or i > self.last_index + 1:
            raise self._lookup_error(i)
        p = i - self._first
        del self._segments[p:]
        del self._offsets[p:]
        del self._terms[p:]

    def release_prefix(self, index, prev_term=None) -> None:
        i = _index_arg(index, "index")
        pt = None if prev_term is None else _u64_arg(prev_term, "prev_term")
        first = self._first
        if i < first - 1:
            return  # already covered by an earlier snapshot
        if i <= self.last_index:
            term = self._prev_term if i == first - 1 else self._terms[i - first]
            if pt is not None and pt != term:
                raise ValueError(f"prev_term {pt} differs from the term at index {i}, {term}")
            k = i - first + 1
            del self._segments[:k]
            del self._offsets[:k]
            del self._terms[:k]
            self._first = i + 1
            self._prev_term = term
            return
        if pt is None:
            raise ValueError(f"prev_term is required to release past last_index {self.last_index}")
        if pt < self.last_term:
            raise ValueError(f"prev_term {pt} is below last_term {self.last_term}")
        if i >= _INDEX_MAX:
            raise ValueError("index must be <= 2**63 - 2 (the next index must fit)")
        self._clear()
        self._first = i + 1
        self._prev_term = pt

    # -- queries ------------------------------------------------------------------------------

    def lookup(self, index) -> tuple[int, int, int]:
        i = _index_arg(index, "index")
        p = i - self._first
        if p < 0 or p >= len(self._terms):
            raise self._lookup_error(i)
        return (self._segments[p], self._offsets[p], self._terms[p])

    def term_at(self, index) -> int:
        i = _index_arg(index, "index")
        p = i - self._first
        if p == -1:
            return self._prev_term
        if p < 0 or p >= len(self._terms):
            raise self._lookup_error(i)
        return self._terms[p]

    def _range(self, lo, hi) -> tuple[int, int]:
        a = _index_arg(lo, "lo")
        b = _index_arg(hi, "hi")
        if a > b:
            raise ValueError(f"lo must be <= hi, got lo={a}, hi={b}")
        if a < self._first:
            raise self._lookup_error(a)
        if b > self.last_index + 1:
            raise self._lookup_error(b - 1)
        return a - self._first, b - self._first

    def terms(self, lo, hi) -> np.ndarray:
        a, b = self._range(lo, hi)
        return np.array(self._terms[a:b], dtype=np.uint64)

    def offsets(self, lo, hi) -> np.ndarray:
        a, b = self._range(lo, hi)
        return np.array(self._offsets[a:b], dtype=np.uint64)

    def segments(self, lo, hi) -> np.ndarray:
        a, b = self._range(lo, hi)
        return np.array(self._segments[a:b], dtype=np.int32)

    def find_conflict(self, first_index, terms) -> int:
        fi = _index_arg(first_index, "first_index")
        if fi < 1:
            raise ValueError("first_index must be >= 1: log indexes start at 1")
        tms = _int_list(terms, "terms", 0, _U64_MAX)
        n = len(tms)
        if n == 0:
            return 0
        if n - 1 > _INDEX_MAX - fi:
            raise ValueError("the batch would run past the largest index, 2**63 - 1")
        first = self._first
        last = self.last_index
        # Indexes below first_index are inside a snapshot, hence committed, hence equal in every
        # log that could be sending them (Raft's Log Matching and Leader Completeness).
        for k in range(max(0, first - fi), n):
            i = fi + k
            if i > last or self._terms[i - first] != tms[k]:
                return i
        return 0

    def last_index_at_or_below_term(self, index, term) -> int:
        i = _index_arg(index, "index")
        t = _u64_arg(term, "term")
        if i < self._first:
            return i  # covered by the snapshot: committed, so it matches any leader's log
        k = min(i, self.last_index) - self._first + 1
        return self._first - 1 + bisect_right(self._terms, t, 0, k)

    def first_index_of_term(self, term, hi=None) -> int:
        t = _u64_arg(term, "term")
        h = self.last_index + 1 if hi is None else min(_index_arg(hi, "hi"), self.last_index + 1)
        k = h - self._first
        if k <= 0:
            return 0
        p = bisect_left(self._terms, t, 0, k)
        if p < k and self._terms[p] == t:
            return self._first + p
        return 0
