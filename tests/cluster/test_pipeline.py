"""Pipelined Readys in the runtime (issue 18): while one Ready's fdatasync runs on the I/O
thread the member writes and sends the next ones, and still answers only for what is durable.

Three in-memory members on WAL storage whose syncs are slowed (a few milliseconds, on the I/O
thread): every acknowledgement a follower sends and every index the leader counts for itself
is checked against what the WAL reported durable at that moment.
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time

from pyraft.core import MessageType
from pyraft.storage.files import storage_error
from pyraft.storage.log import DurableLogStorage
from pyraft.testing.cluster import memory_cluster, run_on_fresh_loop, settled_leader
from pyraft.transport.memory import MemoryNetwork

SYNC_DELAY_S = 0.004


class Watched:
    """One member's WAL with slow syncs, what they made durable, and the deepest pipeline
    seen; ``fail_next`` makes the next sync raise a disk error (``EIO``) once."""

    def __init__(self, path: str) -> None:
        self.storage = DurableLogStorage(path, sync="always")
        self.durable = 0
        self.fail_next = False
        self.failures = 0
        self._lock = threading.Lock()
        real_sync = self.storage.sync

        def slow_sync() -> int:
            time.sleep(SYNC_DELAY_S)
            with self._lock:
                if self.fail_next:
                    self.fail_next = False
                    self.failures += 1
                    raise storage_error(OSError(errno.EIO, os.strerror(errno.EIO)),
                                        "cannot sync the log", path)
            durable = real_sync()
            with self._lock:
                self.durable = max(self.durable, durable)
            return durable

        self.storage.sync = slow_sync  # type: ignore[method-assign]


def watch(members, watched, violations, deepest):
    """Check every message each member sends against its durable index."""
    for member in members:
        member._writer.inline_sync_max_ms = 0.0  # every sync on the I/O thread, as for a slow disk
        transport = member.transport
        send = transport.send

        def checked(message, member=member, send=send):
            w = watched[member.id]
            core = member.core
            deepest[member.id] = max(deepest[member.id], core.readys_in_flight)
            if (message.type is MessageType.APPEND_RESPONSE and not message.reject
                    and message.index > w.durable):
                violations.append(f"member {member.id} acknowledged {message.index} with "
                                  f"{w.durable} durable")
            me = core.progress.get(member.id)
            if me is not None and me.match > w.durable:
                violations.append(f"leader {member.id} counts itself up to {me.match} with "
                                  f"{w.durable} durable")
            send(message)

        transport.send = checked


async def write_open_loop(leader, count: int, interval_s: float = 0.001) -> list:
    """``count`` writes, one started every ``interval_s`` whether or not the earlier ones
    ended: several arrive while each sync runs."""
    tasks = []
    for i in range(count):
        tasks.append(asyncio.ensure_future(leader.replicate(b"w%d" % i, timeout=20)))
        await asyncio.sleep(interval_s)
    return list(await asyncio.gather(*tasks, return_exceptions=True))


def run_pipelined(tmp_path, depth: int, fail_leader_sync: bool = False):
    watched: dict[int, Watched] = {}
    violations: list[str] = []
    deepest: dict[int, int] = {}
    outcome: dict = {}

    def store(member):
        watched[member] = Watched(str(tmp_path / f"m{member}"))
        deepest[member] = 0
        return watched[member].storage

    async def body():
        async with memory_cluster(MemoryNetwork(), storage=store,
                                  ready_pipeline_max=depth) as members:
            leader = await settled_leader(members)
            watch(members, watched, violations, deepest)
            if fail_leader_sync:
                first = await write_open_loop(leader, 20)
                assert all(isinstance(r, bytes | type(None)) for r in first), first
                watched[leader.id].fail_next = True
            results = await write_open_loop(leader, 300)
            if fail_leader_sync:
                deadline = time.monotonic() + 20
                while leader.storage_failure is not None and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                assert leader.storage_failure is None
            await leader.replicate(b"last", timeout=20)
            commit = leader.commit_index
            for member in members:
                await member.wait_for_applied(commit, timeout=20)
            outcome["results"] = results
            outcome["logs"] = [
                [t for t in member.storage.entries(1, commit + 1).terms] for member in members
            ]
            outcome["tasks"] = [t.get_name() for t in leader._tasks]
            outcome["leader"] = leader.id

    run_on_fresh_loop(body, timeout_s=120)
    return watched, violations, deepest, outcome


def test_members_keep_several_readys_in_flight_and_answer_only_for_durable_entries(tmp_path):
    watched, violations, deepest, outcome = run_pipelined(tmp_path, depth=8)
    assert not violations, violations[:5]
    assert all(not isinstance(r, BaseException) for r in outcome["results"])
    # the pipelines were used: the leader and a follower had several Readys in flight
    leader = outcome["leader"]
    assert deepest[leader] > 1
    assert max(d for m, d in deepest.items() if m != leader) > 1
    assert max(deepest.values()) <= 8
    first, *others = outcome["logs"]
    assert all(log == first for log in others)  # every member holds the same entries
    assert any(name.endswith("-finish") for name in outcome["tasks"])


def test_a_pipeline_of_one_persists_each_ready_before_the_next(tmp_path):
    _, violations, deepest, outcome = run_pipelined(tmp_path, depth=1)
    assert not violations, violations[:5]
    assert all(not isinstance(r, BaseException) for r in outcome["results"])
    assert max(deepest.values()) == 1
    assert not any(name.endswith("-finish") for name in outcome["tasks"])


def test_a_failed_sync_in_the_pipeline_is_retried_and_loses_nothing(tmp_path):
    """The leader's sync fails once (EIO) with Readys in flight behind it: that Ready and
    the ones after it are written again in order; every write that succeeded is in every
    member's log, the others failed with a typed error, and storage works again."""
    watched, violations, _, outcome = run_pipelined(tmp_path, depth=8, fail_leader_sync=True)
    assert watched[outcome["leader"]].failures == 1
    assert not violations, violations[:5]
    errors = [r for r in outcome["results"] if isinstance(r, BaseException)]
    assert all(type(e).__name__ in {"StorageError", "CommandOutcomeUnknownError"}
               for e in errors), errors[:3]
    assert len(errors) < len(outcome["results"])
    first, *others = outcome["logs"]
    assert all(log == first for log in others)
