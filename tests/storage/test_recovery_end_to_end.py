"""A memory-based state machine on durable storage: it snapshots through the snapshot
store while the log compacts, and after a restart (and after a crash that lost the
unsynced tail) it recovers exactly the committed state from snapshot + log replay."""

from __future__ import annotations

import random

import msgpack

from pyraft.core import Configuration, HardState
from pyraft.storage.interpreter import Command, CommandInterpreter, handles
from pyraft.storage.log import DurableLogStorage
from pyraft.storage.state_machine import MemoryStateMachine
from raftcore.framing import encode_entries

VOTERS = Configuration(frozenset({1}))


class Store(Command):
    pass


class Put(Store, id=1):
    key: str
    value: int


class Delete(Store, id=2):
    key: str


class KVStore(MemoryStateMachine, CommandInterpreter):
    def __init__(self, **options):
        super().__init__(**options)
        self.data: dict[str, int] = {}

    def apply(self, index, command):
        return self.dispatch(command, index)

    @handles(Put)
    def put(self, command, index):
        self.data[command.key] = command.value

    @handles(Delete)
    def delete(self, command, index):
        return self.data.pop(command.key, None)

    def build_snapshot(self):
        return msgpack.packb(self.data)

    def restore_snapshot(self, data):
        self.data = msgpack.unpackb(data) if data else {}


def open_node(path):
    storage = DurableLogStorage(path, VOTERS, segment_bytes_max=8 * 1024)

    def sink(index, data):
        payload = data if isinstance(data, bytes) else b"".join(data)
        storage.create_snapshot(index, payload, VOTERS)

    machine = KVStore(compaction="sequential", snapshot_entries=150, snapshot_sink=sink)
    snapshot = storage.snapshot() if storage.snapshot().meta.index else None
    machine.recover(storage, storage.hard_state.commit, snapshot)
    return storage, machine


def test_snapshot_compaction_and_recovery(tmp_path):
    rng = random.Random(3)
    storage, machine = open_node(tmp_path)
    expected: dict[str, int] = {}
    committed = 0
    lagged = 0
    for round_ in range(6):
        for _ in range(120):
            key = f"k{rng.randrange(20)}"
            if rng.random() < 0.8:
                command = Put(key=key, value=rng.randrange(1000))
                expected[key] = command.value
            else:
                command = Delete(key=key)
                expected.pop(key, None)
            first = storage.last_index() + 1
            batch = encode_entries(first, 1, [KVStore.encode(command)])
            storage.append(batch)
            committed = storage.sync()  # a single member: durable means committed
            storage.set_hard_state(HardState(1, 1, committed))
            machine.apply_batch(batch)
        assert machine.data == expected
        if round_ % 2:
            # a crash: an entry appended but never synced nor committed is not applied
            storage.append(encode_entries(storage.last_index() + 1, 1,
                                          [KVStore.encode(Put(key="ghost", value=1))]))
            storage.wal.close()  # no sync, no hard-state save
        else:
            storage.close()
        storage, machine = open_node(tmp_path)
        # recovery stops at the persisted commit hint (it may lag: it is only a hint), and
        # never applies the ghost; the rest is applied once the commit index is known again
        assert machine.applied_index <= committed
        assert "ghost" not in machine.data
        assert machine.applied_index >= storage.snapshot().meta.index
        if machine.applied_index < committed:
            lagged += 1
            machine.apply_batch(storage.entries(machine.applied_index + 1, committed + 1))
        assert machine.data == expected, f"round {round_}"
        if storage.last_index() > committed:  # the unsynced tail survived in the page cache
            storage.append(encode_entries(committed + 1, 2, [KVStore.encode(Delete(key="x"))]))
            storage.sync()
            storage.wal.truncate_suffix(committed + 1)
    assert lagged > 0  # some restarts did start behind the commit index
    assert storage.snapshot().meta.index > 0  # compaction happened
    assert storage.first_index() > 1  # and released log segments
    storage.close()
