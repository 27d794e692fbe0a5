"""One source of configuration: ``TcpTransport.from_config`` and the transports' defaults.

``ClusterConfig`` holds every default once. A transport built from a default configuration
has exactly the configuration's values; no transport keyword has a default of its own for a
setting the configuration also has; ``from_config`` builds what ``RaftCluster.from_config``
builds; and two members built from their configurations (TLS, member identity on by default)
talk, while a certificate that does not name its member is refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import ssl
from collections.abc import Callable

import pytest
import trustme

from pyraft.config import ClusterConfig, TlsConfig
from pyraft.core.messages import Message, MessageType
from pyraft.errors import ConfigError
from pyraft.testing.cluster import run_on_fresh_loop
from pyraft.transport.memory import MemoryNetwork, MemoryTransport
from pyraft.transport.tcp import TcpTransport
from pyraft.transport.tls import member_identity
from tests.transport.test_member_tls import write_pem_files

TLS_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TlsConfig)}

#: each keyword of ``TcpTransport`` the configuration also has: the configuration's value,
#: in the transport's unit (the transport keeps it under the keyword's name)
FROM_CONFIG: dict[str, Callable[[ClusterConfig], object]] = {
    "connect_timeout_ms": lambda c: c.connect_timeout_ms,
    "request_timeout_ms": lambda c: c.request_timeout_ms,
    "frame_bytes_max": lambda c: c.frame_bytes_max,
    "send_queue_messages_max": lambda c: c.send_queue_messages_max,
    "server_backlog": lambda c: c.server_backlog,
    "linger_ms": lambda c: c.linger_ms,
    "ttl_hops": lambda c: c.ttl_hops,
    "write_buffer_bytes": lambda c: c.transmission_block_bytes,
    "tls_member_identity": lambda c: c.tls is not None and c.tls.member_identity,
    "handshakes_max": lambda c: c.handshakes_max,
    "unknown_members_max": lambda c: c.unknown_members_max,
    "user_requests_inflight_max": lambda c: c.user_requests_inflight_max,
    "receive_bytes_per_s_min": lambda c: c.receive_bytes_per_s_min,
}
#: keywords with a default that the configuration does not have
TRANSPORT_ONLY = {"ssl_server", "ssl_client", "backoff_ms", "rng"}
#: former names, None when not given (see TcpTransport's docstring)
FORMER = {"connect_timeout_s": "connect_timeout_ms", "request_timeout_s": "request_timeout_ms",
          "linger_s": "linger_ms", "backlog": "server_backlog"}


def keyword_defaults(function: Callable[..., object]) -> dict[str, object]:
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_every_tcp_keyword_default_is_the_configurations():
    defaults = keyword_defaults(TcpTransport.__init__)
    unclassified = set(defaults) - set(FROM_CONFIG) - TRANSPORT_ONLY - set(FORMER)
    assert not unclassified, f"classify these keywords in this test: {sorted(unclassified)}"
    config = ClusterConfig(member_id=1)
    for keyword, value_of in FROM_CONFIG.items():
        expected = (TLS_DEFAULTS["member_identity"] if keyword == "tls_member_identity"
                    else value_of(config))
        assert defaults[keyword] == expected, keyword
    assert TLS_DEFAULTS["member_identity"] is True  # on, for users and for direct callers
    assert all(defaults[name] is None for name in FORMER)


@pytest.mark.parametrize("function, own", [
    (MemoryNetwork.__init__, {"through_codec"}),
    (MemoryTransport.__init__, set()),
    (MemoryNetwork.transport, set()),
])
def test_no_memory_transport_keyword_has_a_second_default(function, own):
    """The memory transport's only default is its own (``through_codec``); a setting the
    configuration also has would have to take the configuration's default."""
    config = {f.name: f for f in dataclasses.fields(ClusterConfig)}
    defaults = keyword_defaults(function)
    assert set(defaults) - set(config) == own
    for name in set(defaults) & set(config):
        assert defaults[name] == config[name].default, name


def values_of(transport: TcpTransport) -> dict[str, object]:
    return {keyword: getattr(transport, keyword) for keyword in FROM_CONFIG}


def test_a_transport_from_a_default_configuration_has_exactly_its_values():
    config = ClusterConfig(member_id=3, listen="127.0.0.1:0").validate()
    transport = TcpTransport.from_config(config)
    assert values_of(transport) == {k: value_of(config) for k, value_of in FROM_CONFIG.items()}
    assert (transport.member_id, transport.cluster_id, transport.address) == (
        3, 0, "127.0.0.1:0")
    assert transport.ssl_server is None and transport.ssl_client is None
    # and the same as built from the keywords' defaults
    assert values_of(TcpTransport(3, "127.0.0.1:0", cluster_id=0)) == values_of(transport)


SETTINGS = dict(member_id=2, cluster_id=11, listen="127.0.0.1:0", connect_timeout_ms=40.0,
                request_timeout_ms=90.0, frame_bytes_max=2**21, send_queue_messages_max=77,
                server_backlog=9, linger_ms=3000.0, ttl_hops=17, transmission_block_bytes=4096,
                handshakes_max=3, unknown_members_max=0, user_requests_inflight_max=5,
                receive_bytes_per_s_min=1000, append_bytes_max=2**20,
                snapshot_chunk_bytes=2**20)


def test_from_config_hands_the_transport_every_setting():
    config = ClusterConfig(**SETTINGS).validate()
    transport = TcpTransport.from_config(config)
    assert values_of(transport) == {k: value_of(config) for k, value_of in FROM_CONFIG.items()}
    assert values_of(transport)["linger_ms"] == 3000.0 and transport.cluster_id == 11


def test_from_config_builds_what_the_runtime_builds(tmp_path):
    """``RaftCluster.from_config`` builds its transport by hand until the runtime uses
    ``TcpTransport.from_config``: both must agree, TLS included."""
    from pyraft.cluster.runtime import RaftCluster

    files = write_pem_files(tmp_path, trustme.CA(), "m2", member_identity(2))
    for tls in (None, TlsConfig(**files, require_client_cert=True),
                TlsConfig(**files, member_identity=False)):
        config = ClusterConfig(**SETTINGS, tls=tls).validate()
        ours = TcpTransport.from_config(config)
        theirs = RaftCluster.from_config(config).transport
        assert isinstance(theirs, TcpTransport)
        assert values_of(ours) == values_of(theirs)
        assert (ours.member_id, ours.cluster_id, ours.address, ours.backoff_ms) == (
            theirs.member_id, theirs.cluster_id, theirs.address, theirs.backoff_ms)
        for side in ("ssl_server", "ssl_client"):
            mine, runtime = getattr(ours, side), getattr(theirs, side)
            assert (mine is None) == (runtime is None) == (tls is None)
            if mine is not None:
                assert (mine.verify_mode, mine.check_hostname) == (
                    runtime.verify_mode, runtime.check_hostname)
        assert ours.tls_member_identity == (tls is not None and tls.member_identity)


def test_from_config_validates_first():
    with pytest.raises(ConfigError) as info:
        TcpTransport.from_config(ClusterConfig(member_id=1, connect_timeout_ms=500.0))
    assert info.value.field == "connect_timeout_ms"  # longer than request_timeout_ms


def test_former_keyword_names_still_mean_the_same():
    former = TcpTransport(1, "127.0.0.1:0", cluster_id=1, connect_timeout_s=0.04,
                          request_timeout_s=0.09, linger_s=2.0, backlog=7)
    assert (former.connect_timeout_ms, former.request_timeout_ms, former.linger_ms,
            former.server_backlog) == pytest.approx((40.0, 90.0, 2000.0, 7))


def tls_config(tmp_path, ca: trustme.CA, member: int, *identities: str,
               mutual: bool) -> ClusterConfig:
    files = write_pem_files(tmp_path, ca, f"m{member}", *identities)
    tls = TlsConfig(**files, require_client_cert=True) if mutual else TlsConfig(**files)
    return ClusterConfig(member_id=member, cluster_id=4, listen="127.0.0.1:0",
                         connect_timeout_ms=300.0, request_timeout_ms=300.0,
                         tls=tls).validate()


@pytest.mark.parametrize("mutual", [True, False], ids=["mutual", "tls-defaults"])
@pytest.mark.parametrize("named", [True, False], ids=["identity", "no-identity"])
def test_members_built_from_their_configurations_talk_over_tls(tmp_path, named, mutual):
    """Member identity is on by default: member 1's certificate must name member 1. With
    ``TlsConfig``'s own defaults (``require_client_cert`` False) members must still talk:
    identity asks for the client's certificate (two members of a default TLS configuration
    refused each other before)."""
    ca = trustme.CA()
    first = tls_config(tmp_path, ca, 1, member_identity(1) if named else "member.raft.test",
                       mutual=mutual)
    second = tls_config(tmp_path, ca, 2, member_identity(2), mutual=mutual)

    async def main() -> None:
        inbox: list[Message] = []
        unreachable: list[int] = []
        a, b = TcpTransport.from_config(first), TcpTransport.from_config(second)
        assert isinstance(a.ssl_server, ssl.SSLContext) and a.tls_member_identity
        await a.start(lambda message: None, unreachable.append)
        await b.start(inbox.append)
        try:
            a.set_peers({2: b.address})
            b.set_peers({1: a.address})
            for n in range(50):
                a.send(Message(MessageType.HEARTBEAT, 1, 2, term=1, commit=n))
                if inbox or b.counters.refused:
                    break
                await asyncio.sleep(0.05)
            if named:
                assert inbox and b.counters.refused == 0
            else:
                assert not inbox and b.counters.refused >= 1 and b.counters.connections == 0
        finally:
            await a.stop()
            await b.stop()

    run_on_fresh_loop(main, "asyncio", 20.0)
