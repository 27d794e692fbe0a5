"""The write-ahead log (compiled kernel ``raftcore._wal``; it has no pure-Python twin).

See ``raftcore._wal`` for the segment format, the sync policies and recovery.
"""

from raftcore._select import _MISSING

try:
    from raftcore._wal import (
        RELEASED_SUFFIX,
        SEGMENT_HEADER_BYTES,
        SEGMENT_MAGIC,
        SEGMENT_VERSION,
        SYNC_POLICIES,
        RecoveryReport,
        WriteAheadLog,
    )
except ImportError as exc:  # loud, with build instructions: there is no slow fallback
    raise ImportError(_MISSING.format(name="wal", exc=exc)) from exc

#: always "compiled": the WAL has no pure-Python twin
IMPLEMENTATION: str = "compiled"

__all__ = [
    "IMPLEMENTATION",
    "RELEASED_SUFFIX",
    "SEGMENT_HEADER_BYTES",
    "SEGMENT_MAGIC",
    "SEGMENT_VERSION",
    "SYNC_POLICIES",
    "RecoveryReport",
    "WriteAheadLog",
]
