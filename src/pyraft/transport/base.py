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
- ``send_all(messages)``: ``send`` each, then ``flush``: how the runtime hands over each
  Ready's messages. The default does just that; the TCP transport does it in one compiled
  call.
- ``report_deliveries(callback)``: call ``callback()`` after the messages of each read are
  delivered; returns whether the transport does (the default does not). The runtime then
  handles a read's messages together, in the turn of the loop they arrived in.
- ``address``: where the transport serves (``"host:port"``), or None.
- ``await stop()``: close every connection and the listener; pending messages may be lost.
- ``send_user(member, body)`` and ``serve_user_messages(handler)``: application messages
  (``pyraft.cluster.messaging``), for a transport that carries them; ``handler(sender,
  body)`` is called for each one received (``user_message_handler`` reads it back).
- ``counters`` (a ``TransportCounters``, or None for a transport that keeps none),
  ``peer_bytes_sent`` and ``peer_bytes_received`` (bytes per member, empty by default):
  what ``pyraft.metrics`` reads when metrics are collected.

Both callbacks reach the transport through ``start`` (nobody assigns them from outside); an
implementation keeps them with ``_bind`` and reports a member with ``_report_unreachable``.

Bounds: every queue is bounded (``send_queue_messages_max``); frames larger than
``frame_bytes_max`` are refused. A malformed, oversized or truncated frame closes that one
connection (it is logged); the node keeps serving.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from pyraft.core.messages import Message

# defined beside the per-message path that counts into it (compiled there: C fields)
from pyraft.transport.stream import TransportCounters

__all__ = ["Deliver", "OnMessage", "OnUnreachable", "OnUserMessage", "Transport",
           "TransportCounters"]

#: ``on_message``: called with every message received for this member
OnMessage = Callable[[Message], None]
#: the former name of ``OnMessage``
Deliver = OnMessage
#: ``on_unreachable``: called with a member id when messages to it had to be dropped
OnUnreachable = Callable[[int], None]
#: called with (sender id, body) for each application message (``pyraft.cluster.messaging``);
#: it may return the handler's task (a transport then bounds how many run at once)
OnUserMessage = Callable[[int, bytes], object]

#: the per-member byte counts of a transport that keeps none
_NO_BYTES: Mapping[int, int] = MappingProxyType({})




class Transport(abc.ABC):
    #: ``start``'s ``on_unreachable``
    _on_unreachable: OnUnreachable | None = None
    #: ``serve_user_messages``'s handler (None: application messages are dropped)
    _on_user_message: OnUserMessage | None = None

    def serve_user_messages(self, handler: OnUserMessage | None) -> None:
        """Call ``handler(sender, body)`` for each application message received from now
        on (None: drop them). It may return the handler's task: a transport may then bound
        how many run at once."""
        self._on_user_message = handler

    @property
    def user_message_handler(self) -> OnUserMessage | None:
        """The handler ``serve_user_messages`` was given (None: none)."""
        return self._on_user_message

    @property
    def on_user_message(self) -> OnUserMessage | None:
        """The former name of ``user_message_handler``; assigning it is the former
        spelling of ``serve_user_messages``, kept for code written before."""
        return self._on_user_message

    @on_user_message.setter
    def on_user_message(self, handler: OnUserMessage | None) -> None:
        self.serve_user_messages(handler)

    @property
    def counters(self) -> TransportCounters | None:
        """Totals since the transport was created; None for a transport that keeps none."""
        return None

    @property
    def peer_bytes_sent(self) -> Mapping[int, int]:
        """Bytes written to each member's connections (empty for a transport without
        connections)."""
        return _NO_BYTES

    @property
    def peer_bytes_received(self) -> Mapping[int, int]:
        """Bytes read from each member's connections (empty for a transport without
        connections)."""
        return _NO_BYTES

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

    def send_all(self, messages: Sequence[Message]) -> None:
        """``send`` each of ``messages``, then ``flush``: the runtime hands each Ready's
        messages over in one call. A transport may do both in one step without calling its
        ``send`` (the TCP one does); one that wraps ``send`` wraps this too."""
        for message in messages:
            self.send(message)
        self.flush()

    def sender(self) -> Callable[[list[Message]], None]:
        """What the runtime calls with each Ready's messages (a list), taken once at start:
        ``send_all`` by default. A transport whose ``send_all`` only wraps another callable
        returns that one (the TCP transport: its compiled hub's), so that a Ready's messages
        reach the wire without an interpreted frame; a subclass overriding ``send_all`` gets
        its override."""
        return self.send_all

    def report_deliveries(self, callback: Callable[[], None] | None) -> bool:
        """Call ``callback()`` after the messages of each read are delivered to
        ``on_message`` (None: stop). Returns whether this transport does; the default does
        not (each message then stands alone)."""
        return False

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
