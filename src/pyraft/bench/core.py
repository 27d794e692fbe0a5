"""The core alone: entries committed per CPU second through a 3-member cluster of cores, no
I/O (issue 18's "core alone" goal compares the two builds on it).

An instant in-memory network: each Ready's messages are delivered at once, persistence is a
MemoryLogStorage append. 16-byte commands are proposed in batches of 100. Goal (issue 3): at
least 1,000,000 committed entries per CPU second. Run for the figure and a profile:
    python -m pyraft.bench.core [--profile] [--json] [--batches N] [--runs R] [--no-compact]
(``python benchmarks/test_bench_core.py`` in a source checkout runs the same). ``--json``
prints one JSON object (the median and every run) instead of the sentence: the benchmark
suite runs it so, once per build (compiled vs ``PYRAFT_PURE_CORE=1``); it is part of the
package so that an installed build measures it too.

Each member releases its log as a member of a cluster does by default: an (empty) snapshot at
its applied index every ``SNAPSHOT_ENTRIES_DEFAULT`` (8,192) applied entries, the
consensus-only default (``ClusterConfig.consensus_snapshot_entries``). ``--no-compact`` keeps
every entry instead: the log then grows by about 5 MB a member per 1,000 batches, and the
kernel's zeroing of the fresh pages it takes (15-23% of the compiled build's CPU time on the
2-vCPU VM of 2026-12-06) is measured with the core.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import deque

from pyraft.config import SNAPSHOT_ENTRIES_DEFAULT
from pyraft.core import Configuration, MemoryLogStorage, RaftNode, RaftOptions, Role


class InstantCluster:
    def __init__(self, members: int = 3,
                 snapshot_entries: int | None = SNAPSHOT_ENTRIES_DEFAULT) -> None:
        configuration = Configuration(frozenset(range(1, members + 1)))
        self.configuration = configuration
        #: applied entries between two snapshots of each member (None: never compact)
        self.snapshot_entries = snapshot_entries
        self.storages = {m: MemoryLogStorage(configuration) for m in configuration.voters}
        self.nodes = {
            m: RaftNode(RaftOptions(id=m, inflight_messages_max=1024,
                                    append_bytes_max=4 << 20), self.storages[m],
                        random.Random(m))
            for m in configuration.voters
        }
        #: (node, its storage) in member order: the order the pump visits them
        self._members = [(self.nodes[m], self.storages[m]) for m in sorted(self.nodes)]
        #: each member's index of its latest snapshot
        self.snapshot_index = dict.fromkeys(self.nodes, 0)
        self.inbox: deque = deque()
        self.nodes[1].campaign()
        self.pump()
        assert self.nodes[1].role is Role.LEADER

    def pump(self) -> None:
        """Deliver every message, persist every Ready into its member's storage and advance
        it, until no member has work. Locals instead of attribute and dict lookups per
        message: the harness is the same Python in both builds, so its cost bounds the ratio."""
        nodes = self.nodes
        inbox = self.inbox
        members = self._members
        busy = True
        while busy:
            busy = False
            while inbox:
                m = inbox.popleft()
                nodes[m.dst].step(m)
            for node, storage in members:
                if not node.has_ready():
                    continue
                busy = True
                rd = node.ready()
                inbox.extend(rd.messages)
                if rd.hard_state is not None:
                    storage.set_hard_state(rd.hard_state)
                for batch in rd.entries:
                    storage.append(batch)
                inbox.extend(rd.persisted_messages)
                node.advance(rd)

    def commit_batches(self, batches: int, batch_size: int = 100) -> int:
        leader = self.nodes[1]
        payload = [b"0123456789abcdef"] * batch_size
        start = leader.log.committed
        for _ in range(batches):
            leader.propose(payload)
            self.pump()
            if self.snapshot_entries is not None:
                self.compact()
        return leader.log.committed - start

    def compact(self) -> None:
        """Each member whose applied index is ``snapshot_entries`` past its last snapshot
        takes one there, releasing its log up to it (a consensus-only member's snapshot holds
        no data); nothing when it keeps every entry (``snapshot_entries`` None)."""
        every = self.snapshot_entries
        if every is None:
            return
        for node, storage in self._members:
            applied = node.log.applied
            if applied - self.snapshot_index[node.id] >= every:
                storage.create_snapshot(applied, b"", self.configuration)
                self.snapshot_index[node.id] = applied


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="committed entries per CPU second")
    parser.add_argument("--profile", action="store_true", help="cProfile one run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--batches", type=int, default=2000, help="batches of 100 per run")
    parser.add_argument("--runs", type=int, default=5, help="runs (the median is reported)")
    parser.add_argument("--no-compact", action="store_true",
                        help="keep every entry (default: each member snapshots and releases "
                             f"its log every {SNAPSHOT_ENTRIES_DEFAULT} applied entries)")
    args = parser.parse_args(argv)
    if args.batches < 1 or args.runs < 1:
        parser.error("--batches and --runs must be >= 1")
    batches = args.batches
    snapshot_entries = None if args.no_compact else SNAPSHOT_ENTRIES_DEFAULT
    cluster = InstantCluster(snapshot_entries=snapshot_entries)
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(cluster.commit_batches, batches)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        return
    cluster.commit_batches(max(1, batches // 10))  # warm-up, not counted
    results = []
    for _ in range(args.runs):
        started = time.process_time()
        committed = cluster.commit_batches(batches)
        results.append(committed / max(time.process_time() - started, 1e-9))
    median = statistics.median(results)
    if args.json:
        print(json.dumps({"median_entries_per_cpu_s": median, "runs": results,
                          "batches": batches, "batch_size": 100, "members": 3,
                          "snapshot_entries": snapshot_entries}))
        return
    compaction = (f"a snapshot every {snapshot_entries} entries" if snapshot_entries
                  else "no compaction")
    print(f"committed entries per CPU second (3 members, 16 B, batches of 100, {compaction}): "
          f"median {median:,.0f} (runs: {', '.join(f'{r:,.0f}' for r in sorted(results))})")


if __name__ == "__main__":
    main()
