"""RaftCluster on the in-memory transport: the public API end to end, on asyncio and uvloop.

Every test fails on an unhandled exception in the event loop and on tasks left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time

import msgpack
import pytest

from pyraft.cluster import (
    ClusterStoppedError,
    CommandInterruptedError,
    CommandOutcomeUnknownError,
    LeaderChange,
    RaftCluster,
)
from pyraft.config import ClusterConfig
from pyraft.core.messages import Ready
from pyraft.errors import ConfigError, NotLeaderError
from pyraft.storage.interpreter import Command, CommandInterpreter, handles
from pyraft.storage.log import DurableLogStorage
from pyraft.storage.state_machine import MemoryStateMachine
from pyraft.testing.cluster import (
    PEERS,
    leader_of,
    memory_cluster,
    run_on_fresh_loop,
    settled_leader,
)
from pyraft.transport.memory import MemoryNetwork

LOOPS = ["asyncio", "uvloop"]


class Ops(Command):
    pass


class Put(Ops, id=1):
    key: str
    value: int


class Get(Ops, id=2):
    key: str


class KV(MemoryStateMachine, CommandInterpreter):
    def __init__(self, **options):
        super().__init__(**options)
        self.data: dict[str, int] = {}

    def apply(self, index, command):
        return self.dispatch(command, index)

    @handles(Put)
    def put(self, command, index):
        previous = self.data.get(command.key)
        self.data[command.key] = command.value
        return previous

    @handles(Get)
    def get(self, command, index):
        return self.data.get(command.key)

    def build_snapshot(self):
        return msgpack.packb(self.data)

    def restore_snapshot(self, data):
        self.data = msgpack.unpackb(data) if data else {}


def run(loop_kind: str, coroutine_function) -> None:
    if loop_kind == "uvloop":
        pytest.importorskip("uvloop")
    run_on_fresh_loop(coroutine_function, loop_kind)


def cluster(network, peers=PEERS, storage=None, machine=KV, **options):
    return memory_cluster(network, peers, storage=storage, machine=machine, **options)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_replicate_returns_results_and_followers_catch_up(loop_kind):
    async def body():
        network = MemoryNetwork(through_codec=True)
        async with cluster(network) as members:
            leader = await leader_of(members)
            # a member's writes reach its own core and log writer directly (writes.pxd)
            assert all(m._writes._node is m.core and m._writes._writer is m._writer
                       for m in members)
            results = await asyncio.gather(
                *[leader.replicate(KV.encode(Put(key=f"k{i % 5}", value=i))) for i in range(200)]
            )
            assert results[:5] == [None] * 5 and results[5] == 0  # previous values
            assert await leader.replicate(KV.encode(Get(key="k1"))) == 196
            follower = next(m for m in members if m is not leader)
            with pytest.raises(NotLeaderError) as info:
                await follower.replicate(KV.encode(Get(key="k1")))
            assert info.value.leader_id == leader.id
            assert info.value.leader_address == PEERS[leader.id]
            index = await follower.apply_read_barrier(timeout=2)
            assert follower.applied_index >= index and follower.state_machine.data["k1"] == 196
            many = await leader.replicate_many([KV.encode(Put(key="m", value=v)) for v in (1, 2)])
            assert many == [None, 1]
            await leader.wait_for_commit(leader.commit_index)
            await leader.ensure_consistency(timeout=2)
            await leader.force_replication(timeout=2)

    run(loop_kind, body)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_leadership_token_changes_and_transfer(loop_kind):
    async def body():
        network = MemoryNetwork()
        async with cluster(network, machine=None) as members:
            leader = await leader_of(members)
            token = leader.leadership_token
            assert token is not None and not token.cancelled
            seen: list[LeaderChange] = []
            for member in members:
                member.on_leader_changed(seen.append)
            await asyncio.sleep(0.1)
            assert leader.lease.valid and leader.lease.expires_in_ms > 0
            target = next(m for m in members if m is not leader)
            await leader.transfer_leadership(target.id, timeout=3)
            await asyncio.wait_for(token.wait_cancelled(), 3)
            assert token.cancelled and not leader.lease.valid
            new = await leader_of(members)
            assert new is target
            await asyncio.wait_for(until(lambda: any(c.leader == target.id for c in seen)), 3)
            resigned_to = await new.resign()
            await asyncio.wait_for(leader_settles(members, resigned_to), 3)

    async def until(condition):
        while not condition():
            await asyncio.sleep(0.005)

    async def leader_settles(members, expected):
        while not any(m.id == expected and m.is_leader for m in members):
            await asyncio.sleep(0.005)

    run(loop_kind, body)


def test_leader_changes_iterator_and_isolation():
    async def body():
        network = MemoryNetwork()
        async with cluster(network, machine=None) as members:
            leader = await settled_leader(members)  # then two can elect without the third
            follower = next(m for m in members if m is not leader)
            changes = follower.leader_changes()
            network.isolate(leader.id)

            async def next_other_leader():
                async for change in changes:  # earlier changes may still be queued
                    if change.leader not in (None, leader.id):
                        return change

            change = await asyncio.wait_for(next_other_leader(), 5)
            assert change.leader != leader.id and change.term > leader.term - 1
            new = await leader_of([m for m in members if m is not leader])
            assert new.term > leader.term or not leader.is_leader
            network.heal()
            await changes.aclose()

    run("asyncio", body)



@pytest.mark.parametrize("many", [False, True])
def test_writes_of_a_deposed_leader_whose_entries_were_replaced_fail_in_an_idle_cluster(many):
    """A leader cut off with writes in flight: the others elect a leader and commit; once
    the old leader hears it, its log loses those entries and the writers hear at once that
    the outcome is unknown, although nothing else is ever written (they used to wait for
    the log to grow past their entries)."""
    from pyraft.cluster import CommandOutcomeUnknownError

    async def body():
        network = MemoryNetwork()
        async with cluster(network) as members:
            old = await settled_leader(members)
            await old.replicate(KV.encode(Put(key="before", value=1)))
            network.isolate(old.id)
            if many:
                writes = [asyncio.ensure_future(old.replicate_many(
                    [KV.encode(Put(key=f"m{i}", value=i)) for i in range(3)]))]
            else:
                writes = [asyncio.ensure_future(old.replicate(KV.encode(Put(key=f"k{i}", value=i))))
                          for i in range(3)]
            await asyncio.sleep(0.05)  # appended by the old leader alone
            assert not any(write.done() for write in writes)
            others = [m for m in members if m is not old]
            new = await leader_of(others)
            await new.replicate(KV.encode(Put(key="after", value=2)))  # the term's entries
            network.heal()
            done, pending = await asyncio.wait(writes, timeout=3)
            assert not pending, "the deposed leader's writers are still waiting"
            for write in done:
                with pytest.raises(CommandOutcomeUnknownError, match="replaced"):
                    write.result()
            assert not old.is_leader and not old._ledger.proposals
            # and the new leader's own writes are unaffected
            assert await new.replicate(KV.encode(Get(key="after"))) == 2

    run("asyncio", body)


def test_a_deposed_leaders_write_that_a_later_leader_commits_returns_its_result():
    """The other side of the test above: the old leader's entry reached the others before
    it was cut off, so the next leader commits it; the writer gets the result, no error."""

    async def body():
        network = MemoryNetwork()
        async with cluster(network) as members:
            old = await settled_leader(members)
            await old.replicate(KV.encode(Put(key="a", value=1)))
            others = [m for m in members if m is not old]
            for other in others:  # the entry goes out, no answer comes back: no commit
                network.blocked.add((other.id, old.id))
            write = asyncio.ensure_future(old.replicate(KV.encode(Put(key="a", value=5))))
            await asyncio.sleep(0.05)
            assert not write.done()
            network.isolate(old.id)
            new = await leader_of(others)
            assert await new.replicate(KV.encode(Get(key="a"))) == 5  # it was committed
            network.heal()
            assert await asyncio.wait_for(write, 3) == 1  # Put returns the value it replaced

    run("asyncio", body)


class BackgroundKV(KV):
    """KV with background compaction: its snapshots are built on a worker thread."""

    def capture(self):
        return dict(self.data)

    def build_snapshot_from(self, captured):
        return msgpack.packb(captured)


def test_background_snapshots_reach_the_log_on_the_loop_thread(tmp_path):
    """With background compaction the state machine calls the snapshot sink on its worker
    thread; releasing the log must still happen on the member's loop (the log is not thread
    safe), the file is written on the member's I/O thread, and stopping must not wait for it
    forever."""
    import threading

    threads: dict[str, set[int]] = {"compact": set(), "write_snapshot": set()}

    def storage(member):
        store = DurableLogStorage(tmp_path / f"m{member}", segment_bytes_max=16 * 1024)
        for name in threads:
            setattr(store, name, recording(name, getattr(store, name)))
        return store

    def recording(name, real):
        def recorded(*args):
            threads[name].add(threading.get_ident())
            return real(*args)

        return recorded

    async def body():
        loop_thread = threading.get_ident()
        network = MemoryNetwork()
        machine = lambda: BackgroundKV(compaction="background", snapshot_entries=64)  # noqa: E731
        async with cluster(network, storage=storage, machine=machine) as members:
            leader = await leader_of(members)
            for i in range(400):
                await leader.replicate(KV.encode(Put(key=f"k{i % 7}", value=i)))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and leader.storage.first_index() == 1:
                await asyncio.sleep(0.01)
            assert leader.storage.first_index() > 1  # snapshots taken and the log released
            assert await leader.replicate(KV.encode(Get(key="k0"))) == 399 - 399 % 7
        # the log is released on the loop's thread; the file is written on the I/O thread
        assert threads["compact"] == {loop_thread}
        assert threads["write_snapshot"] and loop_thread not in threads["write_snapshot"]

    run("asyncio", body)

def test_add_and_remove_members():
    async def body():
        network = MemoryNetwork()
        peers4 = {**PEERS, 4: "127.0.0.1:7104"}
        async with cluster(network) as members:
            leader = await leader_of(members)
            for i in range(50):
                await leader.replicate(KV.encode(Put(key="a", value=i)))
            # the new member states a label of its own (as `pyraft node` states its HTTP
            # address) and the operator gives add_member another: both stay (MEMBER_INFO
            # carries the member's labels over the configuration's)
            joining = RaftCluster(ClusterConfig(member_id=4, tick_ms=5, peers=peers4,
                                                cold_start=False, metadata={"rack": "r1"}),
                                  transport=network.transport(4), state_machine=KV())
            await joining.start()
            try:
                await leader.add_member(4, peers4[4], {"zone": "b"}, timeout=5)
                assert 4 in {m.id for m in leader.members if m.voter}
                status = {m.id: m for m in leader.members}
                assert status[4].metadata["zone"] == "b" and status[4].address == peers4[4]
                await leader.replicate(KV.encode(Put(key="a", value=99)))
                await joining.apply_read_barrier(timeout=3)
                assert joining.state_machine.data["a"] == 99
                await asyncio.sleep(0.7)  # two election timeouts of announcements
                for member in [*members, joining]:
                    status = {m.id: m for m in member.members}
                    assert status[4].metadata == {"zone": "b", "rack": "r1"}, member.id
                await leader.remove_member(4, timeout=5)
                assert 4 not in {m.id for m in leader.members}
            finally:
                await joining.stop()

    run("asyncio", body)


@pytest.mark.parametrize("address", ["bad/host:7104", "127.0.0.1", "127.0.0.1:0",
                                     "[::1:7104", "::1:7104"])
def test_add_member_refuses_an_address_no_transport_would_dial(address):
    """The address is checked with the one parser the transports use before anything is
    proposed: a configuration with an address the TCP transport refuses would reach every
    member's log (and every member's set_peers) otherwise."""
    async def body():
        async with cluster(MemoryNetwork()) as members:
            leader = await leader_of(members)
            before = leader.view.configuration
            with pytest.raises(ConfigError) as caught:
                await leader.add_member(4, address, timeout=2)
            assert caught.value.field == "address" and address in str(caught.value)
            await leader.replicate(KV.encode(Put(key="after", value=1)))
            assert leader.view.configuration == before
            assert leader.view.configuration_committed

    run("asyncio", body)


def test_restart_recovers_from_durable_storage(tmp_path):
    async def body():
        network = MemoryNetwork()

        def storage(member):
            return DurableLogStorage(tmp_path / f"m{member}", segment_bytes_max=64 * 1024)

        async with cluster(network, storage=storage) as members:
            leader = await leader_of(members)
            for i in range(100):
                await leader.replicate(KV.encode(Put(key=f"k{i % 3}", value=i)))
        network = MemoryNetwork()
        async with cluster(network, storage=storage) as members:
            leader = await leader_of(members)
            assert await leader.replicate(KV.encode(Get(key="k0"))) == 99
            for member in members:
                await member.apply_read_barrier(timeout=3)
                assert member.state_machine.data == {"k0": 99, "k1": 97, "k2": 98}

    run("asyncio", body)


def test_stopped_member_refuses_work():
    async def body():
        network = MemoryNetwork()
        async with cluster(network, peers={1: "127.0.0.1:7101"}, machine=None) as members:
            (single,) = members
            await leader_of(members)  # a member alone cold-starts a one-member cluster
            assert await single.replicate(b"x") is None
        with pytest.raises(ClusterStoppedError):
            await single.replicate(b"y")

    run("asyncio", body)


def test_a_stopping_member_refuses_new_writes_while_those_in_flight_finish():
    """``stop`` lets the writes in flight finish (within ``graceful_shutdown_timeout_ms``)
    and refuses new ones from its first step: a write made during that wait fails at once
    with ClusterStoppedError, it does not join the queue of a member going away."""
    async def body():
        network = MemoryNetwork()
        async with cluster(network, graceful_shutdown_timeout_ms=5_000) as members:
            leader = await leader_of(members)
            followers = [m for m in members if m is not leader]
            for follower in followers:
                network.isolate(follower.id)  # nothing commits until they are back
            in_flight = asyncio.ensure_future(leader.replicate(KV.encode(Put(key="a", value=1))))
            await asyncio.sleep(0.05)
            assert not in_flight.done()
            stopping = asyncio.ensure_future(leader.stop())
            await asyncio.sleep(0.05)
            assert not stopping.done()  # it waits for the write in flight
            with pytest.raises(ClusterStoppedError, match="stopping"):
                await leader.replicate(KV.encode(Put(key="b", value=2)))
            network.heal()
            assert await asyncio.wait_for(in_flight, 5) is None  # it finished, committed
            await asyncio.wait_for(stopping, 5)
            assert all(m.state_machine.data.get("b") is None for m in followers)

    run("asyncio", body)


async def _stopped_with_in_flight(network, members, start):
    """Stop the leader of ``members`` with ``start(leader)`` (a write, a membership change)
    in flight: the followers get its entry and keep it, their answers are lost, so it waits
    until the stop (graceful wait 100 ms). Returns (the awaitable, the followers)."""
    leader = await leader_of(members)
    followers = [m for m in members if m is not leader]
    network.blocked |= {(follower.id, leader.id) for follower in followers}
    waiting = asyncio.ensure_future(start(leader))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await leader.stop()
    return waiting, followers


def test_a_write_in_flight_when_its_member_stops_has_an_unknown_outcome():
    """The write was in the stopping leader's log and sent to the others when the graceful
    wait ran out: a later leader may commit it. Its writer gets CommandInterruptedError (a
    ClusterStoppedError and a CommandOutcomeUnknownError), neither a cancellation of its own
    task nor a plain "stopped" that reads as "not applied"; and a later leader does commit
    it here."""
    async def body():
        network = MemoryNetwork()
        async with cluster(network, graceful_shutdown_timeout_ms=100) as members:
            write, followers = await _stopped_with_in_flight(
                network, members, lambda leader: leader.replicate(KV.encode(Put(key="a",
                                                                                value=1))))
            with pytest.raises(CommandInterruptedError) as info:
                await write
            assert isinstance(info.value, ClusterStoppedError)
            assert isinstance(info.value, CommandOutcomeUnknownError)
            assert not write.cancelled()
            network.heal()
            survivor = await leader_of(followers)
            await survivor.apply_read_barrier(timeout=5)
            # the entry reached the followers before the stop: the next leader committed it
            assert survivor.state_machine.data.get("a") == 1

    run("asyncio", body)


def test_a_membership_change_in_flight_when_its_member_stops_has_an_unknown_outcome():
    async def body():
        network = MemoryNetwork()
        async with cluster(network, graceful_shutdown_timeout_ms=100) as members:
            removal, _ = await _stopped_with_in_flight(
                network, members,
                lambda leader: leader.remove_member(next(m.id for m in members
                                                         if m is not leader)))
            with pytest.raises(CommandInterruptedError, match="removal of member"):
                await removal
            network.heal()

    run("asyncio", body)


def test_a_joining_member_announces_itself_and_becomes_ready():
    async def body():
        network = MemoryNetwork()
        peers4 = {**PEERS, 4: "127.0.0.1:7104"}
        async with cluster(network) as members:
            leader = await leader_of(members)
            await leader.replicate(KV.encode(Put(key="before", value=1)))
            announced = []

            async def announcer(member, address, metadata):
                announced.append((member, address, metadata))
                current = await leader_of(members)
                with contextlib.suppress(Exception):  # "already a member" on a retry
                    await current.add_member(member, address, metadata, timeout=3)

            joining = RaftCluster(ClusterConfig(member_id=4, tick_ms=5, peers=peers4,
                                                cold_start=False, metadata={"rack": "r4"}),
                                  transport=network.transport(4), state_machine=KV(),
                                  announcer=announcer)
            await joining.start()
            try:
                await asyncio.wait_for(joining.readiness, 5)
                assert announced[0] == (4, peers4[4], {"rack": "r4"})
                await joining.apply_read_barrier(timeout=3)
                assert joining.state_machine.data["before"] == 1
                assert {m.id: m.metadata for m in leader.members}[4] == {"rack": "r4"}
            finally:
                await joining.stop()
            for member in members:  # starting members are ready from the start
                assert member.readiness.done()

    run("asyncio", body)


def test_standby_members_never_lead():
    async def body():
        network = MemoryNetwork()
        members = [
            RaftCluster(ClusterConfig(member_id=m, tick_ms=5, standby=m == 3, peers=PEERS),
                        transport=network.transport(m))
            for m in PEERS
        ]
        for member in members:
            await member.start()
        try:
            for _ in range(3):  # take the leader away repeatedly
                leader = await leader_of(members)
                assert leader.id != 3
                network.isolate(leader.id)
                await asyncio.sleep(0.3)
                assert not members[2].is_leader
                network.heal()
                await asyncio.sleep(0.2)
            assert not members[2].is_leader
            assert await (await leader_of(members)).replicate(b"ok") is None
        finally:
            for member in members:
                await member.stop()

    run("asyncio", body)


def test_from_config_with_tcp_and_durable_storage(tmp_path):
    async def body():
        config = ClusterConfig(member_id=1, listen="127.0.0.1:0", data_dir=str(tmp_path / "d"),
                               tick_ms=5).validate()
        for round_ in range(2):
            async with RaftCluster.from_config(config, state_machine=KV()) as member:
                await leader_of([member])
                if round_ == 0:
                    await member.replicate(KV.encode(Put(key="kept", value=7)))
                else:
                    assert await member.replicate(KV.encode(Get(key="kept"))) == 7

    run("asyncio", body)


def test_from_config_hands_the_transport_its_limits():
    async def body():
        config = ClusterConfig(member_id=1, listen="127.0.0.1:0", tick_ms=5, ttl_hops=17,
                               handshakes_max=3, unknown_members_max=0,
                               user_requests_inflight_max=5,
                               receive_bytes_per_s_min=1000,
                               transmission_block_bytes=4096).validate()
        async with RaftCluster.from_config(config) as member:
            transport = member.transport
            assert (transport.ttl_hops, transport.handshakes_max, transport.unknown_members_max,
                    transport.user_requests_inflight_max, transport.receive_bytes_per_s_min,
                    transport.write_buffer_bytes) == (17, 3, 0, 5, 1000, 4096)
            await leader_of([member])

    run("asyncio", body)


def test_events_for_roles_leaders_and_members():
    async def body():
        network = MemoryNetwork()
        peers4 = {**PEERS, 4: "127.0.0.1:7104"}
        async with cluster(network) as members:
            seen = {m.id: [] for m in members}
            for member in members:
                member.on_event(seen[member.id].append)
            leader = await leader_of(members)
            streamed = []

            async def collect():
                async for event in leader.events():
                    streamed.append(event)

            collector = asyncio.ensure_future(collect())
            await asyncio.sleep(0)  # subscribed from here on
            # no labels of its own: it announces only its address, add_member's labels stay
            joining = RaftCluster(ClusterConfig(member_id=4, tick_ms=5, peers=peers4,
                                                cold_start=False),
                                  transport=network.transport(4), state_machine=KV())
            await joining.start()
            try:
                await leader.add_member(4, peers4[4], timeout=5)
                await leader.remove_member(4, timeout=5)
                target_id = await leader.resign()  # the most caught-up voter takes over
                target = next(m for m in members if m.id == target_id)
                for _ in range(500):  # a loaded machine may need a retry of the handover
                    if target.is_leader:
                        break
                    await asyncio.sleep(0.01)
                    if leader.is_leader and _ % 100 == 99:
                        target_id = await leader.resign()
                        target = next(m for m in members if m.id == target_id)
                assert not leader.is_leader
                await asyncio.sleep(0.1)
                kinds = [(e.kind, e.member) for e in streamed]
                assert ("member-added", 4) in kinds and ("member-removed", 4) in kinds
                assert kinds.index(("member-added", 4)) < kinds.index(("member-removed", 4))
                assert ("role-changed", leader.id) in kinds  # it stopped leading
                callbacks = [(e.kind, e.member) for e in seen[leader.id]]
                assert callbacks[-len(kinds):] == kinds  # the callbacks saw the same events
                target_kinds = {(e.kind, e.member) for e in seen[target.id]}
                assert ("role-changed", target.id) in target_kinds
                assert ("leader-changed", target.id) in target_kinds
            finally:
                collector.cancel()
                await asyncio.gather(collector, return_exceptions=True)
                await joining.stop()

    run("asyncio", body)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_lease_is_gone_after_a_pause_before_any_tick_runs(loop_kind):
    """A leader whose process was stopped (SIGSTOP, a blocked loop) for longer than its lease
    must not serve lease reads when it resumes: not before its tick loop has run again, and
    not after the next tick either (its tick count did not advance for the pause), until a
    quorum answers a heartbeat sent after the pause."""
    async def body():
        network = MemoryNetwork()
        async with cluster(network, machine=None) as members:
            leader = await leader_of(members)
            await leader.ensure_consistency(timeout=3)
            for _ in range(200):
                if leader.lease.valid:
                    break
                await asyncio.sleep(0.01)
            lease = leader.lease
            assert lease.valid and lease.expires_in_ms > 0
            ticks = leader.core.ticks
            time.sleep(lease.expires_in_ms / 1000.0 + 0.05)  # the whole loop is stopped
            assert not leader.lease.valid and leader.lease.expires_in_ms == 0.0
            # Hold the others' answers back: the next ticks alone must not revive the lease.
            network.isolate(leader.id)
            for _ in range(500):
                if leader.core.ticks >= ticks + 3:
                    break
                await asyncio.sleep(0.002)
            assert leader.core.ticks >= ticks + 3
            assert not leader.lease.valid
            network.heal()
            for _ in range(500):  # a new quorum of heartbeats gives a new lease
                if leader.lease.valid or not leader.is_leader:
                    break
                await asyncio.sleep(0.01)
            assert leader.lease.valid or not leader.is_leader

    run(loop_kind, body)


def test_syncs_run_inline_only_while_they_are_fast_and_small(tmp_path):
    """Small batches are synced on the loop's thread while syncs stay fast; a slow disk (or a
    big batch) goes to the executor so the loop keeps serving."""
    from raftcore.framing import encode_entries

    config = ClusterConfig(member_id=1, peers={1: "a:1"})
    memory = RaftCluster(config, transport=MemoryNetwork().transport(1))
    durable = RaftCluster(config, transport=MemoryNetwork().transport(1),
                          storage=DurableLogStorage(str(tmp_path), sync="always"))

    def ready_of(size: int) -> Ready:
        rd = Ready(1)
        rd.entries = [encode_entries(1, 1, [b"x" * size])]
        return rd

    assert memory._writer.sync_inline(ready_of(10 << 20))  # nothing to sync: always inline
    assert durable._writer.sync_inline(ready_of(100))
    assert not durable._writer.sync_inline(ready_of(1 << 20))  # a big batch: the executor
    durable._writer.sync_seconds = 0.005  # syncs have been taking 5 ms: a slow disk
    assert not durable._writer.sync_inline(ready_of(100))
    durable._writer.sync_seconds = 0.0
    assert durable._writer.sync_inline(ready_of(100))
    durable.storage.close()
    # ClusterConfig's 0: always on the I/O thread (the first sync too), unless there is
    # nothing to sync
    never = dataclasses.replace(config, inline_sync_max_ms=0)
    durable = RaftCluster(never, transport=MemoryNetwork().transport(1),
                          storage=DurableLogStorage(str(tmp_path / "never"), sync="always"))
    assert not durable._writer.sync_inline(ready_of(100))
    in_memory = RaftCluster(never, transport=MemoryNetwork().transport(1))
    assert in_memory._writer.sync_inline(ready_of(100))
    durable.storage.close()
