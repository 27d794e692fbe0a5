"""A member whose storage does not survive a restart (the in-memory default of
``RaftCluster.from_config``, ``pyraft node`` without ``--data``) comes back as a new member:
its vote no longer stands for what it acknowledged before, so it cannot hand an election to a
stale member and lose an acknowledged write.

The scenario of issue 15, finding 9, in one process over the memory transport with the default
storage: C cut off; X acknowledged (committed by A and B); B restarted with fresh memory; A
gone; the links healed. C used to win B's vote and the register read the value before X.
"""

from __future__ import annotations

import asyncio

from pyraft.cluster.runtime import RaftCluster
from pyraft.config import ClusterConfig
from pyraft.testing.cluster import leader_of, run_on_fresh_loop
from pyraft.transport.memory import MemoryNetwork
from tests.cluster.test_runtime import KV, Get, Put

PEERS = {1: "127.0.0.1:7101", 2: "127.0.0.1:7102", 3: "127.0.0.1:7103"}


def member(network, member_id):
    """A member as an embedder builds one: the configuration's defaults, no data_dir."""
    config = ClusterConfig(member_id=member_id, listen=PEERS[member_id], peers=PEERS).validate()
    return RaftCluster.from_config(config, state_machine=KV(),
                                   transport=network.transport(member_id))


async def read(cluster, key):
    return await cluster.replicate(KV.encode(Get(key=key)), timeout=5)


def test_a_restarted_memory_member_cannot_elect_a_stale_one():
    async def body():
        network = MemoryNetwork(through_codec=True)
        members = {m: member(network, m) for m in PEERS}
        for cluster in members.values():
            await cluster.start()
        try:
            leader = await leader_of(list(members.values()))
            await leader.replicate(KV.encode(Put(key="register", value=1)), timeout=5)
            a = leader.id
            c, b = [m for m in PEERS if m != a]
            await members[c].wait_for_applied(leader.commit_index, timeout=5)
            network.isolate(c)
            # X: acknowledged, committed by A and B only
            await leader.replicate(KV.encode(Put(key="register", value=2)), timeout=5)
            # B restarts with fresh memory (a restart of a member without data_dir)
            await members[b].stop()
            members[b] = member(network, b)
            await members[b].start()
            assert members[b].core.fresh
            # A is gone (cut off: it still holds X); C and B meet again
            network.heal()
            network.isolate(a)
            await asyncio.sleep(3.0)  # about ten election timeouts
            assert not members[c].is_leader and not members[b].is_leader, (
                "a stale member won the vote of a member that forgot what it acknowledged")
            # A returns: the cluster elects a member holding X, and X is there
            network.heal()
            leader = await leader_of(list(members.values()), timeout=10)
            assert await read(leader, "register") == 2
            await members[b].wait_for_applied(leader.commit_index, timeout=5)
            assert not members[b].core.fresh  # caught up: an ordinary voter again
            assert members[b].state_machine.data["register"] == 2
        finally:
            for cluster in members.values():
                await cluster.stop()

    run_on_fresh_loop(body, timeout_s=60)


def test_a_new_memory_only_cluster_elects_a_leader_when_all_are_up():
    """Every member of a new in-memory cluster starts fresh: the first election needs every
    voter (so a memory-only cluster starts once all its members are up), then the members
    are ordinary voters and a majority elects."""

    async def body():
        network = MemoryNetwork()
        members = {m: member(network, m) for m in PEERS}
        for cluster in members.values():
            await cluster.start()
        try:
            assert all(cluster.core.fresh for cluster in members.values())
            leader = await leader_of(list(members.values()), timeout=10)
            await leader.replicate(KV.encode(Put(key="k", value=1)), timeout=5)
            for cluster in members.values():
                await cluster.wait_for_applied(leader.commit_index, timeout=5)
                assert not cluster.core.fresh
            # an ordinary majority now: the leader gone, the other two elect one of them
            network.isolate(leader.id)
            others = [cluster for cluster in members.values() if cluster is not leader]
            successor = await leader_of(others, timeout=10)
            assert successor.term > leader.term
        finally:
            for cluster in members.values():
                await cluster.stop()

    run_on_fresh_loop(body, timeout_s=60)
