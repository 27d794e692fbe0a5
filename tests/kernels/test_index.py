"""raftcore.index: the index table, against a naive oracle and compiled against its twin."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import raftcore.index
from raftcore._select import USE_TWINS
from raftcore.errors import IndexLookupError
from tests.kernels._impls import implementation_id, implementations

IMPLS = implementations("index")
TWIN = IMPLS[-1]
INDEX_MAX = 2**63 - 1
U64_MAX = 2**64 - 1

each_impl = pytest.mark.parametrize("impl", IMPLS, ids=implementation_id)


def _u64(values) -> np.ndarray:
    return np.asarray(values, dtype=np.uint64)


def _table(impl, terms, first=1, prev_term=0, capacity=4):
    """A table holding `terms` from index `first`, entry i in segment i // 3 at offset 100 * i."""
    t = impl.IndexTable(capacity)
    if first != 1 or prev_term:
        t.reset(first, prev_term)
    n = len(terms)
    idx = np.arange(first, first + n)
    t.append(first, (idx // 3).astype(np.int32), _u64(idx * 100), _u64(terms))
    return t


def _outcome(fn, *args):
    """What a call did: ("ok", value) or ("raise", exception type)."""
    try:
        value = fn(*args)
    except (ValueError, TypeError, LookupError) as exc:
        return ("raise", type(exc))
    if isinstance(value, np.ndarray):
        return ("ok", (value.dtype.str, value.tolist()))
    return ("ok", value)


# -- the naive oracle -------------------------------------------------------------------------


class Oracle:
    """The specification, written the slow and obvious way: a dict from index to record."""

    def __init__(self) -> None:
        self.first = 1
        self.prev_term = 0
        self.entries: dict[int, tuple[int, int, int]] = {}

    @property
    def last(self) -> int:
        return self.first + len(self.entries) - 1

    @property
    def last_term(self) -> int:
        return self.entries[self.last][2] if self.entries else self.prev_term

    @staticmethod
    def _check(*indexes: int) -> None:
        for i in indexes:
            if not 0 <= i <= INDEX_MAX:
                raise ValueError(i)

    def _missing(self, i: int) -> IndexLookupError:
        return IndexLookupError(i, self.first, self.last)

    def reset(self, next_index: int, prev_term: int) -> None:
        self._check(next_index)
        if next_index == 0 or (next_index == 1 and prev_term != 0):
            raise ValueError(next_index)
        self.first, self.prev_term, self.entries = next_index, prev_term, {}

    def append(self, first: int, segments: list[int], offsets: list[int], terms: list[int]):
        self._check(first)
        if first == 0:
            raise ValueError(first)
        if not terms:
            return
        if first != self.last + 1 or first + len(terms) - 1 > INDEX_MAX - 1:
            raise ValueError(first)
        if sorted(terms) != terms or terms[0] < self.last_term:
            raise ValueError(terms)
        for k, record in enumerate(zip(segments, offsets, terms, strict=True)):
            self.entries[first + k] = record

    def truncate_suffix(self, index: int) -> None:
        self._check(index)
        if not self.first <= index <= self.last + 1:
            raise self._missing(index)
        for i in range(index, self.last + 1):
            del self.entries[i]

    def release_prefix(self, index: int, prev_term: int | None) -> None:
        self._check(index)
        if index < self.first - 1:
            return
        if index <= self.last:
            term = self.term_at(index)
            if prev_term is not None and prev_term != term:
                raise ValueError(prev_term)
            for i in range(self.first, index + 1):
                del self.entries[i]
            self.first, self.prev_term = index + 1, term
        else:
            if prev_term is None or prev_term < self.last_term or index >= INDEX_MAX:
                raise ValueError(prev_term)
            self.first, self.prev_term, self.entries = index + 1, prev_term, {}

    def lookup(self, index: int):
        self._check(index)
        if index not in self.entries:
            raise self._missing(index)
        return self.entries[index]

    def term_at(self, index: int) -> int:
        self._check(index)
        if index == self.first - 1:
            return self.prev_term
        return self.lookup(index)[2]

    def column(self, which: int, lo: int, hi: int):
        self._check(lo, hi)
        if lo > hi:
            raise ValueError(lo)
        if lo < self.first:
            raise self._missing(lo)
        if hi > self.last + 1:
            raise self._missing(hi - 1)
        dtype = "<i4" if which == 0 else "<u8"
        return (np.dtype(dtype).str, [self.entries[i][which] for i in range(lo, hi)])

    def find_conflict(self, first: int, terms: list[int]) -> int:
        self._check(first)
        if first == 0 or (terms and first + len(terms) - 1 > INDEX_MAX):
            raise ValueError(first)
        for k, term in enumerate(terms):
            i = first + k
            if i < self.first:
                continue  # inside the snapshot: committed, so it matches
            if i not in self.entries or self.entries[i][2] != term:
                return i
        return 0

    def last_index_at_or_below_term(self, index: int, term: int) -> int:
        self._check(index)
        if index < self.first:
            return index
        for i in range(min(index, self.last), self.first - 1, -1):
            if self.entries[i][2] <= term:
                return i
        return self.first - 1

    def first_index_of_term(self, term: int, hi: int | None) -> int:
        if hi is not None:
            self._check(hi)
        for i in range(self.first, self.last + 1):
            if (hi is None or i < hi) and self.entries[i][2] == term:
                return i
        return 0


def _oracle_outcome(fn, *args):
    try:
        value = fn(*args)
    except (ValueError, LookupError) as exc:
        return ("raise", type(exc))
    return ("ok", value)


def _special_indexes():
    return st.sampled_from([-1, 0, 1, INDEX_MAX - 1, INDEX_MAX, INDEX_MAX + 1, 2**64])


class IndexTableMachine(RuleBasedStateMachine):
    """Random appends, truncations, releases and resets; every query compared to the oracle."""

    impl = None  # set by _machine_for

    def __init__(self) -> None:
        super().__init__()
        self.table = self.impl.IndexTable(2)
        self.oracle = Oracle()

    def _index(self, data, slack: int = 3):
        o = self.oracle
        return data.draw(
            st.one_of(
                st.integers(max(-1, o.first - slack), o.last + slack),
                st.integers(max(-1, o.first - slack), o.last + slack),
                _special_indexes(),
            )
        )

    def _same(self, name: str, impl_args: tuple, oracle_fn, oracle_args: tuple):
        got = _outcome(getattr(self.table, name), *impl_args)
        want = _oracle_outcome(oracle_fn, *oracle_args)
        assert got == want, (name, impl_args, got, want)
        return got

    @rule(data=st.data())
    def append(self, data):
        o = self.oracle
        n = data.draw(st.integers(0, 12))
        first = o.last + 1
        if data.draw(st.integers(0, 9)) == 0:  # sometimes off by a little
            first += data.draw(st.sampled_from([-2, -1, 1, 2]))
        first = max(first, 0)
        term = max(0, o.last_term + data.draw(st.integers(-1 if n else 0, 3)))
        terms = []
        for _ in range(n):
            terms.append(term)
            term += data.draw(st.sampled_from([0, 0, 0, 1, 2]))
        if n > 1 and data.draw(st.integers(0, 19)) == 0:
            terms.reverse()  # decreasing: must be refused
        offsets = data.draw(st.lists(st.integers(0, U64_MAX), min_size=n, max_size=n))
        if data.draw(st.booleans()):
            segment = data.draw(st.integers(-(2**31), 2**31 - 1))
            segments = [segment] * n
        else:
            segments = data.draw(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=n, max_size=n))
            segment = np.array(segments, dtype=np.int32) if data.draw(st.booleans()) else segments
        as_array = data.draw(st.booleans())
        impl_args = (
            first,
            segment,
            _u64(offsets) if as_array else offsets,
            _u64(terms) if as_array else terms,
        )
        self._same("append", impl_args, o.append, (first, segments, offsets, terms))

    @rule(data=st.data())
    def truncate_suffix(self, data):
        i = self._index(data)
        self._same("truncate_suffix", (i,), self.oracle.truncate_suffix, (i,))

    @rule(data=st.data())
    def release_prefix(self, data):
        o = self.oracle
        i = self._index(data, slack=6)
        choice = data.draw(st.integers(0, 3))
        if choice == 0:
            prev = None
        elif choice == 1 and o.first - 1 <= i <= o.last:
            prev = o.term_at(i)
        else:
            prev = data.draw(st.integers(max(0, o.last_term - 1), o.last_term + 3))
        args = (i,) if prev is None and data.draw(st.booleans()) else (i, prev)
        self._same("release_prefix", args, o.release_prefix, (i, prev))

    @rule(data=st.data())
    def reset(self, data):
        o = self.oracle
        i = data.draw(st.integers(0, o.last + 20))
        prev = data.draw(st.integers(0, o.last_term + 3)) if data.draw(st.booleans()) else 0
        self._same("reset", (i, prev), o.reset, (i, prev))

    @rule(data=st.data())
    def lookup(self, data):
        i = self._index(data)
        self._same("lookup", (i,), self.oracle.lookup, (i,))
        self._same("term_at", (i,), self.oracle.term_at, (i,))

    @rule(data=st.data())
    def columns(self, data):
        lo = self._index(data)
        hi = data.draw(st.one_of(st.integers(lo - 1, lo + 14), _special_indexes()))
        for which, name in enumerate(("segments", "offsets", "terms")):
            self._same(name, (lo, hi), self.oracle.column, (which, lo, hi))

    @rule(data=st.data())
    def find_conflict(self, data):
        o = self.oracle
        first = self._index(data, slack=5)
        n = data.draw(st.integers(0, 12))
        theirs = []
        for k in range(n):
            mine = o.entries.get(first + k)
            if mine is not None and data.draw(st.integers(0, 7)) != 0:
                theirs.append(mine[2])
            else:
                theirs.append(data.draw(st.integers(0, o.last_term + 2)))
        arg = _u64(theirs) if data.draw(st.booleans()) else theirs
        self._same("find_conflict", (first, arg), o.find_conflict, (first, theirs))

    @rule(data=st.data())
    def term_searches(self, data):
        o = self.oracle
        i = self._index(data)
        term = data.draw(st.integers(0, o.last_term + 2))
        self._same(
            "last_index_at_or_below_term", (i, term), o.last_index_at_or_below_term, (i, term)
        )
        hi = data.draw(st.one_of(st.none(), st.just(i)))
        args = (term,) if hi is None else (term, hi)
        self._same("first_index_of_term", args, o.first_index_of_term, (term, hi))

    @invariant()
    def same_state(self):
        t, o = self.table, self.oracle
        assert (t.first_index, t.last_index, t.last_term, len(t)) == (
            o.first,
            o.last,
            o.last_term,
            len(o.entries),
        )
        assert t.term_at(o.first - 1) == o.prev_term
        records = list(
            zip(
                t.segments(o.first, o.last + 1).tolist(),
                t.offsets(o.first, o.last + 1).tolist(),
                t.terms(o.first, o.last + 1).tolist(),
                strict=True,
            )
        )
        assert records == [o.entries[i] for i in range(o.first, o.last + 1)]


@each_impl
def test_against_oracle(impl):
    machine = type(f"IndexTableMachine_{impl.IMPLEMENTATION}", (IndexTableMachine,), {"impl": impl})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# -- compiled and twin on the same random operation sequences ---------------------------------


def _describe(fn, *args):
    try:
        value = fn(*args)
    except IndexLookupError as exc:
        return ("IndexLookupError", exc.index, exc.first, exc.last)
    except (ValueError, TypeError) as exc:
        return (type(exc).__name__,)
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.tolist())
    return value


def _random_op(rng: random.Random, first: int, last: int, last_term: int, term_of):
    """One random call (name, args) near the table's range; term_of(i) is the term at i or None."""

    def index():
        if rng.random() < 0.05:
            return rng.choice([-5, -1, 0, INDEX_MAX, INDEX_MAX + 1, 2**64])
        return rng.randint(max(0, first - 4), last + 4)

    def some_term():  # mostly a term the table holds
        i = rng.randint(first - 1, last) if rng.random() < 0.8 else -1
        return term_of(i) if i >= 0 and term_of(i) is not None else rng.randint(0, last_term + 2)

    kind = rng.randrange(10)
    if kind <= 2:
        n = rng.choice([0, 1, 2, 5, 30, 200])
        start = max(0, last_term + rng.choice([0, 0, 0, 1, 2, -1]))
        terms = sorted(start + rng.randrange(3) for _ in range(n))
        if n > 1 and rng.random() < 0.05:
            terms[-1] = max(0, terms[0] - 1)
        offs = [rng.randrange(2**64) for _ in range(n)]
        seg = rng.choice(
            [rng.randrange(-(2**31), 2**31), list(range(n)), np.arange(n, dtype=np.int64)]
        )
        fi = last + 1 if rng.random() < 0.9 else index()
        as_array = rng.random() < 0.5
        return "append", (
            fi,
            seg,
            _u64(offs) if as_array else offs,
            _u64(terms) if as_array else terms,
        )
    if kind == 3:
        return "truncate_suffix", (index(),)
    if kind == 4:
        i = index()
        prev = rng.choice([None, last_term, last_term + 1, max(0, last_term - 1), term_of(i)])
        return "release_prefix", (i, prev)
    if kind == 5 and rng.random() < 0.2:
        return "reset", (rng.randint(0, last + 50), rng.choice([0, last_term, last_term + 3]))
    if kind == 6:
        fi = index()
        theirs = []
        for k in range(rng.randrange(40)):
            term = term_of(fi + k) if 0 <= fi + k <= INDEX_MAX else None
            if term is None or rng.random() < 0.03:
                term = rng.randint(0, last_term + 2)
            theirs.append(term)
        return "find_conflict", (fi, theirs)
    if kind == 7:
        return "last_index_at_or_below_term", (index(), some_term())
    if kind == 8:
        return "first_index_of_term", (some_term(), rng.choice([None, index()]))
    lo = index()
    name = rng.choice(["lookup", "term_at", "terms", "offsets", "segments"])
    if name in ("lookup", "term_at"):
        return name, (lo,)
    return name, (lo, lo + rng.randrange(-1, 30))


def _term_of(table):
    def term_of(i):
        try:
            return table.term_at(i)
        except (LookupError, ValueError):
            return None

    return term_of


@pytest.mark.skipif(USE_TWINS, reason="needs the compiled kernel")
@pytest.mark.parametrize("seed", range(8))
def test_compiled_and_twin_agree(seed):
    compiled, twin = IMPLS
    rng = random.Random(seed)
    a, b = compiled.IndexTable(rng.choice([1, 3, 64])), twin.IndexTable(rng.choice([1, 3, 64]))
    for step in range(1500):
        name, args = _random_op(rng, b.first_index, b.last_index, b.last_term, _term_of(b))
        got, want = _describe(getattr(a, name), *args), _describe(getattr(b, name), *args)
        assert got == want, (seed, step, name, args)
        assert (a.first_index, a.last_index, a.last_term, len(a)) == (
            b.first_index,
            b.last_index,
            b.last_term,
            len(b),
        ), (seed, step, name)


def _oracle_call(oracle: Oracle, name: str, args: tuple):
    """Run one _random_op call on the oracle, whose methods take plain lists."""
    if name == "append":
        first, seg, offs, terms = args
        terms, offs = list(map(int, terms)), list(map(int, offs))
        segs = [seg] * len(terms) if isinstance(seg, int) else list(map(int, seg))
        return _oracle_outcome(oracle.append, first, segs, offs, terms)
    if name in ("terms", "offsets", "segments"):
        which = ("segments", "offsets", "terms").index(name)
        return _oracle_outcome(oracle.column, which, *args)
    if name == "first_index_of_term":
        return _oracle_outcome(oracle.first_index_of_term, *args)
    return _oracle_outcome(getattr(oracle, name), *args)


@each_impl
@pytest.mark.parametrize("seed", range(6))
def test_random_sequences_against_oracle(impl, seed):
    rng = random.Random(1000 + seed)
    t, o = impl.IndexTable(rng.choice([1, 8])), Oracle()
    for step in range(800):
        name, args = _random_op(rng, o.first, o.last, o.last_term, _term_of(t))
        got, want = _outcome(getattr(t, name), *args), _oracle_call(o, name, args)
        assert got == want, (seed, step, name, args)
        assert (t.first_index, t.last_index, t.last_term) == (o.first, o.last, o.last_term)


# -- the Raft paper's examples ----------------------------------------------------------------

# Raft paper, figure 7: the leader's log for term 8, and followers (a)-(f).
FIGURE_7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIGURE_7_FOLLOWERS = {
    "a": ([1, 1, 1, 4, 4, 5, 5, 6, 6], 10),
    "b": ([1, 1, 1, 4], 5),
    "c": ([1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6], 0),
    "d": ([1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7], 0),
    "e": ([1, 1, 1, 4, 4, 4, 4], 6),
    "f": ([1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3], 4),
}


@each_impl
@pytest.mark.parametrize("follower", sorted(FIGURE_7_FOLLOWERS))
def test_figure_7_follower_repairs_its_log(impl, follower):
    """Figure 2, AppendEntries receiver: "If an existing entry conflicts with a new one (same
    index but different terms), delete the existing entry and all that follow it" and
    "Append any new entries not already in the log"."""
    terms, conflict = FIGURE_7_FOLLOWERS[follower]
    t = _table(impl, terms)
    assert t.find_conflict(1, FIGURE_7_LEADER) == conflict
    if conflict:
        t.truncate_suffix(conflict)
        k = conflict - 1
        t.append(conflict, 9, _u64(range(k, 10)), _u64(FIGURE_7_LEADER[k:]))
    expected = terms if len(terms) > 10 and conflict == 0 else FIGURE_7_LEADER
    assert t.terms(1, t.last_index + 1).tolist() == expected


@each_impl
def test_figure_7_fast_backtracking(impl):
    """Raft paper 5.3: "when rejecting an AppendEntries request, the follower can include the
    term of the conflicting entry and the first index it stores for that term"."""
    leader, f = _table(impl, FIGURE_7_LEADER), _table(impl, FIGURE_7_FOLLOWERS["f"][0])
    # The leader probes with its last entry (10, term 6); follower (f) has term 3 there.
    assert f.term_at(10) == 3
    assert f.first_index_of_term(3, hi=11) == 7
    # etcd-style hint: the follower's last index whose term is <= the probe's term, then the
    # leader's last index whose term is <= the term the follower holds there.
    hint = f.last_index_at_or_below_term(10, 6)
    assert (hint, f.term_at(hint)) == (10, 3)
    probe = leader.last_index_at_or_below_term(hint, f.term_at(hint))
    assert probe == 3 and leader.term_at(3) == f.term_at(3)
    assert f.find_conflict(1, FIGURE_7_LEADER[:probe]) == 0
    # The leader does not hold term 3 at all.
    assert leader.first_index_of_term(3) == 0
    assert leader.first_index_of_term(6) == 8
    assert leader.first_index_of_term(6, hi=8) == 0


# -- behaviour the docstrings promise ---------------------------------------------------------


@each_impl
def test_empty_table(impl):
    t = impl.IndexTable()
    assert (t.first_index, t.last_index, t.last_term, len(t)) == (1, 0, 0, 0)
    assert t.term_at(0) == 0  # index 0: the empty prefix, term 0
    assert t.find_conflict(1, []) == 0
    assert t.find_conflict(1, [1]) == 1
    assert t.last_index_at_or_below_term(5, 9) == 0
    assert t.first_index_of_term(0) == 0
    assert t.terms(1, 1).dtype == np.uint64 and t.segments(1, 1).dtype == np.int32
    with pytest.raises(IndexLookupError):
        t.lookup(1)
    with pytest.raises(IndexLookupError):
        t.lookup(0)


@each_impl
def test_lookup_and_columns(impl):
    t = _table(impl, [1, 1, 2, 3, 3], first=11, prev_term=1)
    assert t.lookup(11) == (3, 1100, 1)
    assert t.lookup(15) == (5, 1500, 3)
    assert t.term_at(10) == 1
    assert t.terms(12, 15).tolist() == [1, 2, 3]
    assert t.offsets(11, 13).tolist() == [1100, 1200]
    assert t.segments(13, 16).tolist() == [4, 4, 5]
    out = t.terms(11, 16)
    out[0] = 99  # a copy
    assert t.term_at(11) == 1
    with pytest.raises(IndexLookupError) as info:
        t.lookup(16)
    assert (info.value.index, info.value.first, info.value.last) == (16, 11, 15)
    with pytest.raises(IndexLookupError):
        t.term_at(9)
    with pytest.raises(IndexLookupError):
        t.terms(10, 12)
    with pytest.raises(IndexLookupError):
        t.terms(12, 17)
    with pytest.raises(ValueError):
        t.terms(13, 12)


@each_impl
def test_append_accepts_many_input_forms(impl):
    t = impl.IndexTable(2)
    t.append(1, np.int64(7), [1, 2], (1, 1))
    t.append(3, [1, 2], np.array([3, 4], dtype=np.int64), np.array([2, 2], dtype=">u8"))
    strided = np.arange(10, dtype=np.uint64)[::2]
    t.append(5, np.array([5, 6, 7, 8, 9], dtype=np.uint8), strided, np.full(5, 3, np.uint32))
    t.append(10, 0, np.array([1], dtype=object), iter([3]))
    assert t.terms(1, 11).tolist() == [1, 1, 2, 2, 3, 3, 3, 3, 3, 3]
    assert t.offsets(1, 11).tolist() == [1, 2, 3, 4, 0, 2, 4, 6, 8, 1]
    assert t.segments(1, 11).tolist() == [7, 7, 1, 2, 5, 6, 7, 8, 9, 0]
    t.append(11, 2**31 - 1, [U64_MAX], [U64_MAX])
    assert t.lookup(11) == (2**31 - 1, U64_MAX, U64_MAX)


@each_impl
def test_empty_append_is_a_no_op(impl):
    t = _table(impl, [1, 2])
    t.append(3, 0, [], [])
    t.append(99, 0, np.empty(0, np.uint64), np.empty(0, np.uint64))  # continuity is vacuous
    assert (t.last_index, t.last_term) == (2, 2)
    with pytest.raises(ValueError):
        t.append(0, 0, [], [])  # but index 0 is never an entry's index


@each_impl
def test_terms_never_decrease(impl):
    """Raft thesis 3.6 (Log Matching): entries are appended in term order, so a log's terms
    never decrease; the table refuses a batch that would break this."""
    t = _table(impl, [2, 3])
    for first, terms in [(3, [2]), (3, [3, 4, 3]), (3, [4, 3])]:
        with pytest.raises(ValueError):
            t.append(first, 0, [0] * len(terms), terms)
    assert (t.last_index, t.last_term) == (2, 3)
    t.append(3, 0, [0, 0], [3, 5])
    assert t.last_term == 5


@each_impl
def test_truncate_suffix(impl):
    t = _table(impl, [1, 1, 2, 2], first=5, prev_term=1)
    t.truncate_suffix(9)  # last_index + 1: nothing to drop
    assert t.last_index == 8
    t.truncate_suffix(7)
    assert (t.last_index, t.last_term) == (6, 1)
    t.truncate_suffix(5)
    assert (len(t), t.last_index, t.last_term, t.first_index) == (0, 4, 1, 5)
    for bad in (4, 6):
        with pytest.raises(IndexLookupError):
            t.truncate_suffix(bad)
    t.append(5, 0, [0], [3])
    assert t.term_at(4) == 1 and t.term_at(5) == 3


@each_impl
def test_release_prefix(impl):
    """Raft thesis 5.1: once a snapshot covers a prefix, the log may discard it; the table
    keeps the term of the snapshot's last entry for the AppendEntries consistency check."""
    t = _table(impl, [1, 1, 2, 2, 3])
    t.release_prefix(2)
    assert (t.first_index, t.term_at(2), len(t)) == (3, 1, 3)
    t.release_prefix(1)  # older than what is already released: nothing happens
    t.release_prefix(2, prev_term=1)  # the current snapshot point, with its term: fine
    assert t.first_index == 3
    with pytest.raises(ValueError):
        t.release_prefix(4, prev_term=3)  # index 4 has term 2
    assert t.find_conflict(1, [7, 7, 2]) == 0  # indexes 1, 2 are in the snapshot
    t.release_prefix(5, prev_term=3)
    assert (len(t), t.first_index, t.last_index, t.last_term) == (0, 6, 5, 3)
    with pytest.raises(ValueError):
        t.release_prefix(9)  # past last_index: the snapshot's term is required
    with pytest.raises(ValueError):
        t.release_prefix(9, prev_term=2)  # below last_term
    t.release_prefix(9, prev_term=4)
    assert (t.first_index, t.last_index, t.last_term, t.term_at(9)) == (10, 9, 4, 4)
    t.append(10, 1, [0], [4])
    assert t.lookup(10) == (1, 0, 4)


@each_impl
def test_reset(impl):
    t = _table(impl, [1, 2, 3])
    t.reset(100, 7)
    assert (t.first_index, t.last_index, t.last_term, len(t), t.term_at(99)) == (100, 99, 7, 0, 7)
    with pytest.raises(ValueError):
        t.append(100, 0, [0], [6])
    t.reset(2)  # a snapshot may be older than the discarded log
    assert (t.first_index, t.last_term) == (2, 0)
    t.reset(1)
    with pytest.raises(ValueError):
        t.reset(0)
    with pytest.raises(ValueError):
        t.reset(1, 3)  # index 0 has term 0


@each_impl
def test_find_conflict_bounds(impl):
    t = _table(impl, [1, 2, 2, 3], first=3, prev_term=1)  # indexes 3..6
    assert t.find_conflict(1, [5, 5, 1, 2, 2, 3]) == 0
    assert t.find_conflict(1, [5, 5, 1, 2, 2, 3, 3]) == 7
    assert t.find_conflict(1, [5]) == 0  # wholly inside the snapshot
    assert t.find_conflict(6, [3]) == 0
    assert t.find_conflict(6, [4]) == 6
    assert t.find_conflict(7, [3]) == 7
    assert t.find_conflict(100, [3]) == 100
    big = np.full(1000, 3, dtype=np.uint64)
    assert t.find_conflict(6, big) == 7
    with pytest.raises(ValueError):
        t.find_conflict(0, [1])
    with pytest.raises(ValueError):
        t.find_conflict(INDEX_MAX, [1, 1])
    assert t.find_conflict(INDEX_MAX, [1]) == INDEX_MAX


@each_impl
def test_term_searches(impl):
    t = _table(impl, [2, 2, 4, 4, 4, 7], first=11, prev_term=1)  # indexes 11..16
    assert t.last_index_at_or_below_term(16, 4) == 15
    assert t.last_index_at_or_below_term(13, 4) == 13
    assert t.last_index_at_or_below_term(99, 9) == 16  # clamped to last_index
    assert t.last_index_at_or_below_term(16, 1) == 10  # none: first_index - 1
    assert t.last_index_at_or_below_term(7, 0) == 7  # inside the snapshot: itself
    assert t.first_index_of_term(4) == 13
    assert t.first_index_of_term(4, hi=14) == 13
    assert t.first_index_of_term(4, hi=13) == 0
    assert t.first_index_of_term(4, hi=99) == 13
    assert t.first_index_of_term(1) == 0  # the prev term is not an entry of the table
    assert t.first_index_of_term(3) == 0
    assert t.first_index_of_term(7) == 16


@each_impl
def test_index_0_and_top_of_range(impl):
    t = impl.IndexTable()
    t.reset(INDEX_MAX, 5)
    assert (t.first_index, t.last_index, t.last_term) == (INDEX_MAX, INDEX_MAX - 1, 5)
    with pytest.raises(ValueError):
        t.append(INDEX_MAX, 0, [0], [5])  # the entry's index would be 2**63 - 1
    t.reset(INDEX_MAX - 1, 5)
    t.append(INDEX_MAX - 1, 0, [0], [5])
    assert t.lookup(INDEX_MAX - 1) == (0, 0, 5)
    assert t.last_index_at_or_below_term(INDEX_MAX, 5) == INDEX_MAX - 1
    assert t.first_index_of_term(5, hi=INDEX_MAX) == INDEX_MAX - 1
    with pytest.raises(ValueError):
        t.release_prefix(INDEX_MAX, 5)  # the next index would not fit
    with pytest.raises(ValueError):
        t.lookup(INDEX_MAX + 1)


# -- bad input: always a typed error, never a crash -------------------------------------------

BAD_CALLS = [
    ("lookup", (-1,), ValueError),
    ("lookup", (2**63,), ValueError),
    ("lookup", (2**200,), ValueError),
    ("lookup", (-(2**200),), ValueError),
    ("lookup", (0,), IndexLookupError),
    ("lookup", (4,), IndexLookupError),
    ("lookup", (1.0,), TypeError),
    ("lookup", ("1",), TypeError),
    ("lookup", (None,), TypeError),
    ("term_at", (-1,), ValueError),
    ("term_at", (-1.5,), TypeError),
    ("term_at", (5,), IndexLookupError),
    ("terms", (2, 1), ValueError),
    ("terms", (-1, 2), ValueError),
    ("terms", (1, 5), IndexLookupError),
    ("offsets", (0, 2), IndexLookupError),
    ("segments", (1, None), TypeError),
    ("reset", (0,), ValueError),
    ("reset", (-3,), ValueError),
    ("reset", (5, -1), ValueError),
    ("reset", (5, 2**64), ValueError),
    ("reset", (2**63,), ValueError),
    ("reset", (1, 1), ValueError),
    ("reset", (5, 1.0), TypeError),
    ("append", (4, 0, [1], [3], "extra"), TypeError),
    ("append", (3, 0, [1], [3]), ValueError),
    ("append", (5, 0, [1], [3]), ValueError),
    ("append", (-1, 0, [1], [3]), ValueError),
    ("append", (4, 0, [1], [2]), ValueError),
    ("append", (4, 0, [1, 2], [3]), ValueError),
    ("append", (4, [0, 1], [1], [3]), ValueError),
    ("append", (4, np.zeros(2, np.int32), [1], [3]), ValueError),
    ("append", (4, 2**31, [1], [3]), ValueError),
    ("append", (4, -(2**31) - 1, [1], [3]), ValueError),
    ("append", (4, np.array([2**31]), [1], [3]), ValueError),
    ("append", (4, 0, [-1], [3]), ValueError),
    ("append", (4, 0, np.array([-1]), [3]), ValueError),
    ("append", (4, 0, [2**64], [3]), ValueError),
    ("append", (4, 0, [1], [-3]), ValueError),
    ("append", (4, 0, [1], [2**64]), ValueError),
    ("append", (4, 0, [1], np.array([[3]], dtype=np.uint64)), ValueError),
    ("append", (4, 0, [1], np.uint64(3)), TypeError),
    ("append", (4, 0, [1], np.array(3, dtype=np.uint64)), ValueError),
    ("append", (4, 0, [1], 3), TypeError),
    ("append", (4, 0, [1], None), TypeError),
    ("append", (4, 0, [1.0], [3]), TypeError),
    ("append", (4, 0, np.array([1.0]), [3]), TypeError),
    ("append", (4, 0, np.array([True]), [3]), TypeError),
    ("append", (4, 0, [1], np.array(["3"])), TypeError),
    ("append", (4, 0, [1], ["3"]), TypeError),
    ("append", (4, 0, [1], [None]), TypeError),
    ("append", (4, 0, np.array([None], dtype=object), [3]), TypeError),
    ("append", (4, 1.5, [1], [3]), TypeError),
    ("append", (4, "0", [1], [3]), TypeError),
    ("append", (4, None, [1], [3]), TypeError),
    ("append", (4, np.array([1.5]), [1], [3]), TypeError),
    ("append", (4, np.array([[0]], np.int32), [1], [3]), ValueError),
    ("truncate_suffix", (0,), IndexLookupError),
    ("truncate_suffix", (5,), IndexLookupError),
    ("truncate_suffix", (-1,), ValueError),
    ("release_prefix", (9,), ValueError),
    ("release_prefix", (9, 2), ValueError),
    ("release_prefix", (2, 5), ValueError),
    ("release_prefix", (-2,), ValueError),
    ("release_prefix", (2, -1), ValueError),
    ("release_prefix", (2, "x"), TypeError),
    ("find_conflict", (0, [1]), ValueError),
    ("find_conflict", (-1, [1]), ValueError),
    ("find_conflict", (1, [-1]), ValueError),
    ("find_conflict", (1, np.array([-1])), ValueError),
    ("find_conflict", (1, [1.0]), TypeError),
    ("find_conflict", (1, np.ones((2, 2), np.uint64)), ValueError),
    ("find_conflict", (1, None), TypeError),
    ("last_index_at_or_below_term", (-1, 1), ValueError),
    ("last_index_at_or_below_term", (1, -1), ValueError),
    ("last_index_at_or_below_term", (1, 2**64), ValueError),
    ("first_index_of_term", (-1,), ValueError),
    ("first_index_of_term", (1, -1), ValueError),
    ("first_index_of_term", (1, 2**63), ValueError),
    ("first_index_of_term", (1, 1.0), TypeError),
]


@each_impl
@pytest.mark.parametrize(
    ("name", "args", "error"), BAD_CALLS, ids=[f"{n}{a!r}"[:60] for n, a, _ in BAD_CALLS]
)
def test_bad_input_is_a_typed_error(impl, name, args, error):
    t = _table(impl, [1, 2, 3])  # indexes 1..3, terms 1..3
    before = (t.first_index, t.last_index, t.last_term, t.terms(1, 4).tolist())
    with pytest.raises(error) as info:
        getattr(t, name)(*args)
    if error is ValueError:
        assert not isinstance(info.value, IndexLookupError)
    assert (t.first_index, t.last_index, t.last_term, t.terms(1, 4).tolist()) == before


@each_impl
@pytest.mark.parametrize("capacity", [0, -1, 2**24 + 1, 2**70])
def test_bad_capacity(impl, capacity):
    with pytest.raises(ValueError):
        impl.IndexTable(capacity)


@each_impl
def test_bad_capacity_type(impl):
    with pytest.raises(TypeError):
        impl.IndexTable(1.5)


_ANYTHING = st.one_of(
    st.integers(),
    st.integers(-3, 12),
    st.none(),
    st.floats(allow_nan=False),
    st.text(max_size=3),
    st.lists(st.one_of(st.integers(), st.integers(0, 4)), max_size=4),
    st.lists(st.integers(0, 4), max_size=4).map(lambda v: np.array(v, dtype=np.int64)),
    st.lists(st.integers(0, 4), max_size=4).map(lambda v: np.array(v, dtype=np.float32)),
    st.sampled_from([np.zeros((2, 2), np.uint64), np.uint64(3), np.int32(-1), True, b"\x01"]),
)
_METHODS = [
    "lookup",
    "term_at",
    "terms",
    "offsets",
    "segments",
    "reset",
    "append",
    "truncate_suffix",
    "release_prefix",
    "find_conflict",
    "last_index_at_or_below_term",
    "first_index_of_term",
]


@each_impl
@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(_METHODS), args=st.lists(_ANYTHING, min_size=0, max_size=5))
def test_fuzzed_arguments(impl, name, args):
    """Whatever is passed, the outcome is a result or ValueError / TypeError / LookupError,
    the same as the twin's, and a failed call leaves the table as it was."""
    outcomes = []
    for m in (impl, TWIN):
        t = _table(m, [1, 2, 2, 3], first=3, prev_term=1)
        before = (t.first_index, t.last_index, t.last_term)
        outcome = _outcome(getattr(t, name), *args)
        if outcome[0] == "raise":
            assert (t.first_index, t.last_index, t.last_term) == before
        outcomes.append(repr(outcome))
    assert outcomes[0] == outcomes[1], outcomes


@each_impl
def test_arguments_that_mutate_the_table_while_converted(impl):
    """An __index__ that changes the table mid-call must not make the kernel read stale bounds."""
    t = _table(impl, list(range(1, 101)))

    class Sneaky:
        def __index__(self):
            t.reset(1)
            return 100

    assert t.first_index_of_term(50, hi=Sneaky()) == 0
    t.append(1, 0, [0] * 50, [1] * 50)
    assert t.last_index_at_or_below_term(Sneaky(), 9) == 0
    t.append(1, 0, [0] * 50, [1] * 50)
    with pytest.raises(IndexLookupError):
        t.lookup(Sneaky())
    t.append(1, 0, [0] * 50, [1] * 50)

    class SneakyTerms:
        def __iter__(self):
            t.reset(1)
            return iter([1] * 100)

    assert t.find_conflict(1, SneakyTerms()) == 1


# -- memory -----------------------------------------------------------------------------------


@each_impl
def test_memory_is_reclaimed_over_a_long_run(impl):
    """A million entries appended and released in batches: the table stays small."""
    t = impl.IndexTable(1024)
    batch = 1000
    offsets = np.arange(batch, dtype=np.uint64) * 64
    peak = 0
    for k in range(1000):
        first = t.last_index + 1
        terms = np.full(batch, 1 + k // 100, dtype=np.uint64)
        t.append(first, k, offsets, terms)
        t.release_prefix(first + batch // 2)  # keep about half a batch behind
        peak = max(peak, t.nbytes)
    assert t.last_index == 1_000_000
    assert t.term_at(t.last_index) == 10
    assert peak <= 4096 * 20 + 4096, peak


@each_impl
def test_memory_shrinks_after_a_burst(impl):
    """A burst after a quiet stretch is given back at once, by whichever call drops it."""
    n = 200_000
    for drop in ("release_prefix", "truncate_suffix", "reset"):
        t = impl.IndexTable(64)
        small = t.nbytes
        t.append(1, 0, np.zeros(10, np.uint64), np.ones(10, np.uint64))
        t.release_prefix(5)  # a quiet cycle: at most 10 entries
        t.append(11, 0, np.zeros(n, np.uint64), np.ones(n, np.uint64))
        assert t.nbytes >= n * 20
        if drop == "release_prefix":
            t.release_prefix(n)
            assert len(t) == 10 and t.lookup(n + 10) == (0, 0, 1)
        elif drop == "truncate_suffix":
            t.truncate_suffix(15)
            assert len(t) == 9
        else:
            t.reset(n + 11)
            assert len(t) == 0
        assert t.nbytes <= small * 2 + 4096, drop


def test_cycles_of_one_size_keep_their_columns():
    """The compiled table's columns (the twin's arrays have their own growth): a log that
    fills and is compacted in equal cycles allocates its columns once, not once a cycle;
    when the cycles stop, the memory returns within one further compaction."""
    from raftcore._index import IndexTable

    t = IndexTable(1024)
    n = 100_000
    offsets = np.arange(n, dtype=np.uint64) * 64
    sizes = []
    for cycle in range(6):
        first = t.last_index + 1
        t.append(first, cycle, offsets, np.ones(n, np.uint64))
        sizes.append(t.nbytes)
        t.release_prefix(first + n - 100)  # a snapshot: 100 entries kept behind
        sizes.append(t.nbytes)
    assert sizes[0] >= n * 20
    assert len(set(sizes[2:])) == 1, sizes  # from the second cycle on: never reallocated
    for _ in range(2):  # quiet cycles
        first = t.last_index + 1
        t.append(first, 9, offsets[:50], np.ones(50, np.uint64))
        t.release_prefix(first + 40)
    assert t.nbytes <= 2 * 1024 * 20, t.nbytes
    assert t.term_at(t.last_index) == 1 and len(t) == 9


@each_impl
def test_compiled_kernel_is_loaded(impl):
    expected = "python" if USE_TWINS else "compiled"
    assert raftcore.index.IMPLEMENTATION == expected
    assert raftcore.index.IndexTable.__module__ == f"raftcore._index{'_py' if USE_TWINS else ''}"
