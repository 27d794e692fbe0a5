"""The event bus of one member: what it tells the application about leadership and membership.

Two kinds of message leave here: a ``LeaderChange`` (who leads now, in which term, and why this
member stopped leading if it did) and a ``ClusterEvent`` ("leader-changed", "role-changed",
"member-added", "member-removed"). Each goes to the registered callbacks (``on_leader_changed``,
``on_event``; a callback that raises is logged, never stops the member) and to every
subscriber's bounded queue (``leader_changes()``, ``events()``: a slow reader misses
intermediate items, never the latest). The ``LeadershipToken`` of the current leadership lives
here too: it is cancelled when this member stops leading.

``Leadership`` turns what a Ready reports about this member's role (its soft state, the
leaderships it lost) into those events, the log lines and the metrics; the runtime calls it
after each Ready and once more when it stops while leading.

Neither owns a task or a timer; the runtime publishes from its loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from pyraft.core.messages import LeadershipLossReason, LeadershipLost, Role, SoftState
from pyraft.core.view import CoreView
from pyraft.metrics import Metrics

__all__ = ["ClusterEvent", "EventBus", "LeaderChange", "Leadership", "LeadershipToken"]

log = logging.getLogger("pyraft.cluster")

_Item = TypeVar("_Item")

#: the bound of each subscriber's queue
LEADER_CHANGES_QUEUED_MAX = 64
EVENTS_QUEUED_MAX = 256


@dataclasses.dataclass(frozen=True, slots=True)
class LeaderChange:
    leader: int | None  # None while no leader is known
    term: int
    address: str | None
    #: set when this member stopped leading: why (``lost.reason``, ``lost.describe()``)
    lost: LeadershipLost | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterEvent:
    """``kind``: "leader-changed", "role-changed", "member-added" or "member-removed";
    ``member``: the leader, this member or the member concerned; ``term``; ``role`` of this
    member when the event happened."""

    kind: str
    member: int | None
    term: int
    role: str


class LeadershipToken:
    """Valid while this member leads the term it was issued in; cancelled when it stops.

    ``cancelled`` tells the state now; ``await token.wait_cancelled()`` returns when
    leadership is lost; ``token.add_callback(fn)`` calls ``fn()`` then. Use it to abort work
    that only the leader may do.
    """

    def __init__(self, term: int, loop: asyncio.AbstractEventLoop) -> None:
        self.term = term
        self._future: asyncio.Future[None] = loop.create_future()

    @property
    def cancelled(self) -> bool:
        return self._future.done()

    async def wait_cancelled(self) -> None:
        await asyncio.shield(self._future)

    def add_callback(self, callback: Callable[[], None]) -> None:
        self._future.add_done_callback(lambda _future: callback())

    def _cancel(self) -> None:
        if not self._future.done():
            self._future.set_result(None)


def _offer(queue: asyncio.Queue[_Item], item: _Item) -> None:
    """Put ``item`` in a bounded queue, dropping the oldest item when it is full."""
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    queue.put_nowait(item)


class EventBus:
    """Callbacks and subscribers of leader changes and cluster events, and the leadership
    token. State: ``_token`` is the token of the newest leadership of this member (cancelled
    once it ended), or None before the first."""

    def __init__(self) -> None:
        self._leader_callbacks: list[Callable[[LeaderChange], None]] = []
        self._leader_subscribers: list[asyncio.Queue[LeaderChange]] = []
        self._event_callbacks: list[Callable[[ClusterEvent], None]] = []
        self._event_subscribers: list[asyncio.Queue[ClusterEvent]] = []
        self._token: LeadershipToken | None = None

    # ---- subscribing ---------------------------------------------------------------------
    def on_leader_changed(self, callback: Callable[[LeaderChange], None]) -> None:
        self._leader_callbacks.append(callback)

    def on_event(self, callback: Callable[[ClusterEvent], None]) -> None:
        self._event_callbacks.append(callback)

    async def leader_changes(self, running: Callable[[], bool]) -> AsyncIterator[LeaderChange]:
        """Every leader change from now on, while ``running()``."""
        queue: asyncio.Queue[LeaderChange] = asyncio.Queue(maxsize=LEADER_CHANGES_QUEUED_MAX)
        self._leader_subscribers.append(queue)
        try:
            while running():
                yield await queue.get()
        finally:
            self._leader_subscribers.remove(queue)

    async def events(self, running: Callable[[], bool]) -> AsyncIterator[ClusterEvent]:
        """Every cluster event from now on, while ``running()``."""
        queue: asyncio.Queue[ClusterEvent] = asyncio.Queue(maxsize=EVENTS_QUEUED_MAX)
        self._event_subscribers.append(queue)
        try:
            while running():
                yield await queue.get()
        finally:
            self._event_subscribers.remove(queue)

    # ---- publishing ----------------------------------------------------------------------
    def emit(self, event: ClusterEvent) -> None:
        for callback in list(self._event_callbacks):
            try:
                callback(event)
            except Exception:  # a user's callback must not stop the member
                log.exception("event callback failed")
        for queue in self._event_subscribers:
            _offer(queue, event)

    def publish_leader_change(self, change: LeaderChange) -> None:
        for callback in list(self._leader_callbacks):
            try:
                callback(change)
            except Exception:  # a user's callback must not stop the member
                log.exception("leader-changed callback failed")
        for queue in self._leader_subscribers:
            _offer(queue, change)

    # ---- the leadership token ------------------------------------------------------------
    def token_for_term(self, term: int, loop: asyncio.AbstractEventLoop) -> LeadershipToken:
        """The token of this member's leadership of ``term`` (a new one the first time)."""
        token = self._token
        if token is None or token.term != term or token.cancelled:
            if token is not None:
                token._cancel()
            token = self._token = LeadershipToken(term, loop)
        return token

    def cancel_token(self) -> None:
        """This member stopped leading: the current token, if any, is cancelled."""
        if self._token is not None:
            self._token._cancel()


#: the reasons a member gives up leading because it was asked to (logged as information,
#: every other reason as a warning)
_ASKED = (LeadershipLossReason.TRANSFER, LeadershipLossReason.RESIGN,
          LeadershipLossReason.STOPPED)


class Leadership:
    """The leader changes of member ``member_id``, as the application and the metrics see
    them. ``address_of(member)`` is where the others reach a member (for ``LeaderChange``);
    ``stepped_down()`` is called when this member no longer leads, before the events go out
    (the runtime fails the writes still queued).

    State: ``_role_seen``: the role of the last "role-changed" event (None before the
    first)."""

    def __init__(self, member_id: int, bus: EventBus, metrics: Metrics,
                 address_of: Callable[[int | None], str | None],
                 stepped_down: Callable[[], None]) -> None:
        self.id = member_id
        self._bus = bus
        self._metrics = metrics
        self._address_of = address_of
        self._stepped_down = stepped_down
        self._role_seen: Role | None = None

    def lost(self, lost: LeadershipLost) -> None:
        """Log why this member stopped leading (a warning unless it was asked to) and count
        it."""
        self._metrics.leadership_lost.inc(1, (lost.reason.value,))
        log.log(logging.INFO if lost.reason in _ASKED else logging.WARNING,
                "member %d lost leadership in term %d: %s", self.id, lost.term, lost.describe())

    def changed(self, soft: SoftState, status: CoreView, loop: asyncio.AbstractEventLoop,
                lost: list[LeadershipLost] | None = None) -> None:
        """A Ready reported a new soft state: record it, issue or cancel the leadership
        token, and publish "role-changed" (when the role changed), "leader-changed" and the
        ``LeaderChange`` (with the last leadership ``lost`` when this member stepped down)."""
        term = status.term
        self._metrics.leader_changed(soft.role.value, soft.leader)
        if soft.role is Role.LEADER:
            self._bus.token_for_term(term, loop)
            log.info("member %d won the election: it leads term %d", self.id, term)
        else:
            log.info("member %d: the leader is now %s (term %d)", self.id,
                     soft.leader or "unknown", term)
            self._bus.cancel_token()
        if soft.role is not Role.LEADER:
            self._stepped_down()
        if soft.role is not self._role_seen:
            self._role_seen = soft.role
            self._bus.emit(ClusterEvent("role-changed", self.id, status.term,
                                        status.role.value))
        self._bus.emit(ClusterEvent("leader-changed", soft.leader or None, status.term,
                                    status.role.value))
        change = LeaderChange(soft.leader or None, term,
                              self._address_of(soft.leader) if soft.leader else None,
                              lost[-1] if lost and soft.role is not Role.LEADER else None)
        self._bus.publish_leader_change(change)

    def stopped(self, term: int) -> None:
        """This member stops while leading ``term``: it lost the lead (``STOPPED``)."""
        lost = LeadershipLost(LeadershipLossReason.STOPPED, term)
        self.lost(lost)
        self._metrics.leader_changed("follower", 0)
        self._bus.publish_leader_change(LeaderChange(None, term, None, lost))
