"""Snapshot stores: streaming writes, atomic commit, release, chunked reads, corruption."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyraft.core.messages import Snapshot, SnapshotMeta
from pyraft.errors import (
    ConfigError,
    CorruptStateError,
    InvariantError,
    LogCompactedError,
    StorageError,
    StorageFullError,
)
from pyraft.storage import snapshots as snapshots_module
from pyraft.storage.snapshots import (
    MemorySnapshotStore,
    SnapshotStore,
    SnapshotStoreProtocol,
    crc32c_combine,
    snapshot_file_name,
)
from raftcore.crc import crc32c

DATA = bytes(range(256)) * 3 + b"tail"


def meta(index: int, term: int = 1, voters=(1, 2, 3), learners=()) -> SnapshotMeta:
    return SnapshotMeta(index, term, tuple(voters), tuple(learners))


def store_snapshot(store, snapshot_meta: SnapshotMeta, data: bytes, chunk: int = 100):
    with store.begin(snapshot_meta) as writer:
        for start in range(0, len(data), chunk):
            writer.write(data[start : start + chunk])
        return writer.commit()


def temp_files(directory) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".tmp"))


def snap_files(directory) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".snap"))


def fail_with(code: int):
    def raiser(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return raiser


@pytest.fixture(params=["file", "memory"])
def make_store(request, tmp_path):
    def make(keep: int = 2):
        if request.param == "memory":
            return MemorySnapshotStore(keep=keep)
        return SnapshotStore(tmp_path / "snapshots", keep=keep)

    return make


# -- crc32c_combine -------------------------------------------------------------------------------


@given(first=st.binary(max_size=200), second=st.binary(max_size=200))
def test_crc32c_combine_equals_the_crc_of_the_concatenation(first, second):
    combined = crc32c_combine(crc32c(first), crc32c(second), len(second))
    assert combined == crc32c(first + second)


def test_crc32c_combine_with_large_lengths():
    second = b"\x00" * (1 << 20) + b"x"
    assert crc32c_combine(crc32c(b"head"), crc32c(second), len(second)) == crc32c(b"head" + second)


# -- round trips ----------------------------------------------------------------------------------


def test_both_stores_follow_the_protocol(tmp_path):
    assert isinstance(MemorySnapshotStore(), SnapshotStoreProtocol)
    assert isinstance(SnapshotStore(tmp_path), SnapshotStoreProtocol)


def test_empty_store(make_store):
    assert make_store().latest() is None
    assert make_store().latest(skip_corrupt=True) is None


def test_round_trip(make_store):
    store = make_store()
    described = meta(40, 3, voters=(1, 2, 3), learners=(4,))
    assert store_snapshot(store, described, DATA) == described
    assert store.latest() == described
    assert store.load(described) == DATA
    assert store.snapshot(described) == Snapshot(described, DATA)
    assert store.list_snapshots() == [(40, 3)]


def test_empty_data(make_store):
    store = make_store()
    store_snapshot(store, meta(1), b"")
    assert store.latest() == meta(1)
    assert store.load(meta(1)) == b""
    assert store.read(meta(1), 0, 10) == b""


def test_file_layout_and_reopening(tmp_path):
    store = SnapshotStore(tmp_path)
    store_snapshot(store, meta(5, 2), DATA)
    assert snap_files(tmp_path) == ["snapshot-00000000000000000005-00000000000000000002.snap"]
    assert snapshot_file_name(5, 2) == snap_files(tmp_path)[0]
    reopened = SnapshotStore(tmp_path)
    assert reopened.latest() == meta(5, 2)
    assert reopened.load(meta(5, 2)) == DATA
    assert temp_files(tmp_path) == []


def test_any_bytes_like_chunk(make_store):
    store = make_store()
    array = np.arange(100, dtype=np.uint32)
    with store.begin(meta(1)) as writer:
        writer.write(b"ab")
        writer.write(bytearray(b"cd"))
        writer.write(memoryview(b"xxef")[2:])
        writer.write(array)
        writer.write(b"")
        assert writer.size == 6 + array.nbytes
        writer.commit()
    assert store.load(meta(1)) == b"abcdef" + array.tobytes()


@given(
    data=st.binary(max_size=2000),
    write_sizes=st.lists(st.integers(1, 700), min_size=1, max_size=8),
    read_size=st.integers(1, 900),
)
def test_chunked_write_and_read_equal_the_whole(tmp_path_factory, data, write_sizes, read_size):
    for store in (SnapshotStore(tmp_path_factory.mktemp("snap")), MemorySnapshotStore()):
        with store.begin(meta(7)) as writer:
            position, turn = 0, 0
            while position < len(data):
                size = write_sizes[turn % len(write_sizes)]
                writer.write(data[position : position + size])
                position += size
                turn += 1
            writer.commit()
        assert store.load(meta(7)) == data
        pieces, offset = [], 0
        while True:
            piece = store.read(meta(7), offset, read_size)
            if not piece:
                break
            assert len(piece) <= read_size
            pieces.append(piece)
            offset += len(piece)
        assert b"".join(pieces) == data


def test_read_bounds(make_store):
    store = make_store()
    store_snapshot(store, meta(1), DATA)
    assert store.read(meta(1), 0, 5) == DATA[:5]
    assert store.read(meta(1), len(DATA) - 2, 100) == DATA[-2:]
    assert store.read(meta(1), len(DATA), 100) == b""
    assert store.read(meta(1), len(DATA) + 50, 100) == b""
    for offset, size in [(-1, 5), (0, 0), (0, -3), (1.5, 3)]:
        with pytest.raises(ValueError):
            store.read(meta(1), offset, size)


def test_missing_snapshot_is_a_storage_error(make_store):
    store = make_store()
    store_snapshot(store, meta(1), DATA)
    for call in (lambda: store.read(meta(2), 0, 10), lambda: store.load(meta(2))):
        with pytest.raises(StorageError) as caught:
            call()
        assert caught.value.errno == errno.ENOENT


# -- writer life cycle ----------------------------------------------------------------------------


def test_abort_leaves_nothing(make_store):
    store = make_store()
    writer = store.begin(meta(3))
    writer.write(DATA)
    writer.abort()
    writer.abort()  # idempotent
    assert store.latest() is None
    if isinstance(store, SnapshotStore):
        assert os.listdir(store.directory) == []


def test_exception_in_the_block_aborts(make_store):
    store = make_store()
    with pytest.raises(RuntimeError, match="builder failed"), store.begin(meta(3)) as writer:
        writer.write(DATA)
        raise RuntimeError("builder failed")
    assert writer.state == "aborted"
    assert store.latest() is None


def test_leaving_the_block_without_commit_aborts(make_store):
    store = make_store()
    with store.begin(meta(3)) as writer:
        writer.write(DATA)
    assert writer.state == "aborted" and store.latest() is None


def test_using_a_finished_writer_is_a_bug(make_store):
    store = make_store()
    writer = store.begin(meta(3))
    writer.commit()
    writer.abort()  # no-op after commit
    assert store.latest() == meta(3)
    with pytest.raises(InvariantError):
        writer.write(b"x")
    with pytest.raises(InvariantError):
        writer.commit()
    aborted = store.begin(meta(4))
    aborted.abort()
    with pytest.raises(InvariantError):
        aborted.write(b"x")


def test_dropped_writer_warns_and_cleans_up(tmp_path):
    store = SnapshotStore(tmp_path)
    writer = store.begin(meta(3))
    writer.write(DATA)
    with pytest.warns(ResourceWarning, match="neither committed nor aborted"):
        del writer
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize(
    "bad",
    [
        SnapshotMeta(-1, 1, (1,)),
        SnapshotMeta(1, -1, (1,)),
        SnapshotMeta(1, 1, (0,)),
        SnapshotMeta(1, 1, (1,), (-2,)),
        SnapshotMeta(2**64, 1, (1,)),
        (1, 1),
    ],
)
def test_invalid_meta_is_a_bug(make_store, bad):
    with pytest.raises(InvariantError):
        make_store().begin(bad)


def test_concurrent_writers(make_store):
    store = make_store(keep=3)
    first, second = store.begin(meta(10)), store.begin(meta(20))
    first.write(b"first")
    second.write(b"second")
    first.commit()
    second.commit()
    assert store.latest() == meta(20)
    assert store.load(meta(10)) == b"first" and store.load(meta(20)) == b"second"


# -- ordering -------------------------------------------------------------------------------------


def test_older_snapshots_are_refused(make_store):
    store = make_store()
    store_snapshot(store, meta(20, 2), DATA)
    with pytest.raises(LogCompactedError):
        store.begin(meta(10, 2))


def test_a_writer_overtaken_by_a_newer_snapshot_is_refused_at_commit(make_store):
    store = make_store()
    slow = store.begin(meta(10))
    slow.write(DATA)
    store_snapshot(store, meta(20), b"newer")
    with pytest.raises(LogCompactedError):
        slow.commit()
    assert slow.state == "aborted"
    assert store.latest() == meta(20) and store.list_snapshots() == [(20, 1)]
    if isinstance(store, SnapshotStore):
        assert temp_files(store.directory) == []


def test_contradicting_terms_are_a_bug(make_store):
    store = make_store()
    store_snapshot(store, meta(20, 5), DATA)
    with pytest.raises(InvariantError):
        store.begin(meta(20, 4))
    with pytest.raises(InvariantError):
        store.begin(meta(20, 6))
    with pytest.raises(InvariantError):
        store.begin(meta(30, 4))


def test_the_same_snapshot_can_be_stored_again(make_store):
    store = make_store()
    store_snapshot(store, meta(20, 5), b"built locally")
    store_snapshot(store, meta(20, 5), b"installed from the leader")
    assert store.list_snapshots() == [(20, 5)]
    assert store.load(meta(20, 5)) == b"installed from the leader"


# -- release --------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_commit_releases_snapshots_beyond_keep(make_store, keep):
    store = make_store(keep=keep)
    for index in range(1, 6):
        store_snapshot(store, meta(index * 10, index), DATA[:index])
        expected = [(i * 10, i) for i in range(max(1, index - keep + 1), index + 1)]
        assert store.list_snapshots() == expected
    for index, term in store.list_snapshots():
        assert store.load(meta(index, term)) == DATA[:term]


def test_keep_two_on_disk(tmp_path):
    store = SnapshotStore(tmp_path)  # keep=2 by default
    for index in (1, 2, 3):
        store_snapshot(store, meta(index), DATA)
    assert snap_files(tmp_path) == [snapshot_file_name(2, 1), snapshot_file_name(3, 1)]


@pytest.mark.parametrize("keep", [0, -1, True, "2", 1.0])
def test_keep_is_validated(tmp_path, keep):
    for build in (lambda: SnapshotStore(tmp_path, keep=keep), lambda: MemorySnapshotStore(keep)):
        with pytest.raises(ConfigError) as caught:
            build()
        assert caught.value.field == "keep"


# -- corruption -----------------------------------------------------------------------------------


def stored_file(
    tmp_path, index: int = 5, data: bytes = b"snapshot data, forty bytes long......."
) -> str:
    store = SnapshotStore(tmp_path)
    store_snapshot(store, meta(index, 2, voters=(1, 2), learners=(3,)), data)
    return str(tmp_path / snapshot_file_name(index, 2))


def test_every_bit_flip_is_a_corrupt_state_error(tmp_path):
    path = stored_file(tmp_path)
    with open(path, "rb") as handle:
        good = handle.read()
    for position in range(len(good)):
        for bit in range(8):
            damaged = bytearray(good)
            damaged[position] ^= 1 << bit
            with open(path, "wb") as handle:
                handle.write(damaged)
            store = SnapshotStore(tmp_path)
            with pytest.raises(CorruptStateError) as caught:
                store.latest()
            assert caught.value.path == path
            assert path in str(caught.value)
            with pytest.raises(CorruptStateError):
                SnapshotStore(tmp_path).load(meta(5, 2))
            with pytest.raises(CorruptStateError):
                SnapshotStore(tmp_path).read(meta(5, 2), 0, 4)


def test_every_truncation_is_a_corrupt_state_error(tmp_path):
    path = stored_file(tmp_path)
    with open(path, "rb") as handle:
        good = handle.read()
    for length in range(len(good)):
        with open(path, "wb") as handle:
            handle.write(good[:length])
        with pytest.raises(CorruptStateError) as caught:
            SnapshotStore(tmp_path).latest()
        assert caught.value.path == path
        assert caught.value.offset is not None
    with open(path, "ab") as handle:
        handle.write(good[-1:] + b"\x00")  # the full file plus one trailing byte
    with pytest.raises(CorruptStateError, match="trailing"):
        SnapshotStore(tmp_path).latest()


def test_a_renamed_snapshot_does_not_verify(tmp_path):
    path = stored_file(tmp_path)
    os.rename(path, tmp_path / snapshot_file_name(6, 2))
    with pytest.raises(CorruptStateError, match="file name"):
        SnapshotStore(tmp_path).latest()


def test_corrupt_newest_is_not_skipped_silently(tmp_path):
    store = SnapshotStore(tmp_path, keep=3)
    store_snapshot(store, meta(1), b"old")
    store_snapshot(store, meta(2), b"new")
    newest = tmp_path / snapshot_file_name(2, 1)
    newest.write_bytes(newest.read_bytes()[:-1])
    reopened = SnapshotStore(tmp_path, keep=3)
    with pytest.raises(CorruptStateError) as caught:
        reopened.latest()
    assert caught.value.path == str(newest)
    with pytest.raises(CorruptStateError):
        reopened.latest()  # still, from the cached verdict
    assert reopened.latest(skip_corrupt=True) == meta(1)
    assert reopened.load(meta(1)) == b"old"
    assert newest.exists()  # left for inspection


def test_only_the_newest_is_verified(tmp_path):
    store = SnapshotStore(tmp_path, keep=3)
    store_snapshot(store, meta(1), b"old")
    store_snapshot(store, meta(2), b"new")
    (tmp_path / snapshot_file_name(1, 1)).write_bytes(b"garbage")
    assert SnapshotStore(tmp_path).latest() == meta(2)


def test_release_after_skipping_a_corrupt_snapshot(tmp_path):
    store = SnapshotStore(tmp_path)
    store_snapshot(store, meta(1), b"one")
    store_snapshot(store, meta(2), b"two")
    (tmp_path / snapshot_file_name(2, 1)).write_bytes(b"garbage")
    reopened = SnapshotStore(tmp_path)
    assert reopened.latest(skip_corrupt=True) == meta(1)
    store_snapshot(reopened, meta(2), b"two again")  # replaces the damaged file
    assert reopened.latest() == meta(2)
    store_snapshot(reopened, meta(3), b"three")
    assert reopened.list_snapshots() == [(2, 1), (3, 1)]


# -- failures and crashes ------------------------------------------------------------------------


def test_crash_leftovers_are_removed_on_open(tmp_path):
    store = SnapshotStore(tmp_path)
    store_snapshot(store, meta(1), b"committed")
    crashed = store.begin(meta(2))  # a crash before commit leaves its temporary file
    crashed.write(DATA)
    (tmp_path / (snapshot_file_name(3, 1) + ".deadbeef.tmp")).write_bytes(b"partial")
    assert len(temp_files(tmp_path)) == 2
    reopened = SnapshotStore(tmp_path)
    assert temp_files(tmp_path) == []
    assert reopened.latest() == meta(1)
    assert reopened.load(meta(1)) == b"committed"
    crashed.abort()  # close the descriptor the "crashed" process held


def test_a_released_snapshot_a_crash_brings_back_is_ignored_then_released(tmp_path,
                                                                           monkeypatch):
    # Releasing old snapshots is not fsynced (the commit before it was): a crash may undo
    # the unlink. The store must then read the newest and release the old one again.
    synced = []
    monkeypatch.setattr(snapshots_module, "fsync_directory", synced.append)
    store = SnapshotStore(tmp_path, keep=1)
    store_snapshot(store, meta(1), b"one")
    kept = (tmp_path / snapshot_file_name(1, 1)).read_bytes()
    synced.clear()
    store_snapshot(store, meta(2), b"two")
    assert synced == [str(tmp_path)]  # the commit's rename, not the release after it
    assert snap_files(tmp_path) == [snapshot_file_name(2, 1)]
    (tmp_path / snapshot_file_name(1, 1)).write_bytes(kept)  # the unlink undone by a crash
    reopened = SnapshotStore(tmp_path, keep=1)
    assert reopened.latest() == meta(2)
    assert reopened.load(meta(2)) == b"two"
    store_snapshot(reopened, meta(3), b"three")
    assert snap_files(tmp_path) == [snapshot_file_name(3, 1)]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_write_failure_keeps_the_old_snapshot(tmp_path, monkeypatch, code):
    store = SnapshotStore(tmp_path)
    store_snapshot(store, meta(1), b"committed")
    writer = store.begin(meta(2))
    writer.write(b"some")
    monkeypatch.setattr(os, "write", fail_with(code))
    with pytest.raises(StorageError) as caught:
        writer.write(DATA)
    monkeypatch.undo()
    assert type(caught.value) is (StorageFullError if code == errno.ENOSPC else StorageError)
    assert caught.value.errno == code
    assert caught.value.path.startswith(str(tmp_path / snapshot_file_name(2, 1)))
    assert writer.state == "aborted"
    assert temp_files(tmp_path) == [] and snap_files(tmp_path) == [snapshot_file_name(1, 1)]
    assert SnapshotStore(tmp_path).load(meta(1)) == b"committed"


@pytest.mark.parametrize("call", ["fsync", "replace", "pwrite"])
def test_commit_failure_keeps_the_old_snapshot(tmp_path, monkeypatch, call):
    store = SnapshotStore(tmp_path)
    store_snapshot(store, meta(1), b"committed")
    writer = store.begin(meta(2))
    writer.write(DATA)
    monkeypatch.setattr(os, call, fail_with(errno.ENOSPC))
    with pytest.raises(StorageFullError) as caught:
        writer.commit()
    monkeypatch.undo()
    assert caught.value.path == str(tmp_path / snapshot_file_name(2, 1))
    assert writer.state == "aborted"
    assert temp_files(tmp_path) == []
    reopened = SnapshotStore(tmp_path)
    assert reopened.latest() == meta(1) and reopened.load(meta(1)) == b"committed"


def test_begin_failure_leaves_nothing(tmp_path, monkeypatch):
    store = SnapshotStore(tmp_path)
    monkeypatch.setattr(os, "write", fail_with(errno.ENOSPC))
    with pytest.raises(StorageFullError):
        store.begin(meta(1))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []
