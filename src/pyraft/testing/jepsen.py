"""Jepsen-style linearizability runs: real ``pyraft node`` processes under faults.

A run starts ``members`` ``pyraft node`` processes on 127.0.0.1 (durable ``--data``, Raft
traffic through a :class:`~pyraft.testing.faultproxy.FaultProxy` via ``--routes``), drives
``clients`` concurrent clients through the HTTP API (get with ``barrier`` and ``lease``
consistency, put, cas; unique values; a handful of keys, renewed every ``key_seconds`` so
each key's history stays small enough to check), and meanwhile a *nemesis* injects faults
drawn from one seeded ``random.Random``:

- ``kill``: SIGKILL the leader (the first time, then half of the times) or a random member,
  restart it from its data directory a little later;
- ``pause``: SIGSTOP the leader for longer than the election timeout while lease reads
  hammer it directly (sent to it, never redirected, answered only after it resumes: it must
  not serve them from its old lease), then SIGCONT. The first pause, then half of them, is
  *deaf*: nothing reaches the member until 1.5 s after it resumes, so only its own clock can
  tell it that its lease is gone (without that, the messages of the new leader, read in the
  same loop turn as the requests, would depose it first);
- ``partition``: random halves, or the leader alone; healed later;
- ``oneway``: the leader cannot send, or cannot receive, or one random link is lost (the
  transport sends each direction on its own connection, so a blocked link is one-way loss);
- ``slowdisk``: ``fsync``/``fdatasync`` of the leader or of two members delayed (an
  ``LD_PRELOAD`` shim compiled with ``gcc`` at run time; :func:`build_fsync_shim`);
- ``wipe-rejoin`` (formerly ``membership``, still accepted): remove a follower
  (``DELETE /v1/members/{id}``), stop it, wipe its data, restart it with ``--join`` (which
  adds it back through ``POST /v1/members``); once it is a voter again, SIGKILL or SIGTERM
  it and restart it without ``--join`` nor ``--peers``;
- ``restart-no-peers``: SIGKILL or SIGTERM the leader or a random member, restart it
  without ``--peers`` (nor ``--http-peers``): it comes back from the membership stored in
  ``--data``;
- ``restart-wrong-peers``: stop a member the same way, restart it with ``--peers`` naming
  itself and fewer than a majority of the others: it must refuse to start with exit status
  2 and the one line ``pyraft node: member N refused to start: --peers ... contradict the
  membership stored in DIR (...)`` on stderr (:func:`refusal_problem`); then it is
  restarted correctly, without ``--peers``.

The last three are the operator's faults. Every restart uses only flags ``pyraft node
--help`` documents, and each restarted member must answer as a voter that knows a leader
within ``back_timeout_s`` (else a ``problem`` of the run). Every member runs with the same
``--state`` (``memory`` or ``sqlite``: ``RunConfig.state``, ``--state``) and a small
``--snapshot-entries`` (2000), so snapshots, log release and InstallSnapshot happen.

At the end every fault is healed, every member runs, and the cluster must converge: a leader
answers, a write commits, every member is a voter and applies it. Then the history is checked
with :func:`pyraft.testing.linearizability.check_history` (one key at a time). The members'
logs (stderr, level WARNING) are scanned for tracebacks: each exception a member logged is a
``problem`` of the run (:func:`engine_errors`), as is a member that did not come back as a
voter. ``RunResult.ok`` is: linearizable and converged; the tests also require no problem.

Outcomes: ``ok`` (a definite answer), ``fail`` (definitely not applied: a ``4xx``; or a cas
whose expectation did not hold, a definite observation kept in the history as ``False``),
``info`` (timeout, ``504``, retries used up, connection lost: indeterminate; a write is kept
as an operation that never returned, a read is dropped).

``stale_reads=True`` is a deliberately broken mode that proves the checker bites in this
harness: during partitions that isolate the leader, extra readers read with
``consistency=local`` from the isolated old leader, which serves stale values.

Command line::

    python -m pyraft.testing.jepsen --minutes 1 --seed 7 --faults kill,pause,partition
    python -m pyraft.testing.jepsen --minutes 20 --seed 7 --state sqlite

prints a summary (ops by outcome, faults with times, the check, timings) and exits 1 when the
history is not linearizable (with the failing key's explanation) or the cluster did not
converge, 3 when only problems were found (a member logged an exception, or did not come back
as a voter), 0 otherwise. The work directory (member logs, data) is kept when the run is not
clean, or always with ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from pyraft.kv.client import KVClient, KVClientError, RequestError, SessionExpiredError
from pyraft.kv.security import read_token_file, write_token_file
from pyraft.testing.faultproxy import FaultProxy
from pyraft.testing.linearizability import CheckResult, Operation, check_history
from pyraft.testing.processes import free_port

__all__ = ["FAULTS", "FAULT_ALIASES", "FSYNC_DELAY_ENV", "OPERATOR_FAULTS", "STATES", "Record",
           "RunConfig", "RunResult", "build_fsync_shim", "engine_errors", "history_operations",
           "main", "refusal_problem", "run"]

#: every fault kind the nemesis knows
FAULTS = ("kill", "pause", "partition", "oneway", "slowdisk", "wipe-rejoin",
          "restart-no-peers", "restart-wrong-peers")
#: the operator's faults: restarts with other flags than the first start
OPERATOR_FAULTS = ("wipe-rejoin", "restart-no-peers", "restart-wrong-peers")
#: older names of fault kinds, still accepted
FAULT_ALIASES = {"membership": "wipe-rejoin"}
#: where ``pyraft node --state`` keeps the key-value state
STATES = ("memory", "sqlite")
#: the environment variable naming the shim's control file (delay in microseconds)
FSYNC_DELAY_ENV = "RAFT_FSYNC_DELAY_FILE"

_SHIM_SOURCE = r"""
/* fsync/fdatasync with an injected delay, read at each call from the file named by the
   environment variable RAFT_FSYNC_DELAY_FILE (microseconds, as decimal text; absent or 0:
   no delay). Compiled by pyraft.testing.jepsen and loaded with LD_PRELOAD. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long delay_us(void) {
    const char *path = getenv("RAFT_FSYNC_DELAY_FILE");
    char text[32];
    ssize_t n;
    int fd;
    if (path == NULL) return 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return 0;
    text[n] = 0;
    return strtol(text, NULL, 10);
}

static void injected_delay(void) {
    int saved = errno;
    long us = delay_us();
    if (us > 0) {
        struct timespec left = {us / 1000000, (us % 1000000) * 1000};
        while (nanosleep(&left, &left) != 0 && errno == EINTR) {}
    }
    errno = saved;
}

int fdatasync(int fd) {
    static int (*real)(int) = NULL;
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    injected_delay();
    return real(fd);
}

int fsync(int fd) {
    static int (*real)(int) = NULL;
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    injected_delay();
    return real(fd);
}
"""


def build_fsync_shim(directory: str) -> str:
    """Compile the fsync-delay shim into ``directory``; returns the ``.so`` path.

    Raises ``RuntimeError`` when ``gcc`` is missing or fails (with its output)."""
    source = os.path.join(directory, "fsync_delay.c")
    library = os.path.join(directory, "fsync_delay.so")
    with open(source, "w") as file:
        file.write(_SHIM_SOURCE)
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("the slowdisk fault needs gcc (or cc) to build its LD_PRELOAD shim")
    done = subprocess.run([gcc, "-O2", "-Wall", "-shared", "-fPIC", "-o", library, source,
                           "-ldl"], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"building the fsync shim failed: {done.stderr.strip()}")
    return library


# ---- configuration and results ------------------------------------------------------------
@dataclass
class RunConfig:
    """One run's parameters; everything random is drawn from ``seed``."""

    minutes: float = 1.0
    seed: int = 0
    members: int = 5
    faults: tuple[str, ...] = FAULTS
    clients: int = 8
    keys: int = 3
    key_seconds: float = 10.0
    #: quiet time between two faults, drawn from this range (seconds)
    quiet_s: tuple[float, float] = (1.0, 2.5)
    #: how long a fault lasts, drawn from this range (seconds)
    hold_s: tuple[float, float] = (2.5, 4.5)
    election_timeout_ms: tuple[float, float] = (400.0, 800.0)
    #: per-request timeout and retries of the clients (bounds how long one op may take)
    client_timeout_s: float = 1.0
    client_retries: int = 8
    #: the broken mode that must be caught (see the module docstring)
    stale_reads: bool = False
    workdir: str | None = None
    keep: bool = False
    converge_timeout_s: float = 45.0
    max_states: int = 2_000_000
    #: ``pyraft node --state`` of every member
    state: str = "memory"
    #: ``pyraft node --snapshot-entries`` of every member: small, so that snapshots, log
    #: release and InstallSnapshot happen within a run
    snapshot_entries: int = 2000
    #: how long a restarted member may take to answer as a voter that knows the leader
    back_timeout_s: float = 30.0

    def validate(self) -> RunConfig:
        self.faults = tuple(FAULT_ALIASES.get(f, f) for f in self.faults)
        if self.state not in STATES:
            raise ValueError(f"unknown state {self.state!r}; known: {', '.join(STATES)}")
        if self.snapshot_entries < 1:
            raise ValueError(f"snapshot_entries must be >= 1, not {self.snapshot_entries}")
        unknown = set(self.faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULTS)}")
        if self.workdir and os.path.exists(self.workdir) and os.listdir(self.workdir):
            raise ValueError(f"the work directory {self.workdir} is not empty: the members "
                             "would start from the state of another run")
        if not 3 <= self.members <= 9:
            raise ValueError(f"members must be in [3, 9], not {self.members}")
        if self.minutes <= 0 or self.clients < 1 or self.keys < 1 or self.key_seconds <= 0:
            raise ValueError("minutes and key_seconds must be > 0, clients and keys >= 1")
        return self


@dataclass
class Record:
    """One client operation as the harness saw it (times from one monotonic clock)."""

    id: int
    client: int
    op: tuple
    consistency: str | None
    call: float
    ret: float | None = None
    outcome: str = "info"  # ok | fail | info
    result: object = None
    error: str = ""
    #: sent to one member only, never redirected nor retried (the nemesis' readers)
    direct: bool = False


@dataclass
class FaultEvent:
    kind: str
    start: float
    end: float | None
    description: str


@dataclass
class RunResult:
    """What a run produced; ``ok`` is linearizable AND converged."""

    config: RunConfig
    records: list[Record]
    faults: list[FaultEvent]
    check: CheckResult | None
    check_seconds: float
    converged: bool
    converge_note: str
    load_seconds: float
    elapsed_seconds: float
    problems: list[str] = field(default_factory=list)
    workdir: str = ""

    @property
    def linearizable(self) -> bool:
        return self.check is not None and self.check.ok

    @property
    def ok(self) -> bool:
        return self.linearizable and self.converged

    def outcomes(self) -> Counter:
        return Counter(r.outcome for r in self.records)

    def fault_kinds(self) -> set[str]:
        return {f.kind for f in self.faults}

    def summary(self) -> str:
        by = Counter((r.op[0] + ("/" + r.consistency if r.consistency else ""), r.outcome)
                     for r in self.records)
        kinds = sorted({k for k, _ in by})
        lines = [f"seed {self.config.seed}, {self.config.members} members "
                 f"(--state {self.config.state}), "
                 f"{self.config.clients} clients, load {self.load_seconds:.1f} s, "
                 f"total {self.elapsed_seconds:.1f} s"]
        outcomes = self.outcomes()
        completed = outcomes["ok"] + outcomes["fail"]
        lines.append(f"ops: {len(self.records)} ({completed / max(self.load_seconds, 1e-9):.1f}"
                     f" completed/s): " + ", ".join(f"{o} {outcomes[o]}"
                                                    for o in ("ok", "fail", "info")))
        for kind in kinds:
            lines.append(f"  {kind:14} " + "  ".join(f"{o} {by[(kind, o)]:5}"
                                                      for o in ("ok", "fail", "info")))
        lines.append(f"faults: {len(self.faults)}")
        for f in self.faults:
            end = f"{f.end:7.2f}" if f.end is not None else "   open"
            lines.append(f"  {f.start:7.2f} .. {end}  {f.kind:10} {f.description}")
        lines.append(f"converged: {self.converged} ({self.converge_note})")
        for problem in self.problems:
            lines.append(f"problem: {problem}")
        if self.check is None:
            lines.append("check: not run")
        else:
            lines.append(f"check: {'linearizable' if self.check.ok else 'NOT LINEARIZABLE'}; "
                         f"{self.check.checked_keys} keys, {self.check.states_explored} states, "
                         f"{self.check_seconds:.2f} s"
                         + (" (out of budget)" if self.check.timed_out else ""))
            if not self.check.ok:
                lines.append(f"failing key {self.check.key!r}:")
                lines.append(self.check.explanation)
        return "\n".join(lines)


def engine_errors(log_path: str) -> Counter:
    """The exceptions a member logged (the last line of each traceback), counted: a member
    must not log any, whatever the faults."""
    errors: Counter = Counter()
    if not os.path.exists(log_path):
        return errors
    in_traceback = False
    with open(log_path, errors="replace") as log:
        for line in log:
            if line.startswith("Traceback (most recent call last)"):
                in_traceback = True
            elif in_traceback and line.strip() and not line.startswith(
                    (" ", "\t", "During handling", "The above exception")):
                errors[line.strip()[:200]] += 1
                in_traceback = False
    return errors


_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ member \d+ ")


def refusal_problem(stderr: str, status: int | None, member: int, data: str) -> str | None:
    """What is wrong with a start that ``--peers`` contradicting the stored membership must
    refuse (None when nothing): exit status 2 and, besides log lines, exactly one line
    ``pyraft node: member N refused to start: --peers ... contradict the membership stored
    in DATA (...)``; ``status`` None means the member did not exit."""
    if status is None:
        return "it started (did not exit within 60 s)"
    if status != 2:
        return f"exit status {status}, not 2; stderr: {stderr.strip()[-300:]!r}"
    if "Traceback" in stderr:
        return "a traceback on stderr"
    lines = [line for line in stderr.splitlines() if line.strip() and not _LOG_LINE.match(line)]
    prefix = f"pyraft node: member {member} refused to start: --peers "
    middle = f" contradict the membership stored in {data} ("
    if len(lines) != 1 or not lines[0].startswith(prefix) or middle not in lines[0]:
        return f"not the one-line refusal: {lines!r}"[:400]
    return None


def _refusal(error: str) -> str:
    """A short name for why an indeterminate request failed (from the client's message)."""
    for needle, name in (("redirected", "redirect"), ("503", "503"), ("504", "504"),
                         ("Timeout", "timeout"), ("Connect", "connection")):
        if needle in error:
            return name
    return "other"


def history_operations(records: list[Record]) -> list[Operation]:
    """The checker's history: ok and definite-fail cas ops as returned, info writes as never
    returned, info reads and other fails (never applied) left out."""
    operations = []
    for r in records:
        if r.outcome == "ok" or (r.outcome == "fail" and r.op[0] == "cas"
                                 and r.result is False):
            operations.append(Operation(r.client, r.op, r.call, r.ret, r.result, r.id))
        elif r.outcome == "info" and r.op[0] != "get":
            operations.append(Operation(r.client, r.op, r.call, None, None, r.id))
    return operations


# ---- member processes ---------------------------------------------------------------------
class _Node:
    """One ``pyraft node`` process, signalled only by its own pid."""

    def __init__(self, member: int, harness: _Harness) -> None:
        self.id = member
        self.h = harness
        self.listen = f"127.0.0.1:{free_port()}"
        self.http = f"127.0.0.1:{free_port()}"
        self.data = os.path.join(harness.workdir, f"n{member}")
        self.log_path = os.path.join(harness.workdir, f"n{member}.log")
        self.fsync_file = os.path.join(harness.workdir, f"n{member}.fsync")
        self.config_path = os.path.join(harness.workdir, f"n{member}.json")
        self.process: subprocess.Popen | None = None
        self.paused = False
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://{self.http}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self, join_url: str | None = None,
                peers: list[int] | None = None) -> list[str]:
        """The member's command line, only with flags ``pyraft node --help`` documents.

        ``peers``: the members named by ``--peers`` (and ``--http-peers``); None names every
        member, ``[]`` leaves both flags out (a restart from the stored membership)."""
        nodes = self.h.nodes
        named = [nodes[m] for m in (sorted(nodes) if peers is None else peers)]
        args = [sys.executable, "-m", "pyraft", "node", "--id", str(self.id),
                "--listen", self.listen, "--http", self.http, "--data", self.data,
                "--config", self.config_path, "--state", self.h.config.state,
                "--snapshot-entries", str(self.h.config.snapshot_entries)]
        if named:
            args += ["--peers", ",".join(f"{n.id}={n.listen}" for n in named),
                     "--http-peers", ",".join(f"{n.id}={n.http}" for n in named)]
        proxy, token_file = self.h.proxy, self.h.token_file
        if proxy is None or token_file is None:
            raise RuntimeError("the run has not started: no fault proxy or admin token yet")
        args += ["--routes", proxy.routes(self.id), "--log-level", "WARNING",
                 "--admin-token-file", token_file]
        if join_url:
            args += ["--join", join_url]
        return args

    def start(self, join_url: str | None = None, peers: list[int] | None = None,
              stderr_path: str | None = None) -> None:
        """Start the member (see :meth:`command`); its stderr goes to its log, or to
        ``stderr_path`` when given (a start expected to be refused)."""
        args = self.command(join_url, peers)
        env = dict(os.environ)
        env[FSYNC_DELAY_ENV] = self.fsync_file
        if self.h.shim:
            env["LD_PRELOAD"] = (self.h.shim + " " + env.get("LD_PRELOAD", "")).strip()
        how = ("(join) " if join_url else "") + (
            "(all peers)" if peers is None else f"(peers {peers})" if peers else "(no peers)")
        with open(self.log_path, "ab") as log:
            log.write(f"---- start {self.starts} at {self.h.now():.2f} {how}\n".encode())
            log.flush()
            if stderr_path is None:
                self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log,
                                                env=env)
            else:
                with open(stderr_path, "wb") as err:
                    self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                                    stderr=err, env=env)
        self.starts += 1
        self.paused = False

    def _started(self) -> subprocess.Popen:
        """The member's process (the last one started)."""
        if self.process is None:
            raise RuntimeError(f"member {self.id} was never started")
        return self.process

    async def _reap(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._started().poll() is not None:
                return True
            await asyncio.sleep(0.02)
        return False

    async def kill(self) -> None:
        if self.running:
            self._started().send_signal(signal.SIGKILL)
            await self._reap(10)
        self.paused = False

    async def stop(self) -> None:
        """SIGTERM (after SIGCONT when paused), SIGKILL when it does not end in 10 s."""
        if not self.running:
            return
        if self.paused:
            self.resume()
        self._started().send_signal(signal.SIGTERM)
        if not await self._reap(10):
            await self.kill()

    def pause(self) -> None:
        if self.running:
            self._started().send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.running and self.paused:
            self._started().send_signal(signal.SIGCONT)
        self.paused = False

    def set_fsync_delay(self, delay_ms: float) -> None:
        with open(self.fsync_file + ".tmp", "w") as file:
            file.write(str(int(delay_ms * 1000)))
        os.replace(self.fsync_file + ".tmp", self.fsync_file)


# ---- the harness --------------------------------------------------------------------------
class _Harness:
    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.workdir = config.workdir or tempfile.mkdtemp(prefix="pyraft-jepsen-")
        os.makedirs(self.workdir, exist_ok=True)
        self.origin = time.monotonic()
        self.nodes: dict[int, _Node] = {}
        self.proxy: FaultProxy | None = None
        self.shim: str | None = None
        self.records: list[Record] = []
        self.faults: list[FaultEvent] = []
        self.problems: list[str] = []
        self.last_seen: dict[str, str | None] = {}
        self._ids = 0
        self._clients = 0
        self._pauses = 0
        self._refusals = 0
        self._http: aiohttp.ClientSession | None = None
        self.token_file: str | None = None  # the admin credential of membership changes
        self.load_over = asyncio.Event()

    def _faults(self) -> FaultProxy:
        """The fault proxy between the members (once the run started)."""
        if self.proxy is None:
            raise RuntimeError("the run has not started: no fault proxy yet")
        return self.proxy

    def _session(self) -> aiohttp.ClientSession:
        """The HTTP session of the run's own requests (once the run started)."""
        if self._http is None:
            raise RuntimeError("the run has not started: no HTTP session yet")
        return self._http

    def _token_file(self) -> str:
        """The admin token file every member accepts (once the run started)."""
        if self.token_file is None:
            raise RuntimeError("the run has not started: no admin token yet")
        return self.token_file

    def now(self) -> float:
        return time.monotonic() - self.origin

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def new_client(self) -> int:
        self._clients += 1
        return self._clients

    # ---- setup and teardown --------------------------------------------------------------
    async def setup(self) -> None:
        c = self.config
        if "slowdisk" in c.faults:
            self.shim = await asyncio.to_thread(build_fsync_shim, self.workdir)
        for member in range(1, c.members + 1):
            self.nodes[member] = _Node(member, self)
        self.proxy = await FaultProxy({n.id: n.listen for n in self.nodes.values()}).start()
        lower, upper = c.election_timeout_ms
        for node in self.nodes.values():
            with open(node.config_path, "w") as file:
                json.dump({"member_id": node.id, "election_timeout_ms_lower": lower,
                           "election_timeout_ms_upper": upper,
                           "request_timeout_ms": min(200.0, lower),
                           "connect_timeout_ms": min(100.0, lower)}, file)
            node.set_fsync_delay(0)
        self.token_file = write_token_file(os.path.join(self.workdir, "admin-token"))
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))
        for node in self.nodes.values():
            node.start()
        if await self.find_leader(30) is None:
            raise RuntimeError(f"no leader within 30 s; see the logs in {self.workdir}")

    async def teardown(self) -> None:
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                await node.stop()
        for node in self.nodes.values():
            for error, count in engine_errors(node.log_path).items():
                self.problems.append(f"member {node.id} logged {count} x {error}")
        if self._http is not None:
            await self._http.close()
        if self.proxy is not None:
            await self.proxy.stop()

    # ---- cluster views -------------------------------------------------------------------
    async def status(self, node: _Node, timeout: float = 1.0) -> dict | None:
        if not node.running or node.paused:
            return None
        try:
            async with self._session().get(node.url + "/v1/status",
                                      timeout=aiohttp.ClientTimeout(total=timeout)) as answer:
                if answer.status != 200:
                    return None
                return await answer.json()
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return None

    async def find_leader(self, timeout: float) -> int | None:
        """The member that says it leads, with the highest term; None after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = await asyncio.gather(*(self.status(n) for n in self.nodes.values()))
            leaders = [(s["term"], s["id"]) for s in statuses
                       if s and s.get("role") == "leader"]
            if leaders:
                return max(leaders)[1]
            await asyncio.sleep(0.1)
        return None

    async def _admin(self, method: str, path: str, timeout: float, **kwargs) -> tuple[int, str]:
        """An admin request to the leader, following redirects; (status, body) or (0, why)."""
        leader = await self.find_leader(5)
        if leader is None:
            return 0, "no leader"
        url = self.nodes[leader].url + path
        token = read_token_file(self._token_file())
        kwargs["headers"] = {**kwargs.get("headers", {}), "Authorization": f"Bearer {token}"}
        for _ in range(5):
            try:
                async with self._session().request(method, url, allow_redirects=False,
                                              timeout=aiohttp.ClientTimeout(total=timeout),
                                              **kwargs) as answer:
                    body = await answer.text()
                    if answer.status == 307:
                        url = answer.headers["Location"]
                        continue
                    return answer.status, body
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                return 0, f"{type(exc).__name__}: {exc}"
        return 0, "too many redirects"

    # ---- clients -------------------------------------------------------------------------
    def keys(self) -> list[str]:
        generation = int(self.now() / self.config.key_seconds)
        return [f"g{generation}k{i}" for i in range(self.config.keys)]

    async def worker(self, number: int, deadline: float) -> None:
        c = self.config
        rng = random.Random(f"{c.seed}/{number}")
        urls = [n.url for n in self.nodes.values()]
        rng.shuffle(urls)
        client = self.new_client()
        written = 0
        async with KVClient(urls, timeout_s=c.client_timeout_s,
                            retries=c.client_retries) as kv:
            while time.monotonic() < deadline and not self.load_over.is_set():
                key = rng.choice(self.keys())
                roll = rng.random()
                if roll < 0.3:
                    record = await self.invoke(client, kv, ("get", key), "barrier")
                elif roll < 0.5:
                    record = await self.invoke(client, kv, ("get", key), "lease")
                elif roll < 0.75:
                    written += 1
                    record = await self.invoke(client, kv, ("put", key, f"{number}.{written}"),
                                               None)
                else:
                    written += 1
                    expected = self.last_seen.get(key)
                    record = await self.invoke(
                        client, kv, ("cas", key, expected, f"{number}.{written}"), None)
                if record.outcome == "info":
                    client = self.new_client()  # a process with a pending op retires
                await asyncio.sleep(rng.uniform(0, 0.01))

    async def invoke(self, client: int, kv: KVClient, op: tuple, consistency: str | None,
                     direct: bool = False) -> Record:
        record = Record(self.next_id(), client, op, consistency, self.now(), direct=direct)
        self.records.append(record)
        try:
            if op[0] == "get":
                if consistency is None:
                    raise ValueError("a get is made at a consistency")
                value = await kv.get(op[1], consistency=consistency)
                record.result = None if value is None else value.decode()
                self.last_seen[op[1]] = record.result
            elif op[0] == "put":
                await kv.put(op[1], op[2])
                record.result = None
                self.last_seen[op[1]] = op[2]
            else:
                done, current = await kv.cas(op[1], op[2], op[3])
                record.result = done
                self.last_seen[op[1]] = None if current is None else current.decode()
            record.outcome = "ok" if record.result is not False else "fail"
            record.ret = self.now()
        except (SessionExpiredError, RequestError) as exc:
            if isinstance(exc, RequestError) and not 400 <= exc.status < 500:
                # a 5xx other than 503/504 says nothing definite about a write
                record.outcome, record.error = "info", f"{type(exc).__name__}: {exc}"
            else:
                record.outcome, record.error, record.ret = "fail", str(exc), self.now()
        except (KVClientError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            record.outcome, record.error = "info", f"{type(exc).__name__}: {exc}"
        return record

    async def direct_reads(self, node: _Node, consistency: str, stop: asyncio.Event,
                           timeout: float) -> None:
        """Reads of the current keys sent to ``node`` only (no redirect, no retry), at most 8
        at a time, until ``stop``."""
        tasks: set[asyncio.Task] = set()
        rng = random.Random(f"{self.config.seed}/direct/{len(self.faults)}")
        async with KVClient([node.url], timeout_s=timeout, retries=0) as kv:
            for _ in range(100_000):
                if stop.is_set():
                    break
                if len(tasks) < 8:
                    op = ("get", rng.choice(self.keys()))
                    task = asyncio.ensure_future(
                        self.invoke(self.new_client(), kv, op, consistency, direct=True))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.05)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    # ---- the nemesis ---------------------------------------------------------------------
    async def nemesis(self, deadline: float) -> None:
        c = self.config
        rng = self.rng
        pending = list(c.faults)
        rng.shuffle(pending)
        first_kill = True
        if not c.faults:
            return
        await asyncio.sleep(rng.uniform(*c.quiet_s))
        # every chosen kind once (even past the deadline), then random kinds until it
        while pending or time.monotonic() < deadline - 3:
            kind = pending.pop(0) if pending else rng.choice(c.faults)
            event = FaultEvent(kind, self.now(), None, "")
            self.faults.append(event)
            try:
                if kind == "kill":
                    await self.fault_kill(event, leader=first_kill or rng.random() < 0.5)
                    first_kill = False
                else:
                    await getattr(self, "fault_" + kind.replace("-", "_"))(event)
            except Exception as exc:  # a harness error must not hide the history
                self.problems.append(f"{kind} at {event.start:.2f}: {type(exc).__name__}: "
                                     f"{exc}")
            finally:
                event.end = self.now()
                await self.heal()
            await asyncio.sleep(rng.uniform(*c.quiet_s))

    async def heal(self) -> None:
        self._faults().heal()
        for node in self.nodes.values():
            node.set_fsync_delay(0)
            node.resume()

    def hold(self) -> float:
        return self.rng.uniform(*self.config.hold_s)

    async def leader_or_random(self) -> _Node:
        leader = await self.find_leader(5)
        if leader is None:
            return self.nodes[self.rng.choice(sorted(self.nodes))]
        return self.nodes[leader]

    async def fault_kill(self, event: FaultEvent, leader: bool) -> None:
        if leader:
            node = await self.leader_or_random()
        else:
            node = self.nodes[self.rng.choice(sorted(self.nodes))]
        await node.kill()
        down = self.rng.uniform(0.5, 2.5)
        event.description = f"SIGKILL {'leader ' if leader else ''}{node.id}, " \
                            f"restart after {down:.1f} s"
        await asyncio.sleep(down)
        node.start()

    async def fault_pause(self, event: FaultEvent) -> None:
        node = await self.leader_or_random()
        pause = max(3 * self.config.election_timeout_ms[1] / 1000, self.hold())
        stop = asyncio.Event()
        readers = asyncio.ensure_future(self.direct_reads(node, "lease", stop,
                                                          timeout=pause + 3))
        # deaf: nothing reaches the paused leader until 1.5 s after it resumes, so it cannot
        # learn of the new term before it answers the reads waiting for it: only its own
        # clock may tell it that its lease is gone
        deaf = self._pauses == 0 or self.rng.random() < 0.5
        self._pauses += 1
        resumed = float("inf")
        try:
            await asyncio.sleep(0.3)
            node.pause()
            if deaf:
                for member in self.nodes:
                    if member != node.id:
                        self._faults().block_one_way(member, node.id)
            event.description = (f"SIGSTOP leader {node.id} for {pause:.1f} s under lease "
                                 f"reads{', deaf until 1.5 s after SIGCONT' if deaf else ''}")
            await asyncio.sleep(pause)
            resumed = self.now()
            node.resume()
            await asyncio.sleep(1.5)
        finally:
            node.resume()
            stop.set()
            await readers
        direct = [r for r in self.records if r.direct and r.call >= event.start]
        after = [r for r in direct
                 if r.outcome == "ok" and r.ret is not None and r.ret >= resumed]
        refusals = Counter(_refusal(r.error) for r in direct if r.outcome == "info")
        event.description += (f"; {len(direct)} direct lease reads: "
                              f"{sum(r.outcome == 'ok' for r in direct)} ok ({len(after)} "
                              f"answered after SIGCONT), info: "
                              + (", ".join(f"{k} {n}" for k, n in sorted(refusals.items()))
                                 or "none"))

    async def fault_partition(self, event: FaultEvent) -> None:
        members = sorted(self.nodes)
        leader = await self.find_leader(5)
        stale_readers = None
        stop = asyncio.Event()
        if leader is not None and (self.config.stale_reads or self.rng.random() < 0.5):
            self._faults().isolate(leader)
            event.description = f"isolate leader {leader}"
            if self.config.stale_reads:
                stale_readers = asyncio.ensure_future(self.direct_reads(
                    self.nodes[leader], "local", stop, timeout=2.0))
        else:
            self.rng.shuffle(members)
            cut = len(members) // 2
            groups = [sorted(members[:cut]), sorted(members[cut:])]
            self._faults().partition(groups)
            event.description = f"partition {groups[0]} | {groups[1]}"
        try:
            await asyncio.sleep(self.hold())
        finally:
            stop.set()
            if stale_readers is not None:
                await stale_readers

    async def fault_oneway(self, event: FaultEvent) -> None:
        leader = await self.find_leader(5)
        others = [m for m in sorted(self.nodes) if m != leader]
        roll = self.rng.random()
        if leader is not None and roll < 0.4:
            for m in others:
                self._faults().block_one_way(leader, m)
            event.description = f"leader {leader} cannot send"
        elif leader is not None and roll < 0.8:
            for m in others:
                self._faults().block_one_way(m, leader)
            event.description = f"leader {leader} cannot receive"
        else:
            source, target = self.rng.sample(sorted(self.nodes), 2)
            self._faults().block_one_way(source, target)
            event.description = f"link {source} -> {target} lost"
        await asyncio.sleep(self.hold())

    async def fault_slowdisk(self, event: FaultEvent) -> None:
        delay_ms = self.rng.uniform(50, 250)
        if self.rng.random() < 0.5:
            targets = [await self.leader_or_random()]
        else:
            targets = [self.nodes[m] for m in self.rng.sample(sorted(self.nodes), 2)]
        for node in targets:
            node.set_fsync_delay(delay_ms)
        event.description = f"fsync +{delay_ms:.0f} ms on {[n.id for n in targets]}"
        await asyncio.sleep(self.hold())

    async def fault_wipe_rejoin(self, event: FaultEvent) -> None:
        """Remove a follower, stop it, wipe its data, restart it with ``--join``; once it is
        a voter again, stop it (SIGKILL or SIGTERM) and restart it without ``--join`` nor
        ``--peers`` (a member that joined restarts from its stored membership)."""
        leader = await self.find_leader(5)
        followers = [m for m in sorted(self.nodes) if m != leader and self.nodes[m].running]
        if leader is None or not followers:
            event.description = "skipped: no leader or no follower"
            return
        node = self.nodes[self.rng.choice(followers)]
        status, body = await self._admin("DELETE", f"/v1/members/{node.id}", timeout=5)
        if status != 200 and not await self.wait_voter(node.id, 5, voter=False):
            event.description = f"remove {node.id} failed ({status} {body[:120]})"
            return
        await node.stop()
        shutil.rmtree(node.data, ignore_errors=True)
        await asyncio.sleep(self.rng.uniform(0.5, 1.5))
        leader = await self.find_leader(5)
        join = self.nodes[leader].url if leader is not None else self.nodes[followers[0]].url
        node.start(join_url=join)
        back = await self.wait_voter(node.id, 20)
        event.description = (f"removed {node.id}, wiped, re-joined through {join}: "
                             f"{'voter again' if back else 'NOT a voter after 20 s'}")
        if not back:
            self.problems.append(f"member {node.id} did not become a voter again after its "
                                 f"removal at {event.start:.2f}")
            return
        await asyncio.sleep(self.hold())
        signal_name = await self.stop_member(node)
        await asyncio.sleep(self.rng.uniform(0.5, 1.5))
        node.start(peers=[])
        event.description += (f"; {signal_name}, restarted without --join nor --peers: "
                              + await self.check_back(node, event))

    async def stop_member(self, node: _Node) -> str:
        """SIGKILL or SIGTERM ``node`` (drawn from the seed); returns the signal's name."""
        if self.rng.random() < 0.5:
            await node.kill()
            return "SIGKILL"
        await node.stop()
        return "SIGTERM"

    async def pick_member(self) -> _Node:
        """The leader half of the times, else a random member."""
        if self.rng.random() < 0.5:
            return await self.leader_or_random()
        return self.nodes[self.rng.choice(sorted(self.nodes))]

    async def check_back(self, node: _Node, event: FaultEvent) -> str:
        """Whether a restarted ``node`` answers as a voter that knows a leader within
        ``back_timeout_s``; a problem of the run when not. Returns a description."""
        deadline = time.monotonic() + self.config.back_timeout_s
        started = time.monotonic()
        while time.monotonic() < deadline:
            if not node.running:
                code = node.process.returncode if node.process is not None else None
                self.problems.append(f"member {node.id}, restarted at {event.start:.2f} "
                                     f"({event.kind}), exited with status {code}")
                return f"EXITED with status {code}"
            status = await self.status(node)
            if status and status.get("leader") is not None and any(
                    m["id"] == node.id and m["voter"] for m in status["members"]):
                return f"back as a voter in {time.monotonic() - started:.1f} s"
            await asyncio.sleep(0.2)
        self.problems.append(f"member {node.id}, restarted at {event.start:.2f} "
                             f"({event.kind}), was not back as a voter within "
                             f"{self.config.back_timeout_s:.0f} s")
        return f"NOT back within {self.config.back_timeout_s:.0f} s"

    async def fault_restart_no_peers(self, event: FaultEvent) -> None:
        """Stop a member (SIGKILL or SIGTERM) and restart it without ``--peers`` (nor
        ``--http-peers``): it must come back from the membership stored in ``--data``."""
        node = await self.pick_member()
        signal_name = await self.stop_member(node)
        down = self.rng.uniform(0.5, 2.5)
        await asyncio.sleep(down)
        node.start(peers=[])
        event.description = (f"{signal_name} {node.id}, restart without --peers after "
                             f"{down:.1f} s: " + await self.check_back(node, event))

    async def fault_restart_wrong_peers(self, event: FaultEvent) -> None:
        """Stop a member, restart it with ``--peers`` naming itself and fewer than a
        majority of the others: it must refuse to start (exit status 2, the one-line message
        on stderr, no traceback); then restart it correctly, without ``--peers``."""
        node = await self.pick_member()
        signal_name = await self.stop_member(node)
        others = [m for m in sorted(self.nodes) if m != node.id]
        # never as many as the configuration in force minus one: it cannot be mistaken for it
        named = sorted([node.id, *self.rng.sample(others, self.rng.randint(
            0, len(self.nodes) - 3))])
        self._refusals += 1
        stderr_path = os.path.join(self.workdir, f"n{node.id}.refused{self._refusals}.txt")
        node.start(peers=named, stderr_path=stderr_path)
        exited = await node._reap(60)
        if not exited:
            await node.kill()
        code = node._started().returncode
        with open(stderr_path, errors="replace") as file:
            text = file.read()
        with open(node.log_path, "a") as log:  # scanned for tracebacks with the rest
            log.write(text)
        verdict = refusal_problem(text, code if exited else None, node.id, node.data)
        event.description = (f"{signal_name} {node.id}, restart with --peers {named}: "
                             + ("refused (status 2, one line)" if verdict is None
                                else f"WRONG: {verdict}"))
        if verdict is not None:
            self.problems.append(f"member {node.id} restarted with --peers {named} at "
                                 f"{event.start:.2f}: {verdict}")
        await asyncio.sleep(self.rng.uniform(0.2, 1.0))
        node.start(peers=[])
        event.description += "; restart without --peers: " + await self.check_back(node,
                                                                                     event)

    async def wait_voter(self, member: int, timeout: float, voter: bool = True) -> bool:
        """Whether the leader's configuration has ``member`` as a voter (``voter``) or not,
        within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = await self.find_leader(2)
            if leader is not None:
                status = await self.status(self.nodes[leader])
                if status and voter == any(m["id"] == member and m["voter"]
                                           for m in status["members"]):
                    return True
            await asyncio.sleep(0.2)
        return False

    # ---- the end -------------------------------------------------------------------------
    async def views(self) -> str:
        """Each member's view (role, term, commit, applied, voters), for a failure report."""
        statuses = await asyncio.gather(*(self.status(n) for n in self.nodes.values()))
        parts = []
        for node, status in zip(self.nodes.values(), statuses):
            if status is None:
                parts.append(f"{node.id}: no answer")
                continue
            voters = sorted(m["id"] for m in status["members"] if m["voter"])
            parts.append(f"{node.id}: {status['role']} term {status['term']} leader "
                         f"{status['leader']} commit {status['commit']} applied "
                         f"{status['applied']} voters {voters}")
        return "; ".join(parts)

    async def converge(self) -> tuple[bool, str]:
        """Everything healed and running: a leader, a write, every member applies it."""
        converged, note = await self._converge()
        if not converged:
            note += "; views: " + await self.views()
        return converged, note

    async def _converge(self) -> tuple[bool, str]:
        await self.heal()
        for node in self.nodes.values():
            if not node.running:
                node.start()
        deadline = time.monotonic() + self.config.converge_timeout_s
        urls = [n.url for n in self.nodes.values()]
        async with KVClient(urls, timeout_s=2.0, retries=3) as kv:
            while time.monotonic() < deadline:
                try:
                    await kv.put("converged", "yes")
                    break
                except KVClientError:
                    await asyncio.sleep(0.2)
            else:
                return False, "no write committed after healing"
        leader = await self.find_leader(max(1.0, deadline - time.monotonic()))
        if leader is None:
            return False, "no leader after healing"
        voters = set()
        while time.monotonic() < deadline:
            status = await self.status(self.nodes[leader])
            if status is None:
                leader = await self.find_leader(max(1.0, deadline - time.monotonic()))
                if leader is None:
                    return False, "lost the leader while converging"
                continue
            voters = {m["id"] for m in status["members"] if m["voter"]}
            commit = status["commit"]
            statuses = await asyncio.gather(*(self.status(n) for n in self.nodes.values()))
            behind = [n.id for n, s in zip(self.nodes.values(), statuses)
                      if s is None or s["applied"] < commit]
            if not behind and voters == set(self.nodes):
                return True, f"leader {leader}, all {len(voters)} members applied {commit}"
            await asyncio.sleep(0.2)
        return False, f"members {behind} behind or voters {sorted(voters)} incomplete"


async def run(config: RunConfig) -> RunResult:
    """One run (see the module docstring)."""
    config.validate()
    harness = _Harness(config)
    started = time.monotonic()
    try:
        await harness.setup()
        load_started = time.monotonic()
        deadline = load_started + config.minutes * 60
        # the load lasts until the deadline and the nemesis' end (each chosen kind once),
        # but never more than twice the time asked plus five minutes
        hard_deadline = deadline + config.minutes * 60 + 300
        workers = [asyncio.ensure_future(harness.worker(i, hard_deadline))
                   for i in range(config.clients)]
        nemesis = asyncio.ensure_future(harness.nemesis(deadline))
        try:
            try:
                await asyncio.wait_for(nemesis, max(1.0, hard_deadline - time.monotonic()))
            except asyncio.TimeoutError:
                harness.problems.append("the nemesis did not finish before the hard deadline")
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            harness.load_over.set()
            await asyncio.gather(*workers)
        finally:
            for task in (*workers, nemesis):
                task.cancel()
            await asyncio.gather(*workers, nemesis, return_exceptions=True)
        load_seconds = time.monotonic() - load_started
        converged, note = await harness.converge()
    finally:
        await harness.teardown()
    history = history_operations(harness.records)
    check_started = time.monotonic()
    check = await asyncio.to_thread(check_history, history, max_states=config.max_states)
    check_seconds = time.monotonic() - check_started
    if check.ok and converged and not harness.problems and not config.keep:
        shutil.rmtree(harness.workdir, ignore_errors=True)  # kept when something went wrong
    return RunResult(config, harness.records, harness.faults, check, check_seconds, converged,
                     note, load_seconds, time.monotonic() - started, harness.problems,
                     harness.workdir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyraft.testing.jepsen",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="minutes of load")
    parser.add_argument("--seed", type=int, default=None, help="default: random, printed")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--keys", type=int, default=3)
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help=f"comma-separated subset of {','.join(FAULTS)} (or 'none')")
    parser.add_argument("--state", choices=STATES, default="memory",
                        help="pyraft node --state of every member")
    parser.add_argument("--snapshot-entries", type=int,
                        default=RunConfig.snapshot_entries,
                        help="pyraft node --snapshot-entries of every member")
    parser.add_argument("--stale-reads", action="store_true",
                        help="broken mode: local reads from an isolated leader (must fail)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    faults = () if args.faults == "none" else tuple(filter(None, args.faults.split(",")))
    config = RunConfig(minutes=args.minutes, seed=seed, members=args.members,
                       clients=args.clients, keys=args.keys, faults=faults,
                       stale_reads=args.stale_reads, workdir=args.workdir, keep=args.keep,
                       state=args.state, snapshot_entries=args.snapshot_entries)
    try:
        config.validate()
    except ValueError as exc:
        parser.error(str(exc))
    print(f"jepsen run: seed {seed}, {args.minutes} min, --state {config.state}, faults "
          f"{','.join(config.faults) or 'none'}", flush=True)
    result = asyncio.run(run(config))
    print(result.summary())
    if os.path.exists(result.workdir):
        print(f"member logs in {result.workdir}")
    if not result.ok:
        return 1
    return 3 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
