"""Cluster benchmarks (3 member processes on 127.0.0.1): now ``pyraft bench cluster``.

    python benchmarks/cluster_bench.py [--dir DIR] [--out DIR] [--quick] [--failovers 20] ...

takes the options of ``pyraft bench`` (see ``pyraft bench --help``) and runs its ``cluster``
section: throughput, open-loop latency, batched peak, reads, failover and catch-up, with
report.json and plots (``pyraft.bench``).
"""

from __future__ import annotations

import sys

from pyraft.bench.cli import main

if __name__ == "__main__":
    sys.exit(main(["cluster", *sys.argv[1:]]))
