"""The leader's lease in real time, and whether a member is in touch with a quorum.

The core counts in ticks; a tick can come late (a busy or paused loop, SIGSTOP). So the lease
expires ``lease_ticks * tick_ms`` after the *real* time of the tick its quorum's heartbeats
were sent in, not after that many ticks: a member that was paused sees its lease gone at once
and until a quorum answers a heartbeat sent after the pause. ``TickClock`` remembers the loop
time of the newest ticks for that; the functions here read the core only through its view.
"""

from __future__ import annotations

import collections
import dataclasses

from pyraft.core.view import CoreView

__all__ = ["LeaseStatus", "TickClock", "in_touch_with_quorum", "lease_status"]


@dataclasses.dataclass(frozen=True, slots=True)
class LeaseStatus:
    valid: bool
    expires_in_ms: float


class TickClock:
    """The loop times of the newest ticks, newest last: as many as a lease lasts, plus two.
    Invariant: the newest entry is the time of tick ``CoreView.ticks``."""

    def __init__(self, lease_ticks: int = 0) -> None:
        self.times: collections.deque[float] = collections.deque(maxlen=lease_ticks + 2)

    def ticked(self, now: float) -> None:
        self.times.append(now)


def lease_status(status: CoreView | None, clock: TickClock, tick_ms: float,
                 now: float) -> LeaseStatus:
    """The lease of the leader ``status`` describes, at loop time ``now``."""
    ticks = status.lease_remaining_ticks if status is not None else 0
    if status is None or ticks <= 0:
        return LeaseStatus(False, 0.0)
    lease_ticks = status.options.lease_ticks
    # the lease began ``lease_ticks - ticks`` ticks ago; the newest time is the tick now
    back = lease_ticks - ticks
    times = clock.times
    if back >= len(times):
        return LeaseStatus(False, 0.0)  # older than the ticks remembered: expired
    began = times[-1 - back]
    remaining = began + lease_ticks * tick_ms / 1e3 - now
    return LeaseStatus(remaining > 0, max(0.0, remaining * 1e3))


def in_touch_with_quorum(status: CoreView, member_id: int) -> bool:
    """Counted in ticks over one lower election timeout: on the leader, a majority of the
    voters (itself included) was heard from within it; on any other member, a leader is
    known and was heard from within it."""
    window = status.options.election_ticks_lower
    if status.is_leader:
        configuration = status.configuration
        heard = 0
        for member in configuration.voters:
            if member == member_id or status.heard_within(member, window):
                heard += 1
        return heard >= configuration.quorum()
    return bool(status.lead) and status.election_elapsed < window
