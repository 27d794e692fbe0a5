"""User paths of ``RaftCluster``: what a user gets from ``RaftCluster.from_config`` with the
documented defaults, and what a writer sees when the runtime's own machinery fails.

Every test fails on an unhandled exception in the event loop and on tasks left running.
"""

from __future__ import annotations

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
