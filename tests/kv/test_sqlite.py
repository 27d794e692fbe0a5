"""SqliteKVStateMachine: the key-value store in SQLite gives the results of KVStateMachine
entry for entry, survives restarts at its flush points, and moves between members through
export/import (a disk state machine's snapshot)."""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyraft.core import Configuration, MemoryLogStorage
from pyraft.errors import InvariantError
from pyraft.kv import KVStateMachine, OpenSession, Put, SnapshotFormatError
from pyraft.kv.sqlite import DATABASE_NAME, SqliteKVStateMachine
from raftcore.framing import KIND_COMMAND, encode_entries
from tests.kv.test_machine import log_entries

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
encode = KVStateMachine.encode


def batches(entries, cuts):
    """``entries`` cut into consecutive batches at the positions in ``cuts``."""
    edges = sorted({0, len(entries), *(c for c in cuts if 0 < c < len(entries))})
    return [entries[a:b] for a, b in zip(edges, edges[1:])]


def apply_entries(machine, entries) -> list:
    if not entries:
        return []
    kinds = [kind for kind, _ in entries]
    batch = encode_entries(machine.applied_index + 1, 1, [p for _, p in entries], kinds)
    return machine.apply_batch(batch)


def same_state(sqlite, memory):
    assert dict(sqlite.data) == dict(memory.data)
    assert sqlite.sessions == memory.sessions
    assert list(sqlite.sessions) == list(memory.sessions)  # least recently active first


@SETTINGS
@given(log_entries(), st.data())
def test_the_same_results_and_state_as_the_memory_machine(entries, data):
    limits = {
        "session_ttl_entries": data.draw(st.sampled_from([3, 12, 1000])),
        "sessions_max": data.draw(st.sampled_from([2, 4, 100])),
    }
    cuts = data.draw(st.lists(st.integers(0, len(entries)), max_size=4))
    restart_after = data.draw(st.integers(0, 4))
    memory = KVStateMachine(compaction=None, **limits)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, DATABASE_NAME)
        sqlite = SqliteKVStateMachine(path, **limits)
        try:
            for number, part in enumerate(batches(entries, cuts)):
                assert apply_entries(sqlite, part) == apply_entries(memory, part)
                same_state(sqlite, memory)
                if number == restart_after:  # flushed, closed, reopened: the same state
                    sqlite.close()
                    sqlite = SqliteKVStateMachine(path, **limits)
                    assert sqlite.recover(MemoryLogStorage(), memory.applied_index) \
                        == memory.applied_index
                    same_state(sqlite, memory)
        finally:
            sqlite.close()


def entries_for(count, first_client=1):
    """An OpenSession, then ``count`` puts by that client (indexes from ``first_client``)."""
    return [(KIND_COMMAND, encode(OpenSession(None)))] + [
        (KIND_COMMAND, encode(Put(first_client, i, b"k%05d" % i, b"v%d" % i)))
        for i in range(1, count + 1)
    ]


def test_export_and_import_round_trip(tmp_path, monkeypatch):
    import pyraft.kv.sqlite as module

    monkeypatch.setattr(module, "EXPORT_CHUNK_BYTES", 1000)  # many chunks
    leader = SqliteKVStateMachine(tmp_path / "a.sqlite3", snapshot_entries=10_000)
    apply_entries(leader, entries_for(2000))
    index, chunks = leader.open_snapshot()
    assert index == leader.persisted_index() == 2001
    apply_entries(leader, [(KIND_COMMAND, encode(Put(1, 2001, b"later", b"!")))])  # not in it
    chunks = list(chunks)
    assert len(chunks) > 10 and max(map(len, chunks)) < 1100

    follower = SqliteKVStateMachine(tmp_path / "b.sqlite3")
    apply_entries(follower, entries_for(3))  # replaced by the import
    follower.install_chunks(index, iter(chunks))
    assert follower.applied_index == follower.persisted_index() == 2001
    assert len(follower.data) == 2000 and follower.data[b"k01999"] == b"v1999"
    assert b"later" not in follower.data
    assert follower.sessions[1].last_sequence == 2000
    # both go on alike from there
    step = [(KIND_COMMAND, encode(Put(1, 2001, b"later", b"!")))]
    assert apply_entries(follower, step) == [None]
    assert dict(follower.data) == dict(leader.data) and follower.sessions == leader.sessions
    follower.close()
    again = SqliteKVStateMachine(tmp_path / "b.sqlite3")  # the import is durable
    assert again.persisted_index() == 2002 and len(again.data) == 2001
    again.close()
    leader.close()


def test_a_damaged_snapshot_changes_nothing(tmp_path):
    leader = SqliteKVStateMachine(tmp_path / "a.sqlite3")
    apply_entries(leader, entries_for(50))
    index, chunks = leader.open_snapshot()
    data = b"".join(chunks)
    leader.close()
    for damaged, at in ((data[:-3], index), (data, index + 1), (b"\x93junk" + data, index)):
        follower = SqliteKVStateMachine(tmp_path / "b.sqlite3")
        follower.recover(MemoryLogStorage(), 0)
        before = (dict(follower.data), follower.sessions)
        with pytest.raises(SnapshotFormatError):
            follower.install_chunks(at, [damaged])
        assert (dict(follower.data), follower.sessions) == before  # rolled back
        with pytest.raises(InvariantError):  # the machine refuses work until restarted
            apply_entries(follower, entries_for(1))
        follower.close()  # a broken machine is not flushed: its files are closed


def test_a_restart_replays_what_the_last_flush_did_not_cover(tmp_path):
    log = MemoryLogStorage(Configuration(frozenset({1})))
    entries = entries_for(30)
    log.append(encode_entries(1, 1, [p for _, p in entries]))
    machine = SqliteKVStateMachine(tmp_path / "kv.sqlite3", snapshot_entries=20)
    flushed = []
    machine.snapshot_sink = lambda index, data: flushed.append((index, data))
    for i in range(1, 32):
        machine.apply_batch(log.entries(i, i + 1))
    assert flushed == [(20, None)] and machine.persisted_index() == 20
    machine._db.close()  # a crash: nothing more is flushed
    machine._reader.close()
    again = SqliteKVStateMachine(tmp_path / "kv.sqlite3", snapshot_entries=20)
    assert 20 <= again.persisted_index() <= 31  # batches commit unsynced, atomically
    assert again.recover(log, 31) == 31
    assert again.data[b"k00030"] == b"v30" and again.sessions[1].last_sequence == 30
    again.close()
