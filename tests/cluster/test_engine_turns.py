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


# ---- a lone write, proposed within its call ------------------------------------------------
@pytest.mark.parametrize("pipeline", [4, 1], ids=["pipelined", "not-pipelined"])
def test_a_lone_write_is_proposed_within_its_call(pipeline: int) -> None:
    """One writer at a time (nothing in flight, the last batch held one write): the write is
    proposed, written and sent inside ``replicate``'s call, a turn of the loop before the
    processing task would have; without pipelined Readys the task takes it on its turn."""

    async def main() -> list[tuple[int, bool]]:
        network = MemoryNetwork()
        async with memory_cluster(network, ready_pipeline_max=pipeline) as members:
            leader = await settled_leader(members)
            await leader.replicate(b"first", timeout=5)  # a batch of one write
            seen = []
            for i in range(20):
                before = leader.view.last_index
                write = asyncio.ensure_future(leader.replicate(b"w%d" % i, timeout=5))
                await asyncio.sleep(0)  # the write's task took its first step: the call
                seen.append((leader.view.last_index - before, leader._engine.wake.is_set()))
                assert await write is None
            return seen

    seen = run_on_fresh_loop(main, timeout_s=30)
    if pipeline > 1:
        assert [grew for grew, _ in seen] == [1] * 20  # in the log when the call returns
    else:
        assert seen == [(0, True)] * 20  # queued, the task woken for it


def test_concurrent_writers_still_go_in_one_append() -> None:
    """Writers that settle together come back together: 16 of them, each writing in a loop,
    keep going in batches of 16; none is proposed alone ahead of the others."""

    async def main() -> list:
        network = MemoryNetwork()
        async with memory_cluster(network) as members:
            leader = await settled_leader(members)

            async def writer(slot: int) -> None:
                for i in range(20):
                    await leader.replicate(b"%d-%d" % (slot, i), timeout=5)

            await asyncio.gather(*(writer(slot) for slot in range(16)))
            return leader.metrics.proposal_batch.series[()]

    counts, total, count = run_on_fresh_loop(main, timeout_s=60)
    assert total == 16 * 20
    assert counts[0] == 0  # no batch of one write
    assert count <= 2 * 20  # a cohort split now and then, never write by write


def start_eagerly(coro) -> asyncio.Future:
    """Run ``coro`` up to its first suspension now, in the caller's frame, then on as a
    task: what ``asyncio.eager_task_factory`` (Python 3.12) does for a task it creates."""
    try:
        suspended_on = coro.send(None)
    except StopIteration as done:
        future = asyncio.get_running_loop().create_future()
        future.set_result(done.value)
        return future

    async def rest(suspended_on):
        while True:
            await asyncio.wait({suspended_on})
            try:
                suspended_on = coro.send(None)
            except StopIteration as done:
                return done.value

    return asyncio.ensure_future(rest(suspended_on))


def test_a_write_started_inside_a_callback_waits_for_the_task() -> None:
    """A write whose call runs while the engine handles a Ready (a leader-changed callback
    that starts it eagerly) is not proposed there, inside that Ready: the task proposes it
    on its turn, and it commits."""

    async def main() -> tuple[object, int]:
        network = MemoryNetwork()
        async with memory_cluster(network) as members:
            leader = await settled_leader(members)
            other = next(m for m in members if m is not leader)
            await leader.replicate(b"lone", timeout=5)  # its last batch held one write
            started: list[asyncio.Future] = []
            grew: list[int] = []

            def on_change(change) -> None:
                if change.leader == leader.id and change.lost is None and not started:
                    before = leader.view.last_index
                    started.append(start_eagerly(leader.replicate(b"eager", timeout=5)))
                    grew.append(leader.view.last_index - before)

            leader.on_leader_changed(on_change)
            await leader.transfer_leadership(other.id, timeout=5)
            await other.transfer_leadership(leader.id, timeout=5)
            for _ in range(200):
                if started:
                    break
                await asyncio.sleep(0.01)
            assert started, "the leader never came back"
            result = await asyncio.wait_for(started[0], 5)
            assert leader._engine.failed is False
            return result, grew[0]

    result, grew = run_on_fresh_loop(main, timeout_s=60)
    assert grew == 0  # queued for the task, not proposed inside the Ready being handled
    assert result is None  # and it committed
