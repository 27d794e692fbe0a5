"""The proposal ledger on its own, without an event loop: queue bounds, the fate of each write
(result, CommandLostError, CommandOutcomeUnknownError), and the property that any sequence of
enqueue / propose / apply / replace / snapshot / stop decides every write exactly once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyraft import _compiled
from pyraft.cluster.ledger import ProposalLedger
from pyraft.errors import (
    ClusterStoppedError,
    CommandInterruptedError,
    CommandLostError,
    CommandOutcomeUnknownError,
)
from raftcore.framing import KIND_COMMAND, EntryBatch, encode_entries


class FakeFuture:
    """A future-like that refuses to be settled twice (asyncio's InvalidStateError)."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[str, Any]] = []

    def done(self) -> bool:
        return bool(self.outcomes)

    def set_result(self, result: Any) -> None:
        assert not self.outcomes, f"settled twice: {self.outcomes} then result {result!r}"
        self.outcomes.append(("result", result))

    def set_exception(self, exception: BaseException) -> None:
        assert not self.outcomes, f"settled twice: {self.outcomes} then {exception!r}"
        self.outcomes.append(("error", exception))


def batch(first: int, terms: list[int]) -> EntryBatch:
    return encode_entries(first, terms, [b"x%d" % (first + i) for i in range(len(terms))],
                          KIND_COMMAND)


def results_of(entries: EntryBatch) -> list[Any]:
    return [("r", index) for index in range(entries.first_index, entries.last_index + 1)]


def test_a_write_resolves_with_its_result_once_applied() -> None:
    ledger = ProposalLedger(8)
    one, many = FakeFuture(), FakeFuture()
    ledger.enqueue([b"a"], one, False)
    ledger.enqueue([b"b", b"c"], many, True)
    assert ledger.queued == 3
    queued = ledger.take_queue()
    assert queued is not None and queued.payloads == [b"a", b"b", b"c"]
    assert ledger.queued == 0 and ledger.take_queue() is None
    ledger.proposed(queued, 5, 2)
    applied = batch(5, [2, 2])
    ledger.applied(applied, results_of(applied))
    assert one.outcomes == [("result", ("r", 5))]
    assert not many.done()  # its last command is not applied yet
    rest = batch(7, [2])
    ledger.applied(rest, results_of(rest))
    assert many.outcomes == [("result", [("r", 6), ("r", 7)])]
    assert not ledger.proposals


@pytest.mark.parametrize("twin", [False, True])
def test_the_runtimes_asyncio_futures_are_settled_alike(twin: bool) -> None:
    """The runtime's futures (asyncio's type, whose methods the ledger calls directly): a
    result, a write lost to another term, and a write whose caller gave up (cancelled: left
    as it is), in the compiled ledger and in its ``.py`` twin."""
    ledger_class = _compiled.load_twin("pyraft.cluster.ledger").ProposalLedger if twin \
        else ProposalLedger
    loop = asyncio.new_event_loop()
    try:
        ledger = ledger_class(8)
        kept, lost, gone = (loop.create_future() for _ in range(3))
        ledger.enqueue([b"a"], kept, False)
        ledger.enqueue([b"b"], gone, False)
        ledger.enqueue([b"c", b"d"], lost, True)
        ledger.proposed(ledger.take_queue(), 1, 1)
        gone.cancel()
        applied = batch(1, [1, 1, 2, 2])  # 3 and 4: a later leader's entries
        ledger.applied(applied, results_of(applied))
        assert kept.result() == ("r", 1)
        assert gone.cancelled()
        assert isinstance(lost.exception(), CommandLostError)
        assert not ledger.proposals
    finally:
        loop.close()


def test_a_write_applied_with_another_term_is_lost() -> None:
    ledger = ProposalLedger(8)
    single, many = FakeFuture(), FakeFuture()
    ledger.enqueue([b"a"], single, False)
    ledger.enqueue([b"b", b"c"], many, True)
    ledger.proposed(ledger.take_queue(), 1, 1)  # type: ignore[arg-type]
    other = batch(1, [1, 2, 2])  # index 1 kept its term; 2 and 3 are a later leader's
    ledger.applied(other, None)
    assert single.outcomes == [("result", None)]
    kind, error = many.outcomes[0]
    assert kind == "error" and isinstance(error, CommandLostError)
    assert "2..3" in str(error)


def test_entries_leaving_the_log_make_the_outcome_unknown() -> None:
    ledger = ProposalLedger(8)
    kept, cut = FakeFuture(), FakeFuture()
    ledger.enqueue([b"a"], kept, False)
    ledger.enqueue([b"b"], cut, False)
    ledger.proposed(ledger.take_queue(), 1, 3)  # type: ignore[arg-type]
    # a later leader resends index 1 with our term and replaces index 2
    ledger.replaced(1, [batch(1, [3, 4])])
    assert not kept.done()
    kind, error = cut.outcomes[0]
    assert kind == "error" and isinstance(error, CommandOutcomeUnknownError)
    assert [p.first for p in ledger.proposals] == [1]


def test_a_snapshot_covering_a_write_makes_its_outcome_unknown() -> None:
    ledger = ProposalLedger(8)
    future = FakeFuture()
    ledger.enqueue([b"a", b"b"], future, True)
    ledger.proposed(ledger.take_queue(), 3, 1)  # type: ignore[arg-type]
    ledger.replaced(4, covered=3)
    assert isinstance(future.outcomes[0][1], CommandOutcomeUnknownError)


def test_applied_past_a_write_that_was_skipped_is_unknown() -> None:
    ledger = ProposalLedger(8)
    future = FakeFuture()
    ledger.enqueue([b"a"], future, False)
    ledger.proposed(ledger.take_queue(), 2, 1)  # type: ignore[arg-type]
    later = batch(5, [2])  # 2..4 came in a snapshot this ledger never saw
    ledger.applied(later, None)
    assert isinstance(future.outcomes[0][1], CommandOutcomeUnknownError)


def test_the_queue_bound_lets_one_oversized_write_in_alone() -> None:
    ledger = ProposalLedger(4)
    assert ledger.has_room(100)  # an empty queue takes a write bigger than the bound
    ledger.enqueue([b"x"] * 100, FakeFuture(), True)
    assert not ledger.has_room(1)
    ledger.take_queue()
    assert ledger.has_room(4) and ledger.has_room(5)
    ledger.enqueue([b"x"] * 3, FakeFuture(), True)
    assert ledger.has_room(1) and not ledger.has_room(2)


def test_writers_waiting_for_room_wake_when_the_queue_empties() -> None:
    ledger = ProposalLedger(1)
    ledger.enqueue([b"a"], FakeFuture(), False)
    waiter = FakeFuture()
    ledger.wait_for_room(waiter)
    ledger.proposed(ledger.take_queue(), 1, 1)  # type: ignore[arg-type]
    assert waiter.outcomes == [("result", None)]
    again = FakeFuture()
    ledger.wait_for_room(again)
    ledger.fail_queue(ClusterStoppedError("not leader"))
    assert again.outcomes == [("result", None)]


def test_fail_all_fails_queued_and_in_flight_writes_and_skips_done_ones() -> None:
    ledger = ProposalLedger(8)
    flying, queued, abandoned = FakeFuture(), FakeFuture(), FakeFuture()
    ledger.enqueue([b"a"], flying, False)
    ledger.enqueue([b"b"], abandoned, False)
    ledger.proposed(ledger.take_queue(), 1, 1)  # type: ignore[arg-type]
    abandoned.set_result("the caller gave up")
    ledger.enqueue([b"c"], queued, False)
    stop = ClusterStoppedError("stopped")
    ledger.fail_all(stop)
    assert flying.outcomes == [("error", stop)] and queued.outcomes == [("error", stop)]
    assert abandoned.outcomes == [("result", "the caller gave up")]
    assert ledger.queued == 0 and not ledger.proposals and ledger.pending() == []


def test_fail_all_tells_the_writes_in_flight_apart_from_the_queued_ones() -> None:
    """A write in the log may still be committed by another member: it gets the error
    for the writes in flight; a write still queued never entered the log."""
    ledger = ProposalLedger(8)
    flying, queued = FakeFuture(), FakeFuture()
    ledger.enqueue([b"a", b"b"], flying, True)
    ledger.proposed(ledger.take_queue(), 1, 1)  # type: ignore[arg-type]
    ledger.enqueue([b"c"], queued, False)
    stop = ClusterStoppedError("stopped")
    interrupted = CommandInterruptedError("stopped with the command in flight")
    ledger.fail_all(stop, interrupted)
    assert flying.outcomes == [("error", interrupted)]
    assert queued.outcomes == [("error", stop)]
    assert ledger.queued == 0 and not ledger.proposals


def test_invalid_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="proposal_queue_full"):
        ProposalLedger(8, "drop")
    with pytest.raises(ValueError, match="proposal_queue_max"):
        ProposalLedger(0)


operations = st.lists(st.one_of(
    st.tuples(st.just("enqueue"), st.integers(1, 4), st.booleans()),
    st.tuples(st.just("propose")),
    st.tuples(st.just("apply"), st.integers(1, 6)),
    st.tuples(st.just("replace"), st.integers(0, 8), st.integers(0, 4)),
    st.tuples(st.just("snapshot"), st.integers(0, 8)),
    st.tuples(st.just("lose_lead")),
), max_size=40)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_every_write_is_decided_exactly_once(ops: list[tuple[Any, ...]]) -> None:
    """Any sequence of queueing, proposing, applying, replacing the log and installing
    snapshots, then a stop: every write has exactly one outcome (FakeFuture refuses a second),
    a result only when all its indexes were applied with its own term, and then the results of
    its own indexes. The ledger is compiled in the default build: its ``.py`` source, run
    as well, must decide every write the same way."""
    outcomes = _decide(ProposalLedger, ops)
    twin = _compiled.load_twin("pyraft.cluster.ledger").ProposalLedger
    assert _decide(twin, ops) == outcomes


def _decide(ledger_class: Any, ops: list[tuple[Any, ...]]) -> list[tuple[str, Any]]:
    """Run ``ops`` on a ledger, check the property, and return each write's outcome (the
    result, or the error's type)."""
    ledger = ledger_class(6)
    log: list[int] = []  # the term of each index (index = position + 1)
    term, applied = 1, 0
    writes: list[tuple[FakeFuture, int]] = []  # future, number of commands
    placed: dict[int, tuple[int, int, int]] = {}  # id(future) -> first, last, term
    applied_terms: dict[int, int] = {}

    def apply_to(end: int) -> None:
        nonlocal applied
        if end > applied:
            entries = batch(applied + 1, log[applied:end])
            for index in range(applied + 1, end + 1):
                applied_terms[index] = log[index - 1]
            ledger.applied(entries, results_of(entries))
            applied = end

    for op in ops:
        if op[0] == "enqueue":
            count = op[1] if op[2] else 1  # replicate_many, or replicate (one command)
            if ledger.has_room(count):
                future = FakeFuture()
                if not op[2] and op[1] % 2:  # a replicate's path: the command without a list
                    ledger.enqueue_command(b"c", future)
                else:
                    ledger.enqueue([b"c"] * count, future, op[2])
                writes.append((future, count))
        elif op[0] == "propose":
            queued = ledger.take_queue()
            if queued is not None:
                first = len(log) + 1
                log.extend([term] * len(queued.payloads))
                for proposal in queued.items:
                    future = proposal.future
                    count = sum(n for f, n in writes if f is future)
                    placed[id(future)] = (first, first + count - 1, term)
                    first += count
                ledger.proposed(queued, len(log) - len(queued.payloads) + 1, term)
        elif op[0] == "apply":
            apply_to(min(applied + op[1], len(log)))
        elif op[0] == "replace":
            start = min(applied + 1 + op[1], len(log) + 1)
            term += 1
            del log[start - 1:]
            log.extend([term] * op[2])
            ledger.fail_queue(ClusterStoppedError("not the leader"))
            ledger.replaced(start, [batch(start, log[start - 1:])] if op[2] else [])
        elif op[0] == "snapshot":
            covered = applied + op[1]
            term += 1
            log = log[:covered] + [term] * max(0, covered - len(log))
            log[applied:covered] = [term] * (covered - applied)
            for index in range(applied + 1, covered + 1):
                applied_terms[index] = log[index - 1]
            applied = covered
            ledger.fail_queue(ClusterStoppedError("not the leader"))
            ledger.replaced(covered + 1, covered=covered)
        elif op[0] == "lose_lead":
            term += 1
            ledger.fail_queue(ClusterStoppedError("not the leader"))
    apply_to(len(log))
    ledger.fail_all(ClusterStoppedError("stopped"))

    for future, _count in writes:
        assert len(future.outcomes) == 1, future.outcomes
        kind, value = future.outcomes[0]
        if kind != "result":
            assert isinstance(value, (ClusterStoppedError, CommandLostError,
                                      CommandOutcomeUnknownError))
            continue
        first, last, written = placed[id(future)]
        assert all(applied_terms.get(i) == written for i in range(first, last + 1))
        expected = [("r", i) for i in range(first, last + 1)]
        many = isinstance(value, list)
        assert value == (expected if many else expected[0])
    return [(kind, value if kind == "result" else type(value).__name__)
            for kind, value in (future.outcomes[0] for future, _ in writes)]
