"""User paths of ``RaftCluster``: what a user gets from ``RaftCluster.from_config`` with the
documented defaults, and what a writer sees when the runtime's own machinery fails.

Every test fails on an unhandled exception in the event loop and on tasks left running.
"""

from __future__ import annotations

import asyncio

import pytest

from pyraft.cluster import RaftCluster
from pyraft.config import ClusterConfig
from pyraft.testing.cluster import leader_of, run_on_fresh_loop


def test_from_config_hands_the_wal_its_sync_interval(tmp_path):
    """``sync_interval_ms`` reaches the WAL: with ``sync="interval"`` it is the longest a
    power loss may cost, so a configured 250 ms must not silently be the WAL's 10 ms."""

    async def body():
        config = ClusterConfig(member_id=1, listen="127.0.0.1:0", tick_ms=5,
                               data_dir=str(tmp_path / "d"), sync="interval",
                               sync_interval_ms=250.0).validate()
        async with RaftCluster.from_config(config) as member:
            await leader_of([member])
            wal = member.storage.wal
            assert (wal.sync_policy, wal.sync_interval_ms) == ("interval", 250.0)

    run_on_fresh_loop(body)


@pytest.mark.pure_core  # patches RaftNode.propose: an extension class in the compiled build
def test_writes_taken_off_the_queue_fail_when_the_core_refuses_them_with_a_bug():
    """``core.propose`` raising something it never should (a bug) stops the member; the
    commands already taken off the queue for that batch must fail at once with the reason,
    not wait for their caller's own timeout (they used to wait forever)."""
    from pyraft.cluster import ClusterStoppedError
    from pyraft.errors import InvariantError
    from pyraft.testing.cluster import memory_cluster
    from pyraft.transport.memory import MemoryNetwork

    async def body():
        async with memory_cluster(MemoryNetwork()) as members:
            leader = await leader_of(members)
            # concurrent writers: the last batch held several writes, so the next ones wait
            # in the queue for the task's turn (a lone writer's write is proposed at once)
            await asyncio.gather(*(leader.replicate(b"before-%d" % i) for i in range(3)))
            assert leader._ledger.last_batch_writes > 1
            bug = InvariantError("the log lost an entry")

            def propose(payloads, kind):
                raise bug

            leader.core.propose = propose
            writes = [asyncio.ensure_future(leader.replicate(b"one")),
                      asyncio.ensure_future(leader.replicate(b"two")),
                      asyncio.ensure_future(leader.replicate_many([b"three", b"four"]))]
            done, pending = await asyncio.wait(writes, timeout=3)
            assert not pending, "writers whose commands were taken off the queue still wait"
            for write in done:
                with pytest.raises(ClusterStoppedError, match="the log lost an entry") as info:
                    write.result()
                assert info.value.__cause__ is bug
            assert leader.fatal_error is bug
            with pytest.raises(ClusterStoppedError):
                await leader.replicate(b"after")

    run_on_fresh_loop(body)


@pytest.mark.pure_core  # patches RaftNode.propose: an extension class in the compiled build
def test_a_lone_write_the_core_refuses_with_a_bug_fails_within_its_call():
    """A lone writer's write is proposed inside ``replicate``'s call (``Engine.propose_now``):
    a bug raised there stops the member and fails that write with the reason, as on the
    processing task's turn; the next write is refused as the member failed."""
    from pyraft.cluster import ClusterStoppedError
    from pyraft.errors import InvariantError
    from pyraft.testing.cluster import memory_cluster
    from pyraft.transport.memory import MemoryNetwork

    async def body():
        async with memory_cluster(MemoryNetwork()) as members:
            leader = await leader_of(members)
            await leader.replicate(b"before")  # a batch of one write: the next is lone
            bug = InvariantError("the log lost an entry")

            def propose(payloads, kind):
                raise bug

            leader.core.propose = propose
            write = asyncio.ensure_future(leader.replicate(b"one"))
            await asyncio.sleep(0)  # its call ran: proposed in it, and refused
            assert leader.fatal_error is bug
            with pytest.raises(ClusterStoppedError, match="the log lost an entry") as info:
                await asyncio.wait_for(write, 3)
            assert info.value.__cause__ is bug
            with pytest.raises(ClusterStoppedError):
                await leader.replicate(b"after")

    run_on_fresh_loop(body)


# ---- the default state machine: consensus only, with a bounded log ----------------------------
BATCH = 500


async def _write(member: RaftCluster, count: int) -> None:
    """``count`` commands through ``replicate_many``, a few batches in flight at a time."""
    payload = b"c" * 16
    for start in range(0, count, 4 * BATCH):
        sizes = [min(BATCH, count - at) for at in range(start, min(count, start + 4 * BATCH),
                                                           BATCH)]
        await asyncio.gather(*(member.replicate_many([payload] * size, timeout=30)
                               for size in sizes))


def _log_entries(member: RaftCluster) -> int:
    return member.storage.last_index() - member.storage.first_index() + 1


async def _snapshots_adopted(member: RaftCluster, timeout: float = 10.0) -> None:
    """Wait until the storage holds the newest snapshot the state machine took (on disk its
    file is written on the I/O thread, then adopted)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while member.storage.snapshot().meta.index < member.state_machine.snapshot_index:
        assert asyncio.get_running_loop().time() < deadline, "the snapshot was not stored"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("durable", [False, True], ids=["memory", "data_dir"])
def test_from_config_without_a_state_machine_keeps_the_log_bounded(tmp_path, durable):
    """``RaftCluster.from_config(config)`` with no state machine, as documented: 50,000
    writes leave at most a few thousand entries in the log (they all stayed before), in
    memory and in ``data_dir``, where a restart recovers from the snapshot.

    In memory a snapshot releases the log at once. On disk its file is written on the I/O
    thread meanwhile, so the log grows by what is written during one file write beyond that:
    a few ms on a quiet disk, more when other processes sync too (a CI run saw 15,000
    entries at a peak), so on disk the peak is only held under half the writes (a log never
    compacted during the writes would reach all 50,000); once the writes stop, the newest
    snapshot is stored and the log is back under the bound at rest."""
    from pyraft.storage.state_machine import ConsensusOnlyState

    data_dir = str(tmp_path / "d") if durable else None
    config = ClusterConfig(member_id=1, listen="127.0.0.1:0", tick_ms=5, data_dir=data_dir,
                           consensus_snapshot_entries=1000).validate()
    at_rest = 1000 + 4 * BATCH + 10  # since the last snapshot, plus one round of batches

    async def body():
        async with RaftCluster.from_config(config) as member:
            assert type(member.state_machine) is ConsensusOnlyState
            await leader_of([member])
            longest = 0
            for _ in range(10):
                await _write(member, 5_000)
                longest = max(longest, _log_entries(member))
            await _snapshots_adopted(member)
            last = member.storage.last_index()
            assert last > 50_000
            assert _log_entries(member) <= at_rest
            assert longest <= (last // 2 if durable else at_rest), longest
            assert member.state_machine.applied_index == member.applied_index == last
        if durable:  # the snapshot and the short log are what a restart finds
            async with RaftCluster.from_config(config) as member:
                assert member.storage.first_index() > last - at_rest
                assert member.state_machine.applied_index >= member.storage.first_index() - 1
                await leader_of([member])
                await _write(member, 10)
                assert member.storage.last_index() > last

    run_on_fresh_loop(body, timeout_s=120)


def test_the_default_state_machine_releases_wal_segments_on_disk(tmp_path):
    """On disk the log is released a whole segment at a time: with small segments, many
    writes leave only the few segments the last snapshots do not cover."""
    from pyraft.storage.log import DurableLogStorage
    from pyraft.transport.memory import MemoryNetwork

    wal = tmp_path / "d" / "wal"

    async def body():
        storage = DurableLogStorage(tmp_path / "d", sync="never", segment_bytes_max=64 * 1024)
        member = RaftCluster(ClusterConfig(member_id=1, tick_ms=5, peers={1: "a:1"},
                                           consensus_snapshot_entries=1000),
                             transport=MemoryNetwork().transport(1), storage=storage)
        async with member:
            await leader_of([member])
            await _write(member, 30_000)  # ~2 MB of records: ~30 segments written
            assert member.storage.last_index() > 30_000
            storage.wal.deleter.wait()
            segments = sorted(wal.glob("*.wal"))
            # 1000 entries between snapshots + 2000 in flight: ~200 KB, 3-4 segments
            assert 1 <= len(segments) <= 8, [p.name for p in segments]

    run_on_fresh_loop(body, timeout_s=120)


@pytest.mark.parametrize("durable", [False, True], ids=["memory", "data_dir"])
def test_a_follower_back_after_compactions_catches_up_from_the_empty_snapshot(tmp_path,
                                                                               durable):
    """Three members with the default state machine; one follower cut off while the others
    take several snapshots; back, it is behind the leader's first index, so it receives an
    InstallSnapshot with empty data and the configuration, takes it and catches up, and the
    leader's log stays bounded throughout."""
    from pyraft.storage.log import DurableLogStorage
    from pyraft.testing.cluster import memory_cluster
    from pyraft.transport.memory import MemoryNetwork

    storage = (lambda m: DurableLogStorage(tmp_path / f"m{m}", sync="never")) if durable \
        else None

    async def body():
        network = MemoryNetwork(through_codec=True)
        async with memory_cluster(network, storage=storage,
                                  consensus_snapshot_entries=1000) as members:
            leader = await leader_of(members)
            await _write(leader, 1_000)
            behind = next(m for m in members if m is not leader)
            installed = []
            install = behind.state_machine.install_snapshot

            def recording(snapshot):
                installed.append(snapshot)
                install(snapshot)

            behind.state_machine.install_snapshot = recording
            network.isolate(behind.id)
            longest = 0
            for _ in range(8):
                await _write(leader, 1_000)
                await _snapshots_adopted(leader)
                longest = max(longest, _log_entries(leader))
            assert leader.storage.first_index() > behind.storage.last_index() + 1
            network.heal()
            target = leader.commit_index
            await behind.wait_for_applied(target, timeout=30)
            await _write(leader, 1_000)  # and it takes part again
            await behind.wait_for_applied(leader.commit_index, timeout=30)
            await _snapshots_adopted(leader)
            longest = max(longest, _log_entries(leader))
            assert installed, "the follower caught up without a snapshot"
            assert all(s.data == b"" for s in installed)
            assert installed[0].meta.voters == tuple(sorted(m.id for m in members))
            assert behind.state_machine.configuration.voters == frozenset(m.id for m in members)
            assert longest <= 1000 + 4 * BATCH + 10, longest

    run_on_fresh_loop(body, timeout_s=120)


# ---- failure detection and members started one by one -----------------------------------------
def test_failure_detection_spares_a_member_started_late_and_removes_one_never_started(tmp_path):
    """An operator brings five durable members up one by one with ``failure_dead_ms`` set: three
    start and elect a leader, the fourth starts seconds later (long after the dead window),
    the fifth never does. The late one must stay a voter: the leader has never heard from it,
    and phi has nothing to judge it by. The one that never starts is removed once
    ``failure_unheard_ms`` has passed since the election (it used to be both of them, at the
    dead window)."""
    from pyraft.testing.processes import free_port

    peers = {m: f"127.0.0.1:{free_port()}" for m in range(1, 6)}

    def config(member: int) -> ClusterConfig:
        return ClusterConfig(member_id=member, peers=peers, listen=peers[member], tick_ms=10,
                             election_timeout_ms_lower=150, election_timeout_ms_upper=300,
                             failure_dead_ms=600, failure_unheard_ms=4000,
                             data_dir=str(tmp_path / f"m{member}")).validate()

    async def body():
        loop = asyncio.get_running_loop()
        first = [RaftCluster.from_config(config(m)) for m in (1, 2, 3)]
        removed: list[int] = []
        late = None
        # no leader can be elected (and start waiting for member 5) before its members start:
        # this is a lower bound of the election's time, which the test cannot observe exactly
        started_at = loop.time()
        try:
            for member in first:
                member.on_event(lambda event: removed.append(event.member)
                                if event.kind == "member-removed" else None)
                await member.start()
            leader = await leader_of(first, timeout=10)
            await leader.replicate(b"before", timeout=10)
            await asyncio.sleep(2.0)  # three dead windows: the late member is not dead
            late = RaftCluster.from_config(config(4))
            await late.start()

            def voters():
                current = next((m for m in first if m.is_leader), None)
                return None if current is None else {s.id for s in current.members if s.voter}

            deadline = loop.time() + 15
            while voters() != {1, 2, 3, 4} and loop.time() < deadline:
                await asyncio.sleep(0.05)
            assert voters() == {1, 2, 3, 4}, (voters(), removed)
            assert loop.time() - started_at >= 4.0  # not before failure_unheard_ms
            current = await leader_of(first, timeout=10)
            await current.replicate(b"after", timeout=10)
            deadline = loop.time() + 10
            while late.commit_index < current.commit_index and loop.time() < deadline:
                await asyncio.sleep(0.05)
            assert late.commit_index >= current.commit_index
            assert 4 not in removed and 5 in removed
        finally:
            for member in [*first, late]:
                if member is not None:
                    await member.stop()

    run_on_fresh_loop(body, timeout_s=60)


# ---- what a write takes: bytes-like commands, copied at the call ----------------------------
def test_writes_copy_bytes_like_commands_at_the_call_and_refuse_anything_else(tmp_path):
    """``replicate`` and ``replicate_many`` take bytes or any bytes-like object and copy it
    when called: a caller reusing its buffer right after the call (its write still queued)
    does not change what is replicated. An ``int`` is a ``TypeError``, not that many zero
    bytes (``bytes(5)``), and nothing of a refused batch enters the log."""
    from pyraft.storage.state_machine import MemoryStateMachine

    class Recorder(MemoryStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.commands: list[bytes] = []

        def apply(self, index, command):
            self.commands.append(bytes(command))
            return len(self.commands)

        def build_snapshot(self) -> bytes:
            return b""

        def restore_snapshot(self, data: bytes) -> None:
            self.commands = []

    async def body():
        config = ClusterConfig(member_id=1, listen="127.0.0.1:0",
                               data_dir=str(tmp_path / "d")).validate()
        machine = Recorder()
        async with RaftCluster.from_config(config, state_machine=machine) as member:
            await leader_of([member])
            buffer = bytearray(b"first")
            view = memoryview(bytearray(b"second"))
            pending = asyncio.ensure_future(member.replicate_many([buffer, view, b"third"]))
            await asyncio.sleep(0)  # the write is queued: the call has returned to the loop
            buffer[:] = b"FIRST"
            view[:] = b"SECOND"
            assert await asyncio.wait_for(pending, 30) == [1, 2, 3]
            one = bytearray(b"fourth")
            pending = asyncio.ensure_future(member.replicate(one))
            await asyncio.sleep(0)
            one[:] = b"FOURTH"
            assert await asyncio.wait_for(pending, 30) == 4
            with pytest.raises(TypeError):
                await member.replicate(5)
            with pytest.raises(TypeError):
                await member.replicate_many([b"fine", 5])
            with pytest.raises(TypeError):
                await member.replicate_many(["text"])
            assert await member.replicate(b"fifth", timeout=30) == 5
            assert machine.commands == [b"first", b"second", b"third", b"fourth", b"fifth"]

    run_on_fresh_loop(body)
