"""KVClient metrics (``pyraft.metrics.ClientMetrics``) and the OpenTelemetry mirror checked with
the SDK's ``InMemoryMetricReader``, server side and client side.

Each test builds its own ``MeterProvider`` and hands it over explicitly (the global provider
is never set). The cluster talks over the in-memory transport and serves HTTP on 127.0.0.1;
fake servers on 127.0.0.1 produce 503, 504 and silence. Each test fails on an unhandled loop
error and on tasks left running.
"""

from __future__ import annotations

import asyncio
import sys

import pytest
from aiohttp import web
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import pyraft.cluster.runtime as runtime
from pyraft.kv.client import KVClient, RequestError, UnavailableError
from pyraft.metrics import ClientMetrics, Metrics
from pyraft.testing.cluster import settled_leader
from pyraft.testing.processes import free_port
from pyraft.transport.memory import MemoryNetwork
from tests.kv.test_http import kv_cluster, leader_of, run


def otel() -> tuple[MeterProvider, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    return MeterProvider(metric_readers=[reader]), reader


def collect(reader: InMemoryMetricReader) -> dict:
    """{metric name: (unit, {frozenset(attributes): data point})} of the scope "pyraft"."""
    found: dict = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            assert scope.scope.name == "pyraft"
            for metric in scope.metrics:
                points = {frozenset(p.attributes.items()): p for p in metric.data.data_points}
                found[metric.name] = (metric.unit, points)
    return found


def point(found: dict, name: str, **attributes):
    return found[name][1][frozenset(attributes.items())]


def test_client_and_server_instruments_through_the_opentelemetry_sdk(monkeypatch):
    puts = 5
    provider, reader = otel()
    # every RaftCluster built in this test records into ``provider`` (restored afterwards)
    monkeypatch.setattr(runtime, "Metrics",
                        lambda member, **_options: Metrics(member, meter_provider=provider))

    async def body():
        async with kv_cluster(MemoryNetwork(), value_bytes_max=16) as (members, urls):
            leader = await settled_leader(members)  # no info-only entry comes later
            follower = next(m for m in members if m is not leader)
            metrics = ClientMetrics(meter_provider=provider)
            async with KVClient([urls[follower.id]], timeout_s=2, metrics=metrics) as kv:
                await kv.open_session()  # at the follower: one redirect to the leader
                applied_before = leader.applied_index
                for i in range(puts):
                    await kv.put("k", b"v%d" % i)
                assert await kv.get("absent") is None
                assert await kv.cas("k", b"wrong", b"x") == (False, b"v%d" % (puts - 1))
                with pytest.raises(RequestError):
                    await kv.put("k", b"x" * 17)
                for _ in range(400):  # every member applies the puts (and the refused cas)
                    if all(m.applied_index == leader.applied_index for m in members):
                        break
                    await asyncio.sleep(0.005)
                found = collect(reader)
                assert metrics.render_prometheus().count(
                    'pyraft_client_requests_total{operation="put",outcome="ok"} 5') == 1
            # client side
            assert point(found, "pyraft_client_requests_total", operation="put",
                         outcome="ok").value == puts
            assert point(found, "pyraft_client_requests_total", operation="get",
                         outcome="negative").value == 1
            assert point(found, "pyraft_client_requests_total", operation="cas",
                         outcome="negative").value == 1
            assert point(found, "pyraft_client_requests_total", operation="put",
                         outcome="request_error").value == 1
            assert point(found, "pyraft_client_requests_total", operation="open_session",
                         outcome="ok").value == 1
            unit, _ = found["pyraft_client_request_seconds"]
            assert unit == "s"
            latency = point(found, "pyraft_client_request_seconds", operation="put")
            assert latency.count == puts + 1 and latency.sum > 0
            assert point(found, "pyraft_client_redirects_total").value == 1
            # never added to: read as 0 (counters are observed totals, as in Prometheus)
            assert point(found, "pyraft_client_leader_changes_total").value == 0
            # server side: one series per member, told apart by the member attribute
            applied = found["pyraft_applied_index"][1]
            for member in members:
                key = frozenset({"member": str(member.id)}.items())
                assert applied[key].value == member.applied_index
            # the puts and the cas were applied (the too-big put never proposed)
            assert leader.applied_index - applied_before == puts + 1
            assert point(found, "pyraft_role", member=str(leader.id), role="leader").value == 1
            assert point(found, "pyraft_role", member=str(follower.id),
                         role="follower").value == 1
            assert point(found, "pyraft_term", member=str(leader.id)).value == leader.term
            assert point(found, "pyraft_elections_won_total", member=str(leader.id)).value >= 1
            assert found["pyraft_fsync_seconds"][0] == "s"
            assert point(found, "pyraft_fsync_seconds", member=str(leader.id)).count >= 1
            assert point(found, "pyraft_peer_messages_sent_total", member=str(leader.id),
                         peer=str(follower.id)).value > 0
            batches = point(found, "pyraft_proposal_batch_size", member=str(leader.id))
            assert batches.sum >= puts + 1  # the session, the puts and the cas

    try:
        run(body)
    finally:
        provider.shutdown()


async def fake_member(statuses: list[int]):
    """An HTTP server on 127.0.0.1 that answers GET /v1/kv/k with ``statuses`` in turn, then
    200 ``b"v"``; returns (url, runner)."""
    answers = iter(statuses)

    async def handler(_request):
        status = next(answers, 200)
        if status == 200:
            return web.Response(body=b"v")
        return web.json_response({"error": "busy", "message": "try again"}, status=status)

    app = web.Application()
    app.router.add_get("/v1/kv/k", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return f"http://127.0.0.1:{port}", runner


def test_retries_by_reason_and_server_timeouts():
    async def body():
        url, runner = await fake_member([503, 504, 504])
        try:
            metrics = ClientMetrics(opentelemetry=False)
            async with KVClient([url], timeout_s=2, retries=5, metrics=metrics) as kv:
                assert await kv.get("k") == b"v"
        finally:
            await runner.cleanup()
        assert metrics.retries.value(("unavailable",)) == 1
        assert metrics.retries.value(("server_timeout",)) == 2
        assert metrics.timeouts.value(("get", "server")) == 2
        assert metrics.timeouts.value(("get", "client")) == 0
        assert metrics.requests.value(("get", "ok")) == 1
        assert metrics.request_seconds.count(("get",)) == 1

    run(body)


def test_client_timeouts_and_unavailable_outcome():
    """A member that accepts and never answers: each attempt times out (outcome unknown)."""
    async def body():
        held: list = []

        async def silent(reader, writer):
            held.append(writer)
            await reader.read()  # until the client gives up and closes

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        metrics = ClientMetrics(opentelemetry=False)
        try:
            async with KVClient([f"127.0.0.1:{port}"], timeout_s=0.3, retries=1,
                                metrics=metrics) as kv:
                with pytest.raises(UnavailableError):
                    await kv.get("k")
        finally:
            server.close()
            for writer in held:
                writer.close()
            await server.wait_closed()
        assert metrics.timeouts.value(("get", "client")) == 2
        assert metrics.retries.value(("timeout",)) == 1
        assert metrics.requests.value(("get", "unavailable")) == 1
        text = metrics.render_prometheus()
        assert 'pyraft_client_timeouts_total{operation="get",side="client"} 2' in text
        assert 'pyraft_client_request_seconds_count{operation="get"} 1' in text

    run(body)


def test_connection_failures_and_cancellation_are_counted():
    async def body():
        metrics = ClientMetrics(opentelemetry=False)
        closed = f"127.0.0.1:{free_port()}"  # nothing listens there
        async with KVClient([closed], timeout_s=1, retries=2, metrics=metrics) as kv:
            with pytest.raises(UnavailableError):
                await kv.delete("k")  # the session cannot even be opened
            task = asyncio.ensure_future(kv.get("k"))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert metrics.retries.value(("connection",)) == 2
        assert metrics.requests.value(("open_session", "unavailable")) == 1
        assert metrics.requests.value(("delete", "unavailable")) == 1
        assert metrics.requests.value(("get", "cancelled")) == 1
        with pytest.raises(ValueError):
            await kv.get("a/b")  # rejected before sending: not a request
        assert sum(metrics.requests.values.values()) == 3

    run(body)


def test_leader_changes_seen_by_the_client():
    async def body():
        async with kv_cluster(MemoryNetwork()) as (members, urls):
            leader = await leader_of(members)
            metrics = ClientMetrics(opentelemetry=False)
            async with KVClient(list(urls.values()), timeout_s=2, metrics=metrics) as kv:
                await kv.put("k", b"1")
                assert kv.leader_url == urls[leader.id]
                assert metrics.leader_changes.value() == 0
                successor = next(m for m in members if m is not leader)
                await leader.transfer_leadership(successor.id, timeout=5)
                for _ in range(400):  # the old leader learns that it no longer leads
                    if not leader.is_leader and successor.is_leader:
                        break
                    await asyncio.sleep(0.005)
                await kv.put("k", b"2")
                assert kv.leader_url == urls[successor.id]
                assert metrics.leader_changes.value() == 1

    run(body)


def test_the_mirror_is_a_no_op_without_opentelemetry(monkeypatch):
    """Without the API package (an import of it fails) nothing is mirrored; recording works."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    server, client = Metrics(1), ClientMetrics()
    assert all(i.otel is None for i in server.instruments + client.instruments)
    server.messages_sent.inc(1, (2,))
    client.request_finished("get", "ok", 0.01)
    assert server.messages_sent.value((2,)) == 1
    assert client.requests.value(("get", "ok")) == 1
    with pytest.raises(ImportError):
        ClientMetrics(meter_provider=object())


def test_a_client_rejects_metrics_of_the_wrong_type():
    with pytest.raises(TypeError, match="ClientMetrics"):
        KVClient(["127.0.0.1:1"], metrics=Metrics(opentelemetry=False))
