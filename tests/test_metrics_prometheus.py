"""The prometheus_client adapter: a member's metrics registered in an application's
``CollectorRegistry`` give the same families, series and values as pyraft's own text.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys

import pytest

from pyraft.metrics import Metrics, PrometheusCollector, register_prometheus, render_prometheus
from pyraft.testing.cluster import leader_of, memory_cluster, run_on_fresh_loop
from pyraft.transport.memory import MemoryNetwork

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

PEERS = {m: f"127.0.0.1:{7500 + m}" for m in (1, 2, 3)}


def samples(text: str, skip_process: bool = True) -> dict:
    """{(sample name, sorted labels): value}, with ``le`` as a number, from either text."""
    out = {}
    for family in text_string_to_metric_families(text):
        if skip_process and family.name.startswith("process_"):
            continue
        for sample in family.samples:
            labels = dict(sample.labels)
            if "le" in labels:
                labels["le"] = float(labels["le"])
            key = (sample.name, tuple(sorted(labels.items())))
            assert key not in out, key
            out[key] = sample.value
    return out


def families(text: str) -> dict[str, str]:
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def test_registered_member_renders_like_pyraft_itself():
    async def body():
        network = MemoryNetwork(through_codec=True)
        async with memory_cluster(network, PEERS) as members:
            leader = await leader_of(members)
            await asyncio.gather(*[leader.replicate(b"c%d" % i) for i in range(20)])
            leader.metrics.leadership_lost.inc(1, ("check-quorum",))
            leader.metrics.http_requests.inc(2, ("/v1/kv/{key}", "PUT", "204"))
            leader.metrics.http_request_seconds.observe(0.003, ("/v1/kv/{key}", "PUT", "204"))
            await leader.stop()  # nothing moves between the two renderings
            registry = prometheus_client.CollectorRegistry()
            collector = register_prometheus(leader, registry)
            theirs = prometheus_client.generate_latest(registry).decode()
            ours = render_prometheus(leader.metrics, leader)
            return collector, registry, theirs, ours

    collector, registry, theirs, ours = run_on_fresh_loop(body, timeout_s=60)
    expected = samples(ours)
    assert samples(theirs) == expected
    assert len(expected) > 100
    assert expected[("pyraft_leadership_lost_total", (("reason", "check-quorum"),))] == 1
    assert expected[("pyraft_http_requests_total",
                     (("method", "PUT"), ("route", "/v1/kv/{key}"), ("status", "204")))] == 2
    assert expected[("pyraft_commit_index", ())] >= 21
    ours_families, theirs_families = families(ours), families(theirs)
    assert {name: kind for name, kind in ours_families.items()
            if not name.startswith("process_")} == theirs_families
    # process metrics stay out by default: the registry may have its own process collector
    assert not any(name.startswith("process_") for name in theirs_families)
    registry.unregister(collector)
    assert prometheus_client.generate_latest(registry) == b""


def test_process_metrics_on_request_and_no_clash_with_a_second_registry():
    metrics = Metrics(opentelemetry=False)
    registry = prometheus_client.CollectorRegistry()
    registry.register(PrometheusCollector(metrics, process=True))
    text = prometheus_client.generate_latest(registry).decode()
    found = {family.name: family for family in text_string_to_metric_families(text)}
    cpu = found["process_cpu_seconds"].samples[0].value  # the parser drops "_total"
    assert 0 < cpu < 10_000 and not math.isnan(cpu)
    assert found["process_open_fds"].samples[0].value > 0
    assert found["process_resident_memory_bytes"].samples[0].value > 2 ** 20
    # a registry like the default one (auto-described, with a process collector) refuses a
    # second "process_*" family; the adapter's default leaves them out and registers there
    default_like = prometheus_client.CollectorRegistry(auto_describe=True)
    prometheus_client.ProcessCollector(registry=default_like)
    with pytest.raises(ValueError, match="Duplicated"):
        default_like.register(PrometheusCollector(metrics, process=True))
    default_like.register(PrometheusCollector(metrics))


def test_without_prometheus_client_the_error_names_the_extra():
    code = ("import sys; sys.modules['prometheus_client'] = None\n"
            "from pyraft.metrics import Metrics, PrometheusCollector\n"
            "try:\n"
            "    PrometheusCollector(Metrics(opentelemetry=False))\n"
            "except ImportError as error:\n"
            "    print(error)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "raftcore[prometheus]" in result.stdout
    assert "prometheus-client" in result.stdout
