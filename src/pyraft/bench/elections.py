"""``pyraft bench elections``: spurious elections and failover of real ``pyraft node`` members.

Starts three ``pyraft node`` processes on 127.0.0.1 the way an operator does (only documented
flags, a durable ``--data`` directory each, the defaults unless ``--config`` names a file of
settings), then:

``--config`` names a JSON object of settings (e.g. ``{"election_timeout_ms_lower": 300}``)
that every member gets (with its own ``member_id``), to compare timings.

1. watches them for ``duration_s`` seconds, idle or under a write load from a separate
   load-generator process (``--load SIZExINFLIGHT``, :mod:`pyraft.bench.loadgen`), polling
   ``GET /v1/status`` of every member every ``poll_s``. An election is a term change: the
   report gives, per member, how many terms it went through (term now minus the term it had
   when the watch began) and how many times the leader changed (a member reporting another
   leader, or the same one in a higher term). In a healthy cluster both are 0: every
   election there is spurious.
2. kills the leader with SIGKILL ``kills`` times and measures the failover: the time from the
   kill until a survivor acknowledges a write (``PUT /v1/kv/...``). The killed member restarts
   from its data directory and catches up before the next kill.

Every process is started and ended here, by pid; the data directories are removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from pyraft.testing import processes
from pyraft.testing.processes import free_port


class ElectionsError(RuntimeError):
    """The measurement could not be run (no leader, a member that does not start)."""


def parse_load(text: str | None) -> tuple[int, int] | None:
    """``"1024x256"`` -> (size in bytes, writes in flight); None or ``"none"`` -> None."""
    if text is None or text.strip().lower() in ("", "none", "idle"):
        return None
    size, sep, inflight = text.lower().partition("x")
    try:
        if not sep:
            raise ValueError(text)
        parsed = int(size), int(inflight)
    except ValueError:
        raise ValueError(f"--load must be SIZExINFLIGHT (e.g. 1024x256), not {text!r}") from None
    if parsed[0] < 0 or parsed[1] < 1:
        raise ValueError(f"--load {text!r}: size must be >= 0 and inflight >= 1")
    return parsed


@dataclass
class NodeProcess(processes.NodeProcess):
    """One ``pyraft node`` with a durable data directory; its log goes to ``log_path``."""

    member: int
    peers: dict[int, str]
    http: dict[int, str]
    data: str
    config: str | None = None
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.http[self.member]}"

    @property
    def log_path(self) -> str:
        return f"{self.data}.log"

    def start(self) -> NodeProcess:
        extra = ["--data", self.data]
        if self.config is not None:
            extra += ["--config", self.config]
        with open(self.log_path, "a") as log:
            self.spawn(extra, stderr=log)
        return self


def status(node: NodeProcess, timeout_s: float = 1.0) -> dict | None:
    """The member's ``/v1/status``, or None when it does not answer in ``timeout_s``."""
    if not node.alive:
        return None
    try:
        with urllib.request.urlopen(f"{node.url}/v1/status", timeout=timeout_s) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def put(node: NodeProcess, key: str, value: bytes, timeout_s: float = 1.0) -> bool:
    """True when the member acknowledged ``PUT /v1/kv/key`` (it leads and the write
    committed)."""
    request = urllib.request.Request(f"{node.url}/v1/kv/{key}", data=value, method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status in (200, 204)
    except (OSError, ValueError):  # HTTPError (a redirect, 503) is an OSError
        return False


def wait_leader(nodes: list[NodeProcess], timeout_s: float) -> tuple[NodeProcess, dict]:
    """The member that leads, once one does and a majority agrees on it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = {n.member: status(n) for n in nodes}
        for node in nodes:
            mine = seen[node.member]
            if mine is None or mine.get("role") != "leader":
                continue
            agree = sum(1 for s in seen.values() if s is not None
                        and s.get("leader") == node.member and s.get("term") == mine["term"])
            if agree * 2 > len(nodes):
                return node, mine
        time.sleep(0.05)
    raise ElectionsError(f"no leader among members {[n.member for n in nodes]} within "
                         f"{timeout_s} s")


class Watch:
    """Term changes per member and leader changes, from polled statuses."""

    def __init__(self, nodes: list[NodeProcess]) -> None:
        self.first_term: dict[int, int] = {}
        self.last_term: dict[int, int] = {}
        self.leader: tuple[int, int] | None = None  # (leader, term) last seen
        self.leader_changes = 0
        self.unanswered = 0
        self.polls = 0
        self.nodes = nodes

    def poll(self) -> None:
        self.polls += 1
        for node in self.nodes:
            got = status(node)
            if got is None:
                self.unanswered += 1
                continue
            term = int(got["term"])
            self.first_term.setdefault(node.member, term)
            self.last_term[node.member] = max(term, self.last_term.get(node.member, term))
            if got.get("leader") is not None:
                seen = (int(got["leader"]), term)
                if self.leader is None:
                    self.leader = seen
                elif seen[1] > self.leader[1]:  # a leader of a later term: a change
                    self.leader_changes += 1
                    self.leader = seen

    def figures(self) -> dict:
        terms = {str(m): self.last_term[m] - self.first_term[m] for m in sorted(self.first_term)}
        return {"elections_per_member": terms,
                "elections": max(terms.values(), default=0),
                "leader_changes": self.leader_changes,
                "polls": self.polls, "unanswered_polls": self.unanswered}


def _start_load(nodes: list[NodeProcess], load: tuple[int, int], duration_s: float
                ) -> subprocess.Popen:
    urls = ",".join(n.url for n in nodes)
    command = [sys.executable, "-m", "pyraft.bench.loadgen", "--urls", urls,
               "--size", str(load[0]), "--inflight", str(load[1]),
               "--duration-s", str(duration_s), "--mode", "durable (fdatasync)"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def failover(nodes: list[NodeProcess], kills: int, trial_timeout_s: float = 30.0,
             tick: Callable[[str], None] | None = None) -> dict:
    """Kill the leader ``kills`` times; the seconds from each SIGKILL to a write
    acknowledged by a survivor."""
    seconds: list[float] = []
    for trial in range(kills):
        if tick is not None:
            tick(f"failover {trial + 1}/{kills}")
        current, _ = wait_leader(nodes, trial_timeout_s)
        survivors = [n for n in nodes if n is not current]
        killed_at = time.perf_counter()
        current.kill()
        deadline = time.monotonic() + trial_timeout_s
        done = False
        while not done and time.monotonic() < deadline:
            for node in survivors:
                if put(node, f"failover-{trial}", b"x", timeout_s=0.5):
                    seconds.append(time.perf_counter() - killed_at)
                    done = True
                    break
            else:
                time.sleep(0.005)
        if not done:
            raise ElectionsError(f"no write acknowledged {trial_timeout_s} s after the leader "
                                 f"was killed (trial {trial + 1})")
        _, leading = wait_leader(survivors, trial_timeout_s)
        current.start()
        deadline = time.monotonic() + trial_timeout_s
        while time.monotonic() < deadline:
            back = status(current)
            if back is not None and back.get("applied", -1) >= leading["commit"]:
                break
            time.sleep(0.05)
        else:
            raise ElectionsError(f"member {current.member} did not catch up within "
                                 f"{trial_timeout_s} s after its restart")
    ordered = sorted(seconds)
    return {"kills": len(ordered), "seconds": ordered,
            "median_ms": statistics.median(ordered) * 1e3 if ordered else None,
            "min_ms": ordered[0] * 1e3 if ordered else None,
            "max_ms": ordered[-1] * 1e3 if ordered else None}


def measure(duration_s: float, *, load: tuple[int, int] | None = None, kills: int = 5,
            directory: str | None = None, config: str | None = None, poll_s: float = 0.1,
            members: int = 3, tick: Callable[[str], None] | None = None) -> dict:
    """Run the measurement (see the module docstring) and answer its figures."""
    if duration_s < 0 or kills < 0 or poll_s <= 0:
        raise ValueError("duration and kills must not be negative, poll_s must be positive")
    workdir = tempfile.mkdtemp(prefix="elections-", dir=directory)
    nodes: list[NodeProcess] = []
    generator: subprocess.Popen | None = None
    result: dict = {"members": members, "duration_s": duration_s, "poll_s": poll_s,
                    "load": None if load is None else {"size": load[0], "inflight": load[1]},
                    "config": config}
    try:
        peers = {m: f"127.0.0.1:{free_port()}" for m in range(1, members + 1)}
        http = {m: f"127.0.0.1:{free_port()}" for m in peers}
        nodes = [NodeProcess(m, peers, http, os.path.join(workdir, f"node{m}"),
                             _member_config(config, m, workdir)).start() for m in peers]
        if tick is not None:
            tick("waiting for the first leader")
        wait_leader(nodes, 60.0)
        watch = Watch(nodes)
        if tick is not None:
            tick(f"watching {duration_s:g} s" + ("" if load is None else
                                                f" under a {load[0]} B x{load[1]} load"))
        if load is not None:
            generator = _start_load(nodes, load, duration_s)
        started = time.monotonic()
        next_poll = started
        while True:
            watch.poll()
            if time.monotonic() - started >= duration_s:
                break
            next_poll += poll_s
            time.sleep(max(0.0, next_poll - time.monotonic()))
        if generator is not None:
            out, err = generator.communicate(timeout=duration_s + 120)
            if generator.returncode != 0:
                raise ElectionsError(f"the load generator failed: {err.strip()[-2000:]}")
            loaded = json.loads(out.strip().splitlines()[-1])
            result["load_result"] = {k: loaded.get(k) for k in (
                "writes", "errors", "writes_per_s", "leader_changes", "notes")}
        result.update(watch.figures())
        if kills:
            result["failover"] = failover(nodes, kills, tick=tick)
        result["member_logs"] = {str(n.member): _election_lines(n.log_path) for n in nodes}
    finally:
        if generator is not None and generator.poll() is None:
            generator.kill()
            generator.wait(10)
        for node in nodes:
            with contextlib.suppress(Exception):
                node.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _member_config(path: str | None, member: int, workdir: str) -> str | None:
    """The settings of ``path`` (a JSON object) for ``member``: a copy with its member_id,
    which ``pyraft node --config`` requires in the file."""
    if path is None:
        return None
    try:
        with open(path) as f:
            settings = json.load(f)
    except (OSError, ValueError) as error:
        raise ElectionsError(f"--config {path}: {error} (a JSON object of settings)") from None
    if not isinstance(settings, dict):
        raise ElectionsError(f"--config {path}: must be a JSON object of settings")
    copy = os.path.join(workdir, f"config{member}.json")
    with open(copy, "w") as f:
        json.dump({**settings, "member_id": member}, f)
    return copy


def _election_lines(path: str, limit: int = 50) -> list[str]:
    """The member's log lines about leaders and elections (the last ``limit``)."""
    try:
        with open(path) as f:
            lines = [line.rstrip() for line in f if "leader" in line or "election" in line]
    except OSError:
        return []
    return lines[-limit:]


def summary(result: dict) -> str:
    """The figures as a few human lines."""
    what = "idle" if result["load"] is None else \
        f"under a {result['load']['size']} B x{result['load']['inflight']} write load"
    per_member = ", ".join(f"member {m}: {n}" for m, n in result["elections_per_member"].items())
    lines = [f"{result['members']} pyraft node members, {result['duration_s']:g} s {what}",
             f"elections (term changes) per member: {per_member}",
             f"leader changes: {result['leader_changes']}"]
    loaded = result.get("load_result")
    if loaded:
        lines.append(f"load: {loaded['writes']} writes ({loaded['writes_per_s']:.0f}/s), "
                     f"{loaded['errors']} errors, leader changes seen by the load: "
                     f"{loaded.get('leader_changes', 0)}")
    fail = result.get("failover")
    if fail and fail["kills"]:
        lines.append(f"failover after SIGKILL of the leader ({fail['kills']} kills): median "
                     f"{fail['median_ms']:.0f} ms, min {fail['min_ms']:.0f} ms, max "
                     f"{fail['max_ms']:.0f} ms")
    return "\n".join(lines)
