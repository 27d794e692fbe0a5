"""``RaftLog``: reads that span stored entries and entries not yet on disk."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pyraft.core.log import RaftLog
from pyraft.core.storage import MemoryLogStorage
from raftcore.framing import encode_entries


def log_with(stored_batches: int, unstable: int, size: int = 100) -> RaftLog:
    storage = MemoryLogStorage()
    for first in range(1, stored_batches * 10 + 1, 10):
        storage.append(encode_entries(first, 1, [b"x" * size] * 10))
    log = RaftLog(storage)
    if unstable:
        log.append(encode_entries(stored_batches * 10 + 1, 1, [b"y" * size] * unstable))
    return log


class ForeignStorage:
    """A ``LogStorage`` that is not one of pyraft's (it extends nothing): ``RaftLog`` reads
    it through Python calls, where pyraft's own storages are read through their shared
    extension class."""

    def __init__(self, inner: MemoryLogStorage) -> None:
        self.inner = inner

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


@given(st.integers(1, 6), st.integers(0, 12), st.integers(1, 80), st.integers(0, 4000))
def test_a_storage_of_the_users_reads_as_pyrafts_own(stored, unstable, lo, max_bytes):
    own = log_with(stored, unstable)
    storage = MemoryLogStorage()
    for first in range(1, stored * 10 + 1, 10):
        storage.append(encode_entries(first, 1, [b"x" * 100] * 10))
    foreign = RaftLog(ForeignStorage(storage))  # type: ignore[arg-type]
    if unstable:
        foreign.append(encode_entries(stored * 10 + 1, 1, [b"y" * 100] * unstable))
    last = own.last_index()
    lo = min(lo, last)
    assert foreign.first_index() == own.first_index() and foreign.last_index() == last
    assert [foreign.term(i) for i in range(lo, last + 1)] == [own.term(i)
                                                              for i in range(lo, last + 1)]
    assert foreign.entries(lo, last + 1, max_bytes).tobytes() == \
        own.entries(lo, last + 1, max_bytes).tobytes()


def test_a_byte_budget_that_ends_inside_the_stored_entries_stops_there():
    """The read stops where the budget ends, before the entries not yet persisted; it used to
    glue the stored part to the unstored one across a gap (ValueError)."""
    log = log_with(10, 10)
    batch = log.entries(1, 111, max_bytes=2000)
    assert batch.first_index == 1 and 1 <= len(batch) < 100
    assert batch.nbytes <= 2000 or len(batch) == 1


@given(st.integers(1, 10), st.integers(0, 20), st.integers(1, 200),
       st.integers(0, 40_000) | st.none())
def test_entries_are_a_contiguous_prefix_within_the_budget(stored, unstable, lo, max_bytes):
    log = log_with(stored, unstable)
    last = log.last_index()
    lo = min(lo, last)
    batch = log.entries(lo, last + 1, max_bytes)
    assert batch.first_index == lo and len(batch) >= 1
    assert batch.last_index <= last
    if max_bytes is None:
        assert batch.last_index == last
    elif len(batch) > 1:
        assert batch.nbytes <= max_bytes
    expected = [b"x" * 100 if i <= stored * 10 else b"y" * 100
                for i in range(lo, batch.last_index + 1)]
    assert [bytes(p) for p in batch.payloads()] == expected


@given(st.lists(st.integers(1, 5), min_size=1, max_size=40), st.data())
def test_compaction_keeps_exactly_the_entries_after_the_snapshot(sizes, data):
    """``MemoryLogStorage.create_snapshot`` releases every entry up to the snapshot, whether
    the cut falls on a batch boundary, inside a batch or at the last entry, and keeps the
    rest readable (one cut over the batch list: it used to pop them one at a time)."""
    from pyraft.core import Configuration

    storage = MemoryLogStorage(Configuration(frozenset({1})))
    first = 1
    for n in sizes:
        storage.append(encode_entries(first, 1, [b"%d" % i for i in range(first, first + n)]))
        first += n
    last = first - 1
    cuts = sorted(data.draw(st.lists(st.integers(0, last), min_size=1, max_size=3)))
    for index in cuts:
        storage.create_snapshot(index, b"state", Configuration(frozenset({1})))
        assert storage.first_index() == index + 1
        assert storage.last_index() == last
        if index < last:
            entries = storage.entries(index + 1, last + 1)
            assert [bytes(p) for p in entries.payloads()] == [
                b"%d" % i for i in range(index + 1, last + 1)]
        assert storage.term(index) == (1 if index else 0)
