"""The client path (issue 18): ``KVClient``'s writes/s beside the engine API's and etcd's
gateway's, measured in the same run, and the two ratios.

The load shape is the issue's: 16-byte writes, 256 in flight, closed loop, durable
(``--sync always``: acknowledged once fdatasynced on a majority), 3 members on 127.0.0.1.

- KVClient: one :class:`pyraft.kv.KVClient` over the members' binary client protocol, in a
  load-generator process (:mod:`pyraft.bench.loadgen` ``--api kvclient``), against 3
  ``pyraft node`` members started with their defaults (:class:`~pyraft.bench.workloads.
  ClientPathNode`);
- for comparison, the same members' HTTP API: ``KVClient`` over HTTP (one client per write in
  flight, api "kvclient-http": the client path before the binary protocol) and raw aiohttp
  PUTs (api "http");
- the engine API: ``RaftCluster.replicate`` from a load generator inside the leader process
  (:mod:`pyraft.testing.member`, counting state machine);
- etcd's gateway: ``POST /v3/kv/put`` on etcd's v3 JSON gateway from a separate process
  (:mod:`pyraft.bench.peers.etcd_peer`); etcd always fsyncs.

Goals: KVClient at least ``GOAL_RATIO_TO_ETCD`` x etcd's gateway, and at least
``GOAL_RATIO_TO_ENGINE`` x the engine API.

:func:`figures` reads them from a report of the suite (``pyraft bench all`` / ``goals``);
:func:`run` is ``pyraft bench client``: only these loads, ``rounds`` times, each round on fresh
clusters one after the other, its ratios computed within the round, and their medians.
"""

from __future__ import annotations

import functools
import shutil
import statistics
import tempfile
from collections.abc import Callable

from pyraft.bench import workloads
from pyraft.bench.stats import check_result, skipped
from pyraft.bench.workloads import DURABLE, Plan

__all__ = ["GOAL_RATIO_TO_ENGINE", "GOAL_RATIO_TO_ETCD", "SIZE", "INFLIGHT", "figures", "run",
           "summary"]

GOAL_RATIO_TO_ETCD = 4.0
GOAL_RATIO_TO_ENGINE = 0.25
SIZE = 16
INFLIGHT = 256


def _matches(result: dict, api: str) -> bool:
    workload = result.get("workload", {})
    return ("skipped" not in result and result.get("mode") == DURABLE
            and workload.get("api") == api and workload.get("size") == SIZE
            and workload.get("inflight") == INFLIGHT and workload.get("kind") == "closed")


def _writes_per_s(throughput: list[dict], api: str) -> float | None:
    for result in throughput:
        if _matches(result, api):
            return float(result["writes_per_s"])
    return None


def _etcd(peers: dict | None) -> tuple[float | None, str | None]:
    """etcd's gateway figure for the shape, or None and why not."""
    entry = (peers or {}).get("etcd")
    if entry is None:
        return None, "etcd was not run"
    if "skipped" in entry:
        return None, str(entry["skipped"])
    for run_ in entry.get("runs", []):
        spec, result = run_["spec"], run_["result"]
        if (spec.get("kind") == "closed" and spec.get("size") == SIZE
                and spec.get("inflight") == INFLIGHT and spec.get("journal")):
            if "skipped" in result:
                return None, str(result["skipped"])
            return float(result["writes_per_s"]), None
    return None, f"etcd did not run {SIZE} B x{INFLIGHT}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def figures(cluster: dict, peers: dict | None) -> dict:
    """The client path's figures from one run: writes/s of KVClient, HTTP, the engine API
    and etcd's gateway (None where not measured), the ratios and whether the goals are met."""
    throughput = cluster.get("throughput", []) if isinstance(cluster, dict) else []
    kvclient = _writes_per_s(throughput, "kvclient")
    engine = _writes_per_s(throughput, "engine")
    etcd, etcd_missing = _etcd(peers)
    to_etcd, to_engine = _ratio(kvclient, etcd), _ratio(kvclient, engine)
    return {
        "shape": f"{SIZE} B writes, {INFLIGHT} in flight, closed loop, {DURABLE}, 3 members",
        "kvclient_writes_per_s": kvclient,
        "http_writes_per_s": _writes_per_s(throughput, "http"),
        "kvclient_http_writes_per_s": _writes_per_s(throughput, "kvclient-http"),
        "engine_writes_per_s": engine,
        "etcd_gateway_writes_per_s": etcd,
        "etcd_missing": etcd_missing,
        "ratio_kvclient_to_etcd": to_etcd,
        "ratio_kvclient_to_engine": to_engine,
        "goal_ratio_to_etcd": GOAL_RATIO_TO_ETCD,
        "goal_ratio_to_engine": GOAL_RATIO_TO_ENGINE,
        "met_etcd": None if to_etcd is None else to_etcd >= GOAL_RATIO_TO_ETCD,
        "met_engine": None if to_engine is None else to_engine >= GOAL_RATIO_TO_ENGINE,
    }


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def summary(found: dict) -> str:
    """The client path's figures as a few lines of text."""
    lines = [f"client path ({found['shape']}):",
             f"  KVClient (binary protocol)  {_number(found['kvclient_writes_per_s']):>10} "
             "writes/s",
             f"  KVClient over HTTP          "
             f"{_number(found.get('kvclient_http_writes_per_s')):>10} writes/s",
             f"  HTTP API (raw requests)     {_number(found['http_writes_per_s']):>10} writes/s",
             f"  engine API (replicate)      {_number(found['engine_writes_per_s']):>10} "
             "writes/s",
             f"  etcd v3 gateway             {_number(found['etcd_gateway_writes_per_s']):>10} "
             "writes/s" + (f" ({found['etcd_missing']})" if found.get("etcd_missing") else "")]
    for label, key, goal, met in (
            ("KVClient / etcd gateway", "ratio_kvclient_to_etcd", found["goal_ratio_to_etcd"],
             found["met_etcd"]),
            ("KVClient / engine API", "ratio_kvclient_to_engine",
             found["goal_ratio_to_engine"], found["met_engine"])):
        verdict = "not measured" if met is None else ("met" if met else "NOT met")
        lines.append(f"  {label:<27} {_number(found[key], 2):>10}   goal >= {goal:g}: "
                     f"{verdict}")
    return "\n".join(lines)


def run(duration_s: float, rounds: int, base: str | None, tick: Callable[[str], None],
        with_etcd: bool = True) -> dict:
    """``rounds`` rounds of the four loads (engine, KVClient, HTTP, etcd), each on fresh
    clusters started in turn (never two at once); per round its figures, then the medians of
    the writes/s and of the ratios over the rounds."""
    if rounds < 1 or duration_s <= 0:
        raise ValueError("rounds must be >= 1 and duration_s > 0")
    plan = Plan(duration_s=duration_s, throughput=[
        {"mode": DURABLE, "api": api, "size": SIZE, "inflight": INFLIGHT}
        for api in ("engine", "kvclient", "kvclient-http", "http")])
    per_round: list[dict] = []
    for number in range(rounds):
        cluster: dict[str, list[dict]] = {"throughput": []}
        directory = tempfile.mkdtemp(prefix="engine-", dir=base)
        try:
            tick(f"round {number + 1}: engine {SIZE} B x{INFLIGHT}")
            with workloads.member_cluster(directory) as (_, members):
                cluster["throughput"].append(workloads._load(members, duration_s, size=SIZE,
                                                             inflight=INFLIGHT))
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        cluster["throughput"] += workloads.http_workloads(
            plan, DURABLE, base, functools.partial(_tick_round, tick, number + 1))
        peers: dict[str, dict] | None = None
        if with_etcd:
            tick(f"round {number + 1}: etcd {SIZE} B x{INFLIGHT}")
            peers = {"etcd": _run_etcd(duration_s, base)}
        per_round.append({"figures": figures(cluster, peers), "throughput": cluster["throughput"],
                          "etcd": None if peers is None else peers["etcd"]})
    keys = ("kvclient_writes_per_s", "kvclient_http_writes_per_s", "http_writes_per_s",
            "engine_writes_per_s",
            "etcd_gateway_writes_per_s", "ratio_kvclient_to_etcd", "ratio_kvclient_to_engine")
    medians: dict[str, float | None] = {}
    for key in keys:
        values = [float(r["figures"][key]) for r in per_round
                  if r["figures"][key] is not None]
        medians[key] = statistics.median(values) if values else None
    return {"rounds": per_round, "median": medians, "duration_s": duration_s,
            "goal_ratio_to_etcd": GOAL_RATIO_TO_ETCD,
            "goal_ratio_to_engine": GOAL_RATIO_TO_ENGINE}


def _tick_round(tick: Callable[[str], None], number: int, label: str) -> None:
    tick(f"round {number}: {label}")


def _run_etcd(duration_s: float, base: str | None) -> dict:
    from pyraft.bench.peers import etcd_peer

    reason = etcd_peer.available()
    if reason:
        return skipped("etcd", reason)
    workdir = tempfile.mkdtemp(prefix="etcd-", dir=base)
    try:
        result = check_result(etcd_peer.run(workdir, size=SIZE, inflight=INFLIGHT, rate=None,
                                            duration_s=duration_s))
    except Exception as error:  # reported, never made up
        result = skipped("etcd", f"{type(error).__name__}: {error}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    spec = {"kind": "closed", "size": SIZE, "inflight": INFLIGHT, "rate": None, "journal": True}
    return {"system": "etcd", "runs": [{"spec": spec, "result": result}]}
