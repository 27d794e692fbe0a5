"""Snapshots stream from disk to disk (issue 15, finding 5), the storage side: the leader's
storage hands the core a file-backed view of the snapshot (no cached copy of the data), and a
follower writes received chunks to a temporary file (``write_at``: positional, retryable) that
is synced and installed atomically, without being read back."""

from __future__ import annotations

import errno
import os

import pytest

from pyraft.core import Configuration, Snapshot, SnapshotMeta
from pyraft.errors import StorageError
from pyraft.storage import snapshots as snapshot_module
from pyraft.storage.files import SpoolWriter
from pyraft.storage.log import DurableLogStorage
from pyraft.storage.snapshots import SnapshotStore, StoredSnapshotData
from raftcore.framing import encode_entries

VOTERS = Configuration(frozenset({1, 2, 3}))
META = SnapshotMeta(50, 4, (1, 2, 3))


def test_the_leader_reads_chunks_from_the_file_and_caches_no_data(tmp_path):
    storage = DurableLogStorage(tmp_path, VOTERS, segment_bytes_max=1024)
    storage.append(encode_entries(1, 1, [b"x"] * 10))
    state = os.urandom(100_000)
    storage.create_snapshot(10, state, VOTERS)
    snapshot = storage.snapshot()
    assert isinstance(snapshot.data, StoredSnapshotData)  # not bytes: nothing held whole
    assert len(snapshot.data) == len(state)
    assert snapshot.data[1000:1010] == state[1000:1010]
    assert b"".join(snapshot.data.chunks(4096)) == state
    assert bytes(snapshot.data) == state
    storage.close()


def test_received_chunks_are_installed_without_a_copy(tmp_path):
    storage = DurableLogStorage(tmp_path, VOTERS, segment_bytes_max=1024)
    storage.append(encode_entries(1, 1, [b"a", b"b"]))
    state = os.urandom(50_000)
    writer = storage.receive_snapshot(META)
    for offset in range(0, len(state), 8192):
        writer.write_at(offset, state[offset:offset + 8192])
        writer.write_at(offset, state[offset:offset + 8192])  # a duplicate is skipped
    installed = storage.install_received(writer)
    assert installed.meta == META and bytes(installed.data) == state
    assert (storage.first_index(), storage.last_index()) == (51, 50)
    storage.close()
    again = DurableLogStorage(tmp_path, VOTERS, segment_bytes_max=1024)
    assert again.snapshot().meta == META and bytes(again.snapshot().data) == state
    again.close()


def test_a_failed_chunk_write_or_commit_can_be_retried(tmp_path, monkeypatch):
    """A full disk while receiving: the runtime retries the same Ready; the chunk and the
    commit are written again and the snapshot verifies."""
    store = SnapshotStore(tmp_path)
    writer = store.begin(META)
    writer.write_at(0, b"first chunk ")
    real = snapshot_module._pwrite_all
    failing = [True, False, True]  # the chunk, its retry, the commit's trailer

    def full_disk(fd, view, offset):
        if failing and failing.pop(0):
            os.pwrite(fd, bytes(view)[:3], offset)  # a torn write, then no space
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, view, offset)

    monkeypatch.setattr(snapshot_module, "_pwrite_all", full_disk)
    with pytest.raises(StorageError):
        writer.write_at(12, b"second chunk")
    assert writer.state == "open" and writer.size == 12
    writer.write_at(12, b"second chunk")
    with pytest.raises(StorageError):
        writer.commit_retryable()
    assert writer.state == "open"
    assert writer.commit_retryable() == META
    assert store.load(META) == b"first chunk second chunk"  # verifies the checksum


def test_a_chunk_after_a_gap_is_a_bug(tmp_path):
    writer = SnapshotStore(tmp_path).begin(META)
    writer.write_at(0, b"abc")
    with pytest.raises(Exception, match="after 3 bytes"):
        writer.write_at(10, b"def")
    writer.abort()


def test_spool_writer_for_disk_state_machines_and_memory_logs(tmp_path):
    spool = SpoolWriter(META, tmp_path)
    spool.write_at(0, b"hello ")
    spool.write_at(0, b"hello ")
    spool.write_at(6, b"world")
    data = spool.data()
    assert len(data) == 11 and b"".join(data.chunks(4)) == b"hello world"
    assert os.listdir(tmp_path) == []  # unnamed: nothing left behind by a crash
    spool.abort()


def test_memory_snapshot_store_writes_at_offsets():
    store = snapshot_module.MemorySnapshotStore()
    writer = store.begin(META)
    writer.write_at(0, b"ab")
    writer.write_at(2, b"cd")
    writer.commit_retryable()
    assert store.snapshot(META) == Snapshot(META, b"abcd")
