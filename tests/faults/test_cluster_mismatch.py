"""Another cluster's data directory: a mistyped ``--cluster-id`` (or ``--data``) is refused as
"belongs to cluster X", never reported as damage with a repair hint (a repair is destructive,
and would not even apply: recovery refuses another cluster's segments even with repair).

The directory is made by a real member of cluster 1 (``RaftCluster.from_config``, one write),
then ``pyraft node`` is started on it with ``--cluster-id 2``: it must stop with exit status
``EXIT_STORAGE``, exactly one line on stderr naming the directory, both cluster ids and what to
do, no traceback, no repair hint; and the directory must be unchanged.
"""

from __future__ import annotations

from pathlib import Path

from pyraft.cli import main as pyraft_main
from pyraft.cluster import RaftCluster
from pyraft.config import ClusterConfig
from pyraft.errors import ClusterMismatchError, CorruptStateError
from pyraft.kv.node import EXIT_STORAGE
from pyraft.storage.log import DurableLogStorage
from pyraft.testing.cluster import leader_of, run_on_fresh_loop
from pyraft.testing.processes import free_port
from tests.faults.nodes import run_cli


def _directory_of_cluster_1(data: Path) -> dict[str, bytes]:
    """A data directory written by a member of cluster 1; returns its files' contents."""

    async def body():
        config = ClusterConfig(member_id=3, listen="127.0.0.1:0", tick_ms=5, cluster_id=1,
                               data_dir=str(data)).validate()
        async with RaftCluster.from_config(config) as member:
            await leader_of([member])
            await member.replicate(b"written by cluster 1")

    run_on_fresh_loop(body, timeout_s=30)
    return _contents(data)


def _contents(data: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data)): p.read_bytes() for p in sorted(data.rglob("*"))
            if p.is_file()}


def test_storage_refuses_another_clusters_directory_as_a_mismatch_not_damage(tmp_path):
    data = tmp_path / "m3"
    before = _directory_of_cluster_1(data)
    try:
        DurableLogStorage(data, cluster_id=2)
    except ClusterMismatchError as error:
        assert (error.path, error.stored_cluster_id, error.cluster_id) == (str(data), 1, 2)
        assert not isinstance(error, CorruptStateError)
        assert str(error) == f"the data directory {data} belongs to cluster 1, not cluster 2"
    else:
        raise AssertionError("another cluster's data directory was opened")
    assert _contents(data) == before
    DurableLogStorage(data, cluster_id=1).close()  # intact: its own cluster opens it


def test_pyraft_node_stops_with_one_line_naming_both_clusters(tmp_path):
    data = tmp_path / "m3"
    before = _directory_of_cluster_1(data)
    listen, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    result = run_cli("node", "--id", "3", "--listen", listen, "--http", http,
                     "--peers", f"3={listen}", "--data", str(data), "--cluster-id", "2",
                     timeout=60)
    assert result.returncode == EXIT_STORAGE, result.stderr
    assert "Traceback" not in result.stderr and "repair" not in result.stderr, result.stderr
    assert "damaged" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("pyraft node:")]
    assert lines == [
        f"pyraft node: member 3 stopped: the data directory {data} belongs to cluster 1, not "
        "cluster 2 (--cluster-id); start with --cluster-id 1 or another --data"
    ], result.stderr
    assert _contents(data) == before


def test_wal_repair_changes_nothing_in_another_clusters_log(tmp_path, capsys):
    data = tmp_path / "m3"
    before = _directory_of_cluster_1(data)
    code = pyraft_main(["wal", "repair", str(data / "wal"), "--cluster-id", "2", "--yes"])
    out = capsys.readouterr().out
    assert code == 1
    assert "belongs to cluster 1, not cluster 2" in out and "--cluster-id 1" in out, out
    assert "repaired" not in out, out
    assert _contents(data) == before


def test_a_directory_whose_log_a_snapshot_emptied_is_refused_too(tmp_path):
    """A snapshot at the last index empties the WAL (no segment, so no cluster id in any
    segment header) and the hard state and snapshot files record none: the directory's
    ``cluster`` file still tells (before it, cluster 2 opened it and would have taken it
    over with its first append)."""
    from pyraft.core import Configuration
    from raftcore.framing import encode_entries

    data = tmp_path / "m3"
    configuration = Configuration(frozenset({3}))
    storage = DurableLogStorage(data, configuration, cluster_id=1)
    storage.append(encode_entries(1, 1, [b"x"] * 10))
    storage.sync()
    storage.create_snapshot(10, b"", configuration)
    storage.close()
    assert not list((data / "wal").glob("*.wal"))
    before = _contents(data)
    try:
        DurableLogStorage(data, cluster_id=2)
    except ClusterMismatchError as error:
        assert (error.stored_cluster_id, error.cluster_id) == (1, 2)
    else:
        raise AssertionError("another cluster's data directory was opened")
    assert _contents(data) == before
    reopened = DurableLogStorage(data, cluster_id=1)
    assert reopened.first_index() == 11 and reopened.snapshot().meta.index == 10
    reopened.close()


def test_a_damaged_cluster_file_is_damage(tmp_path):
    data = tmp_path / "m3"
    DurableLogStorage(data, cluster_id=1).close()
    path = data / "cluster"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01  # in the cluster id: the checksum fails
    path.write_bytes(bytes(raw))
    try:
        DurableLogStorage(data, cluster_id=1)
    except CorruptStateError as error:
        assert error.path == str(path)
    else:
        raise AssertionError("a damaged cluster file was accepted")
