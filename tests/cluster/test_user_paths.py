"""User paths of ``RaftCluster``: what a user gets from ``RaftCluster.from_config`` with the
documented defaults, and what a writer sees when the runtime's own machinery fails.

Every test fails on an unhandled exception in the event loop and on tasks left running.
"""

from __future__ import annotations

import asyncio

import pytest

from pyraft.cluster import RaftCluster
from pyraft.config import ClusterConfig
from pyraft.testing.cluster import leader_of, run_on_fresh_loop


def test_from_config_hands_the_wal_its_sync_interval(tmp_path):
    """``sync_interval_ms`` reaches the WAL: with ``sync="interval"`` it is the longest a
    power loss may cost, so a configured 250 ms must not silently be the WAL's 10 ms."""

    async def body():
        config = ClusterConfig(member_id=1, listen="127.0.0.1:0", tick_ms=5,
                               data_dir=str(tmp_path / "d"), sync="interval",
                               sync_interval_ms=250.0).validate()
        async with RaftCluster.from_config(config) as member:
            await leader_of([member])
            wal = member.storage.wal
            assert (wal.sync_policy, wal.sync_interval_ms) == ("interval", 250.0)

    run_on_fresh_loop(body)


def test_writes_taken_off_the_queue_fail_when_the_core_refuses_them_with_a_bug():
    """``core.propose`` raising something it never should (a bug) stops the member; the
    commands already taken off the queue for that batch must fail at once with the reason,
    not wait for their caller's own timeout (they used to wait forever)."""
    from pyraft.cluster import ClusterStoppedError
    from pyraft.errors import InvariantError
    from pyraft.testing.cluster import memory_cluster
    from pyraft.transport.memory import MemoryNetwork

    async def body():
        async with memory_cluster(MemoryNetwork()) as members:
            leader = await leader_of(members)
            await leader.replicate(b"before")
            bug = InvariantError("the log lost an entry")

            def propose(payloads, kind):
                raise bug

            leader.core.propose = propose
            writes = [asyncio.ensure_future(leader.replicate(b"one")),
                      asyncio.ensure_future(leader.replicate(b"two")),
                      asyncio.ensure_future(leader.replicate_many([b"three", b"four"]))]
            done, pending = await asyncio.wait(writes, timeout=3)
            assert not pending, "writers whose commands were taken off the queue still wait"
            for write in done:
                with pytest.raises(ClusterStoppedError, match="the log lost an entry") as info:
                    write.result()
                assert info.value.__cause__ is bug
            assert leader.fatal_error is bug
            with pytest.raises(ClusterStoppedError):
                await leader.replicate(b"after")

    run_on_fresh_loop(body)
