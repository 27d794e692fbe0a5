"""Peers measured in the same run with the same load shape, and the ratios pyraft / peer.

A peer driver is a module ``pyraft.bench.peers.<name>_peer`` with ``available() -> str |
None`` (None when it can run, else why not), ``run(workdir, *, size, inflight, rate,
duration_s, journal) -> result`` and ``peak(workdir, *, size, duration_s, journal) -> result``
(results of :mod:`pyraft.bench.stats`). A driver whose functions take ``durable`` instead of
``journal`` gets that; one that takes neither is always durable and runs the durable
workloads only. A peer that is missing, unavailable or failing is
reported as skipped with the reason; no figure is ever made up for it.

Peers at their best (issue 18): a driver with ``CONFIGS`` (name -> settings) and ``run`` /
``peak`` taking ``config`` is run in each configuration for every load shape (PySyncObj: its
default ``SyncObjConf`` and its documented latency configuration); pyraft is compared with the
better of them for that shape (:func:`best_run`), and each ratio says which configuration
and durability the peer's figure had. A driver without ``CONFIGS`` runs once, in its
``DEFAULT_CONFIG`` (etcd: its defaults).
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


def configurations(driver) -> list[str | None]:
    """The configurations a driver runs (None: its only one, passed as no keyword)."""
    names = list(getattr(driver, "CONFIGS", {}) or {})
    return names or [None]


def _config_text(driver, config: str | None) -> str:
    if config is None:
        return str(getattr(driver, "DEFAULT_CONFIG", "defaults"))
    return str(getattr(driver, "CONFIG_TEXT", {}).get(config, config))


def run_peers(plan: Plan, base: str | None, tick: Callable[[str], None],
              names: tuple[str, ...] = PEERS) -> dict[str, dict]:
    """Every peer's results: ``{name: {"skipped": reason} | {"runs": [{"spec", "config",
    "config_text", "result"}]}}``, one run per load shape and configuration.
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
            for config in configurations(driver):
                chosen = {} if config is None else {"config": config}
                workdir = tempfile.mkdtemp(prefix=f"{name}-", dir=base)
                try:
                    if spec["kind"] == "peak":
                        result = driver.peak(workdir, size=spec["size"],
                                             duration_s=plan.duration_s, **chosen,
                                             **durability(driver.peak, spec["journal"]))
                    else:
                        result = driver.run(workdir, size=spec["size"],
                                            inflight=spec["inflight"], rate=spec["rate"],
                                            duration_s=plan.duration_s, **chosen,
                                            **durability(driver.run, spec["journal"]))
                    result = check_result(result)
                except Exception as error:  # reported per workload, the run goes on
                    result = skipped(name, f"{type(error).__name__}: {error}")
                finally:
                    shutil.rmtree(workdir, ignore_errors=True)
                runs.append({"spec": spec, "config": config or "default",
                             "config_text": _config_text(driver, config), "result": result})
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


def better(spec: dict, a: dict, b: dict) -> bool:
    """Whether result ``a`` is better than ``b`` for load shape ``spec``: lower p50 latency
    for an open loop (the offered load is fixed), more writes/s otherwise."""
    if spec.get("kind") == "open":
        return bool(a["latency_ms"]["p50"] < b["latency_ms"]["p50"])
    return bool(a["writes_per_s"] > b["writes_per_s"])


def best_run(runs: list[dict], spec_match: dict) -> dict | None:
    """Of the measured runs whose spec matches ``spec_match``, the best (:func:`better`), as
    ``{"spec", "config", "config_text", "result", "others": {config: summary}}``; None when
    none was measured. ``others``: every configuration's writes/s and p50 (or why skipped)."""
    matching = [r for r in runs if all(r["spec"].get(k) == v for k, v in spec_match.items())]
    measured = [r for r in matching if "skipped" not in r["result"]]
    if not measured:
        return None
    best = measured[0]
    for run in measured[1:]:
        if better(run["spec"], run["result"], best["result"]):
            best = run
    others = {}
    for run in matching:
        result = run["result"]
        others[run.get("config", "default")] = (
            {"skipped": result["skipped"]} if "skipped" in result else
            {"writes_per_s": result["writes_per_s"], "p50_ms": result["latency_ms"]["p50"],
             "mode": result["mode"]})
    return {**best, "config": best.get("config", "default"),
            "config_text": best.get("config_text", best.get("config", "default")),
            "configs": others}


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def ratios(cluster: dict, peers: dict[str, dict]) -> list[dict]:
    """Per peer and load shape: pyraft's and the peer's writes/s and p50/p99 latency, and
    each ratio pyraft / peer (throughput: higher is better for pyraft; latency: lower is),
    against the peer's best configuration for that shape (``peer_config``, with every
    configuration's figures in ``peer_configs``)."""
    rows = []
    for name, entry in peers.items():
        runs = entry.get("runs", [])
        specs: list[dict] = []
        for run in runs:
            if run["spec"] not in specs:
                specs.append(run["spec"])
        for spec in specs:
            best = best_run(runs, spec)
            ours = pyraft_for(spec, cluster)
            row: dict = {"peer": name, "spec": spec}
            if ours is None or best is None:
                theirs = next(r["result"] for r in runs if r["spec"] == spec)
                row["skipped"] = (theirs.get("skipped") if best is None
                                  else "pyraft did not run this workload")
            else:
                theirs = best["result"]
                row.update({
                    "pyraft_mode": ours["mode"],
                    "peer_mode": theirs["mode"],
                    "peer_errors": theirs["errors"],
                    "peer_config": best["config"],
                    "peer_config_text": best["config_text"],
                    "peer_configs": best["configs"],
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
