"""The write-ahead log against an in-memory model, torn tails at every byte, bit flips.

Segments are kept small (a few hundred bytes) so that every run rolls many of them.
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftcore import WalClusterMismatchError, WalCorruptionError
from raftcore.framing import encode_entries
from raftcore.wal import SEGMENT_HEADER_BYTES, WriteAheadLog

SEGMENT = 700


def payload_for(index: int, term: int) -> bytes:
    """Deterministic content, so any record can be verified after a reopen."""
    return f"{index}:{term}:".encode() + bytes([index % 251]) * (index % 37)


def append(log: WriteAheadLog, term: int, count: int) -> None:
    first = log.last_index() + 1
    log.append(encode_entries(first, term, [payload_for(first + i, term) for i in range(count)]))


def check_against(log: WriteAheadLog, model: dict[int, int], lo: int | None = None) -> None:
    lo = log.first_index() if lo is None else lo
    hi = log.last_index() + 1
    assert hi - 1 == (max(model) if model else hi - 1)
    if hi <= lo:
        return
    batch = log.read(lo, hi)
    assert (batch.first_index, batch.last_index) == (lo, hi - 1)
    for index, term, _kind, payload in batch:
        assert term == model[index] == log.term_at(index)
        assert bytes(payload) == payload_for(index, term)


def open_log(path, **options) -> WriteAheadLog:
    options.setdefault("segment_bytes_max", SEGMENT)
    options.setdefault("sync", "always")
    return WriteAheadLog(path, **options)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_against_a_model(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("wal")
    log = open_log(path)
    model: dict[int, int] = {}
    term = 1
    try:
        for _ in range(data.draw(st.integers(1, 30))):
            op = data.draw(st.sampled_from(["append", "append", "append", "sync", "truncate",
                                            "release", "reopen", "read"]))
            if op == "append":
                term += data.draw(st.integers(0, 1))
                count = data.draw(st.integers(1, 6))
                first = log.last_index() + 1
                append(log, term, count)
                model.update({first + i: term for i in range(count)})
            elif op == "sync":
                assert log.sync() == log.last_index()
            elif op == "truncate" and model:
                at = data.draw(st.integers(log.first_index(), log.last_index() + 1))
                log.truncate_suffix(at)
                model = {i: t for i, t in model.items() if i < at}
                if not model and at > 1:
                    model = {}
            elif op == "release" and model:
                at = data.draw(st.integers(log.first_index(), log.last_index()))
                log.release_prefix(at)
                assert log.first_index() <= at + 1  # whole segments only: some may remain
                model = {i: t for i, t in model.items() if i >= log.first_index()}
            elif op == "reopen":
                log.close()
                log = open_log(path)
                assert log.recovery.torn_bytes == 0
            elif op == "read" and model:
                lo = data.draw(st.integers(log.first_index(), log.last_index()))
                hi = data.draw(st.integers(lo, log.last_index() + 1))
                limit = data.draw(st.one_of(st.none(), st.integers(1, 400)))
                batch = log.read(lo, hi, limit)
                if hi > lo:
                    assert batch.first_index == lo and len(batch) >= 1
                    assert limit is None or len(batch) == 1 or batch.nbytes <= limit
                    assert batch.terms.tolist() == [model[i] for i in
                                                    range(lo, lo + len(batch))]
            if model:
                check_against(log, model)
    finally:
        log.close()
    log = open_log(path)
    try:
        if model:
            check_against(log, model)
    finally:
        log.close()


def build(path, batches=12, per_batch=3) -> WriteAheadLog:
    log = open_log(path)
    for b in range(batches):
        append(log, 1 + b // 4, per_batch)
    log.sync()
    return log


def newest_segment(path) -> str:
    return os.path.join(path, sorted(n for n in os.listdir(path) if n.endswith(".wal"))[-1])


def test_torn_tail_at_every_byte_of_the_last_record(tmp_path):
    source = tmp_path / "source"
    log = build(source)
    last, last_term = log.last_index(), log.term_at(log.last_index())
    log.close()
    segment = newest_segment(source)
    with open(segment, "rb") as f:
        original = f.read()
    end = len(original.rstrip(b"\0"))
    # the last record starts after the previous one: find it by reopening a log cut short
    last_record_bytes = 32 + len(payload_for(last, last_term))
    start = end - last_record_bytes
    for cut in range(start, end):
        for zero_fill in (False, True):
            target = tmp_path / f"cut-{cut}-{zero_fill}"
            os.makedirs(target)
            for name in os.listdir(source):
                with open(source / name, "rb") as f:
                    content = f.read()
                if os.path.join(source, name) == segment:
                    content = content[:cut] + (bytes(len(content) - cut) if zero_fill else b"")
                with open(target / name, "wb") as f:
                    f.write(content)
            reopened = open_log(target)
            try:
                assert reopened.last_index() == last - 1, cut
                # the torn bytes are those of the partial record up to its last non-zero byte
                expected_torn = len(original[start:cut].rstrip(b"\0"))
                assert reopened.recovery.torn_bytes == expected_torn, (cut, zero_fill)
                if expected_torn:
                    assert reopened.recovery.torn_segment.endswith(os.path.basename(segment))
                append(reopened, last_term, 2)  # writing resumes where the valid log ends
                reopened.sync()
            finally:
                reopened.close()
            again = open_log(target)
            try:
                assert again.last_index() == last + 1 and again.recovery.torn_bytes == 0
                check_against(again, {i: again.term_at(i) for i in range(again.first_index(),
                                                                         again.last_index() + 1)})
            finally:
                again.close()


def test_a_bit_flip_in_a_sealed_segment_is_corruption_with_its_location(tmp_path):
    log = build(tmp_path, batches=20)
    segments = list(log.segments)
    log.close()
    assert len(segments) >= 3
    sealed = segments[1]
    with open(sealed, "r+b") as f:
        f.seek(SEGMENT_HEADER_BYTES + 40)  # inside the first record's payload
        byte = f.read(1)
        f.seek(SEGMENT_HEADER_BYTES + 40)
        f.write(bytes([byte[0] ^ 0x10]))
    with pytest.raises(WalCorruptionError) as info:
        open_log(tmp_path)
    assert info.value.path == sealed and info.value.offset == SEGMENT_HEADER_BYTES
    assert "sealed" in str(info.value) and isinstance(info.value, ValueError)
    repaired = open_log(tmp_path, repair=True)
    try:
        first_of_sealed = int(os.path.basename(sealed).split(".")[0])
        assert repaired.last_index() == first_of_sealed - 1
        assert repaired.recovery.repaired
        assert not os.path.exists(segments[-1])
    finally:
        repaired.close()


def test_corruption_before_valid_records_in_the_newest_segment(tmp_path):
    log = open_log(tmp_path, segment_bytes_max=1 << 16)
    for _ in range(6):
        append(log, 1, 2)
    log.sync()
    log.close()
    segment = newest_segment(tmp_path)
    with open(segment, "r+b") as f:
        f.seek(SEGMENT_HEADER_BYTES + 5)  # the first record's payload checksum
        f.write(b"\xff")
    with pytest.raises(WalCorruptionError, match="valid records after it") as info:
        open_log(tmp_path, segment_bytes_max=1 << 16)
    assert info.value.offset == SEGMENT_HEADER_BYTES


def test_header_defects_and_gaps(tmp_path):
    log = build(tmp_path, batches=20)
    segments = list(log.segments)
    log.close()
    with pytest.raises(WalClusterMismatchError):
        open_log(tmp_path, cluster_id=99)
    with open(segments[0], "r+b") as f:
        f.seek(30)
        f.write(b"\x01")
    with pytest.raises(WalCorruptionError, match="header checksum") as info:
        open_log(tmp_path)
    assert info.value.path == segments[0]
    with open(segments[0], "r+b") as f:
        f.seek(30)
        f.write(b"\x00")
    os.unlink(segments[1])
    with pytest.raises(WalCorruptionError, match="gap"):
        open_log(tmp_path)


def test_appends_must_follow_and_terms_must_not_decrease(tmp_path):
    with open_log(tmp_path) as log:
        append(log, 2, 3)
        with pytest.raises(ValueError, match="expected 4"):
            log.append(encode_entries(6, 2, [b"x"]))
        with pytest.raises(ValueError, match="term"):
            log.append(encode_entries(4, 1, [b"x"]))
        with pytest.raises(IndexError):
            log.read(0, 2)


def test_an_append_indexes_a_batch_whatever_its_arrays(tmp_path):
    """The append records each entry at its record's boundary plus where the batch landed in
    the segment, in C from uint64 arrays; arrays of another kind (int64, not contiguous)
    take the general path and must index the same offsets."""
    import numpy as np

    from raftcore.framing import EntryBatch

    def odd(batch):
        offsets = np.zeros(2 * len(batch.offsets), dtype=np.uint64)
        offsets[::2] = batch.offsets  # a strided view: not C-contiguous
        return EntryBatch(batch.buffer, batch.base, batch.nbytes, batch.first_index,
                          batch.terms.astype(np.int64), batch.kinds, offsets[::2])

    indexed = []
    for directory, shape in (("plain", lambda b: b), ("odd", odd)):
        with WriteAheadLog(str(tmp_path / directory)) as log:
            log.append(encode_entries(1, 1, [b"a" * 10, b"b" * 20]))
            log.append(shape(encode_entries(3, 2, [b"c" * 5, b"d", b"e" * 300])))
            log.append(shape(encode_entries(6, 2, [b"f"])))
            assert [bytes(p) for p in log.read(1, 7).payloads()] == \
                [b"a" * 10, b"b" * 20, b"c" * 5, b"d", b"e" * 300, b"f"]
            assert [log.term_at(i) for i in range(1, 7)] == [1, 1, 2, 2, 2, 2]
            indexed.append([log._index_offset(i) for i in range(1, 7)])
    assert indexed[0] == indexed[1]
    assert indexed[0][0] == SEGMENT_HEADER_BYTES and indexed[0] == sorted(set(indexed[0]))


def test_slices_of_one_batch_across_segments_are_indexed_where_they_landed(tmp_path):
    """Slices of one large batch appended one by one, each rolling a new segment: a slice's
    first record boundary (far into its parent) lies past where it lands (just after a
    segment header). The index must hold where each record landed: what a reopened log
    finds by scanning its segments."""
    whole = encode_entries(1, [1] * 30 + [2] * 30, [bytes([i]) * 90 for i in range(60)])
    path = str(tmp_path / "log")
    with open_log(path, segment_bytes_max=1 << 12) as log:
        for lo in range(1, 61, 20):
            log.append(whole.slice(lo, lo + 20))
        written = [log._index_offset(i) for i in range(1, 61)]
        assert [bytes(p) for p in log.read(1, 61).payloads()] == \
            [bytes([i]) * 90 for i in range(60)]
    assert written[20] == written[40] == SEGMENT_HEADER_BYTES
    with open_log(path, segment_bytes_max=1 << 12) as log:
        assert [log._index_offset(i) for i in range(1, 61)] == written
        assert [log.term_at(i) for i in range(1, 61)] == [1] * 30 + [2] * 30


def test_an_append_writes_a_slice_of_a_larger_buffer_and_only_it(tmp_path):
    """A batch cut out of a larger one (a leader's read of its log, a follower's slice of a
    received run) starts inside its buffer: the append writes its records, not the buffer
    around them, and the log reads them back after a reopen."""
    from raftcore.framing import concat_batches

    whole = encode_entries(1, 3, [payload_for(i, 3) for i in range(1, 9)])
    head, middle, tail = whole.slice(1, 3), whole.slice(3, 7), whole.slice(7, 9)
    assert middle.base > 0 and middle.nbytes < len(bytes(middle.buffer))
    for log_dir, parts in (("sliced", [head, middle, tail]),
                           ("joined", [concat_batches([head, middle]), tail])):
        with open_log(tmp_path / log_dir) as log:
            for part in parts:
                assert log.append(part) == part.last_index
            log.sync()
        with open_log(tmp_path / log_dir) as log:
            check_against(log, dict.fromkeys(range(1, 9), 3))
            assert log.read(1, 9).tobytes() == whole.tobytes()



def test_appends_on_both_sides_of_the_gil_threshold_read_back(tmp_path):
    """An append of 64 KiB or more is written with the GIL released, a smaller one with it
    held (a short write lands in the page cache sooner than the GIL goes and comes back):
    the log reads both back, across a reopen, as it was given them."""
    sizes = [40, 65536 - 32, 65536, 3 * 65536]  # one record each: 32-byte header + payload
    with open_log(tmp_path, segment_bytes_max=1 << 20) as log:
        for i, size in enumerate(sizes, start=1):
            batch = encode_entries(i, 2, [bytes([i]) * (size - 32)])
            assert batch.nbytes == size
            assert log.append(batch) == i
        log.sync()
    with open_log(tmp_path, segment_bytes_max=1 << 20) as log:
        read = log.read(1, len(sizes) + 1)
        assert [bytes(p) for p in read.payloads()] == [bytes([i]) * (size - 32)
                                                       for i, size in enumerate(sizes, 1)]

def test_reset_after_a_snapshot_beyond_the_log(tmp_path):
    with open_log(tmp_path) as log:
        append(log, 1, 5)
        log.release_prefix(100, prev_term=3)
        assert (log.first_index(), log.last_index(), log.last_term()) == (101, 100, 3)
        assert log.term_at(100) == 3
        log.append(encode_entries(101, 3, [b"after"]))
        log.sync()
    with open_log(tmp_path) as log:
        assert (log.first_index(), log.last_index()) == (101, 101)


def test_sync_policies(tmp_path):
    for policy in ("always", "interval", "never"):
        with open_log(tmp_path / policy, sync=policy, sync_interval_ms=10_000) as log:
            append(log, 1, 3)
            if policy == "always":
                assert log.durable_index() == 0 and log.sync() == 3
            else:  # acknowledged at once; the fdatasync comes later (or never)
                assert log.durable_index() == 3 and log.sync() == 3
    with pytest.raises(ValueError):
        WriteAheadLog(tmp_path / "x", sync="sometimes")


def test_random_operation_sequences_survive_reopen(tmp_path):
    rng = random.Random(5)
    model: dict[int, int] = {}
    term = 1
    for round_ in range(30):
        with open_log(tmp_path) as log:
            if model:
                check_against(log, model)
            for _ in range(rng.randint(1, 8)):
                term += rng.random() < 0.2
                first = log.last_index() + 1
                count = rng.randint(1, 5)
                append(log, term, count)
                model.update({first + i: term for i in range(count)})
            if rng.random() < 0.3 and log.last_index() > log.first_index():
                at = rng.randint(log.first_index() + 1, log.last_index())
                log.truncate_suffix(at)
                model = {i: t for i, t in model.items() if i < at}
            log.sync()
            assert round_ >= 0


def test_the_operator_commands(tmp_path, capsys):
    from pyraft.cli import main

    log = build(tmp_path, batches=20)
    segments = list(log.segments)
    log.close()
    assert main(["wal", "inspect", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count(": cluster 0, entries") == len(segments)
    with open(segments[1], "r+b") as f:
        f.seek(SEGMENT_HEADER_BYTES + 40)
        f.write(b"\xaa\xbb")
    assert main(["wal", "inspect", str(tmp_path)]) == 1
    assert "stops:" in capsys.readouterr().out
    assert main(["wal", "repair", str(tmp_path)]) == 1  # asks before losing anything
    out = capsys.readouterr().out
    assert "--yes" in out and os.path.exists(segments[-1])
    assert main(["wal", "repair", str(tmp_path), "--yes"]) == 0
    assert "repaired:" in capsys.readouterr().out
    with open_log(tmp_path) as repaired:
        assert repaired.last_index() == int(os.path.basename(segments[1]).split(".")[0]) - 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=12), st.data())
def test_a_read_with_a_byte_budget_is_the_longest_prefix_within_it(tmp_path_factory, batches,
                                                                    data):
    """``read(lo, hi, max_bytes)`` gives the entries from ``lo`` whose records fit in
    ``max_bytes`` (at least one), across segments. (It now reads only those: reading whole
    segments for a small budget stalled a leader's loop for seconds while a new member
    caught up a 1 GiB log; the catch-up benchmark shows that cost.)"""
    path = tmp_path_factory.mktemp("wal")
    with open_log(path, segment_bytes_max=1 << 12) as log:
        for count in batches:
            append(log, 1, count)
        last = log.last_index()
        lo = data.draw(st.integers(1, last))
        hi = data.draw(st.integers(lo + 1, last + 1))
        max_bytes = data.draw(st.integers(0, 3000))
        whole = log.read(lo, hi)
        batch = log.read(lo, hi, max_bytes)
        assert batch.first_index == lo and len(batch) >= 1
        ends = [int(whole.offsets[i + 1]) for i in range(len(whole))]  # bytes through entry i
        expected = max(1, sum(1 for end in ends if end <= max_bytes))
        assert len(batch) == expected
        assert batch.tobytes() == whole.slice(lo, lo + expected).tobytes()


class HoldingDeleter:
    """A deleter that deletes nothing until told: released segments stay on disk."""

    def __init__(self):
        self.paths: list[str] = []
        self.waits = 0

    def delete(self, path):
        self.paths.append(path)

    def wait(self):
        self.waits += 1


def test_released_segments_go_to_the_deleter_oldest_first(tmp_path):
    log = open_log(tmp_path)
    for term in range(1, 30):
        append(log, term, 5)
    log.sync()
    before = sorted(p for p in os.listdir(tmp_path) if p.endswith(".wal"))
    deleter = log.deleter = HoldingDeleter()
    log.release_prefix(100)
    released = [os.path.basename(p) for p in deleter.paths]
    assert released and released == before[:len(released)]  # oldest first, a prefix
    assert all(os.path.exists(p) for p in deleter.paths)  # the log deleted none itself
    assert log.first_index() > 1 and log.first_index() <= 101
    kept = log.read(log.first_index(), log.last_index() + 1)
    assert kept.first_index == log.first_index() and kept.last_index == log.last_index()
    log.close()
    assert deleter.waits == 1  # close waits for the deleter
    # a crash before the deleter ran: the released segments are still there, and recovery
    # reads them as the contiguous start of the log (the owner releases them again)
    again = open_log(tmp_path)
    assert again.first_index() == 1 and again.last_index() == 145
    check_against(again, {i: (i - 1) // 5 + 1 for i in range(1, 146)})
    again.deleter = deleter
    again.reset(500, 7)  # a reset waits for pending deletions before it deletes the rest
    assert deleter.waits == 2
    again.close()


def test_recovery_removes_segments_a_deleter_had_renamed(tmp_path):
    from raftcore.wal import RELEASED_SUFFIX

    log = open_log(tmp_path)
    for term in range(1, 30):
        append(log, term, 5)
    log.sync()
    deleter = log.deleter = HoldingDeleter()
    log.release_prefix(100)
    first_kept = log.first_index()
    log.close()
    # a crash in the middle of the deleter's work: the oldest renamed, the next not yet
    os.rename(deleter.paths[0], deleter.paths[0] + RELEASED_SUFFIX)
    again = open_log(tmp_path)
    assert not os.path.exists(deleter.paths[0] + RELEASED_SUFFIX)
    assert again.first_index() < first_kept  # the segments not renamed are still read
    check_against(again, {i: (i - 1) // 5 + 1 for i in range(again.first_index(), 146)})
    again.close()
