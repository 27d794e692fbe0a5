"""The fault-injecting proxy: forwarding, partitions, one-way loss, refusal, delay, bounded
clean-up, and typed errors for bad controls. Echo servers on 127.0.0.1 stand for members."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from pyraft.testing.faultproxy import FaultProxy, LinkMode


class _Sink:
    """A member stand-in: records what every accepted connection sends, echoes it back."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.accepted = 0
        self.server: asyncio.AbstractServer | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                self.received += data
                writer.write(data)
                await writer.drain()
        writer.close()

    async def stop(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()


async def _until(condition, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def _connect(proxy: FaultProxy, source: int, target: int):
    host, _, port = proxy.address(source, target).rpartition(":")
    return await asyncio.open_connection(host, int(port))


async def _closed(reader: asyncio.StreamReader, timeout: float = 10.0) -> bool:
    """True when the connection ends (EOF or reset) within ``timeout``."""
    try:
        data = await asyncio.wait_for(reader.read(65536), timeout)
    except (ConnectionError, OSError):
        return True
    return data == b""


def _run(scenario):
    async def main():
        sinks = {m: _Sink() for m in (1, 2, 3)}
        addresses = {m: await sink.start() for m, sink in sinks.items()}
        proxy = await FaultProxy(addresses).start()
        try:
            await scenario(proxy, sinks)
        finally:
            await proxy.stop()
            for sink in sinks.values():
                await sink.stop()
        current = asyncio.current_task()
        leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        # the servers' per-connection handlers end with their connections
        await _until(lambda: all(t.done() for t in leftover))

    asyncio.run(main())


def test_routes_name_one_listener_per_ordered_pair():
    async def scenario(proxy, sinks):
        routes = dict(part.split("=") for part in proxy.routes(1).split(","))
        assert set(routes) == {"2", "3"}
        ports = {proxy.address(i, j) for i in (1, 2, 3) for j in (1, 2, 3) if i != j}
        assert len(ports) == 6
        with pytest.raises(KeyError):
            proxy.address(1, 1)
        with pytest.raises(KeyError):
            proxy.routes(9)

    _run(scenario)


def test_pass_forwards_both_directions():
    async def scenario(proxy, sinks):
        reader, writer = await _connect(proxy, 1, 2)
        writer.write(b"hello")
        assert await asyncio.wait_for(reader.readexactly(5), 10) == b"hello"
        assert bytes(sinks[2].received) == b"hello" and not sinks[3].received
        assert proxy.stats(1, 2).bytes_forward == 5
        await _until(lambda: proxy.stats(1, 2).bytes_backward == 5)
        writer.close()

    _run(scenario)


def test_block_closes_open_connections_and_holds_new_ones_silent_until_heal():
    async def scenario(proxy, sinks):
        reader, writer = await _connect(proxy, 1, 2)
        writer.write(b"a")
        assert await asyncio.wait_for(reader.readexactly(1), 10) == b"a"
        proxy.block(1, 2)
        assert await _closed(reader)
        writer.close()
        # a new connection is accepted but nothing reaches member 2
        reader, writer = await _connect(proxy, 1, 2)
        writer.write(b"lost")
        await writer.drain()
        await _until(lambda: proxy.stats(1, 2).bytes_discarded == 4)
        assert bytes(sinks[2].received) == b"a" and sinks[2].accepted == 1
        assert (1, 2) in proxy.blocked_links() and (2, 1) in proxy.blocked_links()
        proxy.heal()
        assert await _closed(reader)  # the held connection ends: its bytes never arrive
        writer.close()
        reader, writer = await _connect(proxy, 1, 2)
        writer.write(b"b")
        assert await asyncio.wait_for(reader.readexactly(1), 10) == b"b"
        assert bytes(sinks[2].received) == b"ab"
        writer.close()

    _run(scenario)


def test_one_way_loss_blocks_one_direction_of_a_pair():
    async def scenario(proxy, sinks):
        proxy.block_one_way(1, 2)
        assert proxy.mode(1, 2) is LinkMode.BLOCK and proxy.mode(2, 1) is LinkMode.PASS
        back_reader, back_writer = await _connect(proxy, 2, 1)
        back_writer.write(b"from 2")
        assert await asyncio.wait_for(back_reader.readexactly(6), 10) == b"from 2"
        reader, writer = await _connect(proxy, 1, 2)
        writer.write(b"from 1")
        await _until(lambda: proxy.stats(1, 2).bytes_discarded == 6)
        assert not sinks[2].received
        for w in (writer, back_writer):
            w.close()

    _run(scenario)


def test_partition_groups_and_isolation():
    async def scenario(proxy, sinks):
        proxy.partition([[1, 2], [3]])
        assert proxy.blocked_links() == [(1, 3), (2, 3), (3, 1), (3, 2)]
        proxy.isolate(2)
        assert proxy.blocked_links() == [(1, 2), (2, 1), (2, 3), (3, 2)]
        with pytest.raises(ValueError):
            proxy.partition([[1, 2], [2, 3]])
        with pytest.raises(KeyError):
            proxy.partition([[1, 7]])
        proxy.heal()
        assert proxy.blocked_links() == []

    _run(scenario)


def test_close_mode_refuses_connections():
    async def scenario(proxy, sinks):
        proxy.set_link(3, 1, LinkMode.CLOSE)
        reader, writer = await _connect(proxy, 3, 1)
        writer.write(b"x")
        assert await _closed(reader)
        assert proxy.stats(3, 1).refused == 1 and sinks[1].accepted == 0
        writer.close()

    _run(scenario)


def test_delay_keeps_order_and_delivers_late():
    async def scenario(proxy, sinks):
        loop = asyncio.get_running_loop()
        proxy.set_delay(1, 3, 0.3)
        reader, writer = await _connect(proxy, 1, 3)
        sent = loop.time()
        for i in range(5):
            writer.write(b"%d" % i)
            await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(5), 10) == b"01234"
        assert loop.time() - sent >= 0.3  # a lower bound: the delay is applied, not skipped
        writer.close()

    _run(scenario)


def test_bad_controls_are_typed_errors():
    with pytest.raises(ValueError):
        FaultProxy({1: "127.0.0.1:1"})
    with pytest.raises(ValueError):
        FaultProxy({1: "127.0.0.1:1", 2: "127.0.0.1:2"}, queue_chunks=0)

    async def scenario(proxy, sinks):
        with pytest.raises(ValueError):
            proxy.set_delay(1, 2, -1)
        with pytest.raises(TypeError):
            proxy.set_link(1, 2, "block")
        with pytest.raises(KeyError):
            proxy.block(1, 4)
        with pytest.raises(RuntimeError):
            await proxy.start()

    _run(scenario)
