"""The proposal ledger: every write from the moment ``replicate`` queues it until its fate is
known. Pure bookkeeping: no event loop, no clock, no I/O (asyncio's ``Future`` is named only
to call its methods, below).

A write is one ``replicate`` (one command) or one ``replicate_many`` (several, in order)
call. Its life:

1. **queued** (``enqueue``): waiting to enter the core; ``queued`` counts the commands, held
   under ``queue_max`` (back-pressure: ``has_room``; the runtime waits for room, or refuses
   with ``ProposalDroppedError`` under ``queue_full == "raise"``). A write bigger than the
   whole bound still enters an empty queue, alone.
2. **proposed** (``take_queue``, then ``proposed`` with the index the core gave the batch):
   in flight at log indexes ``first..last``, appended in ``term``, in index order.
3. **decided**, exactly once: its result(s) when its entries are applied with its own term
   (``applied``); ``CommandLostError`` when another entry was applied at one of its indexes;
   ``CommandOutcomeUnknownError`` as soon as its entries leave this member's log (``replaced``)
   or an installed snapshot covered them; any other error the runtime gives (``fail_queue``,
   ``fail_batch``, ``fail_all``: not the leader, stopped, a bug; ``fail_all`` gives the writes
   in flight an error of their own, as they may still be committed by another member).

Each write carries an opaque *future-like* object (``set_result``, ``set_exception``,
``done()``: an ``asyncio.Future`` in the runtime, a plain object in tests). The ledger decides
every outcome; it never settles a future that is already done (a caller that gave up). The
runtime's futures are asyncio's own type: a write applied calls its ``done`` and
``set_result`` as that type's methods, looked up once (compiled, a call of each method
without a lookup on the object per write); any other future-like is asked by name.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Any, Protocol

from pyraft.errors import CommandLostError, CommandOutcomeUnknownError
from raftcore.framing import EntryBatch

__all__ = ["FutureLike", "Proposal", "ProposalLedger", "QueuedBatch"]

#: the policies of a full queue (``pyraft.config.ClusterConfig.proposal_queue_full``)
QUEUE_FULL_POLICIES = ("wait", "raise")


class FutureLike(Protocol):
    """What the ledger needs of a write's waiter."""

    def done(self) -> bool: ...
    def set_result(self, result: Any, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


#: the runtime's futures (``loop.create_future()``) and the two methods every write needs
_Future = asyncio.Future
_future_done = _Future.done
_future_set_result = _Future.set_result


def _settle_error(future: FutureLike, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


class Proposal:
    """Commands of one ``replicate``/``replicate_many`` call at log indexes first..last,
    appended in ``term``; resolved when the last is applied.

    Invariants: ``first <= next <= last + 1`` (``next``: the next index whose result is due);
    ``results`` is a list (``many``) of the results of ``first..next-1``, or the one result;
    ``lost``: an index of it was applied with another term. While the write waits in the
    ledger's queue, ``first..last`` is ``0..count-1`` and ``term`` 0: ``proposed`` places
    it in the log."""

    __slots__ = ("first", "last", "term", "future", "many", "results", "lost", "next")

    def __init__(self, first: int, last: int, term: int, future: FutureLike,
                 many: bool) -> None:
        self.first, self.last, self.term, self.future = first, last, term, future
        self.many = many
        self.results: Any = [] if many else None
        self.lost = False
        self.next = first


def _proposal(first: int, last: int, term: int, future: FutureLike, many: bool) -> Proposal:
    """``Proposal(first, last, term, future, many)`` with its fields set directly (a C call
    when compiled: one per write, no argument parsing)."""
    proposal = Proposal.__new__(Proposal)
    proposal.first, proposal.last, proposal.term, proposal.future = first, last, term, future
    proposal.many = many
    proposal.results = [] if many else None
    proposal.lost = False
    proposal.next = first
    return proposal


class QueuedBatch:
    """The writes taken off the queue in one go, to enter the core as one batch."""

    __slots__ = ("items", "payloads")

    def __init__(self, items: list[Proposal], payloads: list[bytes]) -> None:
        #: one ``Proposal`` per write, in queue order, not yet placed in the log
        self.items = items
        #: their commands, in order
        self.payloads = payloads


def _queued_batch(items: list[Proposal], payloads: list[bytes]) -> QueuedBatch:
    """``QueuedBatch(items, payloads)`` with its fields set directly (compiled: no
    ``__init__`` call with its argument parsing, once per batch the core takes)."""
    batch = QueuedBatch.__new__(QueuedBatch)
    batch.items = items
    batch.payloads = payloads
    return batch


class ProposalLedger:
    """The queue of writes waiting to enter the core, the writes in flight, and their fate.

    State: ``_queue`` the queued writes' ``Proposal``s in arrival order and ``_payloads``
    their commands, in the same order (a write's record is made once, when it is queued:
    no tuple and list per write to take apart later), ``queued`` the number of commands in
    it (``0 <= queued == len(_payloads)``; ``queued <= queue_max`` unless one write alone
    exceeds the bound); ``_space_waiters``: writers waiting for room; ``proposals``: the writes in
    the log, by index (``proposals[i].last < proposals[i + 1].first``); ``last_batch_writes``:
    how many writes the last batch proposed held (0 before the first).
    """

    def __init__(self, queue_max: int, queue_full: str = "wait") -> None:
        if queue_full not in QUEUE_FULL_POLICIES:
            raise ValueError(f"proposal_queue_full must be one of {QUEUE_FULL_POLICIES}, "
                             f"not {queue_full!r}")
        if queue_max < 1:
            raise ValueError(f"proposal_queue_max must be at least 1, not {queue_max}")
        self.queue_max = queue_max
        self.queue_full = queue_full
        self._queue: list[Proposal] = []
        self._payloads: list[bytes] = []
        self.queued = 0
        self._space_waiters: list[FutureLike] = []
        self.proposals: collections.deque[Proposal] = collections.deque()
        self.last_batch_writes = 0

    # ---- the queue -----------------------------------------------------------------------
    @property
    def queued_writes(self) -> int:
        """The writes (calls) waiting in the queue; ``queued`` counts their commands."""
        return len(self._queue)

    def has_room(self, count: int) -> bool:
        """Whether a write of ``count`` commands may enter the queue now: within the bound,
        or into an empty queue (a write bigger than the bound goes alone)."""
        return not self.queued or self.queued + count <= self.queue_max

    def wait_for_room(self, waiter: FutureLike) -> None:
        """``waiter`` is resolved (None) the next time the queue is emptied or failed."""
        self._space_waiters.append(waiter)

    def enqueue(self, payloads: list[bytes], future: FutureLike, many: bool) -> None:
        count = len(payloads)
        self._queue.append(_proposal(0, count - 1, 0, future, many))
        if count == 1:
            self._payloads.append(payloads[0])
        else:
            self._payloads.extend(payloads)
        self.queued += count

    def enqueue_command(self, command: bytes, future: FutureLike) -> None:
        """``enqueue([command], future, False)``, without the list: one ``replicate``."""
        self._queue.append(_proposal(0, 0, 0, future, False))
        self._payloads.append(command)
        self.queued += 1

    def take_queue(self) -> QueuedBatch | None:
        """Everything queued, as one batch for the core (None: nothing queued)."""
        items = self._queue
        if not items:
            return None
        batch = _queued_batch(items, self._payloads)
        self._queue, self._payloads = [], []
        self.queued = 0
        return batch

    def fail_queue(self, error: BaseException) -> None:
        """The queued writes can no longer enter the core (this member stopped leading)."""
        batch = self.take_queue()
        if batch is not None:
            self.fail_batch(batch, error)
        self.wake_space_waiters()

    def wake_space_waiters(self) -> None:
        waiters, self._space_waiters = self._space_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # ---- in flight -----------------------------------------------------------------------
    def fail_batch(self, batch: QueuedBatch, error: BaseException) -> None:
        """The core refused ``batch`` (or proposing it failed): every write of it fails."""
        for proposal in batch.items:
            _settle_error(proposal.future, error)
        self.wake_space_waiters()

    def proposed(self, batch: QueuedBatch, first: int, term: int) -> None:
        """The core appended ``batch`` at ``first`` in ``term``. Writes of ours at or past
        ``first`` were cut from the log (a later leader's entries replaced them while this
        member followed, before the Ready saying so was handled): they fail first."""
        proposals = self.proposals
        if proposals and proposals[-1].last >= first:  # (ours all below it: the common case)
            self.replaced(first)
        index = first
        items = batch.items
        for proposal in items:  # queued at 0..count-1: placed at index..
            proposal.last += index
            proposal.first = proposal.next = index
            proposal.term = term
            index = proposal.last + 1
        proposals.extend(items)
        self.last_batch_writes = len(items)
        if self._space_waiters:
            self.wake_space_waiters()

    def replaced(self, start: int, entries: Sequence[EntryBatch] = (),
                 covered: int = 0) -> None:
        """This member's log is replaced from ``start`` on by ``entries`` (none: cut there), and
        a snapshot covers the indexes up to ``covered``: writes made while this member led,
        whose entries are no longer in its log, fail with CommandOutcomeUnknownError. Not
        CommandLostError: another member may still hold those entries and a later leader commit
        them (only a commit decides), but nothing will tell this member soon; without this, the
        caller waited until the log grew past them, forever in an idle cluster. A write whose
        entries come back with its own term (the same entries, resent) stays."""
        proposals = self.proposals
        if not proposals or (proposals[-1].last < start and proposals[-1].first > covered):
            return  # none affected
        end = entries[-1].last_index if entries else start - 1
        kept: collections.deque[Proposal] = collections.deque()
        while proposals and (proposals[-1].last >= start or proposals[-1].first <= covered):
            proposal = proposals.pop()
            if proposal.first > covered and proposal.last <= end and all(
                    _term_in(entries, index) == proposal.term
                    for index in (max(proposal.first, start), proposal.last)):
                kept.appendleft(proposal)
                continue
            _settle_error(proposal.future, _replaced(proposal))
        proposals.extend(kept)

    def applied(self, batch: EntryBatch, results: list[Any] | None) -> None:
        """Hand the results of an applied ``batch`` to the writes it covers. A command whose
        index was applied with another term was replaced by a later leader's entry: its write
        fails with CommandLostError."""
        proposals = self.proposals
        first, last = batch.first_index, batch.last_index
        if not proposals or proposals[0].first > last:
            return
        popleft = proposals.popleft  # one lookup for the batch's writes
        # The term of every entry of the batch, when they share one (a leader's batch of its
        # own term, nearly always): each write's check is then one comparison. -1: they do
        # not, or one entry (checked as it is, no cheaper).
        shared_term = -1
        if last > first:
            term = batch.term_at(first)
            if batch.all_of_term(first, last + 1, term):
                shared_term = term
        while proposals:
            proposal = proposals[0]  # typed when compiled: its fields are C reads
            if proposal.first > last:
                return
            if proposal.next < first and proposal.next <= proposal.last:
                # Applied without passing through here (a snapshot from the leader covered
                # them, after this member lost the lead): nobody knows whether they took
                # effect.
                popleft()
                _settle_error(proposal.future, CommandOutcomeUnknownError(
                    f"the commands at {proposal.first}..{proposal.last} were covered by an "
                    "installed snapshot: they may or may not have been applied"))
                continue
            lo = max(proposal.first, first) - first
            hi = min(proposal.last, last) - first + 1
            proposal.next = min(proposal.last, last) + 1
            if hi > lo:
                if proposal.many:
                    if not proposal.lost and (
                            proposal.term != shared_term if shared_term >= 0 else
                            not batch.all_of_term(first + lo, first + hi, proposal.term)):
                        proposal.lost = True
                    if not proposal.lost:
                        part = results[lo:hi] if results is not None else [None] * (hi - lo)
                        if proposal.results:
                            proposal.results.extend(part)
                        else:  # its first part (most often all of it): no second copy
                            proposal.results = part
                elif (proposal.term != shared_term if shared_term >= 0 else
                      batch.term_at(first + lo) != proposal.term):
                    proposal.lost = True
                else:
                    proposal.results = results[lo] if results is not None else None
            if proposal.last > last:
                return  # the rest of it comes in a later batch
            popleft()
            future = proposal.future
            if type(future) is _Future:
                if _future_done(future):
                    continue
                if not proposal.lost:
                    _future_set_result(future, proposal.results)
                    continue
            elif future.done():
                continue
            if proposal.lost:
                future.set_exception(CommandLostError(
                    f"the commands at {proposal.first}..{proposal.last} were replaced by a "
                    "later leader" if proposal.many else
                    f"the command at index {proposal.first} was replaced by a later leader"))
            else:
                future.set_result(proposal.results)

    def pending(self) -> list[FutureLike]:
        """The futures of the writes in flight that are not decided yet."""
        return [p.future for p in self.proposals if not p.future.done()]

    def leads_term(self, term: int) -> bool:
        """Whether the oldest write in flight was appended in ``term`` (or none is)."""
        proposals = self.proposals
        if not proposals:
            return True
        oldest = proposals[0]
        return oldest.term == term

    def fail_all(self, error: BaseException, in_flight: BaseException | None = None) -> None:
        """Fail every write and wake the writers waiting for room: those in flight (in the
        log, undecided) with ``in_flight`` (``error`` if None), the queued ones with
        ``error``."""
        for proposal in self.proposals:
            _settle_error(proposal.future, error if in_flight is None else in_flight)
        self.proposals.clear()
        for proposal in self._queue:
            _settle_error(proposal.future, error)
        self._queue.clear()
        self._payloads.clear()
        self.queued = 0
        self.wake_space_waiters()


def _term_in(batches: Sequence[EntryBatch], index: int) -> int | None:
    for batch in batches:
        if batch.first_index <= index <= batch.last_index:
            return int(batch.term_at(index))
    return None


def _replaced(proposal: Proposal) -> CommandOutcomeUnknownError:
    return CommandOutcomeUnknownError(
        f"the entries of the commands at {proposal.first}..{proposal.last} were replaced in "
        "this member's log after it lost the lead: they may or may not be applied")
