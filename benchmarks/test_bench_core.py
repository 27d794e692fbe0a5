"""The core alone, as a pytest benchmark and as a script: the workload is
``pyraft.bench.core`` (part of the package, so that an installed build measures it too);
``python benchmarks/test_bench_core.py [--profile] [--json] [--batches N] [--runs R]
[--no-compact]`` runs its command line.
"""

from __future__ import annotations

import json

from pyraft.bench.core import InstantCluster, main
from pyraft.config import SNAPSHOT_ENTRIES_DEFAULT


def test_core_commit_throughput(benchmark):
    cluster = InstantCluster()
    committed = benchmark(cluster.commit_batches, 20)
    assert committed == 20 * 100


def test_members_release_their_logs_as_they_apply():
    cluster = InstantCluster(snapshot_entries=500)
    assert cluster.commit_batches(23) == 2300
    for node, storage in cluster._members:
        # a snapshot at the applied index each 500 entries: the log starts after the last one
        # (the leader's no-op is entry 1; the last batch is applied at the next Ready)
        assert storage.last_index() == 2301 and node.log.applied >= 2201
        last = cluster.snapshot_index[node.id]
        assert node.log.applied - 500 < last and storage.first_index() == last + 1
        assert storage.snapshot().meta.index == last
    kept = InstantCluster(snapshot_entries=None)
    kept.commit_batches(23)
    assert all(storage.first_index() == 1 for _, storage in kept._members)


def test_the_command_line_says_which_workload_ran(capsys):
    for flags, snapshot_entries in (([], SNAPSHOT_ENTRIES_DEFAULT), (["--no-compact"], None)):
        main(["--json", "--batches", "100", "--runs", "1", *flags])
        figure = json.loads(capsys.readouterr().out)
        assert figure["snapshot_entries"] == snapshot_entries
        assert figure["median_entries_per_cpu_s"] > 0 and figure["batches"] == 100


if __name__ == "__main__":
    main()
