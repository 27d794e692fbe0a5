"""The Raft protocol as a pure, deterministic state machine.

No I/O, clock, asyncio or global randomness: time is ``tick()``; messages from peers and
local events (campaign, read index, transfer, check-quorum, snapshot status) go through
``step(message)``; writes are calls on the leader (``propose``, ``propose_configuration``,
``add_member``, ``remove_member``), refused elsewhere with ``NotLeaderError`` (nothing is
forwarded). The output is a numbered :class:`Ready` that the runtime sends, persists and
applies, in the order its docstring gives, before calling ``advance(ready)`` (or, with
several Readys in flight, ``on_persist_ready(number)`` and ``advance_apply(ready)``). Given the
same inputs and the same seeded ``rng`` the node makes the same decisions, which is what the
deterministic simulator (``pyraft.testing.sim``) relies on.

Parts with one job each live beside this module and are composed here: the log
(``log``), the configuration history (``confhistory``), replication progress
(``progress``), read-index requests (``readonly``), learner warm-up (``warmup``) and the
automatic failure detector (``failure``).

Sections cited: "Raft" is the extended paper (Ongaro & Ousterhout 2014), "thesis" is
Ongaro's dissertation (2014).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import msgpack

from pyraft.core.confhistory import ConfigurationHistory
from pyraft.core.failure import FailureDetector
from pyraft.core.log import RaftLog
from pyraft.core.membership import Configuration, majority_index
from pyraft.core.messages import (
    LOCAL_TYPES,
    HardState,
    LeadershipLossReason,
    LeadershipLost,
    MembershipEvent,
    MembershipEventKind,
    Message,
    MessageType,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotChunk,
    SnapshotMeta,
    SoftState,
    wire_message,
)
from pyraft.core.progress import Progress, ProgressState
from pyraft.core.readonly import ReadOnly
from pyraft.core.storage import LogStorage
from pyraft.core.warmup import RoundOutcome, Warmup
from pyraft.errors import (
    ConfigError,
    InvariantError,
    LogCompactedError,
    LogUnavailableError,
    NotLeaderError,
    ProposalDroppedError,
    ProposalTooLargeError,
    SnapshotUnavailableError,
    invariant,
)
from raftcore.framing import (
    KIND_COMMAND,
    KIND_CONFIGURATION,
    KIND_NOOP,
    EntryBatch,
    encode_entries,
)

if TYPE_CHECKING:
    from typing_extensions import Buffer

T = MessageType
# The enum members the hot paths compare with, as module constants: the compiled build makes
# them C globals (raft.pxd), where ``T.APPEND`` would be a module lookup and an attribute
# lookup on the enum class per use.
_T_APPEND = T.APPEND
_T_APPEND_RESPONSE = T.APPEND_RESPONSE
_T_CHECK_QUORUM = T.CHECK_QUORUM
_T_HEARTBEAT = T.HEARTBEAT
_T_HEARTBEAT_RESPONSE = T.HEARTBEAT_RESPONSE
_T_HUP = T.HUP
_T_MEMBER_INFO = T.MEMBER_INFO
_T_PRE_VOTE = T.PRE_VOTE
_T_PRE_VOTE_RESPONSE = T.PRE_VOTE_RESPONSE
_T_READ_INDEX = T.READ_INDEX
_T_READ_INDEX_RESPONSE = T.READ_INDEX_RESPONSE
_T_SNAPSHOT = T.SNAPSHOT
_T_SNAPSHOT_RESPONSE = T.SNAPSHOT_RESPONSE
_T_SNAPSHOT_STATUS = T.SNAPSHOT_STATUS
_T_TIMEOUT_NOW = T.TIMEOUT_NOW
_T_TRANSFER_LEADER = T.TRANSFER_LEADER
_T_VOTE = T.VOTE
_T_VOTE_RESPONSE = T.VOTE_RESPONSE
_R_CANDIDATE = Role.CANDIDATE
_R_FOLLOWER = Role.FOLLOWER
_R_LEADER = Role.LEADER
_R_PRE_CANDIDATE = Role.PRE_CANDIDATE
_P_PROBE = ProgressState.PROBE
_P_REPLICATE = ProgressState.REPLICATE
_P_SNAPSHOT = ProgressState.SNAPSHOT
#: the progress the commit rule reads for a voter the leader tracks none of (it never changes)
_NO_PROGRESS = Progress(1, 1, 1)
#: the largest MEMBER_INFO body a leader reads (an address and a few labels)
MEMBER_INFO_BYTES_MAX = 16 * 1024


class RandomSource(Protocol):
    """What the core needs of its (seeded) random number generator."""

    def randrange(self, start: int, stop: int) -> int: ...


@dataclass(frozen=True, slots=True)
class RaftOptions:
    """Protocol parameters, in ticks and bytes (``tick_ms`` says how long a tick is).
    ``pyraft.config`` derives them from times."""

    id: int
    election_ticks_lower: int = 10
    election_ticks_upper: int = 20
    heartbeat_ticks: int = 3
    pre_vote: bool = True
    check_quorum: bool = True
    #: a standby member replicates and serves reads but never becomes a candidate
    standby: bool = False
    #: a leader lease lasts this many ticks after a quorum acknowledged a heartbeat
    #: (election_ticks_lower / clock_drift_bound, rounded down)
    lease_ticks: int = 9
    inflight_messages_max: int = 256
    inflight_bytes_max: int = 16 * 1024 * 1024
    append_bytes_max: int = 1024 * 1024
    uncommitted_bytes_max: int = 64 * 1024 * 1024
    apply_bytes_max: int = 16 * 1024 * 1024
    #: InstallSnapshot sends the snapshot in chunks of this size, read from storage as sent
    snapshot_chunk_bytes: int = 1024 * 1024
    #: bytes of snapshot chunks in flight to one follower (sent and not yet confirmed
    #: written); at least one chunk goes whatever this is
    snapshot_inflight_bytes_max: int = 4 * 1024 * 1024
    #: a learner is promoted once it is within this many entries after warmup
    warmup_rounds: int = 10
    #: automatic failure detection (off when 0): the leader keeps a phi-accrual detector per
    #: voter, fed by its answers; a voter whose phi stays above ``failure_phi_threshold`` for
    #: ``failure_dead_ticks`` is removed by a configuration change, never below
    #: ``failure_voters_min`` voters and never while another change is in flight
    failure_dead_ticks: int = 0
    #: a voter that has not answered the leader once (down, or not started yet: phi has no
    #: intervals to judge it by) is removed after this many ticks of the leader's term
    #: instead; 0: ten times ``failure_dead_ticks``
    failure_unheard_ticks: int = 0
    failure_phi_threshold: float = 8.0
    failure_voters_min: int = 3
    #: a member that starts with empty storage (no term, no log) may be one that forgot
    #: what it acknowledged (a memory-only member restarted, a wiped data directory): it is
    #: ``fresh`` until a leader brings it up to a commit of the leader's own term, and an
    #: election won with a fresh vote must be unanimous (see ``RaftNode.fresh``)
    fresh_start_guard: bool = False
    #: the length of one tick in milliseconds: the failure detector's kernel measures
    #: intervals in milliseconds (``pyraft.config`` passes its ``tick_ms``; the simulator,
    #: where ticks are the only time, keeps 1)
    tick_ms: float = 1.0
    #: Readys handed out and not yet reported durable (``RaftNode.on_persist_ready``): while
    #: one syncs, the next one's entries can be appended and sent. 1: the runtime persists
    #: one Ready at a time
    ready_pipeline_max: int = 4

    def validate(self) -> RaftOptions:
        if self.id <= 0:
            raise ConfigError("id", "must be a positive integer")
        if not 1 <= self.heartbeat_ticks < self.election_ticks_lower:
            raise ConfigError("heartbeat_ticks", "must be in [1, election_ticks_lower)")
        if not self.tick_ms > 0:
            raise ConfigError("tick_ms", "must be positive")
        if self.election_ticks_upper <= self.election_ticks_lower:
            raise ConfigError("election_ticks_upper", "must exceed election_ticks_lower")
        if not 0 <= self.lease_ticks < self.election_ticks_lower:
            raise ConfigError("lease_ticks", "must be in [0, election_ticks_lower)")
        if self.failure_dead_ticks < 0 or self.failure_unheard_ticks < 0:
            raise ConfigError("failure_dead_ticks" if self.failure_dead_ticks < 0
                              else "failure_unheard_ticks", "must be 0 or positive")
        for name in (
            "inflight_messages_max",
            "inflight_bytes_max",
            "append_bytes_max",
            "uncommitted_bytes_max",
            "apply_bytes_max",
            "snapshot_chunk_bytes",
            "snapshot_inflight_bytes_max",
            "ready_pipeline_max",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(name, "must be positive")
        return self


class RaftNode:
    """One member's Raft state. See the module docstring for how it is driven."""

    def __init__(self, options: RaftOptions, storage: LogStorage, rng: RandomSource) -> None:
        self.options = options.validate()
        self.id = options.id
        self.rng = rng
        hard_state, configuration = storage.initial_state()
        if configuration is None:
            raise ConfigError(
                "configuration", "storage has neither a snapshot nor a bootstrap configuration"
            )
        self.log = RaftLog(storage, hard_state.commit)
        #: current term (Raft figure 2), persisted
        self.term = hard_state.term
        #: candidate voted for in ``term``, 0 for none, persisted
        self.vote = hard_state.vote
        #: leader of ``term`` as far as we know, 0 for unknown
        self.lead = 0
        self.role = _R_FOLLOWER
        #: the snapshot's (or bootstrap's) configuration and the configuration entries after it
        self._history = ConfigurationHistory(configuration)
        #: the configuration in force: ``history.latest()`` (thesis 4.1: entries take effect
        #: when appended)
        self.configuration = configuration
        self._scan_configurations(self.log.first_index(), self.log.last_index() + 1)
        #: leader: progress of every member; empty otherwise
        self.progress: dict[int, Progress] = {}
        #: leader: the other members of ``progress``, by id (``_progress_changed``)
        self._others: list[int] = []
        #: leader: the voters' progress, by id (``_NO_PROGRESS`` for a voter without one), for
        #: the commit rule; valid while ``_voters_of`` is the configuration in force and the
        #: progress unchanged since (``_track_voters``); ``_voter_self``: this member is a
        #: voter or a learner of that configuration
        self._voter_progress: list[Progress] = []
        self._voters_of: Configuration | None = None
        self._voter_self = False
        #: leader: its own entry of ``progress`` (None when it has none: ``_progress_changed``)
        self._own_progress: Progress | None = None
        self.votes: dict[int, bool] = {}
        self.ticks = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = 0
        #: leader: the member leadership is being handed to, 0 for none
        self.lead_transferee = 0
        #: leader: index of the newest configuration entry (no second change until committed)
        self.pending_conf_index = 0
        #: leader: bytes of entries appended in this term and not yet committed, and the
        #: (last index, bytes) of each such batch, oldest first
        self.uncommitted_bytes = 0
        self._uncommitted_batches: deque[tuple[int, int]] = deque()
        #: leader: learners being caught up before promotion
        self._warmup = Warmup()
        #: leader, with failure detection: a phi-accrual watch per voter
        self._failures = FailureDetector(options.heartbeat_ticks, options.tick_ms,
                                         options.failure_phi_threshold)
        self.events: list[MembershipEvent] = []
        #: follower: the snapshot being received in chunks and how many bytes of it were
        #: handed out (the data is not kept here: the runtime writes it to a file); kept
        #: across leader changes, so a transfer of the same snapshot resumes where it stopped
        self._snapshot_receiving: tuple[SnapshotMeta, int] | None = None
        #: follower: received chunks for the next Ready (``Ready.snapshot_chunks``)
        self._snapshot_chunks: list[SnapshotChunk] = []
        #: leader: read-index requests waiting for a quorum's heartbeat answers (thesis 6.4)
        self._reads = ReadOnly()
        #: leader: member -> the commit index last sent to it; whether a commit is unsent
        self._commit_sent: dict[int, int] = {}
        self._commit_unsent = False
        self.read_states: list[ReadState] = []
        self._messages: list[Message] = []
        #: the number of the newest Ready handed out (Readys are numbered from 1)
        self._ready_number = 0
        #: every Ready up to this number is durable, as the runtime reported
        #: (``0 <= _persisted_number <= _ready_number``; their difference is at most
        #: ``options.ready_pipeline_max``)
        self._persisted_number = 0
        #: what each Ready handed out and not yet reported durable asked to persist, oldest
        #: first: (number, index of its snapshot or -1, last index and term of its entries,
        #: or 0 and 0 without entries)
        self._unpersisted: list[tuple[int, int, int, int]] = []
        #: the soft state (leader, role) and the hard state (term, vote, commit) the last
        #: Ready handed out, or the storage's at start: a Ready carries them when they changed
        self._soft_lead = 0
        self._soft_role = _R_FOLLOWER
        self._hard_term = hard_state.term
        self._hard_vote = hard_state.vote
        self._hard_commit = hard_state.commit
        #: options read on every Ready and every append, kept as fields (typed in raft.pxd)
        self._ready_pipeline_max = options.ready_pipeline_max
        self._append_bytes_max = options.append_bytes_max
        self._apply_bytes_max = options.apply_bytes_max
        #: started with empty storage and not caught up yet: this member may have forgotten
        #: entries it acknowledged before (it cannot tell a first start from a restart that
        #: lost its state), so its vote is "fresh": a candidate needs a majority of other
        #: votes, or every voter's. Safe while any member that acknowledged a committed entry
        #: still holds it: that member refuses a candidate without it, and its vote is needed.
        #: Ends when a leader's commit of its own term is in this member's log (every entry
        #: committed before that is then here too).
        self.fresh = (options.fresh_start_guard and hard_state.term == 0
                      and self.log.last_index() == 0)
        #: the voters whose grant in the running election was fresh
        self._fresh_votes: set[int] = set()
        #: where this member is and its metadata, as it wants the configuration to say:
        #: (address, sorted (key, value) pairs, or None: only the address); None: nothing
        #: to announce
        self._own_info: tuple[str, tuple[tuple[str, str], ...] | None] | None = None
        self._info_sent_tick = -1
        #: leader: the transfer to ``lead_transferee`` was asked for by ``resign()``
        self._resigning = False
        #: the step-downs not yet handed out in a Ready (``Ready.leadership_lost``)
        self._leadership_lost: list[LeadershipLost] = []
        #: the latest step-down of this member, None if it never led
        self.leadership_lost: LeadershipLost | None = None
        #: leader: index of its no-op, the first entry of its term (entries from there to the
        #: last index are all of ``term``); ``_NO_TERM_START`` otherwise (set by ``_reset``)
        self._term_start = _NO_TERM_START
        self.become_follower(self.term, 0)

    # ---- public API --------------------------------------------------------------------------
    def tick(self) -> None:
        """One unit of logical time."""
        self.ticks += 1
        self._tick()

    def step(self, m: Message) -> None:
        """Feed one message (from a peer or a local event)."""
        if m.type in LOCAL_TYPES:
            if m.type is _T_HUP:
                self._hup(transfer=False)
            else:
                self._step_as_role(m)
            return
        if m.term > self.term:
            if m.type in (_T_VOTE, _T_PRE_VOTE) and not m.transfer and self._in_lease():
                # Raft thesis 4.2.3: a member that heard from a leader within the minimum
                # election timeout ignores vote requests, so a removed or partitioned member
                # cannot disrupt a healthy cluster.
                return
            if m.type is _T_PRE_VOTE or (m.type is _T_PRE_VOTE_RESPONSE and not m.reject):
                pass  # a pre-vote never changes terms (thesis 9.6)
            elif m.type in (_T_APPEND, _T_HEARTBEAT, _T_SNAPSHOT):
                self.become_follower(m.term, m.src, self._higher_term_loss(m))
            else:
                self.become_follower(m.term, 0, self._higher_term_loss(m))
        elif m.term < self.term:
            if m.type in (_T_APPEND, _T_HEARTBEAT) and (
                self.options.check_quorum or self.options.pre_vote
            ):
                # A stale leader: tell it our term so it steps down (it may otherwise keep a
                # pre-voting cluster from electing anyone it does not hear from).
                self._send(_T_APPEND_RESPONSE, m.src)
            elif m.type is _T_PRE_VOTE:
                self._send(_T_PRE_VOTE_RESPONSE, m.src, reject=True)
            return
        if m.type in (_T_VOTE, _T_PRE_VOTE):
            self._handle_vote_request(m)
            return
        self._step_as_role(m)

    def _step_as_role(self, m: Message) -> None:
        """The role's handler (C calls when compiled, where a handler kept in an attribute
        was a Python call per message)."""
        role = self.role
        if role is _R_LEADER:
            self._step_leader(m)
        elif role is _R_FOLLOWER:
            self._step_follower(m)
        else:  # a candidate, or a pre-candidate
            self._step_candidate(m)

    def propose(self, payloads: Sequence[Buffer],
                kind: int = KIND_COMMAND) -> tuple[int, int]:
        """Append commands as the leader; returns the (first, last) indexes they received.

        Raises NotLeaderError (with the leader known to this member), ProposalDroppedError
        (a leadership transfer is under way, or the uncommitted bytes bound is reached) or
        ProposalTooLargeError (a payload over ``append_bytes_max``).
        """
        if self.role is not _R_LEADER:
            raise NotLeaderError(self.lead or None)
        if self.lead_transferee:
            raise ProposalDroppedError(f"leadership is being transferred to {self.lead_transferee}")
        if not payloads:
            last = self.log.last_index()
            return last + 1, last
        first = self.log.last_index() + 1
        try:
            batch = encode_entries(
                first, self.term, payloads, kind, payload_bytes_max=self._append_bytes_max
            )
        except ValueError as exc:  # a payload over append_bytes_max
            raise ProposalTooLargeError(str(exc)) from exc
        bound = self.options.uncommitted_bytes_max
        if self.uncommitted_bytes and self.uncommitted_bytes + batch.nbytes > bound:
            raise ProposalDroppedError(
                f"{self.uncommitted_bytes} uncommitted bytes; the bound is {bound}"
            )
        self._append_as_leader(batch)
        return first, batch.last_index

    def propose_configuration(self, configuration: Configuration) -> int:
        """Append a configuration entry; returns its index. One change at a time (thesis 4.1)."""
        if self.role is not _R_LEADER:
            raise NotLeaderError(self.lead or None)
        if self.pending_conf_index > self.log.committed:
            raise ProposalDroppedError("a configuration change is already in progress")
        if not self.committed_in_current_term():
            # A leader appends a configuration entry only after committing an entry of its
            # own term (the fix to single-server changes, Ongaro, raft-dev 2015): otherwise a
            # change it appends and one an earlier leader appended can both take effect.
            raise ProposalDroppedError("the leader has not committed an entry of its term yet")
        if not self.configuration.differs_by_at_most_one(configuration):
            raise ProposalDroppedError("only one voter may be added or removed at a time")
        first, _ = self.propose([configuration.encode()], KIND_CONFIGURATION)
        return first

    def add_member(self, member: int) -> int:
        """Start adding ``member``: propose it as a learner; the leader warms it up for up to
        ``warmup_rounds`` rounds and then proposes its promotion to voter by itself. A
        MembershipEvent in a later Ready reports the promotion or the failure. Returns the
        index of the learner configuration entry."""
        if member in self.configuration.members:
            raise ProposalDroppedError(f"member {member} is already in the configuration")
        return self.propose_configuration(self.configuration.add_learner(member))

    def remove_member(self, member: int) -> int:
        """Propose the configuration without ``member`` (the leader itself included)."""
        index = self.propose_configuration(self.configuration.remove(member))
        self._warmup.discard(member)
        return index

    def read_index(self, context: bytes) -> None:
        """Ask for a read barrier; a ReadState with ``context`` appears in a later Ready."""
        self.step(Message(_T_READ_INDEX, self.id, self.id, context=context))

    def transfer_leadership(self, target: int) -> None:
        """Hand leadership to ``target`` (thesis 3.10): catch it up, then send TIMEOUT_NOW."""
        self.step(Message(_T_TRANSFER_LEADER, self.id, self.id, index=target))

    def resign(self) -> int:
        """Give up leadership without a gap: hand it to the most caught-up other voter
        (leadership transfer, thesis 3.10). Returns that member. Raises NotLeaderError, or
        ProposalDroppedError when no other voter exists."""
        if self.role is not _R_LEADER:
            raise NotLeaderError(self.lead or None)
        candidates = [
            (-self.progress[m].match, m)
            for m in self.configuration.voters
            if m != self.id and m in self.progress
        ]
        if not candidates:
            raise ProposalDroppedError("no other voter to hand leadership to")
        target = min(candidates)[1]
        self.transfer_leadership(target)
        self._resigning = self.lead_transferee == target
        return target

    def restore_applied(self, index: int) -> None:
        """At start: the state machine already holds every entry up to ``index`` (it recovered
        from a snapshot and the log); committed entries are handed out from ``index + 1``."""
        log = self.log
        invariant(log.first_index() - 1 <= index <= log.last_index(),
                  f"applied {index} outside the log [{log.first_index() - 1}, {log.last_index()}]")
        log.committed = max(log.committed, index)  # what was applied was committed
        log.applied = log.applying = index

    def campaign(self) -> None:
        self.step(Message(_T_HUP, self.id, self.id))

    def set_own_info(self, address: str, metadata: dict[str, str] | None = None) -> None:
        """Where this member is and its metadata: while the configuration in force says
        otherwise, this member tells the leader (MEMBER_INFO, once per election timeout) and
        the leader records it with an info-only configuration entry, so every member learns
        it through the log (a leader records its own).

        The member states its own labels and only those: labels the configuration holds for
        it that it does not state (given to ``add_member`` by an operator) stay, and for a
        label it states, its value wins. A member with no metadata of its own (None or
        empty) states only its address; ``own_info`` is then ``(address, None)``."""
        pairs = tuple(sorted((str(k), str(v)) for k, v in metadata.items())) \
            if metadata else None
        self._own_info = (address, pairs)
        self._info_sent_tick = -1

    def report_unreachable(self, member: int) -> None:
        """The runtime could not deliver to ``member``: stop pipelining, probe again."""
        pr = self.progress.get(member) if self.role is _R_LEADER else None
        if pr is not None and pr.state is _P_REPLICATE:
            pr.become_probe()

    def report_snapshot(self, member: int, ok: bool) -> None:
        self.step(Message(_T_SNAPSHOT_STATUS, self.id, self.id, index=member, reject=not ok))

    def lease_valid(self) -> bool:
        """True while this leader holds a lease: no other leader can exist (thesis 6.4.1).

        Only under check-quorum: it is what makes followers refuse votes while they hear from
        this leader."""
        if self.role is not _R_LEADER or not self.options.check_quorum:
            return False
        return self.ticks < self._quorum_lease_tick() + self.options.lease_ticks

    def lease_remaining_ticks(self) -> int:
        if self.role is not _R_LEADER or not self.options.check_quorum:
            return 0
        return max(0, self._quorum_lease_tick() + self.options.lease_ticks - self.ticks)

    def committed_in_current_term(self) -> bool:
        return self.log.term_or_none(self.log.committed) == self.term

    @property
    def promotable(self) -> bool:
        """May this member become a candidate? Voters that are not standby, without a pending
        snapshot to persist; and a voter whose removal is appended but not committed (thesis
        4.2.2 lets a leader outside the configuration manage it until the change commits):
        otherwise, when the members left are behind it, or standby, nobody may ever lead."""
        return (
            not self.options.standby
            and (self.id in self.configuration.voters or self._voter_until_removal_commits())
            and self.log.unstable_snapshot is None
        )

    def _voter_until_removal_commits(self) -> bool:
        history = self._history
        if history.latest_index() <= self.log.committed:
            return False
        return self.id in history.before_latest().voters

    # ---- Ready -------------------------------------------------------------------------------
    def has_ready(self) -> bool:
        """Is there work for a Ready, and room for one more in flight?"""
        if self._ready_number - self._persisted_number >= self._ready_pipeline_max:
            return False
        return bool(
            self._messages
            or self._snapshot_chunks
            or self.read_states
            or self.events
            or self._leadership_lost
            or self.log.unstable_snapshot is not None
            and not self.log.snapshot_in_progress
            or self.log.in_progress <= self.log.last_index()
            or self.log.committed > self.log.applying
            or self._state_changed()
        )

    def _state_changed(self) -> bool:
        return self._hard_changed() or self._soft_changed()

    def _hard_changed(self) -> bool:
        return (
            self.term != self._hard_term
            or self.vote != self._hard_vote
            or self.log.committed != self._hard_commit
        )

    def _soft_changed(self) -> bool:
        return self.lead != self._soft_lead or self.role is not self._soft_role

    def ready(self) -> Ready:
        """Collect the work for the runtime. At most ``options.ready_pipeline_max`` Readys are
        in flight (handed out and not yet reported durable)."""
        if self._ready_number - self._persisted_number >= self._ready_pipeline_max:
            raise InvariantError(f"ready() with {self._ready_number - self._persisted_number} "
                                 "Readys in flight already")
        self._ready_number += 1
        rd = Ready(self._ready_number)
        if self._soft_changed():
            rd.soft_state = SoftState(self.lead, self.role)
            self._soft_lead, self._soft_role = self.lead, self.role
        if self._hard_changed():
            rd.hard_state = self._hard_state()
            rd.must_sync = self.term != self._hard_term or self.vote != self._hard_vote
            self._hard_term, self._hard_vote = self.term, self.vote
            self._hard_commit = self.log.committed
        if self._snapshot_chunks:
            rd.snapshot_chunks, self._snapshot_chunks = self._snapshot_chunks, []
        if self.log.unstable_snapshot is not None and not self.log.snapshot_in_progress:
            rd.snapshot = self.log.unstable_snapshot
            self.log.snapshot_in_progress = True
            rd.must_sync = True
        rd.entries = self.log.take_unstable()
        if rd.entries:
            rd.must_sync = True
        rd.committed = self.log.take_committed(self._apply_bytes_max)
        # the queues move to the Ready only when they hold something (a new empty list per
        # queue per Ready was most of the garbage a Ready made)
        if self._messages:
            if self.role is _R_LEADER:
                term = self.term
                for m in self._messages:
                    if m.type in _LEADER_TRAFFIC and m.term == term:
                        rd.messages.append(m)
                    else:
                        rd.persisted_messages.append(m)
            else:
                rd.persisted_messages = self._messages
            self._messages = []
        if self.read_states:
            rd.read_states, self.read_states = self.read_states, []
        if self.events:
            rd.events, self.events = self.events, []
        if self._leadership_lost:
            rd.leadership_lost, self._leadership_lost = self._leadership_lost, []
        last = rd.entries[-1] if rd.entries else None
        self._unpersisted.append((
            rd.number,
            -1 if rd.snapshot is None else rd.snapshot.meta.index,
            0 if last is None else last.last_index,
            0 if last is None else last.last_term,
        ))
        return rd

    def take_leader_traffic(self) -> list[Message]:
        """The leader's traffic of its current term queued since the last Ready (appends,
        heartbeats, snapshot chunks, TimeoutNow): what the next Ready would put in
        ``messages``, which may leave before anything is persisted (thesis 10.2.1). The
        runtime sends them while an earlier Ready is still being persisted, so a slow
        fdatasync does not hold the leader's heartbeats back. Empty unless this member leads;
        every other message stays for the next Ready, in order."""
        if self.role is not _R_LEADER or not self._messages:
            return []
        term = self.term
        now: list[Message] = []
        rest: list[Message] = []
        for m in self._messages:
            (now if m.type in _LEADER_TRAFFIC and m.term == term else rest).append(m)
        self._messages = rest
        return now

    def advance(self, rd: Ready) -> None:
        """The runtime persisted, sent and applied ``rd`` (and every Ready before it): the
        combined step for runtimes that keep one Ready in flight, ``on_persist_ready`` then
        ``advance_apply``."""
        if not self._persisted_number < rd.number <= self._ready_number:
            raise InvariantError(f"advance of Ready {rd.number} that is not in flight (handed "
                                 f"out up to {self._ready_number}, durable up to "
                                 f"{self._persisted_number})")
        self._stable_to(rd.number)
        self.advance_apply(rd)
        self._count_self()

    def on_persist_ready(self, number: int) -> None:
        """Every Ready up to ``number`` is durable (steps 2 of their docstring are done, in
        the order they were handed out). Reports of numbers already covered change nothing,
        so a runtime may report only the newest of several Readys that became durable
        together. The core then reads their entries from storage, and a leader counts
        itself in the quorum for them (thesis 10.2.1)."""
        if number > self._ready_number:
            raise InvariantError(f"persistence reported for Ready {number}, handed out up to "
                                 f"{self._ready_number}")
        if number <= self._persisted_number:
            return
        self._stable_to(number)
        self._count_self()

    def _stable_to(self, number: int) -> None:
        self._persisted_number = number
        log = self.log
        pending = self._unpersisted  # at most ready_pipeline_max: a list, oldest first
        done = 0
        for entry in pending:
            ready_number, snapshot_index, last_index, last_term = entry
            if ready_number > number:
                break
            done += 1
            if snapshot_index >= 0:
                log.stable_snapshot_to(snapshot_index)
            if last_index:
                log.stable_to(last_index, last_term)
        if done:  # a new list of the rest (compiled, a C slice: no slice object, no call)
            self._unpersisted = pending[done:]

    def _count_self(self) -> None:
        pr = self._own_progress
        if self.role is _R_LEADER and pr is not None:
            # The leader counts itself only for what it has made durable (thesis 10.2.1).
            if pr.maybe_update(self.log.unstable_offset - 1):
                if self._maybe_commit():
                    self._after_commit()

    def advance_apply(self, rd: Ready) -> None:
        """The state machine applied ``rd.committed``."""
        if rd.committed:
            last = rd.committed[-1]
            self.log.applied_to(last.last_index)

    @property
    def readys_in_flight(self) -> int:
        """Readys handed out and not yet reported durable."""
        return self._ready_number - self._persisted_number

    # ---- roles -------------------------------------------------------------------------------
    def become_follower(self, term: int, lead: int, lost: LeadershipLost | None = None) -> None:
        """Follow ``lead`` (0: unknown) in ``term``. A leader steps down only with the reason
        ``lost``, recorded for the next Ready and in ``leadership_lost``."""
        if self.role is _R_LEADER:
            invariant(lost is not None, "a leader steps down without a reason")
            if lost is not None:
                self.leadership_lost = lost
                self._leadership_lost.append(lost)
        self._reset(term)
        self.lead = lead
        self.role = _R_FOLLOWER
        self._tick = self._tick_election

    def _become_pre_candidate(self) -> None:
        invariant(self.role is not _R_LEADER, "leader cannot become pre-candidate")
        # A pre-candidate keeps its term and vote (thesis 9.6).
        self._tick = self._tick_election
        self.votes = {}
        self._fresh_votes = set()
        self.lead = 0
        self.role = _R_PRE_CANDIDATE

    def _become_candidate(self) -> None:
        invariant(self.role is not _R_LEADER, "leader cannot become candidate")
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = _R_CANDIDATE
        self._tick = self._tick_election

    def _become_leader(self) -> None:
        invariant(self.role is _R_CANDIDATE, "only a candidate becomes leader")
        self._reset(self.term)
        self.lead = self.id
        self.role = _R_LEADER
        self._tick = self._tick_heartbeat
        last = self.log.last_index()
        for member in self.configuration.members | {self.id}:
            if member in self.configuration.members or member == self.id:
                self.progress[member] = self._new_progress(last + 1)
        self._progress_changed()
        me = self.progress[self.id]
        me.become_replicate()
        me.match = self.log.unstable_offset - 1
        me.next = last + 1
        me.recent_active = True
        self._sync_catch_ups()
        # Conservatively treat any configuration entry in the log as pending (thesis 4.1).
        self.pending_conf_index = last
        # Raft 8 / thesis 6.4: a no-op at the start of the term commits earlier entries.
        self._term_start = last + 1
        self._append_as_leader(encode_entries(last + 1, self.term, [b""], KIND_NOOP))
        self.uncommitted_bytes = 0  # the no-op does not count against the bound
        self._uncommitted_batches.clear()

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = 0
        self.lead = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.rng.randrange(
            self.options.election_ticks_lower, self.options.election_ticks_upper
        )
        self.votes = {}
        self._fresh_votes = set()
        self.progress = {}
        self._others = []
        self._voters_of = None
        self._own_progress = None
        self.lead_transferee = 0
        self._resigning = False
        self.pending_conf_index = 0
        self.uncommitted_bytes = 0
        self._uncommitted_batches.clear()
        self._warmup.reset()
        self._failures.reset()
        self._reads.reset()
        self._commit_sent = {}
        self._commit_unsent = False
        self._term_start = _NO_TERM_START

    def _new_progress(self, next_index: int) -> Progress:
        return Progress(
            next_index, self.options.inflight_messages_max, self.options.inflight_bytes_max
        )

    # ---- ticks -------------------------------------------------------------------------------
    def _tick_election(self) -> None:
        if self._own_info is not None and self.lead:
            self._announce_info()
        self.election_elapsed += 1
        if self.promotable and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.step(Message(_T_HUP, self.id, self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.options.election_ticks_lower:
            self.election_elapsed = 0
            if self.options.check_quorum:
                self.step(Message(_T_CHECK_QUORUM, self.id, self.id))
            if self.role is _R_LEADER and self.lead_transferee:
                self.lead_transferee = 0  # thesis 3.10: abort a transfer after a timeout
            if self.role is _R_LEADER and self._warmup:
                self._check_catch_ups()
        if self.role is _R_LEADER and self.options.failure_dead_ticks:
            self._detect_failures()
        if self.role is not _R_LEADER:
            return
        if self._own_info is not None:
            self._announce_info()
        if self.heartbeat_elapsed >= self.options.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self._broadcast_heartbeat(b"")
        if self._commit_unsent:
            self._send_commit()

    # ---- member info -------------------------------------------------------------------------
    @property
    def own_info(self) -> tuple[str, tuple[tuple[str, str], ...] | None] | None:
        """What ``set_own_info`` was given: (address, sorted metadata pairs, or None when
        this member has no metadata of its own), or None."""
        return self._own_info

    def info_recorded(self, member: int,
                      info: tuple[str, tuple[tuple[str, str], ...] | None] | None) -> bool:
        """Does the configuration in force say ``info`` of ``member``: its address, and each
        label it states with that value (None: nothing to say; metadata None: only the
        address is stated)?"""
        if info is None:
            return True
        configuration = self.configuration
        if configuration.address_of(member) != info[0]:
            return False
        if info[1] is None:
            return True
        recorded = configuration.metadata_of(member)
        return all(recorded.get(key) == value for key, value in info[1])

    def _announce_info(self) -> None:
        """Tell the leader (or, leading, record) this member's info when the configuration in
        force says otherwise; at most once per lower election timeout."""
        if self.ticks - self._info_sent_tick < self.options.election_ticks_lower \
                and self._info_sent_tick >= 0:
            return
        own = self._own_info
        if self.id not in self.configuration.members or own is None \
                or self.info_recorded(self.id, own):
            return
        address, pairs = own
        self._info_sent_tick = self.ticks
        # the configuration's labels for it, with the ones it states over them
        metadata = dict(self.configuration.metadata_of(self.id))
        if pairs is not None:
            metadata.update(pairs)
        if self.role is _R_LEADER:
            self._record_info(self.id, address, metadata)
        else:
            context = msgpack.packb([address, metadata])
            self._send(_T_MEMBER_INFO, self.lead, context=context)

    def _handle_member_info(self, m: Message) -> None:
        """Leader: a member says where it is; malformed info from a peer is ignored."""
        if len(m.context) > MEMBER_INFO_BYTES_MAX or m.src not in self.configuration.members:
            return
        try:
            address, metadata = msgpack.unpackb(m.context)
            if not isinstance(address, str) or not isinstance(metadata, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
                return
        except Exception:  # msgpack raises several unrelated types for bad input
            return
        configuration = self.configuration
        if (configuration.address_of(m.src) == address
                and configuration.metadata_of(m.src) == metadata):
            return
        self._record_info(m.src, address, metadata)

    def _record_info(self, member: int, address: str, metadata: dict[str, str]) -> None:
        """Leader: an info-only configuration entry (same voters and learners), unless
        another change is in flight (the member announces again later)."""
        if self.pending_conf_index > self.log.committed or self.lead_transferee:
            return
        try:
            self.propose_configuration(self.configuration.with_info(member, address, metadata))
        except ProposalDroppedError:
            return  # the uncommitted bytes bound: announced again later

    # ---- elections ---------------------------------------------------------------------------
    def _hup(self, transfer: bool) -> None:
        if self.role is _R_LEADER or not self.promotable:
            return
        if self.log.committed > self.log.applied and self._pending_configuration_after_applied():
            return  # etcd: do not campaign with an unapplied configuration change
        if self.options.pre_vote and not transfer:
            self._campaign(pre=True, transfer=False)
        else:
            self._campaign(pre=False, transfer=transfer)

    def _pending_configuration_after_applied(self) -> bool:
        return self._history.any_between(self.log.applied, self.log.committed)

    def _campaign(self, pre: bool, transfer: bool) -> None:
        if pre:
            self._become_pre_candidate()
            vote_term, kind = self.term + 1, _T_PRE_VOTE
        else:
            self._become_candidate()
            vote_term, kind = self.term, _T_VOTE
        if self._poll(self.id, True, self.fresh):
            return
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for member in sorted(self.configuration.voters):
            if member != self.id:
                self._send(
                    kind,
                    member,
                    term=vote_term,
                    index=last_index,
                    log_term=last_term,
                    transfer=transfer,
                )

    def _poll(self, member: int, granted: bool, fresh: bool = False) -> bool:
        """Record a vote; returns True when the election is decided. A fresh grant (from a
        member that may have forgotten what it acknowledged) counts only when every voter
        grants: otherwise a majority of the others is needed."""
        voters = self.configuration.voters
        if member in voters and member not in self.votes:
            self.votes[member] = granted
            if granted and fresh:
                self._fresh_votes.add(member)
        yes = sum(1 for v in self.votes.values() if v)
        no = len(self.votes) - yes
        quorum = self.configuration.quorum()
        if yes - len(self._fresh_votes) >= quorum or (yes >= quorum and yes == len(voters)):
            if self.role is _R_PRE_CANDIDATE:
                self._campaign(pre=False, transfer=False)
            else:
                self._become_leader()
            return True
        if no >= quorum:
            self.become_follower(self.term, 0)
            return True
        return False

    def _handle_vote_request(self, m: Message) -> None:
        response = _T_PRE_VOTE_RESPONSE if m.type is _T_PRE_VOTE else _T_VOTE_RESPONSE
        can_vote = (
            self.vote == m.src
            or (self.vote == 0 and self.lead == 0)
            or (m.type is _T_PRE_VOTE and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # Raft 5.2 / 5.4.1. A pre-vote grant answers in the term asked about.
            self._send(response, m.src, term=m.term, fresh=self.fresh)
            if m.type is _T_VOTE:
                self.election_elapsed = 0
                self.vote = m.src
        else:
            self._send(response, m.src, reject=True)

    def _in_lease(self) -> bool:
        return (
            self.options.check_quorum
            and self.lead != 0
            and self.election_elapsed < self.options.election_ticks_lower
        )

    # ---- role step functions -----------------------------------------------------------------
    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t is _T_APPEND:
            self.election_elapsed = 0
            self.lead = m.src
            self._handle_append(m)
        elif t is _T_HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.src
            self._handle_heartbeat(m)
        elif t is _T_SNAPSHOT:
            self.election_elapsed = 0
            self.lead = m.src
            self._handle_snapshot(m)
        elif t is _T_TIMEOUT_NOW:
            if self.promotable:
                self._hup(transfer=True)
        elif t is _T_READ_INDEX:
            if self.lead:
                self._send(_T_READ_INDEX, self.lead, context=m.context, term=0)
        elif t is _T_READ_INDEX_RESPONSE:
            self.read_states.append(ReadState(m.index, m.context))
        elif t is _T_TRANSFER_LEADER:
            if self.lead:
                self._send(_T_TRANSFER_LEADER, self.lead, index=m.index, term=0)

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        if t in (_T_APPEND, _T_HEARTBEAT, _T_SNAPSHOT):
            self.become_follower(m.term, m.src)  # Raft 5.2: a leader of our term exists
            self._step_follower(m)
        elif (t is _T_VOTE_RESPONSE and self.role is _R_CANDIDATE) or (
            t is _T_PRE_VOTE_RESPONSE and self.role is _R_PRE_CANDIDATE
        ):
            self._poll(m.src, not m.reject, m.fresh)

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t is _T_CHECK_QUORUM:
            if not self._quorum_active():
                self.become_follower(  # thesis 6.2
                    self.term, 0, LeadershipLost(LeadershipLossReason.CHECK_QUORUM, self.term))
            return
        if t is _T_READ_INDEX:
            self._leader_read_index(m)
            return
        if t is _T_TRANSFER_LEADER:
            self._leader_transfer(m.index)
            return
        if t is _T_MEMBER_INFO:
            self._handle_member_info(m)
            return
        if t is _T_SNAPSHOT_STATUS:
            # Only failures matter: success is the follower's own APPEND_RESPONSE.
            pr = self.progress.get(m.index)
            if m.reject and pr is not None and pr.state is _P_SNAPSHOT:
                pr.pending_snapshot = 0
                pr.become_probe()
                pr.probe_sent = True  # wait for a heartbeat response before probing again
            return
        pr = self.progress.get(m.src)
        if pr is None:
            return
        pr.heard_tick = self.ticks
        if t is _T_APPEND_RESPONSE:
            pr.recent_active = True
            pr.response_tick = self.ticks
            self._handle_append_response(m, pr)
        elif t is _T_SNAPSHOT_RESPONSE:
            pr.recent_active = True
            pr.response_tick = self.ticks
            if pr.state is _P_SNAPSHOT and m.index == pr.pending_snapshot:
                self._handle_snapshot_response(m, pr)
        elif t is _T_HEARTBEAT_RESPONSE:
            pr.recent_active = True
            if (
                pr.state is _P_SNAPSHOT
                and self.ticks - pr.response_tick >= 2 * self.options.heartbeat_ticks
            ):
                # a chunk or its answer was lost: send again from the confirmed offset
                pr.response_tick = self.ticks
                pr.snapshot_rewind(pr.snapshot_offset)
                self._send_snapshot_chunks(m.src, pr)
            pr.lease_tick = max(pr.lease_tick, m.index)
            pr.probe_sent = False
            oldest = pr.inflights.oldest_tick()
            if (
                pr.state is _P_REPLICATE
                and oldest is not None
                and m.index - oldest >= 2 * self.options.heartbeat_ticks
            ):
                # This heartbeat left two heartbeat intervals after an append that is still
                # unanswered, and came back: the append (or its answer) was lost. Probe again
                # from the match index.
                pr.become_probe()
            last = self.log.last_index()
            if pr.match < last and (pr.state is not _P_REPLICATE or pr.next <= last):
                # behind, and not merely waiting for answers to appends already in flight
                self._send_append(m.src)
            if m.context:
                self._ack_read(m.src, m.context)

    # ---- replication (leader) ----------------------------------------------------------------
    def _append_as_leader(self, batch: EntryBatch) -> None:
        self.log.append(batch)
        self.uncommitted_bytes += batch.nbytes
        self._uncommitted_batches.append((batch.last_index, batch.nbytes))
        configs = batch.config_positions
        if len(configs):
            self._scan_configurations(batch.first_index, batch.last_index + 1)
            self.pending_conf_index = batch.last_index
        me = self._own_progress
        if me is None:
            raise InvariantError("a leader without its own progress appended")
        me.next = batch.last_index + 1
        self._broadcast_append()

    def _after_commit(self) -> None:
        """The commit index moved. New entries go out at once (they carry it); a follower
        with nothing new to receive learns it from the next append, or from an empty one at
        the next tick, rather than from a message of its own now. That saves a message and
        its answer per follower per commit: with one write in flight, most of the work."""
        self._broadcast_append(send_if_empty=False)
        self._commit_unsent = True

    def _send_commit(self) -> None:
        """At a tick: tell the followers that have not heard it the commit index."""
        self._commit_unsent = False
        committed = self.log.committed
        sent = self._commit_sent
        for member in self._others:
            if sent.get(member, 0) < committed:
                self._send_append(member)

    def _broadcast_append(self, send_if_empty: bool = True) -> None:
        for member in self._others:
            self._send_append(member, send_if_empty)

    def _progress_changed(self) -> None:
        """The leader tracks other members now: ``_others``, the order it sends to them in
        (by id: the same on every run, so the simulator's traces are)."""
        others = [member for member in self.progress if member != self.id]
        others.sort()
        self._others = others
        self._voters_of = None  # the voters' progress is read anew (``_track_voters``)
        self._own_progress = self.progress.get(self.id)

    def _send_append(self, to: int, send_if_empty: bool = True) -> bool:
        pr = self.progress[to]
        if pr.is_paused():
            return False
        log = self.log
        if not send_if_empty and pr.next == log.last_index() + 1:
            # nothing new for it (the term at its ``next - 1``, the last index, is always
            # known, so the snapshot branch below cannot be the answer either)
            return False
        prev = pr.next - 1
        prev_term = self.term if self._in_own_term(prev) else log.term_or_none(prev)
        try:
            if prev_term is None:
                raise LogCompactedError(f"term at {prev} is compacted")
            entries = log.entries(pr.next, log.last_index() + 1, self._append_bytes_max)
        except LogCompactedError:
            return self._send_snapshot(to, pr)
        except LogUnavailableError:
            return False
        if not len(entries) and not send_if_empty:
            return False
        commit = log.committed
        # the hottest message: every field given, set directly (a C call when compiled)
        self._messages.append(wire_message(_T_APPEND, self.id, to, self.term, prev_term, prev,
                                           commit, entries, False, 0, 0, b"", None, False, 0,
                                           True, False))
        self._commit_sent[to] = commit
        if len(entries):
            if pr.state is _P_REPLICATE:
                pr.next = entries.last_index + 1
                pr.inflights.add(entries.last_index, entries.nbytes, self.ticks)
            else:
                pr.probe_sent = True
        elif pr.state is _P_PROBE:
            pr.probe_sent = True
        return True

    def _snapshot_to_send(self) -> Snapshot | None:
        """The storage's snapshot, or None while it is being prepared (a disk state machine's
        store is exported off the loop; etcd's ErrSnapshotTemporarilyUnavailable): the
        follower is served at a later heartbeat response."""
        try:
            return self.log.storage.snapshot()
        except SnapshotUnavailableError:
            return None

    def _send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False  # do not ship a snapshot to a member we have not heard from
        snapshot = self._snapshot_to_send()
        if snapshot is None:
            return False
        invariant(snapshot.meta.index > 0, "log compacted without a snapshot")
        pr.become_snapshot(snapshot.meta.index)
        pr.response_tick = self.ticks
        self._send_snapshot_chunks(to, pr)
        return True

    def _send_snapshot_chunks(self, to: int, pr: Progress) -> None:
        """Send chunks from ``pr.snapshot_sent`` while the window allows: at most
        ``snapshot_inflight_bytes_max`` bytes past what the follower confirmed (one chunk
        while probing), each chunk read from storage as it is sent (the snapshot's data is a
        file-backed buffer: nothing holds it whole). Each chunk is answered by a
        SNAPSHOT_RESPONSE naming the next offset the follower wants, the last one by an
        APPEND_RESPONSE once the snapshot is installed."""
        snapshot = self._snapshot_to_send()
        if snapshot is None:
            return  # a newer one is being prepared: sent at a later heartbeat response
        meta = snapshot.meta
        if meta.index != pr.pending_snapshot:
            pr.become_snapshot(meta.index)  # a newer snapshot replaced it: restart
        data = snapshot.data
        size = len(data)
        chunk_bytes = self.options.snapshot_chunk_bytes
        window = chunk_bytes if pr.snapshot_probing else self.options.snapshot_inflight_bytes_max
        while not pr.snapshot_done_sent and (
            pr.snapshot_sent == pr.snapshot_offset
            or pr.snapshot_sent - pr.snapshot_offset < window
        ):
            offset = pr.snapshot_sent
            end = min(size, offset + chunk_bytes)
            chunk = Snapshot(meta, bytes(data[offset:end]))
            self._send(
                _T_SNAPSHOT, to, snapshot=chunk, snapshot_offset=offset, snapshot_done=end == size
            )
            pr.snapshot_sent = end
            pr.snapshot_done_sent = end == size

    def _handle_snapshot_response(self, m: Message, pr: Progress) -> None:
        """The follower wrote the snapshot up to ``m.snapshot_offset``: slide the window. A
        gap (``reject``: a chunk it could not use, after a lost one or at the start of a
        transfer it had partly received) sends again from its offset, one chunk at a time
        until it confirms one; a stale or duplicate answer changes nothing."""
        offset = m.snapshot_offset
        if m.reject:
            if pr.snapshot_probing and pr.snapshot_offset == offset:
                return  # already sending again from there
            pr.snapshot_offset = offset
            pr.snapshot_rewind(offset)
        elif offset > pr.snapshot_offset:
            pr.snapshot_offset = offset
            pr.snapshot_probing = False
            if pr.snapshot_sent < offset:
                pr.snapshot_rewind(offset)
                pr.snapshot_probing = False
        else:
            return
        self._send_snapshot_chunks(m.src, pr)

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        if m.reject:
            hint = m.reject_hint
            if m.hint_term > 0:
                hint = self.log.find_conflict_by_term(m.reject_hint, m.hint_term)
            if pr.maybe_decrease_to(m.index, hint):
                if pr.state is _P_REPLICATE:
                    pr.become_probe()
                self._send_append(m.src)
            return
        if pr.maybe_update(m.index):
            if pr.state is _P_PROBE:
                pr.become_replicate()
            elif pr.state is _P_SNAPSHOT and pr.match >= pr.pending_snapshot:
                pr.become_probe()
                pr.become_replicate()
            elif pr.state is _P_REPLICATE:
                pr.inflights.free_to(m.index)
            if m.src in self._warmup:  # after the state change: a promotion sends appends
                self._advance_catch_up(m.src, pr)
            if self._maybe_commit():
                self._after_commit()
            elif m.src != self.id:
                while self._send_append(m.src, send_if_empty=False):
                    pass
            if m.src == self.lead_transferee and pr.match == self.log.last_index():
                self._send(_T_TIMEOUT_NOW, m.src)
        elif pr.state is _P_REPLICATE:
            pr.inflights.free_to(m.index)

    def _maybe_commit(self) -> bool:
        """Raft 5.3/5.4.2: commit the majority-matched index if it is from the current term."""
        index = self._quorum_match()
        if index <= self.log.committed:
            return False
        if not self._in_own_term(index) and self.log.term_or_none(index) != self.term:
            return False
        self.log.commit_to(index)
        self.fresh = False  # a commit of this leader's own term: caught up by definition
        uncommitted = self._uncommitted_batches
        while uncommitted and uncommitted[0][0] <= index:
            self.uncommitted_bytes -= uncommitted.popleft()[1]
        self._release_reads_waiting_for_commit()
        self._maybe_promote()
        if self._voters_of is not self.configuration:  # changed by a promotion just now
            self._track_voters()
        if not self._voter_self and self.pending_conf_index <= index:
            # Thesis 4.2.2: a leader that is not part of the committed configuration steps
            # down (not a voter nor a learner of it: ``_voter_self``).
            self.become_follower(
                self.term, 0, LeadershipLost(LeadershipLossReason.REMOVED, self.term))
        return True

    def _quorum_match(self) -> int:
        """The largest index a majority of the voters have matched (``majority_index`` of
        their matches, 0 for a voter without progress). One to three voters, most clusters,
        are read without a list (compiled: C comparisons on the voters' ``Progress``)."""
        if self._voters_of is not self.configuration:
            self._track_voters()
        voters = self._voter_progress
        count = len(voters)
        if count == 3:
            first, second, third = voters[0], voters[1], voters[2]
            a, b, c = first.match, second.match, third.match
            return max(min(a, b), min(max(a, b), c))  # the median
        if count == 1:
            first = voters[0]
            return first.match
        if count == 2:
            first, second = voters[0], voters[1]
            return min(first.match, second.match)
        return majority_index([pr.match for pr in voters])

    def _track_voters(self) -> None:
        """Note the voters' progress for ``_quorum_match``, and whether this member is in the
        configuration, for the configuration in force and the progress as it is."""
        configuration = self.configuration
        progress = self.progress
        self._voter_progress = [progress.get(v, _NO_PROGRESS) for v in sorted(configuration.voters)]
        self._voter_self = self.id in configuration.voters or self.id in configuration.learners
        self._voters_of = configuration

    def _in_own_term(self, index: int) -> bool:
        """Leader: the entry at ``index`` is one it appended in its term, so its term is
        ``self.term`` without reading the log (a leader's log only grows, and from
        ``_term_start`` on holds only entries of its term)."""
        return self._term_start <= index <= self.log.last_index()

    def _broadcast_heartbeat(self, context: bytes) -> None:
        for member in self._others:
            pr = self.progress[member]
            self._send(
                _T_HEARTBEAT,
                member,
                commit=min(pr.match, self.log.committed),
                index=self.ticks,
                context=context,
            )

    def _quorum_active(self) -> bool:
        active = 0
        for member in self.configuration.voters:
            pr = self.progress.get(member)
            if member == self.id or (pr is not None and pr.recent_active):
                active += 1
        for member, pr in self.progress.items():
            if member != self.id:
                pr.recent_active = False
        return active >= self.configuration.quorum()

    def _quorum_lease_tick(self) -> int:
        ticks = []
        for member in self.configuration.voters:
            pr = self.progress.get(member)
            if member == self.id:
                ticks.append(self.ticks)
            elif pr is not None:
                ticks.append(pr.lease_tick)
            else:
                ticks.append(-(2**62))
        return majority_index(ticks)

    # ---- read index (thesis 6.4) -------------------------------------------------------------
    def _leader_read_index(self, m: Message) -> None:
        requester = m.src
        if self.configuration.voters == {self.id}:
            self._answer_read(requester, self.log.committed, m.context)
            return
        if not self.committed_in_current_term():
            # Thesis 6.4 step 1: the commit index is only known once an entry of this term
            # commits (the no-op); queue until then.
            self._reads.wait_for_commit(m)
            return
        self._reads.add(m.context, self.log.committed, requester, self.id)
        self._broadcast_heartbeat(m.context)

    def _release_reads_waiting_for_commit(self) -> None:
        if self._reads.waiting and self.committed_in_current_term():
            for m in self._reads.take_waiting():
                self._leader_read_index(m)

    def _ack_read(self, member: int, context: bytes) -> None:
        done = self._reads.ack(member, context, self.configuration.voters,
                               self.configuration.quorum())
        for r in done:  # an acknowledged heartbeat confirms every earlier request too
            self._answer_read(r.requester, r.index, r.context)

    def _answer_read(self, requester: int, index: int, context: bytes) -> None:
        if requester == self.id:
            self.read_states.append(ReadState(index, context))
        else:
            self._send(_T_READ_INDEX_RESPONSE, requester, index=index, context=context)

    # ---- leadership transfer (thesis 3.10) ---------------------------------------------------
    def _leader_transfer(self, target: int) -> None:
        if target == self.id or target not in self.configuration.voters:
            return
        if self.lead_transferee == target:
            return
        self.lead_transferee = target
        self._resigning = False
        self.election_elapsed = 0
        pr = self.progress[target]
        if pr.match == self.log.last_index():
            self._send(_T_TIMEOUT_NOW, target)
        else:
            self._send_append(target)

    def _higher_term_loss(self, m: Message) -> LeadershipLost | None:
        """Why a leader steps down for ``m`` of a higher term: the target of its transfer
        campaigned (or leads), or another member has a newer term."""
        if self.role is not _R_LEADER:
            return None
        if self.lead_transferee and m.src == self.lead_transferee:
            reason = (LeadershipLossReason.RESIGN if self._resigning
                      else LeadershipLossReason.TRANSFER)
        else:
            reason = LeadershipLossReason.HIGHER_TERM
        return LeadershipLost(reason, self.term, m.src, m.term)

    # ---- follower handlers -------------------------------------------------------------------
    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self._send(_T_APPEND_RESPONSE, m.src, index=self.log.committed)
            return
        entries = m.entries
        if entries is not None and len(entries) and entries.first_index != m.index + 1:
            return  # malformed: entries must follow the previous index
        before = self.log.last_index() + 1
        last_new = self.log.maybe_append(
            m.index, m.log_term, m.commit, entries if entries is not None else _EMPTY
        )
        if last_new is not None:
            if entries is not None and len(entries):
                self._after_append(min(before, entries.first_index), entries)
            if self.fresh:
                self._maybe_end_fresh()
            # the follower's hottest message: every field given, set directly (a C call)
            self._messages.append(wire_message(_T_APPEND_RESPONSE, self.id, m.src, self.term, 0,
                                               last_new, 0, None, False, 0, 0, b"", None, False,
                                               0, True, False))
            return
        hint = min(m.index, self.log.last_index())
        hint = self.log.find_conflict_by_term(hint, m.log_term)
        self._send(
            _T_APPEND_RESPONSE,
            m.src,
            index=m.index,
            reject=True,
            reject_hint=hint,
            hint_term=self.log.term_or_none(hint) or 0,
        )

    def _after_append(self, from_index: int, entries: EntryBatch) -> None:
        """Configuration entries take effect when appended; truncation reverts them."""
        if (self._history.latest_index() < from_index
                and self.log.last_index() == entries.last_index
                and not entries.count_kind(KIND_CONFIGURATION)):
            return  # the usual case: nothing reverted, nothing new
        self._drop_configurations_from(from_index)
        self._scan_configurations(from_index, self.log.last_index() + 1)

    def _maybe_end_fresh(self) -> None:
        """A fresh follower is caught up once the commit index its leader sent lands on an
        entry of the leader's term (``self.term``) that it holds: the leader committed in its
        own term, so everything committed before is in this member's log (log matching)."""
        committed = self.log.committed
        if committed and self.log.term_or_none(committed) == self.term:
            self.fresh = False

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(min(m.commit, self.log.last_index()))
        if self.fresh:
            self._maybe_end_fresh()
        self._send(_T_HEARTBEAT_RESPONSE, m.src, index=m.index, context=m.context)

    def _handle_snapshot(self, m: Message) -> None:
        chunk = m.snapshot
        if chunk is None:
            return
        meta = chunk.meta
        if meta.index <= self.log.committed:
            self._snapshot_receiving = None
            self._send(_T_APPEND_RESPONSE, m.src, index=self.log.committed)
            return
        receiving = self._snapshot_receiving
        if m.snapshot_offset == 0 and (receiving is None or receiving[0] != meta):
            # the first chunk of a snapshot (a repeated first chunk of the one being received
            # is a duplicate: the answer below says how far we are)
            receiving = self._snapshot_receiving = (meta, 0)
        have = receiving[1] if receiving is not None and receiving[0] == meta else 0
        if receiving is None or receiving[0] != meta or m.snapshot_offset != have:
            # a duplicate (answered with how far we are), or a chunk of another snapshot or
            # past a gap (a ``reject``: the leader sends again from ``have``). The answer
            # goes out after the chunks handed out before it are written (persisted messages)
            self._send(_T_SNAPSHOT_RESPONSE, m.src, index=meta.index, snapshot_offset=have,
                       reject=m.snapshot_offset > have or receiving is None
                       or receiving[0] != meta)
            return
        # the data leaves at once in the next Ready (written to a file by the runtime): this
        # core keeps only the count, and the answer leaves once the chunk is written
        self._snapshot_chunks.append(
            SnapshotChunk(meta, m.snapshot_offset, chunk.data, m.snapshot_done))
        received = have + len(chunk.data)
        if not m.snapshot_done:
            self._snapshot_receiving = (meta, received)
            self._send(_T_SNAPSHOT_RESPONSE, m.src, index=meta.index, snapshot_offset=received)
            return
        self._snapshot_receiving = None
        if self.log.match_term(meta.index, meta.term):
            self.log.commit_to(meta.index)  # we have the entries already: fast-forward
        else:
            # installed from the chunks written (Ready.snapshot after its chunks); the
            # answer below leaves once it is durable
            self._restore(Snapshot(meta, b""))
        self._send(_T_APPEND_RESPONSE, m.src, index=self.log.last_index())

    def _restore(self, snapshot: Snapshot) -> None:
        meta = snapshot.meta
        self.log.restore(snapshot)
        self._history.restore(Configuration.from_snapshot(meta))
        self.configuration = self._history.base

    # ---- configurations ----------------------------------------------------------------------
    def _scan_configurations(self, lo: int, hi: int) -> None:
        if hi <= lo:
            return
        try:
            batch = self.log.entries(lo, hi)
        except (LogCompactedError, LogUnavailableError):
            return
        self._history.add_batch(batch)
        self._refresh_configuration()

    def _drop_configurations_from(self, index: int) -> None:
        self._history.drop_from(index)
        self._refresh_configuration()

    def _refresh_configuration(self) -> None:
        self._history.drop_before(self.log.first_index())
        previous = self.configuration
        self.configuration = self._history.latest()
        if self.role is _R_LEADER and self.configuration != previous:
            last = self.log.last_index()
            for member in self.configuration.members:
                if member not in self.progress:
                    self.progress[member] = self._new_progress(last + 1)
                    self.progress[member].recent_active = True
            for member in list(self.progress):
                if member not in self.configuration.members and member != self.id:
                    del self.progress[member]
            self._progress_changed()
            self._sync_catch_ups()

    # ---- automatic failure detection (phi accrual, Hayashibara et al.) -------------------------
    def _detect_failures(self) -> None:
        """Feed each voter's watch with the tick of its newest answer; remove a voter that
        has looked dead for ``failure_dead_ticks`` (one at a time, above the floor)."""
        heard = {m: pr.heard_tick for m, pr in self.progress.items() if m != self.id}
        self._failures.observe(self.configuration.voters, heard, self.ticks)
        if self.pending_conf_index > self.log.committed:
            return  # one change at a time
        if len(self.configuration.voters) <= self.options.failure_voters_min:
            return  # never below the floor
        options = self.options
        dead = self._failures.dead(self.ticks, options.failure_dead_ticks,
                                   options.failure_unheard_ticks
                                   or 10 * options.failure_dead_ticks)
        if not dead:
            return
        try:
            index = self.remove_member(dead[0])
        except ProposalDroppedError:
            return
        self.events.append(MembershipEvent(MembershipEventKind.REMOVED_DEAD, dead[0], index))

    # ---- warming up new members (thesis 4.2.1) -----------------------------------------------
    def _sync_catch_ups(self) -> None:
        """Track exactly the learners of the configuration in force (a new leader resumes)."""
        self._warmup.sync(self.configuration.learners, self.log.last_index(), self.ticks)

    def _advance_catch_up(self, member: int, pr: Progress) -> None:
        outcome = self._warmup.catch_ups[member].end_round(
            pr.match, self.log.last_index(), self.ticks, self.options.election_ticks_lower,
            self.options.warmup_rounds)
        if outcome is RoundOutcome.PROMOTE:
            self._maybe_promote()
        elif outcome is RoundOutcome.GIVE_UP:
            self._give_up_catch_up(member)

    def _check_catch_ups(self) -> None:
        """Abort warmups that made no progress (the learner's match did not move) for
        ``warmup_rounds`` election timeouts."""
        limit = self.options.warmup_rounds * self.options.election_ticks_upper
        for member, catch_up in self._warmup.items():
            pr = self.progress.get(member)
            match = pr.match if pr is not None else 0
            if catch_up.stalled(match, self.ticks, limit):
                self._give_up_catch_up(member)

    def _give_up_catch_up(self, member: int) -> None:
        if self.pending_conf_index > self.log.committed:
            return  # one change at a time: retry once the pending one commits
        try:
            index = self.remove_member(member)
        except ProposalDroppedError:
            return
        self.events.append(MembershipEvent(MembershipEventKind.CATCH_UP_FAILED, member, index))

    def _maybe_promote(self) -> None:
        if not self._warmup:
            return  # no learner warming up (every commit asks)
        for member in self._warmup.to_promote():
            if self.pending_conf_index > self.log.committed:
                continue
            try:
                index = self.propose_configuration(self.configuration.promote(member))
            except ProposalDroppedError:
                return  # a transfer is under way, or the bound is reached: retry later
            self.events.append(MembershipEvent(MembershipEventKind.PROMOTED, member, index))
            return

    def configuration_at(self, index: int) -> Configuration:
        """The configuration in force at log ``index`` (the newest entry at or before it)."""
        return self._history.at(index)

    def configuration_index(self) -> int:
        """Index of the newest configuration entry in the log after the snapshot; 0 when the
        configuration in force is the snapshot's or the bootstrap's (entries a compaction
        covered are committed: callers compare this index with the commit index)."""
        return self._history.latest_index()

    def compacted_to(self, index: int) -> None:
        """The runtime compacted storage up to ``index``; forget configurations before it."""
        self._history.compacted_to(index)

    # ---- helpers -----------------------------------------------------------------------------
    def _send(self, message_type: MessageType, to: int, **fields: Any) -> None:
        """Queue a message from this member; ``term`` defaults to the current term."""
        fields.setdefault("term", self.term)
        self._messages.append(Message(message_type, self.id, to, **fields))

    def _hard_state(self) -> HardState:
        # every member makes one per Ready that moves its commit index: compiled, HardState
        # is an extension class and this a C call (it was ~3,900 instructions, a Python-level
        # method building a frozen dataclass through object.__setattr__)
        return HardState(self.term, self.vote, self.log.committed)


    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "term": self.term,
            "vote": self.vote,
            "role": self.role.value,
            "leader": self.lead,
            "commit": self.log.committed,
            "applied": self.log.applied,
            "last_index": self.log.last_index(),
            "voters": sorted(self.configuration.voters),
            "learners": sorted(self.configuration.learners),
            "progress": {m: repr(p) for m, p in sorted(self.progress.items())},
        }


_EMPTY = encode_entries(1, 1, [])
#: ``_term_start`` when this member does not lead: past every index
_NO_TERM_START = 2**63 - 1
#: what a leader may send before its Ready is durable: its own replication traffic
_LEADER_TRAFFIC = frozenset({_T_APPEND, _T_HEARTBEAT, _T_SNAPSHOT, _T_TIMEOUT_NOW})
