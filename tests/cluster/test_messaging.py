"""Messages between members: one-way, request/response, errors, timeouts, the leader router,
in memory, over real TCP connections on 127.0.0.1, and over mutual TLS on those connections
(trustme certificates: contexts built in the test, and files given in ``TlsConfig``)."""

from __future__ import annotations

import asyncio
import ssl

import pytest
import trustme

from pyraft.cluster import RaftCluster
from pyraft.cluster.messaging import MessageTimeoutError, Messenger, RemoteHandlerError
from pyraft.config import ClusterConfig, TlsConfig
from pyraft.storage.log import DurableLogStorage
from pyraft.testing.cluster import leader_of, memory_cluster, run_on_fresh_loop
from pyraft.testing.processes import free_port
from pyraft.transport.memory import MemoryNetwork
from pyraft.transport.tcp import TcpTransport, member_identity


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
            RaftCluster(ClusterConfig(member_id=m, tick_ms=5, peers=peers),
                        transport=TcpTransport(m, peers[m], cluster_id=9))
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


# ---- over TLS --------------------------------------------------------------------------------
def server_context(cert, trust) -> ssl.SSLContext:
    """Mutual TLS, server side: present ``cert``, require a client certificate from ``trust``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    trust.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(cert, trust) -> ssl.SSLContext:
    """Mutual TLS, connecting side: verify the server against ``trust``, present ``cert``."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    trust.configure_trust(context)
    cert.configure_cert(context)
    return context


def tls_members(peers, certs, trust, directory=None):
    """A member per id of ``peers`` on TCP with mutual TLS; ``certs[id]`` is its certificate,
    ``trust[id]`` the CA it accepts; durable storage under ``directory`` when given. The
    certificates need not name their member (``tls_member_identity=False``)."""
    return [
        RaftCluster(ClusterConfig(member_id=m, tick_ms=5, peers=peers),
                    transport=TcpTransport(m, peers[m], cluster_id=9,
                                           ssl_server=server_context(certs[m], trust[m]),
                                           ssl_client=client_context(certs[m], trust[m]),
                                           connect_timeout_ms=1000.0,
                                           request_timeout_ms=1000.0,
                                           tls_member_identity=False),
                    storage=None if directory is None else DurableLogStorage(directory / f"m{m}"))
        for m in peers
    ]


async def run_members(members, scenario) -> None:
    started = []
    try:
        for member in members:
            await member.start()
            started.append(member)
        await scenario(members)
    finally:
        for member in started:
            await member.stop()


def test_messaging_over_mutual_tls():
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "member.raft.test")

    async def scenario(members):
        await exercise(members)
        for member in members:
            assert member.transport.ssl_server is not None
            assert member.transport.counters.connections > 0
            assert member.transport.counters.refused == 0

    async def body():
        peers = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3)}
        await run_members(tls_members(peers, dict.fromkeys(peers, cert), dict.fromkeys(peers, ca)),
                          scenario)

    run_on_fresh_loop(body)


def test_messaging_over_tls_configured_with_files(tmp_path):
    """The production path: ``ClusterConfig.tls`` names PEM files; ``from_config`` builds the
    contexts (``require_client_cert``: mutual TLS)."""
    ca = trustme.CA()
    ca_file = str(tmp_path / "ca.pem")
    ca.cert_pem.write_to_path(ca_file)
    tls = {}
    for member in (1, 2, 3):  # each certificate names its member (TlsConfig.member_identity)
        cert = ca.issue_cert("127.0.0.1", member_identity(member))
        cert_file, key_file = str(tmp_path / f"{member}.pem"), str(tmp_path / f"{member}.key")
        cert.cert_chain_pems[0].write_to_path(cert_file)
        for pem in cert.cert_chain_pems[1:]:
            pem.write_to_path(cert_file, append=True)
        cert.private_key_pem.write_to_path(key_file)
        tls[member] = TlsConfig(cert_file=cert_file, key_file=key_file, ca_file=ca_file,
                                require_client_cert=True)

    async def scenario(members):
        await exercise(members)
        for member in members:
            assert member.transport.ssl_server.verify_mode == ssl.CERT_REQUIRED
            assert member.transport.counters.refused == 0

    async def body():
        peers = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3)}
        members = [
            RaftCluster.from_config(ClusterConfig(
                member_id=m, tick_ms=5, cluster_id=9, listen=peers[m], peers=peers, tls=tls[m],
                sync="never", connect_timeout_ms=100, request_timeout_ms=100))
            for m in peers
        ]
        await run_members(members, scenario)

    run_on_fresh_loop(body)


def test_tls_keeps_a_member_with_an_untrusted_certificate_out_of_messaging(tmp_path):
    """Member 3's certificate comes from another CA: members 1 and 2 refuse its connections
    and it refuses theirs, so a request to it times out while 1 and 2 still talk."""
    ca, other_ca = trustme.CA(), trustme.CA()
    member_cert = ca.issue_cert("127.0.0.1", "member.raft.test")
    stranger_cert = other_ca.issue_cert("127.0.0.1", "stranger.raft.test")
    certs = {1: member_cert, 2: member_cert, 3: stranger_cert}
    trust = {1: ca, 2: ca, 3: other_ca}

    async def scenario(members):
        messengers = wire(members)
        try:
            trusted = [m for m in members if m.id != 3]
            leader = await leader_of(trusted)
            follower = next(m for m in trusted if m is not leader)
            messenger = messengers[follower.id][0]
            assert await messenger.request(leader.id, "echo", b"ok") == (
                b"%d->%d:ok" % (follower.id, leader.id))
            with pytest.raises(MessageTimeoutError):
                await messenger.request(3, "echo", b"", timeout=0.5)
            with pytest.raises(MessageTimeoutError):
                await messengers[3][0].request(leader.id, "echo", b"", timeout=0.5)
            assert members[2].transport.counters.connections == 0
            assert sum(m.transport.counters.refused for m in members) > 0
        finally:
            for messenger, _ in messengers.values():
                await messenger.close()

    async def body():
        peers = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3)}
        # durable members: a new in-memory cluster's first election needs every voter, and
        # member 3 never gets through (RaftOptions.fresh_start_guard)
        await run_members(tls_members(peers, certs, trust, tmp_path), scenario)

    run_on_fresh_loop(body)
