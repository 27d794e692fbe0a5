"""Read-only queries through the read index (Raft thesis 6.4): the leader's bookkeeping.

A read asked of the leader (locally, or forwarded by a follower as READ_INDEX) is answered
with a read index once the leader has checked that it still leads:

1. the leader must know the commit index of its term: until an entry of its own term commits
   (the no-op of Raft 8), reads wait (``wait_for_commit`` / ``take_waiting``);
2. it records the commit index as the read's index (``add``) and sends a heartbeat carrying
   the read's context;
3. once a quorum of voters answered that heartbeat (``ack``), the read and every read queued
   before it are confirmed: the leader was the leader when each arrived;
4. the requester serves the read when its state machine has applied up to the read index.

This module keeps the queue and counts the acknowledgements; sending heartbeats and answers
is ``RaftNode``'s job. It does no I/O and keeps no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyraft.core.messages import Message


@dataclass(slots=True)
class PendingRead:
    """A read waiting for a quorum's acknowledgement of the heartbeat sent for it."""

    #: the requester's identity of the read, echoed in heartbeats and answers
    context: bytes
    #: the leader's commit index when the read arrived: what the requester must apply first
    index: int
    #: the member that asked (the leader itself for a local read)
    requester: int
    #: members that acknowledged a heartbeat carrying ``context`` (the leader included)
    acks: set[int]


class ReadOnly:
    """The leader's queue of read-index requests. Empty on every member that does not lead.

    Invariant: ``pending`` is in arrival order, so confirming one read confirms every read
    before it (their heartbeats left earlier; thesis 6.4 batches them that way).
    """

    __slots__ = ("pending", "waiting")

    def __init__(self) -> None:
        #: reads whose heartbeat left, oldest first
        self.pending: list[PendingRead] = []
        #: READ_INDEX requests that arrived before the leader committed an entry of its term
        self.waiting: list[Message] = []

    def reset(self) -> None:
        """A new term or role: every queued read is dropped (requesters retry)."""
        self.pending = []
        self.waiting = []

    def wait_for_commit(self, m: Message) -> None:
        """Keep ``m`` until the leader has committed an entry of its term (thesis 6.4 step 1)."""
        self.waiting.append(m)

    def take_waiting(self) -> list[Message]:
        """The requests kept by ``wait_for_commit``, oldest first; the list is emptied."""
        waiting, self.waiting = self.waiting, []
        return waiting

    def add(self, context: bytes, index: int, requester: int, leader: int) -> None:
        """Queue a read at ``index``; the leader's own acknowledgement counts at once."""
        self.pending.append(PendingRead(context, index, requester, {leader}))

    def ack(self, member: int, context: bytes, voters: frozenset[int],
            quorum: int) -> list[PendingRead]:
        """``member`` answered the heartbeat for ``context``. Returns the reads confirmed by
        it (that read and every earlier one, oldest first) once a quorum of ``voters``
        acknowledged it; an empty list otherwise (unknown context, no quorum yet)."""
        pending = self.pending
        position = next((i for i, r in enumerate(pending) if r.context == context), None)
        if position is None:
            return []
        read = pending[position]
        read.acks.add(member)
        if len(read.acks & voters) < quorum:
            return []
        done, self.pending = pending[: position + 1], pending[position + 1 :]
        return done
