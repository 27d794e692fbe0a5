"""The transport interface: how the runtime moves ``pyraft.core.Message`` between members.

A transport is public and replaceable (``pyraft.transport.memory`` is the worked example;
``pyraft.transport.tcp`` the production one, TLS included). The runtime calls it only from
its event loop:

- ``await start(on_message, on_unreachable)``: begin serving. ``on_message(message)`` is
  called on the event loop for every message received from a peer (already decoded and
  validated: entry batches have passed their checksums). Messages for another member id are
  dropped by the transport. ``on_unreachable(member_id)`` (optional) is called when messages
  to that member had to be dropped.
- ``set_peers({member_id: "host:port"})``: the members to talk to (called again whenever the
  configuration changes; connections to members no longer listed are closed).
- ``send(message)``: queue ``message`` for ``message.dst``; never blocks and never raises for
  a peer problem. Raft tolerates loss, duplication and reordering, so a transport may drop a
  message (a full queue, a peer down); it then reports the member through ``on_unreachable``
  so that the leader stops pipelining to that member.
- ``flush()``: put what ``send`` queued on the wire now.
- ``address``: where the transport serves (``"host:port"``), or None.
- ``await stop()``: close every connection and the listener; pending messages may be lost.

Both callbacks reach the transport through ``start`` (nobody assigns them from outside); an
implementation keeps them with ``_bind`` and reports a member with ``_report_unreachable``.

Bounds: every queue is bounded (``send_queue_messages_max``); frames larger than
``frame_bytes_max`` are refused. A malformed, oversized or truncated frame closes that one
connection (it is logged); the node keeps serving.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping

from pyraft.core.messages import Message

__all__ = ["Deliver", "OnMessage", "OnUnreachable", "OnUserMessage", "Transport"]

#: ``on_message``: called with every message received for this member
OnMessage = Callable[[Message], None]
#: the former name of ``OnMessage``
Deliver = OnMessage
#: ``on_unreachable``: called with a member id when messages to it had to be dropped
OnUnreachable = Callable[[int], None]
#: called with (sender id, body) for each application message (``pyraft.cluster.messaging``);
#: it may return the handler's task (a transport then bounds how many run at once)
OnUserMessage = Callable[[int, bytes], object]


class Transport(abc.ABC):
    #: called with (sender id, body) for each application message (pyraft.cluster.messaging)
    on_user_message: OnUserMessage | None = None
    #: ``start``'s ``on_unreachable``
    _on_unreachable: OnUnreachable | None = None

    @property
    def on_unreachable(self) -> OnUnreachable | None:
        """The ``on_unreachable`` callback ``start`` was given (None: nobody is told)."""
        return self._on_unreachable

    @property
    def address(self) -> str | None:
        """The ``"host:port"`` this transport serves on (the bound port once started: the
        runtime announces it when ``listen`` asked for port 0); None for a transport without
        network addresses, like the memory one."""
        return None

    @abc.abstractmethod
    async def start(self, on_message: OnMessage,
                    on_unreachable: OnUnreachable | None = None) -> None:
        """Begin serving: see the module docstring. Implementations call ``_bind`` first."""

    @abc.abstractmethod
    def set_peers(self, peers: Mapping[int, str]) -> None: ...

    @abc.abstractmethod
    def send(self, message: Message) -> None: ...

    def send_user(self, member: int, body: bytes) -> None:
        """Queue an application message for ``member`` (best effort, like ``send``)."""
        raise NotImplementedError(f"{type(self).__name__} does not carry member messages")

    def flush(self) -> None:
        """Put what ``send`` queued on the wire now, not at the loop's next turn. The
        runtime calls it once a Ready's messages are queued, before it syncs or applies."""
        return  # a transport that delivers in ``send`` (the memory one) has nothing queued

    @abc.abstractmethod
    async def stop(self) -> None: ...

    def _bind(self, on_unreachable: OnUnreachable | None) -> None:
        """Keep ``start``'s ``on_unreachable`` (None: nobody is told)."""
        self._on_unreachable = on_unreachable

    def _report_unreachable(self, member: int) -> None:
        callback = self._on_unreachable
        if callback is not None:
            callback(member)
