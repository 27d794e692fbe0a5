"""The asyncio runtime and public API: ``RaftCluster``."""

from pyraft.cluster.runtime import (
    ClusterStoppedError,
    CommandLostError,
    LeaderChange,
    LeadershipToken,
    LeaseStatus,
    MemberStatus,
    RaftCluster,
)

__all__ = [
    "ClusterStoppedError",
    "CommandLostError",
    "LeaderChange",
    "LeadershipToken",
    "LeaseStatus",
    "MemberStatus",
    "RaftCluster",
]
