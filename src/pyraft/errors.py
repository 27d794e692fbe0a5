"""Typed errors of pyraft, and the invariant check.

Every public error of pyraft derives from ``PyraftError`` and is defined here, by area (the
modules they belong to re-export theirs: ``pyraft.client.UnavailableError`` is
``pyraft.errors.UnavailableError``), so ``except PyraftError`` catches all of them and
``tests/test_errors.py`` holds any later one to the rule. The kernels' errors
(``raftcore.errors``) stay apart: ``raftcore`` imports nothing of pyraft.

Two kinds of failure (see STYLE.md):
- operating errors (bad input, a peer gone, not the leader, a limit reached) are the typed
  exceptions below, each also subclassing the matching builtin;
- broken invariants are programmer errors: ``invariant(condition, message)`` raises
  ``InvariantError`` (unlike ``assert`` it survives ``python -O``), and the runtime stops the
  node rather than continue with corrupt state.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

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
    "ClusterStoppedError",
    "ClusterTimeoutError",
    "CommandLostError",
    "CommandOutcomeUnknownError",
    "CommandInterruptedError",
    "MessagingError",
    "RemoteHandlerError",
    "MessageTimeoutError",
    "MalformedMessageError",
    "OversizedMessageError",
    "HandshakeError",
    "HandshakeRefusedError",
    "KVClientError",
    "UnavailableError",
    "InvalidURLError",
    "SessionExpiredError",
    "TlsError",
    "RequestError",
    "FrameError",
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

    #: the data directory whose membership it is, when the caller knows it (``pyraft node``
    #: fills it in for its one-line message)
    data_dir: str | None = None

    def __init__(self, member: int, given: str, stored: str) -> None:
        super().__init__("peers", f"member {member}: the peers given ({given}) contradict the "
                                  f"membership stored in its storage ({stored}); start it "
                                  "without peers to use the stored membership, or with empty "
                                  "storage to make a new member")
        self.member, self.given, self.stored = member, given, stored

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
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

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
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

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
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

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return (type(self), (self.path, self.stored_cluster_id, self.cluster_id))


# ---- the running member (pyraft.cluster) ------------------------------------------------
class ClusterStoppedError(PyraftError, RuntimeError):
    """The member was stopped (or never started)."""


if TYPE_CHECKING or asyncio.TimeoutError is TimeoutError:
    class _WaitTimeout(TimeoutError):
        pass
else:  # Python 3.10: asyncio.wait_for raises asyncio.TimeoutError, which is not the builtin
    class _WaitTimeout(TimeoutError, asyncio.TimeoutError):
        pass


class ClusterTimeoutError(PyraftError, _WaitTimeout):
    """A wait of the public API (``wait_for_leader``, ``ensure_consistency``) ran out of time;
    the message names the wait and ``timeout`` (seconds). A ``TimeoutError``, and an
    ``asyncio.TimeoutError`` on every Python, like the timeouts of ``asyncio.wait_for``."""

    def __init__(self, message: str, timeout: float | None) -> None:
        super().__init__(message)
        self.timeout = timeout

    def __reduce__(self) -> tuple[type[ClusterTimeoutError], tuple[str, float | None]]:
        return (type(self), (str(self), self.timeout))


class CommandLostError(PyraftError, RuntimeError):
    """Another leader's entry replaced the command at its index: it was not applied."""


class CommandOutcomeUnknownError(PyraftError, RuntimeError):
    """A command's (or a membership change's) outcome cannot be known here: this member lost
    the lead while it was in flight, and its log was replaced (by a snapshot covering the
    command, or by a new leader). Retry only if the operation is idempotent or deduplicated
    (client sessions); look at the configuration after a membership change."""


class CommandInterruptedError(ClusterStoppedError, CommandOutcomeUnknownError):
    """The member stopped (or failed) while the command was in flight: it was in this
    member's log and sent to the others, not yet decided, so a later leader may still commit
    it. Both a ``ClusterStoppedError`` (this member is gone) and a
    ``CommandOutcomeUnknownError`` (retry only if idempotent or deduplicated). A command
    still queued when the member stopped never entered the log: plain
    ``ClusterStoppedError``."""


# ---- messages between members (pyraft.cluster.messaging) ----------------------------------
class MessagingError(PyraftError, RuntimeError):
    """Base class of messaging errors."""


class RemoteHandlerError(MessagingError):
    """The member answered with an error: no handler by that name, or the handler raised."""


class MessageTimeoutError(MessagingError, TimeoutError):
    """No answer in time; the handler may or may not have run."""


# ---- the wire (pyraft.transport) -----------------------------------------------------------
class MalformedMessageError(PyraftError, ValueError):
    """Bytes from a peer are not a valid message or handshake, or a message cannot be encoded.

    ``offset`` is the byte offset in the frame body where decoding stopped (None when
    encoding, or when no single place is to blame).
    """

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} (at body offset {offset})")
        self.reason = message
        self.offset = offset

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return (type(self), (self.reason, self.offset))


class OversizedMessageError(MalformedMessageError):
    """An encoded message would exceed ``frame_bytes_max``: no peer would accept it."""


class HandshakeError(PyraftError, ConnectionError):
    """A connection failed before ACCEPT: a bad or missing answer, or the peer closed it."""


class HandshakeRefusedError(HandshakeError):
    """The peer answered REFUSE; ``reason`` is its explanation (already safe to log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"refused: {reason}")
        self.reason = reason

    def __reduce__(self) -> tuple[type[HandshakeRefusedError], tuple[str]]:
        return (type(self), (self.reason,))


# ---- the key-value client (pyraft.client) -------------------------------------------------
class KVClientError(PyraftError):
    """Base of the errors of :class:`KVClient`."""


class UnavailableError(KVClientError):
    """No member answered within the deadline or the retries (a write's outcome is unknown).

    ``tried`` maps each URL tried to the last error it gave; ``attempts`` counts the requests
    sent (redirects included) and ``elapsed_s`` the time the call took."""

    def __init__(self, message: str, tried: dict[str, str] | None = None, attempts: int = 0,
                 elapsed_s: float = 0.0) -> None:
        super().__init__(message)
        self.tried = dict(tried or {})
        self.attempts = attempts
        self.elapsed_s = elapsed_s

    def __reduce__(self) -> tuple[type[UnavailableError], tuple[str, dict[str, str], int, float]]:
        return (type(self), (str(self), self.tried, self.attempts, self.elapsed_s))


class InvalidURLError(KVClientError, ValueError):
    """A member URL that is not ``http(s)://host[:port]`` or ``host:port``."""


class SessionExpiredError(KVClientError):
    """The client's session expired; the write was not applied."""


class TlsError(KVClientError, ConnectionError):
    """The TLS handshake with a member failed (HTTPS to a plain-HTTP member, an untrusted or
    refused certificate): a configuration mistake, not retried."""


class RequestError(KVClientError, ValueError):
    """The server refused the request (4xx); ``status`` and ``kind`` (its error type)."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(f"{status} {kind}: {message}")
        self.status = status
        self.kind = kind
        self.message = message

    def __reduce__(self) -> tuple[type[RequestError], tuple[int, str, str]]:
        return (type(self), (self.status, self.kind, self.message))


class FrameError(PyraftError, ValueError):
    """A byte stream of the key-value binary client protocol (:mod:`pyraft.kv.frames`) that
    is not a sequence of frames of at most the allowed size: the connection cannot go on.
    ``offset``: where in the buffered bytes it was found."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset

    def __reduce__(self) -> tuple[type[FrameError], tuple[str, int]]:
        return (type(self), (str(self), self.offset))
