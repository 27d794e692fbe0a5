"""The pure Raft core: no I/O, no clock, no asyncio, no global randomness.

Drive a :class:`RaftNode` with ``tick()`` and ``step(message)``; collect a :class:`Ready`
with ``ready()``; persist, send and apply it; acknowledge it with ``advance(ready)``.
"""

from pyraft.core.membership import Configuration
from pyraft.core.messages import (
    HardState,
    LeadershipLossReason,
    LeadershipLost,
    Message,
    MessageType,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotChunk,
    SnapshotMeta,
    SoftState,
)
from pyraft.core.raft import RaftNode, RaftOptions
from pyraft.core.storage import LogStorage, MemoryLogStorage

__all__ = [
    "Configuration",
    "HardState",
    "LeadershipLossReason",
    "LeadershipLost",
    "LogStorage",
    "MemoryLogStorage",
    "Message",
    "MessageType",
    "RaftNode",
    "RaftOptions",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
    "SnapshotChunk",
    "SnapshotMeta",
    "SoftState",
]
