"""A load inside a member's process must not hold the member's event loop (issue 16).

``pyraft bench goals`` lost its leader right after big engine loads: the leader's process
summarised millions of calls (sorting their latencies) on its event loop, for seconds on a
slow host, so no tick ran and no heartbeat left, the followers elected another leader, and the
next load started on a deposed member. The summary now runs in a worker thread (numpy sorts
without the GIL); these tests check the loop keeps ticking while it runs.
"""

from __future__ import annotations

import math
import random
import threading
import time
from array import array

from pyraft.bench import stats
from pyraft.testing import member as member_process
from pyraft.testing.cluster import leader_of, memory_cluster, run_on_fresh_loop
from pyraft.transport.memory import MemoryNetwork


def test_the_leader_keeps_ticking_while_a_load_is_summarised(monkeypatch):
    summarised_on: list[threading.Thread] = []
    ticks_meanwhile: list[int] = []
    real_result = member_process._result

    def slow_summary(*args):
        # a summary that takes as long as ten of the member's ticks: on the loop's thread
        # no tick could happen and this would give up after 20 s with ticks_meanwhile [0]
        summarised_on.append(threading.current_thread())
        ticks = leader_core.ticks
        deadline = time.monotonic() + 20.0
        while leader_core.ticks < ticks + 10 and time.monotonic() < deadline:
            time.sleep(0.005)
        ticks_meanwhile.append(leader_core.ticks - ticks)
        return real_result(*args)

    monkeypatch.setattr(member_process, "_result", slow_summary)

    async def body():
        nonlocal leader_core
        async with memory_cluster(MemoryNetwork()) as members:
            leader = await leader_of(members)
            leader_core = leader.core
            answer = await member_process.load(
                leader, {"size": 16, "inflight": 8, "duration_s": 0.3}, "memory")
            assert answer["ok"] and answer["result"]["writes"] > 0
            assert answer["stopped_by"] is None
            assert leader.is_leader  # nobody else took over meanwhile
            return threading.current_thread()

    leader_core = None
    loop_thread = run_on_fresh_loop(body, timeout_s=120)
    assert summarised_on and summarised_on[0] is not loop_thread
    assert ticks_meanwhile and ticks_meanwhile[0] >= 10


def test_a_load_that_loses_its_leader_stops_instead_of_flooding():
    async def body():
        async with memory_cluster(MemoryNetwork()) as members:
            leader = await leader_of(members)
            follower = next(m for m in members if m is not leader)
            answer = await member_process.load(
                follower, {"size": 16, "inflight": 32, "duration_s": 20.0}, "memory")
            return answer

    answer = run_on_fresh_loop(body, timeout_s=120)
    assert answer["stopped_by"].startswith("NotLeaderError")
    result = answer["result"]
    assert result["writes"] == 0 and 1 <= result["errors"] <= 32
    assert result["elapsed_s"] < 20.0  # it stopped at the first refusal, not at the deadline


def test_the_summary_over_arrays_matches_the_plain_definition():
    rng = random.Random(16)
    latencies = [rng.expovariate(1000.0) for _ in range(5003)]
    done = sorted(rng.uniform(0.0, 2.0) for _ in range(5003))
    ordered = sorted(latencies)
    summary = stats.latency_summary(array("d", latencies))
    for key, q in stats.PERCENTILES.items():
        rank = max(1, math.ceil(q * len(ordered) - 1e-9))  # nearest rank
        assert summary[key] == ordered[min(rank, len(ordered)) - 1] * 1e3
    assert summary["max"] == ordered[-1] * 1e3
    sample = stats.latency_sample(array("d", latencies))
    last = len(ordered) - 1
    assert sample == [ordered[round(i * last / 1000)] * 1e3 for i in range(1001)]
    counts = [0] * 20
    for t in done:
        counts[min(19, int(t / 0.1))] += 3
    assert stats.series(array("d", done), 2.0, weight=3) == [
        [round(i * 0.1, 6), n] for i, n in enumerate(counts)]
    assert stats.series(iter(done), 2.0, weight=3) == stats.series(done, 2.0, weight=3)
