"""A disk state machine in a real runtime (issue 15, finding 2): its store is its snapshot.

The leader compacts its log behind the store's flushes; a follower that was cut off meanwhile
(or a member that joins later) can only catch up through an InstallSnapshot whose bytes come
from the leader's store (``open_snapshot``), installed into the follower's store
(``install_chunks``). Storage never releases log entries that no durable snapshot covers."""

from __future__ import annotations

import asyncio

import msgpack

from pyraft.storage.log import DurableLogStorage
from pyraft.storage.state_machine import DiskStateMachine
from pyraft.testing.cluster import leader_of, memory_cluster, run_on_fresh_loop
from pyraft.transport.memory import MemoryNetwork


class DiskKV(DiskStateMachine):
    """A store whose durable copy is a dict; ``flush`` copies the working state into it."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.durable = {"index": 0, "data": {}}
        self.data: dict = {}
        self.applied = 0
        self.imports: list[int] = []

    def apply(self, index, command):
        key, value = msgpack.unpackb(command)
        self.applied = index
        previous = self.data.get(key)
        self.data[key] = value
        return previous

    def persisted_index(self):
        return self.durable["index"]

    def flush(self):
        self.durable = {"index": self.applied, "data": dict(self.data)}

    def export_snapshot(self):
        state = msgpack.packb([self.durable["index"], sorted(self.durable["data"].items())])
        return iter([state[i:i + 1000] for i in range(0, len(state), 1000)])

    def import_snapshot(self, chunks, index):
        stored, items = msgpack.unpackb(b"".join(chunks))
        assert stored == index
        self.data = dict(items)
        self.applied = index
        self.imports.append(index)
        self.flush()


def test_a_follower_cut_off_while_the_leader_compacts_catches_up_by_snapshot(tmp_path):
    async def body():
        network = MemoryNetwork(through_codec=True)

        def storage(member):
            return DurableLogStorage(tmp_path / f"m{member}", segment_bytes_max=16 * 1024)

        async with memory_cluster(network, storage=storage,
                                  machine=lambda: DiskKV(snapshot_entries=50)) as members:
            leader = await leader_of(members)
            lagging = next(m for m in members if m is not leader)
            network.isolate(lagging.id)
            for i in range(600):
                await leader.replicate(msgpack.packb([f"k{i}", i]))
            assert leader.storage.first_index() > 100  # compacted behind the store
            assert leader.storage.wal.first_index > 1  # segments were released
            network.heal()
            for _ in range(400):
                if lagging.applied_index >= leader.commit_index:
                    break
                await asyncio.sleep(0.01)
            assert leader.fatal_error is None and leader.is_leader
            assert lagging.state_machine.imports, "caught up without a snapshot?"
            assert lagging.state_machine.data == leader.state_machine.data
            assert len(lagging.state_machine.data) == 600

    run_on_fresh_loop(body, timeout_s=30)
