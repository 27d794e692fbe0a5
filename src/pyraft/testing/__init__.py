"""Test support shipped with pyraft, so users can run their own state machines in it.

- :mod:`pyraft.testing.sim`: the deterministic cluster simulator (``python -m
  pyraft.testing.sim --seeds A:B --nodes N --faults all``).
- :mod:`pyraft.testing.interaction`: the driver of the data-driven interaction tests
  (``tests/core/testdata/*.txt``: commands, ``----``, the expected rendering).
- :mod:`pyraft.testing.linearizability`: a linearizability checker for client histories on a
  key-value register model (``check_history``, ``KVModel``).
- :mod:`pyraft.testing.member`: one member as a process with a JSON-lines control port
  (``python -m pyraft.testing.member``), built from a ``ClusterConfig`` as users build theirs;
  :mod:`pyraft.testing.processes` starts such members (and ``pyraft node`` processes) on
  127.0.0.1 for the integration tests, the benchmarks and the playground.

These are tools: the product's packages (``core``, ``storage``, ``transport``, ``cluster``,
``config``) never import them (``tests/test__sourcecode.py``).
"""
