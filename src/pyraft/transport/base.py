"""The transport interface: how the runtime moves ``pyraft.core.Message`` between members.

A transport is public and replaceable (``pyraft.transport.memory`` is the worked example;
``pyraft.transport.tcp`` the production one, TLS included). The runtime calls it only from
its event loop:

- ``await start(deliver)``: begin serving. ``deliver(message)`` is called on the event loop
  for every message received from a peer (already decoded and validated: entry batches
  have passed their checksums). Messages for another member id are dropped by the
  transport.
- ``set_peers({member_id: "host:port"})``: the members to talk to (called again whenever the
  configuration changes; connections to members no longer listed are closed).
- ``send(message)``: queue ``message`` for ``message.dst``; never blocks and never raises for
  a peer problem. Raft tolerates loss, duplication and reordering, so a transport may drop a
  message (a full queue, a peer down); it then calls ``on_unreachable(member_id)`` so that the
  leader stops pipelining to that member.
- ``await stop()``: close every connection and the listener; pending messages may be lost.

Bounds: every queue is bounded (``send_queue_messages_max``); frames larger than
``frame_bytes_max`` are refused. A malformed, oversized or truncated frame closes that one
connection (it is logged); the node keeps serving.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping

from pyraft.core.messages import Message

Deliver = Callable[[Message], None]


class Transport(abc.ABC):
    #: called with a member id when messages to it had to be dropped
    on_unreachable: Callable[[int], None] | None = None
    #: called with (sender id, body) for each application message (pyraft.cluster.messaging)
    on_user_message: Callable[[int, bytes], None] | None = None

    def send_user(self, member: int, body: bytes) -> None:
        """Queue an application message for ``member`` (best effort, like ``send``)."""
        raise NotImplementedError(f"{type(self).__name__} does not carry member messages")

    @abc.abstractmethod
    async def start(self, deliver: Deliver) -> None: ...

    @abc.abstractmethod
    def set_peers(self, peers: Mapping[int, str]) -> None: ...

    @abc.abstractmethod
    def send(self, message: Message) -> None: ...

    def flush(self) -> None:
        """Put what ``send`` queued on the wire now, not at the loop's next turn. The
        runtime calls it once a Ready's messages are queued, before it syncs or applies."""
        return  # a transport that delivers in ``send`` (the memory one) has nothing queued

    @abc.abstractmethod
    async def stop(self) -> None: ...

    def _report_unreachable(self, member: int) -> None:
        callback = self.on_unreachable
        if callback is not None:
            callback(member)
