"""Messages, hard/soft state and the Ready handed from the core to its runtime.

Every input from a peer is a :class:`Message` passed to ``RaftNode.step``; so are the local
events (campaign, read index, leadership transfer, check-quorum, snapshot status), with
``src == dst == node id``. Proposals are not messages: the leader's runtime calls
``RaftNode.propose`` / ``propose_configuration``, and a follower refuses them with
``NotLeaderError`` (the runtime redirects the client; nothing is forwarded to the leader).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from raftcore.framing import EntryBatch

#: where members are and what they say about themselves: ``(id, address, metadata)`` per
#: member, metadata a sorted tuple of (key, value) strings (``Configuration.members_info``)
MembersInfo = tuple[tuple[int, str, tuple[tuple[str, str], ...]], ...]


class MessageType(enum.IntEnum):
    # local events
    HUP = 0  # start an election (pre-vote first when enabled)
    # 1 was PROPOSE, which nothing produced (proposals are RaftNode.propose calls); the code
    # stays unused so the wire numbers of the other types do not move, and the codec refuses it
    READ_INDEX = 2  # ask for a read barrier; context identifies the request
    TRANSFER_LEADER = 3  # hand leadership to ``src`` of ... see RaftNode.transfer_leadership
    CHECK_QUORUM = 4  # leader: step down unless a quorum was recently active
    # between members
    APPEND = 10
    APPEND_RESPONSE = 11
    HEARTBEAT = 12
    HEARTBEAT_RESPONSE = 13
    VOTE = 14
    VOTE_RESPONSE = 15
    PRE_VOTE = 16
    PRE_VOTE_RESPONSE = 17
    SNAPSHOT = 18
    SNAPSHOT_STATUS = 19  # local: the runtime reports a snapshot send finished or failed
    TIMEOUT_NOW = 20
    READ_INDEX_RESPONSE = 21
    SNAPSHOT_RESPONSE = 22  # a snapshot chunk arrived; ``snapshot_offset`` is the next wanted
    #: member -> leader: where the sender is and its metadata (``context``: msgpack
    #: ``[address, {key: value}]``), when the configuration in force says otherwise; the
    #: leader records it with an info-only configuration entry, so it travels in the log
    MEMBER_INFO = 23


LOCAL_TYPES = frozenset(
    {
        MessageType.HUP,
        MessageType.READ_INDEX,
        MessageType.TRANSFER_LEADER,
        MessageType.CHECK_QUORUM,
        MessageType.SNAPSHOT_STATUS,
    }
)

RESPONSE_TYPES = frozenset(
    {
        MessageType.APPEND_RESPONSE,
        MessageType.HEARTBEAT_RESPONSE,
        MessageType.VOTE_RESPONSE,
        MessageType.PRE_VOTE_RESPONSE,
        MessageType.READ_INDEX_RESPONSE,
        MessageType.SNAPSHOT_RESPONSE,
    }
)


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """What a snapshot covers: entries up to ``index`` (of ``term``) and the membership then."""

    index: int
    term: int
    voters: tuple[int, ...]
    learners: tuple[int, ...] = ()
    #: addresses and metadata of the members (see ``Configuration.members_info``)
    members_info: MembersInfo = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A snapshot's metadata and data. ``data`` is bytes, or (a snapshot read from storage) a
    file-backed buffer with ``len`` and slicing that reads only the slice asked for; a
    snapshot received from the leader and handed out in ``Ready.snapshot`` has empty data:
    its bytes are the ``Ready.snapshot_chunks`` written before it."""

    meta: SnapshotMeta
    data: bytes


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """A piece of the snapshot ``meta`` received from the leader: ``data`` goes at ``offset``
    (0 starts the snapshot anew, dropping a partial one); ``done``: the last piece."""

    meta: SnapshotMeta
    offset: int
    data: bytes
    done: bool


#: Message's fields in the order its constructor takes them positionally
MESSAGE_FIELDS = (
    "type", "src", "dst", "term", "log_term", "index", "commit", "entries", "reject",
    "reject_hint", "hint_term", "context", "snapshot", "transfer", "snapshot_offset",
    "snapshot_done", "fresh",
)


class Message:
    """One protocol message. Fields not used by a type keep their defaults.

    - ``term``: the sender's term (0 for local messages);
    - ``index`` / ``log_term``: for APPEND the index and term of the entry before ``entries``;
      for VOTE / PRE_VOTE the candidate's last index and term; for APPEND_RESPONSE the highest
      index the follower now matches (or, when ``reject``, the index that was rejected);
    - ``commit``: the sender's commit index (leader -> follower: min(commit, what it sent));
    - ``reject`` / ``reject_hint`` / ``hint_term``: fast backtracking (Raft thesis 5.3 note,
      etcd's findConflictByTerm): the follower's last index or the last index of a term not
      after ``hint_term``;
    - ``context``: opaque read-index request identity, echoed in heartbeats and responses;
    - ``transfer``: VOTE caused by TIMEOUT_NOW: voters skip their leader-lease check;
    - ``snapshot_offset``: SNAPSHOT: byte offset of this chunk in the snapshot data;
      SNAPSHOT_RESPONSE: the next offset the follower wants; ``snapshot_done``: SNAPSHOT: this
      chunk is the last one;
    - ``fresh``: VOTE_RESPONSE / PRE_VOTE_RESPONSE granted by a member that started with empty
      storage and has not caught up yet (``RaftNode.fresh``): it may have forgotten what it
      acknowledged before, so an election won with its vote must be unanimous.

    A plain class (not a dataclass) so that the compiled build can make it a typed extension
    class (``messages.pxd``): fields compare and print as a dataclass's would.
    """

    __slots__ = MESSAGE_FIELDS

    def __init__(self, type: MessageType, src: int, dst: int, term: int = 0,
                 log_term: int = 0, index: int = 0, commit: int = 0,
                 entries: EntryBatch | None = None, reject: bool = False,
                 reject_hint: int = 0, hint_term: int = 0, context: bytes = b"",
                 snapshot: Snapshot | None = None, transfer: bool = False,
                 snapshot_offset: int = 0, snapshot_done: bool = True,
                 fresh: bool = False) -> None:
        self.type = type
        self.src = src
        self.dst = dst
        self.term = term
        self.log_term = log_term
        self.index = index
        self.commit = commit
        self.entries = entries
        self.reject = reject
        self.reject_hint = reject_hint
        self.hint_term = hint_term
        self.context = context
        self.snapshot = snapshot
        self.transfer = transfer
        self.snapshot_offset = snapshot_offset
        self.snapshot_done = snapshot_done
        self.fresh = fresh

    def _fields(self) -> tuple[Any, ...]:
        return (self.type, self.src, self.dst, self.term, self.log_term, self.index,
                self.commit, self.entries, self.reject, self.reject_hint, self.hint_term,
                self.context, self.snapshot, self.transfer, self.snapshot_offset,
                self.snapshot_done, self.fresh)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return "Message(" + ", ".join(
            f"{name}={value!r}" for name, value in zip(MESSAGE_FIELDS, self._fields())) + ")"

    def describe(self) -> str:
        parts = [f"{self.type.name} {self.src}->{self.dst} t{self.term}"]
        if self.type in (MessageType.APPEND, MessageType.VOTE, MessageType.PRE_VOTE):
            parts.append(f"i{self.index}/lt{self.log_term}")
        if self.entries is not None and len(self.entries):
            parts.append(f"entries[{self.entries.first_index}..{self.entries.last_index}]")
        if self.type in (MessageType.APPEND, MessageType.HEARTBEAT):
            parts.append(f"c{self.commit}")
        if self.type == MessageType.APPEND_RESPONSE:
            parts.append(
                f"i{self.index}" + (f" reject hint {self.reject_hint}" if self.reject else "")
            )
        if self.type in (MessageType.VOTE_RESPONSE, MessageType.PRE_VOTE_RESPONSE):
            parts.append("reject" if self.reject else "grant")
            if self.fresh:
                parts.append("fresh")
        if self.snapshot is not None:
            parts.append(
                f"snapshot@{self.snapshot.meta.index} bytes {self.snapshot_offset}+"
                f"{len(self.snapshot.data)}{' done' if self.snapshot_done else ''}"
            )
        if self.type is MessageType.SNAPSHOT_RESPONSE:
            parts.append(f"snapshot@{self.index} next {self.snapshot_offset}"
                         + (" gap" if self.reject else ""))
        return " ".join(parts)


def wire_message(type: MessageType, src: int, dst: int, term: int, log_term: int, index: int,
                 commit: int, entries: EntryBatch | None, reject: bool, reject_hint: int,
                 hint_term: int, context: bytes, snapshot: Snapshot | None, transfer: bool,
                 snapshot_offset: int, snapshot_done: bool, fresh: bool) -> Message:
    """A ``Message`` with every field given, set directly: what the wire codec's decoder
    builds for each message received (compiled, a C call with no argument parsing)."""
    message = Message.__new__(Message)
    message.type = type
    message.src = src
    message.dst = dst
    message.term = term
    message.log_term = log_term
    message.index = index
    message.commit = commit
    message.entries = entries
    message.reject = reject
    message.reject_hint = reject_hint
    message.hint_term = hint_term
    message.context = context
    message.snapshot = snapshot
    message.transfer = transfer
    message.snapshot_offset = snapshot_offset
    message.snapshot_done = snapshot_done
    message.fresh = fresh
    return message


@dataclass(frozen=True)
class HardState:
    """What must be durable before a message that depends on it leaves (Raft figure 2).

    Compiled, an extension class (``messages.pxd``); every member makes one per Ready that
    moves its commit index. Cython's dataclasses take no ``slots``: the pure build's has a
    ``__dict__``."""

    term: int = 0
    vote: int = 0  # 0: voted for nobody in ``term``
    commit: int = 0  # a hint; safe to lose, never decreases


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class SoftState:
    leader: int  # 0 when unknown
    role: Role


@dataclass(frozen=True, slots=True)
class ReadState:
    """A read barrier is reached once the applied index is >= ``index``."""

    index: int
    context: bytes


class MembershipEventKind(enum.Enum):
    PROMOTED = "promoted"  # a learner caught up and its promotion to voter was proposed
    CATCH_UP_FAILED = "catch-up-failed"  # a learner was too slow; its removal was proposed
    REMOVED_DEAD = "removed-dead"  # the failure detector judged a voter dead; removal proposed


class LeadershipLossReason(enum.Enum):
    """Why a leader stopped leading (``LeadershipLost.reason``)."""

    HIGHER_TERM = "higher-term"  # a message of a higher term arrived from ``member``
    CHECK_QUORUM = "check-quorum"  # no quorum heard from within an election timeout (thesis 6.2)
    TRANSFER = "transfer"  # leadership handed to ``member`` (thesis 3.10)
    RESIGN = "resign"  # resign() handed leadership to ``member``
    REMOVED = "removed"  # this member's removal from the configuration committed (thesis 4.2.2)
    STOPPED = "stopped"  # the runtime stopped the member (never produced by the core)


@dataclass(frozen=True, slots=True)
class LeadershipLost:
    """A leader stepped down: ``term`` is the term it led; ``member`` the member that had a
    higher term (``HIGHER_TERM``) or that leadership went to (``TRANSFER``, ``RESIGN``), 0
    otherwise; ``member_term`` the higher term seen (``HIGHER_TERM``, ``TRANSFER``,
    ``RESIGN``), 0 otherwise."""

    reason: LeadershipLossReason
    term: int
    member: int = 0
    member_term: int = 0

    def describe(self) -> str:
        """The reason in words, e.g. ``member 3 has term 8``."""
        reason = self.reason
        if reason is LeadershipLossReason.HIGHER_TERM:
            return f"member {self.member} has term {self.member_term}"
        if reason is LeadershipLossReason.CHECK_QUORUM:
            return "no quorum heard from within the election timeout (check-quorum)"
        if reason is LeadershipLossReason.TRANSFER:
            return f"leadership transferred to member {self.member}"
        if reason is LeadershipLossReason.RESIGN:
            return f"resigned in favour of member {self.member}"
        if reason is LeadershipLossReason.REMOVED:
            return "removed from the configuration"
        return "stopped"


@dataclass(frozen=True, slots=True)
class MembershipEvent:
    kind: MembershipEventKind
    member: int
    index: int  # log index of the configuration entry proposed for it


class Ready:
    """Everything the runtime must do for one batch of work, then acknowledge with
    ``RaftNode.advance(ready)``, or in two steps: ``on_persist_ready(number)`` once step 2
    is durable and ``advance_apply(ready)`` once step 4 is done.

    Readys are numbered from 1. Up to ``RaftOptions.ready_pipeline_max`` may be in flight
    (handed out and not yet reported durable): the runtime may take the next Ready, send its
    ``messages`` and write its entries while an earlier one syncs, provided it persists
    Readys in the order of their numbers (each write after the previous one's) and reports
    persistence by number (``on_persist_ready(n)``: every Ready up to ``n`` is durable).

    1. ``messages`` may leave at once, before anything of this Ready is persisted: they are
       the leader's own replication traffic of its current term (appends, heartbeats,
       snapshot chunks, TimeoutNow; Raft thesis 10.2.1). ``RaftNode.take_leader_traffic``
       hands out messages of the same kind between Readys.
    2. Persist: write ``snapshot_chunks`` in order into the snapshot being received (a
       temporary file: never whole in memory); install ``snapshot`` if set (its data is those
       chunks, made durable and installed atomically) before the ``entries``; append
       ``entries`` (each batch replaces every stored entry with an index >= its first index);
       store ``hard_state`` if set. Sync when ``must_sync`` (term, vote, entries or a
       snapshot changed). Where the hard state goes among these is free (its commit is a
       hint, clamped to the log on restart): the runtime stores it after syncing the
       entries, the simulator first.
    3. Only once step 2 of this Ready and of every Ready before it is durable: send
       ``persisted_messages`` (votes, acknowledgements, everything a non-leader sends: what
       they promise must survive a crash; an acknowledgement may cover entries an earlier
       Ready handed out).
    4. Apply ``committed`` in order, after step 2 (the entries are then durable here too)
       and after the ``committed`` of every earlier Ready; a ``read_states`` entry is
       answerable once the state machine applied its index. ``events`` report membership
       changes the leader proposed by itself, ``leadership_lost`` why this member stopped
       leading, ``soft_state`` the new leader and role.
    5. Call ``RaftNode.advance(ready)`` (or ``on_persist_ready(ready.number)`` after step 2
       and ``advance_apply(ready)`` after step 4): the core then counts the entries as
       durable (a leader counts itself in the quorum only for those, thesis 10.2.1) and
       applied. A crash loses every Ready not reported durable.

    ``pyraft.cluster.engine`` (``Engine.handle_ready``, or its pipeline with several Readys in
    flight) and the simulator (``SimNode``) follow this order; the simulator checks step 3
    on every message sent, with several Readys in flight that complete at seeded times.
    """

    __slots__ = ("number", "soft_state", "hard_state", "snapshot", "snapshot_chunks", "entries",
                 "committed", "messages", "persisted_messages", "read_states", "events",
                 "leadership_lost", "must_sync")

    def __init__(self, number: int) -> None:
        self.number = number
        self.soft_state: SoftState | None = None
        self.hard_state: HardState | None = None
        self.snapshot: Snapshot | None = None
        self.snapshot_chunks: list[SnapshotChunk] = []
        self.entries: list[EntryBatch] = []
        self.committed: list[EntryBatch] = []
        self.messages: list[Message] = []
        self.persisted_messages: list[Message] = []
        self.read_states: list[ReadState] = []
        self.events: list[MembershipEvent] = []
        #: the times this member stopped leading since the previous Ready, oldest first
        self.leadership_lost: list[LeadershipLost] = []
        self.must_sync = False

    def __repr__(self) -> str:
        return f"Ready({self.number}, must_sync={self.must_sync}, entries={self.entries!r}, " \
               f"messages={self.messages!r}, persisted_messages={self.persisted_messages!r})"

    def empty(self) -> bool:
        return not (
            self.soft_state
            or self.hard_state
            or self.snapshot
            or self.snapshot_chunks
            or self.entries
            or self.committed
            or self.messages
            or self.persisted_messages
            or self.read_states
            or self.events
            or self.leadership_lost
        )
