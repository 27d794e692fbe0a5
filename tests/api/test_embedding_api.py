"""The embedding API on in-memory clusters: ``ensure_consistency`` on any member,
``wait_for_leader``, ``has_quorum`` and the application endpoint in ``NotLeaderError``.

Every test runs on a fresh loop that fails on unhandled loop exceptions and leaked tasks.
"""

from __future__ import annotations

import asyncio
import pickle

import pytest

from pyraft.cluster import ClusterStoppedError, ClusterTimeoutError, RaftCluster
from pyraft.config import ClusterConfig
from pyraft.errors import NotLeaderError
from pyraft.storage.state_machine import MemoryStateMachine
from pyraft.testing.cluster import (
    PEERS,
    leader_of,
    memory_cluster,
    run_on_fresh_loop,
    settled_leader,
)
from pyraft.transport.memory import MemoryNetwork

HTTP = {m: f"127.0.0.1:{8100 + m}" for m in PEERS}


class Counter(MemoryStateMachine):
    """Adds the command's integer value; ``total`` is the state."""

    def __init__(self, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.total = 0

    def apply(self, index: int, command: memoryview) -> int:
        self.total += int(bytes(command))
        return self.total

    def build_snapshot(self) -> bytes:
        return str(self.total).encode()

    def restore_snapshot(self, data: bytes) -> None:
        self.total = int(data or b"0")


async def until(condition, timeout: float = 10.0, what: str = "condition") -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    try:
        await asyncio.wait_for(wait(), timeout)
    except asyncio.TimeoutError:
        pytest.fail(f"{what} not reached within {timeout} s")


def with_endpoints(network: MemoryNetwork):
    """Three members, each publishing its HTTP address in its metadata, as pyraft node does."""
    members = [
        RaftCluster(ClusterConfig(member_id=m, tick_ms=5.0, peers=PEERS,
                                  metadata={"http": HTTP[m]}),
                    transport=network.transport(m), state_machine=Counter())
        for m in PEERS
    ]
    return members


def test_ensure_consistency_on_a_follower_applies_what_the_leader_committed():
    async def body() -> None:
        network = MemoryNetwork()
        async with memory_cluster(network, machine=Counter) as members:
            leader = await settled_leader(members)
            follower = next(m for m in members if m is not leader)
            # the follower does not hear of the writes until healed: its applied index lags
            network.isolate(follower.id)
            for value in range(1, 11):
                await leader.replicate(str(value).encode(), timeout=5)
            committed = leader.commit_index
            assert follower.applied_index < committed
            network.heal()
            await follower.ensure_consistency(timeout=10)
            # everything the leader had committed when the call was made is applied here
            assert follower.applied_index >= committed
            assert follower.state_machine.total == 55
            await leader.ensure_consistency(timeout=5)  # and on the leader as before

    run_on_fresh_loop(body, timeout_s=60)


def test_ensure_consistency_on_a_cut_off_follower_times_out_naming_the_timeout():
    async def body() -> None:
        network = MemoryNetwork()
        async with memory_cluster(network, machine=Counter) as members:
            leader = await settled_leader(members)
            follower = next(m for m in members if m is not leader)
            network.isolate(follower.id)
            with pytest.raises(TimeoutError, match=r"0\.3 s") as info:
                await follower.ensure_consistency(timeout=0.3)
            assert isinstance(info.value, ClusterTimeoutError) and info.value.timeout == 0.3
            # what callers of asyncio's own timeouts catch, on every Python version
            assert isinstance(info.value, asyncio.TimeoutError)
            network.heal()
            await follower.ensure_consistency(timeout=10)  # and it recovers

    run_on_fresh_loop(body, timeout_s=60)


def test_wait_for_leader_returns_the_leader_on_every_member():
    async def body() -> None:
        network = MemoryNetwork()
        async with memory_cluster(network) as members:
            first = [await member.wait_for_leader(timeout=10) for member in members]
            assert all(leader_id in PEERS for leader_id in first), first
            leader = await leader_of(members)
            await until(lambda: all(m.leader == leader.id for m in members), what="agreement")
            ids = [await member.wait_for_leader(timeout=10) for member in members]
            assert ids == [leader.id] * len(members)

    run_on_fresh_loop(body, timeout_s=60)


def test_wait_for_leader_times_out_naming_the_timeout_and_refuses_when_stopped():
    async def body() -> None:
        network = MemoryNetwork()
        # member 1 alone of three: it can never elect a leader
        config = ClusterConfig(member_id=1, tick_ms=5.0, peers=PEERS)
        member = RaftCluster(config, transport=network.transport(1))
        await member.start()
        try:
            with pytest.raises(TimeoutError, match=r"no leader known within .*0\.25 s") as info:
                await member.wait_for_leader(timeout=0.25)
            error = info.value
            assert isinstance(error, ClusterTimeoutError) and error.timeout == 0.25
            assert isinstance(error, asyncio.TimeoutError)
            copy = pickle.loads(pickle.dumps(error))
            assert (str(copy), copy.timeout) == (str(error), 0.25)
            assert member.leader is None and not member.has_quorum
        finally:
            await member.stop()
        with pytest.raises(ClusterStoppedError):
            await member.wait_for_leader(timeout=1)
        assert not member.has_quorum

    run_on_fresh_loop(body, timeout_s=30)


def test_has_quorum_follows_the_majority_on_leader_and_followers():
    async def body() -> None:
        network = MemoryNetwork()
        async with memory_cluster(network) as members:
            leader = await settled_leader(members)
            await until(lambda: all(m.has_quorum for m in members), what="quorum everywhere")
            followers = [m for m in members if m is not leader]
            # one follower cut off: the leader keeps its majority, that follower loses its leader
            network.isolate(followers[0].id)
            await until(lambda: not followers[0].has_quorum, what="cut-off follower sees none")
            assert leader.has_quorum and followers[1].has_quorum
            network.heal()
            await until(lambda: all(m.has_quorum for m in members), what="quorum after heal")
            # the leader cut off from both: it has no majority to hear from
            network.isolate(leader.id)
            await until(lambda: not leader.has_quorum, what="isolated leader loses quorum")
            network.heal()
            await until(lambda: any(m.is_leader and m.has_quorum for m in members),
                        what="a leader with quorum after heal")

    run_on_fresh_loop(body, timeout_s=60)


def test_has_quorum_of_a_single_member_cluster():
    async def body() -> None:
        network = MemoryNetwork()
        async with memory_cluster(network, {1: PEERS[1]}) as (member,):
            assert await member.wait_for_leader(timeout=10) == 1
            assert member.has_quorum

    run_on_fresh_loop(body, timeout_s=30)


def test_not_leader_error_names_the_leaders_application_endpoint():
    async def body() -> None:
        network = MemoryNetwork()
        members = with_endpoints(network)
        for member in members:
            await member.start()
        try:
            leader = await settled_leader(members)
            follower = next(m for m in members if m is not leader)
            await until(lambda: follower.leader_endpoint == HTTP[leader.id],
                        what="the follower learns the leader's endpoint")
            with pytest.raises(NotLeaderError) as info:
                await follower.replicate(b"1")
            error = info.value
            assert error.leader_id == leader.id
            assert error.leader_address == PEERS[leader.id]
            assert error.leader_endpoint == HTTP[leader.id]
            assert HTTP[leader.id] in str(error) and PEERS[leader.id] in str(error)
            copy = pickle.loads(pickle.dumps(error))
            assert (copy.leader_id, copy.leader_address, copy.leader_endpoint) == (
                leader.id, PEERS[leader.id], HTTP[leader.id])
            assert leader.leader_endpoint == HTTP[leader.id]
        finally:
            for member in members:
                await member.stop()

    run_on_fresh_loop(body, timeout_s=60)


def test_not_leader_error_without_an_endpoint_keeps_its_message():
    error = NotLeaderError(2, "127.0.0.1:7002")
    assert error.leader_endpoint is None
    assert str(error) == "not the leader; the leader is member 2 at 127.0.0.1:7002"
    assert str(NotLeaderError()) == "not the leader; the leader is unknown"
    assert isinstance(error, RuntimeError)
