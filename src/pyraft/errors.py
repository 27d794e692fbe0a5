"""Typed errors of pyraft, and the invariant check.

Two kinds of failure (see STYLE.md):
- operating errors (bad input, a peer gone, not the leader, a limit reached) are the typed
  exceptions below, each also subclassing the matching builtin;
- broken invariants are programmer errors: ``invariant(condition, message)`` raises
  ``InvariantError`` (unlike ``assert`` it survives ``python -O``), and the runtime stops the
  node rather than continue with corrupt state.
"""

from __future__ import annotations

__all__ = [
    "PyraftError",
    "InvariantError",
    "invariant",
    "ConfigError",
    "MembershipMismatchError",
    "NotLeaderError",
    "ProposalDroppedError",
    "ProposalTooLargeError",
    "LogCompactedError",
    "LogUnavailableError",
    "SnapshotUnavailableError",
    "StorageError",
    "StorageFullError",
    "CorruptStateError",
    "ClusterMismatchError",
]


class PyraftError(Exception):
    """Base class of every pyraft error."""


class InvariantError(PyraftError, AssertionError):
    """An internal invariant does not hold: a bug, never an operating condition."""


def invariant(condition: object, message: str) -> None:
    """Raise :class:`InvariantError` with ``message`` when ``condition`` is false."""
    if not condition:
        raise InvariantError(message)


class ConfigError(PyraftError, ValueError):
    """A configuration value is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class MembershipMismatchError(ConfigError):
    """The members given at start contradict the membership this member's storage holds
    (a restart with other peers than it was started with): refused before it speaks."""

    def __init__(self, member: int, given: str, stored: str) -> None:
        super().__init__("peers", f"member {member}: the peers given ({given}) contradict the "
                                  f"membership stored in its storage ({stored}); start it "
                                  "without peers to use the stored membership, or with empty "
                                  "storage to make a new member")
        self.member, self.given, self.stored = member, given, stored

    def __reduce__(self):
        return (type(self), (self.member, self.given, self.stored))


class NotLeaderError(PyraftError, RuntimeError):
    """This member is not the leader. ``leader_id`` / ``leader_address`` (its Raft address)
    say who is, if known; ``leader_endpoint`` is where the leader serves the application
    (its member metadata's ``"http"`` key, as ``pyraft node`` publishes it), if it has one:
    the address a client should retry at."""

    def __init__(self, leader_id: int | None = None, leader_address: str | None = None,
                 leader_endpoint: str | None = None) -> None:
        where = f"member {leader_id}" if leader_id is not None else "unknown"
        if leader_address:
            where += f" at {leader_address}"
        if leader_endpoint:
            where += f", serving clients at {leader_endpoint}"
        super().__init__(f"not the leader; the leader is {where}")
        self.leader_id = leader_id
        self.leader_address = leader_address
        self.leader_endpoint = leader_endpoint

    def __reduce__(self) -> tuple[type[NotLeaderError], tuple[int | None, str | None, str | None]]:
        return (type(self), (self.leader_id, self.leader_address, self.leader_endpoint))


class ProposalDroppedError(PyraftError, RuntimeError):
    """A proposal was refused: a limit was reached, or a change is already in flight."""


class ProposalTooLargeError(ProposalDroppedError, ValueError):
    """A command is larger than ``append_bytes_max``: it can never be replicated."""


class LogCompactedError(PyraftError, LookupError):
    """The requested log entries were replaced by a snapshot."""


class LogUnavailableError(PyraftError, LookupError):
    """The requested log entries do not exist (yet)."""


class SnapshotUnavailableError(PyraftError, LookupError):
    """The snapshot to send is being prepared (a disk state machine's store is exported on
    another thread): the leader tries again later (etcd's ErrSnapshotTemporarilyUnavailable)."""


class StorageError(PyraftError, OSError):
    """Durable storage failed (an I/O error). The node stops accepting writes and says why;
    nothing already acknowledged is lost. ``path`` names the file when known."""

    def __init__(self, message: str, path: str | None = None, errno: int | None = None) -> None:
        super().__init__(f"{message}" + (f" ({path})" if path else ""))
        self.path = path
        self.errno = errno
        self.reason = message

    def __reduce__(self):
        return (type(self), (self.reason, self.path, self.errno))


class StorageFullError(StorageError):
    """The disk is full (ENOSPC). Writes resume once space returns; nothing durable is lost."""


class CorruptStateError(PyraftError, ValueError):
    """A stored file (hard state, configuration, snapshot, segment) failed its checks.
    ``path`` names the file and ``offset`` the byte where the defect is, when known."""

    def __init__(self, message: str, path: str, offset: int | None = None) -> None:
        where = path + (f" at byte offset {offset}" if offset is not None else "")
        super().__init__(f"{message}: {where}")
        self.path = path
        self.offset = offset
        self.reason = message

    def __reduce__(self):
        return (type(self), (self.reason, self.path, self.offset))


class ClusterMismatchError(StorageError):
    """The data directory ``path`` belongs to another cluster: its log was written by
    cluster ``stored_cluster_id``, this member runs in cluster ``cluster_id``. Nothing is
    damaged and nothing was changed: a mistyped cluster id or directory, never a reason to
    repair anything. Start with the directory's cluster id, or with another directory."""

    def __init__(self, path: str, stored_cluster_id: int, cluster_id: int) -> None:
        message = (f"the data directory {path} belongs to cluster {stored_cluster_id}, "
                   f"not cluster {cluster_id}")
        Exception.__init__(self, message)  # the path is in the message already
        self.path = path
        self.errno = None
        self.reason = message
        self.stored_cluster_id = stored_cluster_id
        self.cluster_id = cluster_id

    def __reduce__(self):
        return (type(self), (self.path, self.stored_cluster_id, self.cluster_id))
