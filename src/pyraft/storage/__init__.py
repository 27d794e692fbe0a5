"""Durable storage: the write-ahead log (``raftcore.wal``) as the core's log, hard state,
configuration and snapshot stores, and the state-machine base classes.

Submodules: ``files`` (atomic file replacement), ``hardstate``, ``configstore``,
``snapshots``, ``state_machine``, ``interpreter``, ``log`` (the durable LogStorage).
"""
