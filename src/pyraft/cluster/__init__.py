"""The asyncio runtime and public API: ``RaftCluster``."""

from pyraft.cluster.runtime import (
    ClusterEvent,
    ClusterStoppedError,
    ClusterTimeoutError,
    CommandInterruptedError,
    CommandLostError,
    CommandOutcomeUnknownError,
    LeaderChange,
    LeadershipToken,
    LeaseStatus,
    MemberStatus,
    RaftCluster,
)

__all__ = [
    "ClusterEvent",
    "ClusterStoppedError",
    "ClusterTimeoutError",
    "CommandInterruptedError",
    "CommandLostError",
    "CommandOutcomeUnknownError",
    "LeaderChange",
    "LeadershipToken",
    "LeaseStatus",
    "MemberStatus",
    "RaftCluster",
]
