"""Crash durability at scale: SIGKILLs of random members of a durable cluster under writes.

A run starts ``members`` ``pyraft node`` processes on 127.0.0.1, each with ``--data`` (and
``--state memory`` or ``sqlite``), and ``writers`` clients (:class:`pyraft.kv.client.KVClient`)
that put unique keys with unique values, remembering every acknowledged write (and, apart,
every write whose fate is unknown: a timeout, a lost connection). Meanwhile a killer, drawn
from one seeded ``random.Random``, repeats ``kills`` times: wait until every member answers
its HTTP status (bounded by ``up_timeout_s``), let the writes run for 0.3-1 s, SIGKILL a
random member (the leader as often as any other) and restart it at once with its original
command line. A member that exited on its own (not by our SIGKILL) is a ``problem``.

At the end the load stops, every member runs, and every acknowledged write is read back
with barrier reads through the client: each must be present with its value. A write of
unknown fate may be present or not, but only with its own value. The members' logs are
scanned for tracebacks (:func:`pyraft.testing.jepsen.engine_errors`).

The fault model is process crashes only: a SIGKILL loses what the process held in memory,
never what it wrote to the page cache (power loss is the storage fault tests' job).

Command line::

    python -m pyraft.testing.crashsoak --kills 1000 --seed 7 [--state sqlite]

prints a summary (kills, acknowledged writes, writes read back, duration) and exits 1 when
an acknowledged write is missing or wrong or the kills could not all be done, 3 when only
problems were found (a traceback in a member's log, a member that exited on its own), 0
otherwise. The work directory (member logs, data) is kept when the run is not clean, or
always with ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import aiohttp

from pyraft.kv.client import KVClient, KVClientError, RequestError, SessionExpiredError
from pyraft.testing.jepsen import STATES, engine_errors
from pyraft.testing.processes import free_port

__all__ = ["SoakConfig", "SoakResult", "main", "run"]


@dataclass
class SoakConfig:
    """One run's parameters; every choice of the killer is drawn from ``seed``."""

    kills: int = 20
    seed: int = 0
    members: int = 3
    state: str = "memory"
    writers: int = 4
    #: each writer waits this long between two writes (bounds the keys to read back)
    write_pause_s: float = 0.03
    #: writes run for a time drawn from this range between a restart and the next kill
    interval_s: tuple[float, float] = (0.3, 1.0)
    #: how long every member may take to answer after a restart
    up_timeout_s: float = 30.0
    snapshot_entries: int = 5000
    client_timeout_s: float = 2.0
    client_retries: int = 5
    #: barrier reads in flight at once when reading back
    read_concurrency: int = 16
    #: attempts of each read back (each with the client's own retries)
    read_attempts: int = 10
    workdir: str | None = None
    keep: bool = False

    def validate(self) -> SoakConfig:
        if self.state not in STATES:
            raise ValueError(f"unknown state {self.state!r}; known: {', '.join(STATES)}")
        if not 3 <= self.members <= 7:
            raise ValueError(f"members must be in [3, 7], not {self.members}")
        if self.kills < 0 or self.writers < 1:
            raise ValueError("kills must be >= 0 and writers >= 1")
        if self.workdir and os.path.exists(self.workdir) and os.listdir(self.workdir):
            raise ValueError(f"the work directory {self.workdir} is not empty")
        return self


@dataclass
class SoakResult:
    config: SoakConfig
    kills: int
    acknowledged: int
    read_back: int
    #: acknowledged writes absent at the end (key, value)
    missing: list[tuple[str, str]]
    #: writes present with another value (key, expected, found)
    wrong: list[tuple[str, str, str | None]]
    #: writes of unknown fate, and how many of them are present
    indeterminate: int
    indeterminate_present: int
    #: acknowledged writes whose read back failed every attempt
    unread: int
    problems: list[str] = field(default_factory=list)
    load_seconds: float = 0.0
    elapsed_seconds: float = 0.0
    workdir: str = ""

    @property
    def durable(self) -> bool:
        """Every acknowledged write was read back with its value, after every kill."""
        return (self.kills == self.config.kills and not self.missing and not self.wrong
                and not self.unread and self.read_back == self.acknowledged)

    @property
    def ok(self) -> bool:
        return self.durable and not self.problems

    def summary(self) -> str:
        c = self.config
        lines = [f"crash soak: seed {c.seed}, {c.members} members (--data, --state {c.state}), "
                 f"{c.writers} writers, load {self.load_seconds:.1f} s, total "
                 f"{self.elapsed_seconds:.1f} s",
                 f"kills: {self.kills} of {c.kills} (SIGKILL, restart with the same command)",
                 f"acknowledged writes: {self.acknowledged}, read back with their value: "
                 f"{self.read_back}, missing: {len(self.missing)}, wrong: {len(self.wrong)}, "
                 f"unread: {self.unread}",
                 f"writes of unknown fate: {self.indeterminate}, present: "
                 f"{self.indeterminate_present}"]
        for key, value in self.missing[:10]:
            lines.append(f"MISSING {key} = {value}")
        for key, expected, found in self.wrong[:10]:
            lines.append(f"WRONG {key}: expected {expected}, found {found}")
        for problem in self.problems:
            lines.append(f"problem: {problem}")
        lines.append(f"result: {'durable' if self.durable else 'NOT DURABLE'}"
                     + (f", {len(self.problems)} problems" if self.problems else ""))
        return "\n".join(lines)


class _Member:
    """One ``pyraft node`` process with a fixed command line, signalled only by its pid."""

    def __init__(self, member: int, run: _Soak) -> None:
        self.id = member
        self.listen = f"127.0.0.1:{free_port()}"
        self.http = f"127.0.0.1:{free_port()}"
        self.data = os.path.join(run.workdir, f"n{member}")
        self.log_path = os.path.join(run.workdir, f"n{member}.log")
        self.process: subprocess.Popen | None = None
        self.args: list[str] = []
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://{self.http}"

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"---- start {self.starts}\n".encode())
            log.flush()
            self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=log)
        self.starts += 1

    async def reap(self, timeout: float) -> bool:
        process = self.process
        if process is None:
            return True  # never started: nothing to wait for
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return True
            await asyncio.sleep(0.01)
        return False

    async def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            await self.reap(10)

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            if not await self.reap(10):
                await self.kill()


class _Soak:
    def __init__(self, config: SoakConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.workdir = config.workdir or tempfile.mkdtemp(prefix="pyraft-crashsoak-")
        os.makedirs(self.workdir, exist_ok=True)
        self.members: dict[int, _Member] = {}
        self.acknowledged: dict[str, str] = {}
        self.indeterminate: dict[str, str] = {}
        self.problems: list[str] = []
        self.kills = 0
        self.stop_load = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None

    async def setup(self) -> None:
        c = self.config
        for member in range(1, c.members + 1):
            self.members[member] = _Member(member, self)
        peers = ",".join(f"{m.id}={m.listen}" for m in self.members.values())
        for m in self.members.values():
            m.args = [sys.executable, "-m", "pyraft", "node", "--id", str(m.id),
                      "--listen", m.listen, "--http", m.http, "--data", m.data,
                      "--peers", peers, "--state", c.state,
                      "--snapshot-entries", str(c.snapshot_entries), "--log-level", "WARNING"]
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0))
        for m in self.members.values():
            m.start()
        if not await self.all_up(60):
            raise RuntimeError(f"the members did not start within 60 s; see {self.workdir}")
        with open(os.path.join(self.workdir, "commands.json"), "w") as file:
            json.dump({m.id: m.args for m in self.members.values()}, file, indent=1)

    async def teardown(self) -> None:
        for m in self.members.values():
            with contextlib.suppress(Exception):
                await m.stop()
        for m in self.members.values():
            for error, count in engine_errors(m.log_path).items():
                self.problems.append(f"member {m.id} logged {count} x {error}")
        if self._http is not None:
            await self._http.close()

    async def answers(self, m: _Member) -> bool:
        if m.process is None or m.process.poll() is not None:
            return False
        try:
            if self._http is None:
                raise RuntimeError("the soak has not started: no HTTP session yet")
            async with self._http.get(m.url + "/v1/status") as answer:
                return answer.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return False

    async def all_up(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_exits()
            if all(await asyncio.gather(*(self.answers(m) for m in self.members.values()))):
                return True
            await asyncio.sleep(0.05)
        return False

    def check_exits(self) -> None:
        """A member that ended on its own is a problem; it is restarted."""
        for m in self.members.values():
            code = m.process.poll() if m.process is not None else None
            if code is not None:
                self.problems.append(f"member {m.id} exited with status {code} on its own "
                                     f"(start {m.starts - 1}); restarted")
                m.start()

    async def writer(self, number: int) -> None:
        c = self.config
        urls = [m.url for m in self.members.values()]
        random.Random(f"{c.seed}/{number}").shuffle(urls)
        n = 0
        async with KVClient(urls, timeout_s=c.client_timeout_s, retries=c.client_retries) as kv:
            for _ in range(10_000_000):
                if self.stop_load.is_set():
                    break
                n += 1
                key, value = f"w{number}-{n}", f"{c.seed}.{number}.{n}"
                try:
                    await kv.put(key, value)
                except (SessionExpiredError, RequestError) as exc:
                    if isinstance(exc, RequestError) and not 400 <= exc.status < 500:
                        self.indeterminate[key] = value
                except (KVClientError, aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    self.indeterminate[key] = value
                else:
                    self.acknowledged[key] = value
                await asyncio.sleep(c.write_pause_s)

    async def killer(self) -> None:
        c = self.config
        for number in range(c.kills):
            if not await self.all_up(c.up_timeout_s):
                self.problems.append(f"not every member answered within {c.up_timeout_s} s "
                                     f"before kill {number + 1}; stopped killing")
                return
            await asyncio.sleep(self.rng.uniform(*c.interval_s))
            self.check_exits()
            victim = self.members[self.rng.choice(sorted(self.members))]
            await victim.kill()
            self.kills += 1
            victim.start()
            if (number + 1) % 100 == 0:
                print(f"  {number + 1} kills, {len(self.acknowledged)} acknowledged writes",
                      flush=True)

    async def read_back(self) -> tuple[int, list, list, int, int]:
        """(read back, missing, wrong, indeterminate present, unread)."""
        c = self.config
        expected = [(k, v, True) for k, v in self.acknowledged.items()] + [
            (k, v, False) for k, v in self.indeterminate.items()]
        queue: asyncio.Queue = asyncio.Queue()
        for item in expected:
            queue.put_nowait(item)
        counts = {"read": 0, "present": 0, "unread": 0}
        missing: list = []
        wrong: list = []
        urls = [m.url for m in self.members.values()]

        async def reader() -> None:
            async with KVClient(urls, timeout_s=c.client_timeout_s,
                                retries=c.client_retries) as kv:
                while not queue.empty():
                    key, value, acknowledged = queue.get_nowait()
                    for _ in range(c.read_attempts):
                        try:
                            found = await kv.get(key, consistency="barrier")
                            break
                        except (KVClientError, aiohttp.ClientError, asyncio.TimeoutError,
                                OSError):
                            await asyncio.sleep(0.2)
                    else:
                        counts["unread"] += acknowledged
                        continue
                    text = None if found is None else found.decode()
                    if text == value:
                        counts["read" if acknowledged else "present"] += 1
                    elif found is None:
                        if acknowledged:
                            missing.append((key, value))
                    else:
                        wrong.append((key, value, text))

        await asyncio.gather(*(reader() for _ in range(c.read_concurrency)))
        return counts["read"], missing, wrong, counts["present"], counts["unread"]


async def run(config: SoakConfig) -> SoakResult:
    """One run (see the module docstring)."""
    config.validate()
    soak = _Soak(config)
    started = time.monotonic()
    missing: list[tuple[str, str]] = []
    wrong: list[tuple[str, str, str | None]] = []
    read, present, unread = 0, 0, 0
    try:
        await soak.setup()
        load_started = time.monotonic()
        writers = [asyncio.ensure_future(soak.writer(i)) for i in range(config.writers)]
        try:
            await soak.killer()
        finally:
            soak.stop_load.set()
            await asyncio.gather(*writers, return_exceptions=True)
        load_seconds = time.monotonic() - load_started
        if await soak.all_up(config.up_timeout_s):
            read, missing, wrong, present, unread = await soak.read_back()
        else:
            soak.problems.append("not every member answered at the end")
            unread = len(soak.acknowledged)
    finally:
        await soak.teardown()
    result = SoakResult(config, soak.kills, len(soak.acknowledged), read, missing, wrong,
                        len(soak.indeterminate), present, unread, soak.problems,
                        load_seconds, time.monotonic() - started, soak.workdir)
    if result.ok and not config.keep:
        shutil.rmtree(soak.workdir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyraft.testing.crashsoak",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None, help="default: random, printed")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--state", choices=STATES, default="memory")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    config = SoakConfig(kills=args.kills, seed=seed, members=args.members, state=args.state,
                        writers=args.writers, workdir=args.workdir, keep=args.keep)
    try:
        config.validate()
    except ValueError as exc:
        parser.error(str(exc))
    print(f"crash soak: seed {seed}, {args.kills} kills, --state {args.state}", flush=True)
    result = asyncio.run(run(config))
    print(result.summary())
    if os.path.exists(result.workdir):
        print(f"member logs in {result.workdir}")
    if not result.durable:
        return 1
    return 3 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
