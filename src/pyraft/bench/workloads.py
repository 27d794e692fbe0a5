"""pyraft's benchmark workloads: 3 member processes on 127.0.0.1, and the kernel benchmarks.

Every function here starts what it measures and stops it (by pid) before it returns, and
removes its data directories. Every load follows the leader (it goes on through a new one
when its leader changes) and reports ``leader_changes``. Loads run inside the leader process
(the ``load`` and ``reads`` ops of :mod:`pyraft.testing.member`, api "engine") or from a
separate load-generator process against ``pyraft node`` members (:mod:`pyraft.bench.loadgen`:
api "http", raw HTTP requests, and api "kvclient", one ``KVClient`` over the members' binary
client protocol), and answer results of :mod:`pyraft.bench.stats`. The ``pyraft node``
members run with the node's defaults (the key-value state in memory over the durable log in
``--data``, a snapshot every 50,000 entries), as an operator starts them. Durable members
write their logs under the benchmark directory with ``--sync always`` (a write is
acknowledged once fdatasynced on a majority); "memory" members keep their logs in memory.
``tick`` is called with a label before each measurement (the progress bar).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pyraft.bench import builds, machine
from pyraft.bench.load import warmup_s
from pyraft.bench.stats import PERCENTILES, SAMPLE_POINTS_MAX, check_result
from pyraft.config import RaftConfig
from pyraft.testing.processes import KVNode, Member, free_port, leader, start_cluster, wait_for

DURABLE = "durable (fdatasync)"
MEMORY = "memory"
#: election timeout of the member processes (``--election-ms``; the upper bound is twice it):
#: the default of every member (``RaftConfig``), which ``pyraft node`` uses too
ELECTION_MS_LOWER: float = RaftConfig(member_id=1).election_timeout_ms_lower
ELECTION_MS_UPPER = 2 * ELECTION_MS_LOWER
#: commands that may wait to enter the core of an engine member. The engine loads keep up to
#: 64 x 1024 commands in flight (``Plan.peak``); the members were measured with this bound
#: (``RaftCluster``'s own default before members were built from a ``ClusterConfig``, whose
#: default is lower), so it is set explicitly and the figures stay comparable
PROPOSAL_QUEUE_MAX = 65_536
#: the largest batched load (``replicate_many`` of ``batch`` commands, ``inflight`` calls at a
#: time): as many commands in flight as the members' queue bound, which is also the largest
#: in-flight count PySyncObj's peak is searched at (``pysyncobj_peer.PEAK_INFLIGHTS``), so both
#: peaks are searched up to the same load. Both plans run it. A member's throughput still rose
#: from 32 x 1024 to 64 x 1024 on 2026-12-07 (5.0-5.2M to 5.6-5.9M writes/s, durable, 3 members
#: on the 2-vCPU VM) while PySyncObj's rose no further from 20,000 to 65,536 in flight
#: (``pysyncobj_peer.PEAK_INFLIGHTS``); ``PEAK_SHAPES`` keeps 32 x 1024, the shape judged
#: until then
PEAK_SHAPE = {"inflight": 64, "batch": 1024}
#: the batched loads of the quick plan: the shape judged until 2026-12-07, then ``PEAK_SHAPE``
PEAK_SHAPES = [{"inflight": 32, "batch": 1024}, PEAK_SHAPE]
#: members log errors only: their stderr is a pipe nobody reads while they run
MEMBER_ARGS = ["--state", "count", "--sync", "always", "--election-ms", str(ELECTION_MS_LOWER),
               "--proposal-queue-max", str(PROPOSAL_QUEUE_MAX), "--log-level", "ERROR"]
#: the APIs of the client-path loads (``pyraft node`` members driven by a load generator)
#: http: raw HTTP requests; kvclient: one KVClient over the binary protocol; kvclient-http: one
#: KVClient per write in flight over the HTTP API
CLIENT_APIS = ("http", "kvclient", "kvclient-http")


#: a snapshot interval no run reaches: the members keep the whole log
NO_SNAPSHOT = 1 << 40


class WorkloadError(RuntimeError):
    """A workload could not be run (a member answered an error, a process did not start)."""


@dataclass
class Plan:
    """What a run measures; ``Plan.build(quick, duration_s)`` gives the standard plan."""

    duration_s: float
    throughput: list[dict] = field(default_factory=list)  # mode, api, size, inflight
    rates: list[float] = field(default_factory=list)  # open-loop offered loads, writes/s
    peak: list[dict] = field(default_factory=list)  # inflight, batch
    read_inflight: int = 16
    failovers: int = 20
    catchup_bytes: int = 1 << 30
    #: one catch-up per value: members snapshot (and release the log before) every this many
    #: entries. The full run measures both ways a newcomer catches up: NO_SNAPSHOT (the cluster
    #: holds the whole log, the newcomer replicates all of it) and a snapshot every 300,000
    #: entries (the newcomer installs the latest snapshot, then replicates the entries after
    #: it: of 1 GiB of 1 KiB entries, about 150,000)
    catchup_snapshot_entries: list[int] = field(
        default_factory=lambda: [NO_SNAPSHOT, 300_000])
    #: the state a new member installs by one snapshot (0: not measured): the rise of the
    #: leader's and the follower's resident set (issue 15: at most 64 MiB for 1 GiB)
    snapshot_bytes: int = 1 << 30
    #: the loads the pure build (``PYRAFT_PURE_CORE=1``) runs beside the compiled one, the
    #: same shapes (issue 18's goals: CPU per write at one in flight, 16 and 256 in flight)
    pure_throughput: list[dict] = field(default_factory=lambda: [
        {"mode": DURABLE, "api": "engine", "size": 16, "inflight": n} for n in (1, 16, 256)])
    #: the simulator's seeds run by each build (``--seeds A:B``), and the core benchmark's
    #: batches of 100 entries per run (enough for the compiled build's run to last about
    #: 0.1 s: at 500 its runs lasted 10 ms and one process measured 2.2 to 5.6 M entries
    #: per CPU second); each build runs ``build_rounds`` times, alternating
    sim_seeds: str = "0:150"
    core_batches: int = 5000
    build_rounds: int = 3
    #: rounds of each load both builds run (``pure_throughput``), alternating which goes
    #: first; each build's result merges them (``merge_rounds``): the host moves between
    #: samples, and one sample per build read 256 in flight at 1.20-1.73x in six runs
    pure_rounds: int = 3
    #: how long the durable loads of one write in flight run, both builds (None:
    #: ``duration_s``): the CPU goal reads each member's user CPU from them, which the kernel
    #: splits from system time by sampling at its tick (250 Hz on the reference machine, tick
    #: accounting), so a compiled follower's second of load gave about 70 samples and its user
    #: time +-10%, and /proc reports it in 10 ms steps; the quick plan runs them 3 s
    one_write_s: float | None = None

    def load_s(self, mode: str, inflight: int) -> float:
        """How long a closed-loop engine load of this shape runs (``one_write_s``)."""
        if self.one_write_s and mode == DURABLE and inflight == 1:
            return max(self.duration_s, self.one_write_s)
        return self.duration_s

    @classmethod
    def build(cls, quick: bool, duration_s: float | None = None, failovers: int | None = None,
              catchup_bytes: int | None = None, snapshot_bytes: int | None = None) -> Plan:
        if quick:
            plan = cls(duration_s=duration_s or 1.0, rates=[500.0, 2000.0],
                       peak=[dict(shape) for shape in PEAK_SHAPES], failovers=3,
                       catchup_bytes=16 << 20, catchup_snapshot_entries=[4096],
                       snapshot_bytes=64 << 20, sim_seeds="0:40", core_batches=3000,
                       build_rounds=1, one_write_s=3.0)
            plan.throughput = [
                {"mode": DURABLE, "api": "engine", "size": 16, "inflight": 1},
                {"mode": DURABLE, "api": "engine", "size": 16, "inflight": 16},
                {"mode": DURABLE, "api": "engine", "size": 16, "inflight": 256},
                {"mode": DURABLE, "api": "engine", "size": 1024, "inflight": 16},
                {"mode": MEMORY, "api": "engine", "size": 16, "inflight": 256},
                {"mode": DURABLE, "api": "http", "size": 16, "inflight": 16},
                {"mode": DURABLE, "api": "kvclient", "size": 16, "inflight": 256},
            ]
        else:
            plan = cls(duration_s=duration_s or 10.0, rates=[1000.0, 5000.0, 20000.0],
                       peak=[{"inflight": 4, "batch": 256}, {"inflight": 16, "batch": 256},
                             {"inflight": 16, "batch": 1024},
                             *(dict(shape) for shape in PEAK_SHAPES)])
            plan.throughput = [
                {"mode": mode, "api": api, "size": size, "inflight": inflight}
                for mode in (DURABLE, MEMORY) for api in ("engine", "http", "kvclient")
                for size in (16, 1024) for inflight in (1, 16, 256)]
        if failovers is not None:
            plan.failovers = failovers
        if catchup_bytes is not None:
            plan.catchup_bytes = catchup_bytes
        if snapshot_bytes is not None:
            plan.snapshot_bytes = snapshot_bytes
        if (plan.duration_s <= 0 or plan.failovers < 0 or plan.catchup_bytes < 0
                or plan.snapshot_bytes < 0):
            raise ValueError("duration, failovers, catch-up and snapshot bytes must not be "
                             "negative")
        return plan

    def cluster_steps(self, pure: bool = True) -> int:
        """How many times the cluster workloads call ``tick`` (for the progress bar);
        ``pure``: the pure build's loads included (they run on engine clusters only)."""
        rounds = max(1, self.pure_rounds)
        both = [s for s in self.pure_throughput if s["api"] == "engine"] if pure else []
        # a load both builds run: once per build and round (``engine_workloads``)
        loads = (sum(2 * rounds if s in both else 1 for s in self.throughput)
                 + rounds * len([s for s in both if s not in self.throughput]))
        return (loads + len(self.rates) + len(self.peak) + 2
                + (1 if self.failovers else 0)
                + (len(self.catchup_snapshot_entries) if self.catchup_bytes else 0)
                + (1 if self.snapshot_bytes else 0))


# ---- process clusters ------------------------------------------------------------------------
@contextlib.contextmanager
def member_cluster(directory: str | None, extra_args: list[str] | None = None
                   ) -> Iterator[tuple[dict[int, str], list[Member]]]:
    """Three ``pyraft.testing.member`` members (data under ``directory``; None: memory);
    stopped (SIGTERM, then SIGKILL by pid) on exit."""
    members: list[Member] = []
    try:
        peers, members = start_cluster(directory, 3, extra_args=MEMBER_ARGS + (extra_args or []))
        yield peers, members
    finally:
        for member in members:
            with contextlib.suppress(Exception):
                member.stop()


def call_leader(members: list[Member], op: str, timeout_s: float, attempts: int = 3,
                **fields) -> dict:
    """``op`` on the current leader, found again after a NotLeaderError (``attempts`` times)."""
    answer: dict = {}
    for _ in range(attempts):
        current = leader(members)
        current.set_timeout(timeout_s)
        answer = current.call(op, **fields)
        if answer.get("ok"):
            answer["member"] = current.id
            return answer
        if answer.get("error") != "NotLeaderError":
            break
    raise WorkloadError(f"{op} {fields}: {answer.get('error')}: {answer.get('message')}")


def _load(members: list[Member], duration_s: float, segments_max: int = 5,
          warmup: bool = True, **fields) -> dict:
    """One load on the leader (the load generator runs in its process), with the CPU each
    member spent per write during it: ``cpu_us_per_write`` = ``{"leader": {"user",
    "system"}, "followers": [...]}`` (None where the CPU time cannot be read).

    ``warmup``: a discarded load of the same shape runs first (``warmup_s`` of its length,
    as before every peer's load: ``pyraft.bench.load``), outside what is measured, CPU
    included; ``result["warmup_s"]`` says how long (0: none; a load of ``count`` calls has
    none).

    A load follows the leader: when the member running it loses its lead, its load stops
    (``stopped_by``) and the rest of the duration runs on the new leader, up to
    ``segments_max`` leaders; the result merges the segments (``merge_segments``).
    ``leader_changes``: the elections during the load (the highest term among the members
    after it, minus before it); ``segments``: who ran each part and how it ended."""
    count = fields.pop("count", None)
    warm_s = warmup_s(duration_s) if warmup and count is None else 0.0
    if warm_s:
        call_leader(members, "load", timeout_s=warm_s + 90, duration_s=warm_s, **fields)
    before = {m.id: machine.process_cpu_s(m.pid) for m in members}
    batching = {m.id: _pipeline(m) for m in members}
    leader(members)  # a new cluster's first election is not a change during the load
    term_before = _highest_term(members)
    started = time.perf_counter()
    per_call = int(fields.get("batch", 1))
    parts: list[dict] = []
    segments: list[dict] = []
    ran_on: list[int] = []
    remaining = duration_s
    while True:
        extra = {} if count is None else {"count": count}
        answer = call_leader(members, "load", timeout_s=remaining + 90, duration_s=remaining,
                             **fields, **extra)
        part = check_result(answer["result"])
        parts.append(part)
        ran_on.append(answer["member"])
        segments.append({"member": answer["member"], "writes": part["writes"],
                         "errors": part["errors"], "elapsed_s": part["elapsed_s"],
                         "stopped_by": answer.get("stopped_by")})
        if count is not None:
            count -= part["writes"] // per_call
        remaining = duration_s - (time.perf_counter() - started)
        if not answer.get("stopped_by") or len(parts) >= segments_max or remaining < 0.1 \
                or count is not None and count <= 0:
            break
    elapsed_s = time.perf_counter() - started
    result = merge_segments(parts, elapsed_s, per_call)
    result["leader_changes"] = _highest_term(members) - term_before
    result["segments"] = segments
    result["cpu_us_per_write"] = _cpu_per_write(members, before, ran_on[-1], result["writes"])
    result["batching"] = _batching(members, batching, ran_on[-1])
    result["warmup_s"] = warm_s
    return result


def _highest_term(members: list[Member]) -> int:
    terms = []
    for member in members:
        with contextlib.suppress(OSError, ValueError, KeyError, AttributeError):
            terms.append(int(member.call("status")["term"]))
    return max(terms, default=0)


def merge_segments(parts: list[dict], elapsed_s: float, per_call: int = 1) -> dict:
    """One result from the results of a load's segments (one per leader it ran on): writes
    and errors added, throughput over ``elapsed_s`` (the whole load, the change of leader
    included), the series joined end to end, and the latency percentiles and sample taken
    from the segments' samples, each sample point standing for its segment's calls
    (an approximation: the segments' raw latencies are not kept)."""
    if len(parts) == 1:
        return dict(parts[0])
    merged = dict(parts[0])
    merged["writes"] = sum(p["writes"] for p in parts)
    merged["errors"] = sum(p["errors"] for p in parts)
    merged["elapsed_s"] = max(elapsed_s, sum(p["elapsed_s"] for p in parts))
    merged["writes_per_s"] = merged["writes"] / merged["elapsed_s"]
    series, offset = [], 0.0
    for part in parts:
        series += [[round(t + offset, 6), n] for t, n in part["series"]]
        offset += part["elapsed_s"]
    merged["series"] = series
    weighted = sorted((value, (p["writes"] / per_call) / len(p["latency_sample_ms"]))
                      for p in parts if p["latency_sample_ms"] and p["writes"]
                      for value in p["latency_sample_ms"])
    total = sum(weight for _, weight in weighted)

    def at(q: float) -> float | None:
        running = 0.0
        for value, weight in weighted:
            running += weight
            if running >= q * total - 1e-9:
                return value
        return weighted[-1][0] if weighted else None

    merged["latency_ms"] = {**{key: at(q) for key, q in PERCENTILES.items()},
                            "max": weighted[-1][0] if weighted else None}
    points = min(SAMPLE_POINTS_MAX, len(weighted))
    merged["latency_sample_ms"] = [at(i / (points - 1)) if i else weighted[0][0]
                                   for i in range(points)] if points > 1 else \
        [value for value, _ in weighted]
    merged["notes"] = "; ".join(p["notes"] for p in parts if p["notes"]) + \
        f"{'; ' if any(p['notes'] for p in parts) else ''}ran on {len(parts)} leaders in turn"
    return merged


def merge_rounds(results: list[dict]) -> dict:
    """One result from the same load run in several rounds on one cluster: the round with
    the median writes/s (its latencies, series and counts), each member's CPU per write the
    median of the rounds' (the followers taken in the order of their user CPU in each round:
    which follower is which does not matter, as in the goal), and ``rounds``, each round's
    writes/s, p50 and CPU. One result is returned as it is."""
    if len(results) == 1:
        return results[0]
    middle = sorted(results, key=lambda r: r["writes_per_s"])[(len(results) - 1) // 2]
    merged = dict(middle)
    cpus: list[dict] = [r["cpu_us_per_write"] for r in results if r.get("cpu_us_per_write")]
    if len(cpus) == len(results) and len({len(c["followers"]) for c in cpus}) == 1:
        merged["cpu_us_per_write"] = _median_cpu(cpus)
    merged["rounds"] = [{"writes_per_s": r["writes_per_s"], "p50_ms": r["latency_ms"]["p50"],
                         "cpu_us_per_write": r.get("cpu_us_per_write")} for r in results]
    said = (f"the round with the median writes/s of {len(results)}; each member's CPU per "
            f"write the median of the {len(results)} rounds")
    merged["notes"] = f"{middle['notes']}; {said}" if middle.get("notes") else said
    return merged


def _median_cpu(cpus: list[dict]) -> dict:
    """Each member's median user and system CPU per write over rounds (``cpu_us_per_write``
    of each); followers by their rank in user CPU within each round."""
    def of(parts: list[dict]) -> dict:
        return {"user": statistics.median(p["user"] for p in parts),
                "system": statistics.median(p["system"] for p in parts)}

    ranked = [sorted(c["followers"], key=lambda f: f["user"]) for c in cpus]
    return {"leader": of([c["leader"] for c in cpus]),
            "followers": [of([r[i] for r in ranked]) for i in range(len(ranked[0]))]}


def _cpu_per_write(members: list[Member], before: dict, leader_id: int, writes: int
                   ) -> dict | None:
    spent: dict[int, dict] = {}
    for member in members:
        start, end = before.get(member.id), machine.process_cpu_s(member.pid)
        if start is None or end is None or writes < 1:
            return None
        spent[member.id] = {"user": (end[0] - start[0]) / writes * 1e6,
                            "system": (end[1] - start[1]) / writes * 1e6}
    return {"leader": spent[leader_id],
            "followers": [cpu for member, cpu in spent.items() if member != leader_id]}


def _pipeline(member: Member) -> dict | None:
    """A member's ``pipeline`` counters (None: it did not answer)."""
    with contextlib.suppress(OSError, ValueError, KeyError, AttributeError):
        answer = member.call("pipeline")
        if answer.get("ok"):
            return answer
    return None


def _batching(members: list[Member], before: dict, leader_id: int) -> dict | None:
    """How each member batched a load's writes: per member ``appends`` (Readys whose entries
    it wrote during the load), ``entries_per_append``, ``syncs`` (timed syncs) and
    ``sync_ms`` (their mean duration), as ``{"leader": {...}, "followers": [...]}``; None
    when a member's counters could not be read before or after. At one batch per round trip
    (a closed loop's writes all come back together) every write in flight goes into one
    append and waits for one sync on each member: the syncs then bound the round trip,
    however little CPU a write costs."""
    seen: dict[int, dict] = {}
    for member in members:
        start, end = before.get(member.id), _pipeline(member)
        if start is None or end is None:
            return None
        syncs = end["syncs"] - start["syncs"]
        appends = end["appends"] - start["appends"]
        seen[member.id] = {
            "appends": appends, "syncs": syncs,
            "sync_ms": (end["sync_s"] - start["sync_s"]) / syncs * 1e3 if syncs else None,
            "entries_per_append": (end["entries"] - start["entries"]) / appends
            if appends else None}
    return {"leader": seen[leader_id],
            "followers": [value for member, value in seen.items() if member != leader_id]}


def engine_workloads(plan: Plan, mode: str, base: str | None, tick: Callable[[str], None],
                     pure: bool = False) -> dict[str, list[dict]]:
    """Throughput (closed loop), and for durable members also latency (open loop), peak
    (batched) and reads (lease vs barrier), on one 3-member cluster of the compiled build.

    ``pure``: a second cluster of the pure build (``PYRAFT_PURE_CORE=1`` in its members'
    environment, so the load generator inside its leader is pure too) runs beside it, and
    each load of ``plan.pure_throughput`` in this mode runs on both clusters in
    ``plan.pure_rounds`` rounds, the builds taking turns at going first, so both see the
    host at the same moments (it changes speed); each build's result merges its rounds
    (``merge_rounds``); the pure build's (``out["pure"]``) say ``system`` "pyraft-pure".
    Every result carries its ``build``."""
    out: dict[str, list[dict]] = {"throughput": [], "latency": [], "peak": [], "reads": [],
                                  "pure": []}
    specs = [s for s in plan.throughput if s["api"] == "engine" and s["mode"] == mode]
    pure_specs = [s for s in plan.pure_throughput
                  if s["api"] == "engine" and s["mode"] == mode] if pure else []

    def tagged(result: dict, build: str = builds.COMPILED) -> dict:
        result["build"] = build
        if build == builds.PURE:
            result["system"] = builds.PURE_SYSTEM
        return result

    directories: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            clusters = {}
            for build in (builds.COMPILED, builds.PURE) if pure_specs else (builds.COMPILED,):
                directory = None
                if mode != MEMORY:
                    directory = tempfile.mkdtemp(prefix=f"engine-{build}-", dir=base)
                    directories.append(directory)
                with builds.environment(build):  # the members inherit it when they start
                    clusters[build] = stack.enter_context(member_cluster(directory))[1]
            members = clusters[builds.COMPILED]

            def run_builds(spec: dict, both: bool) -> None:
                """``spec`` on the pure cluster (``both``: and on the compiled one), in
                ``plan.pure_rounds`` rounds, alternating which build goes first; one result
                per build, its rounds merged."""
                length = plan.load_s(mode, spec["inflight"])
                runs: dict[str, list[dict]] = {builds.COMPILED: [], builds.PURE: []}
                for round_ in range(max(1, plan.pure_rounds)):
                    order = (builds.COMPILED, builds.PURE) if round_ % 2 == 0 \
                        else (builds.PURE, builds.COMPILED)
                    for build in order if both else (builds.PURE,):
                        name = "engine" if build == builds.COMPILED else "pure build engine"
                        tick(f"{name} {mode} {spec['size']} B x{spec['inflight']} "
                             f"(round {round_ + 1})")
                        runs[build].append(_load(clusters[build], length, size=spec["size"],
                                                 inflight=spec["inflight"]))
                if both:
                    out["throughput"].append(tagged(merge_rounds(runs[builds.COMPILED])))
                out["pure"].append(tagged(merge_rounds(runs[builds.PURE]), builds.PURE))

            for spec in specs:
                if spec in pure_specs:
                    run_builds(spec, both=True)
                    continue
                tick(f"engine {mode} {spec['size']} B x{spec['inflight']}")
                out["throughput"].append(tagged(_load(members,
                                                      plan.load_s(mode, spec["inflight"]),
                                                      size=spec["size"],
                                                      inflight=spec["inflight"])))
            for spec in pure_specs:
                if spec not in specs:
                    run_builds(spec, both=False)
            if mode != DURABLE:
                return out
            for rate in plan.rates:
                tick(f"latency at {rate:g}/s")
                out["latency"].append(tagged(_load(members, plan.duration_s, size=16,
                                                   rate=rate)))
            for spec in plan.peak:
                tick(f"peak x{spec['inflight']} batches of {spec['batch']}")
                out["peak"].append(tagged(_load(members, plan.duration_s, size=16, **spec)))
            for kind in ("lease", "barrier"):
                tick(f"reads ({kind})")
                answer = call_leader(members, "reads", timeout_s=plan.duration_s + 60,
                                     mode=kind, inflight=plan.read_inflight,
                                     duration_s=plan.duration_s)
                out["reads"].append(tagged(check_result(answer["result"])))
    finally:
        for directory in directories:
            shutil.rmtree(directory, ignore_errors=True)
    return out


# ---- through the key-value service (HTTP API, binary protocol) -------------------------------
class ClientPathNode(KVNode):
    """A ``pyraft node`` of the client-path loads, started as an operator starts one: the
    node's defaults (the key-value state in memory over the durable log in ``data``; None:
    everything in memory), its HTTP API and its binary client protocol (``--client``)."""

    def __init__(self, member: int, peers: dict[int, str], http: dict[int, str],
                 client: dict[int, str], data: str | None) -> None:
        super().__init__(member, peers, http, data, None)
        self.client = client

    def arguments(self) -> list[str]:
        args = ["--log-level", "WARNING", "--client", self.client[self.member],
                "--client-peers", ",".join(f"{m}={a}" for m, a in self.client.items())]
        if self.data is not None:
            args += ["--data", self.data]
        return args


def http_workloads(plan: Plan, mode: str, base: str | None,
                   tick: Callable[[str], None]) -> list[dict]:
    """Closed-loop writes from a load-generator process against 3 ``pyraft node`` members:
    raw HTTP PUTs (api "http") and ``KVClient.put`` over the binary protocol (api
    "kvclient")."""
    specs = [s for s in plan.throughput if s["api"] in CLIENT_APIS and s["mode"] == mode]
    if not specs:
        return []
    workdir = tempfile.mkdtemp(prefix="http-", dir=base)
    nodes: list[KVNode] = []
    results = []
    try:
        peers = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3)}
        http = {m: f"127.0.0.1:{free_port()}" for m in peers}
        client = {m: f"127.0.0.1:{free_port()}" for m in peers}
        for member in peers:
            data = None if mode == MEMORY else f"{workdir}/node{member}"
            nodes.append(ClientPathNode(member, peers, http, client, data))
            nodes[-1].start()
        for spec in specs:
            api = spec["api"]
            tick(f"{api} {mode} {spec['size']} B x{spec['inflight']}")
            urls = ",".join(f"pyraft://{client[m]}" if api == "kvclient" else f"http://{http[m]}"
                            for m in peers)
            command = [sys.executable, "-m", "pyraft.bench.loadgen", "--urls", urls,
                       "--api", "http" if api == "http" else "kvclient",
                       "--size", str(spec["size"]), "--inflight", str(spec["inflight"]),
                       "--duration-s", str(plan.duration_s), "--mode", mode]
            done = subprocess.run(command, capture_output=True, text=True,
                                  timeout=plan.duration_s + 120)
            if done.returncode != 0:
                raise WorkloadError(f"load generator failed: {done.stderr.strip()[-2000:]}")
            results.append(check_result(json.loads(done.stdout.strip().splitlines()[-1])))
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


# ---- failover ---------------------------------------------------------------------------------
def failover(trials: int, base: str | None, tick: Callable[[str], None],
             trial_timeout_s: float = 20.0) -> dict:
    """Time from SIGKILL of the leader to the next committed write through a survivor, over
    ``trials`` trials; the killed member restarts from its data directory and catches up
    before the next trial."""
    tick(f"failover x{trials}")
    directory = tempfile.mkdtemp(prefix="failover-", dir=base)
    seconds: list[float] = []
    try:
        with member_cluster(directory) as (_, members):
            for trial in range(trials):
                current = leader(members)
                survivors = [m for m in members if m is not current]
                killed_at = time.perf_counter()
                current.kill()
                deadline = time.monotonic() + trial_timeout_s
                while time.monotonic() < deadline:
                    try:
                        answer = leader(survivors).call("replicate", data=f"failover{trial}",
                                                        timeout=1)
                    except (OSError, AssertionError, ValueError):
                        continue
                    if answer.get("ok"):
                        seconds.append(time.perf_counter() - killed_at)
                        break
                else:
                    raise WorkloadError(f"no write committed {trial_timeout_s} s after the "
                                        f"leader was killed (trial {trial})")
                commit = leader(survivors).call("status")["commit"]
                current.start()
                wait_for(functools.partial(_applied_at_least, current, commit),
                         timeout=trial_timeout_s)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    ordered = sorted(seconds)
    return {
        "trials": len(ordered),
        "seconds": ordered,
        "median_ms": statistics.median(ordered) * 1e3 if ordered else None,
        "max_ms": ordered[-1] * 1e3 if ordered else None,
        "election_timeout_ms": [ELECTION_MS_LOWER, ELECTION_MS_UPPER],
        "mode": DURABLE,
    }


def _applied_at_least(member: Member, index: int) -> bool:
    return bool(member.call("status")["applied"] >= index)


# ---- catch-up ---------------------------------------------------------------------------------
def catch_up(plan: Plan, base: str | None, tick: Callable[[str], None],
             snapshot_entries: int = NO_SNAPSHOT, timeout_s: float = 1800.0) -> dict:
    """Fill a durable 3-member cluster with ``plan.catchup_bytes`` of 1 KiB commands (batched),
    its members snapshotting every ``snapshot_entries`` entries, then add a 4th member and time
    until it is a voter that applied the leader's commit index. ``snapshot_used``: the new
    member installed a snapshot from the leader."""
    way = "replication" if snapshot_entries == NO_SNAPSHOT else \
        f"snapshot every {snapshot_entries} entries"
    tick(f"catch-up of {plan.catchup_bytes / 2**20:g} MiB ({way})")
    size, batch = 1024, 256
    calls = max(1, math.ceil(plan.catchup_bytes / (size * batch)))
    directory = tempfile.mkdtemp(prefix="catchup-", dir=base)
    extra = ["--snapshot-entries", str(snapshot_entries)]
    newcomer = None
    try:
        with member_cluster(directory, extra) as (peers, members):
            filled = _fill(members, timeout_s, size=size, batch=batch, inflight=8, calls=calls)
            address = f"127.0.0.1:{free_port()}"
            newcomer = Member(4, address, {**peers, 4: address}, f"{directory}/m4", join=True,
                              extra_args=MEMBER_ARGS + extra).start()
            started = time.perf_counter()
            call_leader(members, "add_member", timeout_s=timeout_s + 30, id=4, address=address,
                        timeout=timeout_s)
            commit = leader(members).call("status")["commit"]
            wait_for(lambda: newcomer.call("status")["applied"] >= commit, timeout=timeout_s,
                     interval=0.01)
            seconds = time.perf_counter() - started
            status = newcomer.call("status")
    finally:
        if newcomer is not None:
            newcomer.stop()
        shutil.rmtree(directory, ignore_errors=True)
    filled_bytes = filled["writes"] * size
    replicated = commit - status["snapshot_index"]  # entries the newcomer got by replication
    return {
        "bytes": filled_bytes,
        "entries": filled["writes"],
        "fill_writes_per_s": filled["writes_per_s"],
        "fill_leader_changes": filled["leader_changes"],
        "seconds": seconds,
        "replicated_entries": replicated,
        "snapshot_index": status["snapshot_index"],
        "mb_per_s": replicated * size / seconds / 1e6,  # of the entries replicated
        "leader_commit": commit,
        "snapshot_used": status["snapshots_installed"] > 0,
        "snapshot_entries": None if snapshot_entries == NO_SNAPSHOT else snapshot_entries,
        "mode": DURABLE,
        "note": "members snapshot every snapshot_entries entries and release the log before "
                "it: a newcomer gets the latest snapshot, then the entries after it (None: no "
                "snapshot is taken, the newcomer replicates the whole log)",
    }


# ---- snapshot install -------------------------------------------------------------------------
def snapshot_install(plan: Plan, base: str | None, tick: Callable[[str], None],
                     timeout_s: float = 1800.0) -> dict:
    """A member that starts empty installs a snapshot of ``plan.snapshot_bytes`` (a disk state
    machine's store, ``pyraft.testing.snapshot_stream``): the rise of the leader's and the
    follower's resident set while it streams, and how long it took."""
    from pyraft.testing.snapshot_stream import measure_install

    tick(f"snapshot install of {plan.snapshot_bytes / 2**20:g} MiB")
    figures = measure_install(plan.snapshot_bytes, base, timeout_s)
    figures["mb_per_s"] = figures["snapshot_bytes"] / figures["install_seconds"] / 1e6
    return figures


def _fill(members: list[Member], timeout_s: float, *, size: int, batch: int, inflight: int,
          calls: int, attempts: int = 4) -> dict:
    """``calls`` batched writes through whoever leads: what a leader change interrupts goes
    on through the next leader (at most ``attempts`` leaders). ``{"writes", "writes_per_s",
    "leader_changes"}``; a WorkloadError if the writes cannot be completed."""
    done_calls, writes, started, notes, changes = 0, 0, time.perf_counter(), "", 0
    for _ in range(attempts):
        result = _load(members, timeout_s, size=size, batch=batch, inflight=inflight,
                       count=calls - done_calls)
        writes += result["writes"]
        done_calls += result["writes"] // batch
        notes = result["notes"]
        changes += result["leader_changes"]
        if done_calls >= calls:
            return {"writes": writes, "leader_changes": changes,
                    "writes_per_s": writes / (time.perf_counter() - started)}
    raise WorkloadError(f"filling the log failed through {attempts} leaders: {notes}")


# ---- kernels ----------------------------------------------------------------------------------
#: names of the compiled implementation in the kernel benchmarks' parameters
_COMPILED = ("raftcore", "cython", "compiled")


def benchmarks_directory() -> Path | None:
    """``benchmarks/`` of the source checkout this package runs from, or else of the
    checkout in the working directory (an installed package run from the checkout)."""
    for candidate in (Path(__file__).resolve().parents[3] / "benchmarks",
                      Path.cwd() / "benchmarks"):
        if (candidate / "test_bench_crc.py").is_file():
            return candidate
    return None


def kernels(quick: bool, timeout_s: float = 900.0) -> dict:
    """Run the pytest-benchmark kernel benchmarks in a subprocess and fold their medians, per
    group, with the ratio of each reference to the compiled kernel (>1: the kernel is faster).
    """
    where = benchmarks_directory()
    if where is None:
        return {"skipped": "benchmarks/ not found: run from a source checkout"}
    fd, json_path = tempfile.mkstemp(prefix="kernels-", suffix=".json")
    os.close(fd)
    command = kernels_command(where, json_path, quick)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              cwd=where.parent)
        if done.returncode != 0:
            return {"skipped": f"pytest exited {done.returncode}: {done.stdout[-1500:]}"}
        with open(json_path) as f:
            raw = json.load(f)
    finally:
        os.unlink(json_path)
    return fold_kernels(raw)


def kernels_command(where: Path, json_path: str, quick: bool) -> list[str]:
    """The pytest command line of the kernel benchmarks (``quick``: short, no core run).

    Without the test suite's ``addopts``: they spread the tests over xdist workers, where
    pytest-benchmark measures nothing, and turn the benchmarks off."""
    command = [sys.executable, "-m", "pytest", str(where), "-q", "-p", "no:cacheprovider",
               "-o", "addopts=", "--benchmark-enable", f"--benchmark-json={json_path}"]
    if quick:
        command += ["-k", "not core_commit", "--benchmark-max-time=0.05",
                    "--benchmark-min-rounds=3", "--benchmark-warmup=off"]
    return command


def fold_kernels(raw: dict) -> dict:
    """Medians (seconds per round) per group and implementation, with reference ratios."""
    groups: dict[str, dict] = {}
    for bench in raw.get("benchmarks", []):
        group = bench.get("group") or bench["name"]
        label = bench.get("param") or bench["name"]
        groups.setdefault(group, {"median_s": {}, "ratio_to_compiled": {}})
        groups[group]["median_s"][label] = bench["stats"]["median"]
    for entry in groups.values():
        medians = entry["median_s"]
        compiled = [k for k in medians if any(word in k.lower() for word in _COMPILED)]
        if len(compiled) == 1 and len(medians) > 1:
            base = medians[compiled[0]]
            entry["compiled"] = compiled[0]
            entry["ratio_to_compiled"] = {k: v / base for k, v in medians.items()
                                          if k != compiled[0] and base > 0}
    return {"machine_info": raw.get("machine_info", {}).get("cpu", {}).get("brand_raw"),
            "groups": groups}


__all__ = ["Plan", "WorkloadError", "ClientPathNode", "engine_workloads", "http_workloads",
           "failover",
           "catch_up", "snapshot_install", "kernels", "fold_kernels", "member_cluster",
           "call_leader"]
