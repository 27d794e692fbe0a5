"""What the leader knows about each follower's log (etcd's Progress, Raft thesis 3.5).

States:
- PROBE: the leader does not know where the follower's log matches; it sends one append at a
  time (``probe_sent`` pauses it) and backs ``next`` off on rejection;
- REPLICATE: the follower matches up to ``match``; appends are pipelined optimistically, as
  many as the in-flight window (messages and bytes) allows;
- SNAPSHOT: a snapshot is on its way; nothing else is sent until it is reported done.

Invariant: ``0 <= match < next``.
"""

from __future__ import annotations

import enum
from collections import deque

from pyraft.errors import InvariantError


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


# ProgressState's members as module constants: C globals in the compiled build (progress.pxd),
# where ``ProgressState.PROBE`` is a lookup on the enum class at every use
_PROBE = ProgressState.PROBE
_REPLICATE = ProgressState.REPLICATE
_SNAPSHOT = ProgressState.SNAPSHOT


class Inflights:
    """A bounded window of appends sent and not yet acknowledged: (last index, bytes, tick)."""

    __slots__ = ("capacity", "bytes_max", "_items", "bytes")

    def __init__(self, capacity: int, bytes_max: int) -> None:
        self.capacity = capacity
        self.bytes_max = bytes_max
        self._items: deque[tuple[int, int, int]] = deque()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def full(self) -> bool:
        return len(self._items) >= self.capacity or self.bytes >= self.bytes_max

    def add(self, last_index: int, size: int, tick: int = 0) -> None:
        """Record an append ending at ``last_index`` of ``size`` bytes, sent at ``tick``."""
        if self.full():
            raise InvariantError("adding to a full in-flight window")
        items = self._items
        if items and last_index <= items[-1][0]:
            raise InvariantError("in-flight out of order")
        self._items.append((last_index, size, tick))
        self.bytes += size

    def oldest_tick(self) -> int | None:
        """When the oldest unacknowledged append was sent (None when none is in flight)."""
        return self._items[0][2] if self._items else None

    def free_to(self, index: int) -> None:
        """Forget every append whose last index is <= ``index`` (acknowledged)."""
        items = self._items
        while items and items[0][0] <= index:
            self.bytes -= items.popleft()[1]

    def reset(self) -> None:
        self._items.clear()
        self.bytes = 0


class Progress:
    __slots__ = (
        "match",
        "next",
        "state",
        "probe_sent",
        "pending_snapshot",
        "snapshot_offset",
        "snapshot_sent",
        "snapshot_done_sent",
        "snapshot_probing",
        "recent_active",
        "lease_tick",
        "response_tick",
        "heard_tick",
        "inflights",
    )

    def __init__(self, next_index: int, inflight_messages: int, inflight_bytes: int) -> None:
        #: highest index known to be replicated on the follower
        self.match = 0
        #: index of the next entry to send
        self.next = next_index
        self.state = _PROBE
        #: PROBE only: an append is outstanding, wait for its answer or a heartbeat response
        self.probe_sent = False
        #: SNAPSHOT only: the index of the snapshot being sent
        self.pending_snapshot = 0
        #: SNAPSHOT only: bytes of the snapshot the follower has confirmed written
        #: (``0 <= snapshot_offset <= snapshot_sent``)
        self.snapshot_offset = 0
        #: SNAPSHOT only: offset of the next chunk to send; the chunks in between are in
        #: flight, at most ``snapshot_inflight_bytes_max`` of them (at least one chunk)
        self.snapshot_sent = 0
        #: SNAPSHOT only: the last chunk is among those in flight
        self.snapshot_done_sent = False
        #: SNAPSHOT only: one chunk at a time until the follower confirms one: at the start
        #: (its answer says how much of this snapshot it already holds: a transfer resumes)
        #: and after it reported a gap or answers stopped coming
        self.snapshot_probing = True
        #: heard from since the last check-quorum round
        self.recent_active = False
        #: tick at which the leader sent the newest heartbeat this follower acknowledged
        self.lease_tick = -(2**62)
        #: tick of the newest append response (lost appends are detected by its age)
        self.response_tick = 0
        #: tick of the newest answer of any kind (failure detection)
        self.heard_tick = 0
        self.inflights = Inflights(inflight_messages, inflight_bytes)

    def __repr__(self) -> str:
        return f"Progress({self.state.value} match={self.match} next={self.next})"

    def become_probe(self) -> None:
        if self.state is _SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self.state = _PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.inflights.reset()

    def become_replicate(self) -> None:
        self.state = _REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflights.reset()

    def become_snapshot(self, index: int) -> None:
        self.state = _SNAPSHOT
        self.pending_snapshot = index
        self.snapshot_offset = 0
        self.snapshot_rewind(0)
        self.probe_sent = False
        self.inflights.reset()

    def snapshot_rewind(self, offset: int) -> None:
        """Send the snapshot again from ``offset``, one chunk at a time until confirmed."""
        self.snapshot_sent = offset
        self.snapshot_done_sent = False
        self.snapshot_probing = True

    def is_paused(self) -> bool:
        if self.state is _PROBE:
            return self.probe_sent
        if self.state is _REPLICATE:
            return self.inflights.full()
        return True

    def maybe_update(self, index: int) -> bool:
        """The follower matches up to ``index``. Returns whether ``match`` moved."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an append after ``rejected``; False if the answer is stale.

        A rejection right at ``match`` with a shorter log than ``match`` means the follower
        lost entries it had acknowledged (its disk lied, or an operator repaired its log):
        ``match`` goes back to what it holds, so the leader sends them again instead of
        waiting forever. (A stale rejection of that shape only costs a resend.)"""
        if (rejected == self.match and match_hint < self.match
                and self.state is not _SNAPSHOT):
            self.match = max(match_hint, 0)
            self.next = self.match + 1
            self.probe_sent = False
            return True
        if self.state is _REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1, 1)
        self.probe_sent = False
        return True
