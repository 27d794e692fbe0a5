"""Snapshots stream from disk to disk (issue 15, finding 5), measured: member processes on
127.0.0.1 over TCP, a 96 MiB state (a disk state machine whose store is one file), and a
member that starts empty and catches up by one InstallSnapshot. Neither the leader's nor the
follower's resident set may rise by a third of the snapshot: before, the follower held every
chunk in a bytearray and then a bytes copy of it (twice the snapshot), and a leader sending
an ordinary snapshot held it whole."""

from __future__ import annotations

import asyncio
import os
import sys

import msgpack
import pytest

from pyraft.cluster import RaftCluster
from pyraft.config import ClusterConfig
from pyraft.storage.log import DurableLogStorage
from pyraft.storage.state_machine import MemoryStateMachine
from pyraft.testing.cluster import PEERS, leader_of, run_on_fresh_loop
from pyraft.testing.snapshot_stream import measure_install
from pyraft.transport.memory import MemoryNetwork

MiB = 1 << 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/status")
def test_installing_a_large_snapshot_keeps_both_members_memory_bounded(tmp_path):
    snapshot_bytes = 96 * MiB
    figures = measure_install(snapshot_bytes, base=str(tmp_path), timeout_s=60)
    assert figures["installed_by_snapshot"], figures
    assert figures["snapshot_bytes"] == snapshot_bytes
    bound = snapshot_bytes // 3
    assert figures["leader_rss_rise_bytes"] < bound, figures
    assert figures["follower_rss_rise_bytes"] < bound, figures



class KV(MemoryStateMachine):
    def __init__(self, **options):
        super().__init__(**options)
        self.data: dict = {}

    def apply(self, index, command):
        key, value = msgpack.unpackb(command)
        self.data[key] = value

    def build_snapshot(self):
        return msgpack.packb(self.data)

    def restore_snapshot(self, data):
        self.data = msgpack.unpackb(data) if data else {}


def test_an_ordinary_snapshot_streams_into_the_followers_snapshot_store(tmp_path):
    """A memory state machine over durable storage: the follower's chunks go to a temporary
    file of its snapshot store, renamed into place at install (nothing left behind), and the
    member restarts from it."""
    def storage(member):
        return DurableLogStorage(tmp_path / f"m{member}", segment_bytes_max=64 * 1024)

    async def body():
        network = MemoryNetwork(through_codec=True)
        members = [
            RaftCluster(ClusterConfig(member_id=m, tick_ms=5, snapshot_chunk_bytes=512,
                                      snapshot_inflight_bytes_max=2048, peers=PEERS),
                        transport=network.transport(m),
                        state_machine=KV(snapshot_entries=40), storage=storage(m))
            for m in PEERS
        ]
        for member in members:
            await member.start()
        try:
            leader = await leader_of(members)
            lagging = next(m for m in members if m is not leader)
            network.isolate(lagging.id)
            for i in range(300):
                await leader.replicate(msgpack.packb([f"k{i}", i]))
            assert leader.storage.first_index() > 100
            network.heal()
            for _ in range(500):
                if lagging.applied_index >= leader.commit_index:
                    break
                await asyncio.sleep(0.01)
            assert lagging.state_machine.data == leader.state_machine.data
            installed = lagging.storage.latest_snapshot_meta()
            assert installed.index > 100  # caught up through a snapshot
            assert lagging.metrics.snapshots.value(("installed",)) >= 1
            names = os.listdir(tmp_path / f"m{lagging.id}" / "snapshots")
            assert not [n for n in names if n.endswith(".tmp")], names
            return lagging.id, installed
        finally:
            for member in members:
                await member.stop()

    member, installed = run_on_fresh_loop(body, timeout_s=30)
    again = storage(member)
    assert again.latest_snapshot_meta() == installed
    state = KV()
    state.restore_snapshot(bytes(again.snapshot().data))
    assert len(state.data) >= installed.index - 10
    again.close()
