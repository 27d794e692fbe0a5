"""Entries committed per CPU second through a 3-member cluster of cores, no I/O.

An instant in-memory network: each Ready's messages are delivered at once, persistence is a
MemoryLogStorage append. 16-byte commands are proposed in batches of 100. Goal (issue 3): at
least 1,000,000 committed entries per CPU second. Run as a script for the figure and a profile:
    python benchmarks/test_bench_core.py [--profile] [--json] [--batches N] [--runs R]
``--json`` prints one JSON object (the median and every run) instead of the sentence: the
benchmark suite runs it so, once per build (issue 18: compiled vs ``PYRAFT_PURE_CORE=1``).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import deque

from pyraft.core import Configuration, MemoryLogStorage, RaftNode, RaftOptions, Role


class InstantCluster:
    def __init__(self, members: int = 3) -> None:
        configuration = Configuration(frozenset(range(1, members + 1)))
        self.storages = {m: MemoryLogStorage(configuration) for m in configuration.voters}
        self.nodes = {
            m: RaftNode(RaftOptions(id=m, inflight_messages_max=1024,
                                    append_bytes_max=4 << 20), self.storages[m],
                        random.Random(m))
            for m in configuration.voters
        }
        #: (node, its storage) in member order: the order the pump visits them
        self._members = [(self.nodes[m], self.storages[m]) for m in sorted(self.nodes)]
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
        return leader.log.committed - start


def test_core_commit_throughput(benchmark):
    cluster = InstantCluster()
    committed = benchmark(cluster.commit_batches, 20)
    assert committed == 20 * 100


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="committed entries per CPU second")
    parser.add_argument("--profile", action="store_true", help="cProfile one run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--batches", type=int, default=2000, help="batches of 100 per run")
    parser.add_argument("--runs", type=int, default=5, help="runs (the median is reported)")
    args = parser.parse_args(argv)
    if args.batches < 1 or args.runs < 1:
        parser.error("--batches and --runs must be >= 1")
    batches = args.batches
    cluster = InstantCluster()
    if args.profile:
        import cProfile
        import pstats

        cProfile.runctx("cluster.commit_batches(batches)", globals(), locals(), "/tmp/core.prof")
        pstats.Stats("/tmp/core.prof").sort_stats("tottime").print_stats(15)
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
                          "batches": batches, "batch_size": 100, "members": 3}))
        return
    print(f"committed entries per CPU second (3 members, 16 B, batches of 100): "
          f"median {median:,.0f} (runs: {', '.join(f'{r:,.0f}' for r in sorted(results))})")


if __name__ == "__main__":
    main()
