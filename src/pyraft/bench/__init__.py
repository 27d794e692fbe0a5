"""The benchmark suite: ``pyraft bench [all|kernels|cluster|peers|goals]``.

- :mod:`pyraft.bench.stats`: the result schema every system's figures share (percentiles,
  throughput over time, a bounded latency sample) and its validation;
- :mod:`pyraft.bench.load`: closed- and open-loop load drivers (used inside a leader process
  and by the HTTP load generator :mod:`pyraft.bench.loadgen`);
- :mod:`pyraft.bench.machine`: the machine measured, one raw fdatasync and one loopback round
  trip on it;
- :mod:`pyraft.bench.workloads`: pyraft's cluster workloads with member processes on
  127.0.0.1 (throughput, latency, peak, reads, failover, catch-up) and the kernel benchmarks;
- :mod:`pyraft.bench.report`: peer ratios, the goals of issue 7, the summary table, the JSON;
- :mod:`pyraft.bench.plots`: PNG plots (matplotlib, the ``bench`` extra);
- :mod:`pyraft.bench.cli`: the command.

Numbers are measured and reported, never asserted: the goals section says met, not met or
not measured, with the figures it used.
"""
