"""A fault-injecting TCP proxy between cluster members, on 127.0.0.1.

``FaultProxy`` opens one listener per ordered pair of members ``(i, j)``: member ``i`` dials
member ``j`` through ``proxy.address(i, j)`` (``pyraft node --routes``, see
:meth:`FaultProxy.routes`), and the proxy forwards to ``j``'s real address. The TCP transport
writes Raft messages only on its outbound connections (``pyraft.transport.tcp``), so the
link ``(i, j)`` carries exactly the messages from ``i`` to ``j`` (plus the handshake answer):
blocking ``(i, j)`` while ``(j, i)`` passes is one-way loss.

Each link is in one of three modes (:class:`LinkMode`):

- ``PASS``: bytes are forwarded, after ``delay_s`` when set (order is kept);
- ``BLOCK``: a partition: the link's open connections are closed at once, and a connection
  accepted while blocked is held open but silent (its bytes are read and discarded, nothing
  is dialled upstream), then closed when the link passes again. No byte is ever dropped from
  the middle of a stream that reaches the destination: a stream is either forwarded whole
  from its start, or never reaches the destination at all (a lost network, not corruption);
- ``CLOSE``: connections are refused (accepted and closed at once), open ones are closed.

Controls (call them from the proxy's event loop): :meth:`set_link`, :meth:`block` /
:meth:`block_one_way`, :meth:`partition` (groups that only talk inside themselves),
:meth:`isolate`, :meth:`set_delay`, :meth:`heal`. Buffers are bounded: each direction of a
connection queues at most ``queue_chunks`` chunks of at most ``chunk_bytes`` bytes; a full
queue stops reading from the source (TCP back-pressure), it never grows.

Every task and connection the proxy opens is tracked and closed by :meth:`stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pyraft.config import parse_address

__all__ = ["FaultProxy", "LinkMode", "LinkStats"]

_HOST = "127.0.0.1"


class LinkMode(enum.Enum):
    """What a link does with its traffic (see the module docstring)."""

    PASS = "pass"
    BLOCK = "block"
    CLOSE = "close"


@dataclass
class LinkStats:
    """Counters of one link: connections accepted, refused and held silent, and bytes
    forwarded and discarded in each direction (``forward``: from the dialling member)."""

    accepted: int = 0
    refused: int = 0
    held: int = 0
    closed_by_fault: int = 0
    bytes_forward: int = 0
    bytes_backward: int = 0
    bytes_discarded: int = 0


@dataclass
class _Link:
    source: int
    target: int
    mode: LinkMode = LinkMode.PASS
    delay_s: float = 0.0
    server: asyncio.AbstractServer | None = None
    port: int = 0
    connections: set[_Connection] = field(default_factory=set)
    stats: LinkStats = field(default_factory=LinkStats)


class _Connection:
    """One accepted connection of a link and, when forwarding, its upstream connection."""

    def __init__(self, link: _Link, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.link = link
        self.reader = reader
        self.writer = writer
        self.upstream: asyncio.StreamWriter | None = None
        self.closed = asyncio.Event()

    def close(self) -> None:
        for writer in (self.writer, self.upstream):
            if writer is not None and not writer.is_closing():
                writer.close()
        self.closed.set()


class FaultProxy:
    """Listeners on 127.0.0.1 for every ordered pair of ``members`` (id -> "host:port").

    Use ``await proxy.start()`` (or ``async with``) before reading addresses, and
    ``await proxy.stop()`` at the end. ``chunk_bytes`` and ``queue_chunks`` bound what one
    direction of one connection may hold; ``connect_timeout_s`` bounds dialling a member.
    """

    def __init__(self, members: Mapping[int, str], *, chunk_bytes: int = 65536,
                 queue_chunks: int = 64, connect_timeout_s: float = 2.0) -> None:
        if len(members) < 2:
            raise ValueError("a proxy needs at least two members")
        if chunk_bytes < 1 or queue_chunks < 1 or connect_timeout_s <= 0:
            raise ValueError("chunk_bytes and queue_chunks must be >= 1, connect_timeout_s > 0")
        self.members = dict(members)
        self.chunk_bytes = chunk_bytes
        self.queue_chunks = queue_chunks
        self.connect_timeout_s = connect_timeout_s
        self._links: dict[tuple[int, int], _Link] = {
            (i, j): _Link(i, j) for i, j in itertools.permutations(sorted(self.members), 2)}
        self._tasks: set[asyncio.Task] = set()
        self._started = False

    # ---- life cycle ----------------------------------------------------------------------
    async def start(self) -> FaultProxy:
        """Open every listener (ports chosen by the system)."""
        if self._started:
            raise RuntimeError("the proxy is already started")
        self._started = True
        try:
            for link in self._links.values():
                link.server = await asyncio.start_server(
                    functools.partial(self._accept, link), _HOST, 0)
                link.port = link.server.sockets[0].getsockname()[1]
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        """Close every listener and connection; cancel and await every task."""
        for link in self._links.values():
            if link.server is not None:
                link.server.close()
            for connection in list(link.connections):
                connection.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for link in self._links.values():
            if link.server is not None:
                await link.server.wait_closed()
                link.server = None

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # ---- addresses -----------------------------------------------------------------------
    def address(self, source: int, target: int) -> str:
        """Where ``source`` dials ``target``: ``"127.0.0.1:port"``."""
        link = self._link(source, target)
        if not link.port:
            raise RuntimeError("start the proxy first")
        return f"{_HOST}:{link.port}"

    def routes(self, source: int) -> str:
        """``--routes`` for member ``source``: ``"j=127.0.0.1:port,..."`` for every other j."""
        if source not in self.members:
            raise KeyError(f"member {source} is not known to the proxy")
        return ",".join(f"{j}={self.address(source, j)}" for j in sorted(self.members)
                        if j != source)

    def stats(self, source: int, target: int) -> LinkStats:
        return self._link(source, target).stats

    def mode(self, source: int, target: int) -> LinkMode:
        return self._link(source, target).mode

    # ---- controls ------------------------------------------------------------------------
    def set_link(self, source: int, target: int, mode: LinkMode) -> None:
        """Put the link ``source -> target`` in ``mode``; leaving PASS closes its open
        connections, entering PASS closes the connections held silent."""
        link = self._link(source, target)
        if not isinstance(mode, LinkMode):
            raise TypeError(f"mode must be a LinkMode, not {mode!r}")
        if mode is link.mode:
            return
        link.mode = mode
        for connection in list(link.connections):
            link.stats.closed_by_fault += 1
            connection.close()

    def set_delay(self, source: int, target: int, delay_s: float) -> None:
        """Deliver the bytes of ``source -> target`` ``delay_s`` seconds late (0: at once)."""
        if not 0 <= delay_s <= 60:
            raise ValueError(f"delay_s must be in [0, 60], not {delay_s!r}")
        self._link(source, target).delay_s = delay_s

    def block(self, a: int, b: int) -> None:
        """Partition ``a`` and ``b`` from each other (both directions)."""
        self.set_link(a, b, LinkMode.BLOCK)
        self.set_link(b, a, LinkMode.BLOCK)

    def block_one_way(self, source: int, target: int) -> None:
        """Lose everything ``source`` sends to ``target``; ``target -> source`` still passes."""
        self.set_link(source, target, LinkMode.BLOCK)

    def partition(self, groups: Iterable[Iterable[int]]) -> None:
        """Members talk only inside their group (members in no group are isolated)."""
        group_of: dict[int, int] = {}
        for number, group in enumerate(groups):
            for member in group:
                if member not in self.members:
                    raise KeyError(f"member {member} is not known to the proxy")
                if member in group_of:
                    raise ValueError(f"member {member} is in two groups")
                group_of[member] = number
        for (i, j) in self._links:
            together = i in group_of and group_of.get(i) == group_of.get(j)
            self.set_link(i, j, LinkMode.PASS if together else LinkMode.BLOCK)

    def isolate(self, member: int) -> None:
        """Cut ``member`` from every other member, both directions."""
        self.partition([[m for m in self.members if m != member]])

    def heal(self) -> None:
        """Every link passes again, without delay."""
        for (i, j), link in self._links.items():
            link.delay_s = 0.0
            self.set_link(i, j, LinkMode.PASS)

    def blocked_links(self) -> list[tuple[int, int]]:
        return sorted(key for key, link in self._links.items() if link.mode is not LinkMode.PASS)

    # ---- the machinery -------------------------------------------------------------------
    def _link(self, source: int, target: int) -> _Link:
        try:
            return self._links[(source, target)]
        except KeyError:
            raise KeyError(f"no link {source} -> {target} (members: "
                           f"{sorted(self.members)})") from None

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept(self, link: _Link, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        # runs as the server's own task per connection; the real work is tracked by _spawn
        connection = _Connection(link, reader, writer)
        if link.mode is LinkMode.CLOSE:
            link.stats.refused += 1
            writer.close()
            return
        link.stats.accepted += 1
        link.connections.add(connection)
        self._spawn(self._serve(connection))

    async def _serve(self, connection: _Connection) -> None:
        link = connection.link
        try:
            if link.mode is LinkMode.BLOCK:
                link.stats.held += 1
                await self._hold(connection)
                return
            host, port = parse_address(self.members[link.target])
            try:
                upstream_reader, upstream = await asyncio.wait_for(
                    asyncio.open_connection(host, port), self.connect_timeout_s)
            except (OSError, asyncio.TimeoutError):
                return
            connection.upstream = upstream
            if connection.closed.is_set() or link.mode is not LinkMode.PASS:
                return
            pumps = [self._spawn(self._pump(connection, connection.reader, upstream, True)),
                     self._spawn(self._pump(connection, upstream_reader, connection.writer,
                                            False))]
            closed = self._spawn(connection.closed.wait())
            try:
                await asyncio.wait([*pumps, closed], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (*pumps, closed):
                    task.cancel()
                await asyncio.gather(*pumps, closed, return_exceptions=True)
        finally:
            connection.close()
            link.connections.discard(connection)
            with contextlib.suppress(Exception):
                await connection.writer.wait_closed()
            if connection.upstream is not None:
                with contextlib.suppress(Exception):
                    await connection.upstream.wait_closed()

    async def _hold(self, connection: _Connection) -> None:
        """Read and discard until the link changes mode (which closes the connection)."""
        link = connection.link
        while not connection.closed.is_set():
            reading = self._spawn(connection.reader.read(self.chunk_bytes))
            closed = self._spawn(connection.closed.wait())
            try:
                await asyncio.wait([reading, closed], return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
                if not reading.done():
                    reading.cancel()
                await asyncio.gather(reading, closed, return_exceptions=True)
            if reading.cancelled() or reading.exception() is not None:
                return
            data = reading.result()
            if not data:
                return
            link.stats.bytes_discarded += len(data)

    async def _pump(self, connection: _Connection, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, forward: bool) -> None:
        """Copy one direction through a bounded queue, each chunk after the link's delay."""
        link = connection.link
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(self.queue_chunks)

        async def deliver() -> None:
            try:
                while True:
                    item = await queue.get()
                    if item is None:
                        return
                    due, data = item
                    wait = due - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    writer.write(data)
                    await writer.drain()
                    if forward:
                        link.stats.bytes_forward += len(data)
                    else:
                        link.stats.bytes_backward += len(data)
            except (OSError, ConnectionError):
                return
            finally:
                connection.close()  # ends the other direction too (see _serve)

        delivering = self._spawn(deliver())
        try:
            while True:
                try:
                    data = await reader.read(self.chunk_bytes)
                except (OSError, asyncio.IncompleteReadError):
                    data = b""
                if not data:
                    await queue.put(None)
                    await delivering
                    return
                await queue.put((loop.time() + link.delay_s, data))
                if delivering.done():
                    return
        except (OSError, ConnectionError):
            return
        finally:
            if not delivering.done():
                delivering.cancel()
            with contextlib.suppress(BaseException):
                await delivering
