"""Peer systems measured in the same run as pyraft, with the same load shapes (issue 7).

- :mod:`pyraft.bench.peers.pysyncobj_peer`: PySyncObj, 3 processes, load generated in the
  leader through its own replicated-object API (memory or journal mode, never fsynced);
- :mod:`pyraft.bench.peers.etcd_peer`: a 3-member etcd cluster (Debian's ``etcd-server``),
  load over its v3 JSON gateway from a separate process (etcd always fsyncs), plus
  ``etcdctl check perf`` as an extra figure;
- :mod:`pyraft.bench.peers.loadgen`: load-shape validation and the callback twin of
  :func:`pyraft.bench.load.run_load`.

Each driver offers ``available() -> str | None`` (None when usable, else the reason),
``run(workdir, *, size, inflight, rate, duration_s, ...) -> dict`` and ``peak(...) -> dict``.
Results follow :mod:`pyraft.bench.stats`; a peer that is missing or cannot start gives
``{"system": ..., "skipped": reason}``, never made-up figures. Every process a driver starts
is stopped by its pid before the call returns.
"""
