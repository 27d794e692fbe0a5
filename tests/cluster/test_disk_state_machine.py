"""A disk state machine in a real runtime (issue 15, finding 2): its store is its snapshot.

The leader compacts its log behind the store's flushes; a follower that was cut off meanwhile
(or a member that joins later) can only catch up through an InstallSnapshot whose bytes come
from the leader's store (``open_snapshot``), installed into the follower's store
(``install_chunks``). Storage never releases log entries that no durable snapshot covers."""

from __future__ import annotations

import msgpack

from pyraft.cluster import RaftCluster
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


def durable(tmp_path):
    """Durable storage per member with small segments, so compaction releases some."""
    def storage(member):
        return DurableLogStorage(tmp_path / f"m{member}", segment_bytes_max=16 * 1024)

    return storage


async def cut_off_while_writing(members, network, writes):
    """Cut a follower off and write ``writes`` keys through the leader: (leader, follower)."""
    leader = await leader_of(members)
    lagging = next(m for m in members if m is not leader)
    network.isolate(lagging.id)
    for i in range(writes):
        await leader.replicate(msgpack.packb([f"k{i}", i]))
    return leader, lagging


def test_a_follower_cut_off_while_the_leader_compacts_catches_up_by_snapshot(tmp_path):
    async def body():
        network = MemoryNetwork(through_codec=True)
        async with memory_cluster(network, storage=durable(tmp_path),
                                  machine=lambda: DiskKV(snapshot_entries=50)) as members:
            leader, lagging = await cut_off_while_writing(members, network, 600)
            assert leader.storage.first_index() > 100  # compacted behind the store
            assert leader.storage.wal.first_index() > 1  # segments were released
            network.heal()
            await lagging.wait_for_applied(leader.commit_index, timeout=4.0)
            assert leader.fatal_error is None and leader.is_leader
            assert lagging.state_machine.imports, "caught up without a snapshot?"
            assert lagging.state_machine.data == leader.state_machine.data
            assert len(lagging.state_machine.data) == 600

    run_on_fresh_loop(body, timeout_s=30)


def test_a_member_whose_install_a_crash_interrupted_starts(tmp_path):
    """The store imported the leader's snapshot at 50, the member died before the metadata
    was recorded: at start the store is ahead of the log, and the install is finished."""
    from pyraft.core import Configuration, HardState, SnapshotMeta
    from raftcore.framing import encode_entries

    peers = {1: "127.0.0.1:7201"}
    storage = DurableLogStorage(tmp_path / "m1", Configuration(frozenset({1})))
    storage.append(encode_entries(1, 1, [msgpack.packb([f"old{i}", i]) for i in range(20)]))
    storage.sync()
    storage.set_hard_state(HardState(2, 0, 20))  # the snapshot came from a leader of term 2
    storage.prepare_install(SnapshotMeta(50, 2, (1,)))
    storage.close()
    machine = DiskKV()
    machine.import_snapshot([msgpack.packb([50, [["k", 1]]])], 50)

    async def body():
        network = MemoryNetwork()
        async with memory_cluster(network, peers,
                                  storage=lambda m: DurableLogStorage(tmp_path / f"m{m}"),
                                  machine=lambda: machine) as members:
            (member,) = members
            await leader_of(members)
            assert await member.replicate(msgpack.packb(["k", 2])) == 1
            assert member.storage.latest_snapshot_meta().index == 50
            assert member.applied_index > 50 and machine.data == {"k": 2}

    run_on_fresh_loop(body, timeout_s=30)


class FlakyExportKV(DiskKV):
    """Its first export fails as a full disk would."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.exports = 0

    def export_snapshot(self):
        self.exports += 1
        if self.exports == 1:
            raise OSError(28, "No space left on device")
        return super().export_snapshot()


def test_a_failed_export_is_retried_and_the_leader_keeps_serving(tmp_path):
    async def body():
        network = MemoryNetwork()
        async with memory_cluster(network, storage=durable(tmp_path),
                                  machine=lambda: FlakyExportKV(snapshot_entries=50)) as members:
            leader, lagging = await cut_off_while_writing(members, network, 300)
            network.heal()
            await lagging.wait_for_applied(leader.commit_index, timeout=5.0)
            assert leader.fatal_error is None and leader.is_leader
            assert leader.state_machine.exports >= 2
            assert leader.metrics.storage_failures.value() >= 1
            assert lagging.state_machine.data == leader.state_machine.data

    run_on_fresh_loop(body, timeout_s=30)


class FileKV(DiskKV):
    """DiskKV whose durable copy is a file, so it outlives the instance (a real store)."""

    def __init__(self, path, **options) -> None:
        super().__init__(**options)
        self.path = path
        if path.exists():
            index, items = msgpack.unpackb(path.read_bytes())
            self.durable = {"index": index, "data": dict(items)}
            self.data, self.applied = dict(self.durable["data"]), index

    def flush(self):
        super().flush()
        self.path.write_bytes(msgpack.packb([self.durable["index"],
                                             sorted(self.durable["data"].items())]))


def test_from_config_with_a_disk_state_machine_compacts_and_restarts(tmp_path):
    from pyraft.config import ClusterConfig

    async def body():
        for data_dir in (str(tmp_path / "d"), None):
            config = ClusterConfig(member_id=1, listen="127.0.0.1:0", data_dir=data_dir,
                                   tick_ms=5).validate()
            path = tmp_path / f"store-{data_dir is None}"
            for round_ in range(2 if data_dir else 1):
                machine = FileKV(path, snapshot_entries=50)
                async with RaftCluster.from_config(config, state_machine=machine) as member:
                    await leader_of([member])
                    if round_ == 0:
                        for i in range(120):
                            await member.replicate(msgpack.packb([f"k{i}", i]))
                        meta = member.storage.latest_snapshot_meta()
                        assert meta.index >= 100 and member.storage.snapshot_is_external()
                        assert member.storage.first_index() == meta.index + 1
                    else:  # restarted from the store and the log after its last flush
                        assert member.storage.snapshot_is_external()
                        assert await member.replicate(msgpack.packb(["k119", 0])) == 119
                        assert len(machine.data) == 120

    run_on_fresh_loop(body, timeout_s=30)
