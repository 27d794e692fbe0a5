"""Entries committed per CPU second through a 3-member cluster of cores, no I/O.

An instant in-memory network: each Ready's messages are delivered at once, persistence is a
MemoryLogStorage append. 16-byte commands are proposed in batches of 100. Goal (issue 3): at
least 1,000,000 committed entries per CPU second. Run as a script for the figure and a profile:
    python benchmarks/test_bench_core.py [--profile]
"""

from __future__ import annotations

import random
import sys
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
        self.inbox: deque = deque()
        self.nodes[1].campaign()
        self.pump()
        assert self.nodes[1].role is Role.LEADER

    def pump(self) -> None:
        busy = True
        while busy:
            busy = False
            while self.inbox:
                m = self.inbox.popleft()
                self.nodes[m.dst].step(m)
            for member, node in self.nodes.items():
                if not node.has_ready():
                    continue
                busy = True
                rd = node.ready()
                self.inbox.extend(rd.messages)
                storage = self.storages[member]
                if rd.hard_state is not None:
                    storage.set_hard_state(rd.hard_state)
                for batch in rd.entries:
                    storage.append(batch)
                self.inbox.extend(rd.persisted_messages)
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


def main() -> None:
    batches = 2000
    cluster = InstantCluster()
    if "--profile" in sys.argv:
        import cProfile
        import pstats

        cProfile.runctx("cluster.commit_batches(batches)", globals(), locals(), "/tmp/core.prof")
        pstats.Stats("/tmp/core.prof").sort_stats("tottime").print_stats(15)
        return
    results = []
    for _ in range(5):
        started = time.process_time()
        committed = cluster.commit_batches(batches)
        results.append(committed / (time.process_time() - started))
    results.sort()
    print(f"committed entries per CPU second (3 members, 16 B, batches of 100): "
          f"median {results[2]:,.0f} (runs: {', '.join(f'{r:,.0f}' for r in results)})")


if __name__ == "__main__":
    main()
