"""Snapshots stream from disk to disk (issue 15, finding 5), measured: member processes on
127.0.0.1 over TCP, a 96 MiB state (a disk state machine whose store is one file), and a
member that starts empty and catches up by one InstallSnapshot. Neither the leader's nor the
follower's resident set may rise by a third of the snapshot: before, the follower held every
chunk in a bytearray and then a bytes copy of it (twice the snapshot), and a leader sending
an ordinary snapshot held it whole."""

from __future__ import annotations

import sys

import pytest

from pyraft.testing.snapshot_stream import measure_install

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
