"""Index-table kernel: the per-entry lookups and the per-batch operations of the log.

Goals for the compiled kernel: ``term_at`` / ``lookup`` well under 200 ns a call from Python;
``append`` of a 1,000-entry batch from numpy arrays and ``find_conflict`` over 1,000 entries
well under 10 us. The compiled kernel and the pure-Python twin run in one group per operation,
so pytest-benchmark prints their ratio. Per-call tests replay CALLS_PER_ROUND calls in a Python
loop (a few tens of ns of loop overhead included): divide by CALLS_PER_ROUND, or read
``extra_info["ns_per_call"]``.

    PYTHONPATH=src python -m pytest benchmarks/test_bench_index.py --benchmark-enable
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from raftcore._select import USE_TWINS

CALLS_PER_ROUND = 1000
BATCH = 1000
TABLE_ENTRIES = 100_000

IMPLS = [importlib.import_module("raftcore._index_py")]
if not USE_TWINS:
    IMPLS.insert(0, importlib.import_module("raftcore._index"))

each_impl = pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.IMPLEMENTATION)


def _terms(n: int) -> np.ndarray:
    return (np.arange(n, dtype=np.uint64) // 97) + 1  # a new term every 97 entries


def _full_table(impl):
    t = impl.IndexTable(1024)
    t.append(1, 0, np.arange(TABLE_ENTRIES, dtype=np.uint64) * 80, _terms(TABLE_ENTRIES))
    return t


def _indexes() -> list[int]:
    rng = np.random.default_rng(7)
    return rng.integers(1, TABLE_ENTRIES + 1, size=CALLS_PER_ROUND).tolist()


def _per_call(benchmark) -> None:
    if benchmark.enabled:  # no statistics when benchmarks run once as smoke tests
        benchmark.extra_info["ns_per_call"] = round(
            benchmark.stats["median"] * 1e9 / CALLS_PER_ROUND
        )


@each_impl
def test_term_at(benchmark, impl):
    benchmark.group = f"index: term_at, x{CALLS_PER_ROUND} per round"
    term_at = _full_table(impl).term_at
    indexes = _indexes()

    def calls():
        for i in indexes:
            term_at(i)

    benchmark(calls)
    _per_call(benchmark)


@each_impl
def test_lookup(benchmark, impl):
    benchmark.group = f"index: lookup, x{CALLS_PER_ROUND} per round"
    lookup = _full_table(impl).lookup
    indexes = _indexes()

    def calls():
        for i in indexes:
            lookup(i)

    benchmark(calls)
    _per_call(benchmark)


@each_impl
def test_last_index_at_or_below_term(benchmark, impl):
    benchmark.group = f"index: last_index_at_or_below_term, x{CALLS_PER_ROUND} per round"
    search = _full_table(impl).last_index_at_or_below_term
    pairs = [(i, (i - 1) // 97) for i in _indexes()]  # one term back: a real search

    def calls():
        for i, term in pairs:
            search(i, term)

    benchmark(calls)
    _per_call(benchmark)


@each_impl
def test_append_batch(benchmark, impl):
    """One round: truncate_suffix(1) (O(1)) and append 1,000 entries from numpy arrays."""
    benchmark.group = f"index: truncate_suffix + append of {BATCH} entries"
    t = impl.IndexTable(1024)
    offsets = np.arange(BATCH, dtype=np.uint64) * 80
    terms = _terms(BATCH)
    truncate, append = t.truncate_suffix, t.append

    def round_():
        truncate(1)
        append(1, 3, offsets, terms)

    benchmark(round_)
    assert t.last_index == BATCH and t.lookup(BATCH) == (3, (BATCH - 1) * 80, terms[-1])


@each_impl
def test_append_and_release(benchmark, impl):
    """The WAL's steady state: append a 1,000-entry batch, release the one before it."""
    benchmark.group = f"index: append {BATCH} + release_prefix"
    t = impl.IndexTable(1024)
    offsets = np.arange(BATCH, dtype=np.uint64) * 80
    terms = np.ones(BATCH, dtype=np.uint64)

    def round_():
        first = t.last_index + 1
        t.append(first, 0, offsets, terms)
        t.release_prefix(first - 1)

    benchmark(round_)
    assert len(t) == BATCH


@each_impl
def test_find_conflict(benchmark, impl):
    """A full scan: the leader's 1,000 terms all match, the answer is 0."""
    benchmark.group = f"index: find_conflict over {BATCH} entries"
    t = _full_table(impl)
    theirs = t.terms(50_001, 50_001 + BATCH)
    assert benchmark(t.find_conflict, 50_001, theirs) == 0
