"""Mutual TLS with member identities: bad peers are refused before any Raft message is read.

Member 1 accepts with ``CERT_REQUIRED`` and ``tls_member_identity=True``. Each attacker is a
real ``TcpTransport`` (it waits for ACCEPT like a member) or a raw TLS client that sends HELLO
and a Raft frame at once without waiting; member 1 must deliver nothing and complete no
handshake. A legitimate member 2 shows the same setup does deliver (so each test can fail).
"""

from __future__ import annotations

import asyncio
import ssl

import pytest

from pyraft.core.messages import Message, MessageType
from pyraft.errors import ConfigError
from pyraft.transport.codec import PROTOCOL_VERSION, Hello, encode_hello, encode_message
from pyraft.transport.tcp import (
    TcpTransport,
    certificate_names,
    member_identity,
    parse_address,
)
from tests.security.conftest import client_context, eventually, server_context

CLUSTER = 9
FAST = dict(connect_timeout_ms=1000.0, request_timeout_ms=1000.0, backoff_ms=(20.0, 100.0))


def heartbeat(src: int, dst: int, n: int) -> Message:
    return Message(MessageType.HEARTBEAT, src, dst, term=5, commit=n)


class Member:
    def __init__(self, member: int, *, server=None, client=None, identity=True) -> None:
        self.inbox: list[Message] = []
        self.user: list[tuple[int, bytes]] = []
        self.transport = TcpTransport(member, "127.0.0.1:0", cluster_id=CLUSTER,
                                      ssl_server=server, ssl_client=client,
                                      tls_member_identity=identity, **FAST)
        self.transport.on_user_message = lambda sender, body: self.user.append((sender, body))

    async def start(self) -> Member:
        await self.transport.start(self.inbox.append)
        return self


async def victim(pki) -> Member:
    ca, cert = pki["ca"], pki["member"][1]
    return await Member(1, server=server_context(ca, cert), client=client_context(ca, cert)).start()


def assert_nothing_processed(target: Member) -> None:
    counters = target.transport.counters
    assert target.inbox == [] and target.user == []
    assert counters.received == 0 and counters.connections == 0
    assert target.transport.peer_bytes_received == {}


async def raw_attack(address: str, context: ssl.SSLContext, claimed: int) -> None:
    """TLS-connect, send HELLO and a Raft frame at once, read until the server closes."""
    host, port = parse_address(address)
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=context,
                                                       server_hostname=None)
    except (OSError, ssl.SSLError):
        return  # refused during the TLS handshake
    try:
        writer.write(encode_hello(Hello(PROTOCOL_VERSION, CLUSTER, claimed, 1)))
        writer.write(b"".join(bytes(p) for p in encode_message(heartbeat(claimed, 1, 0))))
        for _ in range(100):
            if not await asyncio.wait_for(reader.read(65536), 5):
                break
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


BAD_CLIENTS = {
    "no-certificate": lambda pki: None,
    "another-ca": lambda pki: pki["other_ca"],
    "expired": lambda pki: pki["expired"],
    "member-2-claiming-3": lambda pki: pki["member"][2],
    "no-identity": lambda pki: pki["anonymous"],
}


@pytest.mark.parametrize("case", sorted(BAD_CLIENTS))
def test_a_bad_client_is_refused_before_any_message(run, pki, logs, case):
    async def main():
        a = await victim(pki)
        ca, cert = pki["ca"], BAD_CLIENTS[case](pki)
        # the attacker's own server side is valid: only its client certificate is bad
        bad = await Member(3, server=server_context(ca, pki["member"][3]),
                           client=client_context(ca, cert)).start()
        good = await Member(2, server=server_context(ca, pki["member"][2]),
                            client=client_context(ca, pki["member"][2])).start()
        try:
            for m in (bad, good):
                m.transport.set_peers({1: a.transport.address})
            for n in range(20):
                bad.transport.send(heartbeat(3, 1, n))
                bad.transport.send_user(1, b"hello")
                good.transport.send(heartbeat(2, 1, n))
            await raw_attack(a.transport.address, client_context(ca, cert), claimed=3)
            await eventually(lambda: len(a.inbox) == 20)  # the legitimate member got through
            await eventually(lambda: a.transport.counters.refused >= 1)
            await eventually(lambda: bad.transport.peer_state(1) == "backoff")
            assert {m.src for m in a.inbox} == {2} and a.user == []
            assert a.transport.counters.connections == 1  # member 2's only
            assert set(a.transport.peer_bytes_received) <= {2}
            assert a.transport.counters.received == 20
            refusals = [line for line in logs() if "refused connection" in line]
            if case in ("member-2-claiming-3", "no-identity"):
                assert any("does not name member 3" in line for line in refusals), refusals
            else:
                assert any("TLS handshake failed" in line for line in refusals), refusals
        finally:
            for m in (bad, good, a):
                await m.transport.stop()

    run(main)


@pytest.mark.parametrize("case", ["expired", "member-2-claiming-3", "another-ca"])
def test_only_bad_clients_leave_the_victim_untouched(run, pki, case):
    """Without a legitimate member at all: nothing is counted, delivered or buffered."""

    async def main():
        a = await victim(pki)
        ca, cert = pki["ca"], BAD_CLIENTS[case](pki)
        try:
            for _ in range(3):
                await raw_attack(a.transport.address, client_context(ca, cert), claimed=3)
            counters = a.transport.counters
            # refused at TLS, or (HELLO and a frame at once) closed before any answer
            await eventually(lambda: counters.refused + counters.errors >= 3)
            assert_nothing_processed(a)
            await eventually(lambda: a.transport.handshakes_in_progress == 0)
        finally:
            await a.transport.stop()

    run(main)


def test_a_server_with_another_members_certificate_is_refused_by_the_client(run, pki, logs):
    async def main():
        ca = pki["ca"]
        # "member 2" presents member 3's certificate (valid CA, wrong identity)
        impostor = await Member(2, server=server_context(ca, pki["member"][3]),
                                client=client_context(ca, pki["member"][3])).start()
        a = await victim(pki)
        try:
            a.transport.set_peers({2: impostor.transport.address})
            for n in range(5):
                a.transport.send(heartbeat(1, 2, n))
            await eventually(lambda: a.transport.peer_state(2) == "backoff")
            assert impostor.inbox == []
            assert any("server identity" in line and "does not name member 2" in line
                       for line in logs()), logs()
        finally:
            await a.transport.stop()
            await impostor.transport.stop()

    run(main)


def test_members_with_identities_talk_both_ways(run, pki):
    async def main():
        ca = pki["ca"]
        members = [await Member(m, server=server_context(ca, pki["member"][m]),
                                client=client_context(ca, pki["member"][m])).start()
                   for m in (1, 2)]
        try:
            peers = {m: x.transport.address for m, x in zip((1, 2), members)}
            for x in members:
                x.transport.set_peers(peers)
            members[0].transport.send(heartbeat(1, 2, 1))
            members[1].transport.send(heartbeat(2, 1, 1))
            await eventually(lambda: all(len(x.inbox) == 1 for x in members))
        finally:
            for x in members:
                await x.transport.stop()

    run(main)


def test_identity_helpers_and_parameters(pki):
    assert member_identity(3) == "member-3.pyraft"
    with pytest.raises(ValueError):
        member_identity(0)
    assert certificate_names({"subjectAltName": (("DNS", "Member-3.pyraft"),
                                                 ("IP Address", "127.0.0.1"))}) == {
        "member-3.pyraft"}
    assert certificate_names(None) == frozenset()
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    with pytest.raises(ConfigError, match="tls_member_identity"):
        TcpTransport(1, "127.0.0.1:0", cluster_id=1, ssl_client=context,
                     tls_member_identity=True)
    # on by default, like TlsConfig.member_identity; without TLS there is nothing to check
    assert TcpTransport(1, "127.0.0.1:0", cluster_id=1).tls_member_identity is False
    half = TcpTransport(1, "127.0.0.1:0", cluster_id=1, ssl_client=context,
                        tls_member_identity=False)
    assert half.tls_member_identity is False


def test_tls_config_binds_identities_by_default_and_can_be_relaxed():
    from pyraft.config import ClusterConfig, TlsConfig

    assert TlsConfig("c.pem", "k.pem", "ca.pem", True).member_identity is True
    base = {"member_id": 1, "listen": "127.0.0.1:7001", "peers": {1: "127.0.0.1:7001"}}
    relaxed = ClusterConfig.from_dict({**base, "tls": {
        "cert_file": "c.pem", "key_file": "k.pem", "ca_file": "ca.pem",
        "member_identity": False}}).validate()
    assert relaxed.tls.member_identity is False
    with pytest.raises(ConfigError, match="tls.member_identity"):
        ClusterConfig.from_dict({**base, "tls": {
            "cert_file": "c.pem", "key_file": "k.pem", "member_identity": "yes"}}).validate()
    env = ClusterConfig.from_env(environ={
        "PYRAFT_MEMBER_ID": "1", "PYRAFT_LISTEN": "127.0.0.1:7001",
        "PYRAFT_TLS_CERT_FILE": "c.pem", "PYRAFT_TLS_KEY_FILE": "k.pem",
        "PYRAFT_TLS_MEMBER_IDENTITY": "false"})
    assert env.tls.member_identity is False
