"""A member that stops leading says why, on its ``LeaderChange`` event, in one log line and
in ``pyraft_leadership_lost_total{reason}``: check-quorum, transfer, resign, stopped (the
higher-term and removal reasons are produced in tests/core/test_leadership_lost.py).

In-memory transport, real runtime on a fresh loop; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pyraft.core import LeadershipLossReason
from pyraft.testing.cluster import leader_of, memory_cluster, run_on_fresh_loop
from pyraft.transport.memory import MemoryNetwork

PEERS = {m: f"127.0.0.1:{7400 + m}" for m in (1, 2, 3)}
R = LeadershipLossReason


def run(body) -> None:
    run_on_fresh_loop(body, timeout_s=60)


def watch(member) -> list:
    changes: list = []
    member.on_leader_changed(changes.append)
    return changes


async def wait_for(condition, timeout: float = 10.0) -> None:
    async def poll():
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def lost_of(changes) -> list:
    return [change.lost for change in changes if change.lost is not None]


def count(member, reason: R) -> float:
    return member.metrics.leadership_lost.value((reason.value,))


def test_transfer_is_reported_with_the_new_leader(caplog):
    caplog.set_level(logging.INFO, logger="pyraft.cluster")

    async def body():
        async with memory_cluster(MemoryNetwork(), PEERS) as members:
            leader = await leader_of(members)
            term = leader.term
            changes = watch(leader)
            target = next(m for m in members if m is not leader)
            await leader.transfer_leadership(target.id, timeout=10)
            await wait_for(lambda: lost_of(changes))
            lost = lost_of(changes)[0]
            assert (lost.reason, lost.term, lost.member) == (R.TRANSFER, term, target.id)
            change = next(c for c in changes if c.lost is lost)
            assert change.leader in (None, target.id)
            assert count(leader, R.TRANSFER) == 1
            assert count(leader, R.CHECK_QUORUM) == 0
            message = (f"member {leader.id} lost leadership in term {term}: "
                       f"leadership transferred to member {target.id}")
            assert any(r.getMessage() == message and r.levelno == logging.INFO
                       for r in caplog.records)

    run(body)


def test_resign_is_reported_as_resign():
    async def body():
        async with memory_cluster(MemoryNetwork(), PEERS) as members:
            leader = await leader_of(members)
            term = leader.term
            changes = watch(leader)
            target = await leader.resign()
            await wait_for(lambda: lost_of(changes))
            lost = lost_of(changes)[0]
            assert (lost.reason, lost.term, lost.member) == (R.RESIGN, term, target)
            assert count(leader, R.RESIGN) == 1

    run(body)


def test_check_quorum_is_a_warning(caplog):
    caplog.set_level(logging.INFO, logger="pyraft.cluster")

    async def body():
        network = MemoryNetwork()
        async with memory_cluster(network, PEERS) as members:
            leader = await leader_of(members)
            term = leader.term
            changes = watch(leader)
            network.isolate(leader.id)
            await wait_for(lambda: lost_of(changes))
            lost = lost_of(changes)[0]
            assert (lost.reason, lost.term, lost.member) == (R.CHECK_QUORUM, term, 0)
            assert count(leader, R.CHECK_QUORUM) == 1
            assert not leader.is_leader
            records = [r for r in caplog.records
                       if r.getMessage().startswith(f"member {leader.id} lost leadership")]
            assert [r.levelno for r in records] == [logging.WARNING]
            assert "check-quorum" in records[0].getMessage()
            network.heal()

    run(body)


def test_stop_reports_a_stopped_leader_to_subscribers():
    async def body():
        async with memory_cluster(MemoryNetwork(), PEERS) as members:
            leader = await leader_of(members)
            term = leader.term
            changes = watch(leader)
            received: list = []
            ready = asyncio.Event()

            async def subscribe():
                async with contextlib.aclosing(leader.leader_changes()) as iterator:
                    ready.set()
                    async for change in iterator:
                        received.append(change)
                        if change.lost is not None:
                            return

            task = asyncio.ensure_future(subscribe())
            await asyncio.wait_for(ready.wait(), 5)
            await asyncio.sleep(0.05)  # the generator is waiting on its queue
            await leader.stop()
            await asyncio.wait_for(task, 5)
            assert [c.lost.reason for c in changes if c.lost] == [R.STOPPED]
            assert received[-1].lost.reason is R.STOPPED and received[-1].term == term
            assert received[-1].leader is None
            assert count(leader, R.STOPPED) == 1
            assert leader.metrics.is_leader.value() == 0
            leader.metrics.refresh(leader)  # as a scrape after the stop would
            assert leader.metrics.is_leader.value() == 0
            assert leader.metrics.role.value(("leader",)) == 0
            follower = next(m for m in members if m is not leader)
            assert follower.metrics.leadership_lost.value(("stopped",)) == 0

    run(body)
