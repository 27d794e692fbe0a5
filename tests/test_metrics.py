"""Metrics of a RaftCluster: recorded values, the Prometheus text, GET /metrics over a socket.

Every test fails on an unhandled exception in the event loop and on tasks left running.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from pyraft.metrics import Metrics, render_prometheus, serve_metrics
from pyraft.storage.log import DurableLogStorage
from pyraft.testing.cluster import leader_of, memory_cluster, run_on_fresh_loop
from pyraft.transport.base import TransportCounters
from pyraft.transport.memory import MemoryNetwork

PEERS = {m: f"127.0.0.1:{7300 + m}" for m in (1, 2, 3)}

SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)'
    r'(?:\{(?P<labels>[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*)\})?'
    r' (?P<value>[-+]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|Inf|NaN))$'
)


def run(coroutine_function) -> None:
    run_on_fresh_loop(coroutine_function)


def cluster(network, storage=None):
    return memory_cluster(network, PEERS, storage=storage)


def parse(text: str) -> dict[str, dict[str, str]]:
    """Check the exposition format; return {family: {series line without value: value}}."""
    assert text.endswith("\n")
    helped, typed = set(), {}
    samples: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split(" ")[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram"), line
            typed[name] = kind
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name = match["name"]
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
        assert family in typed and family in helped, line
        if name != family:
            assert typed[family] == "histogram", line
        series = line.rpartition(" ")[0]
        samples.setdefault(family, {})[series] = match["value"]
    return samples


def test_cluster_metrics_record_replication_and_render(tmp_path):
    async def body():
        network = MemoryNetwork(through_codec=True)
        storage = lambda m: DurableLogStorage(tmp_path / f"m{m}")  # noqa: E731
        async with cluster(network, storage=storage) as members:
            leader = await leader_of(members)
            await asyncio.gather(*[leader.replicate(b"command %d" % i) for i in range(50)])
            await leader.replicate_many([b"x"] * 20)
            follower = next(m for m in members if m is not leader)
            await follower.wait_for_commit(leader.commit_index, timeout=5)

            metrics = leader.metrics
            metrics.refresh(leader)
            assert metrics.commit_index.value() == leader.commit_index
            assert metrics.applied_index.value() == leader.applied_index
            assert metrics.term.value() == leader.term
            assert metrics.elections_won.value() >= 1
            assert metrics.elections_started.value() >= metrics.elections_won.value()
            assert metrics.role.value(("leader",)) == 1
            assert metrics.role.value(("follower",)) == 0
            assert metrics.fsync_seconds.count() > 0
            assert metrics.append_entries.count() > 0
            assert metrics.append_entries.total() >= 70
            assert metrics.ready_seconds.count() > 0
            assert metrics.proposal_batch.total() == 70
            assert metrics.proposal_queue_depth.value() == 0
            for other in members:
                if other is not leader:
                    assert metrics.messages_sent.value((other.id,)) > 0
                    assert metrics.messages_received.value((other.id,)) > 0
                    assert metrics.replication_lag.value((other.id,)) >= 0
            assert set(metrics.replication_lag.values) == {
                (m.id,) for m in members if m is not leader}

            follower.metrics.refresh(follower)
            assert follower.metrics.role.value(("follower",)) == 1
            assert follower.metrics.commit_index.value() == follower.commit_index
            assert follower.metrics.replication_lag.values == {}

            samples = parse(render_prometheus(metrics, leader))
            assert samples["pyraft_commit_index"] == {
                "pyraft_commit_index": str(leader.commit_index)}
            assert samples["pyraft_role"]['pyraft_role{role="leader"}'] == "1"
            fsync = samples["pyraft_fsync_seconds"]
            assert int(fsync['pyraft_fsync_seconds_bucket{le="+Inf"}']) \
                == int(fsync["pyraft_fsync_seconds_count"]) > 0
            lags = samples["pyraft_replication_lag_entries"]
            assert len(lags) == 2 and all(key.startswith(
                'pyraft_replication_lag_entries{follower="') for key in lags)

    run(body)


def test_histogram_buckets_are_cumulative_and_labels_escaped():
    metrics = Metrics(opentelemetry=False)
    for value in (0.00005, 0.003, 0.003, 20.0):
        metrics.fsync_seconds.observe(value)
    metrics.snapshots.inc(1, ('we"ird\\kind\n',))
    samples = parse(render_prometheus(metrics))
    fsync = samples["pyraft_fsync_seconds"]
    assert fsync['pyraft_fsync_seconds_bucket{le="0.0001"}'] == "1"
    assert fsync['pyraft_fsync_seconds_bucket{le="0.0025"}'] == "1"
    assert fsync['pyraft_fsync_seconds_bucket{le="0.005"}'] == "3"
    assert fsync['pyraft_fsync_seconds_bucket{le="10.0"}'] == "3"
    assert fsync['pyraft_fsync_seconds_bucket{le="+Inf"}'] == "4"
    assert fsync["pyraft_fsync_seconds_count"] == "4"
    assert float(fsync["pyraft_fsync_seconds_sum"]) == pytest.approx(20.00605)
    assert samples["pyraft_snapshots_total"] == {
        'pyraft_snapshots_total{kind="we\\"ird\\\\kind\\n"}': "1"}
    # families without samples still carry HELP and TYPE
    assert "# TYPE pyraft_snapshot_bytes histogram" in render_prometheus(metrics)


def test_elections_counted_once_per_role_change():
    metrics = Metrics(opentelemetry=False)
    for role in ("follower", "pre-candidate", "candidate", "candidate", "leader", "leader",
                 "follower", "leader"):
        metrics.role_changed(role)
    assert metrics.elections_started.value() == 2  # the last win skipped "candidate"
    assert metrics.elections_won.value() == 2
    assert [metrics.role.value((r,)) for r in ("follower", "candidate", "leader")] == [0, 0, 1]


def test_get_metrics_over_a_socket():
    aiohttp = pytest.importorskip("aiohttp")

    async def body():
        network = MemoryNetwork(through_codec=True)
        async with cluster(network) as members:
            leader = await leader_of(members)
            await leader.replicate(b"hello")
            runner = await serve_metrics(leader, "127.0.0.1", 0)
            try:
                port = runner.addresses[0][1]
                async with aiohttp.ClientSession() as session:
                    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                        assert response.status == 200
                        assert response.headers["Content-Type"].startswith("text/plain")
                        assert "version=0.0.4" in response.headers["Content-Type"]
                        text = await response.text()
            finally:
                await runner.cleanup()
            samples = parse(text)
            assert int(samples["pyraft_commit_index"]["pyraft_commit_index"]) >= 2
            assert float(samples["pyraft_elections_won_total"][
                "pyraft_elections_won_total"]) >= 1

    run(body)


def test_transport_counters_are_exported_when_present():
    class Transport:  # what Metrics.refresh reads of a transport (Transport's properties)
        counters = TransportCounters(sent=5, received=4, dropped=3, connections=2, refused=1,
                                     errors=7)
        peer_bytes_sent: dict[int, int] = {}
        peer_bytes_received: dict[int, int] = {}

    class Fake:  # what Metrics.refresh reads of a RaftCluster
        view = None
        stopped = False
        applied_index = 0
        proposals_queued = 0
        transport = Transport()

    samples = parse(render_prometheus(Metrics(opentelemetry=False), Fake()))
    assert samples["pyraft_transport_sent_total"] == {"pyraft_transport_sent_total": "5"}
    assert samples["pyraft_transport_errors_total"] == {"pyraft_transport_errors_total": "7"}
    assert samples["pyraft_transport_refused_total"] == {"pyraft_transport_refused_total": "1"}


def test_mirrored_to_opentelemetry_when_importable(monkeypatch):
    import sys
    import types

    calls: list = []

    class Instrument:
        def __init__(self, name):
            self.name = name

        def add(self, amount, attributes):
            calls.append(("add", self.name, amount, attributes))

        def record(self, value, attributes):
            calls.append(("record", self.name, value, attributes))

    observables: dict = {}

    class Meter:
        def create_counter(self, name, unit="", description=""):
            return Instrument(name)

        def create_histogram(self, name, unit="", description=""):
            return Instrument(name)

        def create_observable_gauge(self, name, callbacks, unit="", description=""):
            observables[name] = callbacks

        create_observable_counter = create_observable_gauge

    otel_metrics = types.ModuleType("opentelemetry.metrics")
    otel_metrics.get_meter = lambda name: Meter()
    otel_metrics.Observation = lambda value, attributes: (value, attributes)
    package = types.ModuleType("opentelemetry")
    package.metrics = otel_metrics
    monkeypatch.setitem(sys.modules, "opentelemetry", package)
    monkeypatch.setitem(sys.modules, "opentelemetry.metrics", otel_metrics)

    metrics = Metrics()
    metrics.messages_sent.inc(1, (2,))
    metrics.fsync_seconds.observe(0.5)
    metrics.term.set(7)
    # counters are read on collection, not pushed per increment (that is per write)
    assert not [call for call in calls if call[0] == "add"]
    assert list(observables["pyraft_peer_messages_sent_total"][0](None)) == [(1, {"peer": "2"})]
    metrics.messages_sent.inc(2, (2,))
    assert list(observables["pyraft_peer_messages_sent_total"][0](None)) == [(3, {"peer": "2"})]
    assert ("record", "pyraft_fsync_seconds", 0.5, {}) in calls
    assert list(observables["pyraft_term"][0](None)) == [(7, {})]
    assert "pyraft_transport_sent_total" in observables


_SDK_SET_LATER = """
import json
from opentelemetry import metrics as api
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from pyraft.metrics import Metrics

metrics = Metrics(3)  # the global meter: no SDK yet, so the API's proxies
histogram = metrics.fsync_seconds
before = (histogram.otel_proxied, histogram.otel._real_instrument)
histogram.observe(0.25)  # before any SDK: counted here, nothing to forward it to
reader = InMemoryMetricReader()
api.set_meter_provider(MeterProvider(metric_readers=[reader]))
histogram.observe(0.5)
histogram.observe(0.75)
points = [point for resource in reader.get_metrics_data().resource_metrics
          for scope in resource.scope_metrics for metric in scope.metrics
          if metric.name == "pyraft_fsync_seconds" for point in metric.data.data_points]
print(json.dumps({"proxied": before[0], "real_before": before[1] is not None,
                  "count": histogram.count(), "points": [
                      [point.count, point.sum, dict(point.attributes)] for point in points]}))
"""


def test_a_histogram_made_before_the_sdk_reaches_it_once_set():
    # the usual order in a service: pyraft's instruments exist before (or without) an SDK;
    # recordings then go nowhere, and reach the SDK from the moment one is set
    pytest.importorskip("opentelemetry.sdk.metrics")  # the test extra installs it
    import json
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", _SDK_SET_LATER], capture_output=True,
                           text=True, timeout=60, check=True)
    seen = json.loads(child.stdout)
    assert seen["proxied"] is True and seen["real_before"] is False, seen
    assert seen["count"] == 3  # pyraft's own histogram has every recording
    assert seen["points"] == [[2, 1.25, {"member": "3"}]], seen


def test_bytes_per_peer_are_read_from_the_transport():
    class Transport:
        counters = None
        peer_bytes_sent = {2: 1234}
        peer_bytes_received = {2: 99}

    class Cluster:  # what Metrics.refresh reads of a RaftCluster
        transport = Transport()
        view = None
        stopped = False
        applied_index = 0
        proposals_queued = 0

    metrics = Metrics(1)
    metrics.refresh(Cluster())
    samples = parse(render_prometheus(metrics))
    assert samples["pyraft_peer_bytes_sent_total"]['pyraft_peer_bytes_sent_total{peer="2"}'] \
        == "1234"
    assert samples["pyraft_peer_bytes_received_total"][
        'pyraft_peer_bytes_received_total{peer="2"}'] == "99"


def test_leader_gauges_follow_the_leader():
    async def body():
        network = MemoryNetwork(through_codec=True)
        async with cluster(network) as members:
            leader = await leader_of(members)
            followers = [m for m in members if m is not leader]
            for member in members:
                assert member.metrics.is_leader.value() == (1 if member is leader else 0)
            for follower in followers:  # recorded as the Ready said, before any refresh
                await follower.wait_for_commit(leader.commit_index, timeout=5)
                assert follower.metrics.has_leader.value() == 1
            network.isolate(leader.id)
            lonely = leader

            async def stepped_down():
                while lonely.is_leader:
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(stepped_down(), 10)
            samples = parse(render_prometheus(lonely.metrics, lonely))
            assert samples["pyraft_is_leader"] == {"pyraft_is_leader": "0"}
            assert samples["pyraft_has_leader"] == {"pyraft_has_leader": "0"}
            assert samples["pyraft_leadership_lost_total"][
                'pyraft_leadership_lost_total{reason="check-quorum"}'] == "1"
            network.heal()

    run(body)


def test_build_info_names_versions_and_kernels():
    import platform
    from importlib.metadata import version

    import raftcore
    from raftcore.crc import crc32c_implementation

    samples = parse(render_prometheus(Metrics(opentelemetry=False)))
    (series, value), = samples["pyraft_build_info"].items()
    assert value == "1"
    expected = {"version": version("raftcore"), "python": platform.python_version(),
                "python_implementation": platform.python_implementation(),
                "kernels": "python" if raftcore.USE_TWINS else "compiled",
                "crc32c": crc32c_implementation()}
    assert series == "pyraft_build_info{" + ",".join(
        f'{label}="{text}"' for label, text in expected.items()) + "}"


def test_process_stats_from_proc_and_from_the_portable_fallback(tmp_path):
    import os
    import resource
    import sys
    import time

    from pyraft import metrics as metrics_module
    from pyraft.metrics import read_process_stats

    if not os.path.exists("/proc/self/stat"):
        pytest.skip("no /proc here: the fallback test below covers this platform")
    before = os.times()
    stats = read_process_stats()
    after = os.times()
    assert before.user + before.system - 0.02 <= stats["cpu_seconds"] \
        <= after.user + after.system + 0.02
    opened = [open(tmp_path / f"f{i}", "w") for i in range(7)]  # noqa: SIM115
    try:
        # (a descriptor closed by the garbage collector meanwhile is tolerated)
        assert abs(read_process_stats()["open_fds"] - stats["open_fds"] - 7) <= 1
    finally:
        for handle in opened:
            handle.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert 2 ** 20 < stats["resident_memory_bytes"] <= peak + 2 ** 20
    assert stats["virtual_memory_bytes"] >= stats["resident_memory_bytes"]
    assert stats["max_fds"] == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    # a child started now reports a start time of now
    spawned = time.time()
    child = __import__("subprocess").run(
        [sys.executable, "-c", "from pyraft.metrics import read_process_stats as r; "
                               "print(r()['start_time_seconds'])"],
        capture_output=True, text=True, timeout=60, check=True)
    assert spawned - 3 <= float(child.stdout) <= time.time() + 1  # boot time: whole seconds

    fallback = read_process_stats(proc=str(tmp_path / "no-proc"))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    assert fallback["cpu_seconds"] <= usage.ru_utime + usage.ru_stime + 0.02
    assert fallback["cpu_seconds"] >= stats["cpu_seconds"] - 0.02
    assert stats["resident_memory_bytes"] - 2 ** 20 <= fallback["resident_memory_bytes"] \
        <= usage.ru_maxrss * 1024  # the peak
    assert fallback["start_time_seconds"] == metrics_module._IMPORTED_AT
    assert "virtual_memory_bytes" not in fallback
    assert fallback["open_fds"] >= 3  # /dev/fd lists this process's descriptors


def test_process_metrics_rendered_only_once_read():
    metrics = Metrics(opentelemetry=False)
    text = render_prometheus(metrics)
    assert "# TYPE process_cpu_seconds_total counter" in text
    assert "\nprocess_cpu_seconds_total " not in text
    metrics.refresh_process()
    samples = parse(render_prometheus(metrics))
    assert float(samples["process_cpu_seconds_total"]["process_cpu_seconds_total"]) > 0
    assert float(samples["process_open_fds"]["process_open_fds"]) > 0
