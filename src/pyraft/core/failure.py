"""Automatic failure detection: the leader's phi-accrual watch over the voters.

With ``RaftOptions.failure_dead_ticks`` set, the leader feeds one phi-accrual detector
(``raftcore.phi``, Hayashibara et al. 2004) per voter with the times at which that voter
answered (``Progress.heard_tick``), and judges a voter dead once its phi has stayed above
``failure_phi_threshold`` for ``failure_dead_ticks`` ticks; ``RaftNode`` then proposes its
removal (one change at a time, never below ``failure_voters_min`` voters).

A voter is watched from its first answer to this leader. Phi measures a silence against the
intervals between answers seen so far, and a voter the leader has never heard from has
none: it may be down, or simply not started yet (an operator brings members up one by one;
a static cluster elects its first leader as soon as a majority runs). So a voter that has
not answered this leader at all is judged on a longer, plain clock instead: dead once
``failure_unheard_ticks`` have passed since the leader began waiting for it. A member that
died before the election is still removed, later; one that is only slow to start is not.

Units: the core counts ticks; the detector's kernel speaks milliseconds. Every time and
duration given to the kernel is a tick count times ``tick_ms`` (``RaftOptions.tick_ms``, the
runtime's tick interval; 1 in the simulator, where ticks are the only time). Phi is a function
of ratios of durations, so the verdicts do not depend on ``tick_ms``; the milliseconds are
there so that the kernel's parameters mean what their names say.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from raftcore.phi import PhiAccrualDetector

#: heartbeat intervals each detector keeps
WINDOW_SIZE = 100


class VoterWatch:
    """The detector of one voter and what the leader concluded from it.

    Invariant: ``fed_tick`` never decreases; ``dead_since`` is None while the voter looks
    alive, else the tick at which it started to look dead (``<=`` the current tick).
    """

    __slots__ = ("_detector", "_tick_ms", "fed_tick", "dead_since")

    def __init__(self, tick: int, heartbeat_ticks: int, tick_ms: float) -> None:
        self._tick_ms = tick_ms
        heartbeat_ms = heartbeat_ticks * tick_ms
        self._detector = PhiAccrualDetector(
            window_size=WINDOW_SIZE,
            min_std_deviation_ms=heartbeat_ms,
            acceptable_heartbeat_pause_ms=heartbeat_ms,
            first_heartbeat_estimate_ms=heartbeat_ms,
        )
        #: the newest answer tick given to the detector (the watch starts as if answered now)
        self.fed_tick = tick
        #: the tick at which the voter started to look dead, None while it looks alive
        self.dead_since: int | None = None
        self._detector.heartbeat(tick * tick_ms)

    def observe(self, heard_tick: int, tick: int, phi_threshold: float) -> None:
        """At ``tick``, the voter's newest answer is from ``heard_tick``: feed it (once) and
        update ``dead_since``."""
        if heard_tick > self.fed_tick:
            self.fed_tick = heard_tick
            self._detector.heartbeat(heard_tick * self._tick_ms)
        if self._detector.is_available(tick * self._tick_ms, phi_threshold):
            self.dead_since = None
        elif self.dead_since is None:
            self.dead_since = tick

    def dead_for(self, tick: int) -> int:
        """Ticks the voter has looked dead at ``tick`` (0 while it looks alive)."""
        return 0 if self.dead_since is None else tick - self.dead_since


class FailureDetector:
    """The leader's watches, one per voter other than itself that has answered it, and the
    voters it is still waiting to hear from. Empty on other members."""

    __slots__ = ("heartbeat_ticks", "tick_ms", "phi_threshold", "watches", "unheard")

    def __init__(self, heartbeat_ticks: int, tick_ms: float, phi_threshold: float) -> None:
        self.heartbeat_ticks = heartbeat_ticks
        self.tick_ms = tick_ms
        self.phi_threshold = phi_threshold
        #: voter -> its watch, from its first answer; only voters of the configuration in force
        self.watches: dict[int, VoterWatch] = {}
        #: voter -> the tick at which the leader began waiting for its first answer
        self.unheard: dict[int, int] = {}

    def reset(self) -> None:
        """A new term or role: watching starts over."""
        self.watches = {}
        self.unheard = {}

    def observe(self, voters: Iterable[int], heard: Mapping[int, int], tick: int) -> None:
        """At ``tick``: ``heard`` maps each voter the leader tracks (itself excluded) to the
        tick of its newest answer, 0 for none yet. Voters not in ``heard`` are not watched
        (yet); a voter's watch starts at its first answer, and until then it is waited for
        (``unheard``); members no longer among ``voters`` are forgotten."""
        voters = frozenset(voters)
        watches = self.watches
        unheard = self.unheard
        for member in voters:
            heard_tick = heard.get(member)
            if heard_tick is None:
                continue
            watch = watches.get(member)
            if watch is None:
                if heard_tick <= 0:  # no answer yet: waited for, not watched
                    if member not in unheard:
                        unheard[member] = tick
                    continue
                unheard.pop(member, None)
                watch = watches[member] = VoterWatch(heard_tick, self.heartbeat_ticks,
                                                     self.tick_ms)
            watch.observe(heard_tick, tick, self.phi_threshold)
        for member in [m for m in watches if m not in voters]:
            del watches[member]
        for member in [m for m in unheard if m not in voters]:
            del unheard[member]

    def dead(self, tick: int, dead_ticks: int, unheard_ticks: int) -> list[int]:
        """Voters judged dead at ``tick``, by id: those that have looked dead for at least
        ``dead_ticks``, and those the leader has waited ``unheard_ticks`` for without one
        answer."""
        dead = [member for member, watch in self.watches.items()
                if watch.dead_since is not None and watch.dead_for(tick) >= dead_ticks]
        dead += [member for member, since in self.unheard.items()
                 if tick - since >= unheard_ticks]
        return sorted(dead)
