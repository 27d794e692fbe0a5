"""Messages between members, over the members' own connections (TCP, TLS or in memory).

``Messenger(cluster)`` gives a running ``RaftCluster`` point-to-point messaging:

- ``@messenger.handler("name")`` registers ``async def handler(sender, payload) -> bytes |
  None`` for messages called ``name``;
- ``await messenger.send(member, name, payload)``: one way, best effort (like every Raft
  message: it may be lost when the member is down);
- ``await messenger.request(member, name, payload, timeout=...)``: request/response; returns
  the handler's answer, raises ``RemoteHandlerError`` (the handler failed or does not exist on
  that member) or ``MessageTimeoutError`` (no answer in time: the handler may or may not
  have run);
- ``await messenger.request_leader(name, payload, timeout=...)``: the same, to whoever leads
  now (this member included), following leadership changes until the timeout.

Envelope (inside a transport FRAME_USER): msgpack ``[kind, correlation id, name, payload]``
with kind 0 one-way, 1 request, 2 answer, 3 error answer. Payloads are bytes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgpack

from pyraft.errors import MessageTimeoutError, RemoteHandlerError

if TYPE_CHECKING:
    from pyraft.cluster.runtime import RaftCluster

log = logging.getLogger("pyraft.messaging")

ONE_WAY, REQUEST, ANSWER, ERROR = 0, 1, 2, 3
Handler = Callable[[int, bytes], Awaitable[bytes | None]]


class Messenger:
    def __init__(self, cluster: RaftCluster) -> None:
        self.cluster = cluster
        self.transport = cluster.transport
        self._handlers: dict[str, Handler] = {}
        self._waiting: dict[int, asyncio.Future[bytes | None]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self.transport.serve_user_messages(self._receive)

    def handler(self, name: str) -> Callable[[Handler], Handler]:
        def register(function: Handler) -> Handler:
            self._handlers[name] = function
            return function

        return register

    async def send(self, member: int, name: str, payload: bytes = b"") -> None:
        self._send(member, [ONE_WAY, 0, name, bytes(payload)])

    async def request(self, member: int, name: str, payload: bytes = b"", *,
                      timeout: float = 1.0) -> bytes | None:
        if member == self.cluster.id:
            return await self._run_local(name, payload)
        correlation = next(self._ids)
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = future
        try:
            self._send(member, [REQUEST, correlation, name, bytes(payload)])
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise MessageTimeoutError(
                f"no answer from member {member} to {name!r} within {timeout} s") from None
        finally:
            self._waiting.pop(correlation, None)

    async def request_leader(self, name: str, payload: bytes = b"", *,
                             timeout: float = 5.0) -> bytes | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise MessageTimeoutError(f"no leader answered {name!r} within {timeout} s")
            leader = self.cluster.leader
            if leader is None:
                await asyncio.sleep(min(0.02, left))
                continue
            try:
                return await self.request(leader, name, payload, timeout=min(left, 1.0))
            except MessageTimeoutError:
                continue  # the leader may have changed: ask whoever leads now

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for future in self._waiting.values():
            if not future.done():
                future.cancel()
        if self.transport.user_message_handler == self._receive:
            self.transport.serve_user_messages(None)

    # ---- internals -------------------------------------------------------------------------
    def _send(self, member: int, envelope: list[Any]) -> None:
        self.transport.send_user(member, msgpack.packb(envelope))

    async def _run_local(self, name: str, payload: bytes) -> bytes | None:
        handler = self._handlers.get(name)
        if handler is None:
            raise RemoteHandlerError(f"member {self.cluster.id} has no handler {name!r}")
        return await handler(self.cluster.id, bytes(payload))

    def _receive(self, sender: int, body: bytes) -> asyncio.Task[None] | None:
        try:
            kind, correlation, name, payload = msgpack.unpackb(body)
            kind, correlation, name = int(kind), int(correlation), str(name)
            payload = bytes(payload) if payload is not None else None
        except Exception as error:  # a malformed envelope: drop it, never crash the loop
            log.warning("dropping a malformed member message from %d: %s", sender, error)
            return None
        if kind in (ANSWER, ERROR):
            future = self._waiting.get(correlation)
            if future is not None and not future.done():
                if kind == ANSWER:
                    future.set_result(payload)
                else:
                    future.set_exception(RemoteHandlerError(
                        f"member {sender}: {(payload or b'').decode(errors='replace')}"))
            return None
        task = asyncio.get_running_loop().create_task(
            self._handle(sender, kind, correlation, name, payload or b""))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task  # the transport bounds the handlers running per connection

    async def _handle(self, sender: int, kind: int, correlation: int, name: str,
                      payload: bytes) -> None:
        handler = self._handlers.get(name)
        try:
            if handler is None:
                raise RemoteHandlerError(f"no handler {name!r}")
            answer = await handler(sender, payload)
        except Exception as error:  # the caller learns it failed; this member carries on
            if kind == REQUEST:
                self._send(sender, [ERROR, correlation, name,
                                    f"{type(error).__name__}: {error}".encode()])
            else:
                log.warning("handler %r failed on a one-way message: %s", name, error)
            return
        if kind == REQUEST:
            self._send(sender, [ANSWER, correlation, name,
                                bytes(answer) if answer is not None else None])
