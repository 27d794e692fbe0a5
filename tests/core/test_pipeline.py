"""Pipelined Readys: several handed out while earlier ones are persisted, persistence
reported by number (``RaftNode.on_persist_ready``), applies reported apart
(``advance_apply``), and ``advance`` still the combined step (``Ready`` docstring)."""

from __future__ import annotations

import dataclasses
import random

import pytest

from pyraft.core import (
    Configuration,
    HardState,
    MemoryLogStorage,
    Message,
    MessageType,
    RaftNode,
    RaftOptions,
    Ready,
    Role,
)
from pyraft.errors import ConfigError, InvariantError
from raftcore.framing import encode_entries

T = MessageType


def solo(depth: int) -> tuple[RaftNode, MemoryLogStorage]:
    """A one-voter cluster's leader, its election Ready not yet taken."""
    storage = MemoryLogStorage(Configuration(frozenset({1})))
    node = RaftNode(RaftOptions(id=1, ready_pipeline_max=depth), storage, random.Random(1))
    node.campaign()
    assert node.role is Role.LEADER
    return node, storage


def persist(storage: MemoryLogStorage, rd: Ready) -> None:
    """Step 2 of ``rd`` into ``storage`` (what a crash keeps)."""
    if rd.hard_state is not None:
        storage.set_hard_state(rd.hard_state)
    for batch in rd.entries:
        storage.append(batch)


def follower(depth: int) -> tuple[RaftNode, MemoryLogStorage]:
    storage = MemoryLogStorage(Configuration(frozenset({1, 2, 3})))
    node = RaftNode(RaftOptions(id=2, ready_pipeline_max=depth), storage, random.Random(2))
    return node, storage


def append(term: int, prev: int, prev_term: int, count: int, commit: int = 0) -> Message:
    """An AppendEntries from leader 1 to member 2 with ``count`` commands after ``prev``."""
    entries = encode_entries(prev + 1, term, [b"x%d" % i for i in range(count)])
    return Message(T.APPEND, 1, 2, term=term, index=prev, log_term=prev_term, commit=commit,
                   entries=entries)


def acks(rd: Ready) -> list[int]:
    return [m.index for m in rd.persisted_messages
            if m.type is T.APPEND_RESPONSE and not m.reject]


def test_the_leader_hands_out_readys_up_to_the_bound_before_any_is_durable():
    node, _ = solo(depth=3)
    first = node.ready()  # the election: term, vote, the no-op at 1
    node.propose([b"a"])
    second = node.ready()
    node.propose([b"b"])
    third = node.ready()
    assert [r.number for r in (first, second, third)] == [1, 2, 3]
    assert [b.first_index for r in (first, second, third) for b in r.entries] == [1, 2, 3]
    assert node.readys_in_flight == 3
    node.propose([b"c"])
    assert not node.has_ready()  # work waits: three are in flight
    with pytest.raises(InvariantError, match="3 Readys in flight"):
        node.ready()
    # the only voter made nothing durable: nothing commits (thesis 10.2.1)
    assert node.log.committed == 0 and node.progress[1].match == 0


def test_the_leader_counts_itself_only_for_readys_reported_durable():
    node, storage = solo(depth=3)
    readys = [node.ready()]
    for payload in (b"a", b"b"):
        node.propose([payload])
        readys.append(node.ready())
    persist(storage, readys[0])
    node.on_persist_ready(1)
    assert node.progress[1].match == 1 and node.log.committed == 1
    assert node.log.unstable_offset == 2  # 2 and 3 are still read from memory
    persist(storage, readys[1])
    persist(storage, readys[2])
    node.on_persist_ready(3)  # covers Ready 2 as well
    assert node.progress[1].match == 3 and node.log.committed == 3
    assert node.readys_in_flight == 0 and node.log.unstable == []
    rd = node.ready()  # the commits are handed out to apply
    assert rd.committed[0].first_index == 1 and rd.committed[-1].last_index == 3
    node.advance_apply(readys[0])  # committed nothing: no change
    assert node.log.applied == 0
    node.advance(rd)
    assert node.log.applied == 3


def test_a_report_already_covered_changes_nothing_and_one_ahead_is_refused():
    node, storage = solo(depth=4)
    readys = [node.ready()]
    node.propose([b"a"])
    readys.append(node.ready())
    for rd in readys:
        persist(storage, rd)
    node.on_persist_ready(2)
    state = (node.progress[1].match, node.log.committed, node.log.unstable_offset)
    node.on_persist_ready(1)  # reported late, after the newer one: nothing changes
    node.on_persist_ready(2)
    assert (node.progress[1].match, node.log.committed, node.log.unstable_offset) == state
    with pytest.raises(InvariantError, match="handed out up to 2"):
        node.on_persist_ready(3)
    with pytest.raises(InvariantError, match="not in flight"):
        node.advance(readys[1])  # its persistence was reported already


def test_advance_reports_the_ready_and_every_earlier_one():
    node, storage = solo(depth=2)
    first = node.ready()
    node.propose([b"a"])
    second = node.ready()
    persist(storage, first)
    persist(storage, second)
    node.advance(second)
    assert node.readys_in_flight == 0 and node.log.committed == 2
    with pytest.raises(InvariantError, match="not in flight"):
        node.advance(first)


def test_a_bound_of_one_keeps_one_ready_outstanding():
    node, storage = solo(depth=1)
    rd = node.ready()
    node.propose([b"a"])
    assert not node.has_ready()
    with pytest.raises(InvariantError):
        node.ready()
    persist(storage, rd)
    node.advance(rd)
    assert node.has_ready()
    assert node.ready().entries[0].first_index == 2


def test_the_bound_must_be_positive():
    with pytest.raises(ConfigError, match="ready_pipeline_max"):
        RaftOptions(id=1, ready_pipeline_max=0).validate()


def test_a_follower_acknowledges_each_append_in_its_own_readys_persisted_messages():
    node, storage = follower(depth=3)
    node.step(append(1, 0, 0, 2))
    first = node.ready()
    node.step(append(1, 2, 1, 3))
    second = node.ready()
    # the acknowledgements wait for persistence: never in ``messages``
    assert first.messages == [] and second.messages == []
    assert acks(first) == [2] and acks(second) == [5]
    assert first.hard_state is not None and first.hard_state.term == 1 and first.must_sync
    assert [(b.first_index, b.last_index) for b in second.entries] == [(3, 5)]
    assert node.log.unstable_offset == 1  # nothing durable yet
    persist(storage, first)
    node.on_persist_ready(first.number)
    assert node.log.unstable_offset == 3
    persist(storage, second)
    node.on_persist_ready(second.number)
    assert node.log.unstable_offset == 6 and storage.last_index() == 5


def test_a_duplicate_append_is_acknowledged_in_a_later_ready():
    """The entries sit in an earlier Ready in flight; the second acknowledgement covers them,
    and leaves with its own Ready, after the earlier one is durable (docstring, step 3)."""
    node, _ = follower(depth=3)
    node.step(append(1, 0, 0, 2))
    first = node.ready()
    node.step(append(1, 0, 0, 2))  # the leader sent it again
    second = node.ready()
    assert second.entries == [] and acks(second) == [2]
    assert second.number > first.number


def test_entries_replaced_while_in_flight_become_stable_only_with_their_replacement():
    node, storage = follower(depth=3)
    node.step(append(1, 0, 0, 4))  # 1..4 of term 1
    first = node.ready()
    # a leader of term 2 without 3..4: they are replaced before Ready 1 is durable
    node.step(append(2, 2, 1, 2))  # 3..4 of term 2
    second = node.ready()
    assert [(b.first_index, b.last_term) for b in second.entries] == [(3, 2)]
    persist(storage, first)
    node.on_persist_ready(first.number)
    # 4 of term 1 is durable but no longer in the log: the log reads 3..4 from memory
    assert node.log.term(4) == 2 and storage.term(4) == 1
    assert node.log.unstable_offset <= 3
    persist(storage, second)
    node.on_persist_ready(second.number)
    assert node.log.unstable_offset == 5
    assert [node.log.term(i) for i in range(1, 5)] == [storage.term(i) for i in range(1, 5)]
    assert [storage.term(i) for i in range(1, 5)] == [1, 1, 2, 2]


def test_a_crash_between_two_readys_keeps_only_the_first():
    node, storage = follower(depth=3)
    node.step(append(1, 0, 0, 2))
    first = node.ready()
    node.step(append(1, 2, 1, 3))
    second = node.ready()
    persist(storage, first)
    node.on_persist_ready(first.number)
    del node, second  # the crash: Ready 2 never became durable, its ack never left
    restarted = RaftNode(RaftOptions(id=2, ready_pipeline_max=3), storage, random.Random(3))
    assert restarted.log.last_index() == 2 and restarted.term == 1
    # the leader sends 3..5 again: acknowledged once this new Ready is durable
    restarted.step(append(1, 2, 1, 3))
    rd = restarted.ready()
    assert rd.number == 1 and acks(rd) == [5]
    assert [(b.first_index, b.last_index) for b in rd.entries] == [(3, 5)]


def test_a_vote_waits_for_its_ready_and_every_earlier_one():
    """A vote granted while an append's Ready is in flight goes in a later Ready's
    ``persisted_messages`` with the new term and vote in its hard state."""
    node, _ = follower(depth=3)
    node.step(append(1, 0, 0, 2))
    first = node.ready()
    # (a transfer's vote: the lease of leader 1, just heard, does not hold it back)
    node.step(Message(T.VOTE, 3, 2, term=2, index=2, log_term=1, transfer=True))
    second = node.ready()
    votes = [m for m in second.persisted_messages if m.type is T.VOTE_RESPONSE]
    assert [(m.dst, m.reject) for m in votes] == [(3, False)]
    assert second.hard_state is not None and second.hard_state.vote == 3 and second.must_sync
    assert first.number < second.number and second.messages == []


def test_ready_hard_state_is_a_whole_hard_state() -> None:
    """A Ready's HardState (an extension class in the compiled build, a frozen dataclass in
    the pure one) has every field, equals, hashes and prints as one built by a user, and is
    immutable in both builds."""
    assert [f.name for f in dataclasses.fields(HardState)] == ["term", "vote", "commit"]
    node, storage = solo(1)
    rd = node.ready()
    built = HardState(node.term, node.vote, node.log.committed)
    assert rd.hard_state == built and rd.hard_state is not built
    assert hash(rd.hard_state) == hash(built) and repr(rd.hard_state) == repr(built)
    assert dataclasses.replace(built, commit=7) == HardState(built.term, built.vote, 7)
    with pytest.raises(AttributeError):  # FrozenInstanceError in the pure build, a subclass
        rd.hard_state.term = 9  # type: ignore[misc]
    assert rd.hard_state == built
    assert (rd.hard_state.term, rd.hard_state.vote) == (1, 1)
    persist(storage, rd)
    node.advance(rd)
    node.propose([b"x"])
    rd = node.ready()
    persist(storage, rd)
    node.advance(rd)
    rd = node.ready()  # the commit moved: a new hard state
    assert rd.hard_state == HardState(1, 1, node.log.committed) and node.log.committed >= 2
