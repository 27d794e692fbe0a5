"""Index tables: log index -> (segment, offset, term), for the WAL and the in-memory log.

``IndexTable`` covers a contiguous range of log indexes, remembers the term of the entry
just before it (the last one a snapshot covers), and answers the term searches of Raft's
replication: ``find_conflict`` (the follower's AppendEntries check), and
``last_index_at_or_below_term`` / ``first_index_of_term`` (fast log backtracking).

Compiled kernel ``raftcore._index``, or its pure-Python twin when ``PYRAFT_NO_EXTENSIONS=1``.
"""

from raftcore._select import load

_impl = load("index")

IndexTable = _impl.IndexTable
IMPLEMENTATION: str = _impl.IMPLEMENTATION

__all__ = ["IndexTable", "IMPLEMENTATION"]
