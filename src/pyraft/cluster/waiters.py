"""Waiters of one member: callers waiting for the log or the membership to reach a state.

Four kinds, resolved by ``resolve(committed, applied)`` after every Ready:

- **reads** (read index, thesis 6.4): ``apply_read_barrier`` registers a context; when a Ready
  carries the read state for it (``read_state``), the waiter becomes an *applied* waiter at
  the read index;
- **applied**: resolved (with the index) once the state machine applied that index;
- **commit**: resolved once the commit index reaches that index;
- **conditions** (membership changes, a leader known, readiness): resolved when the
  condition holds; a condition that raises fails its waiter with that error.

``failed_catch_up`` holds, per member being added, the future set when the leader gives up
warming it up. ``fail_all(error)`` fails every waiter (the member stopped or failed).

Waiters hold opaque future-likes (``set_result``, ``set_exception``, ``done()``); nothing
here awaits, so the class is tested without an event loop. A waiter already done (a caller
that timed out) is dropped, never settled twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyraft.cluster.ledger import FutureLike

__all__ = ["Waiters"]


class Waiters:
    """State: ``reads`` maps a read context to its waiter until its read state arrives;
    ``_applied``, ``_commit``: (index, waiter) pairs not yet reached; ``_conditions``:
    (condition, waiter) pairs not yet satisfied; ``failed_catch_up``: member -> future."""

    def __init__(self) -> None:
        self.reads: dict[bytes, FutureLike] = {}
        self._applied: list[tuple[int, FutureLike]] = []
        self._commit: list[tuple[int, FutureLike]] = []
        self._conditions: list[tuple[Callable[[], bool], FutureLike]] = []
        self.failed_catch_up: dict[int, FutureLike] = {}

    def add_read(self, context: bytes, future: FutureLike) -> None:
        self.reads[context] = future

    def drop_read(self, context: bytes) -> None:
        self.reads.pop(context, None)

    def read_state(self, context: bytes, index: int) -> None:
        """The read index of ``context`` is ``index``: its waiter waits for it to be applied."""
        future = self.reads.get(context)
        if future is not None and not future.done():
            self._applied.append((index, future))

    def until_applied(self, index: int, future: FutureLike) -> None:
        self._applied.append((index, future))

    def until_committed(self, index: int, future: FutureLike) -> None:
        self._commit.append((index, future))

    def until(self, condition: Callable[[], bool], future: FutureLike) -> None:
        self._conditions.append((condition, future))

    def catch_up_failed(self, member: int) -> None:
        """The leader gave up warming up ``member``: its ``add_member`` fails."""
        failed = self.failed_catch_up.get(member)
        if failed is not None and not failed.done():
            failed.set_result(None)

    def resolve(self, committed: int, applied: int) -> None:
        if self._applied:
            self._applied = _release(self._applied, applied, with_index=True)
        if self._commit:
            self._commit = _release(self._commit, committed, with_index=False)
        if self._conditions:
            kept: list[tuple[Callable[[], bool], FutureLike]] = []
            for condition, future in self._conditions:
                if future.done():
                    continue
                try:
                    satisfied = condition()
                except Exception as error:  # the condition reports a failure
                    future.set_exception(error)
                    continue
                if satisfied:
                    future.set_result(None)
                else:
                    kept.append((condition, future))
            self._conditions = kept

    def fail_all(self, error: BaseException) -> None:
        futures: list[Any] = list(self.reads.values())
        futures += [f for _, f in self._applied] + [f for _, f in self._commit]
        futures += [f for _, f in self._conditions]
        for future in futures:
            if not future.done():
                future.set_exception(error)


def _release(waiting: list[tuple[int, FutureLike]], reached: int, *,
             with_index: bool) -> list[tuple[int, FutureLike]]:
    """Settle the waiters of ``waiting`` whose index ``reached`` covers (with the index, or
    None), drop those already done; the rest, in order."""
    keep: list[tuple[int, FutureLike]] = []
    for index, future in waiting:
        if future.done():
            continue
        if reached >= index:
            future.set_result(index if with_index else None)
        else:
            keep.append((index, future))
    return keep
