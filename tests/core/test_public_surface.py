"""The names the runtime (and its read-only view of the core) relies on stay, with their
meaning: issue 17 moves code out of raft.py without changing what RaftNode offers."""

from __future__ import annotations

import inspect
import random

import pytest

from pyraft.core import Configuration, MemoryLogStorage, RaftNode, RaftOptions
from pyraft.core.progress import Progress

STATE = ("id", "term", "vote", "role", "lead", "log", "configuration", "pending_conf_index",
         "progress", "options", "ticks", "election_elapsed", "fresh")
QUERIES = ("info_recorded", "lease_valid", "lease_remaining_ticks",
           "committed_in_current_term", "configuration_at", "configuration_index", "status")
CALLS = ("tick", "step", "propose", "propose_configuration", "add_member", "remove_member",
         "read_index", "transfer_leadership", "resign", "restore_applied", "set_own_info",
         "report_unreachable", "report_snapshot", "has_ready", "ready", "advance",
         "take_leader_traffic", "compacted_to", "campaign", "on_persist_ready",
         "advance_apply")


def leader() -> RaftNode:
    storage = MemoryLogStorage(Configuration(frozenset({1})))
    node = RaftNode(RaftOptions(id=1), storage, random.Random(1))
    node.campaign()
    return node


def test_state_fields_are_there():
    node = leader()
    assert all(hasattr(node, name) for name in STATE)
    log = node.log
    assert (log.committed, log.applied, log.applying) == (0, 0, 0)
    assert (log.first_index(), log.last_index(), log.term_or_none(1)) == (1, 1, 1)
    assert isinstance(node.progress[1], Progress)
    assert node.own_info is None  # a property: what set_own_info was given
    node.set_own_info("127.0.0.1:7000", {"zone": "a"})
    assert node.own_info == ("127.0.0.1:7000", (("zone", "a"),))


@pytest.mark.parametrize("name", QUERIES + CALLS)
def test_methods_are_there(name):
    # a method (a cyfunction or a method descriptor in the compiled build), not a property
    found = inspect.getattr_static(RaftNode, name)
    assert callable(found) and not isinstance(found, property)


def persist_and_advance(node: RaftNode, storage: MemoryLogStorage) -> None:
    while node.has_ready():
        rd = node.ready()
        for batch in rd.entries:
            storage.append(batch)
        node.advance(rd)


def test_the_configuration_history_answers_as_before():
    storage = MemoryLogStorage(Configuration(frozenset({1})))
    node = RaftNode(RaftOptions(id=1), storage, random.Random(1))
    node.campaign()
    persist_and_advance(node, storage)  # the no-op commits: changes are allowed
    assert node.log.committed == 1 and node.configuration_index() == 0
    index = node.add_member(2)
    persist_and_advance(node, storage)
    with_learner = Configuration(frozenset({1}), frozenset({2}))
    assert node.configuration == with_learner and node.configuration_index() == index == 2
    assert node.configuration_at(1) == Configuration(frozenset({1}))
    assert node.configuration_at(index) == with_learner
    storage.create_snapshot(index, b"", node.configuration)
    node.compacted_to(index)
    assert node.configuration_at(index) == with_learner  # folded into the base
    assert node.configuration_index() == 0
