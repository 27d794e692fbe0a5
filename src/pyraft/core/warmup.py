"""Warming up new members before they vote (Raft thesis 4.2.1).

A new member joins as a learner. The leader replicates to it in rounds: a round ends when the
learner holds everything the leader had when the round began. "If the last round lasts less
than an election timeout, the leader adds the new server to the cluster" (thesis 4.2.1): the
learner is promoted. After ``warmup_rounds`` slow rounds, or no progress at all for
``warmup_rounds`` election timeouts, the leader gives up and removes it.

This module keeps the rounds and decides; ``RaftNode`` proposes the promotion or removal (one
configuration change at a time) and reports it as a ``MembershipEvent``. Times are ticks.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class RoundOutcome(enum.Enum):
    """What the end of a round means for the learner."""

    PROMOTE = "promote"  # caught up: propose its promotion (when no change is pending)
    GIVE_UP = "give-up"  # ``warmup_rounds`` slow rounds: propose its removal
    NEXT_ROUND = "next-round"  # a slow round: another one starts now


@dataclass(slots=True)
class CatchUp:
    """One learner being warmed up.

    Invariant: ``round_start_tick >= started_tick``; once ``promote`` is set it stays set
    (the promotion waits for the pending configuration change to commit).
    """

    #: the leader's last index when the round began: the round ends when ``match`` reaches it
    round_end: int
    #: tick at which the round began
    round_start_tick: int
    #: tick at which the warmup began
    started_tick: int
    #: rounds completed
    rounds: int = 0
    #: caught up: promotion waits for the pending change to commit
    promote: bool = False
    #: the learner's match when it last moved (-1: never seen), and the tick when it did
    progress_match: int = -1
    progress_tick: int = 0

    def end_round(self, match: int, last_index: int, tick: int, election_ticks_lower: int,
                  warmup_rounds: int) -> RoundOutcome | None:
        """The learner now matches up to ``match``; None while the round is not over (or the
        learner is already to be promoted)."""
        if self.promote or match < self.round_end:
            return None
        self.rounds += 1
        if tick - self.round_start_tick < election_ticks_lower or match >= last_index:
            # A learner that holds the whole log is caught up however long the round took:
            # with no new entries there would be no next round (no answer moves its match)
            # to promote it in.
            self.promote = True
            return RoundOutcome.PROMOTE
        if self.rounds >= warmup_rounds:
            return RoundOutcome.GIVE_UP
        self.round_end = last_index
        self.round_start_tick = tick
        return RoundOutcome.NEXT_ROUND

    def stalled(self, match: int, tick: int, limit_ticks: int) -> bool:
        """Record the learner's ``match`` at ``tick``; True when it has not moved for more
        than ``limit_ticks`` since it last did (or since the round began). A long first round
        that keeps moving (a big log to send) is progress, not a stall."""
        if self.promote:
            return False
        if match > self.progress_match:
            self.progress_match, self.progress_tick = match, tick
            return False
        return tick - max(self.progress_tick, self.round_start_tick) > limit_ticks


class Warmup:
    """The leader's learners being caught up. Empty on every other member."""

    __slots__ = ("catch_ups",)

    def __init__(self) -> None:
        #: learner -> its warmup; exactly the learners of the configuration in force (leader)
        self.catch_ups: dict[int, CatchUp] = {}

    def __contains__(self, member: object) -> bool:
        return member in self.catch_ups

    def __bool__(self) -> bool:
        return bool(self.catch_ups)

    def reset(self) -> None:
        self.catch_ups = {}

    def discard(self, member: int) -> None:
        """``member`` is being removed: stop warming it up."""
        self.catch_ups.pop(member, None)

    def sync(self, learners: Iterable[int], last_index: int, tick: int) -> None:
        """Track exactly ``learners`` (a new leader resumes their warmup from ``tick``)."""
        learners = frozenset(learners)
        catch_ups = self.catch_ups
        for member in list(catch_ups):
            if member not in learners:
                del catch_ups[member]
        for member in sorted(learners - catch_ups.keys()):
            catch_ups[member] = CatchUp(last_index, tick, tick)

    def items(self) -> list[tuple[int, CatchUp]]:
        """A snapshot of (learner, warmup) pairs in the order they started."""
        return list(self.catch_ups.items())

    def to_promote(self) -> list[int]:
        """Learners that caught up and wait for their promotion, by id."""
        return [member for member, catch_up in sorted(self.catch_ups.items())
                if catch_up.promote]
