"""In-memory transport: members of one process talk through a ``MemoryNetwork``.

The worked example of ``pyraft.transport.base.Transport``. Messages are delivered with
``loop.call_soon`` on the receiver's loop (one loop for the whole network), optionally
through the wire codec (``through_codec=True``: every message is encoded to bytes and decoded
again, so tests exercise the same validation as TCP). ``partition`` / ``heal`` cut links.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import cast

from pyraft.core.messages import Message
from pyraft.transport.base import OnMessage, OnUnreachable, Transport


class MemoryNetwork:
    def __init__(self, *, through_codec: bool = False) -> None:
        self.members: dict[int, MemoryTransport] = {}
        self.blocked: set[tuple[int, int]] = set()
        self.through_codec = through_codec
        self.delivered = 0

    def transport(self, member: int) -> MemoryTransport:
        return MemoryTransport(self, member)

    def isolate(self, member: int) -> None:
        for other in self.members:
            if other != member:
                self.blocked |= {(member, other), (other, member)}

    def heal(self) -> None:
        self.blocked.clear()

    def route(self, message: Message) -> bool:
        target = self.members.get(message.dst)
        if target is None or (message.src, message.dst) in self.blocked:
            return False
        loop = target.loop  # members are started transports: their loop is set
        if loop is None or target.deliver is None:
            return False
        if self.through_codec:
            from pyraft.transport.codec import decode_message, encode_message

            frame = b"".join(bytes(part) for part in encode_message(message))
            message = decode_message(frame)
        self.delivered += 1
        target.arrive(message)
        return True


class MemoryTransport(Transport):
    def __init__(self, network: MemoryNetwork, member: int) -> None:
        self.network = network
        self.member = member
        self.deliver: OnMessage | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.peers: dict[int, str] = {}
        #: messages arrived in this turn of the loop, delivered together at the next
        self._arrived: list[Message] = []
        self._report: Callable[[], None] | None = None

    async def start(self, on_message: OnMessage,
                    on_unreachable: OnUnreachable | None = None) -> None:
        self._bind(on_unreachable)
        self.loop = asyncio.get_running_loop()
        self.deliver = on_message
        self.network.members[self.member] = self

    def set_peers(self, peers: Mapping[int, str]) -> None:
        self.peers = dict(peers)

    def send(self, message: Message) -> None:
        if not self.network.route(message):
            self._report_unreachable(message.dst)

    def send_user(self, member: int, body: bytes) -> None:
        target = self.network.members.get(member)
        loop = None if target is None else target.loop
        if target is None or loop is None or (self.member, member) in self.network.blocked:
            self._report_unreachable(member)
            return
        loop.call_soon(target.receive_user, self.member, bytes(body))

    def receive_user(self, sender: int, body: bytes) -> None:
        handler = self._on_user_message
        if handler is not None and self.deliver is not None:
            handler(sender, body)

    def report_deliveries(self, callback: Callable[[], None] | None) -> bool:
        self._report = callback
        return True

    def arrive(self, message: Message) -> None:
        """Queue ``message``: the messages sent to this member in one turn of the loop are
        delivered together at the next, as those of one read of a TCP connection are."""
        if not self._arrived:
            cast(asyncio.AbstractEventLoop, self.loop).call_soon(self._deliver_arrived)
        self._arrived.append(message)

    def _deliver_arrived(self) -> None:
        arrived, self._arrived = self._arrived, []
        delivered = False
        for message in arrived:
            deliver = self.deliver
            if deliver is None:  # stopped meanwhile
                return
            deliver(message)
            delivered = True
        report = self._report
        if delivered and report is not None:
            report()

    async def stop(self) -> None:
        self.deliver = None
        self.network.members.pop(self.member, None)
