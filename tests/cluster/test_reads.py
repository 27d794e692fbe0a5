"""The reads and waits of one member (``pyraft.cluster.reads``) on their own: a loop, the
waiters, and a status object standing for the core's view; the test plays the runtime
(it answers read contexts and resolves the waiters as a Ready would)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from pyraft.cluster.reads import Reads
from pyraft.cluster.waiters import Waiters
from pyraft.errors import ClusterStoppedError, ClusterTimeoutError

T = TypeVar("T")


@dataclasses.dataclass
class Status:
    lead: int = 0
    committed: int = 0
    applied: int = 0
    committed_in_current_term: bool = False


class Member:
    """What the runtime gives ``Reads``: the waiters, the running flags, the read request."""

    def __init__(self, member_id: int = 1, retry_seconds: float = 10.0) -> None:
        self.status = Status()
        self.waiters = Waiters()
        self.running = True
        self.failed = False
        self.contexts: list[bytes] = []
        self.reads = Reads(member_id, self.waiters, retry_seconds=retry_seconds,
                           running=lambda: self.running, check_running=self.check_running)

    def check_running(self) -> None:
        if not self.running or self.failed:
            raise ClusterStoppedError("member 1 is not running")

    def bind(self) -> None:
        self.reads.bind(asyncio.get_running_loop(), self.status, self.contexts.append)

    def ready(self) -> None:
        """What the runtime does after a Ready: resolve the waiters."""
        self.waiters.resolve(self.status.committed, self.status.applied)


def run(body: Callable[[Member], Awaitable[T]], member: Member | None = None) -> T:
    member = member if member is not None else Member()

    async def main() -> T:
        member.bind()
        return await body(member)

    return asyncio.run(main())


async def started(coroutine: Awaitable[T]) -> asyncio.Task[T]:
    task: asyncio.Task[T] = asyncio.ensure_future(coroutine)
    await asyncio.sleep(0)  # let it register its waiter
    return task


def test_a_read_barrier_returns_the_read_index_once_applied() -> None:
    async def body(member: Member) -> None:
        barrier = await started(member.reads.read_barrier(None))
        assert member.contexts == [b"r1:1"]  # the core was asked, with a fresh context
        member.waiters.read_state(b"r1:1", 7)
        member.status.applied = 6
        member.ready()
        await asyncio.sleep(0)
        assert not barrier.done()  # the read index is not applied yet
        member.status.applied = 7
        member.ready()
        assert await barrier == 7
        assert member.waiters.reads == {}  # the context is dropped once done
        second = await started(member.reads.read_barrier(None))
        assert member.contexts[-1] == b"r1:2"  # contexts are never reused
        second.cancel()

    run(body)


def test_a_read_barrier_times_out_and_drops_its_context() -> None:
    async def body(member: Member) -> None:
        with pytest.raises(asyncio.TimeoutError):
            await member.reads.read_barrier(0.01)
        assert member.waiters.reads == {}

    run(body)


def test_a_stopped_member_refuses_a_read_barrier_without_asking_the_core() -> None:
    async def body(member: Member) -> None:
        member.running = False
        with pytest.raises(ClusterStoppedError):
            await member.reads.read_barrier(None)
        assert member.contexts == []

    run(body)


def test_waits_for_commit_and_apply_return_at_once_or_after_a_ready() -> None:
    async def body(member: Member) -> None:
        member.status.committed, member.status.applied = 5, 4
        await member.reads.until_committed(5, None)  # already there: no waiter needed
        await member.reads.until_applied(4, None)
        commit = await started(member.reads.until_committed(6, None))
        applied = await started(member.reads.until_applied(6, None))
        member.status.committed = 6
        member.ready()
        await asyncio.sleep(0)
        assert commit.done() and not applied.done()
        member.status.applied = 6
        member.ready()
        await applied
        with pytest.raises(asyncio.TimeoutError):
            await member.reads.until_committed(9, 0.01)

    run(body)


def test_a_condition_is_checked_now_then_after_each_ready() -> None:
    async def body(member: Member) -> None:
        state = {"ok": True}
        await member.reads.until(lambda: state["ok"], None)
        state["ok"] = False
        waiting = await started(member.reads.until(lambda: state["ok"], None))
        member.ready()
        await asyncio.sleep(0)
        assert not waiting.done()
        state["ok"] = True
        member.ready()
        await waiting

    run(body)


def test_wait_for_leader_returns_the_leader_or_names_its_timeout() -> None:
    async def body(member: Member) -> None:
        with pytest.raises(ClusterTimeoutError) as raised:
            await member.reads.leader(0.01)
        assert raised.value.timeout == 0.01 and "0.01 s" in str(raised.value)
        waiting = await started(member.reads.leader(None))
        member.status.lead = 3
        member.ready()
        assert await waiting == 3
        member.failed = True
        with pytest.raises(ClusterStoppedError):
            await member.reads.leader(None)

    run(body)


def test_consistency_on_the_leader_waits_for_its_term_to_commit() -> None:
    async def body(member: Member) -> None:
        member.status.lead = 1  # this member leads
        waiting = await started(member.reads.consistent(None))
        assert member.contexts == []  # the leader asks nobody
        member.ready()
        await asyncio.sleep(0)
        assert not waiting.done()
        member.status.committed_in_current_term = True
        member.ready()
        await waiting

    run(body)


def test_consistency_on_a_follower_asks_again_when_the_leader_never_answers() -> None:
    async def body(member: Member) -> None:
        member.status.lead = 2
        waiting = asyncio.ensure_future(member.reads.consistent(5.0))
        for _ in range(200):  # bounded: the first request, then the retry after 0.05 s
            if len(member.contexts) == 2:
                break
            await asyncio.sleep(0.01)
        assert member.contexts == [b"r1:1", b"r1:2"]
        member.waiters.read_state(b"r1:2", 4)
        member.status.applied = 4
        member.ready()
        await waiting

    run(body, Member(retry_seconds=0.05))


def test_consistency_names_its_timeout_and_refuses_on_a_stopped_member() -> None:
    async def body(member: Member) -> None:
        member.status.lead = 2
        with pytest.raises(ClusterTimeoutError) as raised:
            await member.reads.consistent(0.05)
        assert raised.value.timeout == 0.05 and "ensure_consistency" in str(raised.value)
        member.running = False
        with pytest.raises(ClusterStoppedError):
            await member.reads.consistent(1.0)

    run(body)
