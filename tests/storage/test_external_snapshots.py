"""External snapshots (issue 15, finding 2): a disk state machine's store is its snapshot, so
storage records only the metadata, durably, before it releases the log behind it; the leader
sends an export of the store that the runtime hands over. Storage never releases entries
that no durable snapshot covers."""

from __future__ import annotations

import pytest

from pyraft.core import Configuration, MemoryLogStorage, Snapshot, SnapshotMeta
from pyraft.errors import CorruptStateError, InvariantError, SnapshotUnavailableError
from pyraft.storage.files import SpooledData
from pyraft.storage.log import DurableLogStorage
from pyraft.storage.snapshots import MemorySnapshotStore, SnapshotStore, snapshot_file_name
from raftcore.framing import encode_entries

VOTERS = Configuration(frozenset({1, 2, 3}))


def filled(storage, count=300, term=1):
    for i in range(1, count + 1):
        storage.append(encode_entries(i, term, [b"%d" % i * 20]))
    if hasattr(storage, "sync"):
        storage.sync()
    return storage


def durable(path):
    return DurableLogStorage(path, VOTERS, segment_bytes_max=1024)


# ---- the invariant ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["durable", "memory"])
def test_the_log_is_never_released_past_the_durable_snapshot(tmp_path, kind):
    storage = filled(durable(tmp_path) if kind == "durable" else MemoryLogStorage(VOTERS))
    with pytest.raises(InvariantError, match="covers only up to 0"):
        storage.compact(250)  # no snapshot at all (what the runtime did for a disk machine)
    assert storage.first_index() == 1
    assert storage.entries(1, 2).payload(0).tobytes() == b"1" * 20
    storage.create_snapshot(100, b"state", VOTERS)
    with pytest.raises(InvariantError, match="covers only up to 100"):
        storage.compact(101)
    storage.compact(100)  # what the snapshot covers may go
    assert storage.first_index() == 101 and storage.term(100) == 1


def test_the_durable_log_keeps_its_segments_when_release_is_refused(tmp_path):
    storage = filled(durable(tmp_path))
    segments = len(storage.wal.segments)
    with pytest.raises(InvariantError):
        storage.compact(250)
    assert len(storage.wal.segments) == segments and storage.wal.first_index() == 1
    storage.close()


# ---- recording, restarts ---------------------------------------------------------------------
def test_an_external_snapshot_is_recorded_before_the_log_goes_and_survives_a_restart(tmp_path):
    storage = filled(durable(tmp_path))
    recorded = storage.create_snapshot(250, None, VOTERS)
    assert recorded.meta == SnapshotMeta(250, 1, **VOTERS.snapshot_fields())
    assert recorded.data == b""
    assert storage.snapshot_is_external() and storage.first_index() == 251
    assert storage.wal.first_index() > 1  # segments were released behind it
    storage.close()

    again = durable(tmp_path)
    assert again.snapshot_is_external()
    assert again.latest_snapshot_meta().index == 250 and again.term(250) == 1
    assert (again.first_index(), again.last_index()) == (251, 300)
    assert again.initial_state()[1] == VOTERS
    again.close()


def test_the_snapshot_file_says_it_is_external(tmp_path):
    store = SnapshotStore(tmp_path)
    meta = SnapshotMeta(7, 2, (1, 2, 3))
    with store.begin(meta, external=True) as writer:
        with pytest.raises(InvariantError):
            writer.write(b"data")
    with store.begin(meta, external=True) as writer:
        writer.commit()
    assert SnapshotStore(tmp_path).external(meta)
    assert SnapshotStore(tmp_path).snapshot(meta) == Snapshot(meta, b"")
    newer = SnapshotMeta(9, 2, (1, 2, 3))
    with store.begin(newer) as writer:
        writer.write(b"state")
        writer.commit()
    assert not SnapshotStore(tmp_path).external(newer)
    memory = MemorySnapshotStore()
    with memory.begin(meta, external=True) as writer:
        writer.commit()
    assert memory.external(meta) and memory.load(meta) == b""


def test_an_external_snapshot_holding_data_is_corrupt(tmp_path):
    store = SnapshotStore(tmp_path)
    meta = SnapshotMeta(7, 2, (1, 2, 3))
    with store.begin(meta, external=True) as writer:
        writer.commit()
    path = tmp_path / snapshot_file_name(7, 2)
    raw = bytearray(path.read_bytes())
    # splice 3 data bytes in (length field and trailer patched): only the flag is wrong
    from pyraft.storage.snapshots import _DATA_LENGTH, _PREFIX, _TRAILER, crc32c

    meta_length = int.from_bytes(raw[6:10], "big")
    at = _PREFIX.size + meta_length
    body = bytes(raw[:at]) + _DATA_LENGTH.pack(3) + b"abc"
    path.write_bytes(body + _TRAILER.pack(crc32c(body)))
    with pytest.raises(CorruptStateError, match="external snapshot holds 3 data bytes"):
        SnapshotStore(tmp_path).latest()


def test_a_follower_records_an_installed_snapshot_as_external(tmp_path):
    storage = filled(durable(tmp_path), 20)
    meta = SnapshotMeta(90, 2, (1, 2, 3))
    storage.apply_snapshot(Snapshot(meta, b""), external=True)
    assert storage.snapshot_is_external()
    assert (storage.first_index(), storage.last_index()) == (91, 90)
    storage.append(encode_entries(91, 2, [b"next"]))
    storage.sync()
    storage.close()
    again = durable(tmp_path)
    assert again.snapshot_is_external() and again.latest_snapshot_meta() == meta
    assert (again.first_index(), again.last_index()) == (91, 91)
    again.close()


# ---- exports ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["durable", "memory"])
def test_the_leader_sends_an_export_the_runtime_hands_over(tmp_path, kind):
    storage = filled(durable(tmp_path) if kind == "durable" else MemoryLogStorage(VOTERS))
    storage.create_snapshot(100, None, VOTERS)
    wanted = []
    storage.snapshot_wanted = lambda: wanted.append(True)
    with pytest.raises(SnapshotUnavailableError):
        storage.snapshot()
    assert wanted == [True]
    data = SpooledData.spool([b"state ", b"at 120"], tmp_path)
    stale = Snapshot(SnapshotMeta(90, 1, **VOTERS.snapshot_fields()), b"old")
    assert not storage.offer_export(stale)  # older than what is recorded
    beyond = Snapshot(SnapshotMeta(301, 1, **VOTERS.snapshot_fields()), b"?")
    assert not storage.offer_export(beyond)  # past the log
    export = Snapshot(SnapshotMeta(120, 1, **VOTERS.snapshot_fields()), data)
    assert storage.offer_export(export)
    sent = storage.snapshot()
    assert sent.meta.index == 120 and len(sent.data) == 12
    assert sent.data[0:6] == b"state " and sent.data[6:100] == b"at 120"
    storage.create_snapshot(110, None, VOTERS)  # older than the export: it stays
    assert storage.snapshot() is sent
    storage.create_snapshot(150, None, VOTERS)  # newer: the export is dropped and closed
    with pytest.raises(SnapshotUnavailableError):
        storage.snapshot()
    assert len(wanted) == 2
    with pytest.raises(InvariantError):
        data[0:1]


def test_an_export_is_refused_unless_the_snapshot_is_external(tmp_path):
    storage = filled(durable(tmp_path))
    storage.create_snapshot(100, b"state", VOTERS)
    assert bytes(storage.snapshot().data) == b"state"
    data = SpooledData.spool([b"x"], tmp_path)
    assert not storage.offer_export(Snapshot(SnapshotMeta(120, 1, (1, 2, 3)), data))
    storage.close()


# ---- an install a crash interrupted ----------------------------------------------------------
def test_an_install_interrupted_after_the_import_is_finished_at_start(tmp_path):
    storage = filled(durable(tmp_path), 20)
    meta = SnapshotMeta(90, 2, (1, 2, 3))
    storage.prepare_install(meta)
    storage.close()  # a crash: the store imported the snapshot, the metadata is not recorded
    again = durable(tmp_path)
    assert again.resolve_install(persisted_index=90) == meta
    assert again.snapshot_is_external() and again.latest_snapshot_meta() == meta
    assert (again.first_index(), again.last_index()) == (91, 90)
    assert again.resolve_install(persisted_index=90) is None  # done once
    again.close()
    assert durable(tmp_path).latest_snapshot_meta() == meta


def test_an_install_interrupted_before_the_import_is_forgotten(tmp_path):
    storage = filled(durable(tmp_path), 20)
    storage.prepare_install(SnapshotMeta(90, 2, (1, 2, 3)))
    storage.close()
    again = durable(tmp_path)
    assert again.resolve_install(persisted_index=12) is None  # the store kept its old state
    assert (again.first_index(), again.last_index()) == (1, 20)
    assert again.snapshots.pending() is None
    again.close()
