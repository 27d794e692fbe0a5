"""Cluster membership: voters and learners, changed one member at a time (Raft thesis 4.1).

A configuration is immutable; ``add`` / ``remove`` / ``promote`` return a new one. Learners
receive the log but neither vote nor count in quorums: a new member is added as a learner,
catches up (warmup rounds), then is promoted to voter by a second single-member change.
Configuration entries take effect as soon as they are appended (thesis 4.1), so the log,
not the commit index, decides which configuration is in force.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from pyraft.errors import ProposalDroppedError


@dataclass(frozen=True, slots=True)
class Configuration:
    voters: frozenset[int]
    learners: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if self.voters & self.learners:
            raise ValueError("a member cannot be both voter and learner")
        if any(m <= 0 for m in self.voters | self.learners):
            raise ValueError("member ids must be positive integers")

    @property
    def members(self) -> frozenset[int]:
        return self.voters | self.learners

    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def add_learner(self, member: int) -> Configuration:
        if member in self.members:
            raise ProposalDroppedError(f"member {member} is already in the configuration")
        return Configuration(self.voters, self.learners | {member})

    def promote(self, member: int) -> Configuration:
        if member not in self.learners:
            raise ProposalDroppedError(f"member {member} is not a learner")
        return Configuration(self.voters | {member}, self.learners - {member})

    def add_voter(self, member: int) -> Configuration:
        if member in self.voters:
            raise ProposalDroppedError(f"member {member} is already a voter")
        return Configuration(self.voters | {member}, self.learners - {member})

    def remove(self, member: int) -> Configuration:
        if member not in self.members:
            raise ProposalDroppedError(f"member {member} is not in the configuration")
        if self.voters == {member}:
            raise ProposalDroppedError("cannot remove the last voter")
        return Configuration(self.voters - {member}, self.learners - {member})

    def encode(self) -> bytes:
        return msgpack.packb({"v": sorted(self.voters), "l": sorted(self.learners)})

    @classmethod
    def decode(cls, payload) -> Configuration:
        data = msgpack.unpackb(bytes(payload))
        return cls(frozenset(data["v"]), frozenset(data.get("l", ())))

    def differs_by_at_most_one(self, other: Configuration) -> bool:
        """True when ``other`` is reachable by one single-member change (thesis 4.1)."""
        voters = self.voters ^ other.voters
        return len(voters) <= 1


def majority_index(values: list[int]) -> int:
    """The largest value that at least a majority of ``values`` reach (0 for an empty list)."""
    if not values:
        return 0
    ordered = sorted(values, reverse=True)
    return ordered[len(ordered) // 2]
