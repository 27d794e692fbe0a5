"""Test support shipped with pyraft, so users can run their own state machines in it.

- :mod:`pyraft.testing.sim`: the deterministic cluster simulator (``python -m
  pyraft.testing.sim --seeds A:B --nodes N --faults all``).
- :mod:`pyraft.testing.interaction`: the driver of the data-driven interaction tests
  (``tests/core/testdata/*.txt``: commands, ``----``, the expected rendering).
- :mod:`pyraft.testing.linearizability`: a linearizability checker for client histories on a
  key-value register model (``check_history``, ``KVModel``).
"""
