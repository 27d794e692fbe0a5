"""Bench loads follow a new leader and report leader changes (issue 16).

Real member processes on 127.0.0.1: a load whose leader resigns (engine API, load inside the
leader's process) or is killed (HTTP API, separate load generator) goes on through the next
leader, and every load result carries ``leader_changes``, shown in the printed table.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading

from pyraft.bench import elections, report, workloads
from pyraft.testing.processes import free_port, leader, wait_for


def _side_call(member, op: str, **fields) -> dict:
    """``op`` on a second control connection (the first one is busy with the load)."""
    with socket.create_connection(member.control.getpeername(), timeout=30) as side:
        side.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
        return json.loads(side.makefile("r").readline())


def test_a_measured_load_follows_a_discarded_warmup_of_the_same_shape():
    """As before every peer's load: a quarter of the duration (at most a second) of the same
    load runs first, and neither its writes nor its CPU are in the result."""
    with workloads.member_cluster(None) as (_, members):
        commit = leader(members).call("status")["commit"]
        cold = workloads._load(members, 1.0, size=16, inflight=4, warmup=False)
        after_cold = leader(members).call("status")["commit"]
        warm = workloads._load(members, 1.0, size=16, inflight=4)
        after_warm = leader(members).call("status")["commit"]
        counted = workloads._load(members, 1.0, size=16, inflight=4, count=50)
        after_counted = leader(members).call("status")["commit"]
    assert (cold["warmup_s"], warm["warmup_s"], counted["warmup_s"]) == (0.0, 0.25, 0.0)
    assert after_cold - commit == cold["writes"]  # memory members: one entry per write
    assert after_warm - after_cold - warm["writes"] > 100  # the warm-up's, not counted
    assert after_counted - after_warm == counted["writes"] == 50
    for result in (cold, warm, counted):
        workloads.check_result(result)


def test_an_engine_load_goes_on_through_the_next_leader():
    with workloads.member_cluster(None) as (_, members):
        first = leader(members)
        start = first.call("status")["commit"]
        box: dict = {}

        def run() -> None:
            try:
                # no warm-up: the resignation below is meant for the measured load
                box["result"] = workloads._load(members, 5.0, size=16, inflight=16,
                                                warmup=False)
            except Exception as error:  # reported by the assertions below
                box["error"] = error

        thread = threading.Thread(target=run)
        thread.start()
        try:
            # the load is running on the first leader: then it resigns
            wait_for(lambda: _side_call(first, "status")["commit"] > start + 200, timeout=30)
            assert _side_call(first, "resign")["ok"]
        finally:
            thread.join(120)
        assert "error" not in box, box.get("error")
        result = box["result"]
        segments = result["segments"]
        assert len(segments) >= 2, segments
        assert segments[0]["member"] == first.id
        assert segments[0]["stopped_by"].startswith("NotLeaderError")
        assert segments[-1]["member"] != first.id and segments[-1]["writes"] > 0
        assert result["leader_changes"] >= 1
        assert result["writes"] == sum(s["writes"] for s in segments)
        # the lost lead costs at most the calls in flight, not a flood of NotLeaderErrors
        assert result["errors"] <= 16 * len(segments)
        workloads.check_result(result)


def test_the_report_gives_leader_changes_per_load(tmp_path):
    plan = workloads.Plan(duration_s=1.0)
    plan.throughput = [{"mode": workloads.MEMORY, "api": "engine", "size": 16, "inflight": 4}]
    labels: list[str] = []
    out = workloads.engine_workloads(plan, workloads.MEMORY, str(tmp_path), labels.append)
    (result,) = out["throughput"]
    assert labels == ["engine memory 16 B x4"]
    # a new cluster's first election happens before the load: not a change during it
    assert result["leader_changes"] == 0
    assert result["writes"] > 0
    result = {**result, "leader_changes": 2}  # as a load that lived through two elections
    printed = report.summary({"cluster": {"throughput": [result]}})
    header, _, row = printed.splitlines()[:3]
    assert header.split()[-2:] == ["leader", "changes"]
    assert row.split()[-1] == "2"
    assert "engine memory 16 B x4: 2" in printed
    path = report.write_json({"cluster": {"throughput": [result]}}, str(tmp_path))
    with open(path) as f:
        assert json.load(f)["cluster"]["throughput"][0]["leader_changes"] == 2


def test_the_http_load_generator_follows_the_leader_after_a_kill(tmp_path):
    peers = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3)}
    http = {m: f"127.0.0.1:{free_port()}" for m in peers}
    nodes = [elections.NodeProcess(m, peers, http, str(tmp_path / f"node{m}")).start()
             for m in peers]
    generator = None
    try:
        first, _ = elections.wait_leader(nodes, 60)
        urls = ",".join(n.url for n in nodes)
        generator = subprocess.Popen(
            [sys.executable, "-m", "pyraft.bench.loadgen", "--urls", urls, "--size", "16",
             "--inflight", "8", "--duration-s", "6", "--request-timeout-s", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: (elections.status(first) or {}).get("commit", 0) > 100, timeout=30)
        first.kill()
        out, err = generator.communicate(timeout=180)
        assert generator.returncode == 0, err[-2000:]
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        if generator is not None and generator.poll() is None:
            generator.kill()
            generator.wait(10)
        for node in nodes:
            node.stop()
    assert result["leader_changes"] is not None and result["leader_changes"] >= 1
    # writes went on after the kill: the last seconds of the run saw completions
    late = sum(count for t, count in result["series"] if t >= result["elapsed_s"] - 3.0)
    assert late > 0, result["series"]
    assert result["errors"] < result["writes"]


def test_segments_of_a_load_merge_into_one_result():
    from pyraft.bench.stats import make_result

    def part(latencies: list[float], elapsed: float) -> dict:
        return make_result(system="pyraft", version="0", mode="memory",
                           workload={"kind": "closed", "api": "engine", "size": 16,
                                     "inflight": 4, "rate": None, "duration_s": 4.0,
                                     "members": 3},
                           writes=len(latencies), errors=1, elapsed_s=elapsed,
                           latencies_s=latencies,
                           done_at_s=[elapsed * (i + 1) / len(latencies)
                                      for i in range(len(latencies))])

    fast, slow = part([0.001] * 300, 1.0), part([0.010] * 100, 2.0)
    merged = workloads.merge_segments([fast, slow], elapsed_s=3.5)
    workloads.check_result(merged)
    assert merged["writes"] == 400 and merged["errors"] == 2
    assert merged["elapsed_s"] == 3.5 and merged["writes_per_s"] == 400 / 3.5
    # 3 of 4 calls took 1 ms: the median is 1 ms, the 90th percentile 10 ms
    assert merged["latency_ms"]["p50"] == 1.0 and merged["latency_ms"]["p90"] == 10.0
    assert merged["latency_ms"]["max"] == 10.0
    assert sum(n for _, n in merged["series"]) == 400
    assert merged["series"][-1][0] >= 2.9  # the second segment's windows follow the first's
    assert workloads.merge_segments([fast], elapsed_s=9.0) == fast
