"""Messages between members: one-way, request/response, errors, timeouts, the leader router,
in memory and over real TCP connections on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from pyraft.cluster import RaftCluster
from pyraft.cluster.messaging import MessageTimeoutError, Messenger, RemoteHandlerError
from pyraft.config import RaftConfig
from pyraft.testing.cluster import leader_of, memory_cluster, run_on_fresh_loop
from pyraft.testing.processes import free_port
from pyraft.transport.memory import MemoryNetwork
from pyraft.transport.tcp import TcpTransport


def wire(members):
    messengers = {}
    for member in members:
        messenger = Messenger(member)
        received: list = []
        messengers[member.id] = (messenger, received)

        @messenger.handler("echo")
        async def echo(sender, payload, me=member.id):
            return b"%d->%d:" % (sender, me) + payload

        @messenger.handler("note")
        async def note(sender, payload, box=received):
            box.append((sender, payload))

        @messenger.handler("fail")
        async def fail(sender, payload):
            raise ValueError("refused")

    return messengers


async def exercise(members, network=None):
    messengers = wire(members)
    try:
        leader = await leader_of(members)
        follower = next(m for m in members if m is not leader)
        messenger, _ = messengers[follower.id]
        assert await messenger.request(leader.id, "echo", b"hi") == (
            b"%d->%d:hi" % (follower.id, leader.id))
        assert await messenger.request_leader("echo", b"x") == b"%d->%d:x" % (
            follower.id, leader.id)
        # the leader asks itself without the network
        assert await messengers[leader.id][0].request_leader("echo", b"") == (
            b"%d->%d:" % (leader.id, leader.id))
        await messenger.send(leader.id, "note", b"one-way")
        box = messengers[leader.id][1]
        for _ in range(200):
            if box:
                break
            await asyncio.sleep(0.005)
        assert box == [(follower.id, b"one-way")]
        with pytest.raises(RemoteHandlerError, match="refused"):
            await messenger.request(leader.id, "fail", b"")
        with pytest.raises(RemoteHandlerError, match="no handler"):
            await messenger.request(leader.id, "missing", b"")
        if network is not None:
            network.isolate(leader.id)
            with pytest.raises(MessageTimeoutError):
                await messenger.request(leader.id, "echo", b"", timeout=0.2)
            network.heal()
    finally:
        for messenger, _ in messengers.values():
            await messenger.close()


def test_messaging_in_memory():
    async def body():
        network = MemoryNetwork()
        async with memory_cluster(network) as members:
            await exercise(members, network)

    run_on_fresh_loop(body)


def test_messaging_over_tcp():
    async def body():
        peers = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3)}
        members = [
            RaftCluster(RaftConfig(member_id=m, tick_ms=5),
                        transport=TcpTransport(m, peers[m], cluster_id=9), peers=peers)
            for m in peers
        ]
        for member in members:
            await member.start()
        try:
            await exercise(members)
        finally:
            for member in members:
                await member.stop()

    run_on_fresh_loop(body)
