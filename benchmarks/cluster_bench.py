"""Cluster benchmarks: 3 member processes on this machine over TCP on 127.0.0.1.

    python benchmarks/cluster_bench.py [--dir DIR] [--sync always] [--runs 3] [--failovers 20]

1. committed writes/s of 16-byte commands with 256 writes in flight (measured inside the
   leader process, so the figure is the engine's, not a client protocol's);
2. commit latency p50/p99 with one write in flight;
3. failover: time from SIGKILL of the leader to the next committed write, over
   --failovers trials (the killed member is restarted from its data directory each time).
Durable by default (``--sync always``: every acknowledged write was fdatasynced on a majority).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time

from pyraft.testing.processes import leader, start_cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=None)
    parser.add_argument("--sync", default="always", choices=["always", "interval", "never"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--writes", type=int, default=20_000)
    parser.add_argument("--failovers", type=int, default=20)
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="clusterbench-", dir=args.dir)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, {platform.platform()}, "
          f"python {platform.python_version()}, sync={args.sync}, dir {base}")
    peers, members = start_cluster(base, 3, extra_args=["--sync", args.sync])
    try:
        current = leader(members)
        throughput, p50, p99 = [], [], []
        for _ in range(args.runs):
            result = current.call("bench", count=args.writes, inflight=256, size=16)
            throughput.append(result["writes_per_s"])
            single = current.call("bench", count=2000, inflight=1, size=16)
            p50.append(single["p50_ms"])
            p99.append(single["p99_ms"])
        print(f"256 in flight: committed writes/s median {statistics.median(throughput):,.0f} "
              f"(runs {', '.join(f'{v:,.0f}' for v in throughput)})")
        print(f"1 in flight: p50 {statistics.median(p50):.3f} ms, p99 "
              f"{statistics.median(p99):.3f} ms (medians of {args.runs} runs of 2,000 writes)")
        failovers = []
        for trial in range(args.failovers):
            current = leader(members)
            survivors = [m for m in members if m is not current]
            killed_at = time.perf_counter()
            current.kill()
            while True:
                try:
                    new = leader(survivors)
                    answer = new.call("replicate", data=f"failover{trial}", timeout=1)
                except (OSError, AssertionError):
                    continue
                if answer["ok"]:
                    break
            failovers.append(time.perf_counter() - killed_at)
            current.start()
            time.sleep(0.3)
        failovers.sort()
        print(f"failover (SIGKILL of the leader to the next committed write), "
              f"{len(failovers)} trials: median {statistics.median(failovers) * 1000:.0f} ms, "
              f"worst {failovers[-1] * 1000:.0f} ms")
    finally:
        for member in members:
            member.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
