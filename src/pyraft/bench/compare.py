"""Peers measured in the same run with the same load shape, and the ratios pyraft / peer.

A peer driver is a module ``pyraft.bench.peers.<name>_peer`` with ``available() -> str |
None`` (None when it can run, else why not), ``run(workdir, *, size, inflight, rate,
duration_s, journal) -> result`` and ``peak(workdir, *, size, duration_s, journal) -> result``
(results of :mod:`pyraft.bench.stats`). A driver whose functions take ``durable`` instead of
``journal`` gets that; one that takes neither is always durable and runs the durable
workloads only. A peer that is missing, unavailable or failing is
reported as skipped with the reason; no figure is ever made up for it.
"""

from __future__ import annotations

import importlib
import inspect
import shutil
import tempfile
from collections.abc import Callable

from pyraft.bench.stats import check_result, skipped
from pyraft.bench.workloads import DURABLE, MEMORY, Plan

PEERS = ("pysyncobj", "etcd")


def peer_specs(plan: Plan) -> list[dict]:
    """The workloads run on every peer: pyraft's engine ones (closed loop), the open-loop
    rates and the peak, each with ``journal`` (durable) or not."""
    specs = [{"kind": "closed", "size": s["size"], "inflight": s["inflight"], "rate": None,
              "journal": s["mode"] == DURABLE}
             for s in plan.throughput if s["api"] == "engine"]
    specs += [{"kind": "open", "size": 16, "inflight": None, "rate": rate, "journal": True}
              for rate in plan.rates]
    if plan.peak:
        specs.append({"kind": "peak", "size": 16, "inflight": None, "rate": None,
                      "journal": True})
    return specs


def _driver(name: str):
    try:
        return importlib.import_module(f"pyraft.bench.peers.{name}_peer"), None
    except ImportError as error:
        return None, f"driver not available ({error})"


def durability(function, journal: bool) -> dict:
    """The keyword that asks ``function`` for a durable (``journal``) run, if it takes one;
    raises ValueError when it cannot run non-durable."""
    parameters = inspect.signature(function).parameters
    for name in ("journal", "durable"):
        if name in parameters:
            return {name: journal}
    if not journal:
        raise ValueError("this peer has no non-durable mode")
    return {}


def run_peers(plan: Plan, base: str | None, tick: Callable[[str], None],
              names: tuple[str, ...] = PEERS) -> dict[str, dict]:
    """Every peer's results: ``{name: {"skipped": reason} | {"runs": [{"spec", "result"}]}}``.
    """
    out: dict[str, dict] = {}
    for name in names:
        tick(f"peer {name}")
        driver, reason = _driver(name)
        if driver is not None:
            try:
                reason = driver.available()
            except Exception as error:  # a broken driver is reported, not fatal
                reason = f"available() failed: {type(error).__name__}: {error}"
        if reason:
            out[name] = skipped(name, reason)
            continue
        runs = []
        for spec in peer_specs(plan):
            workdir = tempfile.mkdtemp(prefix=f"{name}-", dir=base)
            try:
                if spec["kind"] == "peak":
                    result = driver.peak(workdir, size=spec["size"], duration_s=plan.duration_s,
                                         **durability(driver.peak, spec["journal"]))
                else:
                    result = driver.run(workdir, size=spec["size"], inflight=spec["inflight"],
                                        rate=spec["rate"], duration_s=plan.duration_s,
                                        **durability(driver.run, spec["journal"]))
                result = check_result(result)
            except Exception as error:  # reported per workload, the run goes on
                result = skipped(name, f"{type(error).__name__}: {error}")
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            runs.append({"spec": spec, "result": result})
        out[name] = {"system": name, "runs": runs}
    return out


def pyraft_for(spec: dict, cluster: dict) -> dict | None:
    """pyraft's result for a peer spec, from the cluster section (None if not measured)."""
    if spec["kind"] == "peak":
        peaks = [r for r in cluster.get("peak", []) if "skipped" not in r]
        return max(peaks, key=lambda r: r["writes_per_s"], default=None)
    mode = DURABLE if spec["journal"] else MEMORY
    section = cluster.get("throughput" if spec["kind"] == "closed" else "latency", [])
    for result in section:
        workload = result.get("workload", {})
        if (result.get("mode") == mode and workload.get("api") == "engine"
                and workload.get("size") == spec["size"]
                and (workload.get("rate") == spec["rate"] if spec["kind"] == "open"
                     else workload.get("inflight") == spec["inflight"])):
            return result
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def ratios(cluster: dict, peers: dict[str, dict]) -> list[dict]:
    """Per peer workload: pyraft's and the peer's writes/s and p50/p99 latency, and each
    ratio pyraft / peer (throughput: higher is better for pyraft; latency: lower is)."""
    rows = []
    for name, entry in peers.items():
        for run in entry.get("runs", []):
            spec, theirs = run["spec"], run["result"]
            ours = pyraft_for(spec, cluster)
            row = {"peer": name, "spec": spec}
            if ours is None or "skipped" in theirs:
                row["skipped"] = theirs.get("skipped") or "pyraft did not run this workload"
            else:
                row.update({
                    "pyraft_mode": ours["mode"],
                    "peer_mode": theirs["mode"],
                    "pyraft_writes_per_s": ours["writes_per_s"],
                    "peer_writes_per_s": theirs["writes_per_s"],
                    "ratio_writes_per_s": _ratio(ours["writes_per_s"], theirs["writes_per_s"]),
                    "ratio_p50_latency": _ratio(ours["latency_ms"]["p50"],
                                                theirs["latency_ms"]["p50"]),
                    "ratio_p99_latency": _ratio(ours["latency_ms"]["p99"],
                                                theirs["latency_ms"]["p99"]),
                })
            rows.append(row)
    return rows
