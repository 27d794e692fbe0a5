"""The key-value HTTP API and its client, against a 3-member in-process cluster.

The members talk over the in-memory transport; each serves HTTP on a real socket on
127.0.0.1. Each test fails on an unhandled loop error and on tasks left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

import aiohttp
import pytest

from pyraft.cluster import RaftCluster
from pyraft.config import ClusterConfig
from pyraft.kv import KVStateMachine
from pyraft.kv.client import KVClient, RequestError, SessionExpiredError, UnavailableError
from pyraft.kv.http import bound_port, serve
from pyraft.testing.cluster import settled_leader
from pyraft.transport.memory import MemoryNetwork

PEERS = {m: f"127.0.0.1:{7200 + m}" for m in (1, 2, 3)}


def run(coroutine_function) -> None:
    errors: list = []

    async def body():
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        await asyncio.wait_for(coroutine_function(), 12)
        current = asyncio.current_task()
        leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        assert not leaked, leaked

    asyncio.run(body())
    assert not errors, errors


@contextlib.asynccontextmanager
async def kv_cluster(network, cluster_options=None, **options):
    """Three members with their HTTP servers; yields (members, {id: "http://host:port"});
    ``cluster_options`` go to each member's ClusterConfig, ``options`` to ``serve``."""
    sockets = {}
    for member in PEERS:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sockets[member] = sock
    http = {m: f"127.0.0.1:{s.getsockname()[1]}" for m, s in sockets.items()}
    members = [
        RaftCluster(ClusterConfig(member_id=m, tick_ms=5, peers=PEERS,
                                  metadata={"http": http[m]}, **(cluster_options or {})),
                    transport=network.transport(m), state_machine=KVStateMachine())
        for m in PEERS
    ]
    runners = []
    try:
        for member in members:
            await member.start()
        for member in members:
            runners.append(await serve(member, member.state_machine, sock=sockets[member.id],
                                       http_addresses=http, request_timeout_s=1.0, **options))
        assert [bound_port(r) for r in runners] == [s.getsockname()[1] for s in
                                                    sockets.values()]
        yield members, {m: f"http://{a}" for m, a in http.items()}
    finally:
        for runner in runners:
            await runner.cleanup()
        for member in members:
            await member.stop()
        for sock in sockets.values():
            sock.close()


async def leader_of(members, timeout=5.0):
    async def wait():
        while True:
            leaders = [m for m in members if m.is_leader]
            if leaders:
                return max(leaders, key=lambda m: m.term)
            await asyncio.sleep(0.005)

    return await asyncio.wait_for(wait(), timeout)


def test_writes_reads_cas_and_status_through_any_member():
    async def body():
        async with kv_cluster(MemoryNetwork()) as (members, urls):
            leader = await leader_of(members)
            follower = next(m for m in members if m is not leader)
            # the client starts at a follower: it follows the redirect and keeps the leader
            async with KVClient([urls[follower.id]], timeout_s=2) as kv:
                assert await kv.put("k", b"v1") is None
                assert kv.leader_url == urls[leader.id]
                assert await kv.put("k", "v2") == b"v1"
                for member in members:
                    single = KVClient([urls[member.id]], timeout_s=2)
                    async with single:
                        assert await single.get("k") == b"v2"  # barrier: any member
                        assert await single.get("k", consistency="lease") == b"v2"
                        assert await single.get("nope") is None
                await follower.apply_read_barrier(timeout=2)
                assert await kv.cas("k", "wrong", "v3") == (False, b"v2")
                assert await kv.cas("k", b"v2", b"\xff\x00") == (True, b"\xff\x00")
                assert await kv.cas("fresh", None, "x") == (True, b"x")
                assert await kv.delete("fresh") == b"x"
                assert await kv.delete("fresh") is None
                assert await kv.get("fresh", consistency="local") is None
                status = await kv.status(urls[leader.id])
                assert status["id"] == leader.id and status["role"] == "leader"
                assert status["leader"] == leader.id
                assert status["leader_http"] == urls[leader.id].removeprefix("http://")
                assert status["commit"] >= 1 and status["applied"] <= status["commit"]
                assert [m["id"] for m in status["members"]] == [1, 2, 3]
                assert all(m["voter"] and m["lag"] is not None for m in status["members"])
                assert {m["http"] for m in status["members"]} == {
                    u.removeprefix("http://") for u in urls.values()}
                follower_status = await kv.status(urls[follower.id])
                assert follower_status["role"] == "follower" and "lag" not in \
                    follower_status["members"][0]

    run(body)


def test_a_write_in_flight_when_the_leader_stops_is_answered_as_of_unknown_outcome():
    """The leader stops with a PUT in flight (its entry sent, the answers lost): the HTTP
    answer is 504 "may or may not be applied", not 503 "not applied" (a later leader may
    commit the entry: ``test_a_write_in_flight_when_its_member_stops_has_an_unknown_outcome``
    shows one doing so)."""
    async def body():
        network = MemoryNetwork()
        async with kv_cluster(network, {"graceful_shutdown_timeout_ms": 100}) as (members,
                                                                                  urls):
            leader = await leader_of(members)
            followers = [m for m in members if m is not leader]
            network.blocked |= {(f.id, leader.id) for f in followers}  # answers are lost
            async with aiohttp.ClientSession() as http:
                async def put():
                    async with http.put(urls[leader.id] + "/v1/kv/a", data=b"1") as response:
                        return response.status, await response.json()

                request = asyncio.ensure_future(put())
                await asyncio.sleep(0.1)
                assert not request.done()
                await leader.stop()
                status, answer = await request
            assert status == 504, answer
            assert "may or may not be applied" in answer["message"], answer
            assert "stopped with the command in flight" in answer["message"], answer
            network.heal()

    run(body)


def test_raw_http_errors_redirects_and_exactly_once():
    async def body():
        async with kv_cluster(MemoryNetwork(), value_bytes_max=16) as (members, urls):
            # settled: every member's info recorded, so no info-only configuration entry
            # commits while the bad requests below must leave the commit index alone
            leader = await settled_leader(members)
            follower = next(m for m in members if m is not leader)
            lead, other = urls[leader.id], urls[follower.id]
            async with aiohttp.ClientSession() as http:
                async def call(method, url, **kwargs):
                    async with http.request(method, url, allow_redirects=False,
                                            **kwargs) as response:
                        return response.status, response.headers, await response.read()

                # a follower redirects writes and lease reads to the leader's HTTP address
                status, headers, _ = await call("PUT", other + "/v1/kv/a?x=1", data=b"1")
                assert status == 307 and headers["Location"] == lead + "/v1/kv/a?x=1"
                status, headers, _ = await call("GET", other + "/v1/kv/a?consistency=lease")
                assert status == 307 and headers["Location"].startswith(lead)
                # the member's own session numbers writes without headers
                assert (await call("PUT", lead + "/v1/kv/a", data=b"1"))[0] == 204
                status, _, body = await call("PUT", lead + "/v1/kv/a", data=b"2")
                assert (status, body) == (200, b"1")
                status, headers, body = await call("GET", other + "/v1/kv/a")
                assert (status, body) == (200, b"2")
                assert headers["Content-Type"] == "application/octet-stream"
                # bad requests: nothing proposed
                commit = leader.commit_index
                for method, path, kwargs, expected in [
                    ("GET", "/v1/kv/a?consistency=eventual", {}, 400),
                    ("PUT", "/v1/kv/a", {"data": b"x" * 17}, 413),
                    ("POST", "/v1/kv/a/cas", {"data": b"{not json"}, 400),
                    ("POST", "/v1/kv/a/cas", {"json": {"expected": 1, "new": "x"}}, 400),
                    ("POST", "/v1/kv/a/cas", {"json": {"new": "x" * 17}}, 413),
                    ("PUT", "/v1/kv/a", {"data": b"x", "headers": {"X-Client-Id": "1"}}, 400),
                    ("PUT", "/v1/kv/a", {"data": b"x", "headers": {
                        "X-Client-Id": "one", "X-Request-Seq": "1"}}, 400),
                ]:
                    status, headers, body = await call(method, lead + path, **kwargs)
                    assert status == expected, (path, status, body)
                    assert headers["Content-Type"].startswith("application/json")
                assert leader.commit_index == commit
                # concurrent writes on the member's own session are all applied
                answers = await asyncio.gather(*[
                    call("PUT", lead + f"/v1/kv/c{i % 3}", data=b"%d" % i) for i in range(30)])
                assert all(status in (200, 204) for status, _, _ in answers)
                assert sum(status == 204 for status, _, _ in answers) == 3
                assert leader.state_machine.data[b"a"] == b"2"

                # exactly-once: the same X-Request-Seq sent twice applies once
                status, _, body = await call("POST", lead + "/v1/sessions")
                client = json.loads(body)["client_id"]
                assert status == 200 and client >= 1

                async def put(value, seq):
                    return await call("PUT", lead + "/v1/kv/n", data=value, headers={
                        "X-Client-Id": str(client), "X-Request-Seq": str(seq)})

                assert (await put(b"1", 1))[0] == 204
                assert (await put(b"2", 2))[2] == b"1"
                assert (await put(b"2", 2))[2] == b"1"  # the cached answer, not b"2"
                assert (await put(b"3", 3))[2] == b"2"  # so the retry changed nothing
                assert (await put(b"9", 1))[0] == 409  # below the last sequence
                status, _, body = await call("PUT", lead + "/v1/kv/n", data=b"x", headers={
                    "X-Client-Id": "999999", "X-Request-Seq": "1"})
                assert status == 410 and b"session_expired" in body
                status, _, body = await call("POST", lead + "/v1/kv/n/cas",
                                             json={"expected": "3", "new": "4"})
                assert status == 200 and json.loads(body) == {
                    "ok": True, "value": "4", "encoding": "utf-8"}
                assert (await call("GET", lead + "/v1/nowhere"))[0] == 404

    run(body)


def test_no_leader_answers_503_and_the_client_gives_up():
    async def body():
        network = MemoryNetwork()
        async with kv_cluster(network) as (members, urls):
            leader = await leader_of(members)
            follower = next(m for m in members if m is not leader)
            network.isolate(follower.id)

            async def leaderless():
                while follower.leader is not None:
                    await asyncio.sleep(0.005)

            await asyncio.wait_for(leaderless(), 5)
            async with aiohttp.ClientSession() as http:
                for method, path in [("PUT", "/v1/kv/a"), ("GET", "/v1/kv/a"),
                                     ("POST", "/v1/sessions")]:
                    async with http.request(method, urls[follower.id] + path,
                                            data=b"v") as response:
                        assert response.status == 503, path
                        assert response.headers["Retry-After"] == "1"
                        assert (await response.json())["error"] == "no_leader"
            async with KVClient([urls[follower.id]], retries=2) as kv:
                with pytest.raises(UnavailableError):
                    await kv.put("a", b"v")
                assert await kv.get("missing", consistency="local") is None
            network.heal()

    run(body)


def test_client_errors_are_typed():
    async def body():
        async with kv_cluster(MemoryNetwork(), value_bytes_max=4) as (members, urls):
            await leader_of(members)
            async with KVClient(list(urls.values())) as kv:
                with pytest.raises(RequestError) as info:
                    await kv.put("k", b"too long")
                assert info.value.status == 413 and isinstance(info.value, ValueError)
                with pytest.raises(RequestError):
                    await kv.get("k", consistency="sometimes")
                await kv.put("k", b"ok")
                kv.client_id = 987654  # a session the cluster never opened
                with pytest.raises(SessionExpiredError):
                    await kv.put("k", b"no")
                assert await kv.put("k", b"new") == b"ok"  # a new session was opened
                assert kv.client_id != 987654

    run(body)
