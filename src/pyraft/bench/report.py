"""The goals judged from one run's figures, the terminal summary, and report.json.

:func:`goals` judges issue 18's goals, each a ratio of two figures of the same run (the
compiled build against the pure build, ``PYRAFT_PURE_CORE=1``; pyraft against the
replication floor; pyraft against PySyncObj at its best); :func:`issue7_goals` the earlier
goals of issue 7 (absolute throughput, failover). Each goal is ``{"goal", "status",
"figures", "ratio", "target"}`` with status ``"met"``, ``"not met"`` or ``"not measured"``
(then ``figures["reason"]`` says what was missing); ``ratio`` is the measured ratio and
``target`` the goal's (``ratio >= target``, or ``<=`` where ``"at_most"``). Goals are judged
only from figures measured in the same run; nothing here measures anything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from pyraft.bench.compare import best_run, pyraft_for

THROUGHPUT_GOAL_PER_S = 100_000
THROUGHPUT_PEER_RATIO = 20.0
PEAK_PEER_RATIO = 10.0
LATENCY_RATIO = 2.0
#: goal 3's workload: one 16-byte write in flight, durable, through the engine's API
ONE_WRITE_DURABLE = {"kind": "closed", "size": 16, "inflight": 1, "rate": None, "journal": True}
ONE_WRITE_DURABLE_MODE = "durable (fdatasync)"
FAILOVER_MEDIAN_TIMEOUTS = 2.0
FAILOVER_WORST_TIMEOUTS = 4.0


#: issue 18's targets (ratios of figures measured in the same run)
CPU_PURE_RATIO = 3.0
FLOOR_RATIO = 1.5
INFLIGHT_PURE_RATIO = 2.0
PEAK_PYSYNCOBJ_RATIO = 100.0
CORE_PURE_RATIO = 3.0
SIM_PURE_RATIO = 2.0


def _goal(text: str, status: str, figures: dict, ratio: float | None = None,
          target: float | None = None, at_most: bool = False) -> dict:
    out = {"goal": text, "status": status, "figures": figures, "ratio": ratio,
           "target": target}
    if at_most:
        out["at_most"] = True
    return out


def _unmeasured(text: str, reason: str) -> dict:
    return _goal(text, "not measured", {"reason": reason})


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def _peer_result(peers: dict, name: str, spec_match: dict) -> dict | None:
    """The peer's best result for the load shape (its best configuration), or the skipped
    result of its first run when none was measured, or None when it did not run it."""
    runs = peers.get(name, {}).get("runs", [])
    best = best_run(runs, spec_match)
    if best is not None:
        return {**best["result"], "config": best["config"],
                "config_text": best["config_text"], "configs": best["configs"]}
    for run in runs:
        if all(run["spec"].get(k) == v for k, v in spec_match.items()):
            return run["result"]
    return None


def _judge(text: str, ratio: float | None, target: float, figures: dict,
           at_most: bool = False) -> dict:
    if ratio is None:
        return _goal(text, "not measured", {**figures, "reason": "a figure was zero"},
                     None, target, at_most)
    ok = ratio <= target if at_most else ratio >= target
    return _goal(text, _met(ok), figures, ratio, target, at_most)


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _build_mismatch(report: dict) -> str | None:
    """Why the two builds' figures cannot be compared (a process did not get the build it
    was started for), or None."""
    for build, facts in (report.get("builds") or {}).items():
        if isinstance(facts, dict) and facts.get("as_expected") is False:
            return f"the {build} build's processes reported build {facts.get('build')!r}"
    return None


def goals(report: dict) -> list[dict]:
    """Issue 18's goals, each a ratio of two figures of the same run, judged from
    ``report``: the compiled build against the pure build (``pure_build``, ``core``,
    ``simulator``), against the replication floor, and against PySyncObj at its best."""
    cluster = report.get("cluster", {})
    pure = report.get("pure_build", {})
    reference = report.get("reference", {})
    mismatch = _build_mismatch(report)
    out = []

    text = (f"CPU per write (user), 1 write in flight, durable: >= {CPU_PURE_RATIO:g}x lower "
            f"than the pure build, leader and each follower")
    ours, theirs = pyraft_for(ONE_WRITE_DURABLE, cluster), pyraft_for(ONE_WRITE_DURABLE, pure)
    cpu, cpu_pure = (ours or {}).get("cpu_us_per_write"), (theirs or {}).get("cpu_us_per_write")
    if mismatch or not cpu or not cpu_pure:
        out.append(_unmeasured(text, mismatch or "a build's one-write load or its CPU times "
                                                 "were not measured"))
    else:
        followers = [_div(p["user"], c["user"])
                     for p, c in zip(sorted(cpu_pure["followers"], key=lambda f: f["user"]),
                                     sorted(cpu["followers"], key=lambda f: f["user"]))]
        leader = _div(cpu_pure["leader"]["user"], cpu["leader"]["user"])
        parts = [leader, *followers]
        worst = None if any(p is None for p in parts) else min(parts)  # type: ignore[type-var]
        total = _div(cpu_pure["leader"]["user"] + cpu_pure["leader"]["system"],
                     cpu["leader"]["user"] + cpu["leader"]["system"])
        out.append(_judge(text, worst, CPU_PURE_RATIO, {
            "compiled_us": cpu, "pure_us": cpu_pure, "leader_ratio": leader,
            "follower_ratios": followers, "leader_ratio_user_and_system": total,
            "note": "the leader's CPU includes the load generator running in it"}))

    text = (f"1 write in flight, durable: p50 <= {FLOOR_RATIO:g}x the replication floor "
            f"measured in the same run")
    floor = reference.get("replication_floor_ms")
    if ours is None or not floor:
        out.append(_unmeasured(text, "the one-write load or the replication floor did not run"))
    else:
        p50 = ours["latency_ms"]["p50"]
        figures = {"p50_ms": p50, "replication_floor_ms": floor}
        if theirs is not None:
            figures.update(pure_p50_ms=theirs["latency_ms"]["p50"],
                           pure_p50_over_floor=theirs["latency_ms"]["p50"] / floor)
        out.append(_judge(text, p50 / floor, FLOOR_RATIO, figures, at_most=True))

    for inflight in (16, 256):
        text = (f"{inflight} writes in flight, 16 B, durable: >= {INFLIGHT_PURE_RATIO:g}x the "
                f"pure build's writes/s")
        spec = {**ONE_WRITE_DURABLE, "inflight": inflight}
        ours_n, theirs_n = pyraft_for(spec, cluster), pyraft_for(spec, pure)
        if mismatch or ours_n is None or theirs_n is None:
            out.append(_unmeasured(text, mismatch or "a build did not run this load"))
        else:
            figures = {"compiled_writes_per_s": ours_n["writes_per_s"],
                       "pure_writes_per_s": theirs_n["writes_per_s"],
                       "compiled_p50_ms": ours_n["latency_ms"]["p50"],
                       "pure_p50_ms": theirs_n["latency_ms"]["p50"]}
            counted = report.get("instructions_256") or {}
            if inflight == 256 and "ceiling" in counted:  # instructions.BOUND_INFLIGHT
                figures["instructions_per_write"] = _bound_figures(counted)
            out.append(_judge(text, _div(ours_n["writes_per_s"], theirs_n["writes_per_s"]),
                              INFLIGHT_PURE_RATIO, figures))

    text = (f"peak (batched API): >= {PEAK_PYSYNCOBJ_RATIO:g}x PySyncObj's peak at its best "
            f"configuration, same run")
    ours = pyraft_for({"kind": "peak"}, cluster)
    theirs = _peer_result(report.get("peers", {}), "pysyncobj", {"kind": "peak"})
    if ours is None or theirs is None or "skipped" in theirs:
        reason = ("pyraft's peak did not run" if ours is None else
                  (theirs or report.get("peers", {}).get("pysyncobj") or {}).get(
                      "skipped", "PySyncObj did not run"))
        out.append(_unmeasured(text, reason))
    else:
        out.append(_judge(text, _div(ours["writes_per_s"], theirs["writes_per_s"]),
                          PEAK_PYSYNCOBJ_RATIO, {
                              "pyraft_peak_writes_per_s": ours["writes_per_s"],
                              "pyraft_mode": ours["mode"],
                              "pysyncobj_peak_writes_per_s": theirs["writes_per_s"],
                              "pysyncobj_mode": theirs["mode"],
                              "pysyncobj_config": theirs.get("config"),
                              "pysyncobj_configs": theirs.get("configs")}))

    for key, target, text in (
            ("core", CORE_PURE_RATIO, f"core alone (benchmarks/test_bench_core.py): >= "
                                      f"{CORE_PURE_RATIO:g}x the pure build's committed "
                                      f"entries per CPU second"),
            ("simulator", SIM_PURE_RATIO, f"simulator: >= {SIM_PURE_RATIO:g}x the pure "
                                          f"build's seeds per CPU minute")):
        entry = report.get(key) or {}
        if mismatch or "ratio" not in entry:
            out.append(_unmeasured(text, mismatch or entry.get("error")
                                   or entry.get("skipped") or "not run"))
        else:
            out.append(_judge(text, entry["ratio"], target, {
                "compiled": entry["compiled"]["median"], "pure": entry["pure"]["median"],
                "unit": entry.get("unit"), "command": entry.get("command")}))
    targets = (CPU_PURE_RATIO, FLOOR_RATIO, INFLIGHT_PURE_RATIO, INFLIGHT_PURE_RATIO,
               PEAK_PYSYNCOBJ_RATIO, CORE_PURE_RATIO, SIM_PURE_RATIO)
    for goal, target in zip(out, targets, strict=True):  # unmeasured goals keep theirs too
        goal["target"] = target
    out[1]["at_most"] = True
    return out


def _bound_figures(counted: dict) -> dict:
    """What the count of instructions at 256 in flight (``instructions.bounded``) says of
    that goal: the two builds' counts and the floor, each as a ratio (pure over compiled)."""
    compiled, pure = counted["compiled"]["median"], counted["pure"]["median"]
    above = counted["above_floor"]
    return {"compiled": compiled, "pure": pure, "floor": counted["floor"],
            "ratio": _div(pure, compiled),
            "above_floor_ratio": _div(above["pure"], above["compiled"]),
            "ceiling": counted["ceiling"],
            "note": "3 members and the load in one process (callgrind); the floor is the load "
                    "against a member that does no work (its tasks, futures and wake-ups), the "
                    "same in both builds: the ceiling, the pure build's count over it, is the "
                    "ratio of the counts were the compiled build's own code free"}


def issue7_goals(report: dict) -> list[dict]:
    """The four goals of issue 7 (the first in two parts), judged from ``report``."""
    cluster = report.get("cluster", {})
    peers = report.get("peers", {})
    reference = report.get("reference", {})
    out = []

    text = "1a. 256 writes in flight, 16 B, durable, engine API: >= 100,000 committed writes/s"
    spec = {"kind": "closed", "size": 16, "inflight": 256, "rate": None, "journal": True}
    ours = pyraft_for(spec, cluster)
    if ours is None:
        out.append(_unmeasured(text, "the workload did not run"))
    else:
        value = ours["writes_per_s"]
        out.append(_goal(text, _met(value >= THROUGHPUT_GOAL_PER_S), {"writes_per_s": value},
                         value / THROUGHPUT_GOAL_PER_S))

    text = "1b. same workload: >= 20x PySyncObj with the same load shape, same run"
    theirs = _peer_result(peers, "pysyncobj", spec)
    if ours is None or theirs is None or "skipped" in theirs:
        reason = ("pyraft did not run it" if ours is None else
                  (theirs or peers.get("pysyncobj") or {}).get("skipped", "peer not run"))
        out.append(_unmeasured(text, reason))
    else:
        ratio = ours["writes_per_s"] / theirs["writes_per_s"] if theirs["writes_per_s"] else None
        out.append(_goal(text, _met(ratio is not None and ratio >= THROUGHPUT_PEER_RATIO),
                         {"pyraft_writes_per_s": ours["writes_per_s"],
                          "pysyncobj_writes_per_s": theirs["writes_per_s"],
                          "pyraft_mode": ours["mode"], "pysyncobj_mode": theirs["mode"]}, ratio))

    text = "2. peak throughput (batched API): >= 10x PySyncObj's peak, same run"
    ours = pyraft_for({"kind": "peak"}, cluster)
    theirs = _peer_result(peers, "pysyncobj", {"kind": "peak"})
    if ours is None or theirs is None or "skipped" in theirs:
        reason = ("pyraft's peak did not run" if ours is None else
                  (theirs or peers.get("pysyncobj") or {}).get("skipped", "peer not run"))
        figures = {"reason": reason}
        if ours is not None:
            figures["pyraft_peak_writes_per_s"] = ours["writes_per_s"]
        out.append(_goal(text, "not measured", figures))
    else:
        ratio = ours["writes_per_s"] / theirs["writes_per_s"] if theirs["writes_per_s"] else None
        out.append(_goal(text, _met(ratio is not None and ratio >= PEAK_PEER_RATIO),
                         {"pyraft_peak_writes_per_s": ours["writes_per_s"],
                          "pysyncobj_peak_writes_per_s": theirs["writes_per_s"],
                          "pyraft_mode": ours["mode"], "pysyncobj_mode": theirs["mode"]},
                         ratio))

    text = ("3. one write in flight, durable: commit latency p50 <= 2x (one raw fdatasync + "
            "one loopback round trip), same run")
    ours = pyraft_for(ONE_WRITE_DURABLE, cluster)
    sync_ms, rtt_ms = reference.get("fdatasync_4k_ms"), reference.get("loopback_rtt_ms")
    if ours is None or sync_ms is None or rtt_ms is None:
        out.append(_unmeasured(text, "the workload or a reference did not run"))
    else:
        bound = sync_ms + rtt_ms
        p50 = ours["latency_ms"]["p50"]
        figures = {"p50_ms": p50, "fdatasync_ms": sync_ms, "loopback_rtt_ms": rtt_ms}
        floor = reference.get("replication_floor_ms")
        if floor:  # context: the same write among three processes with no consensus logic
            figures.update(replication_floor_ms=floor, p50_over_floor=p50 / floor)
        if reference.get("work_budget_us") is not None:  # what the bound leaves per member
            figures["work_budget_us"] = reference["work_budget_us"]
        if ours.get("cpu_us_per_write"):  # what pyraft's members spent per write
            figures["cpu_us_per_write"] = ours["cpu_us_per_write"]
        out.append(_goal(text, _met(p50 <= LATENCY_RATIO * bound), figures, p50 / bound))

    text = "4. failover: median < 2x the upper election timeout, worst < 4x"
    fail = cluster.get("failover")
    if not fail or not fail.get("trials"):
        out.append(_unmeasured(text, "no failover trials ran"))
    else:
        upper = fail["election_timeout_ms"][1]
        ok = (fail["median_ms"] < FAILOVER_MEDIAN_TIMEOUTS * upper
              and fail["max_ms"] < FAILOVER_WORST_TIMEOUTS * upper)
        out.append(_goal(text, _met(ok), {"median_ms": fail["median_ms"],
                                          "max_ms": fail["max_ms"], "trials": fail["trials"],
                                          "election_timeout_upper_ms": upper},
                         fail["median_ms"] / upper))
    return out


# ---- terminal summary -------------------------------------------------------------------------
def _number(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.{digits}f}"


def describe(result: dict) -> str:
    """A short name of a result's workload, e.g. ``engine durable 16 B x256``."""
    workload = result.get("workload", {})
    mode = str(result.get("mode"))
    mode = "durable" if mode == "durable (fdatasync)" else mode
    name = f"{result.get('system')} {workload.get('api')} {mode} {workload.get('size')} B"
    if workload.get("operation", "write") != "write":
        name = f"{result.get('system')} {workload['operation']} {mode}"
    if result.get("config") not in (None, "default"):  # a peer in another configuration
        name = name.replace(f"{result.get('system')} ", f"{result.get('system')} "
                                                        f"[{result['config']}] ", 1)
    if workload.get("rate") is not None:
        return f"{name} open {workload['rate']:g}/s"
    batch = workload.get("batch", 1)
    return f"{name} x{workload.get('inflight')}" + (f" batch {batch}" if batch != 1 else "")


def table(rows: Iterable[list[str]], header: list[str]) -> str:
    rows = [header, *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def all_results(report: dict) -> list[dict]:
    """Every measured (not skipped) load result of the report, pyraft's then the peers'."""
    cluster = report.get("cluster", {})
    out = [r for key in ("throughput", "latency", "peak", "reads")
           for r in cluster.get(key, []) if "skipped" not in r]
    out += [r for r in (report.get("pure_build") or {}).get("throughput", [])
            if "skipped" not in r]
    for entry in report.get("peers", {}).values():
        out += [run["result"] for run in entry.get("runs", []) if "skipped" not in run["result"]]
    return out


def summary(report: dict) -> str:
    """The summary printed on the terminal: every load, failover, catch-up, ratios, goals."""
    parts = []
    rows = [[describe(r), _number(r["writes_per_s"]), _number(r["latency_ms"]["p50"]),
             _number(r["latency_ms"]["p99"]), _number(r["latency_ms"]["p999"]),
             _number(r["latency_ms"]["max"]), str(r["errors"]),
             "-" if r.get("leader_changes") is None else str(r["leader_changes"])]
            for r in all_results(report)]
    if rows:
        parts.append(table(rows, ["workload", "ops/s", "p50 ms", "p99 ms", "p99.9 ms",
                                  "max ms", "errors", "leader changes"]))
    changed = [r for r in all_results(report) if r.get("leader_changes")]
    if changed:
        parts.append("leader changes during loads (each load went on through the new "
                     "leader): " + ", ".join(f"{describe(r)}: {r['leader_changes']}"
                                             for r in changed))
    cluster = report.get("cluster", {})
    fail = cluster.get("failover")
    if fail and fail.get("trials"):
        parts.append(f"failover ({fail['trials']} trials, SIGKILL of the leader to the next "
                     f"committed write): median {fail['median_ms']:.0f} ms, worst "
                     f"{fail['max_ms']:.0f} ms")
    catches = cluster.get("catchup") or []
    for catch in [catches] if isinstance(catches, dict) else catches:  # a dict in older reports
        if "seconds" not in catch:
            continue
        every = catch.get("snapshot_entries")
        how = (f"the snapshot at {catch['snapshot_index']:,}, then "
               if catch["snapshot_used"] and "snapshot_index" in catch else "")
        parts.append(f"catch-up of a new member over {catch['bytes'] / 2**20:,.1f} MiB of log "
                     f"({'no snapshots' if not every else f'a snapshot every {every:,} entries'}"
                     f"): {catch['seconds']:.2f} s; {how}replication at "
                     f"{catch['mb_per_s']:,.1f} MB/s")
    install = cluster.get("snapshot_install") or {}
    if "install_seconds" in install:
        parts.append(f"snapshot install of {install['snapshot_bytes'] / 2**20:,.0f} MiB by a "
                     f"new member: {install['install_seconds']:.2f} s "
                     f"({install['mb_per_s']:,.1f} MB/s); resident set rise: leader "
                     f"{install['leader_rss_rise_bytes'] / 2**20:,.1f} MiB, follower "
                     f"{install['follower_rss_rise_bytes'] / 2**20:,.1f} MiB (goal: 64 MiB)")
    reference = report.get("reference", {})
    if reference:
        parts.append("reference: " + ", ".join(f"{k} {_number(v, 4)}"
                                                for k, v in reference.items()))
    budget = report.get("latency_budget") or {}
    if budget.get("points"):
        line = ("latency budget: the replication floor with W us of CPU per member per write: "
                + ", ".join(f"W={w:g}: {p50:.3f} ms" for w, p50 in budget["points"])
                + f"; goal 3's bound {budget['bound_ms']:.3f} ms leaves W = "
                + _number(budget.get("work_budget_us")) + " us")
        one = pyraft_for(ONE_WRITE_DURABLE, report.get("cluster", {}))
        cpu = one.get("cpu_us_per_write") if one else None
        if cpu:
            line += ("; pyraft at one write in flight spent (user us per write) leader "
                     f"{cpu['leader']['user']:.0f} (with the load generator), followers "
                     + " / ".join(f"{f['user']:.0f}" for f in cpu["followers"]))
        parts.append(line)
    for name, entry in report.get("peers", {}).items():
        if "skipped" in entry:
            parts.append(f"peer {name}: skipped ({entry['skipped']})")
    ratio_rows = [[f"{r['peer']} {r['spec']['kind']} {r['spec']['size']} B "
                   + (f"{r['spec']['rate']:g}/s" if r["spec"]["rate"] else
                      f"x{r['spec']['inflight'] or 'best'}")
                   + (" durable" if r["spec"]["journal"] else " memory")
                   + (f" (peer: {r['peer_mode']}, {r['peer_config']})" if r.get("peer_mode")
                      else ""),
                   _number(r.get("ratio_writes_per_s")), _number(r.get("ratio_p50_latency")),
                   r.get("skipped") or (f"peer: {r['peer_errors']} errors"
                                        if r.get("peer_errors") else "")]
                  for r in report.get("ratios", [])]
    if ratio_rows:
        parts.append(table(ratio_rows, ["pyraft / peer (its best configuration)", "writes/s",
                                        "p50", "note"]))
    build_rows = builds_rows(report)
    if build_rows:
        facts = report.get("builds") or {}
        parts.append("pure build vs compiled build, same run (pyraft info in each build's "
            "environment: " + str((facts.get("pure") or {}).get("build", "?")) + "; "
            + str((facts.get("compiled") or {}).get("build", "?")) + "):\n"
            + table(build_rows, ["load", "pure", "compiled", "compiled / pure"]))
    kernel = report.get("kernels", {})
    if "skipped" in kernel:
        parts.append(f"kernels: skipped ({kernel['skipped'][:200]})")
    elif kernel.get("groups"):
        krows = [[group, entry.get("compiled", "-"), _number(entry["median_s"].get(
                  entry.get("compiled"), None) and entry["median_s"][entry["compiled"]] * 1e6),
                  ", ".join(f"{k} {v:.1f}x" for k, v in entry["ratio_to_compiled"].items())]
                 for group, entry in kernel["groups"].items()]
        parts.append(table(krows, ["kernel group", "compiled", "median us", "reference/compiled"]))
    goal_rows = [[g["goal"], _number(g["ratio"]),
                  "-" if g.get("target") is None else
                  ("<= " if g.get("at_most") else ">= ") + f"{g['target']:g}", g["status"]]
                 for g in report.get("goals", [])]
    if goal_rows:
        parts.append("goals of issue 18 (ratios measured in this run):\n"
                     + table(goal_rows, ["goal", "ratio", "target", "status"]))
    old_rows = [[g["goal"][:96], _number(g["ratio"]), g["status"]]
                for g in report.get("goals_issue7", [])]
    if old_rows:
        parts.append("goals of issue 7:\n" + table(old_rows, ["goal", "ratio", "status"]))
    return "\n\n".join(parts)


def _cpu_text(cpu: dict | None) -> str:
    if not cpu:
        return "-"
    return (f"{cpu['leader']['user']:.0f} / "
            + " / ".join(f"{f['user']:.0f}" for f in cpu["followers"]))


def builds_rows(report: dict) -> list[list[str]]:
    """The summary's rows of the pure build against the compiled one: each load both ran
    (writes/s, p50, user CPU per write leader / followers), the core alone, the simulator,
    the instructions per write (callgrind)."""
    rows = []
    cluster, pure = report.get("cluster", {}), report.get("pure_build", {})
    for theirs in pure.get("throughput", []):
        if "skipped" in theirs:
            continue
        workload = theirs["workload"]
        spec = {"kind": "closed", "size": workload["size"], "inflight": workload["inflight"],
                "rate": None, "journal": theirs["mode"] == ONE_WRITE_DURABLE_MODE}
        ours = pyraft_for(spec, cluster)
        name = describe(theirs).replace(f"{theirs['system']} ", "", 1)
        ours_rate = None if ours is None else ours["writes_per_s"]
        ours_p50 = None if ours is None else ours["latency_ms"]["p50"]
        rows.append([f"{name} writes/s", _number(theirs["writes_per_s"]), _number(ours_rate),
                     _number(_div(ours_rate, theirs["writes_per_s"]))])
        rows.append([f"{name} p50 ms", _number(theirs["latency_ms"]["p50"]), _number(ours_p50),
                     _number(_div(ours_p50, theirs["latency_ms"]["p50"]))])
        if workload["inflight"] == 1:
            cpu, cpu_pure = (ours or {}).get("cpu_us_per_write"), theirs.get("cpu_us_per_write")
            rows.append([f"{name} user us/write (leader / followers)", _cpu_text(cpu_pure),
                         _cpu_text(cpu),
                         _number(cpu and cpu_pure and _div(cpu["leader"]["user"],
                                                           cpu_pure["leader"]["user"]))])
    for key in ("core", "simulator", "instructions", "instructions_256"):
        entry = report.get(key) or {}
        if "ratio" in entry:
            rows.append([f"{key}: {entry['unit']}", _number(entry["pure"]["median"]),
                         _number(entry["compiled"]["median"]), _number(entry["ratio"])])
        elif entry:
            rows.append([f"{key}", "-", "-", str(entry.get("error") or entry.get("skipped"))])
        if "ceiling" in entry:
            above = entry["above_floor"]
            rows.append([f"{key}: above the floor of {_number(entry['floor'])} (the load alone)",
                         _number(above["pure"]), _number(above["compiled"]),
                         _number(above["ratio"])])
            rows.append([f"{key}: ceiling (pure / floor)", "-", "-",
                         _number(entry["ceiling"])])
    return rows


def write_json(report: dict, directory: str) -> str:
    """Write ``report.json`` in ``directory`` (atomically: a temporary file, then rename)."""
    path = os.path.join(directory, "report.json")
    with open(path + ".tmp", "w") as f:
        json.dump(report, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(path + ".tmp", path)
    return path


__all__ = ["goals", "issue7_goals", "builds_rows", "summary", "write_json", "describe", "table",
           "all_results"]
