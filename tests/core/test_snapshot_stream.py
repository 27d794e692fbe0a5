"""InstallSnapshot as a stream (issue 15, finding 5): the leader keeps a window of chunks in
flight, the follower's core hands each chunk out in its Ready instead of holding the data,
acknowledges a chunk only once it is written, and a transfer interrupted by a leader change
or a lost connection continues from the follower's offset rather than from 0.

Run in the simulator (8-byte chunks, a 24-byte window), whose persistence checker fails the
run if a SNAPSHOT_RESPONSE names more bytes than the follower has written."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pyraft.core import Message, MessageType
from pyraft.testing.sim import SimConfig, Simulation
from tests.core.test_scenarios import leaders, run

QUIET = SimConfig(faults=frozenset(), op_rate=0.0)


def lagging_follower(s, keys=40):
    """A 3-member cluster whose follower was down while the others wrote ``keys`` keys and
    took a snapshot at the same index (so either may send the same snapshot)."""
    run(s, 100, lambda: leaders(s))
    leader = leaders(s)[0]
    lagging = next(m for m in s.members if m != leader)
    s.crash(lagging)
    s.restart_at[lagging] = 10**9
    for i in range(keys):
        s.submit(0, ("put", f"key-{i}", i), force_log=True)
        s.client_busy.clear()
        s.step_once()
    others = [m for m in s.members if m != lagging]
    assert run(s, 200, lambda: all(s.nodes[m].sm.applied == s.nodes[leader].sm.applied
                                   and s.nodes[m].sm.applied >= keys for m in others))
    index = s.nodes[leader].sm.applied
    for m in others:  # the same snapshot on both: the same meta, the same bytes
        node = s.nodes[m]
        s.storages[m].create_snapshot(index, node.sm.snapshot(), node.core.configuration)
        node.core.compacted_to(index)
    return leader, lagging, others


def record_chunks(s):
    sent: list[Message] = []

    class Recorder:  # the simulator shows it every message sent (and delivered)
        def message(self, event, now, m):
            if event == "send" and m.type is MessageType.SNAPSHOT:
                sent.append(m)

    s.recorder = Recorder()
    return sent


def test_chunks_are_pipelined_within_the_window_and_leave_the_core():
    s = Simulation(1, replace(QUIET, nodes=3, snapshot_entries=10**6))
    leader, lagging, _ = lagging_follower(s)
    sent = record_chunks(s)
    seen_window = 0
    held = []
    s.restart(lagging)
    core = s.nodes[leader].core

    def progress():
        nonlocal seen_window
        pr = core.progress[lagging]
        seen_window = max(seen_window, pr.snapshot_sent - pr.snapshot_offset)
        receiving = s.nodes[lagging].core._snapshot_receiving
        if receiving is not None:
            held.append(receiving[1])
        return s.nodes[lagging].sm.applied >= s.nodes[leader].sm.applied

    assert run(s, 400, progress)
    options = core.options
    # several chunks in flight at once, never more than the window
    assert options.snapshot_chunk_bytes < seen_window <= options.snapshot_inflight_bytes_max
    assert held and all(isinstance(count, int) for count in held)  # a count, not the bytes
    size = len(s.storages[leader].snapshot().data)
    assert size > 10 * options.snapshot_chunk_bytes
    # each byte went about once: no restart from 0 in a quiet network
    assert sum(len(m.snapshot.data) for m in sent) <= size + 2 * options.snapshot_chunk_bytes
    assert s.nodes[lagging].sm.data == s.nodes[leader].sm.data


@pytest.mark.parametrize("interruption", ["leader-change", "connection-loss"])
def test_an_interrupted_transfer_resumes_from_the_followers_offset(interruption):
    s = Simulation(2, replace(QUIET, nodes=3, snapshot_entries=10**6))
    leader, lagging, others = lagging_follower(s)
    size = len(s.storages[leader].snapshot().data)
    s.restart(lagging)
    chunk_bytes = s.nodes[leader].core.options.snapshot_chunk_bytes

    def written():
        return len(s.received.get(lagging, (None, b""))[1])

    assert run(s, 200, lambda: written() >= size // 2)
    if interruption == "leader-change":
        s.blocked = {(leader, m) for m in s.members} | {(m, leader) for m in s.members}
    else:  # the link between leader and follower only
        s.blocked = {(leader, lagging), (lagging, leader)}
    run(s, 5)
    held = written()
    assert 0 < held < size  # interrupted mid-transfer, the partial file kept
    sent = record_chunks(s)
    if interruption == "leader-change":
        assert run(s, 300, lambda: any(m != leader for m in leaders(s)))
        sender = leaders(s)[0]
    else:
        run(s, 30)  # answers stop; the leader gives up on this round
        s.blocked = set()
        sender = leader
    assert run(s, 400, lambda: s.nodes[lagging].sm.applied >= s.nodes[sender].sm.applied)
    offsets = [m.snapshot_offset for m in sent if m.src == sender and m.dst == lagging]
    assert offsets, "no chunk was sent after the interruption"
    # at most the first chunk (which asks the follower where it is) starts below what it
    # held; everything else continues from there
    assert all(offset >= held - chunk_bytes for offset in offsets[1:]), (held, offsets)
    resent = sum(min(held, o + chunk_bytes) - o for o in offsets if o < held)
    assert resent <= chunk_bytes, (held, offsets)
    assert s.nodes[lagging].sm.data == s.nodes[sender].sm.data


def test_a_different_snapshot_starts_from_zero():
    """A chunk of another snapshot past offset 0 is a gap: the follower answers 0."""
    s = Simulation(3, replace(QUIET, nodes=3, snapshot_entries=10**6))
    leader, lagging, _ = lagging_follower(s)
    s.restart(lagging)
    assert run(s, 200, lambda: len(s.received.get(lagging, (None, b""))[1]) >= 16)
    s.blocked = {(leader, lagging), (lagging, leader)}
    run(s, 5)
    # the leader writes more and snapshots again: the partial one is of an older snapshot
    for i in range(10):
        s.submit(0, ("put", f"more-{i}", i), force_log=True)
        s.client_busy.clear()
        s.step_once()
    run(s, 50)
    node = s.nodes[leader]
    index = node.sm.applied
    s.storages[leader].create_snapshot(index, node.sm.snapshot(), node.core.configuration)
    node.core.compacted_to(index)
    s.blocked = set()
    assert run(s, 400, lambda: s.nodes[lagging].sm.applied >= s.nodes[leader].sm.applied)
    assert s.nodes[lagging].sm.data == s.nodes[leader].sm.data
    assert s.storages[lagging].first_index() == index + 1 or \
        s.storages[lagging].last_index() >= index
