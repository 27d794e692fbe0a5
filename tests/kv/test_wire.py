"""The binary client protocol (``pyraft.kv.wire``) and ``KVClient`` over it.

Most tests run a 3-member in-process cluster (in-memory transport) whose members serve the
protocol on real sockets on 127.0.0.1; one runs ``pyraft node --client`` processes with only
the documented flags. Bad input (garbage, oversized frames, a peer hanging up mid-frame) is
sent on raw sockets, and the server must go on serving. Each in-process test fails on an
unhandled loop error and on tasks left running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import ssl
import subprocess
import sys
import time

import msgpack
import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from pyraft.cluster import RaftCluster
from pyraft.config import ClusterConfig
from pyraft.errors import FrameError
from pyraft.kv import KVStateMachine
from pyraft.kv.client import (
    Backoff,
    InvalidURLError,
    KVClient,
    KVClientError,
    RequestError,
    SessionExpiredError,
    TlsError,
    UnavailableError,
)
from pyraft.kv.frames import FrameReader, frame
from pyraft.kv.machine import Put
from pyraft.kv.wire import _put_payload
from pyraft.kv.wire import serve as serve_wire
from pyraft.testing.processes import free_port
from pyraft.transport.memory import MemoryNetwork
from tests.kv.test_http import leader_of, run

PEERS = {m: f"127.0.0.1:{7300 + m}" for m in (1, 2, 3)}


# ---- frames ----------------------------------------------------------------------------------
def test_the_frame_reader_splits_a_stream_cut_anywhere():
    messages = [[1, 2, b"k", b"v" * 300, 5, 6], [2, 6], [3, 1, b"x" * 70000, "barrier"]]
    stream = b"".join(frame(m) for m in messages)
    for cut in (1, 3, 4, 5, 17, 4096):
        reader = FrameReader(1 << 20)
        bodies = []
        for start in range(0, len(stream), cut):
            bodies += reader.feed(stream[start:start + cut])
        assert [msgpack.unpackb(b) for b in bodies] == messages, cut
        assert reader.pending_bytes == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=12), st.lists(st.integers(0, 60), max_size=20),
       st.lists(st.sampled_from([bytes, bytearray, memoryview]), min_size=1, max_size=3))
def test_the_frame_reader_gives_the_bodies_of_any_stream_in_any_chunks(bodies, cuts, kinds):
    """Frames cut anywhere (empty chunks too), each chunk bytes, a bytearray or a view:
    every body once, in order, as bytes, and nothing left over."""
    stream = b"".join(len(b).to_bytes(4, "big") + b for b in bodies)
    reader = FrameReader(64)
    got: list[bytes] = []
    start = 0
    for n, cut in enumerate([*cuts, len(stream)]):
        end = min(len(stream), start + cut) if n < len(cuts) else len(stream)
        got += reader.feed(kinds[n % len(kinds)](stream[start:end]))
        start = end
    assert got == bodies and all(type(b) is bytes for b in got)
    assert reader.pending_bytes == 0


def test_frames_pack_as_msgpack_does_in_every_thread():
    """``pack`` reuses one packer per thread: frames built in several threads at once are
    each ``msgpack.packb``'s."""
    messages = [[n, 2, b"k%d" % n, b"v" * (n % 50), n + 1, 2**63 + n] for n in range(2000)]
    expected = [len(b).to_bytes(4, "big") + b for b in map(msgpack.packb, messages)]

    def build() -> list[bytes]:
        return [frame(m) for m in messages]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: build(), range(8)))
    assert all(result == expected for result in results)


def test_the_frame_reader_refuses_a_frame_over_its_limit_at_once():
    reader = FrameReader(100)
    assert reader.feed(frame(b"a" * 90)) != []
    with pytest.raises(FrameError) as caught:
        reader.feed((101).to_bytes(4, "big"))  # refused before its body arrives
    assert caught.value.offset == 0 and "101 bytes" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_the_hot_path_encodes_a_put_as_the_state_machine_does():
    for client, sequence, key, value in [(1, 1, b"k", b""), (2**64 - 1, 2**63, b"\xff" * 300,
                                                             b"v" * 70000)]:
        assert _put_payload(client, sequence, key, value) == KVStateMachine.encode(
            Put(client, sequence, key, value))


# ---- an in-process cluster -------------------------------------------------------------------
def _listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@contextlib.asynccontextmanager
async def wire_cluster(network, **options):
    """Three members serving the binary protocol; yields (members, {id: "pyraft://..."})."""
    sockets = {member: _listening() for member in PEERS}
    client = {m: f"127.0.0.1:{s.getsockname()[1]}" for m, s in sockets.items()}
    members = [
        RaftCluster(ClusterConfig(member_id=m, tick_ms=5, peers=PEERS,
                                  metadata={"client": client[m]}),
                    transport=network.transport(m), state_machine=KVStateMachine())
        for m in PEERS
    ]
    servers = []
    try:
        for member in members:
            await member.start()
        for member in members:
            servers.append(await serve_wire(member, member.state_machine, sockets[member.id],
                                            client_addresses=client, request_timeout_s=1.0,
                                            **options))
        yield members, {m: f"pyraft://{a}" for m, a in client.items()}
    finally:
        for server in servers:
            await server.close()
        for member in members:
            await member.stop()
        for sock in sockets.values():
            sock.close()


class RawConnection:
    """A raw socket to a member's binary protocol: frames out, answers in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> RawConnection:
        host, port = url.removeprefix("pyraft://").rsplit(":", 1)
        return cls(*await asyncio.open_connection(host, int(port)))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> list:
        length = int.from_bytes(await asyncio.wait_for(self.reader.readexactly(4), 5), "big")
        return msgpack.unpackb(await asyncio.wait_for(self.reader.readexactly(length), 5))

    async def call(self, message: list) -> list:
        await self.send(frame(message))
        return await self.answer()

    async def closed_by_server(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 5) == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def test_writes_reads_cas_redirects_and_status_over_the_binary_protocol():
    async def body():
        async with wire_cluster(MemoryNetwork()) as (members, urls):
            leader = await leader_of(members)
            follower = next(m for m in members if m is not leader)
            # the client starts at a follower: it follows the redirect and keeps the leader
            async with KVClient([urls[follower.id]], timeout_s=2) as kv:
                assert kv.binary
                assert await kv.put("k", b"v1") is None
                assert kv.leader_url == urls[leader.id]
                assert kv.metrics.redirects.value() >= 1
                assert await kv.put("k", "v2") == b"v1"
                assert kv.metrics.requests.value(("put", "ok")) == 2
                assert kv.metrics.request_seconds.count(("put",)) == 2
                for member in members:
                    async with KVClient([urls[member.id]], timeout_s=2) as single:
                        assert await single.get("k") == b"v2"  # barrier: any member
                        assert await single.get("k", consistency="lease") == b"v2"
                        assert await single.get("nope") is None
                assert await kv.cas("k", "wrong", "v3") == (False, b"v2")
                assert await kv.cas("k", b"v2", b"\xff\x00") == (True, b"\xff\x00")
                assert await kv.cas("fresh", None, "x") == (True, b"x")
                assert await kv.delete("fresh") == b"x"
                assert await kv.delete("fresh") is None
                assert await kv.get("fresh", consistency="local") is None
                status = await kv.status(urls[follower.id])
                assert status["id"] == follower.id and status["leader"] == leader.id
                assert {m["client"] for m in status["members"]} == {
                    u.removeprefix("pyraft://") for u in urls.values()}
                with pytest.raises(RequestError) as caught:
                    await kv.get("k", consistency="sometimes")
                assert caught.value.status == 400
                for bad in ("a/b", "", b"a/b", b"\xff"):  # the HTTP API's key rules, both ways
                    with pytest.raises(ValueError):
                        await kv.put(bad, b"x")
                assert await kv.put(b"caf\xc3\xa9", b"x") is None  # UTF-8 bytes: a key
                assert await kv.get("café") == b"x"
                with pytest.raises(KVClientError):
                    await kv.add_member(4, "127.0.0.1:1")  # administrative: HTTP only
                # a value over the member's limit: refused, nothing proposed
                async with wire_cluster(MemoryNetwork(), value_bytes_max=8) as (small, s_urls):
                    await leader_of(small)
                    async with KVClient(list(s_urls.values()), timeout_s=2) as tight:
                        with pytest.raises(RequestError) as caught:
                            await tight.put("k", b"123456789")
                        assert caught.value.status == 413 and caught.value.kind == "too_large"

    run(body)


def test_concurrent_writes_of_one_client_use_a_pool_of_sessions_exactly_once():
    """300 writes at once over one connection (several ``FLUSH_REQUESTS`` bursts, written
    before the loop turn ends): each applied once, through at most ``sessions_max``."""
    writes = 300

    async def body():
        async with wire_cluster(MemoryNetwork()) as (members, urls):
            leader = await leader_of(members)
            async with KVClient(list(urls.values()), timeout_s=2, sessions_max=8) as kv:
                await asyncio.gather(*(kv.put(f"key-{i}", str(i)) for i in range(writes)))
                assert kv._sessions_count == 8  # no more sessions than allowed
                sessions = leader.state_machine.sessions
                assert len(sessions) == 8
                # every write applied once: each session's last sequence counts its writes
                assert sum(info.last_sequence for info in sessions.values()) == writes
                for i in range(writes):
                    assert leader.state_machine.data[f"key-{i}".encode()] == str(i).encode()

    run(body)


def test_a_retried_sequence_is_answered_from_the_cache_and_stale_or_expired_ones_refused():
    async def body():
        async with wire_cluster(MemoryNetwork()) as (members, urls):
            leader = await leader_of(members)
            raw = await RawConnection.open(urls[leader.id])
            try:
                request_id, status, client = await raw.call([1, 5])  # OPEN_SESSION
                assert (request_id, status) == (1, 200) and type(client) is int
                assert await raw.call([2, 2, b"k", b"a", client, 1]) == [2, 200, None]
                assert await raw.call([3, 2, b"k", b"b", client, 2]) == [3, 200, b"a"]
                # a retry of sequence 2 (another value): the cached answer, not applied again
                assert await raw.call([4, 2, b"k", b"c", client, 2]) == [4, 200, b"a"]
                assert leader.state_machine.data[b"k"] == b"b"
                stale = await raw.call([5, 2, b"k", b"d", client, 1])
                assert stale[:2] == [5, 409] and stale[2][0] == "stale_request"
                expired = await raw.call([6, 2, b"k", b"d", 987654, 1])
                assert expired[:2] == [6, 410] and expired[2][0] == "session_expired"
            finally:
                await raw.close()
            async with KVClient([urls[leader.id]], timeout_s=2) as kv:
                await kv.put("x", b"1")
                session = kv._free_sessions[0]
                session[0] = 987654  # a session the cluster never opened
                with pytest.raises(SessionExpiredError):
                    await kv.put("x", b"2")
                assert kv._sessions_count == 0 and kv._free_sessions == []
                assert await kv.put("x", b"3") == b"1"  # on a new session

    run(body)


def test_bad_input_gets_typed_answers_and_the_server_goes_on_serving():
    async def body():
        async with wire_cluster(MemoryNetwork(), frame_bytes_max=4096) as (members, urls):
            leader = await leader_of(members)
            url = urls[leader.id]
            raw = await RawConnection.open(url)
            try:
                # garbage inside a well-formed frame: 400 with id 0; the connection goes on
                await raw.send(len(b"\xc1\xc1garbage").to_bytes(4, "big") + b"\xc1\xc1garbage")
                answer = await raw.answer()
                assert answer[:2] == [0, 400] and answer[2][0] == "bad_frame"
                for message, kind in [([7], "bad_frame"), ([0, 6], "bad_frame"),
                                      ([7, 99], "bad_op"), ([7, 2, b"", b"v", 1, 1], "bad_key"),
                                      ([7, 2, b"k", "text", 1, 1], "bad_value"),
                                      ([7, 2, b"k", b"v", 0, 1], "bad_session"),
                                      ([7, 2, b"k", b"v", 1, 0], "bad_session"),
                                      ([7, 2, b"k", b"v", True, 1], "bad_session"),
                                      ([7, 2, "k", b"v", 1, 1], "bad_key"),
                                      ([7, 2, b"", b"v", 0, 1], "bad_session"),  # the first
                                      ([7, 2, b"k", b"v", 1], "bad_request"),
                                      ([7, 1, b"k", "sometimes"], "bad_request")]:
                    answer = await raw.call(message)
                    assert answer[1] == 400 and answer[2][0] == kind, (message, answer)
                assert (await raw.call([8, 6]))[:2] == [8, 200]  # still served
                # a length over the limit: 413 with id 0, then the server hangs up
                await raw.send((4097).to_bytes(4, "big") + b"x" * 10)
                answer = await raw.answer()
                assert answer[:2] == [0, 413] and answer[2][0] == "frame_too_large"
                assert await raw.closed_by_server()
            finally:
                await raw.close()
            # an HTTP request on the binary port: its first bytes read as a huge length
            raw = await RawConnection.open(url)
            try:
                await raw.send(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (await raw.answer())[:2] == [0, 413]
                assert await raw.closed_by_server()
            finally:
                await raw.close()
            # a peer that hangs up mid-frame, and one that sends half a request and waits
            half = frame([9, 2, b"k", b"v" * 100, 1, 1])[:50]
            raw = await RawConnection.open(url)
            await raw.send(half)
            await raw.close()
            waiting = await RawConnection.open(url)
            await waiting.send(half)
            try:
                async with KVClient([url], timeout_s=2) as kv:  # others are served meanwhile
                    assert await kv.put("after", b"ok") is None
                    assert await kv.get("after") == b"ok"
            finally:
                await waiting.close()

    run(body)


# ---- the client against members that misbehave -----------------------------------------------
@contextlib.asynccontextmanager
async def fake_member(handle):
    """A server on 127.0.0.1 whose ``handle(reader, writer)`` plays a member."""
    tasks: set[asyncio.Task] = set()

    async def serve(reader, writer):
        tasks.add(asyncio.current_task())
        try:
            await handle(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client hung up, or the test ended (the task is ours to cancel)
        finally:
            writer.close()
            tasks.discard(asyncio.current_task())

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"pyraft://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def read_request(reader) -> list:
    length = int.from_bytes(await reader.readexactly(4), "big")
    return msgpack.unpackb(await reader.readexactly(length))


def test_the_client_retries_503_and_504_with_the_same_sequence_then_succeeds():
    seen: list[list] = []

    async def member(reader, writer):
        while True:
            request = await read_request(reader)
            seen.append(request)
            if request[1] == 5:
                writer.write(frame([request[0], 200, 41]))
            elif len(seen) == 2:
                writer.write(frame([request[0], 503, ["no_leader", "no leader"]]))
            elif len(seen) == 3:
                writer.write(frame([request[0], 504, ["timeout", "unknown"]]))
            else:
                writer.write(frame([request[0], 200, b"old"]))
            await writer.drain()

    async def body():
        async with fake_member(member) as url:
            async with KVClient([url], timeout_s=1, retries=5) as kv:
                kv.backoff.base_s = kv.backoff.cap_s = 0.001
                assert await kv.put("k", b"v") == b"old"
        writes = [r for r in seen if r[1] == 2]
        assert len(writes) == 3
        assert {tuple(r[4:]) for r in writes} == {(41, 1)}  # one session, one sequence
        assert kv.metrics.retries.value(("unavailable",)) == 1
        assert kv.metrics.retries.value(("server_timeout",)) == 1

    run(body)


@pytest.mark.parametrize("misbehaviour", ["garbage", "hang_up_mid_frame", "oversized",
                                          "silence"])
def test_a_member_that_misbehaves_gives_a_typed_error(misbehaviour):
    async def member(reader, writer):
        request = await read_request(reader)
        if misbehaviour == "garbage":
            writer.write((3).to_bytes(4, "big") + b"\xc1\xc1\xc1")
        elif misbehaviour == "hang_up_mid_frame":
            writer.write(frame([request[0], 200, b"x" * 100])[:20])
        elif misbehaviour == "oversized":
            writer.write((1 << 31).to_bytes(4, "big"))
        else:
            await asyncio.sleep(30)
        await writer.drain()

    async def body():
        async with fake_member(member) as url:
            async with KVClient([url], timeout_s=0.3, retries=1) as kv:
                kv.backoff.base_s = kv.backoff.cap_s = 0.001
                started = time.monotonic()
                with pytest.raises(UnavailableError) as caught:
                    await kv.status()
                assert time.monotonic() - started < 5
        why = caught.value.tried[url]
        expected = {"garbage": "protocol error", "hang_up_mid_frame": "closed the connection",
                    "oversized": "protocol error", "silence": "timed out"}[misbehaviour]
        assert expected in why, why

    run(body)


class RecordingTransport:
    """A connection's transport that keeps what is written (a client connection's tests)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        pass


def test_a_connection_times_out_requests_with_one_timer():
    """Requests carry deadlines and one timer per connection expires them: an unanswered
    request fails with TimeoutError, an answered one is settled and forgotten, and the
    timer stops once nothing is pending (no timer per request, none left behind)."""
    from pyraft.kv import client as client_module

    async def body():
        connection = client_module._WireConnection()
        connection.connection_made(RecordingTransport())  # type: ignore[arg-type]
        answered = connection.request(["status"], 30.0)
        silent = connection.request(["status"], 0.05)
        assert connection._sweeper is not None and len(connection.pending) == 2
        connection.data_received(frame([1, 200, b"ok"]))
        assert await answered == (200, b"ok") and list(connection.pending) == [2]
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(silent, 5.0)
        assert connection.pending == {}
        await asyncio.sleep(2 * client_module._SWEEP_S)
        assert connection._sweeper is None  # nothing pending: no timer runs
        again = connection.request(["status"], 30.0)
        assert connection._sweeper is not None
        connection.close()  # fails what is pending and stops the timer
        assert connection._sweeper is None
        with pytest.raises(ConnectionError):
            await again

    asyncio.run(body())


def test_a_burst_of_requests_is_written_in_pieces_of_flush_requests():
    """A connection writes its requests at the end of the loop turn, or as soon as
    ``FLUSH_REQUESTS`` wait: 150 requests made in one turn leave in writes of 64 and 64
    before the turn ends and 22 at its end, each request once and in order; fewer than 64
    leave in one write."""
    from pyraft.kv import client as client_module

    def requests_in(data: bytes) -> list[int]:
        return [msgpack.unpackb(body)[0] for body in FrameReader(1 << 20).feed(data)]

    async def body():
        connection = client_module._WireConnection()
        transport = RecordingTransport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        limit = client_module.FLUSH_REQUESTS
        assert limit == 64
        for _ in range(150):
            connection.request(["status"], 30.0)
        assert [len(requests_in(data)) for data in transport.written] == [64, 64]
        await asyncio.sleep(0)  # the turn ends: the rest leaves in one write
        assert [len(requests_in(data)) for data in transport.written] == [64, 64, 22]
        sent = [i for data in transport.written for i in requests_in(data)]
        assert sent == list(range(1, 151))
        transport.written.clear()
        for _ in range(limit - 1):
            connection.request(["status"], 30.0)
        assert transport.written == []
        await asyncio.sleep(0)
        assert [len(requests_in(data)) for data in transport.written] == [limit - 1]
        connection.close()

    asyncio.run(body())


def test_addresses_are_checked_before_any_request():
    with pytest.raises(InvalidURLError):
        KVClient(["pyraft://127.0.0.1"])  # no port
    with pytest.raises(InvalidURLError):
        KVClient(["pyraft://127.0.0.1:1", "http://127.0.0.1:2"])  # two protocols
    with pytest.raises(ValueError):
        KVClient(["pyraft://127.0.0.1:1"], sessions_max=0)


# ---- pyraft node --client, as an operator starts it ------------------------------------------
def test_pyraft_node_serves_the_binary_protocol_with_its_documented_flag(tmp_path):
    peers = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3)}
    http = {m: f"127.0.0.1:{free_port()}" for m in peers}
    client = {m: f"127.0.0.1:{free_port()}" for m in peers}
    processes = [subprocess.Popen(
        [sys.executable, "-m", "pyraft", "node", "--id", str(m), "--listen", peers[m],
         "--http", http[m], "--client", client[m], "--data", str(tmp_path / f"n{m}"),
         "--peers", ",".join(f"{i}={a}" for i, a in peers.items()), "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for m in peers]

    async def scenario():
        urls = [f"pyraft://{client[m]}" for m in (3, 2, 1)]
        async with KVClient(urls, timeout_s=1.0, retries=60, deadline_s=20) as kv:
            kv.backoff.cap_s = 0.2
            assert await kv.put("greeting", b"hello") is None
            leader = (await kv.status(kv.leader_url))["id"]
            assert kv.leader_url == f"pyraft://{client[leader]}"
            await asyncio.gather(*(kv.put(f"k{i}", b"v") for i in range(100)))
            for member in peers:  # every member answers, followers redirect the writes
                async with KVClient([f"pyraft://{client[member]}"], timeout_s=1.0, retries=60,
                                    deadline_s=20) as single:
                    assert await single.get("greeting") == b"hello"
                    assert await single.put(f"from-{member}", b"x") is None
                    if member != leader:
                        assert single.metrics.redirects.value() >= 1
                        assert single.leader_url == f"pyraft://{client[leader]}"
            # the HTTP API of the same members sees the same data
            async with KVClient([f"http://{http[m]}" for m in peers], timeout_s=1.0) as web:
                assert await web.get("k99") == b"v"

    try:
        asyncio.run(asyncio.wait_for(scenario(), 40))
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _node_args(*flags: str):
    import argparse

    from pyraft.kv import node

    parser = argparse.ArgumentParser()
    node.add_arguments(parser)
    return parser.parse_args(["--id", "1", "--listen", "127.0.0.1:7001", "--http",
                              "127.0.0.1:8001", *flags])


def test_the_client_flags_are_announced_in_the_metadata_or_refused_by_name():
    from pyraft.errors import ConfigError
    from pyraft.kv import node

    config = node.build_config(_node_args("--client", "127.0.0.1:9001"))
    assert config.metadata == {"http": "127.0.0.1:8001", "client": "127.0.0.1:9001"}
    config = node.build_config(_node_args("--client", "0.0.0.0:9001", "--advertise-client",
                                          "10.0.0.1:9001"))
    assert config.metadata["client"] == "10.0.0.1:9001"
    assert "client" not in node.build_config(_node_args()).metadata  # HTTP only
    for flags, named in [(("--client", "0.0.0.0:9001"), "--client"),
                         (("--advertise-client", "10.0.0.1:9001"), "--advertise-client"),
                         (("--client", "nowhere"), "--client"),
                         (("--client", "127.0.0.1:9001", "--client-peers", "2=x"),
                          "--client-peers")]:
        with pytest.raises(ConfigError) as caught:
            node.build_config(_node_args(*flags))
        assert caught.value.field == named, flags


def test_the_binary_protocol_over_tls_and_a_client_that_does_not_trust_it():
    authority, stranger = trustme.CA(), trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server)
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    distrusting = ssl.create_default_context()
    stranger.configure_trust(distrusting)

    async def body():
        async with wire_cluster(MemoryNetwork(), ssl_context=server) as (members, urls):
            await leader_of(members)
            async with KVClient(list(urls.values()), timeout_s=2, ssl=trusting) as kv:
                assert await kv.put("secret", b"v") is None
                assert await kv.get("secret") == b"v"
            async with KVClient(list(urls.values()), timeout_s=2, ssl=distrusting) as kv:
                with pytest.raises(TlsError):
                    await kv.put("secret", b"w")

    run(body)


def test_writes_go_on_through_a_new_leader_each_applied_once():
    """Counters incremented by compare-and-set while the leader stops: the writes in flight
    are retried (same sequences) through the new leader, every increment succeeds once and
    the totals match."""
    writers, increments = 8, 12

    async def body():
        async with wire_cluster(MemoryNetwork()) as (members, urls):
            leader = await leader_of(members)
            async with KVClient(list(urls.values()), timeout_s=0.5, retries=200,
                                deadline_s=8, sessions_max=writers) as kv:
                kv.backoff.cap_s = 0.05

                async def count(writer: int) -> None:
                    key = f"counter-{writer}"
                    for value in range(increments):
                        expected = None if value == 0 else str(value)
                        assert await kv.cas(key, expected, str(value + 1)) == (
                            True, str(value + 1).encode())
                        if writer == 0 and value == increments // 2:
                            await leader.stop()  # while the others are in flight

                await asyncio.gather(*(count(w) for w in range(writers)))
                survivor = await leader_of([m for m in members if m is not leader])
                assert survivor is not leader
                retried = sum(kv.metrics.retries.values.values())
                assert retried >= 1, "the leader's stop interrupted no write"
                for writer in range(writers):
                    assert await kv.get(f"counter-{writer}") == str(increments).encode()

    run(body)


def test_an_answer_lost_after_the_write_applied_is_answered_from_the_session_on_retry():
    """A proxy forwards a compare-and-set to the leader, then hangs up instead of passing on
    its answer (applied, answer lost). The client retries it with the same sequence on a new
    connection: the member answers from the session's cache (ok), where applying it again
    would answer not ok."""
    lost: list[bool] = []
    armed: list[bool] = []  # from the CAS on (the session's answer passes)

    async def body():
        async with wire_cluster(MemoryNetwork()) as (members, urls):
            leader = await leader_of(members)
            host, port = urls[leader.id].removeprefix("pyraft://").rsplit(":", 1)
            pumps: set[asyncio.Task] = set()

            async def pump(reader, writer, frames: FrameReader, drop_answer: bool) -> None:
                try:
                    while data := await reader.read(65536):
                        if drop_answer and armed and not lost and frames.feed(data):
                            lost.append(True)  # an answer to the first CAS: hang up
                            break
                        writer.write(data)
                finally:
                    writer.close()

            async def proxy(client_reader, client_writer):
                server_reader, server_writer = await asyncio.open_connection(host, int(port))
                for task in (pump(client_reader, server_writer, FrameReader(1 << 20), False),
                             pump(server_reader, client_writer, FrameReader(1 << 20), True)):
                    pumps.add(asyncio.ensure_future(task))

            listener = await asyncio.start_server(proxy, "127.0.0.1", 0)
            try:
                address = f"pyraft://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
                async with KVClient([address], timeout_s=2, retries=5) as kv:
                    kv.backoff = Backoff(0.001, 0.01)
                    await kv.open_session()
                    armed.append(True)
                    assert await kv.cas("n", None, "1") == (True, b"1")
                    assert lost == [True]  # the first answer was lost
                    assert kv.metrics.retries.value(("connection",)) == 1
                    assert await kv.cas("n", "1", "2") == (True, b"2")
            finally:
                listener.close()
                for task in pumps:
                    task.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
                await listener.wait_closed()
            assert leader.state_machine.data[b"n"] == b"2"

    run(body)
