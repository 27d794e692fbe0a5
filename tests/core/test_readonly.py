"""ReadOnly: the leader's read-index queue (Raft thesis 6.4), without a node around it."""

from __future__ import annotations

from pyraft.core.messages import Message, MessageType
from pyraft.core.readonly import ReadOnly

VOTERS = frozenset({1, 2, 3, 4, 5})


def test_a_read_is_confirmed_by_a_quorum_of_voters_only():
    """"the leader ... waits for a majority of the cluster to acknowledge" (thesis 6.4)"""
    reads = ReadOnly()
    reads.add(b"r1", 7, requester=1, leader=1)
    assert reads.ack(2, b"r1", VOTERS, 3) == []
    assert reads.ack(9, b"r1", VOTERS, 3) == []  # not a voter: does not count
    assert reads.ack(2, b"r1", VOTERS, 3) == []  # the same member twice counts once
    done = reads.ack(3, b"r1", VOTERS, 3)
    assert [(r.context, r.index, r.requester) for r in done] == [(b"r1", 7, 1)]
    assert reads.pending == []


def test_confirming_a_read_confirms_every_earlier_one_and_no_later_one():
    reads = ReadOnly()
    for i, context in enumerate((b"a", b"b", b"c"), start=10):
        reads.add(context, i, requester=i, leader=1)
    reads.ack(2, b"b", VOTERS, 3)
    done = reads.ack(3, b"b", VOTERS, 3)
    assert [r.context for r in done] == [b"a", b"b"]
    assert [r.context for r in reads.pending] == [b"c"]


def test_an_unknown_context_changes_nothing():
    reads = ReadOnly()
    reads.add(b"a", 1, requester=2, leader=1)
    assert reads.ack(2, b"zz", VOTERS, 1) == []
    assert [r.acks for r in reads.pending] == [{1}]


def test_the_leaders_own_acknowledgement_counts():
    reads = ReadOnly()
    reads.add(b"a", 4, requester=3, leader=1)
    assert [r.index for r in reads.ack(2, b"a", frozenset({1, 2, 3}), 2)] == [4]


def test_reads_wait_for_a_commit_of_the_term_and_come_back_in_order():
    reads = ReadOnly()
    first = Message(MessageType.READ_INDEX, 2, 1, context=b"x")
    second = Message(MessageType.READ_INDEX, 3, 1, context=b"y")
    reads.wait_for_commit(first)
    reads.wait_for_commit(second)
    assert reads.take_waiting() == [first, second]
    assert reads.take_waiting() == [] and reads.waiting == []


def test_reset_drops_everything():
    reads = ReadOnly()
    reads.add(b"a", 1, requester=1, leader=1)
    reads.wait_for_commit(Message(MessageType.READ_INDEX, 2, 1))
    reads.reset()
    assert reads.pending == [] and reads.waiting == []
    assert reads.ack(2, b"a", VOTERS, 1) == []
