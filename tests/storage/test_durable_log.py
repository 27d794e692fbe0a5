"""DurableLogStorage: the core's log on disk behaves like MemoryLogStorage, survives
restarts, and turns disk failures into typed errors without losing what was durable."""

from __future__ import annotations

import errno
import pathlib
import random
import shutil

import pytest

from pyraft.core import Configuration, HardState, MemoryLogStorage, Snapshot, SnapshotMeta
from pyraft.errors import LogCompactedError, LogUnavailableError, StorageError, StorageFullError
from pyraft.storage.log import DurableLogStorage
from pyraft.testing.sim import SimConfig, run_seed
from raftcore.framing import encode_entries
from raftcore.wal import WriteAheadLog

VOTERS = Configuration(frozenset({1, 2, 3}))


def open_storage(path, **options):
    options.setdefault("segment_bytes_max", 1024)
    return DurableLogStorage(path, VOTERS, **options)


def same_view(durable, memory):
    assert durable.first_index() == memory.first_index()
    assert durable.last_index() == memory.last_index()
    lo, hi = memory.first_index(), memory.last_index() + 1
    assert durable.term(lo - 1) == memory.term(lo - 1)
    if hi > lo:
        assert durable.entries(lo, hi).tobytes() == memory.entries(lo, hi).tobytes()
        assert durable.terms(lo, hi).tolist() == memory.terms(lo, hi).tolist()
        assert durable.entries(lo, hi, 100).tobytes() == memory.entries(lo, hi, 100).tobytes()


def test_behaves_like_the_memory_storage_across_restarts(tmp_path):
    rng = random.Random(7)
    memory = MemoryLogStorage(VOTERS)
    durable = open_storage(tmp_path)
    term = 1
    for step in range(200):
        action = rng.random()
        last = memory.last_index()
        if action < 0.6:
            first = last + 1
            if last >= memory.first_index() and rng.random() < 0.2:
                first = rng.randint(memory.first_index(), last)  # a conflict
                term += 1
            batch = encode_entries(first, term, [bytes([step % 256]) * rng.randint(0, 90)
                                                 for _ in range(rng.randint(1, 4))])
            memory.append(batch)
            durable.append(batch)
        elif action < 0.7 and last >= memory.first_index():
            index = rng.randint(memory.first_index(), last)
            memory.create_snapshot(index, b"state@%d" % index, VOTERS)
            durable.create_snapshot(index, b"state@%d" % index, VOTERS)
        elif action < 0.8:
            current = durable.hard_state
            # a vote never changes within a term (the store refuses: a caller bug)
            vote = current.vote if term == current.term else rng.choice([0, 1, 2])
            hard = HardState(term, vote, memory.last_index())
            memory.set_hard_state(hard)
            durable.set_hard_state(hard)
        elif action < 0.9:
            durable.sync()
            durable.close()
            durable = open_storage(tmp_path)
            assert durable.hard_state.term == memory.hard_state.term
            assert durable.hard_state.vote == memory.hard_state.vote
        same_view(durable, memory)
    durable.close()


def test_a_snapshot_from_the_leader_replaces_the_log(tmp_path):
    storage = open_storage(tmp_path)
    storage.append(encode_entries(1, 1, [b"a", b"b", b"c"]))
    snapshot = Snapshot(SnapshotMeta(50, 4, (1, 2, 3)), b"leader state")
    storage.apply_snapshot(snapshot)
    assert (storage.first_index(), storage.last_index(), storage.term(50)) == (51, 50, 4)
    with pytest.raises(LogCompactedError):
        storage.term(10)
    with pytest.raises(LogUnavailableError):
        storage.entries(51, 53)
    storage.append(encode_entries(51, 4, [b"next"]))
    storage.sync()
    storage.close()
    again = open_storage(tmp_path)
    assert (again.first_index(), again.last_index()) == (51, 51)
    assert bytes(again.snapshot().data) == b"leader state"
    assert again.initial_state()[1] == VOTERS
    again.close()


def test_a_restart_after_a_snapshot_newer_than_the_log(tmp_path):
    """A crash between installing a snapshot and resetting the log: the snapshot wins."""
    storage = open_storage(tmp_path)
    storage.append(encode_entries(1, 1, [b"a", b"b"]))
    storage.sync()
    with storage.snapshots.begin(SnapshotMeta(9, 2, (1, 2, 3))) as writer:
        writer.write(b"s")
        writer.commit()
    storage.close()
    again = open_storage(tmp_path)
    assert (again.first_index(), again.last_index(), again.term(9)) == (10, 9, 2)
    again.close()



def test_segments_a_snapshot_released_are_deleted_off_the_caller_and_again_after_a_crash(
        tmp_path, monkeypatch):
    storage = open_storage(tmp_path)
    for i in range(1, 301):
        storage.append(encode_entries(i, 1, [b"%d" % i * 20]))
    storage.sync()
    wal_dir = tmp_path / "wal"
    segments = sorted(wal_dir.iterdir())
    held = []  # a crash before the deleter ran: nothing it was handed is deleted
    monkeypatch.setattr(storage._deleter, "delete", held.append)
    storage.create_snapshot(250, b"state", VOTERS)
    assert held and all(pathlib.Path(p).exists() for p in held)
    assert [pathlib.Path(p) for p in held] == segments[:len(held)]
    assert storage.first_index() == 251
    storage.close()
    again = open_storage(tmp_path)  # recovery finds them and releases them again
    assert (again.first_index(), again.last_index()) == (251, 300)
    assert again.entries(251, 301).payload(0).tobytes() == b"251" * 20
    again.close()  # waits for the deleter
    assert not any(pathlib.Path(p).exists() for p in held)
    assert again._deleter.deleted == len(held)

class FullDisk(WriteAheadLog):
    """The write-ahead log on a full disk: every write fails with ENOSPC, reads still work."""

    def append(self, batch):
        raise OSError(errno.ENOSPC, "No space left on device", "segment.wal")

    def sync(self):
        raise OSError(errno.EIO, "Input/output error", "segment.wal")


def reopen_wal(storage, kind):
    """Close ``storage``'s WAL and open it again as a ``kind`` (what it holds stays)."""
    wal = storage.wal
    wal.close()
    storage.wal = kind(wal.directory, cluster_id=wal.cluster_id,
                       segment_bytes_max=wal.segment_bytes_max)


def test_a_full_disk_is_a_typed_error_and_loses_nothing(tmp_path):
    storage = open_storage(tmp_path)
    storage.append(encode_entries(1, 1, [b"kept"]))
    storage.sync()
    reopen_wal(storage, FullDisk)
    with pytest.raises(StorageFullError) as info:
        storage.append(encode_entries(2, 1, [b"lost"]))
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    with pytest.raises(StorageError):
        storage.sync()
    assert storage.last_index() == 1
    reopen_wal(storage, WriteAheadLog)  # space returned: writing resumes
    storage.append(encode_entries(2, 1, [b"after"]))
    storage.sync()
    storage.close()
    again = open_storage(tmp_path)
    assert [bytes(p) for p in again.entries(1, 3).payloads()] == [b"kept", b"after"]
    again.close()


@pytest.mark.parametrize("nodes,seeds", [(3, range(60)), (5, range(500, 520))])
def test_the_simulator_on_durable_storage(tmp_path, nodes, seeds):
    """Every member on disk: crashes close the files unsaved and restarts recover from them;
    the simulator's checkers run as with the in-memory storage."""
    for seed in seeds:
        result = run_seed(seed, SimConfig(nodes=nodes, storage_dir=str(tmp_path)))
        assert result.ok, f"{result.line()}: {result.detail}"
        shutil.rmtree(tmp_path / f"seed{seed}", ignore_errors=True)


@pytest.mark.parametrize("recent_bytes_max", [300, 4 << 20])
def test_the_recent_batches_stay_bounded_contiguous_and_newest(tmp_path, recent_bytes_max):
    """Past ``RECENT_BATCHES_MAX`` batches (or ``recent_bytes_max`` bytes) the oldest go: the
    batches kept are always the newest, contiguous up to the last index, within both bounds,
    and what they hold reads as the disk does."""
    from pyraft.storage.log import RECENT_BATCHES_MAX

    durable = open_storage(tmp_path / "a", recent_bytes_max=recent_bytes_max)
    longest = 0
    for index in range(1, 3 * RECENT_BATCHES_MAX + 2):
        durable.append(encode_entries(index, 1, [b"%d" % index]))
        recent = durable._recent
        longest = max(longest, len(recent))
        assert 1 <= len(recent) <= RECENT_BATCHES_MAX
        assert recent[-1].last_index == index
        assert all(a.last_index + 1 == b.first_index for a, b in zip(recent, recent[1:]))
        assert durable._recent_bytes == sum(b.nbytes for b in recent) <= recent_bytes_max
    lo = recent[0].first_index
    assert durable.entries(lo, index + 1).tobytes() == durable.wal.read(lo, index + 1).tobytes()
    if recent_bytes_max > 1 << 20:
        assert longest == RECENT_BATCHES_MAX  # the count bound, not the bytes, held it
    durable.close()


@pytest.mark.parametrize("recent_bytes_max", [0, 200, 4 << 20])
def test_reads_of_recent_entries_match_reads_from_disk(tmp_path, recent_bytes_max):
    """The newest batches are read from memory (``recent_bytes_max``): every range, with
    and without a byte budget, after conflicts and restarts, reads as the disk and the memory
    storage read it."""
    rng = random.Random(recent_bytes_max)
    memory = MemoryLogStorage(VOTERS)
    durable = open_storage(tmp_path / "a", recent_bytes_max=recent_bytes_max)
    from_disk = open_storage(tmp_path / "b", recent_bytes_max=0)
    term = 1
    reads_from_memory = 0
    for step in range(300):
        last = memory.last_index()
        first = last + 1
        if last >= 1 and rng.random() < 0.15:
            first = rng.randint(max(1, last - 6), last)  # a conflict replaces a suffix
            term += 1
        batch = encode_entries(first, term, [bytes([step % 256]) * rng.randint(0, 60)
                                             for _ in range(rng.randint(1, 5))])
        for storage in (memory, durable, from_disk):
            storage.append(batch)
        if rng.random() < 0.05:
            durable.close()
            durable = open_storage(tmp_path / "a", recent_bytes_max=recent_bytes_max)
        last = memory.last_index()
        # the batch just appended, whole (the leader's send, then its apply), then others
        ranges = [(batch.first_index, batch.last_index + 1)]
        for _ in range(4):
            lo = rng.randint(max(1, last - 20), last)
            ranges.append((lo, rng.randint(lo, last + 1)))
        for lo, hi in ranges:
            budget = rng.choice([None, 1, 40, 150, 1000])
            whole = memory.entries(lo, hi)
            recent = durable._recent
            if recent and recent[0].first_index <= lo and hi <= recent[-1].last_index + 1:
                reads_from_memory += 1
            got = durable.entries(lo, hi, budget)
            # the same entries as the disk gives: the longest prefix within the budget, or
            # one entry (MemoryLogStorage may stop earlier, at a batch boundary)
            assert got.first_index == lo
            assert got.tobytes() == from_disk.entries(lo, hi, budget).tobytes()
            assert got.tobytes() == whole.slice(lo, lo + len(got)).tobytes()
            if budget is None:
                assert len(got) == hi - lo
            elif len(got) < hi - lo:
                assert got.nbytes <= budget or len(got) == 1
                assert whole.byte_size(lo, lo + len(got) + 1) > budget
    if recent_bytes_max:  # the reads above did test the recent batches
        assert reads_from_memory > (600 if recent_bytes_max > 1000 else 20)
    else:
        assert reads_from_memory == 0
    durable.close()
    from_disk.close()


def test_a_snapshot_written_apart_is_adopted_unless_a_newer_one_came_meanwhile(tmp_path):
    storage = open_storage(tmp_path)
    storage.append(encode_entries(1, 1, [b"%d" % i for i in range(1, 101)]))
    storage.sync()
    meta = storage.snapshot_meta(40, VOTERS)
    assert (meta.index, meta.term) == (40, 1)
    storage.write_snapshot(meta, b"state at 40")  # the file only: the log is untouched
    assert storage.first_index() == 1 and storage.snapshot().meta.index == 0
    storage.adopt_snapshot(meta, b"state at 40")
    assert storage.first_index() == 41 and bytes(storage.snapshot().data) == b"state at 40"
    older = storage.snapshot_meta(60, VOTERS)
    storage.write_snapshot(older, b"state at 60")
    storage.apply_snapshot(Snapshot(SnapshotMeta(90, 2, (1, 2, 3)), b"from the leader"))
    storage.adopt_snapshot(older, b"state at 60")  # written before the leader's arrived
    assert storage.snapshot().meta.index == 90 and storage.first_index() == 91
    storage.close()
    again = open_storage(tmp_path)
    assert again.snapshot().meta.index == 90 and bytes(again.snapshot().data) == b"from the leader"
    again.close()


def test_the_batch_just_appended_is_not_read_once_a_snapshot_covers_it(tmp_path):
    """Reads of the newest batch come from memory, but only while the log still holds it:
    once a snapshot covers it, they are compacted as from disk."""
    storage = open_storage(tmp_path)
    batch = encode_entries(1, 1, [b"a", b"b", b"c"])
    storage.append(batch)
    assert storage.entries(1, 4) is batch  # from memory, not re-read
    storage.sync()
    storage.create_snapshot(3, b"state@3", VOTERS)
    assert (storage.first_index(), storage.last_index(), storage.term(3)) == (4, 3, 1)
    with pytest.raises(LogCompactedError):
        storage.entries(1, 4)
    with pytest.raises(LogCompactedError):
        storage.term(1)
    storage.close()


def test_appends_below_the_first_index_are_refused_with_or_without_a_snapshot(tmp_path):
    """An append must start after what the log keeps: after the first index of the log, and
    after a snapshot's last index (the log may still hold entries a snapshot covers). After
    a snapshot, the batch just appended is read from memory again."""
    from pyraft.errors import InvariantError

    storage = open_storage(tmp_path)
    storage.append(encode_entries(1, 1, [b"a", b"b", b"c", b"d"]))
    storage.sync()
    storage.create_snapshot(3, b"state@3", VOTERS)
    assert storage.first_index() == 4
    for first in (1, 3):  # under the snapshot (the log may hold them until released)
        with pytest.raises(InvariantError, match="below the first index"):
            storage.append(encode_entries(first, 2, [b"x"]))
    batch = encode_entries(4, 2, [b"e", b"f"])  # replaces entry 4, the first kept
    storage.append(batch)
    assert storage.entries(4, 6) is batch and storage.last_index() == 5
    assert storage.term(4) == 2 and storage.term(3) == 1
    storage.close()


def test_commit_hints_are_saved_at_most_every_n_entries_and_every_interval(tmp_path,
                                                                           monkeypatch):
    """Term and vote are durable at once; the commit index, a hint, is written when it has
    moved ``commit_hint_interval_entries`` since the last save and, unless the interval is
    0, ``commit_hint_interval_ms`` have passed (a save is a file replaced and fsynced)."""
    clock = [1_000.0]
    monkeypatch.setattr("pyraft.storage.log.monotonic", lambda: clock[0])

    def stored(path):
        storage = DurableLogStorage(str(path))
        try:
            return storage.hard_state
        finally:
            storage.wal.close()  # not close(): that saves the newest hard state
            storage._deleter.close()

    storage = open_storage(tmp_path / "a", commit_hint_interval_entries=10,
                           commit_hint_interval_ms=500)
    storage.set_hard_state(HardState(1, 1, 10))
    assert stored(tmp_path / "a") == HardState(1, 1, 10)  # 10 entries, none saved before
    clock[0] += 0.1
    storage.set_hard_state(HardState(1, 1, 50))
    assert stored(tmp_path / "a") == HardState(1, 1, 10)  # 40 entries, only 0.1 s
    storage.set_hard_state(HardState(2, 0, 51))
    assert stored(tmp_path / "a") == HardState(2, 0, 51)  # a new term: at once, with its hint
    clock[0] += 0.5
    storage.set_hard_state(HardState(2, 0, 55))
    assert stored(tmp_path / "a") == HardState(2, 0, 51)  # 0.5 s, but only 4 entries
    storage.set_hard_state(HardState(2, 0, 61))
    assert stored(tmp_path / "a") == HardState(2, 0, 61)  # 10 entries and 0.5 s since
    storage.set_hard_state(HardState(2, 0, 90))
    storage.close()
    assert stored(tmp_path / "a") == HardState(2, 0, 90)  # close() saves the newest

    # 0: the entry bound alone, whatever the clock says (the simulator's setting)
    storage = open_storage(tmp_path / "b", commit_hint_interval_entries=10,
                           commit_hint_interval_ms=0)
    for commit in range(10, 60, 10):
        storage.set_hard_state(HardState(1, 1, commit))
        assert stored(tmp_path / "b") == HardState(1, 1, commit)
    storage.close()
