"""Instructions per write, counted by callgrind: a figure the host's speed does not move.

The host under the project's machines changes speed from one day to the next (issue 18
measured half the throughput of a week before, etcd halved too), and CPU time per write
moves with the neighbours' load. The number of user-space instructions a write costs does
not: callgrind (valgrind's tool) counts them exactly, whatever the host does meanwhile.

What is counted: three members of one build in **one process** (this module run with
``--child``), a durable write-ahead log each under a temporary directory, the benchmark
members' counting state machine (``CountLog``), talking over TCP on 127.0.0.1 through the
real transport and codec, with writes of 16 bytes through ``RaftCluster.replicate``,
``inflight`` at a time. Counting starts after
the cluster is up and has a settled leader and stops after the last write returns; the
figure is the instructions of all three members (and the load) divided by the writes.
Not counted: the kernel's side of the system calls (send, receive, fdatasync), and what the
instructions cost in time (a cache miss is one instruction).

The child runs under callgrind about 50 times slower than natively, so two settings keep it
a faithful copy of a member's per-write work: a long tick (heartbeats would otherwise come
every few writes) and long election timeouts (the leader's heartbeats every tick keep them
from expiring; the first election takes 5-10 s); and every sync inline (the
runtime hands a sync the loop measured above ``inline_sync_max_ms`` to a thread, which a
slowed process would always do and a native member, syncing in 0.1-0.3 ms, does not).

``count(build, writes, inflight)`` measures once; :func:`instructions` alternates the
builds (:func:`pyraft.bench.builds.alternate`).

**The floor** (``--floor``, :func:`floor`): the same load (``inflight`` tasks, each awaiting
one ``replicate`` after another, on uvloop) against a member that does no work at all: each
write is queued with its future, and every queued future is settled on the next turn of the
loop (``NullMember``). What that costs per write is what no build of pyraft can remove
while a caller awaits each write in its own task: the task's wake-up and step, the
coroutines, one future created and settled, the loop's handles. The figures above it are
what pyraft's own code costs in each build. At 256 writes in flight the floor is more than
half of the compiled build's count (at one in flight a few percent), which bounds how far
compiling pyraft can move the whole.

**One follower process** (``--follower``, :func:`follower_count`): the count above adds
the three members and the load, so it cannot say what one member costs, and the goal of
issue 18 is per member. Here two ``pyraft.testing.member`` processes form a durable
cluster: the leader runs natively (compiled, the load inside it: 16-byte writes at one in
flight) and the follower runs under callgrind in the build measured, with the same settings
as the child above (a long tick, every sync inline); its instructions are counted from the
first measured write to the last (after a warm-up), divided by the writes. With two members
every write waits for that follower, so each append it handles carries one entry, as a
follower's does at one write in flight in three.

``available()`` says whether valgrind is installed (``apt install valgrind``); without it the
benchmark suite skips the figure and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
from typing import IO, Any

from pyraft.bench import builds
from pyraft.testing import processes

#: the load the benchmark suite counts with its floor (``bounded``): 256 writes in flight, as
#: issue 18's goal at 256; 20 rounds of them
BOUND_INFLIGHT = 256
BOUND_WRITES = 20 * BOUND_INFLIGHT
#: the child's settings under callgrind (module docstring)
TICK_MS = 500.0
ELECTION_MS = 5_000.0
PAYLOAD = b"x" * 16
_TOTALS = re.compile(r"^totals:\s+(\d+)", re.M)


class InstructionsError(RuntimeError):
    """The count could not be taken (valgrind failed, the child failed or said nothing)."""


def available() -> str | None:
    """None when valgrind's callgrind can be run, else why not."""
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not found (apt install valgrind)" if missing else None


def parse_totals(text: str) -> int:
    """The instruction total of a callgrind output file's text."""
    match = _TOTALS.search(text)
    if match is None:
        raise InstructionsError("no 'totals:' line in callgrind's output")
    return int(match.group(1))


def count(build: str, writes: int = 300, inflight: int = 1, timeout_s: float = 600.0,
          keep: str | None = None, null: bool = False) -> float:
    """Instructions per write of one child under callgrind with ``build``'s environment;
    ``keep``: a path to copy callgrind's output to (for ``callgrind_annotate``); ``null``:
    the child's writes go to a ``NullMember`` (the floor)."""
    why = available()
    if why is not None:
        raise InstructionsError(why)
    if writes < inflight or inflight < 1:
        raise ValueError(f"need writes >= inflight >= 1, not {writes} and {inflight}")
    with tempfile.TemporaryDirectory(prefix="pyraft-instructions-") as directory:
        out = os.path.join(directory, "callgrind.out")
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={out}", sys.executable, "-m",
                   "pyraft.bench.instructions", "--child", "--writes", str(writes),
                   "--inflight", str(inflight), "--data", directory] + (
                       ["--null"] if null else [])
        with tempfile.TemporaryFile(mode="w+") as log, subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                env=builds.child_environment(build)) as child:  # ``with``: its pipes close
            try:
                _expect(child, "READY", timeout_s, log)
                _control(child.pid, "on")
                _say(child)
                _expect(child, "DONE", timeout_s, log)
                _control(child.pid, "off")
                _say(child)
                code = child.wait(timeout_s)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait(10)
            if code != 0:
                raise InstructionsError(f"the child exited {code}: {_tail(log)}")
        if keep is not None:
            shutil.copyfile(out, keep)
        with open(out) as f:
            return parse_totals(f.read()) / writes


def instructions(writes: int, rounds: int, inflight: int = 1, keep: str | None = None) -> dict:
    """Instructions per write, compiled and pure, alternating (``builds.alternate``);
    ``keep``: a directory where each measurement's callgrind output stays
    (``callgrind.BUILD.N``)."""
    runs: dict[str, int] = {}

    def one(build: str) -> float:
        runs[build] = runs.get(build, 0) + 1
        path = None if keep is None else os.path.join(keep, f"callgrind.{build}.{runs[build]}")
        return count(build, writes, inflight, keep=path)

    out = builds.alternate(rounds, one)
    out["unit"] = f"instructions per write x{inflight} (3 members in one process)"
    out["command"] = (f"valgrind --tool=callgrind python -m pyraft.bench.instructions --child "
                      f"--writes {writes} --inflight {inflight} (counted from the first write "
                      f"to the last; PYRAFT_PURE_CORE=1 for the pure build)")
    return out


def bounded(writes: int, rounds: int, inflight: int, keep: str | None = None) -> dict:
    """:func:`instructions` and the :func:`floor` of the same load. ``above_floor``: what
    each build's own code costs per write above it, and their ratio; ``ceiling``: the pure
    build's count over the floor, the largest ratio of the two builds' counts that any
    compiled code could reach (were it free), since the floor is the same work in both."""
    out = instructions(writes, rounds, inflight, keep)
    base = floor(writes, inflight,
                 keep=None if keep is None else os.path.join(keep, "callgrind.floor.1"))
    compiled, pure = out["compiled"]["median"], out["pure"]["median"]
    out["floor"] = base
    out["above_floor"] = {"compiled": compiled - base, "pure": pure - base,
                          "ratio": builds.ratio(compiled - base, pure - base)}
    out["ceiling"] = builds.ratio(pure, base)
    return out


class _CountedMember(processes.Member):
    """A member process run under callgrind, counting only once told to (``_control``)."""

    out = ""

    def arguments(self) -> list[str]:
        return ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={self.out}", *super().arguments()]


def follower_count(build: str, writes: int = 1000, timeout_s: float = 600.0,
                   keep: str | None = None) -> float:
    """Instructions per write of one follower process in ``build`` (module docstring);
    ``keep``: a path to copy callgrind's output to."""
    from pyraft.bench.workloads import MEMBER_ARGS

    why = available()
    if why is not None:
        raise InstructionsError(why)
    if writes < 1:
        raise ValueError(f"need writes >= 1, not {writes}")
    members: list[processes.Member] = []
    with tempfile.TemporaryDirectory(prefix="pyraft-instructions-") as directory:
        config = os.path.join(directory, "member.json")
        with open(config, "w") as f:
            json.dump({"inline_sync_max_ms": 1000.0}, f)  # every sync inline (above)
        peers = {m: f"127.0.0.1:{processes.free_port()}" for m in (1, 2)}
        settings = [*MEMBER_ARGS, "--tick-ms", str(TICK_MS), "--election-ms", str(ELECTION_MS),
                    "--config", config]
        try:
            leader = processes.Member(1, peers[1], peers, os.path.join(directory, "m1"),
                                      extra_args=settings)
            members.append(leader.start(timeout_s))
            follower = _CountedMember(2, peers[2], peers, os.path.join(directory, "m2"),
                                      extra_args=[*settings, "--standby"])  # a voter that
            # never campaigns: every write waits for it, and member 1 leads
            follower.out = os.path.join(directory, "callgrind.out")
            with builds.environment(build):
                members.append(follower.start(timeout_s))
            processes.wait_for(lambda: leader.call("status").get("role") == "leader",
                               timeout=timeout_s)
            leader.set_timeout(timeout_s)
            load = {"size": len(PAYLOAD), "inflight": 1, "duration_s": timeout_s}
            leader.call("load", count=50, **load)  # warm: nothing lazy left
            _control(follower.pid, "on")
            answer = leader.call("load", count=writes, **load)
            _control(follower.pid, "off")
            if not answer.get("ok") or answer["result"]["errors"]:
                raise InstructionsError(f"the load failed: {answer}")
            counted = answer["result"]["writes"]
            follower.stop()  # callgrind writes its output as the process exits
            if keep is not None:
                shutil.copyfile(follower.out, keep)
            with open(follower.out) as f:
                return parse_totals(f.read()) / counted
        finally:
            for member in members:
                member.stop()


def followers(writes: int, rounds: int, keep: str | None = None) -> dict:
    """One follower's instructions per write, compiled and pure, alternating."""
    runs: dict[str, int] = {}

    def one(build: str) -> float:
        runs[build] = runs.get(build, 0) + 1
        path = None if keep is None else os.path.join(keep, f"callgrind.follower.{build}."
                                                             f"{runs[build]}")
        return follower_count(build, writes, keep=path)

    out = builds.alternate(rounds, one)
    out["unit"] = "instructions per write x1 (one follower process of two members)"
    return out


def _expect(child: subprocess.Popen, word: str, timeout_s: float, log: IO[str]) -> None:
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], timeout_s)
    line = child.stdout.readline() if ready else ""
    if not line.startswith(word):
        raise InstructionsError(f"expected {word} from the child, got {line.strip()!r}: "
                                f"{_tail(log)}")


def _say(child: subprocess.Popen) -> None:
    assert child.stdin is not None
    child.stdin.write("go\n")
    child.stdin.flush()


def _control(pid: int, state: str) -> None:
    done = subprocess.run(["callgrind_control", "-i", state, str(pid)], capture_output=True,
                          text=True, timeout=60)
    if done.returncode != 0:
        raise InstructionsError(f"callgrind_control -i {state} {pid}: {done.stderr.strip()}")


def _tail(log: IO[str]) -> str:
    log.seek(0)
    return log.read()[-1500:].strip()


def floor(writes: int, inflight: int = 1, keep: str | None = None) -> float:
    """Instructions per write of the load alone against ``NullMember`` (module docstring),
    counted like a build (the compiled build's environment; the null member runs no code
    of pyraft's)."""
    return count("compiled", writes, inflight, keep=keep, null=True)


# ---- the child ------------------------------------------------------------------------------
class NullMember:
    """A member that does no work: ``replicate`` queues the write with its future, as
    ``RaftCluster.replicate`` does, and every queued write is settled (None) on the next
    turn of the loop, as one Ready would settle a batch."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: list[tuple[list[bytes], asyncio.Future[None]]] = []

    async def replicate(self, command: bytes, timeout: float | None = None) -> None:
        payloads = [bytes(command)]
        future: asyncio.Future[None] = self._loop.create_future()
        if not self._queue:
            self._loop.call_soon(self._settle)
        self._queue.append((payloads, future))
        return await future

    def _settle(self) -> None:
        queue, self._queue = self._queue, []
        for _, future in queue:
            if not future.done():
                future.set_result(None)


async def write_load(member: Any, writes: int, inflight: int) -> None:
    """``writes`` writes of ``PAYLOAD`` by ``inflight`` tasks, one after another in each
    (``member``: a ``RaftCluster`` or a ``NullMember``)."""
    replicate = member.replicate

    async def load(n: int) -> None:
        for _ in range(n):
            await replicate(PAYLOAD)

    share, extra = divmod(writes, inflight)
    await asyncio.gather(*[load(share + (1 if i < extra else 0)) for i in range(inflight)])


async def _counted(loop: asyncio.AbstractEventLoop, member: Any, writes: int,
                   inflight: int) -> None:
    """The protocol with ``count``: warm up, READY, wait, the counted writes, DONE, wait."""
    await write_load(member, 20 * inflight, inflight)  # warm: nothing lazy left
    print("READY", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    await write_load(member, writes, inflight)
    print("DONE", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)


async def _null_child(writes: int, inflight: int) -> None:
    loop = asyncio.get_running_loop()
    await _counted(loop, NullMember(loop), writes, inflight)


async def _child(writes: int, inflight: int, data: str, tick_ms: float = TICK_MS,
                 election_ms: float = ELECTION_MS) -> None:
    from pyraft.cluster import RaftCluster
    from pyraft.config import ClusterConfig
    from pyraft.testing.cluster import settled_leader
    from pyraft.testing.member import CountLog
    from pyraft.testing.processes import free_port

    loop = asyncio.get_running_loop()
    peers = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3)}
    members = [RaftCluster.from_config(
        ClusterConfig(member_id=m, peers=peers, listen=peers[m], tick_ms=tick_ms,
                      election_timeout_ms_lower=election_ms,
                      election_timeout_ms_upper=2 * election_ms,
                      data_dir=os.path.join(data, f"m{m}"), inline_sync_max_ms=1000.0),
        state_machine=CountLog()) for m in peers]
    for member in members:
        await member.start()
    try:
        await _counted(loop, await settled_leader(members, 300), writes, inflight)
    finally:
        for member in members:
            await member.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pyraft.bench.instructions",
        description="instructions per write, counted by callgrind (see the module docstring)")
    parser.add_argument("--child", action="store_true",
                        help="be the counted process (run under callgrind by count())")
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--inflight", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="measurements per build")
    parser.add_argument("--data", help="--child: where the members' logs go")
    parser.add_argument("--keep", metavar="DIR",
                        help="keep callgrind's output of every measurement in DIR "
                             "(callgrind.BUILD.N, for callgrind_annotate)")
    parser.add_argument("--floor", action="store_true",
                        help="also count the floor: the same load against a member that "
                             "does no work (module docstring), and each build above it")
    parser.add_argument("--follower", action="store_true",
                        help="count one follower process of a two-member cluster instead "
                             "(module docstring)")
    parser.add_argument("--null", action="store_true",
                        help="--child: write to a member that does no work (the floor)")
    parser.add_argument("--tick-ms", type=float, default=TICK_MS,
                        help="--child: the members' tick (the default suits callgrind)")
    parser.add_argument("--election-ms", type=float, default=ELECTION_MS,
                        help="--child: the lower election timeout (the default suits "
                             "callgrind; a native run elects sooner with less)")
    args = parser.parse_args(argv)
    if args.child:
        import uvloop

        if args.null:
            uvloop.run(_null_child(args.writes, args.inflight))
            return 0
        if not args.data:
            parser.error("--child needs --data")
        uvloop.run(_child(args.writes, args.inflight, args.data, args.tick_ms,
                          args.election_ms))
        return 0
    if args.follower and args.floor:
        parser.error("--floor counts the load of three members in one process, not "
                     "--follower")
    why = available()
    if why is not None:
        print(f"cannot count instructions: {why}", file=sys.stderr)
        return 2
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    if args.follower:
        result = followers(args.writes, args.rounds, keep=args.keep)
    elif args.floor:
        result = bounded(args.writes, args.rounds, args.inflight, keep=args.keep)
    else:
        result = instructions(args.writes, args.rounds, args.inflight, keep=args.keep)
    for build in ("compiled", "pure"):
        values = ", ".join(f"{v:,.0f}" for v in result[build]["values"])
        print(f"{build}: median {result[build]['median']:,.0f} {result['unit']} ({values})")
    print(f"compiled / pure: {result['ratio']:.3f}")
    if "floor" in result:
        above = result["above_floor"]
        print(f"floor (the same load, a member that does no work): {result['floor']:,.0f} "
              f"per write")
        print(f"above the floor: compiled {above['compiled']:,.0f}, pure {above['pure']:,.0f}"
              f", compiled / pure {above['ratio']:.3f}")
        print(f"ceiling (pure / floor: the ratio of the counts were the compiled code free): "
              f"{result['ceiling']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
