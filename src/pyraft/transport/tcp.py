"""TCP and TLS transport: Raft messages as ``raftcore.framing`` frames over persistent connections.

Connections. Each member keeps at most one OUTBOUND connection per peer, opened lazily by the
first message to that peer, and serves INBOUND connections on ``listen``. A member writes only
on its outbound connections and reads Raft messages only on its inbound ones, so two members
talking to each other use two connections, one per direction; each carries messages in order.

Handshake (on every new connection, after TLS when TLS is on). The connecting side sends HELLO
{protocol version, cluster id, its member id, the member id it expects}; the accepting side
answers ACCEPT {the same about itself} or REFUSE {reason} and closes. A refusal is logged on
both sides (``logging.getLogger("pyraft.transport")``, WARNING) and the connecting side backs
off. Raft frames are read only after ACCEPT; every message must come from the member named in
HELLO, and messages for another member id are dropped.

TLS. ``ssl_server`` (server side) and ``ssl_client`` (connecting side) are ``ssl.SSLContext``
objects. When ``ssl_server`` requires client certificates (``verify_mode = CERT_REQUIRED``)
the connection is mutually authenticated: a peer without a valid certificate (none, one from
another CA, an expired one) fails the TLS handshake, which is logged, and no byte it sent is
ever decoded as a frame. The connecting side checks the server's certificate against the host
part of the peer's address when its context has ``check_hostname``.

The contexts of a configured member come from ``pyraft.transport.tls.member_contexts``
(:meth:`TcpTransport.from_config` builds them from ``ClusterConfig.tls``).

Member identity (``tls_member_identity``, on by default as ``TlsConfig.member_identity``;
it applies only with TLS): a certificate proves WHICH member its holder is. It must carry
the DNS name ``pyraft.transport.tls.member_identity(id)`` (``member-<id>.pyraft``) among
its subject alternative names. The accepting side refuses a HELLO whose member id is not named
by the client's certificate (so member 2's certificate cannot speak for member 3), or that
comes without a client certificate; the connecting side fails an ACCEPT whose certificate does
not name the member it dialed. Issue such certificates with trustme
(``ca.issue_cert("127.0.0.1", member_identity(2))``) or openssl (``-addext
"subjectAltName=DNS:member-2.pyraft,IP:127.0.0.1"``).

Sending. ``send`` encodes at once (so a message that cannot travel raises there, in the
caller) and queues the frame; all frames queued for one connection during one event-loop turn
leave in one ``writelines``. Each peer's queue holds at most ``send_queue_messages_max``
messages; a message that finds the queue full, or its peer unreachable (in backoff after a
failed connection, or not a known peer), is dropped, counted and reported through
``on_unreachable``, which Raft tolerates: the leader probes again later.

Failures, each closing only the connection concerned, logged once:
- connect, TLS or handshake not done within ``connect_timeout_ms`` (a hard deadline from the
  moment the connection is accepted, however the bytes trickle in);
- a corrupt, oversized (``frame_bytes_max``, checked from the header before reading the body)
  or malformed frame, or a frame not allowed in the connection's state;
- a peer that stops sending in the middle of a frame for ``request_timeout_ms``, or closes the
  connection there (a truncated frame);
- a peer whose frame in progress arrives slower than ``receive_bytes_per_s_min`` on average
  once it has taken longer than ``request_timeout_ms`` (a slow-loris trickling bytes);
- an outbound connection whose peer stops reading: its write buffer makes no progress for
  ``request_timeout_ms``.
After a failed connection attempt the next one waits a jittered exponential backoff drawn from
``backoff_ms = (first, cap)``; after an established connection breaks, the next message
reconnects at once. ``stop()`` flushes what it can (for at most ``request_timeout_ms``), closes
every connection and the listener, and cancels and awaits every task the transport started.

Resource bounds (what a hostile or broken peer can make this member hold):
- connections that have not finished TLS and HELLO: at most ``handshakes_max``; further
  connections are closed at once (counted in ``counters.shed``) until some finish or time
  out; each of them buffers at most one handshake frame (4 KiB);
- accepted connections: one per member id (a reconnection replaces the older one), and at
  most ``unknown_members_max`` from members that are not in ``set_peers`` (a member being
  added connects before its configuration reaches everyone); each buffers at most one frame
  (``frame_bytes_max``) of input;
- application messages (FRAME_USER): when the ``serve_user_messages`` handler returns an
  awaitable (the handler's task), at most ``user_requests_inflight_max`` of them run per
  connection; a user frame beyond that is dropped (counted) and the connection kept, so
  Raft traffic on it still flows;
- output: ``send_queue_messages_max`` messages per peer, and a write buffer of at most
  ``write_buffer_bytes`` (64 KiB) per connection above which no frame is taken.

Timing (ARCHITECTURE.md): connect timeout < request timeout < the lower election timeout, as
``ClusterConfig`` checks. Every keyword the configuration also has takes the configuration's
default (``ClusterConfig`` is the one source of defaults), and :meth:`TcpTransport.from_config`
builds a member's transport from its configuration.

Addresses are parsed by ``pyraft.config.parse_address`` (re-exported here with
``format_address``, its inverse), and member identity lives in ``pyraft.transport.tls``
(``member_identity`` and ``certificate_names`` are re-exported here).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import socket
import ssl
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import cast

from pyraft.config import ClusterConfig, TlsConfig, format_address, parse_address
from pyraft.core.messages import Message
from pyraft.errors import ConfigError, HandshakeError, HandshakeRefusedError
from pyraft.transport.base import OnMessage, OnUnreachable, Transport, TransportCounters
from pyraft.transport.codec import (
    FRAME_ACCEPT,
    FRAME_HELLO,
    FRAME_REFUSE,
    PROTOCOL_VERSION,
    Hello,
    MalformedMessageError,
    decode_hello,
    decode_refuse,
    encode_accept,
    encode_hello,
    encode_refuse,
    encode_user,
)
from pyraft.transport.stream import DROPPED, QUEUED, Hub, Inbox, Outbox, feed_frames
from pyraft.transport.tls import (
    certificate_names,
    identity_problem,
    member_contexts,
    member_identity,
)
from raftcore.framing import FrameDecoder

__all__ = [
    "TcpTransport",
    "TransportCounters",
    "HandshakeRefusedError",
    "HandshakeError",
    "parse_address",
    "format_address",
    "member_identity",
    "certificate_names",
]

log = logging.getLogger("pyraft.transport")

#: frames of the handshake are tiny: a peer that announces more before ACCEPT is refused
_HANDSHAKE_FRAME_BYTES_MAX = 4096

#: a default configuration: where the keyword defaults of ``TcpTransport`` come from
_CONFIG = ClusterConfig(member_id=1)
_TLS_MEMBER_IDENTITY = TlsConfig(cert_file="", key_file="").member_identity


def _peername(transport: asyncio.BaseTransport) -> str:
    name = transport.get_extra_info("peername")
    if isinstance(name, tuple) and len(name) >= 2:
        return format_address(str(name[0]), int(name[1]))
    return str(name)


def linger_seconds(linger_ms: float) -> int:
    """SO_LINGER's whole seconds for ``linger_ms``, rounded up: 0 ms resets the connection on
    close, anything more waits at least that long for unsent data (never a reset)."""
    return math.ceil(linger_ms / 1000.0)


def _configure_socket(transport: asyncio.BaseTransport, linger_ms: float | None = None,
                      ttl_hops: int | None = None) -> None:
    """TCP_NODELAY, and SO_LINGER (whole seconds) and the IP time-to-live when they are set."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if linger_ms is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                struct.pack("ii", 1, linger_seconds(linger_ms)))
            if ttl_hops is not None:
                if sock.family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl_hops)
                else:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl_hops)
        except (OSError, AttributeError):
            pass


def _quiet(future: asyncio.Future) -> None:
    """Done callback: mark an exception as retrieved (nobody may be awaiting any more)."""
    if not future.cancelled():
        future.exception()


_IDLE = "idle"  # no connection, none being opened: the next message opens one
_CONNECTING = "connecting"  # connect + TLS + handshake in progress: messages queue
_CONNECTED = "connected"
_BACKOFF = "backoff"  # the last attempt failed: messages are dropped until the delay ends


class _Peer:
    """The outbound side towards one member: state, queue, connection, dial task.

    Invariants: ``connection is not None`` iff ``state == _CONNECTED``; ``outbox.wire`` is
    ``connection.transport`` while connected and not paused, else None; ``outbox.accepting``
    iff ``state != _BACKOFF`` and the peer is not closed.
    """

    __slots__ = (
        "owner", "member_id", "address", "host", "port", "state", "outbox", "connection",
        "task", "failures", "closed",
    )

    def __init__(self, owner: TcpTransport, member_id: int, address: str) -> None:
        self.owner = owner
        self.member_id = member_id
        self.address = address
        self.host, self.port = parse_address(address, port_zero=True)
        self.state = _IDLE
        #: the queued frames (``pyraft.transport.stream``): its ``wire`` is the connection's
        #: transport while connected and not paused, it accepts nothing while in backoff
        self.outbox = Outbox(owner._hub, owner.send_queue_messages_max)
        self.connection: _Outbound | None = None
        self.task: asyncio.Task | None = None
        self.failures = 0  # failed attempts since the last successful handshake
        self.closed = False

    def enqueue(self, parts: list) -> None:
        self.after_put(self.outbox.put(parts))

    def after_put(self, result: int) -> None:
        """What ``Outbox.put`` answered other than QUEUED: count a drop, or open a connection."""
        if result == DROPPED:
            self.owner._drop(self.member_id, 1)
        elif result != QUEUED and self.state is _IDLE:  # WAITING, and nobody dials yet
            self.state = _CONNECTING
            self.task = self.owner._spawn(self._dial(), f"pyraft-dial-{self.member_id}")

    def flush(self) -> None:
        self.outbox.flush()

    def _discard_queue(self) -> int:
        return self.outbox.discard()

    async def _dial(self) -> None:
        owner = self.owner
        try:
            connection = await asyncio.wait_for(self._open(), owner._connect_timeout_s)
        except asyncio.CancelledError:
            raise
        except (OSError, asyncio.TimeoutError, MalformedMessageError) as exc:
            await self._failed(exc)
            return
        if self.closed or owner._closing:
            connection.wire.abort()
            return
        if connection.closed.done():  # lost between ACCEPT and this task resuming
            await self._failed(HandshakeError("connection closed right after the handshake"))
            return
        self.failures = 0
        self.connection = connection
        self.state = _CONNECTED
        if not connection.paused:
            self.outbox.wire = connection.transport
        owner._counters.connections += 1
        log.info("connected to member %d at %s", self.member_id, self.address)
        self.flush()

    async def _open(self) -> _Outbound:
        owner = self.owner
        extra: dict = {}
        if owner.ssl_client is not None:
            extra = dict(
                ssl=owner.ssl_client,
                server_hostname=self.host,
                ssl_handshake_timeout=owner._connect_timeout_s,
            )
        transport, connection = await owner._running().create_connection(
            lambda: _Outbound(owner, self), self.host, self.port, **extra
        )
        try:
            await connection.accepted
        except BaseException:
            transport.abort()
            raise
        return connection

    async def _failed(self, exc: BaseException) -> None:
        owner = self.owner
        self.failures += 1
        first, cap = owner._backoff_s
        delay = min(cap, first * 2 ** min(self.failures - 1, 32))
        delay *= 0.5 + 0.5 * owner._rng.random()
        # the first failure after a success is a WARNING, its repetitions DEBUG
        level = logging.WARNING if self.failures == 1 else logging.DEBUG
        if isinstance(exc, HandshakeRefusedError):
            owner._counters.refused += 1
            log.log(
                level, "member %d at %s refused our connection: %s (retry in %.3f s)",
                self.member_id, self.address, exc.reason, delay,
            )
        else:
            if isinstance(exc, asyncio.TimeoutError):
                what = f"no connection and handshake within {owner._connect_timeout_s} s"
            else:
                what = f"{type(exc).__name__}: {exc}"
            log.log(
                level, "cannot connect to member %d at %s: %s (retry in %.3f s)",
                self.member_id, self.address, what, delay,
            )
        self.state = _BACKOFF
        self.outbox.accepting = False
        dropped = self._discard_queue()
        if dropped:
            owner._drop(self.member_id, dropped)
        await asyncio.sleep(delay)
        if self.state is _BACKOFF:
            self.state = _IDLE
            self.outbox.accepting = not self.closed

    def connection_lost(self, connection: _Outbound, exc: BaseException | None) -> None:
        if self.connection is not connection:
            return
        self.connection = None
        self.outbox.wire = None
        if self.state is _CONNECTED:
            self.state = _IDLE
        dropped = self._discard_queue()
        owner = self.owner
        if self.closed or owner._closing:
            return
        log.info(
            "connection to member %d at %s closed%s", self.member_id, self.address,
            f": {exc}" if exc else "",
        )
        owner._counters.dropped += dropped
        owner._report_unreachable(self.member_id)

    def close(self) -> None:
        """Stop using this peer: what is queued leaves if connected, the rest is dropped."""
        self.closed = True
        self.flush()
        self._discard_queue()
        self.outbox.wire = None
        self.outbox.accepting = False
        if self.task is not None:
            self.task.cancel()
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.close()


class _Connection(asyncio.Protocol):
    """What outbound and inbound connections share: the decoder, timers and closing."""

    def __init__(self, owner: TcpTransport) -> None:
        self.owner = owner
        #: the loop the transport started on (connections exist only once started)
        self.loop = owner._running()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.decoder = FrameDecoder(min(owner.frame_bytes_max, _HANDSHAKE_FRAME_BYTES_MAX))
        self.timer: asyncio.TimerHandle | None = None
        self.progress_at = 0.0
        self.closed = self.loop.create_future()
        self.failed = False  # an error was logged for this connection already
        self.frame_started_at = 0.0  # when the frame in progress began arriving
        self.frame_bytes = 0  # bytes received since then

    def _attach(self, transport: asyncio.BaseTransport) -> asyncio.Transport:
        # a stream connection's transport is an asyncio.Transport (read and write)
        self.transport = stream = cast(asyncio.Transport, transport)
        self.peer = _peername(transport)
        self.owner._connections.add(self)
        _configure_socket(transport, self.owner.linger_ms, self.owner.ttl_hops)
        return stream

    @property
    def wire(self) -> asyncio.Transport:
        """``transport``, which asyncio sets (``connection_made``) before any other call."""
        transport = self.transport
        if transport is None:
            raise RuntimeError(f"connection {self.describe()} is not made yet")
        return transport

    def _feed(self, data) -> list | None:
        """Frames in ``data``; None (and the connection aborted) on a frame error."""
        return feed_frames(self.decoder, self, data)

    def _partial(self, frames: int, left: int, size: int) -> None:
        """A chunk of ``size`` bytes completed ``frames`` frames and left ``left`` bytes of
        the next one: time that frame (a chunk of whole frames costs no clock read)."""
        now = self.loop.time()
        # without frames, the buffer grew by exactly the chunk: was it empty before?
        if frames or left == size:  # the frame in progress began inside this chunk
            self.frame_started_at = now
            self.frame_bytes = left
        else:
            self.frame_bytes += size
        self.progress_at = now
        if self.timer is None:
            self._arm(self.owner._request_timeout_s)

    def _arm(self, delay: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        if self.transport is None or self.transport.is_closing():
            return
        if self.decoder.buffered:
            owner = self.owner
            timeout = owner._request_timeout_s
            now = self.loop.time()
            idle = now - self.progress_at
            elapsed = now - self.frame_started_at
            if idle >= timeout:
                self._fail(
                    f"stalled for {idle:.3f} s in the middle of a frame "
                    f"({self.decoder.buffered} bytes of it received)"
                )
            elif elapsed >= timeout and self.frame_bytes < owner.receive_bytes_per_s_min * elapsed:
                self._fail(
                    f"a frame trickling in: {self.frame_bytes} bytes in {elapsed:.3f} s, "
                    f"below {owner.receive_bytes_per_s_min} bytes/s"
                )
            else:
                self._arm(min(timeout - idle, max(timeout - elapsed, timeout / 4)))

    def _fail(self, why: str) -> None:
        """Log once, count, and abort this connection (the node keeps serving)."""
        if not self.failed:
            self.failed = True
            self.owner._counters.errors += 1
            log.warning("closing connection %s: %s", self.describe(), why)
        if self.transport is not None:
            self.transport.abort()

    def describe(self) -> str:
        return self.peer

    def eof_received(self) -> bool | None:
        if self.decoder.buffered:
            self._fail(
                f"peer closed in the middle of a frame ({self.decoder.buffered} bytes of it "
                "received)"
            )
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.owner._connections.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)


class _Outbound(_Connection):
    """The connecting side: HELLO, wait for ACCEPT, then only writes."""

    def __init__(self, owner: TcpTransport, peer: _Peer) -> None:
        super().__init__(owner)
        self.target = peer
        self.accepted = self.loop.create_future()
        self.accepted.add_done_callback(_quiet)
        self.open = False
        self.paused = False
        self.stall_size = 0

    def describe(self) -> str:
        return f"to member {self.target.member_id} at {self.target.address}"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = self._attach(transport)
        high = self.owner.write_buffer_bytes
        stream.set_write_buffer_limits(high=high, low=high // 4)
        owner = self.owner
        stream.write(
            encode_hello(
                Hello(PROTOCOL_VERSION, owner.cluster_id, owner.member_id, self.target.member_id)
            )
        )

    def data_received(self, data) -> None:
        frames = self._feed(data)
        if frames is None:
            self._handshake_failed(HandshakeError("bad frame during the handshake"))
            return
        for frame_type, body in frames:
            if self.open or self.accepted.done():
                self._fail(f"unexpected frame of type {frame_type} after the handshake")
                return
            try:
                if frame_type == FRAME_ACCEPT:
                    self._on_accept(decode_hello(body))
                elif frame_type == FRAME_REFUSE:
                    self._handshake_failed(HandshakeRefusedError(decode_refuse(body)))
                    self.wire.abort()
                    return
                else:
                    raise MalformedMessageError(f"frame type {frame_type} instead of ACCEPT")
            except MalformedMessageError as exc:
                self._handshake_failed(HandshakeError(f"bad handshake answer: {exc}"))
                self.wire.abort()
                return

    def _on_accept(self, hello: Hello) -> None:
        owner = self.owner
        expected = self.target.member_id
        if hello.protocol_version != PROTOCOL_VERSION:
            raise MalformedMessageError(f"answer in protocol version {hello.protocol_version}")
        if hello.cluster_id != owner.cluster_id:
            raise MalformedMessageError(f"peer is in cluster {hello.cluster_id}")
        if hello.member_id != expected:
            raise MalformedMessageError(f"peer is member {hello.member_id}, not {expected}")
        if owner.tls_member_identity:
            problem = identity_problem(self.transport, expected)
            if problem is not None:
                raise MalformedMessageError(f"server identity: {problem}")
        self.open = True  # nothing more is expected on this connection
        self.accepted.set_result(self)

    def _handshake_failed(self, exc: BaseException) -> None:
        if not self.accepted.done():
            self.accepted.set_exception(exc)

    def pause_writing(self) -> None:
        self.paused = True
        if self.target.connection is self:
            self.target.outbox.wire = None
        self.stall_size = self.wire.get_write_buffer_size()
        if self.timer is None:
            self._arm(self.owner._request_timeout_s)

    def resume_writing(self) -> None:
        self.paused = False
        if self.target.connection is self:
            self.target.outbox.wire = self.transport
        if self.timer is not None and not self.decoder.buffered:
            self.timer.cancel()
            self.timer = None
        self.target.flush()

    def _on_timer(self) -> None:
        if not self.paused:
            super()._on_timer()
            return
        self.timer = None
        if self.transport is None or self.transport.is_closing():
            return
        size = self.transport.get_write_buffer_size()
        if size >= self.stall_size:
            self._fail(
                f"peer has not read for {self.owner._request_timeout_s} s "
                f"({size} bytes waiting)"
            )
        else:
            self.stall_size = size
            self._arm(self.owner._request_timeout_s)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        why = f": {exc}" if exc else ""
        self._handshake_failed(HandshakeError(f"connection closed during the handshake{why}"))
        if self.open:
            self.target.connection_lost(self, exc)


_HELLO = "hello"  # waiting for HELLO
_OPEN = "open"  # accepted: Raft messages flow
_DONE = "done"  # refused or failed: closing


class _Inbound(_Connection):
    """The accepting side (TLS already done): HELLO -> ACCEPT or REFUSE, then Raft messages."""

    def __init__(self, owner: TcpTransport, release: Callable[[], None] | None = None) -> None:
        super().__init__(owner)
        self.state = _HELLO
        self.member = 0  # the peer's member id, once it said HELLO
        #: gives back this connection's handshake slot (idempotent); called on leaving _HELLO
        self.release = release
        self.user_inflight = 0  # application messages whose handler has not finished
        #: the per-message path once HELLO is accepted (``pyraft.transport.stream``); it
        #: counts the bytes received from then on (added to the owner's totals on close)
        self.inbox: Inbox | None = None

    def _leave_hello(self) -> None:
        release, self.release = self.release, None
        if release is not None:
            release()

    def describe(self) -> str:
        return f"from {self.peer}" + (f" (member {self.member})" if self.member else "")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = self._attach(transport)
        if self.owner._closing:
            stream.abort()
        else:
            self._await_hello()

    def _await_hello(self) -> None:
        self.state = _HELLO
        self._arm(self.owner._connect_timeout_s)

    def _on_timer(self) -> None:
        if self.state is _HELLO:
            self.timer = None
            self._fail(f"no handshake within {self.owner._connect_timeout_s} s")
        elif self.state is _OPEN:
            super()._on_timer()

    def data_received(self, data) -> None:
        inbox = self.inbox
        if inbox is not None:  # accepted: Raft messages flow
            inbox.receive(data)
            return
        frames = self._feed(data)
        if not frames or self.state is not _HELLO:
            return
        frame_type, body = frames[0]
        if frame_type != FRAME_HELLO:
            self._fail(f"frame of type {frame_type} instead of HELLO")
            return
        if len(frames) > 1 or self.decoder.buffered:
            # the connecting side waits for ACCEPT; the handshake decoder (small frame limit)
            # must not be left holding bytes of the message stream
            self._fail("bytes after HELLO before the answer")
            return
        try:
            self._on_hello(decode_hello(body))
        except MalformedMessageError as exc:
            self._fail(f"malformed message: {exc}")

    def _on_user(self, body) -> None:
        owner = self.owner
        handler = owner._on_user_message
        if handler is None or owner._hub.deliver is None:
            owner._counters.dropped += 1
            return
        if self.user_inflight >= owner.user_requests_inflight_max:
            owner._counters.dropped += 1
            owner._counters.user_dropped += 1
            log.debug("dropping a member message from %d: %d in flight", self.member,
                      self.user_inflight)
            return
        owner._counters.received += 1
        result = handler(self.member, body)
        if isinstance(result, asyncio.Future) and not result.done():
            self.user_inflight += 1
            result.add_done_callback(self._user_done)

    def _user_done(self, _future: asyncio.Future) -> None:
        self.user_inflight -= 1

    def _on_hello(self, hello: Hello) -> None:
        owner = self.owner
        self._leave_hello()
        reason = owner._check_hello(hello)
        if reason is None and owner.tls_member_identity and owner.ssl_server is not None:
            reason = identity_problem(self.transport, hello.member_id)
        if reason is None and hello.member_id not in owner._peers:
            strangers = sum(1 for member in owner._inbound
                            if member not in owner._peers and member != hello.member_id)
            if strangers >= owner.unknown_members_max:
                reason = (f"member {hello.member_id} is not in the configuration and "
                          f"{strangers} such members are connected already")
        if reason is not None:
            self.state = _DONE
            owner._counters.refused += 1
            who = f" (member {hello.member_id})" if hello.member_id else ""
            log.warning("refused connection from %s%s: %s", self.peer, who, reason)
            self.wire.write(encode_refuse(reason))
            self.wire.close()
            return
        self.state = _OPEN
        self.member = hello.member_id
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.decoder = FrameDecoder(owner.frame_bytes_max)
        self.inbox = Inbox(owner._hub, self, self.decoder, self.member)
        # the inbox is the protocol from now on: each chunk goes straight to its compiled
        # receive (it hands end of file, loss and flow control back to this connection)
        self.wire.set_protocol(cast(asyncio.BaseProtocol, self.inbox))
        self.wire.write(
            encode_accept(Hello(PROTOCOL_VERSION, owner.cluster_id, owner.member_id, self.member))
        )
        owner._counters.connections += 1
        previous = owner._inbound.get(self.member)
        owner._inbound[self.member] = self
        if previous is not None and previous.transport is not None:
            log.info("member %d reconnected from %s: closing its older connection",
                     self.member, self.peer)
            previous.transport.abort()
        log.info("accepted connection from member %d at %s", self.member, self.peer)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        self._leave_hello()
        self.state = _DONE
        owner = self.owner
        inbox, self.inbox = self.inbox, None
        if inbox is not None:
            totals = owner._peer_bytes_received
            totals[self.member] = totals.get(self.member, 0) + inbox.bytes_received
        if self.member:
            if owner._inbound.get(self.member) is self:
                del owner._inbound[self.member]


class TcpTransport(Transport):
    """The production transport (TCP, optionally TLS): see the module docstring.

    ``member_id``: this member; ``listen``: ``"host:port"`` to serve on (port 0 picks a free
    port; read it back from :attr:`address` after ``start``); ``cluster_id``: an unsigned 64-bit
    integer every member of the cluster shares. Parameters are validated (``ConfigError``).

    Build it with :meth:`from_config` (what ``RaftCluster.from_config`` and ``pyraft node``
    run). The keywords the configuration also has take its defaults (``ClusterConfig``'s
    ``connect_timeout_ms``, ``request_timeout_ms``, ``frame_bytes_max``,
    ``send_queue_messages_max``, ``server_backlog``, ``linger_ms``, ``ttl_hops``,
    ``handshakes_max``, ``unknown_members_max``, ``user_requests_inflight_max``,
    ``receive_bytes_per_s_min``; ``write_buffer_bytes`` is ``transmission_block_bytes`` and
    ``tls_member_identity`` is ``TlsConfig.member_identity``, which applies only when TLS is
    on). ``backoff_ms`` (the reconnection backoff, first and cap) and ``rng`` (its jitter)
    are the transport's own.

    ``connect_timeout_s``, ``request_timeout_s``, ``linger_s`` (seconds) and ``backlog`` are
    the former names of ``connect_timeout_ms``, ``request_timeout_ms``, ``linger_ms`` and
    ``server_backlog``, still accepted; they go once every caller builds through
    :meth:`from_config` or the new names.
    """

    def __init__(
        self,
        member_id: int,
        listen: str,
        *,
        cluster_id: int,
        ssl_server: ssl.SSLContext | None = None,
        ssl_client: ssl.SSLContext | None = None,
        connect_timeout_ms: float = _CONFIG.connect_timeout_ms,
        request_timeout_ms: float = _CONFIG.request_timeout_ms,
        frame_bytes_max: int = _CONFIG.frame_bytes_max,
        send_queue_messages_max: int = _CONFIG.send_queue_messages_max,
        backoff_ms: tuple[float, float] = (50.0, 2_000.0),
        rng: random.Random | None = None,
        server_backlog: int = _CONFIG.server_backlog,
        linger_ms: float | None = _CONFIG.linger_ms,
        ttl_hops: int | None = _CONFIG.ttl_hops,
        write_buffer_bytes: int = _CONFIG.transmission_block_bytes,
        tls_member_identity: bool = _TLS_MEMBER_IDENTITY,
        handshakes_max: int = _CONFIG.handshakes_max,
        unknown_members_max: int = _CONFIG.unknown_members_max,
        user_requests_inflight_max: int = _CONFIG.user_requests_inflight_max,
        receive_bytes_per_s_min: int = _CONFIG.receive_bytes_per_s_min,
        connect_timeout_s: float | None = None,
        request_timeout_s: float | None = None,
        linger_s: float | None = None,
        backlog: int | None = None,
    ) -> None:
        # the former names (seconds, ``backlog``): see the class docstring
        if connect_timeout_s is not None:
            connect_timeout_ms = connect_timeout_s * 1000.0
        if request_timeout_s is not None:
            request_timeout_ms = request_timeout_s * 1000.0
        if linger_s is not None:
            linger_ms = linger_s * 1000.0
        if backlog is not None:
            server_backlog = backlog
        if not isinstance(member_id, int) or not 0 < member_id < 2**64:
            raise ConfigError("member_id", "must be a positive 64-bit integer")
        if not isinstance(cluster_id, int) or not 0 <= cluster_id < 2**64:
            raise ConfigError("cluster_id", "must be an unsigned 64-bit integer")
        if not isinstance(server_backlog, int) or not 1 <= server_backlog <= 65535:
            raise ConfigError("server_backlog", "must be in [1, 65535]")
        if linger_ms is not None and not 0 <= linger_ms <= 60_000:
            raise ConfigError("linger_ms", "must be None or in [0, 60000] ms")
        if ttl_hops is not None and (not isinstance(ttl_hops, int) or isinstance(ttl_hops, bool)
                                     or not 1 <= ttl_hops <= 255):
            raise ConfigError("ttl_hops", "must be None or an integer in [1, 255]")
        #: IP time-to-live of every connection's packets (None: the system default)
        self.ttl_hops = ttl_hops
        #: bytes an outbound connection may hold unsent before it takes no more frames (the
        #: peer's queue then fills)
        self.write_buffer_bytes = write_buffer_bytes
        #: listen() backlog of the server socket
        self.server_backlog = server_backlog
        #: SO_LINGER of every connection, applied in whole seconds (None: the system default)
        self.linger_ms = linger_ms
        try:
            self._listen = parse_address(listen, port_zero=True)
        except ValueError as exc:
            raise ConfigError("listen", str(exc)) from None
        for name, context in (("ssl_server", ssl_server), ("ssl_client", ssl_client)):
            if context is not None and not isinstance(context, ssl.SSLContext):
                raise ConfigError(name, "must be an ssl.SSLContext")
        if not connect_timeout_ms > 0:
            raise ConfigError("connect_timeout_ms", "must be positive")
        if not request_timeout_ms > 0:
            raise ConfigError("request_timeout_ms", "must be positive")
        if not isinstance(frame_bytes_max, int) or not 0 < frame_bytes_max <= 0xFFFFFFFF:
            raise ConfigError("frame_bytes_max", "must be in [1, 2**32 - 1]")
        if not isinstance(send_queue_messages_max, int) or send_queue_messages_max <= 0:
            raise ConfigError("send_queue_messages_max", "must be a positive integer")
        if len(backoff_ms) != 2 or not 0 < backoff_ms[0] <= backoff_ms[1]:
            raise ConfigError("backoff_ms", "must be (first, cap) with 0 < first <= cap")
        if not isinstance(tls_member_identity, bool):
            raise ConfigError("tls_member_identity", "must be a bool")
        tls = ssl_server is not None or ssl_client is not None
        if tls_member_identity and tls and (ssl_server is None or ssl_client is None):
            raise ConfigError("tls_member_identity", "needs ssl_server and ssl_client (or "
                                                     "tls_member_identity=False)")
        for name, value, low in (("write_buffer_bytes", write_buffer_bytes, 1),
                                 ("handshakes_max", handshakes_max, 1),
                                 ("unknown_members_max", unknown_members_max, 0),
                                 ("user_requests_inflight_max", user_requests_inflight_max, 1),
                                 ("receive_bytes_per_s_min", receive_bytes_per_s_min, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value < 2**32:
                raise ConfigError(name, f"must be an integer in [{low}, 2**32)")
        #: certificates must name the member id claimed in the handshake (module docstring);
        #: False without TLS, where there are no certificates to check
        self.tls_member_identity = tls_member_identity and tls
        #: connections accepted that have not finished TLS + HELLO, at most
        self.handshakes_max = handshakes_max
        #: accepted connections from members not in ``set_peers``, at most
        self.unknown_members_max = unknown_members_max
        #: application messages whose handler runs, per connection, at most
        self.user_requests_inflight_max = user_requests_inflight_max
        #: a frame in progress for longer than ``request_timeout_ms`` must average this rate
        self.receive_bytes_per_s_min = receive_bytes_per_s_min
        self._handshaking = 0  # connections accepted that hold a handshake slot
        self.member_id = member_id
        self.cluster_id = cluster_id
        self.ssl_server = ssl_server
        self.ssl_client = ssl_client
        self.connect_timeout_ms = float(connect_timeout_ms)
        self.request_timeout_ms = float(request_timeout_ms)
        self.frame_bytes_max = frame_bytes_max
        self.send_queue_messages_max = send_queue_messages_max
        self.backoff_ms = (float(backoff_ms[0]), float(backoff_ms[1]))
        # the same in seconds, as the event loop counts
        self._connect_timeout_s = self.connect_timeout_ms / 1000.0
        self._request_timeout_s = self.request_timeout_ms / 1000.0
        self._backoff_s = (self.backoff_ms[0] / 1000.0, self.backoff_ms[1] / 1000.0)
        self._counters = TransportCounters()
        #: bytes written to / read from each member's connections (metrics): the totals of
        #: peers removed and connections closed; live ones count on their own
        self._peer_bytes_sent: dict[int, int] = {}
        self._peer_bytes_received: dict[int, int] = {}
        #: the per-message path (``pyraft.transport.stream``): serving from start to stop
        self._hub = Hub(member_id, self._counters, frame_bytes_max)
        self._hub.missed = self._missed
        self._rng = rng if rng is not None else random.Random()
        self._address = format_address(*self._listen)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: socket.socket | None = None
        self._peers: dict[int, _Peer] = {}
        self._inbound: dict[int, _Inbound] = {}
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task] = set()
        self._closing = False

    @property
    def address(self) -> str:
        """``host:port`` served on (the bound port once started)."""
        return self._address

    @property
    def peers(self) -> dict[int, str]:
        return {member: peer.address for member, peer in self._peers.items()}

    @property
    def counters(self) -> TransportCounters:
        """Totals since this transport was created (``TransportCounters``)."""
        return self._counters

    @property
    def peer_bytes_sent(self) -> dict[int, int]:
        """Bytes written to each member's connections (a new dict on each read)."""
        totals = dict(self._peer_bytes_sent)
        for member, peer in self._peers.items():
            if peer.outbox.bytes_sent:
                totals[member] = totals.get(member, 0) + peer.outbox.bytes_sent
        return totals

    @property
    def peer_bytes_received(self) -> dict[int, int]:
        """Bytes read from each member's connections (a new dict on each read)."""
        totals = dict(self._peer_bytes_received)
        for connection in self._connections:
            if isinstance(connection, _Inbound) and connection.inbox is not None:
                member = connection.member
                totals[member] = totals.get(member, 0) + connection.inbox.bytes_received
        return totals

    @property
    def handshakes_in_progress(self) -> int:
        """Accepted connections that have not finished TLS and HELLO (at most
        ``handshakes_max``)."""
        return self._handshaking

    @property
    def buffered_bytes(self) -> int:
        """Bytes of incomplete frames held for all connections (bounded: module docstring)."""
        return sum(connection.decoder.buffered for connection in self._connections)

    def peer_state(self, member: int) -> str | None:
        """``"idle"``, ``"connecting"``, ``"connected"``, ``"backoff"``; None if not a peer."""
        peer = self._peers.get(member)
        return None if peer is None else peer.state

    @classmethod
    def from_config(cls, config: ClusterConfig, *,
                    rng: random.Random | None = None) -> TcpTransport:
        """The transport of the member ``config`` describes: it listens on ``listen``, with
        the configuration's timeouts, bounds and socket options, and TLS (the contexts of
        ``pyraft.transport.tls.member_contexts``) when ``config.tls`` is set. ``config`` is
        validated first (``ConfigError``); unreadable TLS files raise ``OSError`` or
        ``ssl.SSLError``. ``rng`` draws the reconnection jitter (tests)."""
        config.validate()
        server_ssl = client_ssl = None
        if config.tls is not None:
            server_ssl, client_ssl = member_contexts(config.tls)
        return cls(
            config.member_id, config.listen, cluster_id=config.cluster_id,
            ssl_server=server_ssl, ssl_client=client_ssl,
            connect_timeout_ms=config.connect_timeout_ms,
            request_timeout_ms=config.request_timeout_ms,
            frame_bytes_max=config.frame_bytes_max,
            send_queue_messages_max=config.send_queue_messages_max,
            rng=rng,
            server_backlog=config.server_backlog,
            linger_ms=config.linger_ms,
            ttl_hops=config.ttl_hops,
            write_buffer_bytes=config.transmission_block_bytes,
            tls_member_identity=config.tls is not None and config.tls.member_identity,
            handshakes_max=config.handshakes_max,
            unknown_members_max=config.unknown_members_max,
            user_requests_inflight_max=config.user_requests_inflight_max,
            receive_bytes_per_s_min=config.receive_bytes_per_s_min,
        )

    async def start(self, on_message: OnMessage,
                    on_unreachable: OnUnreachable | None = None) -> None:
        if self._loop is not None:
            raise RuntimeError("transport already started")
        self._bind(on_unreachable)
        self._loop = asyncio.get_running_loop()
        hub = self._hub
        hub.loop, hub.deliver, hub.serving = self._loop, on_message, True
        host, port = self._listen
        infos = await self._loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _type, _proto, _name, sockaddr = infos[0]
        self._listener = socket.create_server(sockaddr[:2], family=family,
                                               backlog=self.server_backlog)
        self._listener.setblocking(False)
        sockname = self._listener.getsockname()
        self._address = format_address(str(sockname[0]), int(sockname[1]))
        self._spawn(self._accept_loop(), "pyraft-accept")
        log.info("member %d serving on %s%s", self.member_id, self._address,
                 " (TLS)" if self.ssl_server is not None else "")

    def set_peers(self, peers: Mapping[int, str]) -> None:
        wanted = {int(m): str(a) for m, a in peers.items() if int(m) != self.member_id}
        for address in wanted.values():
            try:
                parse_address(address, port_zero=True)
            except ValueError as exc:
                raise ConfigError("peers", str(exc)) from None
        for member, peer in list(self._peers.items()):
            if wanted.get(member) != peer.address:
                peer.close()
                del self._peers[member]
                del self._hub.outboxes[member]
                if peer.outbox.bytes_sent:
                    sent = self._peer_bytes_sent
                    sent[member] = sent.get(member, 0) + peer.outbox.bytes_sent
                if member not in wanted:
                    connection = self._inbound.get(member)
                    if connection is not None and connection.transport is not None:
                        connection.transport.close()
        for member, address in wanted.items():
            if member not in self._peers:
                peer = self._peers[member] = _Peer(self, member, address)
                self._hub.outboxes[member] = peer.outbox

    def send(self, message: Message) -> None:
        result = self._hub.send(message)  # encodes (raising here) and queues
        if result != QUEUED:
            self._missed(message, result)

    def report_deliveries(self, callback: Callable[[], None] | None) -> bool:
        self._hub.delivered = callback  # the inboxes call it after each read's messages
        return True

    def send_all(self, messages: Sequence[Message]) -> None:
        # the loop and the flush in the compiled hub (which takes a list)
        self._hub.send_all(messages if type(messages) is list else list(messages))

    def sender(self) -> Callable[[list[Message]], None]:
        if type(self).send_all is TcpTransport.send_all and "send_all" not in vars(self):
            return self._hub.send_all  # not overridden, nor replaced on this instance
        return self.send_all

    def _missed(self, message: Message, result: int) -> None:
        """``message`` was not queued for the next write (``result``: ``WAITING`` or
        ``DROPPED``): count the drop, or have its peer dial."""
        peer = self._peers.get(message.dst)
        if peer is None or result == DROPPED:
            self._drop(message.dst, 1)
        else:
            peer.after_put(result)

    def flush(self) -> None:
        self._hub.flush()

    def send_user(self, member: int, body: bytes) -> None:
        parts = encode_user(body, frame_bytes_max=self.frame_bytes_max)
        peer = self._peers.get(member)
        if peer is None or not self._hub.serving:
            self._drop(member, 1)
            return
        peer.enqueue(parts)

    async def stop(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._hub.serving = False
        self._hub.deliver = None
        for peer in self._peers.values():
            peer.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        connections = list(self._connections)
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()  # flushes what is buffered
        if connections:
            closed = [connection.closed for connection in connections]
            _done, waiting = await asyncio.wait(closed, timeout=self._request_timeout_s)
            for connection in connections:
                if not connection.closed.done() and connection.transport is not None:
                    connection.transport.abort()
            if waiting:
                await asyncio.wait(waiting, timeout=1.0)
        if self._listener is not None:
            self._listener.close()
        log.info("member %d transport stopped", self.member_id)

    # ---- internals -------------------------------------------------------------------------

    def _running(self) -> asyncio.AbstractEventLoop:
        """The loop ``start`` ran on; ``RuntimeError`` before ``start``."""
        loop = self._loop
        if loop is None:
            raise RuntimeError(f"member {self.member_id}'s transport is not started")
        return loop

    async def _accept_loop(self) -> None:
        """Accept connections for ever (until ``stop`` cancels this task)."""
        loop, listener = self._running(), self._listener
        if listener is None:
            raise RuntimeError("no listener: the accept loop runs only once started")
        while True:
            try:
                sock, _address = await loop.sock_accept(listener)
            except OSError as exc:  # out of file descriptors, an aborted connection, ...
                log.warning("accepting a connection on %s failed: %s", self._address, exc)
                await asyncio.sleep(0.1)
                continue
            if self._handshaking >= self.handshakes_max:
                self._counters.shed += 1
                if self._counters.shed == 1 or self._counters.shed % 1000 == 0:
                    log.warning("%d handshakes in progress: closing new connections "
                                "(%d so far)", self._handshaking, self._counters.shed)
                sock.close()
                continue
            self._handshaking += 1
            self._accept_later(sock)

    def _accept_later(self, sock: socket.socket) -> asyncio.Task:
        """Wrap ``sock`` in a task of its own. A task cancelled by ``stop`` before its first
        step never runs ``_accept``, whose handler closes the socket: it is closed here."""
        task = self._spawn(self._accept(sock), "pyraft-accept-connection")
        task.add_done_callback(lambda done: sock.close() if done.cancelled() else None)
        return task

    async def _accept(self, sock: socket.socket) -> None:
        """Wrap an accepted socket (TLS handshake first, when on); log a failed handshake.

        ``connect_accepted_socket`` does the TLS handshake before the protocol sees a byte, so
        a peer without a valid certificate never reaches frame decoding.
        """
        try:
            name = sock.getpeername()
            peer = format_address(str(name[0]), name[1])
        except OSError:
            peer = "?"
        extra: dict = {}
        if self.ssl_server is not None:
            extra = dict(ssl=self.ssl_server, ssl_handshake_timeout=self._connect_timeout_s)
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._handshaking -= 1

        try:
            await self._running().connect_accepted_socket(lambda: _Inbound(self, release), sock,
                                                     **extra)
        except (OSError, asyncio.TimeoutError) as exc:  # ssl.SSLError is an OSError
            release()
            if self.ssl_server is not None:
                self._counters.refused += 1
                log.warning("refused connection from %s: TLS handshake failed: %s", peer,
                            str(exc) or type(exc).__name__)
            else:
                log.info("connection from %s failed: %r", peer, exc)
            sock.close()
        except BaseException:  # cancelled by stop(): the socket is ours to close
            release()
            sock.close()
            raise

    def _spawn(self, coroutine, name: str) -> asyncio.Task:
        task = self._running().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._running().call_exception_handler(
                {"message": f"pyraft transport task {task.get_name()} failed",
                 "exception": exc, "task": task}
            )

    def _drop(self, member: int, count: int) -> None:
        self._counters.dropped += count
        self._report_unreachable(member)

    def _check_hello(self, hello: Hello) -> str | None:
        """Why a HELLO is refused, or None to accept it."""
        if hello.protocol_version != PROTOCOL_VERSION:
            return (
                f"protocol version {hello.protocol_version} is not supported "
                f"(member {self.member_id} speaks version {PROTOCOL_VERSION})"
            )
        if hello.cluster_id != self.cluster_id:
            return (
                f"cluster id {hello.cluster_id} is not this cluster's id {self.cluster_id}"
            )
        if hello.member_id == 0 or hello.member_id == self.member_id:
            return f"member id {hello.member_id} cannot connect to member {self.member_id}"
        if hello.peer_id not in (0, self.member_id):
            return f"this is member {self.member_id}, not member {hello.peer_id}"
        return None
