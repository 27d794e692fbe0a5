"""A real ``pyraft node`` whose disk fills: its data directory is on a tmpfs mounted for the
test (root only; elsewhere the in-process tests of ``test_storage_full.py`` cover the same
paths with an injected error, and this test says why it cannot run).

The node preallocates its 64 MiB log segment when it creates it, so appends keep working on
a full disk until a segment must be created; what needs new space at once is a state-machine
snapshot (``--snapshot-entries 10`` here) or a hard-state change. The follower whose disk is
full must report the failure (log and ``pyraft_storage_failures_total``), the others keep
committing, and once space returns the follower catches up by itself, without a restart.
"""

from __future__ import annotations

import shutil

import pytest

from tests.faults.nodes import (
    fill,
    has_all,
    leader_of,
    make_nodes,
    metric,
    mount_tmpfs,
    put,
    status,
    stopping,
    unmount,
    wait_for,
)

#: a 64 MiB segment, its snapshots and hard state, a little room to spare (filled by the test)
TMPFS_SIZE = "80m"


@pytest.fixture
def tmpfs(tmp_path):
    mountpoint = tmp_path / "disk"
    if not mount_tmpfs(mountpoint, TMPFS_SIZE):
        pytest.skip("mounting a tmpfs needs root: test_storage_full.py injects the error")
    try:
        yield mountpoint
    finally:
        unmount(mountpoint)
        shutil.rmtree(mountpoint, ignore_errors=True)


def test_a_follower_node_whose_disk_fills(tmp_path, tmpfs):
    nodes = make_nodes(tmp_path, data={3: tmpfs / "data"}, snapshot_entries=10)
    follower = nodes[3]
    with stopping(nodes):
        for node in nodes.values():
            node.start()
        if leader_of(nodes) is follower:  # restart it: another member leads meanwhile
            follower.stop()
            follower.start()
        wait_for(lambda: leader_of(nodes) is not follower, 30, message="3 follows")
        expected = {f"a{i}": f"v{i}" for i in range(5)}
        for key, value in expected.items():
            put(nodes, key, value)
        wait_for(lambda: has_all(follower, expected), 30, message="the follower is up")
        filler = fill(tmpfs)
        for i in range(30):  # three snapshots' worth: the follower cannot write them
            expected[f"b{i}"] = "x" * 200
            put(nodes, f"b{i}", expected[f"b{i}"])
        for node in nodes.values():
            if node is not follower:
                assert has_all(node, expected)
        wait_for(lambda: (metric(follower, "pyraft_storage_failures_total") or 0) > 0, 10,
                 message="the follower counts its storage failures")
        assert "No space left on device" in follower.log()
        filler.unlink()
        expected["after"] = "space returned"
        put(nodes, "after", expected["after"])
        wait_for(lambda: has_all(follower, expected), 30,
                 message="the follower caught up without a restart")
        assert follower.process.poll() is None
        seen = status(follower)
        assert seen is not None and seen["applied"] >= seen["commit"] - 1
