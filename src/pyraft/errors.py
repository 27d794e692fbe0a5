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
    "NotLeaderError",
    "ProposalDroppedError",
    "ProposalTooLargeError",
    "LogCompactedError",
    "LogUnavailableError",
    "SnapshotUnavailableError",
    "StorageError",
    "StorageFullError",
    "CorruptStateError",
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


class NotLeaderError(PyraftError, RuntimeError):
    """This member is not the leader; ``leader_id`` / ``leader_address`` say who is, if known."""

    def __init__(self, leader_id: int | None = None, leader_address: str | None = None) -> None:
        where = f"member {leader_id}" if leader_id is not None else "unknown"
        if leader_address:
            where += f" at {leader_address}"
        super().__init__(f"not the leader; the leader is {where}")
        self.leader_id = leader_id
        self.leader_address = leader_address


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
