"""raftcore: the compiled kernels of pyraft.

Byte-level work of the Raft data path: CRC32C, log-entry and transport framing, index tables,
phi-accrual statistics, and the clock the runtime times its work with. Nothing here knows about
Raft roles or asyncio.
"""

from raftcore._select import USE_TWINS
from raftcore._version import __version__
from raftcore.crc import crc32c, crc32c_implementation
from raftcore.errors import (
    CorruptFrameError,
    CorruptRecordError,
    FramingError,
    IndexLookupError,
    OversizedFrameError,
    OversizedRecordError,
    RaftcoreError,
    TruncatedRecordError,
    WalClusterMismatchError,
    WalCorruptionError,
)

__all__ = [
    "__version__",
    "USE_TWINS",
    "crc32c",
    "crc32c_implementation",
    "CorruptFrameError",
    "CorruptRecordError",
    "FramingError",
    "IndexLookupError",
    "OversizedFrameError",
    "OversizedRecordError",
    "RaftcoreError",
    "TruncatedRecordError",
    "WalClusterMismatchError",
    "WalCorruptionError",
]
