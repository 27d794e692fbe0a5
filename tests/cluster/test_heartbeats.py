"""A leader keeps its heartbeats on time while it waits for its disk (issue 16).

The processing task persists one Ready at a time; a leader's heartbeats made by ticks during
a slow fdatasync used to wait for the next Ready, so a leader whose disk stalled for longer
than the election timeout looked dead to its followers, and they elected another. The tick
task now sends the leader's traffic itself while a Ready is being persisted.
"""

from __future__ import annotations

import asyncio
import threading
import time

from pyraft.storage.log import DurableLogStorage
from pyraft.testing.cluster import leader_of, memory_cluster, run_on_fresh_loop, settled_leader
from pyraft.transport.memory import MemoryNetwork


def test_a_leader_stalled_in_fdatasync_keeps_its_followers(tmp_path):
    stall_s = 1.5  # well past the upper election timeout (600 ms by default)

    async def body():
        network = MemoryNetwork()
        storage = {}

        def store(member):
            storage[member] = DurableLogStorage(str(tmp_path / f"m{member}"), sync="always")
            return storage[member]

        async with memory_cluster(network, storage=store) as members:
            leader = await settled_leader(members)
            followers = [m for m in members if m is not leader]
            term = leader.term
            stalled = threading.Event()
            real_sync = storage[leader.id].sync

            def slow_sync():
                if not stalled.is_set():  # one stall, on the I/O thread
                    stalled.set()
                    time.sleep(stall_s)
                return real_sync()

            storage[leader.id].sync = slow_sync
            leader._writer.inline_sync_max_ms = 0.0  # syncs on the I/O thread, as for a slow disk
            ticks = [f.core.ticks for f in followers]
            await leader.replicate(b"written through a stalled disk", timeout=30)
            assert stalled.is_set()
            # the followers' clocks ran through the stall: an election was due without
            # heartbeats
            assert all(f.core.ticks - t >= f.core.options.election_ticks_upper
                       for f, t in zip(followers, ticks))
            assert leader.is_leader and leader.term == term
            assert all(f.term == term and f.leader == leader.id for f in followers)
            await asyncio.sleep(0)
            assert await leader_of(members) is leader

    run_on_fresh_loop(body, timeout_s=120)
