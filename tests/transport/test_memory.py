"""In-memory transport, and the contract every transport keeps (memory, memory + codec, TCP).

The contract tests run one scenario against each transport, on asyncio and uvloop, so the
runtime above a transport can rely on the same behaviour in simulation, tests and production:
delivery in order per pair, drops reported through ``on_unreachable``, nothing after ``stop``.
"""

from __future__ import annotations

import asyncio

import pytest

from pyraft.core.messages import Message, MessageType
from pyraft.transport.base import Transport
from pyraft.transport.codec import MalformedMessageError
from pyraft.transport.memory import MemoryNetwork, MemoryTransport
from pyraft.transport.tcp import TcpTransport
from raftcore.framing import encode_entries

from . import test_tcp as tcp_tests

T = MessageType
run = tcp_tests.run
eventually = tcp_tests.eventually
heartbeat = tcp_tests.heartbeat
mixed_messages = tcp_tests.mixed_messages
same = tcp_tests.same


class Members:
    """Started transports of one kind, with inboxes and unreachable reports."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.network = MemoryNetwork(through_codec=kind == "memory+codec")
        self.transports: dict[int, Transport] = {}
        self.inbox: dict[int, list[Message]] = {}
        self.unreachable: dict[int, list[int]] = {}

    async def start(self, *members: int) -> Members:
        """Start ``members``, passing both callbacks to ``start``."""
        for member in members:
            if self.kind == "tcp":
                transport = TcpTransport(member, "127.0.0.1:0", cluster_id=1, **tcp_tests.FAST)
            else:
                transport = self.network.transport(member)
            self.inbox[member] = []
            self.unreachable[member] = []
            await transport.start(self.inbox[member].append, self.unreachable[member].append)
            self.transports[member] = transport
        addresses = {m: t.address or f"memory:{m}" for m, t in self.transports.items()}
        for transport in self.transports.values():
            transport.set_peers(addresses)
        return self

    async def stop(self) -> None:
        for transport in self.transports.values():
            await transport.stop()


KINDS = ["memory", "memory+codec", "tcp"]


@pytest.mark.parametrize("kind", KINDS)
def test_contract_messages_arrive_in_order_per_pair(run, kind):
    async def main():
        members = await Members(kind).start(1, 2, 3)
        sent = {(src, dst): mixed_messages(src, dst, 30) for src in (1, 2, 3)
                for dst in (1, 2, 3) if src != dst}
        for n in range(30):
            for (src, _dst), messages in sent.items():
                members.transports[src].send(messages[n])
        await eventually(lambda: all(len(box) == 60 for box in members.inbox.values()))
        for (src, dst), messages in sent.items():
            got = [m for m in members.inbox[dst] if m.src == src]
            assert all(same(x, y) for x, y in zip(got, messages)) and len(got) == 30
        assert all(not reports for reports in members.unreachable.values())
        await members.stop()

    run(main)


@pytest.mark.parametrize("kind", KINDS)
def test_contract_a_stopped_member_is_reported_unreachable(run, kind):
    async def main():
        members = await Members(kind).start(1, 2)
        members.transports[1].send(heartbeat(1, 2, 0))
        await eventually(lambda: len(members.inbox[2]) == 1)
        await members.transports[2].stop()
        n = 1
        while not members.unreachable[1]:
            members.transports[1].send(heartbeat(1, 2, n))
            n += 1
            await asyncio.sleep(0.005)
        assert members.unreachable[1][0] == 2 and len(members.inbox[2]) == 1
        await members.transports[1].stop()

    run(main)


@pytest.mark.parametrize("kind", KINDS)
def test_contract_unknown_members_are_reported_unreachable(run, kind):
    async def main():
        members = await Members(kind).start(1)
        transport = members.transports[1]
        assert transport.on_unreachable == members.unreachable[1].append
        transport.send(heartbeat(1, 9, 0))
        await asyncio.sleep(0.01)
        assert members.unreachable[1] == [9]
        await members.stop()

    run(main)


@pytest.mark.parametrize("kind", KINDS)
def test_contract_callbacks_reach_a_transport_only_through_start(run, kind):
    async def main():
        transport = (TcpTransport(2, "127.0.0.1:0", cluster_id=1, **tcp_tests.FAST)
                     if kind == "tcp" else MemoryNetwork().transport(2))
        with pytest.raises(AttributeError):
            transport.on_unreachable = print  # type: ignore[misc]
        passed: list[int] = []
        await transport.start(lambda message: None, passed.append)
        assert transport.on_unreachable == passed.append
        transport.send(heartbeat(2, 9, 0))
        await asyncio.sleep(0.01)
        assert passed == [9]
        await transport.stop()

    run(main)


@pytest.mark.parametrize("kind", ["memory+codec", "tcp"])
def test_contract_local_only_messages_are_refused_at_send(run, kind):
    async def main():
        members = await Members(kind).start(1, 2)
        for mtype in (T.HUP, T.CHECK_QUORUM, T.SNAPSHOT_STATUS):
            with pytest.raises(MalformedMessageError):
                members.transports[1].send(Message(mtype, 1, 2))
        await members.stop()

    run(main)


def test_memory_delivers_on_a_later_loop_turn(run):
    async def main():
        members = await Members("memory").start(1, 2)
        message = heartbeat(1, 2, 0)
        members.transports[1].send(message)
        assert members.inbox[2] == []
        await asyncio.sleep(0)
        assert members.inbox[2] == [message]  # the very object: no codec in between
        await members.stop()

    run(main)


def test_memory_through_codec_delivers_decoded_copies_with_checked_entries(run):
    async def main():
        members = await Members("memory+codec").start(1, 2)
        entries = encode_entries(5, 2, [b"a", b"bc"])
        message = Message(T.APPEND, 1, 2, term=2, index=4, log_term=2, entries=entries)
        members.transports[1].send(message)
        await eventually(lambda: members.inbox[2])
        [received] = members.inbox[2]
        assert received is not message and same(received, message)
        assert [bytes(p) for p in received.entries.payloads()] == [b"a", b"bc"]
        assert members.network.delivered == 1
        await members.stop()

    run(main)


def test_memory_isolation_drops_and_reports_until_healed(run):
    async def main():
        members = await Members("memory").start(1, 2, 3)
        network = members.network
        network.isolate(3)
        members.transports[1].send(heartbeat(1, 3, 0))
        members.transports[3].send(heartbeat(3, 2, 0))
        members.transports[1].send(heartbeat(1, 2, 0))
        await asyncio.sleep(0)
        assert members.unreachable == {1: [3], 2: [], 3: [2]}
        assert [m.src for m in members.inbox[2]] == [1] and members.inbox[3] == []
        network.heal()
        members.transports[1].send(heartbeat(1, 3, 1))
        await asyncio.sleep(0)
        assert [m.commit for m in members.inbox[3]] == [1]
        await members.stop()

    run(main)


def test_memory_transport_is_a_transport():
    network = MemoryNetwork()
    assert isinstance(network.transport(1), MemoryTransport)
    assert isinstance(network.transport(1), Transport)
    assert network.transport(1).address is None  # no network address


def test_a_transport_must_implement_the_interface(run):
    class Partial(Transport):
        async def start(self, on_message, on_unreachable=None) -> None:
            self._bind(on_unreachable)

    with pytest.raises(TypeError, match="abstract"):
        Partial()  # type: ignore[abstract]

    class Minimal(Partial):
        def set_peers(self, peers) -> None:
            pass

        def send(self, message) -> None:
            self._report_unreachable(message.dst)

        async def stop(self) -> None:
            pass

    async def main():
        transport, reported = Minimal(), []
        await transport.start(lambda message: None, reported.append)
        transport.send(heartbeat(1, 4, 0))
        assert reported == [4] and transport.address is None
        with pytest.raises(NotImplementedError, match="member messages"):
            transport.send_user(4, b"x")

    run(main)


@pytest.mark.parametrize("kind", KINDS)
def test_contract_deliveries_are_reported_after_each_reads_messages(run, kind):
    """``report_deliveries(callback)``: the callback runs after the messages of each read
    (TCP) or of each turn's sends (memory), once per read and never before its messages."""
    async def main():
        members = await Members(kind).start(1, 2)
        events = members.inbox[2]  # messages and reports, in the order they happened
        assert members.transports[2].report_deliveries(lambda: events.append("read"))
        members.transports[1].send_all([heartbeat(1, 2, n) for n in range(5)])
        await eventually(lambda: len([e for e in events if e != "read"]) == 5
                         and events[-1] == "read")
        assert events[0] != "read"
        assert all(not (a == b == "read") for a, b in zip(events, events[1:]))
        assert [e.commit for e in events if e != "read"] == [0, 1, 2, 3, 4]
        if kind != "tcp":  # one turn's sends arrive together
            assert events.count("read") == 1
        members.transports[2].report_deliveries(None)  # no more reports
        members.transports[1].send(heartbeat(1, 2, 5))
        await eventually(lambda: len(events) > 0 and events[-1] != "read"
                         and events[-1].commit == 5)
        await members.stop()

    run(main)
