"""The core's read-only status view: it reads the node as it is now, and cannot change it."""

from __future__ import annotations

import random

import pytest

from pyraft.config import RaftConfig
from pyraft.core import Configuration, MemoryLogStorage, RaftNode, Role
from pyraft.core.view import CoreView


def leader_alone() -> RaftNode:
    """A one-member node that elected itself and persisted and applied its Readys."""
    storage = MemoryLogStorage(Configuration(frozenset({1})).with_info(1, "127.0.0.1:7101"))
    node = RaftNode(RaftConfig(member_id=1).core_options(), storage, random.Random(1))
    node.campaign()
    for _ in range(10):
        if not node.has_ready():
            break
        rd = node.ready()
        for batch in rd.entries:
            storage.append(batch)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        node.advance(rd)
    return node


def test_the_view_reads_the_node_now() -> None:
    node = leader_alone()
    view = CoreView(node)
    assert view.id == 1 and view.is_leader and view.role is Role.LEADER
    assert view.term == node.term and view.lead == 1 and view.leader == 1
    assert view.committed == node.log.committed >= 1
    assert view.applied == node.log.applied and view.applying == node.log.applying
    assert view.first_index == node.log.first_index() == 1
    assert view.last_index == node.log.last_index()
    assert view.term_or_none(view.last_index) == node.term
    assert view.term_or_none(view.last_index + 5) is None
    assert view.committed_in_current_term
    assert view.configuration is node.configuration
    assert view.configuration_index == node.configuration_index()
    assert view.configuration_at(view.last_index) == node.configuration
    assert view.pending_conf_index == node.pending_conf_index
    assert view.configuration_committed
    assert view.match_index(1) == node.progress[1].match and view.match_index(9) is None
    assert view.heard_within(1, 10 ** 6) and not view.heard_within(9, 10 ** 6)
    assert view.options is node.options and view.ticks == node.ticks
    assert view.election_elapsed == node.election_elapsed
    assert view.lease_remaining_ticks == node.lease_remaining_ticks()
    assert view.lease_valid == node.lease_valid()
    assert view.own_info == node.own_info
    assert view.status() == node.status()
    first_last = view.last_index
    node.propose([b"x"])  # the view follows the node: nothing is copied
    assert view.last_index == first_last + 1


def test_the_view_cannot_change_the_node() -> None:
    node = leader_alone()
    view = CoreView(node)
    with pytest.raises(AttributeError):
        view.term = 99  # type: ignore[misc]
    with pytest.raises(AttributeError):
        view.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        view.progress[2] = view.progress[1]  # type: ignore[index]
    assert set(view.progress) == {1} and node.term != 99


def test_a_follower_knows_no_leader_and_no_progress() -> None:
    storage = MemoryLogStorage(Configuration(frozenset({1, 2, 3})))
    node = RaftNode(RaftConfig(member_id=2).core_options(), storage, random.Random(2))
    view = CoreView(node)
    assert view.leader is None and view.lead == 0 and not view.is_leader
    assert dict(view.progress) == {} and view.match_index(1) is None
    assert not view.lease_valid and view.lease_remaining_ticks == 0
