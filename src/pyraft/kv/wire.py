"""The key-value service's binary client protocol: pipelined msgpack frames over TCP.

It serves beside the HTTP API (:mod:`pyraft.kv.http`, which stays for curl and the
administrative endpoints) on ``pyraft node --client HOST:PORT``; :class:`pyraft.kv.KVClient`
speaks it when given ``pyraft://HOST:PORT`` addresses. The HTTP path spent most of a write's
CPU in parsing and building HTTP messages, one task per request and one log proposal per
request; here a frame costs one msgpack decode, and every write that arrives in one loop turn
(from every connection) enters the log through one ``RaftCluster.replicate_many``.

Framing: a frame is a 4-byte big-endian length, then that many bytes of one msgpack array.
A request is ``[id, op, args...]``; ``id`` is the client's number for it (an integer in
``[1, 2**64 - 1]``), echoed by the answer ``[id, status, body]``. Answers may come out of
order, and any number of requests may be in flight on one connection (the server reads no
more of a connection while it has ``REQUESTS_IN_FLIGHT_MAX`` of its requests unanswered).

Requests (keys and values are msgpack ``bin``; ``key`` is 1 to ``KEY_BYTES_MAX`` bytes):

- ``[id, GET, key, consistency]``: ``consistency`` ``"barrier" | "lease" | "local"`` as in the
  HTTP API; ``200`` with the value, ``404`` (body nil) when absent;
- ``[id, PUT, key, value, client, sequence]``: ``200`` with the previous value or nil;
- ``[id, DELETE, key, client, sequence]``: ``200`` with the removed value or nil;
- ``[id, CAS, key, expected | nil, new, client, sequence]``: ``200`` with ``[ok, current]``;
- ``[id, OPEN_SESSION]``: ``200`` with the new client id;
- ``[id, STATUS]``: ``200`` with the member's status (the document of ``GET /v1/status``).

Writes always name a session (``client``, ``sequence``: as ``X-Client-Id`` /
``X-Request-Seq`` of the HTTP API), so a retried write is applied at most once.

Statuses and error bodies ``[kind, message]`` are the HTTP API's: ``307`` (body ``[kind,
message, address]``: the leader's client address, its member metadata key ``client``),
``503`` (no leader, or its client address unknown; the member stopped; not applied), ``504``
(the outcome is unknown: retry with the same sequence), ``400`` (a malformed request: nothing
was proposed), ``409`` (stale sequence), ``410`` (the session expired), ``413`` (a value over
``value_bytes_max``, or a frame over ``frame_bytes_max``).

Bad input: a frame whose body is not a well-formed request gets ``400`` (id 0 when the id
cannot be read) and the connection goes on, since the length prefix keeps the stream in step;
a length over ``frame_bytes_max`` gets ``[0, 413, ...]`` and the connection is closed (the
rest of the stream cannot be trusted). A peer that hangs up mid-frame loses only its own
connection. Every connection and task the server starts ends with :meth:`WireServer.close`.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import msgpack

from pyraft.cluster.runtime import (
    ClusterStoppedError,
    CommandLostError,
    CommandOutcomeUnknownError,
    RaftCluster,
)
from pyraft.errors import NotLeaderError, ProposalDroppedError, StorageError
from pyraft.kv.frames import (
    CAS,
    DELETE,
    FRAME_BYTES_MAX_DEFAULT,
    GET,
    KEY_BYTES_MAX,
    OPEN_SESSION,
    PUT,
    REQUESTS_IN_FLIGHT_MAX,
    STATUS,
    FrameError,
    FrameReader,
    frame,
    pack,
)
from pyraft.kv.http import member_status
from pyraft.kv.machine import (
    CasResult,
    CompareAndSet,
    Delete,
    KVStateMachine,
    KVStore,
    MalformedRequest,
    OpenSession,
    Put,
    SessionExpired,
    SessionOpened,
    StaleRequest,
)

__all__ = ["WireServer", "serve"]

#: the largest request id (ids are unsigned 64-bit numbers)
_ID_MAX = 2**64 - 1
_CONSISTENCIES = ("barrier", "lease", "local")

class _BadRequest(Exception):
    def __init__(self, kind: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.kind, self.status = kind, status


def _key(value: object) -> bytes:
    if type(value) is not bytes or not 0 < len(value) <= KEY_BYTES_MAX:
        raise _BadRequest("bad_key", f"a key is 1 to {KEY_BYTES_MAX} bytes (msgpack bin)")
    return value


def _session_number(value: object) -> int:
    if type(value) is not int or not 1 <= value <= _ID_MAX:
        raise _BadRequest("bad_session", "client and sequence are integers in [1, 2**64 - 1]")
    return value


def _put_payload(client: int, sequence: int, key: bytes, value: bytes) -> bytes:
    """``KVStateMachine.encode(Put(client, sequence, key, value))``, without its per-field
    checks (done here by the request's validation): the hot path's one encoding."""
    return pack([_PUT_ID, client, sequence, key, value])


_PUT_ID = Put.command_id


class _Connection(asyncio.Protocol):
    """One client connection: reads frames, hands requests to the server, writes answers
    (gathered per loop turn into one write)."""

    def __init__(self, server: WireServer) -> None:
        self.server = server
        self.reader = FrameReader(server.frame_bytes_max)
        self.transport: asyncio.Transport | None = None
        self.outstanding = 0  # requests read and not answered yet
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._reading = True
        self._writable = True

    # ---- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        self.transport = None
        self._out.clear()

    def pause_writing(self) -> None:
        self._writable = False
        self._update_reading()

    def resume_writing(self) -> None:
        self._writable = True
        self._update_reading()

    def data_received(self, data: bytes) -> None:
        try:
            bodies = self.reader.feed(data)
        except FrameError as error:
            self.answer(0, 413, ["frame_too_large", str(error)])
            self.flush()
            if self.transport is not None:
                self.transport.close()
            return
        handle = self.server._handle
        for body in bodies:
            handle(self, body)
        if self._out:
            self.flush()
        self._update_reading()

    # ---- answers -------------------------------------------------------------------------
    def answer(self, request_id: int, status: int, body: object) -> None:
        self._out.append(frame([request_id, status, body]))

    def finished(self, request_id: int, status: int, body: object) -> None:
        """Answer a request that was counted in ``outstanding``; written this loop turn."""
        self.outstanding -= 1
        self._out.append(frame([request_id, status, body]))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        if not self._reading:
            self._update_reading()

    def flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self._out))
        self._out.clear()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        wanted = self._writable and self.outstanding < REQUESTS_IN_FLIGHT_MAX
        if wanted != self._reading:
            self._reading = wanted
            if wanted:
                transport.resume_reading()
            else:
                transport.pause_reading()


class WireServer:
    """The binary protocol of one member (see the module doc): ``cluster`` and its key-value
    state machine ``machine``. ``status`` gives the member's status document (STATUS; by
    default :func:`pyraft.kv.http.member_status` of ``cluster``)."""

    def __init__(self, cluster: RaftCluster, machine: KVStore, *,
                 value_bytes_max: int = 1024 * 1024, request_timeout_s: float = 5.0,
                 frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT,
                 client_addresses: Mapping[int, str] | None = None,
                 status: Callable[[], dict] | None = None) -> None:
        if value_bytes_max < 0 or request_timeout_s <= 0 or frame_bytes_max < 64:
            raise ValueError("value_bytes_max must be >= 0, request_timeout_s > 0 and "
                             "frame_bytes_max >= 64")
        self.cluster = cluster
        self.machine = machine
        self.value_bytes_max = value_bytes_max
        self.timeout = request_timeout_s
        self.frame_bytes_max = frame_bytes_max
        self.client_addresses = dict(client_addresses or {})
        self._status = status if status is not None else (
            lambda: member_status(cluster, client_addresses=self.client_addresses))
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task] = set()
        self._batch: list[tuple[_Connection, int, int, bytes]] = []
        self._batch_scheduled = False
        self._server: asyncio.Server | None = None

    async def start(self, sock: socket.socket, ssl_context: ssl.SSLContext | None = None
                    ) -> None:
        """Serve on the bound, listening ``sock`` (over TLS with ``ssl_context``)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), sock=sock,
                                                ssl=ssl_context)

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the server is not started")
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening, end every connection and every task started here."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- requests ------------------------------------------------------------------------
    def _handle(self, connection: _Connection, body: bytes) -> None:
        request_id = 0
        try:
            try:
                request = msgpack.unpackb(body)
            except Exception as error:  # msgpack raises several types for bad bytes
                raise _BadRequest("bad_frame", f"not one msgpack value "
                                               f"({type(error).__name__})") from None
            if type(request) is not list or len(request) < 2:
                raise _BadRequest("bad_frame", "a request is an array [id, op, args...]")
            request_id, op = request[0], request[1]
            if type(request_id) is not int or not 1 <= request_id <= _ID_MAX:
                request_id = 0
                raise _BadRequest("bad_frame", "the request id is an integer in "
                                               "[1, 2**64 - 1]")
            if op == PUT:
                if len(request) != 6:
                    raise _BadRequest("bad_request", "PUT is [id, 2, key, value, client, "
                                                     "sequence]")
                _, _, key, value, client, sequence = request
                if type(value) is not bytes:
                    raise _BadRequest("bad_value", "a value is msgpack bin")
                if len(value) > self.value_bytes_max:
                    raise _BadRequest("too_large", f"the value exceeds {self.value_bytes_max} "
                                                   "bytes", 413)
                if not (type(client) is int and 1 <= client <= _ID_MAX
                        and type(sequence) is int and 1 <= sequence <= _ID_MAX
                        and type(key) is bytes and 0 < len(key) <= KEY_BYTES_MAX):
                    # _session_number's and _key's checks, inline: on a failure the
                    # helpers raise the first bad field's error
                    client, sequence, key = \
                        _session_number(client), _session_number(sequence), _key(key)
                self._propose(connection, request_id, PUT,
                              _put_payload(client, sequence, key, value))
            elif op == DELETE:
                if len(request) != 5:
                    raise _BadRequest("bad_request", "DELETE is [id, 3, key, client, sequence]")
                self._propose(connection, request_id, DELETE, KVStateMachine.encode(Delete(
                    _session_number(request[3]), _session_number(request[4]),
                    _key(request[2]))))
            elif op == CAS:
                if len(request) != 7:
                    raise _BadRequest("bad_request", "CAS is [id, 4, key, expected, new, "
                                                     "client, sequence]")
                expected, new = request[3], request[4]
                if type(new) is not bytes or (expected is not None and type(expected)
                                              is not bytes):
                    raise _BadRequest("bad_value", "expected (or nil) and new are msgpack bin")
                if len(new) > self.value_bytes_max:
                    raise _BadRequest("too_large", f"the value exceeds {self.value_bytes_max} "
                                                   "bytes", 413)
                self._propose(connection, request_id, CAS, KVStateMachine.encode(CompareAndSet(
                    _session_number(request[5]), _session_number(request[6]),
                    _key(request[2]), expected, new)))
            elif op == GET:
                if len(request) != 4 or request[3] not in _CONSISTENCIES:
                    raise _BadRequest("bad_request", "GET is [id, 1, key, consistency], "
                                                     "consistency one of "
                                                     f"{', '.join(_CONSISTENCIES)}")
                connection.outstanding += 1
                self._spawn(self._get(connection, request_id, _key(request[2]), request[3]))
            elif op == OPEN_SESSION:
                if len(request) != 2:
                    raise _BadRequest("bad_request", "OPEN_SESSION is [id, 5]")
                self._propose(connection, request_id, OPEN_SESSION,
                              KVStateMachine.encode(OpenSession(None)))
            elif op == STATUS:
                connection.answer(request_id, 200, self._status())
            else:
                raise _BadRequest("bad_op", f"unknown operation {op!r}")
        except _BadRequest as bad:
            connection.answer(request_id, bad.status, [bad.kind, str(bad)])

    def _leader_address(self) -> str | None:
        leader = self.cluster.leader
        if leader is None:
            return None
        for member in self.cluster.members:
            if member.id == leader and member.metadata.get("client"):
                return member.metadata["client"]
        return self.client_addresses.get(leader)

    def _not_leader(self) -> tuple[int, list]:
        leader = self.cluster.leader
        if leader is None or leader == self.cluster.id:
            return 503, ["no_leader", "no leader is known; retry later"]
        address = self._leader_address()
        if address is None:
            return 503, ["no_leader_address",
                         f"the leader is member {leader}; its client address is unknown"]
        return 307, ["not_leader", f"the leader is member {leader}", address]

    def _propose(self, connection: _Connection, request_id: int, op: int,
                 payload: bytes) -> None:
        """Queue a write for this loop turn's batch (answered at once when not leading)."""
        if not self.cluster.is_leader:
            connection.answer(request_id, *self._not_leader())
            return
        connection.outstanding += 1
        self._batch.append((connection, request_id, op, payload))
        if not self._batch_scheduled:
            self._batch_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_batch)

    def _send_batch(self) -> None:
        self._batch_scheduled = False
        batch, self._batch = self._batch, []
        if batch:
            self._spawn(self._replicate(batch))

    async def _replicate(self, batch: list[tuple[_Connection, int, int, bytes]]) -> None:
        failure: tuple[int, list] | None = None
        results: list[Any] = []
        try:
            results = await self.cluster.replicate_many([item[3] for item in batch],
                                                        timeout=self.timeout)
        except NotLeaderError:
            failure = self._not_leader()
        except (asyncio.TimeoutError, CommandOutcomeUnknownError, CommandLostError):
            # some of the batch may be applied: the outcome of each is unknown
            failure = 504, ["timeout", "no answer within the timeout: the write may or may "
                                       "not be applied; retry it with the same sequence"]
        except (ClusterStoppedError, ProposalDroppedError, StorageError) as error:
            failure = 503, [type(error).__name__, f"not applied: {error}"]
        except asyncio.CancelledError:  # the service stops with the batch in flight
            failure = 504, ["stopped", "the member stopped with the write in flight: it may or "
                                       "may not be applied; retry it with the same sequence"]
            for connection, request_id, _, _ in batch:
                connection.finished(request_id, *failure)
            raise
        if failure is not None:
            for connection, request_id, _, _ in batch:
                connection.finished(request_id, *failure)
            return
        for (connection, request_id, op, _), result in zip(batch, results):
            if (op == PUT or op == DELETE) and (result is None or type(result) is bytes):
                connection.finished(request_id, 200, result)  # ``_answer``'s, for most
            else:
                connection.finished(request_id, *_answer(op, result))

    async def _get(self, connection: _Connection, request_id: int, key: bytes,
                   consistency: str) -> None:
        cluster = self.cluster
        try:
            if consistency == "barrier":
                if cluster.leader is None:
                    connection.finished(request_id, 503, ["no_leader",
                                                          "no leader is known; retry later"])
                    return
                await cluster.apply_read_barrier(timeout=self.timeout)
            elif consistency == "lease":
                if not cluster.is_leader:
                    connection.finished(request_id, *self._not_leader())
                    return
                await cluster.ensure_consistency(timeout=self.timeout)
                await cluster.wait_for_applied(cluster.commit_index, timeout=self.timeout)
                if not cluster.is_leader:
                    connection.finished(request_id, *self._not_leader())
                    return
                if not cluster.lease.valid:
                    connection.finished(request_id, 503, [
                        "no_lease", "the leader holds no valid lease; retry later"])
                    return
        except asyncio.TimeoutError:
            connection.finished(request_id, 504, ["timeout", "the read barrier timed out (a "
                                                             "read is safe to retry)"])
            return
        except NotLeaderError:
            connection.finished(request_id, *self._not_leader())
            return
        except ClusterStoppedError as error:
            connection.finished(request_id, 503, ["stopped", str(error)])
            return
        except asyncio.CancelledError:
            connection.finished(request_id, 503, ["stopped", "the member is stopping"])
            raise
        value = self.machine.data.get(key)
        connection.finished(request_id, 404 if value is None else 200, value)


def _answer(op: int, result: object) -> tuple[int, object]:
    """The ``(status, body)`` of a write's state-machine result."""
    if isinstance(result, SessionExpired):
        return 410, ["session_expired", f"client {result.client} has no session: open a "
                                        "new one"]
    if isinstance(result, StaleRequest):
        return 409, ["stale_request", f"sequence {result.sequence} is below the last one "
                                      f"({result.last_sequence}) of client {result.client}"]
    if isinstance(result, MalformedRequest):
        return 400, ["malformed", result.reason]
    if op == CAS:
        if not isinstance(result, CasResult):
            return 500, ["internal", f"unexpected result {result!r}"]
        return 200, [result.ok, result.current]
    if op == OPEN_SESSION:
        if not isinstance(result, SessionOpened):
            return 500, ["internal", f"unexpected result {result!r}"]
        return 200, result.client
    return 200, result


async def serve(cluster: RaftCluster, machine: KVStore, sock: socket.socket, *,
                ssl_context: ssl.SSLContext | None = None, **options) -> WireServer:
    """Serve the binary protocol on the bound ``sock``; returns the started server (end it
    with ``await server.close()``). ``options`` go to :class:`WireServer`."""
    server = WireServer(cluster, machine, **options)
    await server.start(sock, ssl_context)
    return server
