"""Reads and waits of one member: the read barrier, the waits for a commit, an apply, a
condition or a leader, and ``ensure_consistency``.

- ``read_barrier``: a read index (Raft thesis 6.4). A context ``b"r<member>:<n>"`` is
  registered with ``Waiters`` and handed to the core (``request``: ``RaftNode.read_index``
  plus a wake-up of the processing task); the Ready that carries its read state turns the
  waiter into an *applied* waiter at the read index, resolved once this member applied it.
  It works on followers: the core asks the leader.
- ``until_committed``, ``until_applied``, ``until``: an index or a condition registered with
  ``Waiters``, resolved after every Ready (at once when already reached).
- ``leader``: the id of the leader once one is known.
- ``consistent``: ``ensure_consistency``. On the leader, until its no-op is committed (the
  last committed entry is from its current term); elsewhere a read barrier, asked again of
  the next leader after ``retry_seconds`` when the leader never answers (it lost the lead,
  the message was lost).

Timeouts are in seconds (None: no bound). The plain waits raise ``asyncio.TimeoutError``;
``leader`` and ``consistent`` raise ``ClusterTimeoutError`` (a ``TimeoutError``) naming the
timeout. A stopped or failed member refuses: ``ClusterStoppedError``.

``Reads`` owns no task and no timer and reads the core only through a ``ReadStatus``
(``pyraft.core.view.CoreView`` is one), so it is tested with a plain object and a loop.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any, Protocol

from pyraft.cluster.ledger import FutureLike
from pyraft.cluster.waiters import Waiters
from pyraft.errors import ClusterStoppedError, ClusterTimeoutError, invariant

__all__ = ["ReadStatus", "Reads"]


class ReadStatus(Protocol):
    """What the waits read of the core (``CoreView`` provides it)."""

    @property
    def lead(self) -> int:
        """The leader this member knows; 0 for none."""

    @property
    def committed(self) -> int:
        """The commit index."""

    @property
    def applied(self) -> int:
        """The index the state machine has applied."""

    @property
    def committed_in_current_term(self) -> bool:
        """Whether the last committed entry is from the current term."""


class Reads:
    """The waits of member ``member_id``. ``running()`` tells whether the member runs (a read
    barrier checks only that); ``check_running()`` raises ``ClusterStoppedError`` when the
    member is stopped or failed. ``bind`` gives the loop, the status and the read-index
    request once the member starts; nothing waits before.

    State: ``_ids`` numbers the read contexts of this member (never reused)."""

    def __init__(self, member_id: int, waiters: Waiters, *, retry_seconds: float,
                 running: Callable[[], bool], check_running: Callable[[], object]) -> None:
        self.id = member_id
        #: a read index the leader does not answer within this is asked again
        self.retry_seconds = retry_seconds
        self._waiters = waiters
        self._running = running
        self._check_running = check_running
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop
        self._status: ReadStatus
        self._request: Callable[[bytes], None]

    def bind(self, loop: asyncio.AbstractEventLoop, status: ReadStatus,
             request: Callable[[bytes], None]) -> None:
        """The member started: its loop, its core's status, and ``request(context)``, which
        asks the core for a read index and wakes the processing task."""
        self._loop, self._status, self._request = loop, status, request

    async def read_barrier(self, timeout: float | None) -> int:
        """The read index, once this member has applied it."""
        if not self._running():
            raise ClusterStoppedError(f"member {self.id} is not running")
        context = b"r%d:%d" % (self.id, next(self._ids))
        future: asyncio.Future[int] = self._loop.create_future()
        self._waiters.add_read(context, future)
        self._request(context)
        try:
            return await (future if timeout is None else asyncio.wait_for(future, timeout))
        finally:
            self._waiters.drop_read(context)

    async def until_committed(self, index: int, timeout: float | None) -> None:
        """Until the commit index reaches ``index``."""
        if self._status.committed < index:
            await self._wait(self._waiters.until_committed, index, timeout)

    async def until_applied(self, index: int, timeout: float | None) -> None:
        """Until the state machine has applied ``index``."""
        if self._status.applied < index:
            await self._wait(self._waiters.until_applied, index, timeout)

    async def _wait(self, register: Callable[[int, FutureLike], None], index: int,
                    timeout: float | None) -> None:
        """A waiter for ``index`` registered with ``register``, awaited (within ``timeout``)."""
        future: asyncio.Future[Any] = self._loop.create_future()
        register(index, future)
        await (future if timeout is None else asyncio.wait_for(future, timeout))

    async def until(self, condition: Callable[[], bool], timeout: float | None) -> None:
        """Until ``condition()`` holds (checked now, then after every Ready); a condition that
        raises fails the wait with its error."""
        if condition():
            return
        future: asyncio.Future[None] = self._loop.create_future()
        self._waiters.until(condition, future)
        await (future if timeout is None else asyncio.wait_for(future, timeout))

    async def leader(self, timeout: float | None) -> int:
        """The leader's id, once one is known (at once if it is already)."""
        self._check_running()
        status = self._status
        try:
            await self.until(lambda: bool(status.lead), timeout)
        except asyncio.TimeoutError:
            raise ClusterTimeoutError(f"member {self.id}: no leader known within the "
                                      f"timeout of {timeout} s", timeout) from None
        leader = status.lead
        invariant(leader != 0, "a leader was known when the wait ended")
        return leader

    async def consistent(self, timeout: float | None) -> None:
        """``ensure_consistency``: see the module docstring."""
        self._check_running()
        loop, status = self._loop, self._status
        deadline = None if timeout is None else loop.time() + timeout
        try:
            while True:
                leader = await self.leader(self._remaining(deadline))
                if leader == self.id:
                    await self.until(lambda: status.committed_in_current_term,
                                     self._remaining(deadline))
                    return
                attempt = self.retry_seconds
                if deadline is not None:
                    attempt = min(attempt, self._remaining(deadline) or 0.0)
                try:
                    await self.read_barrier(attempt)
                    return
                except asyncio.TimeoutError:
                    if deadline is not None and loop.time() >= deadline:
                        raise
        except (asyncio.TimeoutError, TimeoutError):
            raise ClusterTimeoutError(f"member {self.id}: ensure_consistency did not "
                                      f"complete within its timeout of {timeout} s",
                                      timeout) from None

    def _remaining(self, deadline: float | None) -> float | None:
        """Seconds left until ``deadline`` (loop time); None for no deadline; raises
        ``asyncio.TimeoutError`` once it has passed."""
        if deadline is None:
            return None
        remaining = deadline - self._loop.time()
        if remaining <= 0:
            raise asyncio.TimeoutError
        return remaining
