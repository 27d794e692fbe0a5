"""The writes of one member (``pyraft.cluster.writes``) on their own: a real ledger and
loop, a core that records or refuses proposals; no cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from pyraft import _compiled
from pyraft.cluster.ledger import ProposalLedger
from pyraft.cluster.writes import Wake, Writes
from pyraft.core.messages import Role, Snapshot, SnapshotMeta
from pyraft.errors import (
    ClusterStoppedError,
    CommandOutcomeUnknownError,
    NotLeaderError,
    ProposalDroppedError,
    StorageFullError,
)
from pyraft.metrics import Metrics
from raftcore.framing import KIND_COMMAND, encode_entries

from .test_ledger import FakeFuture


class Core:
    """Leads in ``term``; appends proposals from index ``next_index``, or raises ``refuse``."""

    def __init__(self) -> None:
        self.role = Role.LEADER
        self.term = 2
        self.next_index = 1
        self.proposed: list[list[bytes]] = []
        self.refuse: Exception | None = None

    def propose(self, payloads: Sequence[bytes], kind: int = KIND_COMMAND) -> tuple[int, int]:
        if self.refuse is not None:
            raise self.refuse
        assert kind == KIND_COMMAND
        self.proposed.append(list(payloads))
        first = self.next_index
        self.next_index += len(payloads)
        return first, self.next_index - 1


class Member:
    def __init__(self, queue_max: int = 4, queue_full: str = "wait") -> None:
        self.ledger = ProposalLedger(queue_max, queue_full)
        self.core = Core()
        self.writes = Writes(1, self.ledger, Metrics(1, opentelemetry=False),
                             writable=self.writable,
                             not_leader=lambda: NotLeaderError(3, "10.0.0.3:7000", None))

        self.failed: BaseException | None = None  # the log writer's storage failure

    def writable(self) -> None:
        """The runtime's check, on this member's state: why it takes no write now."""
        if not self.writes.open:
            raise ClusterStoppedError("member 1 is not running")
        if self.failed is not None:
            raise self.failed
        if self.core.role is not Role.LEADER:
            raise NotLeaderError(3, None, None)

    def bind(self) -> asyncio.Event:
        wake = asyncio.Event()
        self.writes.bind(asyncio.get_running_loop(), wake, self.core, self)
        self.writes.open = True
        return wake


def test_a_write_is_queued_then_proposed_as_one_batch() -> None:
    async def body() -> None:
        member = Member()
        wake = member.bind()
        one = await member.writes.enqueue([b"a"], False)
        many = await member.writes.enqueue([b"b", b"c"], True)
        assert wake.is_set() and member.ledger.queued == 3
        member.writes.propose_queued()
        assert member.core.proposed == [[b"a", b"b", b"c"]]
        assert member.ledger.queued == 0 and not one.done() and not many.done()
        assert member.ledger.leads_term(2)  # proposed in the member's term
        member.writes.propose_queued()  # nothing queued: nothing proposed
        assert len(member.core.proposed) == 1

    asyncio.run(body())


def test_a_write_with_room_is_queued_without_a_coroutine() -> None:
    """``enqueue_now`` is the path of every write while the queue has room (what
    ``replicate`` and ``replicate_many`` take first): queued and the processing task woken
    at once; with no room it queues nothing and says so, and ``enqueue`` waits or refuses."""
    async def body() -> None:
        member = Member(queue_max=2)
        wake = member.bind()
        one = member.writes.enqueue_now([b"a", b"b"], True)
        assert one is not None and not one.done()
        assert wake.is_set() and member.ledger.queued == 2
        wake.clear()
        assert member.writes.enqueue_now([b"c"], False) is None  # full: nothing queued
        assert member.ledger.queued == 2 and not wake.is_set()
        member.writes.open = False
        with pytest.raises(ClusterStoppedError):
            member.writes.enqueue_now([b"c"], False)
        member.writes.open = True
        member.writes.propose_queued()
        assert member.core.proposed == [[b"a", b"b"]]
        assert member.writes.enqueue_now([b"c"], False) is not None

    asyncio.run(body())


def test_one_command_is_taken_as_payloads_of_takes_it() -> None:
    """``enqueue_command`` (``replicate``'s path): a ``bytes`` queued as it is, another
    bytes-like object copied at the call, anything else a ``TypeError`` that comes before
    the writability check; no room: nothing queued (None)."""
    async def body() -> None:
        member = Member(queue_max=2)
        member.bind()
        command = b"a"
        mutable = bytearray(b"b")
        assert member.writes.enqueue_command(command) is not None
        assert member.writes.enqueue_command(mutable) is not None
        mutable[0] = ord("z")  # after the call: what is replicated does not change
        assert member.writes.enqueue_command(b"c") is None  # full
        member.writes.propose_queued()
        assert member.core.proposed == [[b"a", b"b"]]
        assert member.core.proposed[0][0] is command
        assert all(type(p) is bytes for p in member.core.proposed[0])
        member.writes.open = False
        with pytest.raises(TypeError):
            member.writes.enqueue_command(5)
        with pytest.raises(ClusterStoppedError):
            member.writes.enqueue_command(b"d")

    asyncio.run(body())


def test_only_a_write_into_an_empty_queue_wakes_the_processing_task() -> None:
    """The processing task clears its wake-up and takes the whole queue on the same turn,
    so a write that joins a non-empty queue needs no wake-up of its own (one Event.set per
    write saved): the first write into an empty queue wakes it, the others do not, and once
    the queue is taken the next write wakes it again."""
    async def body() -> None:
        member = Member(queue_max=8)
        wake = member.bind()
        calls: list[int] = []
        setter = wake.set
        wake.set = lambda: (calls.append(member.ledger.queued), setter())[1]  # type: ignore
        member.writes.enqueue_now([b"a"], False)
        member.writes.enqueue_now([b"b", b"c"], True)
        await member.writes.enqueue([b"d"], False)
        assert calls == [0] and wake.is_set() and member.ledger.queued == 4
        wake.clear()  # what the processing task does, then it takes the queue on the same turn
        member.writes.propose_queued()
        assert member.core.proposed == [[b"a", b"b", b"c", b"d"]]
        member.writes.enqueue_now([b"e"], False)
        assert calls == [0, 0] and wake.is_set()

    asyncio.run(body())


def test_a_member_that_takes_no_writes_refuses_before_queueing() -> None:
    async def body() -> None:
        member = Member()
        member.bind()
        member.writes.open = False
        with pytest.raises(ClusterStoppedError):
            await member.writes.enqueue([b"a"], False)
        assert member.ledger.queued == 0

    asyncio.run(body())


def test_a_full_queue_refuses_under_raise_and_waits_otherwise() -> None:
    async def body() -> None:
        strict = Member(queue_max=2, queue_full="raise")
        strict.bind()
        await strict.writes.enqueue([b"a", b"b"], True)
        with pytest.raises(ProposalDroppedError, match="the bound is 2"):
            await strict.writes.enqueue([b"c"], False)

        patient = Member(queue_max=2)
        patient.bind()
        await patient.writes.enqueue([b"a", b"b"], True)
        waiting = asyncio.ensure_future(patient.writes.enqueue([b"c"], False))
        await asyncio.sleep(0)
        assert not waiting.done() and patient.ledger.queued == 2
        patient.core.role = Role.FOLLOWER  # checked again after the wait
        patient.writes.propose_queued()  # the queue empties: the writer wakes up
        with pytest.raises(NotLeaderError):
            await waiting

    asyncio.run(body())


def test_a_batch_the_core_refuses_fails_with_the_members_own_error() -> None:
    async def body() -> None:
        member = Member()
        member.bind()
        future = await member.writes.enqueue([b"a"], False)
        member.core.refuse = NotLeaderError(None, None, None)
        member.writes.propose_queued()
        error = future.exception()
        assert isinstance(error, NotLeaderError) and error.leader_id == 3  # the member's view
        dropped = await member.writes.enqueue([b"b"], False)
        member.core.refuse = ProposalDroppedError("a transfer is under way")
        member.writes.propose_queued()
        assert dropped.exception() is member.core.refuse

    asyncio.run(body())


def test_a_bug_in_the_core_fails_the_batch_and_goes_up() -> None:
    async def body() -> None:
        member = Member()
        member.bind()
        future = await member.writes.enqueue([b"a"], False)
        member.core.refuse = RuntimeError("broken")
        with pytest.raises(RuntimeError, match="broken"):
            member.writes.propose_queued()
        error = future.exception()
        assert isinstance(error, ClusterStoppedError)
        assert error.__cause__ is member.core.refuse

    asyncio.run(body())


def test_entries_of_an_earlier_lead_replaced_have_an_unknown_outcome() -> None:
    ledger = ProposalLedger(8)
    member = Member()
    member.ledger = member.writes.ledger = ledger
    futures: list[Any] = [FakeFuture(), FakeFuture()]
    ledger.enqueue([b"a", b"b"], futures[0], True)
    ledger.proposed(ledger.take_queue(), 5, 2)  # indexes 5..6 in term 2
    replacing = [encode_entries(5, [3, 3], [b"x", b"y"], KIND_COMMAND)]
    member.writes.settle_replaced(replacing, None, leading=True, term=2)
    assert futures[0].outcomes == []  # still this lead: nothing replaced
    member.writes.settle_replaced(replacing, None, leading=False, term=3)
    (outcome,) = futures[0].outcomes
    assert outcome[0] == "error" and isinstance(outcome[1], CommandOutcomeUnknownError)

    ledger.enqueue([b"c"], futures[1], False)
    ledger.proposed(ledger.take_queue(), 7, 2)
    covering = Snapshot(SnapshotMeta(index=9, term=3, voters=(1,)), b"")
    member.writes.settle_replaced([], covering, leading=False, term=3)
    (outcome,) = futures[1].outcomes
    assert isinstance(outcome[1], CommandOutcomeUnknownError)


def test_a_graceful_stop_lets_writes_in_flight_finish_within_its_timeout() -> None:
    async def body() -> None:
        member = Member()
        member.bind()
        finishing = await member.writes.enqueue([b"a"], False)
        member.writes.propose_queued()
        asyncio.get_running_loop().call_later(0.01, finishing.set_result, "done")
        await asyncio.wait_for(member.writes.drain(5.0), 2.0)  # returns once it finished
        assert finishing.result() == "done"
        stuck = await member.writes.enqueue([b"b"], False)
        member.writes.propose_queued()
        await asyncio.wait_for(member.writes.drain(0.02), 2.0)  # gives up after the timeout
        # still pending, never cancelled: the runtime fails it with CommandInterruptedError
        # (a cancellation would tell its writer that the writer's own task was cancelled)
        assert not stuck.done()

    asyncio.run(body())


@pytest.mark.parametrize("state", ["closed", "follower", "storage failed"])
def test_each_part_of_the_compiled_check_refuses_with_the_members_reason(state: str) -> None:
    """``enqueue_now`` reads the writes' ``open``, the core's role and the log writer's
    failure itself; when one of them says no it asks the member why and raises that, and
    nothing is queued."""
    async def body() -> None:
        member = Member()
        member.bind()
        expected: type[Exception]
        if state == "closed":
            member.writes.open, expected = False, ClusterStoppedError
        elif state == "follower":
            member.core.role, expected = Role.FOLLOWER, NotLeaderError
        else:
            member.failed, expected = StorageFullError("the disk is full"), StorageFullError
        with pytest.raises(expected):
            member.writes.enqueue_now([b"a"], False)
        with pytest.raises(expected):
            await member.writes.enqueue([b"a"], False)
        assert member.ledger.queued == 0 and not member.writes.ledger.queued_writes

    asyncio.run(body())


@pytest.mark.parametrize("twin", [False, True], ids=["build", "source"])
def test_the_wake_up_is_an_event_for_one_waiting_task(twin: bool) -> None:
    """``Wake`` (compiled in the default build; its ``.py`` source as well): set before the
    wait, the wait is done at once; set during it, the waiter resumes; a cancelled wait
    leaves a wake-up that later sets and waits still work with; clear undoes set."""
    wake_class = _compiled.load_twin("pyraft.cluster.writes").Wake if twin else Wake

    async def body() -> None:
        loop = asyncio.get_running_loop()
        wake = wake_class(loop)
        assert not wake.is_set()
        wake.set()
        wake.set()  # idempotent
        assert wake.is_set() and wake.wait().done()
        wake.clear()
        assert not wake.is_set()
        waiter = wake.wait()
        assert not waiter.done()
        loop.call_soon(wake.set)
        await asyncio.wait_for(waiter, 1)
        assert wake.is_set()
        wake.clear()
        task = asyncio.ensure_future(wake.wait())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        wake.set()  # the cancelled waiter is skipped
        assert wake.is_set() and wake.wait().done()
        wake.clear()
        resumed = asyncio.ensure_future(wake.wait())
        await asyncio.sleep(0)
        wake.set()
        await asyncio.wait_for(resumed, 1)

    asyncio.run(body())
