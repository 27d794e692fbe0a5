"""Resource limits of the TCP transport against hostile peers (``pyraft.transport.tcp``).

Each bound is checked by counting what the member holds (connections, handshake slots,
buffered bytes, running handlers), never by RSS; timing uses deadlines, not fixed sleeps.
"""

from __future__ import annotations

import asyncio
import time

from pyraft.cluster import RaftCluster
from pyraft.config import ClusterConfig
from pyraft.core.messages import Message, MessageType
from pyraft.testing.processes import free_port
from pyraft.transport.codec import (
    FRAME_ACCEPT,
    PROTOCOL_VERSION,
    Hello,
    encode_hello,
    encode_message,
)
from pyraft.transport.tcp import TcpTransport, parse_address
from raftcore.framing import FrameDecoder
from tests.security.conftest import eventually

CLUSTER = 11


def heartbeat(src: int, dst: int, n: int = 0) -> Message:
    return Message(MessageType.HEARTBEAT, src, dst, term=1, commit=n)


def frame_of(message: Message) -> bytes:
    return b"".join(bytes(part) for part in encode_message(message))


class Attacker:
    """A raw TCP connection that behaves badly on purpose."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.closing = False

    @classmethod
    async def connect(cls, address: str) -> Attacker:
        host, port = parse_address(address)
        return cls(*await asyncio.open_connection(host, port))

    async def hello(self, member: int) -> bool:
        """Say HELLO as ``member``; True when accepted."""
        self.writer.write(encode_hello(Hello(PROTOCOL_VERSION, CLUSTER, member, 0)))
        decoder = FrameDecoder()
        while True:
            data = await asyncio.wait_for(self.reader.read(4096), 10)
            if not data:
                return False
            frames = decoder.feed(data)
            if frames:
                return frames[0][0] == FRAME_ACCEPT

    def closed(self) -> bool:
        return self.reader.at_eof() or self.writer.is_closing()

    async def trickle(self, data: bytes, interval_s: float, stop: asyncio.Event) -> None:
        """Send ``data`` a byte at a time until it is all sent, the peer closes or ``stop``."""
        for byte in data:
            if stop.is_set() or self.writer.is_closing():
                return
            try:
                self.writer.write(bytes([byte]))
                await self.writer.drain()
            except OSError:
                return
            try:  # notice EOF from the peer while waiting
                if await asyncio.wait_for(self.reader.read(4096), interval_s) == b"":
                    return
            except asyncio.TimeoutError:
                pass
            except OSError:
                return

    async def close(self) -> None:
        """Close once (a task cancelled while closing leaves the close to the transport)."""
        if self.closing:
            return
        self.closing = True
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


async def member(member_id: int, **options) -> tuple[TcpTransport, list]:
    inbox: list = []
    transport = TcpTransport(member_id, "127.0.0.1:0", cluster_id=CLUSTER, **options)
    await transport.start(inbox.append)
    return transport, inbox


def test_connections_stuck_in_the_handshake_are_bounded(run, logs):
    async def main():
        victim, inbox = await member(1, handshakes_max=4, connect_timeout_ms=1500.0,
                                     request_timeout_ms=1500.0)
        sender, _ = await member(2, connect_timeout_ms=1500.0, request_timeout_ms=1500.0)
        attackers = []
        try:
            for _ in range(12):  # connect and never say anything
                attackers.append(await Attacker.connect(victim.address))
                assert victim.handshakes_in_progress <= 4
            await eventually(lambda: victim.counters.shed >= 8)
            assert victim.handshakes_in_progress <= 4
            assert len(victim._connections) <= 4
            # the silent ones are cut at the handshake deadline; then members get in again
            await eventually(lambda: victim.handshakes_in_progress == 0)
            sender.set_peers({1: victim.address})
            sender.send(heartbeat(2, 1))
            await eventually(lambda: len(inbox) == 1)
            assert any("handshakes in progress" in line for line in logs())
            assert any("no handshake within" in line for line in logs())
        finally:
            for attacker in attackers:
                await attacker.close()
            await sender.stop()
            await victim.stop()

    run(main)


def test_a_frame_trickled_in_is_cut_off_although_bytes_keep_coming(run, logs):
    async def main():
        victim, inbox = await member(1, request_timeout_ms=400.0, receive_bytes_per_s_min=2000)
        attacker = await Attacker.connect(victim.address)
        stop = asyncio.Event()
        try:
            assert await attacker.hello(3)
            started = time.monotonic()
            # one byte every 50 ms: never idle for request_timeout_s, never a whole frame
            await asyncio.wait_for(
                attacker.trickle(frame_of(heartbeat(3, 1)) * 50, 0.05, stop), 20)
            assert attacker.closed() or victim.counters.errors == 1
            await eventually(lambda: victim.counters.errors == 1)
            assert time.monotonic() - started >= 0.4  # not before the grace period
            assert inbox == []
            assert any("trickling in" in line for line in logs()), logs()
        finally:
            stop.set()
            await attacker.close()
            await victim.stop()

    run(main)


def test_a_fast_peer_sending_big_frames_in_pieces_is_not_cut(run):
    """The rate floor only catches tricklers: a big frame in many quick pieces goes through."""

    async def main():
        victim, inbox = await member(1, request_timeout_ms=200.0, receive_bytes_per_s_min=2000)
        attacker = await Attacker.connect(victim.address)
        try:
            assert await attacker.hello(3)
            message = Message(MessageType.HEARTBEAT, 3, 1, term=1, context=b"x" * 20_000)
            data = frame_of(message)
            for start in range(0, len(data), 1000):  # 20 pieces over ~0.4 s: 50 kB/s
                attacker.writer.write(data[start : start + 1000])
                await asyncio.sleep(0.02)
            await eventually(lambda: len(inbox) == 1)
            assert victim.counters.errors == 0
        finally:
            await attacker.close()
            await victim.stop()

    run(main)


def test_members_not_in_the_configuration_are_bounded(run, logs):
    async def main():
        victim, _inbox = await member(1, unknown_members_max=2)
        victim.set_peers({2: "127.0.0.1:1"})
        attackers = [await Attacker.connect(victim.address) for _ in range(4)]
        try:
            answers = [await a.hello(100 + i) for i, a in enumerate(attackers)]
            assert answers == [True, True, False, False]
            known = await Attacker.connect(victim.address)
            assert await known.hello(2)  # a configured member still gets in
            await known.close()
            assert any("is not in the configuration" in line for line in logs())
        finally:
            for attacker in attackers:
                await attacker.close()
            await victim.stop()

    run(main)


def test_member_messages_in_flight_per_connection_are_bounded(run):
    async def main():
        loop = asyncio.get_running_loop()
        victim, inbox = await member(1, user_requests_inflight_max=3)
        running: list[asyncio.Future] = []

        def handler(sender: int, body: bytes) -> asyncio.Future:
            future = loop.create_future()
            running.append(future)
            return future

        victim.on_user_message = handler
        sender, _ = await member(2)
        try:
            sender.set_peers({1: victim.address})
            for n in range(10):
                sender.send_user(1, b"request %d" % n)
            for n in range(5):
                sender.send(heartbeat(2, 1, n))
            await eventually(lambda: len(inbox) == 5)  # Raft traffic is not held up
            assert len(running) == 3 and victim.counters.user_dropped == 7
            for future in running:
                future.set_result(None)
            await asyncio.sleep(0)
            sender.send_user(1, b"after")
            await eventually(lambda: len(running) == 4)
            running[-1].set_result(None)
        finally:
            await sender.stop()
            await victim.stop()

    run(main)


def test_slow_loris_does_not_exhaust_memory_or_stall_a_cluster(run):
    """Many connections trickling bytes at each member of a 3-member TCP cluster, some stuck
    in HELLO and some after it (posing as members not in the configuration): the members'
    holdings stay bounded and the cluster keeps committing writes meanwhile."""

    async def main():
        limits = dict(handshakes_max=8, unknown_members_max=4, receive_bytes_per_s_min=4096)
        peers = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3)}
        members = [
            RaftCluster(ClusterConfig(member_id=m, tick_ms=10, election_timeout_ms_lower=300,
                                      election_timeout_ms_upper=600, peers=peers),
                        transport=TcpTransport(m, peers[m], cluster_id=CLUSTER,
                                               connect_timeout_ms=250.0, request_timeout_ms=250.0,
                                               **limits))
            for m in peers
        ]
        stop = asyncio.Event()
        attackers: list[Attacker] = []
        tasks: list[asyncio.Task] = []
        peaks = {"handshakes": 0, "connections": 0, "buffered": 0}

        async def attack(address: str, index: int) -> None:
            # keep reconnecting: each connection trickles until it is cut off
            while not stop.is_set():
                try:
                    attacker = await Attacker.connect(address)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                attackers.append(attacker)
                try:
                    if index % 2 and not await attacker.hello(1000 + index):
                        await asyncio.sleep(0.05)
                        continue
                    payload = frame_of(heartbeat(1000 + index, 1)) * 20
                    if not index % 2:
                        payload = encode_hello(Hello(PROTOCOL_VERSION, CLUSTER, 1000 + index, 0))
                    await attacker.trickle(payload, 0.03, stop)
                except (OSError, asyncio.TimeoutError):
                    pass
                finally:
                    await attacker.close()
                await asyncio.sleep(0.02)

        async def watch() -> None:
            while not stop.is_set():
                for m in members:
                    t = m.transport
                    peaks["handshakes"] = max(peaks["handshakes"], t.handshakes_in_progress)
                    peaks["connections"] = max(peaks["connections"], len(t._connections))
                    peaks["buffered"] = max(peaks["buffered"], t.buffered_bytes)
                await asyncio.sleep(0.01)

        try:
            for m in members:
                await m.start()
            tasks.append(asyncio.get_running_loop().create_task(watch()))
            for i in range(60):  # 20 per member, 10 of them stuck in HELLO
                address = peers[1 + i % 3]
                tasks.append(asyncio.get_running_loop().create_task(attack(address, i)))
            # the attack is in full swing once every member has cut tricklers off
            await eventually(lambda: all(m.transport.counters.errors >= 3 for m in members),
                             timeout_s=30)
            committed = 0
            attack_until = time.monotonic() + 3.0  # writes for 3 s while under attack
            while time.monotonic() < attack_until or committed < 20:
                assert time.monotonic() < attack_until + 60, f"only {committed} writes"
                leader = next((m for m in members if m.is_leader), None)
                if leader is None:
                    await asyncio.sleep(0.02)
                    continue
                try:
                    await leader.replicate(b"w%d" % committed, timeout=2.0)
                    committed += 1
                except Exception:  # noqa: BLE001 - an election under load: try again
                    await asyncio.sleep(0.02)
            assert committed >= 20
            print(f"{committed} writes committed in 3 s of slow-loris; peaks {peaks}")
            assert all(m.applied_index >= committed for m in members if m.is_leader)
            assert sum(m.transport.counters.errors for m in members) > 0  # tricklers were cut
            assert sum(m.transport.counters.refused for m in members) > 0  # strangers refused
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                for attacker in attackers:
                    await attacker.close()
            finally:
                for m in members:
                    await m.stop()
        # bounds: handshake slots; handshaking + 2 peers + strangers (+ replaced ones closing)
        assert peaks["handshakes"] <= limits["handshakes_max"]
        assert peaks["connections"] <= limits["handshakes_max"] + 2 + 2 + limits[
            "unknown_members_max"] + 4
        # one handshake frame per handshaking connection, one frame per accepted one
        assert peaks["buffered"] <= 8 * 4096 + 10 * 64 * 1024

    run(main, timeout_s=120)
