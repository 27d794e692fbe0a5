"""PySyncObj as a benchmark peer: 3 member processes on 127.0.0.1, load from the leader.

Each member is ``python -m pyraft.bench.peers.pysyncobj_peer --self ADDR --partner ADDR ...``:
a ``SyncObj`` whose replicated object is a small key/value store (``@replicated put(key,
value)`` over 1000 keys, so memory stays bounded). The parent talks to each member over its
stdin/stdout in JSON lines (``status``, ``load``, ``quit``) and finds the leader from
``getStatus()``. The load runs *inside the leader process* with PySyncObj's own API: calls
with a ``callback`` (asynchronous, like ``sync=False``) keep ``inflight`` writes outstanding
(closed loop; each callback sends the next write) or send writes at their scheduled times
(open loop); PySyncObj runs callbacks on its own ticking thread. Results follow the shape of
:mod:`pyraft.bench.peers.loadgen`.

Configurations (``config``): ``"default"`` is PySyncObj's default ``SyncObjConf``, which
batches appends and sends them every 100 ms (its one-write latency is that period);
``"latency"`` is its documented latency configuration, ``appendEntriesUseBatch=False``
(an append goes out as soon as a command is submitted). The suite runs both for every load
shape and compares pyraft with the better of the two (:mod:`pyraft.bench.compare`).

Durability: PySyncObj keeps its log in memory (``mode="memory"``) or, with ``journal=True``,
in a memory-mapped journal file that it never fsyncs (``mode="journal (no fsync)"``). Neither
survives a machine crash; pyraft figures in fsync mode are not comparable one to one.

Every child is started here and stopped by its pid (SIGTERM, SIGKILL after a timeout); a child
whose stdin closes exits on its own, so a dead parent leaves no member behind.
"""

from __future__ import annotations

import argparse
import itertools
import json
import pathlib
import shutil
import sys
import tempfile
import time

from pyraft.bench.peers import loadgen
from pyraft.bench.peers._proc import (
    LineReader,
    ManagedCluster,
    PeerError,
    free_port,
    log_tail,
    python_child,
    stop_process,
)
from pyraft.bench.stats import make_result, skipped

SYSTEM = "pysyncobj"
#: ``workload.api``: the peer's own API, called inside the leader process (pyraft: "engine").
API = "engine"
MEMBERS = 3
#: PySyncObj's command queue holds 100,000 commands (its default ``commandsQueueSize``).
INFLIGHT_MAX = 100_000
#: Open loop: writes beyond this many outstanding are not sent and count as errors.
OPEN_OUTSTANDING_MAX = 50_000
#: Keys written round robin (bounds the replicated object's memory).
KEYS = 1000
#: How long the leader waits for outstanding writes after the window closes.
DRAIN_S = 10.0
START_TIMEOUT_S = 30.0
LEADER_TIMEOUT_S = 20.0
#: In-flight counts tried by :func:`peak` (MEASURED.md: the peak was near 20,000 in flight;
#: at 65,536 on 2026-12-07 the same within noise in one 3 s run, 54.9k against 54.5k, and
#: lower in nine goal runs, 42.0k-49.8k against 49.5k-55.8k). The largest is
#: pyraft's largest batched load (``workloads.PEAK_SHAPE``): both peaks are searched up to
#: the same number of writes in flight.
PEAK_INFLIGHTS = (256, 2048, 20_000, 65_536)
#: the configurations run for every load shape: name -> ``SyncObjConf`` keywords
CONFIGS: dict[str, dict[str, object]] = {
    "default": {},
    "latency": {"appendEntriesUseBatch": False},
}
#: how the report names each configuration
CONFIG_TEXT = {"default": "default SyncObjConf (appends batched every 100 ms)",
               "latency": "SyncObjConf(appendEntriesUseBatch=False) (documented latency "
                          "configuration)"}
_MODULE = "pyraft.bench.peers.pysyncobj_peer"
_LEADER_STATE = 2  # pysyncobj's _RAFT_STATE.LEADER


def available() -> str | None:
    """None when PySyncObj can be used, else why not."""
    try:
        import pysyncobj  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return "pysyncobj is not installed (pip install pysyncobj, or the 'bench' extra)"
    return None


def version() -> str:
    """The installed PySyncObj version."""
    from pysyncobj.version import VERSION  # type: ignore[import-untyped]

    return str(VERSION)


def mode_name(journal: bool) -> str:
    return "journal (no fsync)" if journal else "memory"


def check_config(config: object) -> str:
    """``config`` if it names one of :data:`CONFIGS`; else ``ConfigError`` naming it."""
    if not isinstance(config, str) or config not in CONFIGS:
        raise loadgen.ConfigError("config", f"must be one of {sorted(CONFIGS)}, got {config!r}")
    return config


class _Member:
    def __init__(self, address: str, partners: list[str], journal: pathlib.Path | None,
                 log: pathlib.Path, config: str = "default") -> None:
        self.address = address
        self.log = log
        args = ["--self", address, "--config", config]
        for partner in partners:
            args += ["--partner", partner]
        if journal is not None:
            args += ["--journal", str(journal)]
        self.process = python_child(_MODULE, args, log)
        self.reader = LineReader(self.process.stdout, f"pysyncobj member {address}")

    def call(self, op: str, timeout_s: float, **fields) -> dict:
        stdin = self.process.stdin
        assert stdin is not None  # a pipe was asked for (python_child)
        try:
            stdin.write(json.dumps({"op": op, **fields}).encode() + b"\n")
            stdin.flush()
            reply = self.reader.read(timeout_s)
        except (OSError, PeerError) as error:
            raise PeerError(f"pysyncobj member {self.address}: {op} failed: {error}; "
                            f"log: {log_tail(self.log)}") from error
        if "error" in reply:
            raise PeerError(f"pysyncobj member {self.address}: {op}: {reply['error']}")
        return reply


class Cluster(ManagedCluster):
    """Three PySyncObj member processes under ``workdir``; use as a context manager.

    :meth:`load` may be called several times (e.g. by :func:`peak`); :meth:`close` stops
    every member by pid and removes the files this cluster created.
    """

    def __init__(self, workdir: str, *, journal: bool, config: str = "default") -> None:
        self.journal = journal
        self.config = check_config(config)
        self.directory = pathlib.Path(tempfile.mkdtemp(prefix="pysyncobj-", dir=workdir))
        self.members: list[_Member] = []

    def start(self) -> Cluster:
        """Start the members and wait until they are ready; :class:`PeerError` if not."""
        addresses = [f"127.0.0.1:{free_port()}" for _ in range(MEMBERS)]
        for number, address in enumerate(addresses):
            journal = self.directory / f"journal-{number}" if self.journal else None
            self.members.append(_Member(address, [a for a in addresses if a != address],
                                        journal, self.directory / f"member-{number}.log",
                                        self.config))
        for member in self.members:
            try:
                member.reader.read(START_TIMEOUT_S)
            except PeerError as error:
                raise PeerError(f"{error}; log: {log_tail(member.log)}") from error
        self.leader()
        return self

    def leader(self) -> _Member:
        """The member that reports itself leader with a quorum (waits up to 20 s)."""
        deadline = time.monotonic() + LEADER_TIMEOUT_S
        while time.monotonic() < deadline:
            for member in self.members:
                status = member.call("status", 10.0)
                if status["state"] == _LEADER_STATE and status["has_quorum"]:
                    return member
            time.sleep(0.05)
        raise PeerError(f"pysyncobj: no leader within {LEADER_TIMEOUT_S} s")

    def load(self, workload: loadgen.Workload) -> dict:
        """Run ``workload`` from inside the leader; a full result dict."""
        leader = self.leader()
        timeout_s = workload.warmup_s + workload.duration_s + 2 * DRAIN_S + 60.0
        return leader.call("load", timeout_s, size=workload.size, inflight=workload.inflight,
                           rate=workload.rate, duration_s=workload.duration_s)

    def close(self) -> None:
        for member in self.members:
            if member.process.poll() is None:
                try:
                    member.call("quit", 5.0)
                except PeerError:
                    pass
            stop_process(member.process)
        self.members = []
        shutil.rmtree(self.directory, ignore_errors=True)


def run(workdir: str, *, size: int, inflight: int | None, rate: float | None,
        duration_s: float, journal: bool, config: str = "default") -> dict:
    """One measured run on a fresh 3-member cluster in configuration ``config``
    (:data:`CONFIGS`); ``{"system", "skipped"}`` when PySyncObj is missing or cannot start.
    Bad arguments raise ``ConfigError`` (a ``ValueError``)."""
    check_config(config)
    workload = loadgen.make_workload(size=size, inflight=inflight, rate=rate,
                                     duration_s=duration_s, inflight_max=INFLIGHT_MAX)
    return _trials(workdir, [workload], journal, config)[0]


def peak(workdir: str, *, size: int = 16, duration_s: float = 5.0, journal: bool = False,
         inflights: tuple[int, ...] = PEAK_INFLIGHTS, config: str = "default") -> dict:
    """Closed-loop runs at increasing in-flight counts on one cluster; the best result, with
    ``peak_trials`` listing ``[inflight, writes_per_s]`` of each trial."""
    check_config(config)
    if not inflights:
        raise loadgen.ConfigError("inflights", "must not be empty")
    workloads = [loadgen.make_workload(size=size, inflight=n, rate=None, duration_s=duration_s,
                                       inflight_max=INFLIGHT_MAX) for n in inflights]
    return loadgen.best_of(_trials(workdir, workloads, journal, config))


def _trials(workdir: str, workloads: list[loadgen.Workload], journal: bool,
            config: str = "default") -> list[dict]:
    reason = available()
    if reason is not None:
        return [skipped(SYSTEM, reason)]
    cluster = Cluster(workdir, journal=journal, config=config)
    try:
        try:
            cluster.start()
        except PeerError as error:
            return [skipped(SYSTEM, f"cannot start: {error}")]
        return [cluster.load(workload) for workload in workloads]
    finally:
        cluster.close()


# ---------------------------------------------------------------------------------------------
# The member process.


def _make_store(self_address: str, partners: list[str], journal: str | None,
                config: str = "default"):
    from pysyncobj import SyncObj, SyncObjConf, replicated

    class Store(SyncObj):
        def __init__(self) -> None:
            conf = SyncObjConf(journalFile=journal, **CONFIGS[config])
            super().__init__(self_address, partners, conf)
            #: the configuration this member runs with (reported by ``status``)
            self.bench_conf = conf
            self.bench_config = config
            self._values: dict[int, bytes] = {}

        @replicated
        def put(self, key: int, value: bytes) -> int:
            self._values[key] = value
            return len(value)

    return Store()


def _load(store, workload: loadgen.Workload, journal: bool) -> dict:
    """Drive ``workload`` through ``store`` from this (the leader's) process: a discarded
    warm-up with the same shape, then the measured run; a result of the shared schema."""
    from pysyncobj import FAIL_REASON

    values = [loadgen.payload(workload.size, key) for key in range(KEYS)]
    numbers = itertools.count()
    reasons = {getattr(FAIL_REASON, name): name for name in dir(FAIL_REASON)
               if not name.startswith("_")}

    def submit(done: loadgen.Done) -> None:
        key = next(numbers) % KEYS
        store.put(key, values[key], callback=lambda _result, error: done(
            error == FAIL_REASON.SUCCESS, f"FAIL_REASON.{reasons.get(error, error)}"))

    loadgen.run_callback_load(submit, workload.warmup(), outstanding_max=OPEN_OUTSTANDING_MAX,
                              drain_s=DRAIN_S)
    seen, missed = loadgen.run_callback_load(submit, workload,
                                             outstanding_max=OPEN_OUTSTANDING_MAX,
                                             drain_s=DRAIN_S)
    notes = (f"PySyncObj {version()}: {MEMBERS} processes on 127.0.0.1, "
             f"{CONFIG_TEXT[store.bench_config]}; "
             f"load generated in the leader process through @replicated put(key, value) called "
             f"asynchronously with a callback, {KEYS} keys round robin; discarded warm-up of "
             f"{workload.warmup_s:.2f} s first; "
             + ("journal file (memory-mapped, never fsynced)" if journal
                else "log in memory only"))
    if workload.kind == "open":
        notes += (f"; {missed} writes sent more than {loadgen.LATE_THRESHOLD_MS} ms after their "
                  f"intended time")
    if seen.first_error is not None:
        notes += f"; first error: {seen.first_error}"
    result = make_result(system=SYSTEM, version=version(), mode=mode_name(journal),
                         workload=workload.describe(api=API, members=MEMBERS,
                                                    outstanding_max=OPEN_OUTSTANDING_MAX),
                         writes=seen.writes, errors=seen.errors, elapsed_s=seen.elapsed_s,
                         latencies_s=seen.latencies_s, done_at_s=seen.done_at_s, notes=notes)
    result["missed_schedule"] = missed if workload.kind == "open" else None
    result["config"] = store.bench_config
    result["config_text"] = CONFIG_TEXT[store.bench_config]
    result["warmup_s"] = workload.warmup_s
    return result


def _member_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=_MODULE)
    parser.add_argument("--self", dest="self_address", required=True)
    parser.add_argument("--partner", action="append", default=[])
    parser.add_argument("--journal")
    parser.add_argument("--config", default="default", choices=sorted(CONFIGS))
    args = parser.parse_args(argv)
    store = _make_store(args.self_address, args.partner, args.journal, args.config)
    out = sys.stdout

    def reply(value: dict) -> None:
        out.write(json.dumps(value) + "\n")
        out.flush()

    reply({"ready": args.self_address})
    try:
        for line in sys.stdin:      # ends when the parent closes our stdin
            request = json.loads(line)
            op = request.get("op")
            if op == "status":
                status = store.getStatus()
                reply({"state": status["state"], "has_quorum": bool(status["has_quorum"]),
                       "leader": None if status["leader"] is None else str(status["leader"]),
                       "commit_idx": status["commit_idx"], "config": store.bench_config,
                       "append_entries_use_batch": bool(store.bench_conf.appendEntriesUseBatch)})
            elif op == "load":
                try:
                    workload = loadgen.make_workload(
                        size=request["size"], inflight=request["inflight"],
                        rate=request["rate"], duration_s=request["duration_s"],
                        inflight_max=INFLIGHT_MAX)
                except (KeyError, ValueError) as error:
                    reply({"error": f"bad load request: {error!r}"})
                    continue
                reply(_load(store, workload, args.journal is not None))
            elif op == "quit":
                reply({"ok": True})
                break
            else:
                reply({"error": f"unknown op {op!r}"})
    finally:
        store.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(_member_main(sys.argv[1:]))
