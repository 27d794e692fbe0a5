"""The asyncio runtime and public API: ``RaftCluster``."""

from pyraft.cluster.runtime import (
    ClusterEvent,
    ClusterStoppedError,
    ClusterTimeoutError,
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
    "CommandLostError",
    "CommandOutcomeUnknownError",
    "LeaderChange",
    "LeadershipToken",
    "LeaseStatus",
    "MemberStatus",
    "RaftCluster",
]
