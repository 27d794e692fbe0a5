"""Deterministic simulation of a cluster of ``pyraft.core`` nodes.

One seed drives every choice: message drops, duplicates, delays and reordering; partitions
(random splits, an isolated leader, one-way links); crashes that lose everything not yet
persisted, and restarts; slow disks; client operations. Time is virtual (ticks). The same
seed replays the same run exactly.

Fault model: the network may lose, duplicate, delay and reorder any message, and partition
members in any pattern (including one direction only). A crash discards the node's memory
and any persistence that had not completed; storage that completed is never lost or damaged
(damaged storage is the WAL's concern, tested with the WAL). Clocks advance at the same rate.
Operator faults: ``wrong-peers`` restarts a member with a bootstrap membership that
contradicts the one it started with (only itself, or a subset: a restart without or with
other ``--peers``), which its stored membership must override; ``amnesia`` crashes a member
whose storage does not survive (a memory-only member, a wiped data directory): it restarts
empty, with the original peers, at most one such member at a time (two forgetting at once
can lose a write that only they held, which no protocol can prevent; so also not once a
membership change was made: a member removed since may be the other holder).

A run has a safety phase (faults on) and a liveness phase (faults off, every member up): a
leader must emerge and a final write must commit on every member within the tick budget.
After every step the checkers verify election safety, log matching (across every pair of
live members), state-machine safety (no two members apply different entries at one index),
commit monotonicity, and the persistence contract on every message sent; each new leader is
checked for every acknowledged write (leader completeness). At the end the client history
(reads through the log, through read index and through leases) is checked for
linearizability.

Each member keeps up to ``ready_pipeline_max`` Readys in flight (``--pipeline``): a Ready's
write completes after its own seeded delay (slow disks), in the order of the Readys, and a
crash loses every Ready not yet complete.

Usage: ``python -m pyraft.testing.sim --seeds 0:100 --nodes 3 --faults all``; with
``--trace-digests`` it prints a digest of each seed's every message and applied entry, to
compare the compiled build with ``PYRAFT_PURE_CORE=1`` (``trace_digest``).
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import os
import random
import sys
import time
import zlib
from collections import deque
from dataclasses import dataclass, field

import msgpack
import numpy as np

from pyraft.core import (
    Configuration,
    LogStorage,
    MemoryLogStorage,
    MessageType,
    RaftOptions,
    ReadState,
    Role,
    Snapshot,
)

# the classes sim.pxd types the harness with, imported from their modules (the compiled
# build reaches their fields and methods directly)
from pyraft.core.messages import Message, Ready
from pyraft.core.raft import RaftNode
from pyraft.errors import (
    InvariantError,
    LogCompactedError,
    NotLeaderError,
    ProposalDroppedError,
)
from pyraft.kv.frames import pack
from pyraft.testing.linearizability import KVModel, Operation, check_history
from raftcore.framing import KIND_COMMAND

# the members of the core's enums the per-step paths compare with
_LEADER = Role.LEADER
_PRE_VOTE = MessageType.PRE_VOTE
_PRE_VOTE_RESPONSE = MessageType.PRE_VOTE_RESPONSE
_VOTE_RESPONSE = MessageType.VOTE_RESPONSE
_SNAPSHOT_RESPONSE = MessageType.SNAPSHOT_RESPONSE
_APPEND_RESPONSE = MessageType.APPEND_RESPONSE

#: the terms of a log as :meth:`Simulation.check_log_matching` compares them: 8 bytes each
_TERM = np.dtype(np.uint64)

FAULTS = ("drop", "duplicate", "delay", "partition", "crash", "slow-disk", "membership",
          "wrong-peers", "amnesia")


class SafetyViolation(Exception):
    """A checked property does not hold. ``prop`` names it."""

    def __init__(self, prop: str, detail: str) -> None:
        super().__init__(f"{prop}: {detail}")
        self.prop = prop
        self.detail = detail


def _below(rng: random.Random, n: int) -> int:
    """``rng.randint(0, n - 1)`` for ``n >= 1``, drawing exactly what it draws: ``random``'s
    rule for a range (``Random._randbelow_with_getrandbits``: as many bits as ``n`` has,
    drawn again while the value is ``n`` or more). The harness draws a delay for every
    message and every Ready; in the compiled build this costs no Python frames."""
    k = n.bit_length()
    r = rng.getrandbits(k)
    while r >= n:
        r = rng.getrandbits(k)
    return r


def _whole(data) -> bytes:
    """A snapshot's data as bytes (storage may give a file-backed buffer)."""
    return data if isinstance(data, bytes) else bytes(data[0:len(data)])


class Trace(deque):
    """The simulation's most recent events, oldest first, read as lines. A delivery, the
    most frequent event, is kept as ``(time, message)`` and described only when the trace is
    read (a failing seed, a test): describing every delivered message cost a tenth of a
    compiled seed. Messages never change after they are made, so the line is the same."""

    __slots__ = ()

    def __iter__(self):
        for item in deque.__iter__(self):
            yield item if item.__class__ is str else f"t{item[0]} deliver {item[1].describe()}"


@dataclass
class SimConfig:
    nodes: int = 3
    faults: frozenset[str] = frozenset(FAULTS)
    safety_ticks: int = 400
    liveness_ticks: int = 400
    clients: int = 3
    keys: int = 3
    drop_rate: float = 0.05
    duplicate_rate: float = 0.02
    delay_ticks_max: int = 3
    crash_rate: float = 0.004
    restart_ticks: tuple[int, int] = (5, 40)
    partition_rate: float = 0.01
    heal_ticks: tuple[int, int] = (10, 60)
    disk_ticks_max: int = 2
    #: ``RaftOptions.ready_pipeline_max`` of every member: how many Readys a member keeps in
    #: flight, each persisted (in order) after its own seeded disk delay; 1: one at a time
    ready_pipeline_max: int = 2
    snapshot_entries: int = 25
    client_timeout_ticks: int = 60
    op_rate: float = 0.5
    #: chance per tick that the leader starts a membership change (add or remove one member)
    membership_rate: float = 0.01
    #: members that replicate but must never lead
    standby: frozenset[int] = frozenset()
    #: automatic removal of dead voters (0: off; see RaftOptions.failure_dead_ticks)
    failure_dead_ticks: int = 0
    #: a voter never heard from is removed after this long (0: ten times the dead window)
    failure_unheard_ticks: int = 0
    failure_voters_min: int = 3
    #: how many of the members start as voters (0: all); the others start outside
    initial_voters: int = 0
    #: run every member on ``pyraft.storage.log.DurableLogStorage`` in this directory (a
    #: crash closes the files without saving anything and the restart recovers from disk)
    storage_dir: str | None = None
    #: ``RaftOptions.fresh_start_guard`` of every member; None: on when ``amnesia`` is a fault
    fresh_start_guard: bool | None = None
    #: chance that a crash is an ``amnesia`` crash (when that fault is on)
    amnesia_rate: float = 0.3
    #: chance that a restart gets wrong peers (when ``wrong-peers`` is on)
    wrong_peers_rate: float = 0.5


@dataclass
class SimResult:
    seed: int
    ok: bool
    prop: str = ""
    detail: str = ""
    trace: list[str] = field(default_factory=list)
    ticks: int = 0
    commits: int = 0
    operations: int = 0
    elections: int = 0

    def line(self) -> str:
        state = "ok" if self.ok else f"FAILED {self.prop}"
        return (
            f"seed {self.seed}: {state} ticks={self.ticks} commits={self.commits} "
            f"operations={self.operations} leaders={self.elections}"
        )


class StateMachine:
    """The replicated key-value model, with results per applied index."""

    def __init__(self) -> None:
        self.data: dict = {}
        self.applied = 0

    def apply(self, index: int, payload: bytes):
        op = tuple(msgpack.unpackb(payload)[2])
        value = self.data.get(op[1])
        new, result = KVModel.step(value, op)
        if new is None:
            self.data.pop(op[1], None)
        else:
            self.data[op[1]] = new
        self.applied = index
        return result

    def snapshot(self) -> bytes:
        return pack([self.applied, sorted(self.data.items())])

    def restore(self, data: bytes) -> None:
        if not data:
            self.data, self.applied = {}, 0
            return
        applied, items = msgpack.unpackb(data)
        self.data = dict((k, v) for k, v in items)
        self.applied = applied


class SimNode:
    """One member: the core, its durable storage, its state machine, and a disk queue."""

    def __init__(self, sim: Simulation, member: int, storage: MemoryLogStorage) -> None:
        self.sim = sim
        self.id = member
        self.storage = storage  # what survives a crash
        options = RaftOptions(
            id=member,
            election_ticks_lower=10,
            election_ticks_upper=20,
            heartbeat_ticks=2,
            lease_ticks=8,
            standby=member in sim.config.standby,
            failure_dead_ticks=sim.config.failure_dead_ticks,
            failure_unheard_ticks=sim.config.failure_unheard_ticks,
            failure_voters_min=sim.config.failure_voters_min,
            fresh_start_guard=sim.fresh_start_guard,
            # small on some seeds: reads that end inside the stored entries are exercised
            append_bytes_max=sim.append_bytes_max,
            inflight_messages_max=8,
            snapshot_chunk_bytes=8,  # several chunks per snapshot: chunking is exercised
            snapshot_inflight_bytes_max=24,  # and a window of three chunks in flight
            ready_pipeline_max=sim.config.ready_pipeline_max,
        )
        self.core = RaftNode(options, storage, random.Random(sim.rng.getrandbits(64)))
        self.sm = StateMachine()
        self.sm.restore(_whole(storage.snapshot().data))
        self.core.log.applied = self.core.log.applying = storage.snapshot().meta.index
        #: Readys being persisted, oldest first, each with the tick its write completes at;
        #: they complete in order (a Ready due earlier waits for the ones before it)
        self.pending: deque[tuple[int, Ready]] = deque()
        #: every Ready up to this number is durable in ``storage`` (a crash keeps them)
        self.durable_number = 0
        self.commit_seen = self.core.log.committed
        self.proposals: dict[int, tuple[int, int]] = {}  # index -> (term, op id)
        self.reads: dict[bytes, int] = {}  # context -> op id
        self.ready_reads: list = []
        #: the term in which this member was last checked for leader completeness
        self.checked_term: int | None = None

    def handle_ready(self) -> None:
        """Take one Ready (the core refuses more than ``ready_pipeline_max`` in flight): send
        its leader traffic now, persist the rest after a seeded delay."""
        core = self.core
        if not core.has_ready():
            return
        rd = core.ready()
        for lost in rd.leadership_lost:
            self.sim.leadership_lost.append((self.id, lost))
            self.sim.trace.append(f"t{self.sim.now} {self.id} lost leadership of term "
                                  f"{lost.term}: {lost.describe()}")
        for m in rd.messages:
            self.sim.send(m)
        delay = 0
        if "slow-disk" in self.sim.active_faults and (rd.must_sync or rd.entries):
            delay = _below(self.sim.rng, self.sim.config.disk_ticks_max + 1)
        self.pending.append((self.sim.now + delay, rd))
        if delay == 0:
            self.finish_due()

    def finish_due(self) -> None:
        """Complete, in order, the Readys whose write is due: persist each, send what waited
        for it, apply; then report them durable. One Ready is acknowledged with ``advance``;
        several that completed together with one ``on_persist_ready`` of the newest (which
        covers the others) and ``advance_apply`` of each."""
        pending = self.pending
        done = []
        while pending and pending[0][0] <= self.sim.now:
            rd = pending.popleft()[1]
            self.finish_persist(rd)
            done.append(rd)
        if not done:
            return
        if len(done) == 1:
            self.core.advance(done[0])
        else:
            self.core.on_persist_ready(done[-1].number)
            for rd in done:
                self.core.advance_apply(rd)
        self.serve_reads()
        self.maybe_snapshot()

    def finish_persist(self, rd: Ready) -> None:
        """Step 2 of ``rd`` (durable from now on), then steps 3 and 4."""
        if rd.number != self.durable_number + 1:
            raise SafetyViolation(
                "persistence order",
                f"node {self.id} persists Ready {rd.number} after Ready {self.durable_number}",
            )
        st = self.storage
        if rd.hard_state is not None:
            if rd.hard_state.commit < st.hard_state.commit:
                raise SafetyViolation(
                    "commit monotonicity",
                    f"node {self.id} persisted commit {rd.hard_state.commit} "
                    f"after {st.hard_state.commit}",
                )
            st.set_hard_state(rd.hard_state)
        received = self.sim.received
        for chunk in rd.snapshot_chunks:  # the "temporary file" of the snapshot received
            if chunk.offset == 0:
                received[self.id] = (chunk.meta, bytearray())
            meta, data = received[self.id]
            if meta != chunk.meta or chunk.offset != len(data):
                raise SafetyViolation(
                    "snapshot stream",
                    f"node {self.id} was handed the chunk at {chunk.offset} of the snapshot "
                    f"at {chunk.meta.index} with {len(data)} bytes of the one at {meta.index}",
                )
            data.extend(chunk.data)
        if rd.snapshot is not None:
            meta, data = received.pop(self.id, (None, b""))
            if meta != rd.snapshot.meta:
                raise SafetyViolation(
                    "snapshot stream",
                    f"node {self.id} installs the snapshot at {rd.snapshot.meta.index} "
                    "without having received it",
                )
            snapshot = Snapshot(meta, bytes(data))
            st.apply_snapshot(snapshot)
            self.sm.restore(snapshot.data)
        for batch in rd.entries:
            st.append(batch)
        self.durable_number = rd.number
        for m in rd.persisted_messages:
            self.sim.check_ready_durable(m, self, rd.number)
            self.sim.send(m)
        for batch in rd.committed:
            for index, term, kind, payload in batch:
                self.sim.check_apply(self.id, index, term, bytes(payload))
                if self.sim.applied_log is not None:
                    self.sim.applied_log.append((self.id, index, term, kind, bytes(payload)))
                result = None
                if kind == KIND_COMMAND and len(payload):
                    result = self.sm.apply(index, bytes(payload))
                else:
                    self.sm.applied = index
                waiting = self.proposals.pop(index, None)
                if waiting is not None:
                    proposed_term, op_id = waiting
                    if proposed_term == term:
                        self.sim.complete(op_id, result)
        self.ready_reads += rd.read_states
        for event in rd.events:
            self.sim.trace.append(
                f"t{self.sim.now} node {self.id} {event.kind.value} {event.member}"
            )

    def serve_reads(self) -> None:
        keep = []
        for rs in self.ready_reads:
            if self.sm.applied >= rs.index:
                op_id = self.reads.pop(rs.context, None)
                if op_id is not None:
                    op = self.sim.ops[op_id].op
                    self.sim.complete(op_id, self.sm.data.get(op[1]))
            else:
                keep.append(rs)
        self.ready_reads = keep

    def maybe_snapshot(self) -> None:
        """Snapshot the state machine at its applied index once enough log has accumulated."""
        st = self.storage
        index = self.sm.applied
        if (
            index > st.last_index()
            or index - st.first_index() + 1 < self.sim.config.snapshot_entries
        ):
            return
        st.create_snapshot(index, self.sm.snapshot(), self.core.configuration)
        self.core.compacted_to(index)
        self.sim.trace.append(f"t{self.sim.now} node {self.id} snapshot at {index}")


class Simulation:
    def __init__(self, seed: int, config: SimConfig) -> None:
        self.seed = seed
        self.config = config
        self.rng = random.Random(seed)
        self.now = 0
        self.active_faults: frozenset[str] = config.faults
        members = list(range(1, config.nodes + 1))
        self.members = members
        configuration = Configuration(frozenset(members[: config.initial_voters or None]))
        self.configuration = configuration
        guard = config.fresh_start_guard
        self.fresh_start_guard = "amnesia" in config.faults if guard is None else guard
        #: members that crashed with amnesia and have not caught up since
        self.forgetful: set[int] = set()
        #: a membership change was made: amnesia stops (a member that forgets while another
        #: that held the same entries left the configuration is two forgetting at once)
        self.membership_changed = False
        # odd seeds send appends of a few entries: reads that end inside the stored entries,
        # with unpersisted ones after them, are exercised
        self.append_bytes_max = 4096 if seed % 2 == 0 else 320
        self.storages = {m: self._open_storage(m) for m in members}
        #: member -> (meta, bytes) of the snapshot being received, as written by the member
        self.received: dict[int, tuple] = {}
        self.nodes: dict[int, SimNode | None] = {
            m: SimNode(self, m, self.storages[m]) for m in members
        }
        self.restart_at: dict[int, int] = {}
        self.queue: list = []  # (deliver_at, seq, message)
        self.seq = 0
        self.blocked: set[tuple[int, int]] = set()  # (src, dst) links that drop everything
        self.heal_at = 0
        self.trace: Trace = Trace(maxlen=200)
        #: per member, the log the last log-matching check read and what it made of it:
        #: (what the log was made of, (first index, terms, their bytes))
        self.matching_cache: dict[int, tuple[tuple, tuple]] = {}
        #: (member, LeadershipLost) from every Ready handled, oldest first
        self.leadership_lost: list = []
        # checkers' state
        self.leaders: dict[int, int] = {}  # term -> leader
        self.applied: dict[int, tuple[int, bytes]] = {}  # index -> (term, payload)
        self.acknowledged: dict[int, int] = {}  # index -> term of acknowledged writes
        self.ops: list[Operation] = []
        self.client_busy: dict[int, tuple[int, int]] = {}  # client -> (op id, deadline)
        self.next_value = 0
        #: when a list: every entry applied, in order, as (member, index, term, kind, payload)
        #: (``commit_digest`` turns it into a fingerprint of the run)
        self.applied_log: list[tuple[int, int, int, int, bytes]] | None = None
        #: when set: sees every message sent and delivered (``trace_digest``)
        self.recorder: TraceRecorder | None = None

    def live(self, member: int) -> SimNode:
        """The node of ``member``, which must be up."""
        node = self.nodes[member]
        if node is None:
            raise LookupError(f"member {member} is down")
        return node

    # ---- network -----------------------------------------------------------------------------
    def send(self, m: Message) -> None:
        self.check_persisted_before_send(m)
        if self.recorder is not None:
            self.recorder.message("send", self.now, m)
        faults = self.active_faults
        if (m.src, m.dst) in self.blocked or (
            "drop" in faults and self.rng.random() < self.config.drop_rate
        ):
            self._report_snapshot(m, ok=False)
            return
        copies = (
            2 if "duplicate" in faults and self.rng.random() < self.config.duplicate_rate else 1
        )
        for _ in range(copies):
            delay = 1
            if "delay" in faults:
                delay += _below(self.rng, self.config.delay_ticks_max + 1)
            self.seq += 1
            heapq.heappush(self.queue, (self.now + delay, self.seq, m))

    def deliver(self) -> None:
        while self.queue and self.queue[0][0] <= self.now:
            _, _, m = heapq.heappop(self.queue)
            node = self.nodes.get(m.dst)
            if node is None or (m.src, m.dst) in self.blocked:
                self._report_snapshot(m, ok=False)
                continue
            self.trace.append((self.now, m))
            if self.recorder is not None:
                self.recorder.message("deliver", self.now, m)
            node.core.step(m)
            self._report_snapshot(m, ok=True)

    def _report_snapshot(self, m: Message, ok: bool) -> None:
        """The transport tells the sender whether a snapshot reached its destination."""
        if m.snapshot is None:
            return
        sender = self.nodes.get(m.src)
        if sender is not None and sender.core.term == m.term:
            sender.core.report_snapshot(m.dst, ok)

    # ---- faults ------------------------------------------------------------------------------
    def inject_faults(self) -> None:
        faults, rng, cfg = self.active_faults, self.rng, self.config
        if "partition" in faults:
            if self.blocked and self.now >= self.heal_at:
                self.blocked = set()
                self.trace.append(f"t{self.now} heal")
            elif not self.blocked and rng.random() < cfg.partition_rate:
                self._partition()
        if "crash" in faults:
            live = [m for m, n in self.nodes.items() if n is not None]
            if live and rng.random() < cfg.crash_rate * len(live):
                victim = rng.choice(live)
                self.crash(victim)
                # a member that forgot is a memory-only one until it catches up: its every
                # crash forgets again
                if victim in self.forgetful or (
                        "amnesia" in faults and not self.forgetful
                        and not self.membership_changed and rng.random() < cfg.amnesia_rate):
                    self.forget(victim)
        for member in list(self.forgetful):
            node = self.nodes[member]
            if node is not None and not node.core.fresh:
                self.forgetful.discard(member)
        if "membership" in faults and rng.random() < cfg.membership_rate:
            self._change_membership()
        for member, at in list(self.restart_at.items()):
            if self.now >= at:
                self.restart(member)

    def _change_membership(self) -> None:
        """The leader adds a member that is out (learner, warmup, promotion) or removes one
        (the leader itself included), one change at a time and never below two voters."""
        leader = self.current_leader()
        if not leader or self.forgetful:  # see membership_changed
            return
        core = self.live(leader).core
        configuration = core.configuration
        if core.pending_conf_index > core.log.committed or configuration.learners:
            return
        outside = sorted(set(self.members) - configuration.members)
        voters = sorted(configuration.voters)
        try:
            if outside and (len(voters) <= 2 or self.rng.random() < 0.5):
                member = self.rng.choice(outside)
                core.add_member(member)
                self.membership_changed = True
                self.trace.append(f"t{self.now} leader {leader} adds {member}")
            elif len(voters) > 2:
                member = self.rng.choice(voters)
                core.remove_member(member)
                self.membership_changed = True
                self.trace.append(f"t{self.now} leader {leader} removes {member}")
        except ProposalDroppedError:
            pass

    def _partition(self) -> None:
        rng, members = self.rng, self.members
        kind = rng.choice(["split", "isolate-leader", "one-way"])
        leader = self.current_leader()
        if kind == "isolate-leader" and leader:
            side = {leader}
        elif kind == "one-way":
            a, b = rng.sample(members, 2)
            self.blocked = {(a, b)}
            self.heal_at = self.now + rng.randint(*self.config.heal_ticks)
            self.trace.append(f"t{self.now} partition one-way {a}->{b}")
            return
        else:
            side = set(rng.sample(members, rng.randint(1, len(members) - 1)))
        other = set(members) - side
        self.blocked = {(a, b) for a in side for b in other} | {(b, a) for a in side for b in other}
        self.heal_at = self.now + rng.randint(*self.config.heal_ticks)
        self.trace.append(f"t{self.now} partition {sorted(side)} | {sorted(other)}")

    def _open_storage(self, member: int, peers: Configuration | None = None):
        """Open ``member``'s storage as the runtime does: the operator's bootstrap ``peers``
        (default: the cluster's) are recorded only by a store that holds no membership."""
        peers = peers or self.configuration
        storage: LogStorage
        if self.config.storage_dir is None:
            storage = MemoryLogStorage()
        else:
            from pyraft.storage.log import DurableLogStorage

            storage = DurableLogStorage(
                self._storage_path(member),
                sync="never",  # the process "crashes", the machine does not: data stays
                segment_bytes_max=2048,
                commit_hint_interval_entries=7,
                commit_hint_interval_ms=0,  # no clock: a seed's trace is the same every run
            )
        self.bootstrap(storage, peers)
        return storage

    @staticmethod
    def bootstrap(storage, peers: Configuration) -> None:
        """The runtime's rule (``RaftCluster.start``): the stored membership wins."""
        if storage.membership() is None:
            storage.record_membership(peers)

    def _storage_path(self, member: int) -> str:
        directory = self.config.storage_dir
        if directory is None:
            raise ValueError("the simulation keeps its members' storage in memory")
        return os.path.join(directory, f"seed{self.seed}", f"member{member}")

    def _operator_peers(self, member: int) -> Configuration:
        """The bootstrap membership an operator gives a restart: the cluster's, or (with the
        ``wrong-peers`` fault) this member alone or a subset with it."""
        if "wrong-peers" not in self.active_faults \
                or self.rng.random() >= self.config.wrong_peers_rate:
            return self.configuration
        others = [m for m in self.members if m != member]
        kept = self.rng.sample(others, self.rng.randint(0, len(others) - 1))
        self.trace.append(f"t{self.now} operator restarts {member} with peers "
                          f"{sorted([member, *kept])}")
        return Configuration(frozenset([member, *kept]))

    def forget(self, member: int) -> None:
        """Amnesia: the crashed member's storage is gone (memory-only, or a wiped disk)."""
        storage = self.storages[member]
        if storage is not None and hasattr(storage, "close"):
            storage.close()
        if self.config.storage_dir is not None:
            import shutil

            shutil.rmtree(self._storage_path(member), ignore_errors=True)
        self.storages[member] = None
        self.forgetful.add(member)
        self.trace.append(f"t{self.now} {member} forgets everything")

    def crash(self, member: int) -> None:
        self.nodes[member] = None
        self.received.pop(member, None)  # a partial snapshot file does not survive a restart
        if self.config.storage_dir is not None:
            self.storages[member].wal.close()  # no hard-state save: what was saved stays
            self.storages[member] = None
        self.restart_at[member] = self.now + self.rng.randint(*self.config.restart_ticks)
        for client, (op_id, _) in list(self.client_busy.items()):
            if self.ops[op_id].id == member:  # the op was sent to this node: outcome unknown
                del self.client_busy[client]
        self.trace.append(f"t{self.now} crash {member}")

    def restart(self, member: int) -> None:
        del self.restart_at[member]
        if member in self.forgetful:  # a new member with the original peers
            if self.storages[member] is None:
                self.storages[member] = self._open_storage(member)
        elif self.storages[member] is None:  # reopened from disk
            self.storages[member] = self._open_storage(member, self._operator_peers(member))
        else:  # the memory store lives on; the operator's peers meet what it holds
            self.bootstrap(self.storages[member], self._operator_peers(member))
        self.nodes[member] = SimNode(self, member, self.storages[member])
        self.trace.append(f"t{self.now} restart {member}")

    # ---- clients -----------------------------------------------------------------------------
    def current_leader(self) -> int:
        best, best_term = 0, -1
        for member, node in self.nodes.items():
            if node is not None and node.core.role is _LEADER and node.core.term > best_term:
                best, best_term = member, node.core.term
        return best

    def run_clients(self) -> None:
        cfg = self.config
        for client in range(cfg.clients):
            busy = self.client_busy.get(client)
            if busy is not None:
                if self.now < busy[1]:
                    continue
                del self.client_busy[client]  # timed out: the outcome stays unknown
            if self.rng.random() >= cfg.op_rate:
                continue
            self.submit(client)

    def submit(self, client: int, op: tuple | None = None, force_log: bool = False) -> int | None:
        rng = self.rng
        if op is None:
            key = f"k{rng.randrange(self.config.keys)}"
            choice = rng.random()
            self.next_value += 1
            if choice < 0.35:
                op = ("put", key, self.next_value)
            elif choice < 0.7:
                op = ("get", key)
            elif choice < 0.8:
                op = ("delete", key)
            else:
                op = (
                    "cas",
                    key,
                    rng.choice([None, self.next_value - 1, self.next_value - 2]),
                    self.next_value,
                )
        live = [m for m, n in self.nodes.items() if n is not None]
        if not live:
            return None
        leader = self.current_leader()
        read_path = rng.random() if op[0] == "get" and not force_log else 1.0
        via_read_index = read_path < 0.7  # 0.35 lease (when held), 0.35 read index, 0.3 log
        target = rng.choice(live) if via_read_index else (leader or rng.choice(live))
        node = self.live(target)
        op_id = len(self.ops)
        core = node.core
        if read_path < 0.35 and core.lease_valid() and core.committed_in_current_term():
            # Lease read (thesis 6.4.1): no message at all; the read point is the commit index
            # now. Any member that believes it leads and holds a lease is asked, stale ones
            # included: the lease must make that safe.
            context = pack([client, op_id])
            self.ops.append(Operation(client, op, self.now, None, None, target))
            node.reads[context] = op_id
            node.ready_reads.append(ReadState(core.log.committed, context))
            node.serve_reads()
        elif via_read_index:
            context = pack([client, op_id])
            self.ops.append(Operation(client, op, self.now, None, None, target))
            node.reads[context] = op_id
            node.core.read_index(context)
        else:
            payload = pack([client, op_id, list(op)])
            try:
                first, _ = node.core.propose([payload])
            except (NotLeaderError, ProposalDroppedError):
                return None  # refused before it could take effect: not part of the history
            self.ops.append(Operation(client, op, self.now, None, None, target))
            node.proposals[first] = (node.core.term, op_id)
        self.client_busy[client] = (op_id, self.now + self.config.client_timeout_ticks)
        return op_id

    def complete(self, op_id: int, result) -> None:
        op = self.ops[op_id]
        if op.ret is not None:
            return
        self.ops[op_id] = Operation(op.client, op.op, op.call, self.now, result, op.id)
        busy = self.client_busy.get(op.client)
        if busy is not None and busy[0] == op_id:
            del self.client_busy[op.client]

    # ---- checks ------------------------------------------------------------------------------
    def check_apply(self, member: int, index: int, term: int, payload: bytes) -> None:
        seen = self.applied.get(index)
        if seen is None:
            self.applied[index] = (term, payload)
            self.acknowledged[index] = term
        elif seen != (term, payload):
            raise SafetyViolation(
                "state-machine safety",
                f"node {member} applied (t{term}) at {index}, another node applied (t{seen[0]})",
            )

    def check_step(self) -> None:
        for member, node in self.nodes.items():
            if node is None:
                continue
            core = node.core
            if core.role is _LEADER:
                if member in self.config.standby:
                    raise SafetyViolation("standby", f"standby member {member} became leader")
                other = self.leaders.setdefault(core.term, member)
                if other != member:
                    raise SafetyViolation(
                        "election safety", f"nodes {other} and {member} both lead term {core.term}"
                    )
                if node.checked_term != core.term:
                    node.checked_term = core.term
                    self.check_leader_completeness(member)
                self.check_leader_counts_durable(member)
            if core.readys_in_flight != len(node.pending):
                raise SafetyViolation(
                    "persistence contract",
                    f"node {member}'s core has {core.readys_in_flight} Readys in flight, "
                    f"{len(node.pending)} are being persisted",
                )
            if core.log.committed < node.commit_seen:
                raise SafetyViolation(
                    "commit monotonicity",
                    f"node {member} commit went {node.commit_seen} -> {core.log.committed}",
                )
            node.commit_seen = core.log.committed

    def check_ready_durable(self, m: Message, node: SimNode, ready: int) -> None:
        """A message of Ready ``ready``'s ``persisted_messages`` leaves only once that Ready
        and every one before it are durable (``Ready`` docstring, step 3)."""
        if node.durable_number < ready:
            raise SafetyViolation(
                "persistence contract",
                f"node {m.src} sent {m.describe()} of Ready {ready} with Readys durable "
                f"only up to {node.durable_number}",
            )

    def check_persisted_before_send(self, m: Message) -> None:
        """The persistence contract: what a message promises is durable before it leaves."""
        mtype = m.type
        if mtype is _PRE_VOTE or mtype is _PRE_VOTE_RESPONSE:
            return  # pre-votes ask about term + 1 and promise nothing (thesis 9.6)
        stored = self.storages[m.src]
        hard = stored.hard_state
        if m.term > hard.term:
            raise SafetyViolation(
                "persistence contract",
                f"node {m.src} sent {m.describe()} before persisting term {m.term} "
                f"(durable term {hard.term})",
            )
        if (
            mtype is _VOTE_RESPONSE
            and not m.reject
            and hard.term == m.term
            and hard.vote != m.dst
        ):
            # (a durable later term also rules out a second vote in m.term: that is safe)
            raise SafetyViolation(
                "persistence contract",
                f"node {m.src} granted its vote to {m.dst} before persisting it",
            )
        if (
            mtype is _SNAPSHOT_RESPONSE
            and m.snapshot_offset
            and stored.first_index() <= m.index  # not installed yet: the chunks are written
        ):
            # a chunk is acknowledged only once written (and the last once installed)
            meta, data = self.received.get(m.src, (None, b""))
            if meta is None or meta.index != m.index or len(data) < m.snapshot_offset:
                raise SafetyViolation(
                    "persistence contract",
                    f"node {m.src} acknowledged {m.snapshot_offset} bytes of the snapshot at "
                    f"{m.index} with {len(data)} written"
                    + ("" if meta is None else f" of the one at {meta.index}"),
                )
        if mtype is _APPEND_RESPONSE and not m.reject and m.index:
            durable = stored.last_index()
            if durable < m.index:
                raise SafetyViolation(
                    "persistence contract",
                    f"node {m.src} acknowledged index {m.index} with only {durable} durable",
                )

    def check_leader_counts_durable(self, member: int) -> None:
        """Thesis 10.2.1: a leader counts itself in the quorum only for entries it made
        durable: its own match index is in its storage, with the term its log has there."""
        node = self.live(member)
        core, stored = node.core, self.storages[member]
        progress = core.progress.get(member)
        if progress is None:
            return
        match = progress.match
        if match < stored.first_index():
            return
        durable = stored.last_index()
        if match > durable or stored.term(match) != core.log.term_or_none(match):
            raise SafetyViolation(
                "persistence contract",
                f"leader {member} counts itself up to {match} with {durable} durable"
                + ("" if match > durable else f" (durable term {stored.term(match)} there, "
                   f"term {core.log.term_or_none(match)} in its log)"),
            )

    def check_leader_completeness(self, member: int) -> None:
        leader = self.live(member).core
        log = leader.log
        first = log.first_index()
        for index, term in self.acknowledged.items():
            if index < first:
                continue
            have = log.term_or_none(index)
            if have != term:
                raise SafetyViolation(
                    "leader completeness",
                    f"leader {member} of term {leader.term} has term {have} at "
                    f"{index}, where an entry of term {term} was committed",
                )

    def check_log_matching(self) -> None:
        """Log matching (Raft 5.3) across every pair of live members: where two logs hold
        the same term at an index, they hold the same terms at every index before it.

        The usual case, a common range that agrees, is one comparison of the two ranges'
        raw bytes (the terms are 64-bit integers); only a range that differs somewhere is
        looked at index by index. A log held in memory whose parts are the very objects of
        the last check (the same bounds, the same stored and unstable batches: they never
        change once made) is not read again."""
        logs = {}
        cache = self.matching_cache
        for member, node in self.nodes.items():
            if node is None:
                continue
            log = node.core.log
            lo = log.first_index()
            hi = log.last_index() + 1
            stored = getattr(log.storage, "_batches", None)  # a MemoryLogStorage's batches
            made_of = None
            if stored is not None:
                made_of = (lo, hi, log.unstable_offset, log.unstable_snapshot, tuple(stored),
                           tuple(log.unstable))
                cached = cache.get(member)
                if cached is not None and cached[0] == made_of:
                    logs[member] = cached[1]
                    continue
            try:
                terms = log.terms(lo, hi)
            except LogCompactedError:
                continue
            if terms.dtype is not _TERM:  # (the core hands out uint64 terms)
                terms = terms.astype(_TERM)
            read = logs[member] = (lo, terms, terms.tobytes())
            if made_of is not None:
                cache[member] = (made_of, read)
        members = sorted(logs)
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                (lo_a, ta, raw_a), (lo_b, tb, raw_b) = logs[a], logs[b]
                lo = max(lo_a, lo_b)
                hi = min(lo_a + len(ta), lo_b + len(tb))
                if hi <= lo:
                    continue
                if raw_a[(lo - lo_a) * 8 : (hi - lo_a) * 8] \
                        == raw_b[(lo - lo_b) * 8 : (hi - lo_b) * 8]:
                    continue  # the usual case: the common range agrees
                x, y = ta[lo - lo_a : hi - lo_a], tb[lo - lo_b : hi - lo_b]
                differ = np.flatnonzero(x != y)
                if not len(differ):
                    continue
                same = np.flatnonzero(x == y)
                if len(same) and differ[0] < same[-1]:
                    raise SafetyViolation(
                        "log matching",
                        f"nodes {a} and {b} agree at index {lo + int(same[-1])} but differ at "
                        f"{lo + int(differ[0])}",
                    )

    # ---- the run -----------------------------------------------------------------------------
    def step_once(self) -> None:
        self.now += 1
        self.inject_faults()
        for node in self.nodes.values():
            if node is not None:
                node.core.tick()
        self.deliver()
        for node in list(self.nodes.values()):
            if node is None:
                continue
            node.finish_due()
            node.handle_ready()
        self.check_step()
        self.check_log_matching()

    def run(self) -> SimResult:
        result = SimResult(self.seed, True)
        cfg = self.config
        try:
            for _ in range(cfg.safety_ticks):
                self.run_clients()
                self.step_once()
            self.heal_all()
            self.liveness()
            self.check_log_matching()
            verdict = check_history(self.ops, max_states=500_000)
            if not verdict.ok:
                raise SafetyViolation("linearizability", verdict.explanation)
        except SafetyViolation as exc:
            result.ok, result.prop, result.detail = False, exc.prop, exc.detail
        except InvariantError as exc:
            result.ok, result.prop, result.detail = False, "core invariant", str(exc)
        if not result.ok:
            result.trace = list(self.trace)
        self.close()
        result.ticks = self.now
        result.commits = len(self.applied)
        result.operations = len(self.ops)
        result.elections = len(self.leaders)
        return result

    def close(self) -> None:
        for storage in self.storages.values():
            if storage is not None and hasattr(storage, "close"):
                storage.close()

    def heal_all(self) -> None:
        self.active_faults = frozenset()
        self.blocked = set()
        for member in list(self.restart_at):
            self.restart(member)
        self.trace.append(f"t{self.now} faults off, all members up")

    def liveness(self) -> None:
        """With faults off, a leader emerges and a final write commits everywhere."""
        deadline = self.now + self.config.liveness_ticks
        final, retry_at = None, 0
        while self.now < deadline:
            self.step_once()
            if (final is None or self.now >= retry_at) and self.current_leader():
                # like a client: (re)try the final write until one is acknowledged
                if final is None or self.ops[final].ret is None:
                    self.client_busy.clear()
                    final = self.submit(self.config.clients, ("put", "final", -1), force_log=True)
                    retry_at = self.now + self.config.client_timeout_ticks
            if final is not None and self.ops[final].ret is not None:
                target = max(self.applied)
                core = self.live(self.current_leader() or self.ops[final].id).core
                members = core.configuration.members
                if all(self.live(m).sm.applied >= target for m in members):
                    return
        raise SafetyViolation(
            "liveness",
            f"no leader committed a write everywhere within "
            f"{self.config.liveness_ticks} ticks after faults stopped "
            f"(leader {self.current_leader()}, final op {final})",
        )


def run_seed(seed: int, config: SimConfig) -> SimResult:
    return Simulation(seed, config).run()


def commit_digest(seed: int, nodes: int = 3, config: SimConfig | None = None) -> str:
    """A short fingerprint of what ``seed`` commits: every entry every member applied, in
    the order applied (member, index, term, kind, payload bytes), plus the verdict and the
    run's length in ticks.

    Two versions of the core that make the same decisions from the same random draws give
    the same digest; a change in the order of draws or of messages almost surely does not.
    ``config`` defaults to ``SimConfig(nodes=nodes)`` (every fault on), the settings of the
    simulator tests.
    """
    simulation = Simulation(seed, config if config is not None else SimConfig(nodes=nodes))
    simulation.applied_log = []
    result = simulation.run()
    return digest_of(result, simulation.applied_log)


def digest_of(result: SimResult, applied: list[tuple[int, int, int, int, bytes]]) -> str:
    """16 hex digits over a run's verdict, length and applied entries (see commit_digest)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{result.ok} {result.prop} {result.ticks};".encode())
    for member, index, term, kind, payload in applied:
        h.update(f"{member} {index} {term} {kind} {len(payload)}:".encode())
        h.update(payload)
    return h.hexdigest()


# ---- the differential trace -----------------------------------------------------------------
#
# One source, two builds (``pyraft._compiled``): the compiled core and its ``.py`` source must
# make the same decisions, so the same seed must send the same messages and apply the same
# entries in both. ``trace_digest`` fingerprints all of it; ``tests/sim/test_differential.py``
# compares the digests of this build with those of the other one, seed by seed.

_TYPE_NAMES = {int(t): t.name for t in MessageType}


def message_record(m: Message) -> str:
    """One line that names every field of ``m`` a member acts on: type, ends, term, index,
    log term, commit, reject and its hints, context, transfer, fresh, the entries (range,
    terms, kinds, CRC-32 and length of their record bytes, which hold every header and
    payload), and the snapshot (metadata, chunk offset, done, CRC-32 and length of the chunk).

    Values are normalized to what the wire carries (``pyraft.transport.codec``): an empty
    entry batch is no entries, flags are 0/1, so a typed build that stores a flag as a C int
    or hands out an empty batch gives the same line.
    """
    mtype = int(m.type)
    line = (
        f"{_TYPE_NAMES.get(mtype, mtype)} {m.src}->{m.dst} t{m.term} i{m.index} "
        f"lt{m.log_term} c{m.commit} reject={int(bool(m.reject))} "
        f"hint={m.reject_hint}/{m.hint_term} transfer={int(bool(m.transfer))} "
        f"fresh={int(bool(m.fresh))} offset={m.snapshot_offset} "
        f"done={int(bool(m.snapshot_done))}"
    )
    if m.context:
        line += f" context={bytes(m.context).hex()}"
    entries = m.entries
    if entries is not None and len(entries):
        terms = ",".join(map(str, np.asarray(entries.terms).tolist()))
        kinds = ",".join(map(str, np.asarray(entries.kinds).tolist()))
        data = entries.data
        line += (
            f" entries={entries.first_index}..{entries.last_index} terms={terms} "
            f"kinds={kinds} bytes={len(data)} crc={zlib.crc32(data):08x}"
        )
    snapshot = m.snapshot
    if snapshot is not None:
        meta = snapshot.meta
        chunk = _whole(snapshot.data)
        line += (
            f" snapshot={meta.index}/t{meta.term} voters={list(meta.voters)} "
            f"learners={list(meta.learners)} info={list(meta.members_info)!r} "
            f"chunk={len(chunk)} crc={zlib.crc32(chunk):08x}"
        )
    return line


class TraceRecorder:
    """Hashes every message a simulation sends and delivers (at the moment it does, with the
    tick) and every entry a member applies, in the order they happen; keeps the lines too
    when ``lines`` is a list (``--trace-messages``)."""

    def __init__(self, lines: list[str] | None = None) -> None:
        self.hash = hashlib.blake2b(digest_size=16)
        self.lines = lines
        self.messages = 0
        self.applied = 0

    def _record(self, line: str) -> None:
        self.hash.update(line.encode())
        self.hash.update(b"\n")
        if self.lines is not None:
            self.lines.append(line)

    def message(self, event: str, now: int, m: Message) -> None:
        self.messages += 1
        self._record(f"t{now} {event} {message_record(m)}")

    def apply(self, now: int, member: int, index: int, term: int, kind: int,
              payload: bytes) -> None:
        self.applied += 1
        self._record(f"t{now} apply {member} i{index} t{term} kind={kind} bytes={len(payload)} "
                     f"crc={zlib.crc32(payload):08x}")


class _AppliedLog(list):
    """``Simulation.applied_log`` that also tells the recorder, at the tick of the apply."""

    def __init__(self, simulation: Simulation, recorder: TraceRecorder) -> None:
        super().__init__()
        self.simulation = simulation
        self.recorder = recorder

    def append(self, item: tuple[int, int, int, int, bytes]) -> None:
        super().append(item)
        self.recorder.apply(self.simulation.now, *item)


@dataclass
class TracedRun:
    """One seed run with its trace recorded (:func:`trace_run`)."""

    result: SimResult
    #: every entry applied, in order: (member, index, term, kind, payload)
    applied: list[tuple[int, int, int, int, bytes]]
    #: see :func:`trace_digest`
    digest: str


def trace_run(seed: int, config: SimConfig, lines: list[str] | None = None) -> TracedRun:
    """Run ``seed`` (every checker on, as ``run_seed``) recording its trace; ``lines`` (a
    list) receives the trace itself, one line per message or applied entry."""
    simulation = Simulation(seed, config)
    recorder = TraceRecorder(lines)
    simulation.recorder = recorder
    applied = simulation.applied_log = _AppliedLog(simulation, recorder)
    result = simulation.run()
    verdict = (f"{result.ok} {result.prop} ticks={result.ticks} messages={recorder.messages} "
               f"applied={recorder.applied}")
    if lines is not None:
        lines.append(verdict)
    h = hashlib.blake2b(digest_size=8)
    h.update(verdict.encode())
    h.update(recorder.hash.digest())
    return TracedRun(result, list(applied), h.hexdigest())


def trace_digest(seed: int, nodes: int = 3, config: SimConfig | None = None,
                 lines: list[str] | None = None) -> str:
    """16 hex digits over everything ``seed`` does: every message sent and delivered (see
    :func:`message_record`), every entry every member applied, the verdict and the length
    of the run. Two builds of the core that behave alike give the same digest; one field of
    one message that differs gives another. ``config`` defaults to ``SimConfig(nodes=nodes)``
    (every fault on); ``lines`` (a list) receives the trace itself.
    """
    return trace_run(seed, config if config is not None else SimConfig(nodes=nodes),
                     lines).digest


def trace_digests(seeds: range | list[int], config: SimConfig) -> dict[int, str]:
    """:func:`trace_digest` of each seed."""
    return {seed: trace_digest(seed, config=config) for seed in seeds}


def first_difference(ours: dict[int, str], theirs: dict[int, str]) -> int | None:
    """The lowest seed whose digests differ (or that only one side ran), or None."""
    for seed in sorted(set(ours) | set(theirs)):
        if ours.get(seed) != theirs.get(seed):
            return seed
    return None


def compare_builds(ours: dict[int, str], theirs: dict[int, str], nodes: int,
                   builds: tuple[str, str] = ("this build", "the other build")) -> str | None:
    """None when both builds traced every seed alike; otherwise what a person needs: the
    first differing seed, how many differ, and the command that shows where they part."""
    seed = first_difference(ours, theirs)
    if seed is None:
        return None
    differing = [s for s in sorted(set(ours) | set(theirs)) if ours.get(s) != theirs.get(s)]
    return (
        f"{len(differing)} of {len(set(ours) | set(theirs))} seeds ({nodes} members) trace "
        f"differently; the first is seed {seed}: {builds[0]} {ours.get(seed)}, {builds[1]} "
        f"{theirs.get(seed)} (other differing seeds: {differing[1:11]}).\n"
        f"replay: {replay_commands(seed, nodes)}"
    )


def build_name() -> str:
    """How the simulated core runs in this process: ``compiled``, ``pure-core`` (the
    ``.py`` core over compiled kernels), ``pure`` (kernels too), or ``mixed``."""
    from pyraft import _compiled
    from raftcore import framing

    loaded = [sys.modules[name] for name in _compiled.MODULES if name in sys.modules]
    compiled = sum(1 for module in loaded if _compiled.is_compiled(module))
    if loaded and compiled == len(loaded):
        return "compiled"
    if compiled:
        return "mixed"
    return "pure-core" if framing.IMPLEMENTATION != "python" else "pure"


def replay_commands(seed: int, nodes: int, faults: str = "all") -> str:
    """How a person compares one seed's trace in the two builds, message by message."""
    command = (f"python -m pyraft.testing.sim --seeds {seed} --nodes {nodes} "
               f"--faults {faults} --trace-messages")
    return (f"diff <({command}) <(PYRAFT_PURE_CORE=1 {command})")


def _parse_seeds(text: str) -> range:
    if ":" in text:
        a, b = text.split(":", 1)
        return range(int(a), int(b))
    return range(int(text), int(text) + 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pyraft.testing.sim", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seeds", default="0:100", help="A:B runs seeds A..B-1; S runs S")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument(
        "--faults",
        default="all",
        help=f"comma-separated subset of {','.join(FAULTS)}, 'all' or 'none'",
    )
    parser.add_argument(
        "--ticks", type=int, default=SimConfig.safety_ticks, help="ticks of the safety phase"
    )
    parser.add_argument("--pipeline", type=int, default=SimConfig.ready_pipeline_max,
                        help="Readys each member keeps in flight (ready_pipeline_max)")
    parser.add_argument("--verbose", action="store_true", help="one line per seed")
    parser.add_argument("--digests", action="store_true",
                        help="print each seed's commit digest as JSON (see commit_digest)")
    parser.add_argument("--trace-digests", action="store_true",
                        help="print each seed's trace digest (every message sent and "
                             "delivered, every entry applied) as JSON, the build on stderr; "
                             "diff two builds' outputs (see trace_digest)")
    parser.add_argument("--trace-messages", action="store_true",
                        help="print the trace itself, one line per message or applied entry")
    args = parser.parse_args(argv)
    if args.faults == "all":
        faults = frozenset(FAULTS)
    elif args.faults == "none":
        faults = frozenset()
    else:
        faults = frozenset(f.strip() for f in args.faults.split(","))
        unknown = faults - set(FAULTS)
        if unknown:
            parser.error(f"unknown faults: {sorted(unknown)}")
    if args.pipeline < 1:
        parser.error("--pipeline must be at least 1")
    config = SimConfig(nodes=args.nodes, faults=faults, safety_ticks=args.ticks,
                       ready_pipeline_max=args.pipeline)
    seeds = _parse_seeds(args.seeds)
    if args.trace_digests or args.trace_messages:
        started = time.process_time()
        lines: list[str] | None = [] if args.trace_messages else None
        traced = {}
        for seed in seeds:
            traced[str(seed)] = trace_digest(seed, config=config, lines=lines)
            if lines is not None:
                print(f"seed {seed} digest {traced[str(seed)]}")
                print("\n".join(lines))
                lines.clear()
        if args.trace_digests:
            print(json.dumps(traced, indent=0))
        print(f"build: {build_name()} nodes={args.nodes} faults={args.faults} "
              f"seeds={args.seeds} cpu={time.process_time() - started:.1f}s", file=sys.stderr)
        return 0
    if args.digests:
        digests = {str(seed): commit_digest(seed, config=config) for seed in seeds}
        print(json.dumps(digests, indent=0, sort_keys=False))
        return 0
    started = time.process_time()
    failed = []
    commits = 0
    for seed in seeds:
        result = run_seed(seed, config)
        commits += result.commits
        if args.verbose or not result.ok:
            print(result.line())
        if not result.ok:
            failed.append(seed)
            print(f"  violated: {result.prop}: {result.detail}")
            print(
                f"  replay:   python -m pyraft.testing.sim --seeds {seed} --nodes {args.nodes} "
                f"--faults {args.faults} --ticks {args.ticks} --pipeline {args.pipeline}"
            )
            print("  last events:")
            for line in result.trace[-40:]:
                print(f"    {line}")
    cpu = time.process_time() - started
    print(
        f"{len(seeds)} seeds, {len(seeds) - len(failed)} passed, {len(failed)} failed "
        f"(nodes={args.nodes} faults={args.faults} committed={commits} cpu={cpu:.1f}s)"
        + (f" failing seeds: {failed[:20]}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
