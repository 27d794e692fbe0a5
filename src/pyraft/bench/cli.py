"""``pyraft bench [all|kernels|cluster|peers|goals|builds|snapshot|elections|client]``: run
the benchmark suite.

- ``kernels``: the pytest-benchmark kernel benchmarks (``benchmarks/``), with the references
  measured beside them;
- ``cluster``: pyraft's cluster workloads (3 member processes on 127.0.0.1): throughput,
  open-loop latency, batched peak, reads, failover, catch-up, and the raw references (one
  4 KiB write+fdatasync on ``--dir``, one loopback round trip, and the replication floor:
  one durable write among three processes with no consensus logic); beside it, the pure
  build (``PYRAFT_PURE_CORE=1``, system ``pyraft-pure``) with the same durable engine loads
  (16 B, 1/16/256 in flight), and ``builds``;
- ``builds``: the core alone (``benchmarks/test_bench_core.py``) and the simulator
  (``python -m pyraft.testing.sim``), each once per build and round in a subprocess; with
  valgrind installed, instructions per write (:mod:`pyraft.bench.instructions`) at one
  write in flight, and at 256 with the floor of that load (what no build can remove);
- ``peers``: the peers (PySyncObj in its default and its latency configuration, etcd) with
  the same load shapes, when installed;
- ``goals``: cluster + builds + peers, then the goals of issues 18 and 7; ``all``:
  everything;
- ``snapshot``: only the snapshot install (part of ``cluster``): a member that starts empty
  installs a ``--snapshot-bytes`` snapshot; the rise of the leader's and its resident set;
- ``elections``: 3 ``pyraft node`` members (durable ``--data``, the defaults or ``--config``)
  watched for ``--duration`` seconds (default 60), idle or under ``--load SIZExINFLIGHT``:
  elections (term changes) per member and leader changes, then the failover time after
  SIGKILL of the leader, ``--failovers`` times (default 5): median, min and max;
- ``client``: the client path only (:mod:`pyraft.bench.client_path`): KVClient over the
  binary protocol and over HTTP, raw HTTP, the engine API and etcd's gateway, 16 B x 256 in flight,
  durable, ``--rounds`` rounds (default 3), with the ratios per round and their medians.

Writes ``report.json`` and the plots in ``--out`` (default
``./bench-results/<UTC timestamp>``), prints a progress bar on stderr and a summary table on
stdout. Data directories go under ``--dir`` (the disk measured) and are removed afterwards.
Exit status 1 when a section failed (its error is in the report), else 0.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from typing import TextIO, TypeVar

import pyraft
from pyraft.bench import builds, client_path, compare, instructions, machine, report, workloads

_T = TypeVar("_T")

#: the writes each count of instructions per write covers (pyraft.bench.instructions)
INSTRUCTIONS_WRITES = 300
SECTIONS = ("all", "kernels", "cluster", "peers", "goals", "builds", "snapshot", "elections",
            "client")


class Progress:
    """A progress bar on ``stream``: ``[#####-----] 3/10 12s label``, redrawn in place on a
    terminal and one line per step otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total, self.done, self.width = max(1, total), 0, width
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.monotonic()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def render(self, label: str) -> str:
        filled = min(self.width, self.width * self.done // self.total)
        elapsed = time.monotonic() - self.started
        return (f"[{'#' * filled}{'-' * (self.width - filled)}] {self.done}/{self.total} "
                f"{elapsed:4.0f}s {label}")

    def tick(self, label: str) -> None:
        """One more step starts (``label`` says which)."""
        self.done = min(self.total, self.done + 1)
        line = self.render(label)
        if self.tty:
            self.stream.write("\r\x1b[K" + line[:200])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("section", nargs="?", default="all", choices=SECTIONS,
                        help="what to run (default all); elections: spurious elections and "
                             "failover of 3 pyraft node members, idle or under --load")
    parser.add_argument("--dir", default=None,
                        help="where data directories go (the disk measured; default: temp)")
    parser.add_argument("--out", default=None,
                        help="report.json and PNGs (default ./bench-results/<UTC timestamp>)")
    parser.add_argument("--quick", action="store_true", help="short runs (about a minute)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds per load (elections: seconds watched, default 60)")
    parser.add_argument("--failovers", type=int, default=None,
                        help="failover trials (elections: SIGKILLs of the leader, default 5)")
    parser.add_argument("--catchup-bytes", type=int, default=None,
                        help="log size for the catch-up benchmark (0: skip it)")
    parser.add_argument("--snapshot-bytes", type=int, default=None,
                        help="size of the snapshot installed (default 1 GiB; 0: skip)")
    parser.add_argument("--no-peers", action="store_true", help="do not run the peers")
    parser.add_argument("--no-pure", action="store_true",
                        help="do not run the pure build (PYRAFT_PURE_CORE=1) beside the "
                             "compiled one (its goals are then not measured)")
    parser.add_argument("--sim-seeds", default=None, metavar="A:B",
                        help="the simulator's seeds each build runs (default 0:150; --quick "
                             "0:40)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="client: rounds of the client-path loads (default 3)")
    parser.add_argument("--load", default=None, metavar="SIZExINFLIGHT",
                        help="elections: a write load during the watch, e.g. 1024x256 "
                             "(default: idle)")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="elections: a JSON object of settings every member gets (pyraft "
                             "node --config, with its member_id), to compare timings, e.g. "
                             "{\"election_timeout_ms_lower\": 300}; default: pyraft node's "
                             "defaults")


def _guarded(errors: list[str], name: str, function: Callable[[], _T]) -> _T | dict[str, str]:
    """``function()``, or ``{"error": ...}`` (also added to ``errors``) when it raises."""
    try:
        return function()
    except Exception as error:  # one failing section is reported; the others still run
        errors.append(f"{name}: {type(error).__name__}: {error}")
        traceback.print_exc(file=sys.stderr)
        return {"error": f"{type(error).__name__}: {error}"}


def run(args: argparse.Namespace) -> int:
    """Run the suite; SIGTERM ends it as Ctrl-C does, stopping every process it started
    (the default action would leave member processes running)."""
    if threading.current_thread() is not threading.main_thread():
        return _run(args)

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    if args.section == "elections":
        return _elections(args)
    if args.section == "client":
        return _client(args)
    for name in ("duration", "failovers", "catchup_bytes", "snapshot_bytes"):
        value = getattr(args, name)
        if value is not None and value < 0 or name == "duration" and value == 0:
            raise SystemExit(f"pyraft bench: --{name.replace('_', '-')} must be positive")
    plan = workloads.Plan.build(args.quick, args.duration, args.failovers, args.catchup_bytes,
                                args.snapshot_bytes)
    if args.sim_seeds is not None:
        first, colon, last = args.sim_seeds.partition(":")
        if not (colon and first.isdigit() and last.isdigit() and int(first) < int(last)):
            raise SystemExit(f"pyraft bench: --sim-seeds must be A:B with A < B, not "
                             f"{args.sim_seeds!r}")
        plan.sim_seeds = args.sim_seeds
    section = args.section
    do_kernels = section in ("all", "kernels")
    do_cluster = section in ("all", "cluster", "goals")
    do_peers = section in ("all", "peers", "goals") and not args.no_peers
    do_pure = do_cluster and not args.no_pure
    do_builds = section in ("all", "cluster", "goals", "builds") and not args.no_pure
    do_instructions = do_builds and section != "cluster"  # minutes under valgrind
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or os.path.join("bench-results", stamp)
    os.makedirs(out, exist_ok=True)
    if args.dir is not None and not os.path.isdir(args.dir):
        raise SystemExit(f"pyraft bench: --dir {args.dir!r} is not a directory")
    base = tempfile.mkdtemp(prefix="pyraft-bench-", dir=args.dir)
    do_snapshot = section == "snapshot"
    steps = (1 if do_kernels else 0) + (1 + plan.cluster_steps(do_pure) if do_cluster else 0) \
        + (len(compare.PEERS) if do_peers else 0) + (1 if do_snapshot else 0) \
        + (3 if do_builds else 0) + (2 if do_instructions else 0)
    progress = Progress(steps)
    errors: list[str] = []
    result: dict = {
        "schema": 1, "pyraft": pyraft.__version__, "arguments": vars(args),
        "section": section, "quick": args.quick, "started_utc": stamp,
        "machine": machine.describe(base),
        "plan": {"duration_s": plan.duration_s, "failovers": plan.failovers,
                 "catchup_bytes": plan.catchup_bytes, "snapshot_bytes": plan.snapshot_bytes,
                 "rates": plan.rates, "peak": plan.peak,
                 "throughput": plan.throughput,
                 "pure_throughput": plan.pure_throughput if do_pure else [],
                 "one_write_s": plan.load_s(workloads.DURABLE, 1),
                 "sim_seeds": plan.sim_seeds, "core_batches": plan.core_batches,
                 "build_rounds": plan.build_rounds},
    }
    try:
        if do_builds or do_pure:
            progress.tick("builds: pyraft info under each build's environment")
            result["builds"] = {build: _guarded(errors, f"pyraft info ({build})",
                                                functools.partial(builds.info, build))
                                for build in builds.BUILDS}
        if do_kernels:
            progress.tick("kernels (pytest-benchmark)")
            result["kernels"] = _guarded(errors, "kernels", lambda: workloads.kernels(args.quick))
        if do_cluster:
            progress.tick("references: fdatasync, loopback round trip, replication floor")
            count = 50 if args.quick else 500
            reference = result["reference"] = {
                "fdatasync_4k_ms": machine.fdatasync_ms(base, count),
                "loopback_rtt_ms": machine.loopback_rtt_ms(count * 10),
                "replication_floor_ms": machine.replication_floor_ms(base, count * 4)}
            # goal 3's bound, and how much CPU per member per write it leaves an engine
            bound_ms = report.LATENCY_RATIO * (reference["fdatasync_4k_ms"]
                                               + reference["loopback_rtt_ms"])
            budget = result["latency_budget"] = _guarded(
                errors, "latency budget", lambda: machine.work_budget_us(base, bound_ms,
                                                                         count * 4))
            reference["work_budget_us"] = budget.get("work_budget_us")
            cluster: dict = {"throughput": [], "latency": [], "peak": [], "reads": []}
            pure_loads: list[dict] = []
            for mode in (workloads.DURABLE, workloads.MEMORY):
                got = _guarded(errors, f"engine {mode}", functools.partial(
                    workloads.engine_workloads, plan, mode, base, progress.tick, do_pure))
                for key, values in (got.items() if "error" not in got else []):
                    if key == "pure" and isinstance(values, list):
                        pure_loads += values
                    else:
                        cluster[key] += values
            if do_pure:
                result["pure_build"] = {"throughput": pure_loads}
            for mode in (workloads.DURABLE, workloads.MEMORY):
                listed = _guarded(errors, f"http {mode}", functools.partial(
                    workloads.http_workloads, plan, mode, base, progress.tick))
                cluster["throughput"] += listed if isinstance(listed, list) else []
            if plan.failovers:
                cluster["failover"] = _guarded(errors, "failover", lambda: workloads.failover(
                    plan.failovers, base, progress.tick))
            if plan.catchup_bytes:
                cluster["catchup"] = [
                    _guarded(errors, "catch-up", functools.partial(
                        workloads.catch_up, plan, base, progress.tick, n))
                    for n in plan.catchup_snapshot_entries]
            if plan.snapshot_bytes:
                cluster["snapshot_install"] = _guarded(
                    errors, "snapshot install",
                    lambda: workloads.snapshot_install(plan, base, progress.tick))
            result["cluster"] = cluster
        if do_builds:
            progress.tick(f"builds: core alone, {plan.build_rounds} round(s) per build")
            result["core"] = _guarded(errors, "core (builds)", lambda: builds.core(
                plan.core_batches, 3 if args.quick else 5, plan.build_rounds))
            progress.tick(f"builds: simulator --seeds {plan.sim_seeds}, "
                          f"{plan.build_rounds} round(s) per build")
            result["simulator"] = _guarded(errors, "simulator (builds)", lambda: builds.simulator(
                plan.sim_seeds, plan.build_rounds))
        if do_instructions:
            progress.tick(f"builds: instructions per write (callgrind), {plan.build_rounds} "
                          f"round(s) per build")
            why = instructions.available()
            result["instructions"] = {"skipped": why} if why else _guarded(
                errors, "instructions (builds)", lambda: instructions.instructions(
                    INSTRUCTIONS_WRITES, plan.build_rounds))
            progress.tick(f"builds: instructions per write x{instructions.BOUND_INFLIGHT} "
                          f"and their floor (callgrind)")
            result["instructions_256"] = {"skipped": why} if why else _guarded(
                errors, "instructions x256 (builds)", lambda: instructions.bounded(
                    instructions.BOUND_WRITES, plan.build_rounds, instructions.BOUND_INFLIGHT))
        if do_snapshot:
            result["cluster"] = {"snapshot_install": _guarded(
                errors, "snapshot install",
                lambda: workloads.snapshot_install(plan, base, progress.tick))}
        if do_peers:
            result["peers"] = compare.run_peers(plan, base, progress.tick)
            result["ratios"] = compare.ratios(result.get("cluster", {}), result["peers"])
        elif section in ("all", "peers", "goals"):
            result["peers"] = {name: {"system": name, "skipped": "--no-peers"}
                               for name in compare.PEERS}
        if do_cluster or do_builds:
            result["goals"] = report.goals(result)
        if do_cluster:
            result["goals_issue7"] = report.issue7_goals(result)
            result["client_path"] = client_path.figures(result.get("cluster", {}),
                                                        result.get("peers"))
    finally:
        progress.close()
        shutil.rmtree(base, ignore_errors=True)
    result["errors"] = errors
    result["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y%m%dT%H%M%SZ")
    try:
        from pyraft.bench.plots import PlotsUnavailable, plot

        result["plots"] = [os.path.basename(p) for p in plot(result, out)]
    except PlotsUnavailable as error:
        result["plots_skipped"] = str(error)
    path = report.write_json(result, out)
    print(report.summary(result))
    if "client_path" in result:
        print("\n" + client_path.summary(result["client_path"]))
    if "plots_skipped" in result:
        print(f"\nplots skipped: {result['plots_skipped']}")
    print(f"\nreport: {path}" + "".join(f", {os.path.join(out, p)}"
                                        for p in result.get("plots", [])))
    for failure in errors:
        print(f"error: {failure}", file=sys.stderr)
    return 1 if errors else 0


def _elections(args: argparse.Namespace) -> int:
    from pyraft.bench import elections

    def refuse(message: str) -> int:  # an operator's mistake: one line, status 2
        print(f"pyraft bench elections: {message}", file=sys.stderr)
        return 2

    try:
        load = elections.parse_load(args.load)
    except ValueError as error:
        return refuse(str(error))
    if args.duration is not None and args.duration <= 0:
        return refuse("--duration must be positive (seconds watched)")
    if args.failovers is not None and args.failovers < 0:
        return refuse("--failovers must not be negative")
    if args.config is not None and not os.path.isfile(args.config):
        return refuse(f"--config {args.config}: no such file (a JSON object of settings)")
    if args.dir is not None and not os.path.isdir(args.dir):
        return refuse(f"--dir {args.dir}: not a directory")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or os.path.join("bench-results", stamp)
    os.makedirs(out, exist_ok=True)
    kills = 5 if args.failovers is None else args.failovers
    progress = Progress(3 + kills)
    result: dict = {"schema": 1, "pyraft": pyraft.__version__, "section": "elections",
                    "arguments": vars(args), "started_utc": stamp,
                    "machine": machine.describe(args.dir or tempfile.gettempdir())}
    try:
        result["elections"] = elections.measure(
            60.0 if args.duration is None else args.duration, load=load, kills=kills,
            directory=args.dir, config=args.config, tick=progress.tick)
    except elections.ElectionsError as error:
        progress.close()
        print(f"pyraft bench elections: {error}", file=sys.stderr)
        return 2 if str(error).startswith("--config") else 1
    progress.close()
    result["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y%m%dT%H%M%SZ")
    path = report.write_json(result, out)
    print(elections.summary(result["elections"]))
    print(f"\nreport: {path}")
    return 0


def _client(args: argparse.Namespace) -> int:
    """``pyraft bench client``: the client-path loads, ``--rounds`` times."""
    if args.rounds < 1 or (args.duration is not None and args.duration <= 0):
        print("pyraft bench client: --rounds must be >= 1 and --duration positive",
              file=sys.stderr)
        return 2
    if args.dir is not None and not os.path.isdir(args.dir):
        print(f"pyraft bench client: --dir {args.dir}: not a directory", file=sys.stderr)
        return 2
    duration_s = args.duration if args.duration is not None else (2.0 if args.quick else 10.0)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or os.path.join("bench-results", stamp)
    os.makedirs(out, exist_ok=True)
    base = tempfile.mkdtemp(prefix="pyraft-bench-", dir=args.dir)
    progress = Progress((5 if not args.no_peers else 4) * args.rounds)
    result: dict = {"schema": 1, "pyraft": pyraft.__version__, "section": "client",
                    "arguments": vars(args), "started_utc": stamp,
                    "machine": machine.describe(base)}
    try:
        result["client_path"] = client_path.run(duration_s, args.rounds, base, progress.tick,
                                                with_etcd=not args.no_peers)
    finally:
        progress.close()
        shutil.rmtree(base, ignore_errors=True)
    result["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y%m%dT%H%M%SZ")
    path = report.write_json(result, out)
    found = result["client_path"]
    for number, round_ in enumerate(found["rounds"], 1):
        print(f"round {number}: " + client_path.summary(round_["figures"]))
    median = dict(found["rounds"][0]["figures"], **found["median"])
    median["met_etcd"] = None if median["ratio_kvclient_to_etcd"] is None else \
        median["ratio_kvclient_to_etcd"] >= client_path.GOAL_RATIO_TO_ETCD
    median["met_engine"] = None if median["ratio_kvclient_to_engine"] is None else \
        median["ratio_kvclient_to_engine"] >= client_path.GOAL_RATIO_TO_ENGINE
    print(f"\nmedian of {args.rounds} rounds: " + client_path.summary(median))
    print(f"\nreport: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyraft bench", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
