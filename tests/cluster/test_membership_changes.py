"""``pyraft.cluster.membership.MembershipChanges`` on its own: adding and removing members on
the leader, readiness and the leader's endpoint, with a status object standing for the core's
view and a core that records proposals; no cluster."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from pyraft.cluster.membership import MembershipChanges, Peers
from pyraft.cluster.waiters import Waiters
from pyraft.core.membership import Configuration
from pyraft.errors import (
    ClusterStoppedError,
    CommandInterruptedError,
    CommandOutcomeUnknownError,
    ProposalDroppedError,
)
from pyraft.transport.memory import MemoryNetwork, MemoryTransport


@dataclasses.dataclass
class Status:
    configuration: Configuration
    term: int = 2
    committed: int = 0
    configuration_index: int = 0
    pending_conf_index: int = 0
    is_leader: bool = True
    configuration_committed: bool = False


class Core:
    def __init__(self, status: Status) -> None:
        self.status = status
        self.proposed: list[Configuration] = []

    def propose_configuration(self, configuration: Configuration) -> int:
        self.proposed.append(configuration)
        self.status.pending_conf_index += 1
        return self.status.pending_conf_index

    def remove_member(self, member: int) -> int:
        return self.propose_configuration(self.status.configuration.remove(member))


class Harness:
    def __init__(self, configuration: Configuration) -> None:
        self.status = Status(configuration)
        self.core = Core(self.status)
        self.waiters = Waiters()
        self.peers = Peers(1, {1: "10.0.0.1:7000"}, {}, MemoryNetwork().transport(1),
                           lambda kind, member: None)
        self.conditions: list[Callable[[], bool]] = []
        self.catching_up: list[set[int]] = []  # failed_catch_up's members during each wait
        self.wakes = 0
        self.stopped = False  # the member stops during the next wait
        self.changes = MembershipChanges(1, self.peers, self.waiters, {"http": "h1:80"},
                                         until=self.until, wake=self.wake)

    async def until(self, condition: Callable[[], bool], timeout: float | None) -> None:
        self.conditions.append(condition)  # the test plays the Readies afterwards
        self.catching_up.append(set(self.waiters.failed_catch_up))
        if self.stopped:  # what the runtime's waiters get when the member stops
            raise ClusterStoppedError("member 1 stopped")

    def wake(self) -> None:
        self.wakes += 1

    def bind(self) -> None:
        status: Any = self.status
        self.changes.bind(asyncio.get_running_loop(), self.core, status)


THREE = Configuration(frozenset({1, 2, 3}))


def test_adding_proposes_a_learner_with_its_address_and_waits_until_it_votes() -> None:
    async def body() -> None:
        h = Harness(THREE)
        h.bind()
        await h.changes.add(7, "10.0.0.7:7000", {"zone": "b"}, timeout=1.0)
        (proposed,) = h.core.proposed
        assert 7 in proposed.learners and proposed.address_of(7) == "10.0.0.7:7000"
        assert proposed.metadata_of(7) == {"zone": "b"}
        assert h.peers.static[7] == "10.0.0.7:7000" and h.wakes == 1
        assert h.catching_up == [{7}]  # its catch-up failure is watched while it waits
        assert h.waiters.failed_catch_up == {}  # and dropped once the wait ended
        (done,) = h.conditions
        assert not done()
        h.status.configuration = Configuration(frozenset({1, 2, 3, 7}))
        h.status.configuration_committed = True
        assert done()
        h.status.term = 3  # leadership changed meanwhile: unknown
        with pytest.raises(CommandOutcomeUnknownError):
            done()

    asyncio.run(body())


@pytest.mark.parametrize("change", ["add", "remove"])
def test_a_change_in_flight_when_the_member_stops_has_an_unknown_outcome(change: str) -> None:
    """The configuration entry was proposed (and sent) before the member stopped: a later
    leader may commit it, so the caller gets CommandInterruptedError (a ClusterStoppedError
    and a CommandOutcomeUnknownError), not a plain "stopped"."""
    async def body() -> None:
        h = Harness(THREE)
        h.bind()
        h.stopped = True
        with pytest.raises(CommandInterruptedError, match=f"member {7 if change == 'add' else 3}"
                           ) as info:
            if change == "add":
                await h.changes.add(7, "10.0.0.7:7000", None, timeout=None)
            else:
                await h.changes.remove(3, timeout=None)
        assert len(h.core.proposed) == 1  # proposed before the wait
        assert isinstance(info.value, CommandOutcomeUnknownError)
        assert isinstance(info.value.__cause__, ClusterStoppedError)

    asyncio.run(body())


def test_adding_a_member_already_there_is_refused_without_a_proposal() -> None:
    async def body() -> None:
        h = Harness(THREE)
        h.bind()
        with pytest.raises(ProposalDroppedError, match="already in the configuration"):
            await h.changes.add(2, "10.0.0.2:7000", None, timeout=None)
        assert h.core.proposed == [] and h.wakes == 0

    asyncio.run(body())


def test_removing_waits_for_the_removal_entry_to_commit() -> None:
    async def body() -> None:
        h = Harness(THREE)
        h.bind()
        await h.changes.remove(3, timeout=None)
        assert h.core.proposed[0].members == {1, 2} and h.wakes == 1
        (done,) = h.conditions
        assert not done()  # entry 1 not committed
        h.status.committed = 1
        status: Any = h.status
        status.term_or_none = lambda index: 2
        assert done()

    asyncio.run(body())


def test_readiness_and_the_leaders_endpoint() -> None:
    async def body() -> None:
        h = Harness(Configuration(frozenset({2, 3})).with_info(2, "10.0.0.2:7000",
                                                                 {"http": "h2:80"}))
        h.bind()
        assert not h.changes.is_active_voter()  # not a voter yet
        h.status.configuration = THREE
        h.status.configuration_index = 4
        assert not h.changes.is_active_voter()  # a voter, not yet committed
        h.status.committed = 4
        assert h.changes.is_active_voter()
        assert h.changes.endpoint_of(1, "http") == "h1:80"  # its own metadata first
        h.status.configuration = Configuration(frozenset({1, 2})).with_info(
            2, "10.0.0.2:7000", {"http": "h2:80"})
        assert h.changes.endpoint_of(2, "http") == "h2:80"
        assert h.changes.endpoint_of(3, "http") is None  # published none

    asyncio.run(body())


def test_a_port_zero_becomes_the_transports_bound_port() -> None:
    class Bound(MemoryTransport):
        @property
        def address(self) -> str | None:
            return "127.0.0.1:45123"

    asked = Peers(1, {1: "127.0.0.1:0"}, {}, Bound(MemoryNetwork(), 1), lambda k, m: None)
    assert asked.settle_own() == "127.0.0.1:45123" and asked.static[1] == "127.0.0.1:45123"
    fixed = Peers(1, {1: "127.0.0.1:7001"}, {}, Bound(MemoryNetwork(), 1), lambda k, m: None)
    assert fixed.settle_own() == "127.0.0.1:7001"
    memory = Peers(1, {1: "127.0.0.1:0"}, {}, MemoryNetwork().transport(1), lambda k, m: None)
    assert memory.settle_own() == "127.0.0.1:0"  # no bound address: left as given
