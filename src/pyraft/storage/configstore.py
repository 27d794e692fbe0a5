"""Cluster membership as the runtime needs it: who the members are and where to reach them.

The core knows members only by id (``pyraft.core.membership.Configuration``). The runtime
also needs each member's address and metadata, and it must remember two configurations
across restarts (single-member changes, Raft thesis 4.1):

- the *active* one: the configuration in force, reflecting the configuration entry at
  ``index`` in the log;
- the *proposed* one, if any: a single-member change appended but not yet applied. At most
  one change is in flight at a time; ``clear_proposed`` drops it once it is applied (the
  runtime saves it as active first) or truncated away.

``save_active`` and ``save_proposed`` validate what they are given and raise ``ConfigError``
naming the offending field: ids positive, addresses ``host:port`` with a port in 1..65535
(IPv6 hosts in brackets), distinct addresses, string metadata, and a ``MemberInfo`` for every
voter and learner. Members outside the configuration may be listed (addresses kept for
members being removed, for example).

``FileConfigurationStore`` keeps each configuration in its own checked file (see
``pyraft.storage.files``) replaced atomically. Promoting the proposed configuration takes
two steps (``save_active`` then ``clear_proposed``); a crash in between leaves a proposed
configuration whose ``index`` is not above the active one, which the runtime treats as
applied.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import msgpack

from pyraft.config import parse_address
from pyraft.core.membership import Configuration
from pyraft.errors import ConfigError, CorruptStateError
from pyraft.storage.files import (
    CHECKED_PAYLOAD_BYTES_MAX,
    atomic_write,
    ensure_directory,
    fsync_directory,
    pack_checked,
    read_checked,
    remove_temp_files,
    translate_os_errors,
)

__all__ = [
    "ACTIVE_FILE",
    "PROPOSED_FILE",
    "ClusterMembers",
    "ConfigurationStore",
    "FileConfigurationStore",
    "MemberInfo",
    "MemoryConfigurationStore",
    "validate_address",
    "validate_cluster_members",
]

#: File names inside a ``FileConfigurationStore`` directory.
ACTIVE_FILE = "config-active"
PROPOSED_FILE = "config-proposed"
_KIND_ACTIVE = b"CFGA"
_KIND_PROPOSED = b"CFGP"
_RECORD_FIELDS = frozenset({"index", "voters", "learners", "members"})


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One member: its id (> 0), its ``host:port`` address, free-form string metadata."""

    id: int
    address: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClusterMembers:
    """A configuration with the members' details.

    ``members`` maps each id to its ``MemberInfo`` (``members[i].id == i``) and covers every
    voter and learner of ``configuration``; ``index`` is the log index of the configuration
    entry this reflects (0 before any entry, e.g. the initial configuration of a new cluster).
    """

    members: dict[int, MemberInfo]
    configuration: Configuration
    index: int


@runtime_checkable
class ConfigurationStore(Protocol):
    def load_active(self) -> ClusterMembers | None:
        """The configuration in force, or None when none was ever saved."""
        ...

    def save_active(self, members: ClusterMembers) -> None:
        """Validate and store the configuration in force; durable when this returns."""
        ...

    def load_proposed(self) -> ClusterMembers | None:
        """The configuration change in flight, or None."""
        ...

    def save_proposed(self, members: ClusterMembers) -> None:
        """Validate and store the configuration change in flight; durable when this returns."""
        ...

    def clear_proposed(self) -> None:
        """Forget the configuration change in flight (no-op without one); durable."""
        ...


# -- validation -----------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    """An integer (not a bool) that fits the 64 bits the stored format gives it."""
    return isinstance(value, int) and not isinstance(value, bool) and -(1 << 63) <= value < 1 << 64


def validate_address(field_name: str, address: object) -> None:
    """Raise ``ConfigError(field_name, ...)`` unless ``address`` is a member address the
    transports accept: ``host:port`` as ``pyraft.config.parse_address`` (the one parser of
    member addresses) reads it, port 1..65535, an IPv6 host in brackets (``[::1]:7000``)."""
    try:
        parse_address(address)
    except ValueError as error:
        raise ConfigError(field_name, str(error)) from None


def validate_cluster_members(members: ClusterMembers) -> None:
    """Raise ``ConfigError`` naming the first invalid field of ``members``."""
    if not isinstance(members, ClusterMembers):
        raise ConfigError("members", f"expected ClusterMembers, not {type(members).__name__}")
    if not _is_int(members.index) or members.index < 0:
        raise ConfigError("index", f"must be an integer in [0, 2**64), not {members.index!r}")
    if not isinstance(members.configuration, Configuration):
        raise ConfigError("configuration", "expected a Configuration")
    if not isinstance(members.members, dict):
        raise ConfigError("members", "expected a dict of member id to MemberInfo")
    addresses: dict[str, int] = {}
    for key, info in members.members.items():
        where = f"members[{key!r}]"
        if not _is_int(key) or key <= 0:
            raise ConfigError(where, "member ids must be positive integers below 2**64")
        if not isinstance(info, MemberInfo):
            raise ConfigError(where, f"expected MemberInfo, not {type(info).__name__}")
        if not _is_int(info.id) or info.id <= 0:
            raise ConfigError(f"{where}.id", f"must be a positive integer, not {info.id!r}")
        if info.id != key:
            raise ConfigError(f"{where}.id", f"is {info.id} under key {key}")
        validate_address(f"{where}.address", info.address)
        if info.address in addresses:
            raise ConfigError(
                f"{where}.address",
                f"{info.address!r} is also the address of member {addresses[info.address]}",
            )
        addresses[info.address] = key
        if not isinstance(info.metadata, dict):
            raise ConfigError(f"{where}.metadata", "expected a dict of strings")
        for name, value in info.metadata.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise ConfigError(
                    f"{where}.metadata", f"keys and values must be strings: {name!r}: {value!r}"
                )
    for role, ids in (
        ("voters", members.configuration.voters),
        ("learners", members.configuration.learners),
    ):
        missing = sorted(ids - members.members.keys())
        if missing:
            raise ConfigError(f"configuration.{role}", f"no MemberInfo for member(s) {missing}")


def _copy(members: ClusterMembers) -> ClusterMembers:
    """A copy sharing nothing mutable with ``members``."""
    return ClusterMembers(
        {
            key: MemberInfo(info.id, info.address, dict(info.metadata))
            for key, info in members.members.items()
        },
        members.configuration,
        members.index,
    )


# -- in memory --------------------------------------------------------------------------------


class MemoryConfigurationStore:
    """Configurations kept in memory; saved and loaded values are copies."""

    def __init__(self) -> None:
        self._active: ClusterMembers | None = None
        self._proposed: ClusterMembers | None = None

    def load_active(self) -> ClusterMembers | None:
        return None if self._active is None else _copy(self._active)

    def save_active(self, members: ClusterMembers) -> None:
        validate_cluster_members(members)
        self._active = _copy(members)

    def load_proposed(self) -> ClusterMembers | None:
        return None if self._proposed is None else _copy(self._proposed)

    def save_proposed(self, members: ClusterMembers) -> None:
        validate_cluster_members(members)
        self._proposed = _copy(members)

    def clear_proposed(self) -> None:
        self._proposed = None


# -- in files ---------------------------------------------------------------------------------


def _encode(members: ClusterMembers) -> bytes:
    record = {
        "index": members.index,
        "voters": sorted(members.configuration.voters),
        "learners": sorted(members.configuration.learners),
        "members": [
            [info.id, info.address, dict(sorted(info.metadata.items()))]
            for _, info in sorted(members.members.items())
        ],
    }
    payload = msgpack.packb(record)
    if len(payload) > CHECKED_PAYLOAD_BYTES_MAX:
        raise ConfigError(
            "members",
            f"encodes to {len(payload)} bytes, more than {CHECKED_PAYLOAD_BYTES_MAX}",
        )
    return payload


def _decode(path: str, payload: bytes) -> ClusterMembers:
    try:
        record = msgpack.unpackb(payload)
    except Exception as error:  # msgpack raises several unrelated types
        raise CorruptStateError(f"undecodable configuration ({error})", path) from error
    try:
        if not isinstance(record, dict) or set(record) != _RECORD_FIELDS:
            raise ValueError("unexpected fields")
        rows = record["members"]
        if not isinstance(rows, list) or not all(
            isinstance(row, list) and len(row) == 3 for row in rows
        ):
            raise ValueError("members is not a list of [id, address, metadata]")
        infos = {}
        for member_id, address, metadata in rows:
            if not _is_int(member_id) or member_id in infos:
                raise ValueError(f"member id {member_id!r} is invalid or repeated")
            infos[member_id] = MemberInfo(member_id, address, metadata)
        voters, learners = record["voters"], record["learners"]
        if not isinstance(voters, list) or not isinstance(learners, list):
            raise ValueError("voters and learners must be lists")
        if not all(_is_int(m) for m in voters + learners):
            raise ValueError("voters and learners must be integers")
        configuration = Configuration(frozenset(voters), frozenset(learners))
        members = ClusterMembers(infos, configuration, record["index"])
        validate_cluster_members(members)
    except (ValueError, TypeError) as error:  # ConfigError is a ValueError
        raise CorruptStateError(f"invalid configuration ({error})", path) from error
    return members


class FileConfigurationStore:
    """Configurations kept in ``<directory>/config-active`` and ``<directory>/config-proposed``,
    each a checked file replaced atomically. Opening creates the directory if needed and
    removes temporary files a crash left behind."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        #: Absolute path of the store's directory.
        self.directory = ensure_directory(directory)
        #: Absolute paths of the two files.
        self.active_path = os.path.join(self.directory, ACTIVE_FILE)
        self.proposed_path = os.path.join(self.directory, PROPOSED_FILE)
        remove_temp_files(self.directory, ACTIVE_FILE + ".")
        remove_temp_files(self.directory, PROPOSED_FILE + ".")

    def _load(self, path: str, kind: bytes) -> ClusterMembers | None:
        payload = read_checked(path, kind)
        return None if payload is None else _decode(path, payload)

    def load_active(self) -> ClusterMembers | None:
        return self._load(self.active_path, _KIND_ACTIVE)

    def save_active(self, members: ClusterMembers) -> None:
        validate_cluster_members(members)
        atomic_write(self.active_path, pack_checked(_KIND_ACTIVE, _encode(members)))

    def load_proposed(self) -> ClusterMembers | None:
        return self._load(self.proposed_path, _KIND_PROPOSED)

    def save_proposed(self, members: ClusterMembers) -> None:
        validate_cluster_members(members)
        atomic_write(self.proposed_path, pack_checked(_KIND_PROPOSED, _encode(members)))

    def clear_proposed(self) -> None:
        with translate_os_errors("cannot remove", self.proposed_path):
            try:
                os.unlink(self.proposed_path)
            except FileNotFoundError:
                return
        fsync_directory(self.directory)
