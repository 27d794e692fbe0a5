"""The declared surface of ``pyraft.transport.base.Transport`` that the layers above read:
the application-message handler, the counters and the per-member byte counts (what
``pyraft.metrics`` and ``pyraft.cluster.messaging`` use, with no ``getattr`` between)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from pyraft.core.messages import Message, MessageType
from pyraft.metrics import Metrics, render_prometheus
from pyraft.transport import tcp
from pyraft.transport.base import OnMessage, OnUnreachable, Transport, TransportCounters
from pyraft.transport.memory import MemoryNetwork


def test_a_transport_without_counters_reports_none_and_no_bytes() -> None:
    transport = MemoryNetwork().transport(1)
    assert transport.counters is None
    assert dict(transport.peer_bytes_sent) == {} and dict(transport.peer_bytes_received) == {}


def test_the_tcp_transport_declares_its_counters_and_byte_counts() -> None:
    transport = tcp.TcpTransport(1, "127.0.0.1:0", cluster_id=5)
    assert tcp.TransportCounters is TransportCounters  # the former import keeps working
    assert isinstance(transport.counters, TransportCounters)
    assert transport.counters is transport.counters  # one object, counted in place
    assert transport.peer_bytes_sent == {} and transport.peer_bytes_received == {}


def test_serve_user_messages_sets_reads_back_and_clears_the_handler() -> None:
    async def body() -> list[tuple[int, bytes]]:
        network = MemoryNetwork()
        a, b = network.transport(1), network.transport(2)
        received: list[tuple[int, bytes]] = []
        inbox: list[Message] = []
        await a.start(inbox.append)
        await b.start(inbox.append)

        def handler(sender: int, body: bytes) -> None:
            received.append((sender, body))

        b.serve_user_messages(handler)
        assert b.user_message_handler is handler and b.on_user_message is handler
        a.send_user(2, b"one")
        await asyncio.sleep(0)
        b.serve_user_messages(None)  # from now on, dropped
        a.send_user(2, b"two")
        await asyncio.sleep(0)
        b.on_user_message = handler  # the former spelling still serves
        assert b.user_message_handler is handler
        a.send_user(2, b"three")
        await asyncio.sleep(0)
        await a.stop()
        await b.stop()
        return received

    assert asyncio.run(body()) == [(1, b"one"), (1, b"three")]


class Minimal(Transport):
    """A transport of the application's own: only what the interface requires."""

    async def start(self, on_message: OnMessage,
                    on_unreachable: OnUnreachable | None = None) -> None:
        self._bind(on_unreachable)

    def set_peers(self, peers: Mapping[int, str]) -> None:
        return

    def send(self, message: Message) -> None:
        return

    async def stop(self) -> None:
        return


class Counting(Minimal):
    """One that keeps counters."""

    def __init__(self) -> None:
        self._counters = TransportCounters(sent=3, dropped=2, errors=1)

    @property
    def counters(self) -> TransportCounters:
        return self._counters

    @property
    def peer_bytes_sent(self) -> dict[int, int]:
        return {2: 40}


def test_metrics_read_a_transport_through_its_declared_properties() -> None:
    class Cluster:  # what Metrics.refresh reads of a RaftCluster
        transport = Counting()
        view = None
        stopped = False
        applied_index = 0
        proposals_queued = 0

    text = render_prometheus(Metrics(1, opentelemetry=False), Cluster())
    assert "pyraft_transport_sent_total 3" in text
    assert "pyraft_transport_dropped_total 2" in text
    assert 'pyraft_peer_bytes_sent_total{peer="2"} 40' in text
    assert "pyraft_peer_bytes_received_total{" not in text  # the default: none


class Recording(Minimal):
    """One with its own ``send`` and ``flush``, and nothing more."""

    def __init__(self) -> None:
        self.calls: list[object] = []

    def send(self, message: Message) -> None:
        self.calls.append(message.dst)

    def flush(self) -> None:
        self.calls.append("flush")


def test_send_all_is_each_send_then_one_flush_by_default() -> None:
    transport = Recording()
    transport.send_all([Message(MessageType.HEARTBEAT, 1, dst, term=1) for dst in (2, 3, 2)])
    transport.send_all([])
    assert transport.calls == [2, 3, 2, "flush", "flush"]
    assert transport.report_deliveries(lambda: None) is False  # each message stands alone
