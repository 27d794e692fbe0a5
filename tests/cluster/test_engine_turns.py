"""The engine handles the messages of one read in that turn of the loop when it can.

A transport that reports the end of each read's messages (``report_deliveries``: TCP, and the
memory transport, which delivers what one turn sent together) lets the engine step them as
they come and handle the Readys they produce at the end, without waking its processing task:
a follower answers an append inside the delivery. A Ready that cannot be pipelined (the
pipeline switched off, a snapshot, a truncation) goes to the task, which may have to wait.
"""

from __future__ import annotations

import asyncio

import pytest

from pyraft.testing.cluster import memory_cluster, run_on_fresh_loop, settled_leader
from pyraft.transport.memory import MemoryNetwork


def watch_reports(member, network: MemoryNetwork) -> list[tuple[int, bool]]:
    """For each read delivered to ``member``: how many messages it sent while its engine
    handled that read's end, and whether its processing task was woken for it."""
    seen: list[tuple[int, bool]] = []
    transport = member.transport
    report = transport._report
    assert report is not None  # the runtime asked for the reports

    def watched() -> None:
        sent = network.delivered
        report()
        seen.append((network.delivered - sent, member._engine.wake.is_set()))

    transport._report = watched
    return seen


@pytest.mark.parametrize("pipeline", [4, 1], ids=["pipelined", "not-pipelined"])
def test_a_follower_answers_an_append_in_the_turn_it_arrives(pipeline: int) -> None:
    async def main() -> list[tuple[int, bool]]:
        network = MemoryNetwork()
        async with memory_cluster(network, ready_pipeline_max=pipeline) as members:
            leader = await settled_leader(members)
            follower = next(m for m in members if m is not leader)
            seen = watch_reports(follower, network)
            results = [await leader.replicate(b"w%d" % i, timeout=5) for i in range(20)]
            assert results == [None] * 20  # the consensus-only state machine answers None
            await asyncio.sleep(0.05)
            assert follower.applied_index == leader.applied_index
            return seen

    seen = run_on_fresh_loop(main, timeout_s=30)
    assert len(seen) >= 20
    if pipeline > 1:
        # answered inside the report, the task left parked: no turn of its own
        assert sum(1 for sent, woken in seen if sent and not woken) >= 20
    else:
        # nothing pipelined: every Ready goes to the task, which answers on its turn
        assert all(sent == 0 for sent, _ in seen)
        assert sum(1 for _, woken in seen if woken) >= 20
