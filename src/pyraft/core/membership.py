"""Cluster membership: voters and learners, changed one member at a time (Raft thesis 4.1).

A configuration is immutable; ``add`` / ``remove`` / ``promote`` return a new one. Learners
receive the log but neither vote nor count in quorums: a new member is added as a learner,
catches up (warmup rounds), then is promoted to voter by a second single-member change.
Configuration entries take effect as soon as they are appended (thesis 4.1), so the log,
not the commit index, decides which configuration is in force.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from pyraft.core.messages import MembersInfo, SnapshotMeta
from pyraft.errors import ProposalDroppedError


@dataclass(frozen=True, slots=True)
class Configuration:
    voters: frozenset[int]
    learners: frozenset[int] = frozenset()
    #: where members are and what they say about themselves: ``(id, address, metadata)``
    #: with metadata a sorted tuple of (key, value) strings. Carried by the log so that every
    #: member learns every address with the configuration; the protocol itself ignores it.
    members_info: MembersInfo = ()

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
        return Configuration(self.voters, self.learners | {member}, self.members_info)

    def promote(self, member: int) -> Configuration:
        if member not in self.learners:
            raise ProposalDroppedError(f"member {member} is not a learner")
        return Configuration(self.voters | {member}, self.learners - {member}, self.members_info)

    def add_voter(self, member: int) -> Configuration:
        if member in self.voters:
            raise ProposalDroppedError(f"member {member} is already a voter")
        return Configuration(self.voters | {member}, self.learners - {member}, self.members_info)

    def remove(self, member: int) -> Configuration:
        if member not in self.members:
            raise ProposalDroppedError(f"member {member} is not in the configuration")
        if self.voters == {member}:
            raise ProposalDroppedError("cannot remove the last voter")
        info = tuple(entry for entry in self.members_info if entry[0] != member)
        return Configuration(self.voters - {member}, self.learners - {member}, info)

    def with_info(self, member: int, address: str,
                  metadata: Mapping[str, str] | None = None) -> Configuration:
        """The same configuration, recording where ``member`` is (and its metadata)."""
        pairs = tuple(sorted((str(k), str(v)) for k, v in (metadata or {}).items()))
        info = tuple(entry for entry in self.members_info if entry[0] != member)
        info = tuple(sorted(info + ((member, address, pairs),)))
        return Configuration(self.voters, self.learners, info)

    def address_of(self, member: int) -> str | None:
        for entry in self.members_info:
            if entry[0] == member:
                return entry[1]
        return None

    def metadata_of(self, member: int) -> dict[str, str]:
        for entry in self.members_info:
            if entry[0] == member:
                return dict(entry[2])
        return {}

    def encode(self) -> bytes:
        data: dict[str, Any] = {"v": sorted(self.voters), "l": sorted(self.learners)}
        if self.members_info:
            data["m"] = [[m, a, dict(md)] for m, a, md in self.members_info]
        packed: bytes = msgpack.packb(data)
        return packed

    @classmethod
    def decode(cls, payload: bytes | memoryview) -> Configuration:
        data = msgpack.unpackb(bytes(payload))
        info = tuple(
            sorted((int(m), str(a), tuple(sorted(dict(md).items())))
                   for m, a, md in data.get("m", ()))
        )
        return cls(frozenset(data["v"]), frozenset(data.get("l", ())), info)

    @classmethod
    def from_snapshot(cls, meta: SnapshotMeta) -> Configuration:
        """The configuration a ``SnapshotMeta`` records."""
        return cls(frozenset(meta.voters), frozenset(meta.learners), tuple(meta.members_info))

    def snapshot_fields(self) -> dict[str, Any]:
        """Keyword arguments of ``SnapshotMeta`` that record this configuration."""
        return {
            "voters": tuple(sorted(self.voters)),
            "learners": tuple(sorted(self.learners)),
            "members_info": self.members_info,
        }

    def differs_by_at_most_one(self, other: Configuration) -> bool:
        """True when ``other`` is reachable by one single-member change (thesis 4.1)."""
        voters = self.voters ^ other.voters
        return len(voters) <= 1


def majority_index(values: list[int]) -> int:
    """The largest value that at least a majority of ``values`` reach (0 for an empty list)."""
    if not values:
        return 0
    # the (len // 2)-th largest, read from the ascending order (no keyword call per commit)
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]
