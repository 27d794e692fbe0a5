"""The TCP transport's per-message path: frames out to a peer, frames in to the runtime.

``pyraft.transport.tcp`` keeps everything else (connections, handshakes, TLS, timers,
failures, reconnection); this module holds only what runs for every message, as three small
classes that the compiled build types through ``stream.pxd`` (one source, two builds:
``pyraft._compiled``). Their slow and rare paths call back into ``tcp``'s objects.

- :class:`Hub`, one per transport: this member's id, the delivery callback, the counters, the
  peers' outboxes, and the outboxes with frames queued in this event-loop turn (one
  ``call_soon`` flushes them all, unless the runtime's ``flush`` comes first).
- :class:`Outbox`, one per peer: its queued frames, bounded, and the connection they go to.
- :class:`Inbox`, one per accepted connection once its HELLO is accepted: bytes in, frames
  checked, Raft messages delivered. It is that connection's protocol from then on (the
  transport calls its ``data_received``), forwarding the rest to the connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyraft.core.messages import Message
from pyraft.transport.codec import (
    FRAME_RAFT,
    FRAME_USER,
    MalformedMessageError,
    decode_body,
    encode_message,
)
from raftcore.errors import FramingError


class TransportCounters:
    """Totals since the transport was created (for metrics): ``sent`` messages handed to a
    connection, ``received`` delivered to the runtime, ``dropped`` (queue full, peer
    unreachable or unknown, wrong destination), ``connections`` (handshakes completed,
    outbound and inbound), ``refused`` handshakes (TLS included, by either side), ``errors``
    (connections closed for a frame or protocol error, a stall or a timeout), ``shed``
    (accepted sockets closed at once: too many handshakes in progress), ``user_dropped``
    (application messages dropped: too many in flight on a connection).

    Kept here, beside the per-message path that counts into it: compiled, its totals are C
    fields (``stream.pxd``) the hub adds to without attribute lookups."""

    FIELDS = ("sent", "received", "dropped", "connections", "refused", "errors", "shed",
              "user_dropped")

    def __init__(self, sent: int = 0, received: int = 0, dropped: int = 0,
                 connections: int = 0, refused: int = 0, errors: int = 0, shed: int = 0,
                 user_dropped: int = 0) -> None:
        self.sent = sent
        self.received = received
        self.dropped = dropped
        self.connections = connections
        self.refused = refused
        self.errors = errors
        self.shed = shed
        self.user_dropped = user_dropped

    def totals(self) -> dict[str, int]:
        """Every total by its name, in ``FIELDS`` order."""
        return {name: getattr(self, name) for name in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TransportCounters):
            return NotImplemented
        return self.totals() == other.totals()

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value}" for name, value in self.totals().items())
        return f"TransportCounters({fields})"


#: what :meth:`Outbox.put` and :meth:`Hub.send` answer
DROPPED = 0  # refused: the queue is full, the peer is in backoff or unknown, or not serving
QUEUED = 1  # queued: it leaves with the next flush
WAITING = 2  # queued, but no connection takes frames now (connecting, idle or paused)


def feed_frames(decoder: Any, connection: Any, data: Any) -> list | None:
    """The frames ``data`` completes in ``decoder``; None, and ``connection`` failed, on a
    framing error. A chunk that leaves part of a frame buffered tells the connection
    (``connection._partial``: it times that frame). The one reading path of a connection,
    before HELLO (``tcp``) and after it (:class:`Inbox`)."""
    try:
        frames = decoder.feed(data)
        left = decoder.buffered
        if frames and left:
            decoder.feed(b"")  # a defect after the returned frames surfaces now
    except FramingError as exc:
        connection._fail(f"bad frame: {exc}")
        return None
    if left:
        connection._partial(len(frames), left, len(data))
    return frames


def _nobody_told(message: Message, result: int) -> None:
    """A hub's ``missed`` until its transport sets its own."""


class Hub:
    """What every message of one transport needs. ``serving`` is True from ``start`` until
    ``stop``; ``loop`` is the loop ``start`` ran on (None before)."""

    def __init__(self, member_id: int, counters: Any, frame_bytes_max: int) -> None:
        self.member_id = member_id
        #: the transport's ``TransportCounters`` (sent, received and dropped are counted here)
        self.counters = counters
        self.frame_bytes_max = frame_bytes_max
        self.deliver: Callable[[Message], None] | None = None
        self.loop: Any = None
        self.serving = False
        #: member id -> that peer's outbox (the transport's peers)
        self.outboxes: dict[int, Outbox] = {}
        #: outboxes with frames queued since the last flush, and the call that flushes them
        #: (scheduled when the first one is queued, unless ``send_all`` is queueing: it
        #: flushes itself, and a scheduled call it cancels would still cost the loop a turn)
        self.dirty: list[Outbox] = []
        self.handle: Any = None
        self.sending = False
        #: told of each message ``send_all`` did not queue for the next write, with what
        #: ``send`` answered (``WAITING`` or ``DROPPED``); the transport counts or dials
        self.missed: Callable[[Message, int], None] = _nobody_told
        #: called after the messages of one read are delivered (None: nobody is told)
        self.delivered: Callable[[], None] | None = None

    def send(self, message: Message) -> int:
        """Encode ``message`` (raising there for one that cannot travel) and queue it for its
        destination: ``QUEUED``, ``WAITING`` or ``DROPPED`` (the caller reports the last)."""
        parts = encode_message(message, self.frame_bytes_max)  # positional: no keyword dict
        msg = message  # a Message (encode_message checked): typed in the compiled build
        outbox = self.outboxes.get(msg.dst)
        if outbox is None or not self.serving:
            return DROPPED
        return outbox.put(parts)

    def send_all(self, messages: list) -> None:
        """``send`` each of ``messages`` (telling ``missed`` of those not ``QUEUED``), then
        ``flush``: a Ready's messages in one call. An encoding error raises at its message,
        the ones before it queued."""
        missed = self.missed
        self.sending = True
        try:
            for message in messages:
                result = self.send(message)
                if result != QUEUED:
                    missed(message, result)
        finally:
            self.sending = False
            self.flush()

    def flush(self) -> None:
        """Write now what every outbox queued (instead of at the end of this turn)."""
        handle = self.handle
        if handle is not None:
            self.handle = None
            handle.cancel()
        if self.dirty:
            self.run()

    def run(self) -> None:
        """Flush every outbox listed (the scheduled call)."""
        self.handle = None
        dirty = self.dirty
        self.dirty = []
        for outbox in dirty:
            outbox.scheduled = False
            outbox.flush()


class Outbox:
    """The frames queued for one peer.

    Invariants: ``0 <= queued <= queued_max``; ``pending`` holds exactly the buffers of the
    ``queued`` messages, in send order; ``wire`` is the connection's asyncio transport while
    frames may be written to it (connected and not paused), None otherwise; ``scheduled``
    iff this outbox is in its hub's ``dirty`` list.
    """

    def __init__(self, hub: Hub, queued_max: int) -> None:
        self.hub = hub
        self.pending: list = []
        self.queued = 0
        self.queued_max = queued_max
        self.wire: Any = None
        self.scheduled = False
        #: False while the peer is in backoff after a failed connection: messages are dropped
        self.accepting = True
        self.bytes_sent = 0  # bytes written to this peer's connections (metrics)

    def put(self, parts: list) -> int:
        """Queue one message's buffers: ``QUEUED`` (and flushed at the end of this turn),
        ``WAITING`` (no connection takes frames now) or ``DROPPED`` (nothing queued)."""
        if not self.accepting or self.queued >= self.queued_max:
            return DROPPED
        self.pending += parts
        self.queued += 1
        if self.wire is None:
            return WAITING
        if not self.scheduled:
            self.scheduled = True
            hub = self.hub
            hub.dirty.append(self)
            if hub.handle is None and not hub.sending:
                hub.handle = hub.loop.call_soon(hub.run)
        return QUEUED

    def flush(self) -> None:
        """Everything queued to ``wire`` in one ``writelines`` (nothing without a wire)."""
        wire = self.wire
        queued = self.queued
        if wire is None or not queued:
            return
        pending = self.pending
        wire.writelines(pending)
        size = 0
        for part in pending:
            size += len(part)
        self.bytes_sent += size
        self.pending = []
        self.queued = 0
        self.hub.counters.sent += queued

    def discard(self) -> int:
        """Drop everything queued; the number of messages dropped."""
        dropped = self.queued
        self.pending = []
        self.queued = 0
        return dropped


class Inbox:
    """The receiving end of one accepted connection from member ``member``.

    ``connection`` (tcp's ``_Inbound``) handles what is not a Raft message for this member:
    it is told of frame errors (``_fail``), of a frame still in progress after a chunk
    (``_partial``, which times it), and of application frames (``_on_user``).
    """

    def __init__(self, hub: Hub, connection: Any, decoder: Any, member: int) -> None:
        self.hub = hub
        self.connection = connection
        self.decoder = decoder
        self.member = member
        self.bytes_received = 0

    def receive(self, data: Any) -> None:
        """Decode the frames ``data`` completes and deliver their messages, in order.

        A bad frame fails the connection and nothing of the chunk that holds it is
        delivered; a malformed message, or one from another member than the one that said
        HELLO, fails it after the messages before it; a message for another member than
        this one is dropped (counted) and the connection kept."""
        self.bytes_received += len(data)
        connection = self.connection
        frames = feed_frames(self.decoder, connection, data)
        if not frames:
            return
        hub = self.hub
        member = self.member
        received = 0
        try:
            for frame in frames:
                frame_type, body = frame
                if frame_type != FRAME_RAFT:
                    if frame_type == FRAME_USER:
                        connection._on_user(body)
                        continue
                    connection._fail(f"unexpected frame of type {frame_type}")
                    return
                message = decode_body(body)
                if message.src != member:
                    connection._fail(
                        f"message from member {message.src} on member {member}'s connection")
                    return
                deliver = hub.deliver
                if message.dst != hub.member_id or deliver is None:
                    hub.counters.dropped += 1
                    continue
                received += 1
                deliver(message)
        except MalformedMessageError as exc:
            connection._fail(f"malformed message: {exc}")
        finally:
            if received:
                hub.counters.received += received
                delivered = hub.delivered
                if delivered is not None:
                    delivered()

    # ---- the connection's protocol once its HELLO is accepted ------------------------------
    # tcp hands the accepted connection over to its inbox (``set_protocol``): the transport
    # calls these directly, so each chunk reaches ``receive`` without an interpreted frame;
    # everything else goes back to the connection
    def data_received(self, data: Any) -> None:
        self.receive(data)

    def eof_received(self) -> bool | None:
        return self.connection.eof_received()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.connection.connection_lost(exc)

    def pause_writing(self) -> None:
        self.connection.pause_writing()

    def resume_writing(self) -> None:
        self.connection.resume_writing()
