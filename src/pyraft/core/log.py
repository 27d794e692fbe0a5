"""The core's view of the log: what storage holds plus what is not yet persisted.

Layout (indexes grow to the right):

    [ snapshot ] first_index ... storage.last_index | unstable_offset ... last_index
                 '------------ persisted -----------' '---- unstable (in memory) ---'

Invariants: ``applied <= committed <= last_index``; ``unstable`` batches are contiguous and
start at ``unstable_offset``; ``unstable_offset <= in_progress <= last_index + 1`` (entries
below ``in_progress`` were handed to a Ready; with several Readys in flight, entries between
``unstable_offset`` and ``in_progress`` may belong to several of them, and ``stable_to`` moves
``unstable_offset`` as each is reported durable, in order).
"""

from __future__ import annotations

import numpy as np

from pyraft.core.messages import Snapshot
from pyraft.core.storage import ExternalSnapshots, LogStorage, limit_bytes
from pyraft.errors import InvariantError, LogCompactedError, LogUnavailableError
from raftcore.framing import EntryBatch, concat_batches, empty_batch


class RaftLog:
    def __init__(self, storage: LogStorage, commit_hint: int = 0) -> None:
        self.storage = storage
        #: ``storage`` again when it is one of pyraft's (the memory or the durable storage, or
        #: a subclass): the compiled build reads it through this typed reference, C calls
        #: instead of Python ones (log.pxd); None for other ``LogStorage``s, read through
        #: ``storage``
        self._stored = storage if isinstance(storage, ExternalSnapshots) else None
        last = storage.last_index()
        #: batches appended but not yet persisted, contiguous from unstable_offset
        self.unstable: list[EntryBatch] = []
        self.unstable_offset = last + 1
        #: a snapshot received from the leader and not yet persisted
        self.unstable_snapshot: Snapshot | None = None
        self.snapshot_in_progress = False
        #: entries with an index below this were handed to a Ready already
        self.in_progress = last + 1
        first = storage.first_index()
        #: highest index known committed (Raft figure 2 commitIndex)
        self.committed = max(first - 1, min(commit_hint, last))
        #: highest index handed to the state machine and acknowledged
        self.applied = first - 1
        #: highest index handed to the state machine in a Ready (applied <= applying)
        self.applying = first - 1
        #: index of the last entry (unstable, snapshot or stored): kept, not recomputed, as
        #: the leader's and followers' hot paths ask for it many times per batch
        self._last = last

    # ---- positions ---------------------------------------------------------------------------
    def first_index(self) -> int:
        if self.unstable_snapshot is not None:
            return self.unstable_snapshot.meta.index + 1
        stored = self._stored
        if stored is not None:
            return stored.first_index()
        return self.storage.first_index()

    def last_index(self) -> int:
        return self._last

    def last_term(self) -> int:
        return self.term(self.last_index())

    def term(self, index: int) -> int:
        """Term at ``index``; raises LogCompactedError / LogUnavailableError outside the log."""
        snap = self.unstable_snapshot
        if snap is not None and index == snap.meta.index:
            return snap.meta.term
        if index >= self.unstable_offset:
            if index > self.last_index():
                raise LogUnavailableError(f"index {index} is past the last index")
            for batch in reversed(self.unstable):
                if index >= batch.first_index:
                    return batch.term_at(index)
        if snap is not None and index < snap.meta.index:
            raise LogCompactedError(f"index {index} is compacted")
        stored = self._stored
        if stored is not None:
            return stored.term(index)
        return self.storage.term(index)

    def term_or_none(self, index: int) -> int | None:
        try:
            return self.term(index)
        except (LogCompactedError, LogUnavailableError):
            return None

    def match_term(self, index: int, term: int) -> bool:
        return self.term_or_none(index) == term

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Raft 5.4.1: a candidate's log is at least as up to date as ours."""
        mine = self.last_term()
        return term > mine or (term == mine and last_index >= self.last_index())

    # ---- reads -------------------------------------------------------------------------------
    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> EntryBatch:
        """Entries ``[lo, hi)``, at least one when the range is not empty, within ``max_bytes``."""
        if hi <= lo:
            return empty_batch(lo)
        if lo < self.first_index():
            raise LogCompactedError(f"index {lo} is compacted")
        if hi > self.last_index() + 1:
            raise LogUnavailableError(f"index {hi - 1} is past the last index")
        parts = []
        if lo < self.unstable_offset:
            stable_hi = min(hi, self.unstable_offset)
            typed = self._stored
            if typed is not None:
                stored = typed.entries(lo, stable_hi, max_bytes)
            else:
                stored = self.storage.entries(lo, stable_hi, max_bytes)
            if len(stored) < stable_hi - lo:
                return stored  # the byte budget ended inside the stored entries
            parts.append(stored)
        for batch in self.unstable:
            if batch.last_index >= lo and batch.first_index < hi:
                parts.append(batch.slice(lo, hi))
        batch = concat_batches(parts) if len(parts) != 1 else parts[0]
        if max_bytes is not None and batch.nbytes > max_bytes and len(batch) > 1:
            batch = limit_bytes(batch, max_bytes)
        return batch

    def terms(self, lo: int, hi: int) -> np.ndarray:
        """The terms of entries ``[lo, hi)``: ``entries(lo, hi).terms`` without joining bytes."""
        if hi <= lo:
            return empty_batch(lo).terms
        if lo < self.first_index():
            raise LogCompactedError(f"index {lo} is compacted")
        if hi > self.last_index() + 1:
            raise LogUnavailableError(f"index {hi - 1} is past the last index")
        parts = []
        if lo < self.unstable_offset:
            parts.append(self.storage.terms(lo, min(hi, self.unstable_offset)))
        for batch in self.unstable:
            first = batch.first_index
            if batch.last_index >= lo and first < hi:
                parts.append(batch.terms[max(lo, first) - first : min(hi, batch.last_index + 1)
                                         - first])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    # ---- appends -----------------------------------------------------------------------------
    def append(self, batch: EntryBatch) -> None:
        """Append ``batch``; an index at or below the last one replaces the suffix from there."""
        if not len(batch):
            return
        first = batch.first_index
        if first <= self.committed:
            raise InvariantError(f"append at {first} would overwrite committed entries")
        last = self._last
        if first > last + 1:
            raise InvariantError(f"append at {first} leaves a gap")
        self._last = batch.last_index
        if first == last + 1:
            self.unstable.append(batch)
        elif first <= self.unstable_offset:
            self.unstable = [batch]
            self.unstable_offset = first
        else:
            kept = []
            for part in self.unstable:
                if part.first_index < first:
                    kept.append(part.slice(part.first_index, first))
            self.unstable = kept + [batch]
        self.in_progress = min(self.in_progress, first)

    def find_conflict(self, batch: EntryBatch) -> int:
        """First index of ``batch`` missing from the log or with another term; 0 if none."""
        lo = max(batch.first_index, self.first_index())
        hi = min(batch.last_index, self.last_index()) + 1
        if hi > lo:
            ours = self.terms(lo, hi)
            theirs = batch.terms[lo - batch.first_index : hi - batch.first_index]
            diff = np.flatnonzero(ours != theirs)
            if len(diff):
                return lo + int(diff[0])
        if batch.last_index > self.last_index():
            return max(self.last_index() + 1, batch.first_index)
        return 0

    def maybe_append(self, index: int, log_term: int, commit: int, batch: EntryBatch) -> int | None:
        """Raft 5.3 AppendEntries receiver: returns the last new index, or None on mismatch."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(batch)
        conflict = self.find_conflict(batch) if len(batch) else 0
        if conflict:
            if conflict <= self.committed:
                raise InvariantError(f"conflict at committed index {conflict}")
            self.append(batch.slice(conflict, batch.last_index + 1))
        self.commit_to(min(commit, last_new))
        return last_new

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """Largest index <= ``index`` whose term is <= ``term`` (terms never decrease)."""
        lo = self.first_index() - 1
        hi = min(index, self.last_index())
        if hi < lo:
            return lo
        while lo < hi:  # invariant: term(lo) <= term or lo is the snapshot point
            middle = (lo + hi + 1) // 2
            if self.term(middle) <= term:
                lo = middle
            else:
                hi = middle - 1
        return lo

    # ---- commit, persistence, apply ----------------------------------------------------------
    def commit_to(self, index: int) -> bool:
        if index > self.committed:
            if index > self.last_index():
                raise InvariantError(f"commit {index} past last {self.last_index()}")
            self.committed = index
            return True
        return False

    def take_unstable(self) -> list[EntryBatch]:
        """Batches not yet handed to a Ready; marks them in progress."""
        out = []
        for batch in self.unstable:
            if batch.last_index >= self.in_progress:
                out.append(batch.slice(self.in_progress, batch.last_index + 1))
        self.in_progress = self.last_index() + 1
        return out

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` (of ``term``) are durable in storage."""
        if self.term_or_none(index) != term or index < self.unstable_offset:
            # the suffix was replaced meanwhile (by a Ready handed out after the one that
            # persisted it, or a snapshot): the Ready holding the replacement persists it
            return
        kept = []
        for batch in self.unstable:
            if batch.last_index > index:
                kept.append(batch.slice(index + 1, batch.last_index + 1))
        self.unstable = kept
        self.unstable_offset = index + 1

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log with ``snapshot`` (persisted by the next Ready)."""
        self.unstable_snapshot = snapshot
        self.snapshot_in_progress = False
        self.unstable = []
        self.unstable_offset = snapshot.meta.index + 1
        self.in_progress = self.unstable_offset
        self.committed = snapshot.meta.index
        self._last = snapshot.meta.index

    def stable_snapshot_to(self, index: int) -> None:
        if self.unstable_snapshot is not None and self.unstable_snapshot.meta.index == index:
            self.unstable_snapshot = None
            self.snapshot_in_progress = False
            self.applied = max(self.applied, index)
            self.applying = max(self.applying, index)

    def take_committed(self, max_bytes: int) -> list[EntryBatch]:
        """Committed entries not yet handed to the state machine (bounded by ``max_bytes``)."""
        lo, hi = self.applying + 1, self.committed + 1
        if hi <= lo or self.unstable_snapshot is not None:
            return []
        batch = self.entries(lo, hi, max_bytes)
        self.applying = batch.last_index
        return [batch]

    def applied_to(self, index: int) -> None:
        if index > self.committed:
            raise InvariantError(f"applied {index} past committed {self.committed}")
        self.applied = max(self.applied, index)
