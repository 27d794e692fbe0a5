"""``pyraft.cluster.events.Leadership`` on its own: what a Ready's soft state and lost
leaderships become (events, the leadership token, metrics), without a cluster."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest

from pyraft.cluster.events import ClusterEvent, EventBus, LeaderChange, Leadership
from pyraft.core.messages import LeadershipLossReason, LeadershipLost, Role, SoftState
from pyraft.metrics import Metrics


@dataclasses.dataclass
class Status:
    """The two fields ``Leadership.changed`` reads of the core's view."""

    term: int
    role: Role


class Harness:
    def __init__(self) -> None:
        self.bus = EventBus()
        self.metrics = Metrics(1, opentelemetry=False)
        self.events: list[ClusterEvent] = []
        self.changes: list[LeaderChange] = []
        self.stepped_down = 0
        self.bus.on_event(self.events.append)
        self.bus.on_leader_changed(self.changes.append)
        self.leadership = Leadership(1, self.bus, self.metrics,
                                     lambda member: f"10.0.0.{member}:7000",
                                     self.step_down)

    def step_down(self) -> None:
        self.stepped_down += 1

    def changed(self, leader: int, role: Role, term: int,
                lost: list[LeadershipLost] | None = None) -> None:
        status: Any = Status(term, role)
        self.leadership.changed(SoftState(leader, role), status, asyncio.get_running_loop(),
                                lost)


def test_winning_issues_a_token_and_publishes_the_change() -> None:
    async def body() -> None:
        h = Harness()
        h.changed(1, Role.LEADER, 4)
        token = h.bus.token_for_term(4, asyncio.get_running_loop())
        assert not token.cancelled and h.stepped_down == 0
        assert [(e.kind, e.member, e.term, e.role) for e in h.events] == [
            ("role-changed", 1, 4, "leader"), ("leader-changed", 1, 4, "leader")]
        assert h.changes == [LeaderChange(1, 4, "10.0.0.1:7000", None)]
        assert h.metrics.is_leader.value() == 1

        h.changed(1, Role.LEADER, 4)  # the same role again: no second role-changed
        assert [e.kind for e in h.events[2:]] == ["leader-changed"]

    asyncio.run(body())


def test_stepping_down_cancels_the_token_and_names_why() -> None:
    async def body() -> None:
        h = Harness()
        h.changed(1, Role.LEADER, 4)
        token = h.bus.token_for_term(4, asyncio.get_running_loop())
        lost = LeadershipLost(LeadershipLossReason.HIGHER_TERM, 4, member=3, member_term=5)
        h.leadership.lost(lost)
        h.changed(3, Role.FOLLOWER, 5, [lost])
        assert token.cancelled and h.stepped_down == 1
        assert h.changes[-1] == LeaderChange(3, 5, "10.0.0.3:7000", lost)
        assert h.events[-2].kind == "role-changed" and h.events[-2].role == "follower"
        assert h.metrics.leadership_lost.value(("higher-term",)) == 1
        h.changed(0, Role.FOLLOWER, 6)  # no leader known: no address, nothing lost
        assert h.changes[-1] == LeaderChange(None, 6, None, None)
        assert h.events[-1].member is None

    asyncio.run(body())


def test_a_loss_asked_for_is_information_any_other_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    with caplog.at_level(logging.INFO, logger="pyraft.cluster"):
        h.leadership.lost(LeadershipLost(LeadershipLossReason.TRANSFER, 2, member=2,
                                         member_term=3))
        h.leadership.lost(LeadershipLost(LeadershipLossReason.CHECK_QUORUM, 2))
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.WARNING]


def test_stopping_while_leading_publishes_a_stopped_loss() -> None:
    h = Harness()
    h.leadership.stopped(7)
    (change,) = h.changes
    assert change.leader is None and change.term == 7 and change.lost is not None
    assert change.lost.reason is LeadershipLossReason.STOPPED
    assert h.metrics.leadership_lost.value(("stopped",)) == 1
    assert h.metrics.is_leader.value() == 0
