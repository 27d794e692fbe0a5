"""``RaftCluster``: one member of a cluster, running inside the user's asyncio program.

The runtime is the only layer that owns time and I/O. It drives the pure core
(``pyraft.core.RaftNode``):

- a tick task calls ``core.tick()`` every ``tick_ms``; while the processing task waits for
  a Ready's persistence (a sync on the I/O thread, a retry after a storage failure), the tick
  task sends the leader's heartbeats and appends itself (``core.take_leader_traffic()``), so
  a slow or failing disk on the leader does not stop its heartbeats;
- messages from the transport go to ``core.step`` as they arrive;
- one processing task handles each ``Ready`` in order: entries are written to the log on the
  loop (a positional write into the page cache), then the fdatasync and the hard-state save
  run in one worker thread while the loop keeps serving; the leader's replication messages
  leave before its own sync (thesis 10.2.1: it counts itself only once durable), every
  other message (votes, acknowledgements) only after; committed entries are applied to the
  state machine and the waiting futures resolve with the results;
- ``replicate`` calls that arrive during one loop turn become one batch (one write, one
  sync, one AppendEntries per follower);
- with ``ready_pipeline_max`` above 1 the Readys are pipelined: the processing task writes
  a Ready's entries, sends its leader traffic and starts its sync, then takes the next
  Ready at once, while a finishing task waits for each sync in Ready order and then sends
  that Ready's answers, applies it and reports it durable (``RaftNode.on_persist_ready``
  through ``advance``). Readys that install a snapshot or replace stored entries wait until
  the pipeline is empty and are persisted as with a pipeline of one.

This module keeps the lifecycle, the tick task and the public API; the rest of the write
path lives in parts, each tested on its own:

- ``engine``: the per-Ready path above (messages into the core, the processing and
  finishing tasks, each Ready's steps in order); compiled, typed by the parts it calls;
- ``ledger``: the queue of writes, its bound, the writes in flight and the fate of each
  (result, ``CommandLostError``, ``CommandOutcomeUnknownError``); pure;
- ``writes``: a write's admission into the ledger's queue (back-pressure), the queued
  batch handed to the core, the fate of writes from an earlier lead;
- ``persist``: persisting a Ready (group commit, inline or I/O-thread syncs, retry every
  second while storage fails: ``replicate`` raises the ``StorageError`` meanwhile);
- ``snapshots``: the state machine's snapshot sink, snapshot files written off the loop,
  snapshots received in chunks and installed, exports of a disk state machine's store;
- ``waiters``: commit, applied, read-index and membership waiters, failed all at once;
- ``reads``: the waits of the public API (read barrier, commit, applied, a leader known,
  ``ensure_consistency``), with their deadlines and retries;
- ``events``: leader changes and cluster events, the ``LeadershipToken``; ``Leadership``
  turns a Ready's soft state and lost leaderships into them, the log and the metrics;
- ``membership``: the bootstrap membership, the peers the transport dials, announcements,
  adding and removing members;
- ``lease``: the leader's lease in real time, contact with a quorum.

The core is read through ``pyraft.core.view.CoreView`` (``self.view``), storage through the
``pyraft.core.storage.LogStore`` protocol; every setting comes from ``ClusterConfig``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

from pyraft.cluster.engine import Engine
from pyraft.cluster.events import (
    ClusterEvent,
    EventBus,
    LeaderChange,
    Leadership,
    LeadershipToken,
)
from pyraft.cluster.iothread import IOThread
from pyraft.cluster.lease import LeaseStatus, TickClock, in_touch_with_quorum, lease_status
from pyraft.cluster.ledger import ProposalLedger
from pyraft.cluster.membership import (
    MembershipChanges,
    MemberStatus,
    Peers,
    announce,
    bootstrap,
    check_peers,
)
from pyraft.cluster.persist import LogWriter
from pyraft.cluster.reads import Reads
from pyraft.cluster.snapshots import Snapshotting
from pyraft.cluster.waiters import Waiters
from pyraft.cluster.writes import Wake, Writes, payloads_of
from pyraft.config import ClusterConfig
from pyraft.core import (
    MemoryLogStorage,
    RaftNode,
    Role,
)
from pyraft.core.storage import LogStore
from pyraft.core.view import CoreView
from pyraft.errors import (
    ClusterStoppedError,
    ClusterTimeoutError,
    CommandInterruptedError,
    CommandLostError,
    CommandOutcomeUnknownError,
    ConfigError,
    NotLeaderError,
    StorageError,
)
from pyraft.metrics import Metrics
from pyraft.storage.log import DurableLogStorage
from pyraft.storage.state_machine import (
    ConsensusOnlyState,
    StateMachine,
)
from pyraft.transport.base import Transport

log = logging.getLogger("pyraft.cluster")

__all__ = ["RaftCluster", "ClusterEvent", "LeadershipToken", "LeaderChange", "LeaseStatus",
           "MemberStatus",
           "ClusterStoppedError", "ClusterTimeoutError", "CommandInterruptedError",
           "CommandLostError", "CommandOutcomeUnknownError"]


class RaftCluster:
    """A member of a Raft cluster, built from its ``pyraft.config.ClusterConfig``. See the
    module docstring for how it runs.

    Every setting comes from ``config``: ``peers`` maps every initial member id (this one
    included) to its "host:port"; a member alone in ``peers`` (or with no ``peers``)
    cold-starts a one-member cluster. With ``cold_start=False`` this member is not part of
    the starting configuration: it serves as a non-voter until the leader's ``add_member``
    brings it in (warmed up, then promoted; ``announcer`` may ask for that). The others reach
    this member at ``config.endpoint`` (``public_endpoint``, else ``peers[member_id]``, else
    ``listen``; a port 0 becomes the transport's bound port). ``metadata``, ``routes``,
    the proposal queue's bound and policy, the graceful shutdown timeout and the inline
    sync thresholds are the config's too.

    Membership is durable from the first start: before the member sends or answers
    anything, the bootstrap membership (``peers``, or this member alone) is recorded in
    ``storage``. On a restart the stored membership wins: ``peers`` may be left out, and
    ``peers`` that contradict it (neither the recorded bootstrap membership nor the
    configuration in force) make ``start()`` raise ``MembershipMismatchError``.

    ``transport``: None builds the TCP (or TLS) transport on ``listen`` from the config.
    ``storage``: a ``pyraft.core.storage.LogStore``; None builds
    ``DurableLogStorage.from_config(config)`` when ``data_dir`` is set, else an in-memory
    ``MemoryLogStorage`` (such a member comes back from a restart as a new one, whose vote
    counts only once caught up, ``RaftNode.fresh``). ``state_machine`` is a
    ``pyraft.storage.state_machine.StateMachine``; ``None`` (the default) means consensus
    only: a ``ConsensusOnlyState`` whose results are None and whose empty snapshots, one
    every ``consensus_snapshot_entries`` applied entries, release the log (in memory or on
    disk), so it stays bounded.
    """

    def __init__(
        self,
        config: ClusterConfig,
        *,
        transport: Transport | None = None,
        storage: LogStore | None = None,
        state_machine: StateMachine | None = None,
        announcer: Callable[[int, str, dict[str, str]], Awaitable[None]] | None = None,
        on_start: Callable[[RaftCluster], None] | None = None,
        on_stop: Callable[[RaftCluster], None] | None = None,
        meter_provider: Any = None,
    ) -> None:
        if not isinstance(config, ClusterConfig):
            raise TypeError(
                f"RaftCluster takes a pyraft.config.ClusterConfig, not a "
                f"{type(config).__name__}: a member's settings (peers, queue bounds, "
                "storage, transport) are the ClusterConfig's fields")
        config.validate()
        self.config = config
        self.id = config.member_id
        self.transport = transport if transport is not None else _default_transport(config)
        peers: dict[int, str] | None = dict(config.peers) or None
        join = not config.cold_start
        #: the members the caller named (None: none named; the stored membership, or this
        #: member alone on a first start)
        self._peers_given = dict(peers) if peers else None
        #: the membership this member bootstraps with when its storage holds none (None: a
        #: joining member restarted without peers, which needs a stored membership)
        self.bootstrap_configuration, static = bootstrap(self.id, peers, config.endpoint, join)
        if storage is None:
            storage = DurableLogStorage.from_config(config) if config.data_dir is not None \
                else MemoryLogStorage()
        self.storage: LogStore = storage
        if state_machine is None:
            # consensus only; its snapshots go through the sink like any other's
            state_machine = ConsensusOnlyState(
                snapshot_entries=config.consensus_snapshot_entries)
        self.state_machine = state_machine
        self.graceful_shutdown_timeout_ms = config.graceful_shutdown_timeout_ms
        self._on_start, self._on_stop = on_start, on_stop
        self._join = join
        self._announcer = announcer
        self._metadata = dict(config.metadata)
        #: the peers' addresses for the transport; the members added and removed
        self._peers = Peers(self.id, static, config.routes, self.transport, self._emit)
        self.readiness: asyncio.Future[None] | None = None
        #: the core, driven by this runtime (None until started)
        self.core: RaftNode | None = None
        #: read-only status of the core (None until started): what the API, the metrics and
        #: the key-value service read
        self.view: CoreView | None = None
        # the same two, for the runtime's own use once started
        self._node: RaftNode
        self._status: CoreView
        # the loop, the I/O thread and the processing task's wake-up, from ``start()`` on
        self._loop: asyncio.AbstractEventLoop
        self._executor: IOThread
        self._wake: Wake
        self._tasks: list[asyncio.Task[None]] = []
        #: the per-Ready path (messages in, Readys handled): built at start with the core
        self._engine: Engine | None = None
        #: the writes: queued for the core, in flight, and what happened to each
        self._ledger = ProposalLedger(config.proposal_queue_max, config.proposal_queue_full)
        #: callers waiting for a commit, an apply, a read index or a membership state
        self._waiters = Waiters()
        #: the reads and waits (read barrier, commit, applied, leader, consistency)
        self._reads = Reads(self.id, self._waiters,
                            retry_seconds=config.election_timeout_ms_upper / 1e3 * 2,
                            running=lambda: self._running, check_running=self._check_running)
        #: add_member and remove_member on the leader; readiness; the leader's endpoint
        self._changes = MembershipChanges(self.id, self._peers, self._waiters, self._metadata,
                                          until=self._reads.until,
                                          wake=lambda: self._wake.set())
        #: leader changes and cluster events for the application; the leadership token
        self._bus = EventBus()
        #: the exception that stopped this member's processing (a bug, a state machine that
        #: raised); the member refuses everything and should be restarted
        self.fatal_error: Exception | None = None
        self._running = False
        self._stopped = False
        # the loop time of the last ticks (newest last), for leases in real time
        self._clock = TickClock()
        self.metrics = Metrics(self.id, meter_provider=meter_provider)
        #: the queue's admission (back-pressure) and the batches handed to the core
        self._writes = Writes(self.id, self._ledger, self.metrics,
                              writable=self._check_writable, not_leader=self._not_leader)
        #: this member's leader changes, as events, log lines and metrics
        self._leadership = Leadership(
            self.id, self._bus, self.metrics, self._address_of,
            stepped_down=lambda: self._ledger.fail_queue(self._not_leader()))
        self._snapshots = Snapshotting(
            self.id, self.storage, self.state_machine, self.metrics,
            chunk_bytes=config.core_options().snapshot_chunk_bytes,
            running=lambda: self._running, failed=lambda: self.fatal_error is not None,
            fatal=self._fatal, track=lambda task: self._tasks.append(task),
            untrack=self._untrack)
        self._writer = LogWriter(
            self.id, self.storage, self.metrics, self._snapshots,
            inline_sync_max_ms=config.inline_sync_max_ms,
            inline_sync_bytes_max=config.inline_sync_bytes_max,
            installed=self._snapshot_installed)

    @classmethod
    def from_config(cls, config: ClusterConfig, *, state_machine: StateMachine | None = None,
                    transport: Transport | None = None, **options: Any) -> RaftCluster:
        """The same as ``RaftCluster(config, ...)``: TCP (or TLS) transport on ``listen``,
        durable storage in ``data_dir`` (in memory when None), the configured queue bounds
        and shutdown timeout; ``cold_start=False`` joins an existing cluster. Without
        ``state_machine``, consensus only (see the class docstring)."""
        return cls(config, state_machine=state_machine, transport=transport, **options)

    # ---- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> RaftCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._running:
            return
        stored = self.storage.membership()
        initial = self.bootstrap_configuration
        if initial is None and stored is None:
            raise ConfigError("peers", "a joining member needs the addresses of existing "
                                       "members on its first start (its storage holds no "
                                       "membership)")
        loop = self._loop = asyncio.get_running_loop()
        self._wake = Wake(loop)
        self._executor = IOThread(loop, f"pyraft-{self.id}-io")
        if stored is None and initial is not None:  # the first start: durable first
            self.storage.record_membership(initial)
        self._snapshots.finish_interrupted_install()
        options = self.config.core_options()
        if not self.storage.durable:
            # a member whose storage does not survive a restart comes back as a new member:
            # its votes count only once a leader has caught it up (RaftNode.fresh)
            options = dataclasses.replace(options, fresh_start_guard=True)
        seed = int.from_bytes(os.urandom(8), "little")
        self.core = self._node = core = RaftNode(options, self.storage, random.Random(seed))
        self.view = self._status = status = CoreView(core)
        self._snapshots.bind(loop, self._executor, core)
        self._writer.bind(loop, self._executor)
        self._reads.bind(loop, status, self._request_read)
        self._writes.bind(loop, self._wake, core, self._writer)
        self._changes.bind(loop, core, status)
        # peers given: the bootstrap is never None (see membership.bootstrap)
        if stored is not None and self._peers_given is not None and initial is not None:
            check_peers(self.id, initial, stored, core.configuration)
        self._clock = TickClock(options.lease_ticks)
        applied = self._snapshots.recover()
        if applied > status.first_index - 1:
            core.restore_applied(applied)
        engine = self._engine = Engine(
            self.id, core, status, writes=self._writes, ledger=self._ledger,
            writer=self._writer, wake=self._wake, transport=self.transport,
            metrics=self.metrics, state_machine=self.state_machine, waiters=self._waiters,
            leadership=self._leadership, peers=self._peers, loop=loop, fatal=self._fatal,
            applied_index=status.applied)
        self._writes.propose_now = engine.propose_now  # a lone write, at once
        await self.transport.start(engine.on_message, self._on_unreachable)
        engine.batched = self.transport.report_deliveries(engine.delivered)
        core.set_own_info(self._peers.settle_own(), self._metadata)
        self._peers.update(core.configuration)
        self._running = engine.running = True
        self._writes.open = True
        self._tasks = [
            loop.create_task(self._tick_loop(), name=f"pyraft-{self.id}-tick"),
            loop.create_task(engine.run(), name=f"pyraft-{self.id}-ready"),
        ]
        if options.ready_pipeline_max > 1:
            self._tasks.append(
                loop.create_task(engine.finish(), name=f"pyraft-{self.id}-finish"))
        self.state_machine.start()
        # ``readiness`` resolves once a committed configuration makes this member a voter
        # (at once for a member of the starting configuration)
        self.readiness = loop.create_future()
        self._waiters.until(self._changes.is_active_voter, self.readiness)
        engine.resolve_waiters()
        if self._join and self._announcer is not None:
            self._tasks.append(loop.create_task(
                announce(self.id, self._peers.static[self.id], self._metadata, self._announcer,
                         self.readiness), name=f"pyraft-{self.id}-join"))
        recovery = self.storage.recovery
        log.info("member %d started: term %d, commit %d, applied %d, log [%d, %d]%s",
                 self.id, status.term, status.committed, status.applied,
                 status.first_index, status.last_index,
                 f"; recovery read {recovery.records} entries in {recovery.segments} segments"
                 f", cut a torn tail of {recovery.torn_bytes} bytes"
                 if recovery is not None else "")
        if self._on_start is not None:
            self._on_start(self)

    async def stop(self) -> None:
        """Stop gracefully: refuse new commands, let in-flight ones finish within
        ``graceful_shutdown_timeout_ms``, then close everything this member started."""
        if self._stopped or not self._running:
            self._stopped = True
            return
        self._stopped = True
        self._writes.open = False  # new writes are refused; those in flight may finish
        await self._writes.drain(self.graceful_shutdown_timeout_ms / 1000.0)
        if self._status.is_leader:
            self._leadership.stopped(self._status.term)
        self._running = False
        if self._engine is not None:
            self._engine.running = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.transport.stop()
        error = ClusterStoppedError(f"member {self.id} stopped")
        if self.readiness is not None and not self.readiness.done():
            self.readiness.cancel()  # nobody may be waiting: cancel rather than fail
        self._fail_all(error, CommandInterruptedError(
            f"member {self.id} stopped with the command in flight: a later leader may still "
            "commit it"))
        self._bus.cancel_token()
        self.state_machine.close()
        self.storage.drop_export()  # an export's spool file, in memory storage too
        await self._executor.run(self.storage.close)
        self._executor.shutdown(wait=True)
        self._snapshots.abort_receive()  # after the I/O thread's last write
        log.info("member %d stopped", self.id)
        if self._on_stop is not None:
            self._on_stop(self)

    # ---- state -------------------------------------------------------------------------------
    @property
    def leader(self) -> int | None:
        return self.view.leader if self.view is not None else None

    @property
    def leader_address(self) -> str | None:
        """The leader's Raft address (where members reach it), if a leader is known."""
        leader = self.leader
        return self._address_of(leader)

    #: the member metadata key that holds a member's application address (``pyraft node``
    #: publishes its HTTP API there); ``leader_endpoint`` and ``NotLeaderError`` report it
    ENDPOINT_METADATA_KEY = "http"

    @property
    def leader_endpoint(self) -> str | None:
        """Where the leader serves the application: its member metadata's ``"http"`` value
        (``ENDPOINT_METADATA_KEY``), if a leader is known and published one."""
        leader = self.leader
        return None if leader is None else self._changes.endpoint_of(
            leader, self.ENDPOINT_METADATA_KEY)

    def _not_leader(self) -> NotLeaderError:
        """The error for an operation only the leader may do, naming the leader if known."""
        return NotLeaderError(self.leader, self.leader_address, self.leader_endpoint)

    @property
    def has_quorum(self) -> bool:
        """Whether this member is in touch with a working majority, counted in ticks over one
        lower election timeout (``election_timeout_ms_lower``): on the leader, a majority of
        the voters (itself included) was heard from within it; on any other member, a leader
        is known and was heard from within it. False while stopped or failed."""
        status = self.view
        if status is None or not self._running or self.fatal_error is not None:
            return False
        return in_touch_with_quorum(status, self.id)

    @property
    def term(self) -> int:
        return self._status.term

    @property
    def role(self) -> Role:
        return self._status.role

    @property
    def is_leader(self) -> bool:
        return self.view is not None and self.view.is_leader

    @property
    def stopped(self) -> bool:
        """Whether ``stop()`` was called (a stopped member leads nothing)."""
        return self._stopped

    @property
    def proposals_queued(self) -> int:
        """Writes (``replicate``/``replicate_many`` calls) waiting to enter the core."""
        return self._ledger.queued_writes

    @property
    def storage_failure(self) -> StorageError | None:
        """The storage failure refusing writes now (a full disk, an I/O error); None once
        storage works again."""
        return self._writer.failed

    @property
    def commit_index(self) -> int:
        return self._status.committed

    @property
    def applied_index(self) -> int:
        """The last entry the state machine applied (0 before the member starts)."""
        engine = self._engine
        return engine.applied_index if engine is not None else 0

    @property
    def leadership_token(self) -> LeadershipToken | None:
        """The token of the current leadership of this member, or None when not leading."""
        if not self.is_leader:
            return None
        return self._bus.token_for_term(self._status.term, self._loop)

    @property
    def lease(self) -> LeaseStatus:
        """The leader's lease, in real time: it expires ``lease_ticks * tick_ms`` after the
        real time of the tick it began in, so a member that was paused sees it gone at once
        (``pyraft.cluster.lease``)."""
        loop = self._loop if self.view is not None else None
        return lease_status(self.view, self._clock, self.config.tick_ms,
                            loop.time() if loop is not None else 0.0)

    @property
    def members(self) -> list[MemberStatus]:
        return self._peers.members(self._status)

    def on_leader_changed(self, callback: Callable[[LeaderChange], None]) -> None:
        self._bus.on_leader_changed(callback)

    def on_event(self, callback: Callable[[ClusterEvent], None]) -> None:
        """Call ``callback`` for every leader change, role change and member added/removed."""
        self._bus.on_event(callback)

    def events(self) -> AsyncIterator[ClusterEvent]:
        """Every ClusterEvent from now on (a bounded queue per subscriber)."""
        return self._bus.events(lambda: self._running)

    def _emit(self, kind: str, member: int | None) -> None:
        status = self._status
        self._bus.emit(ClusterEvent(kind, member, status.term, status.role.value))

    def leader_changes(self) -> AsyncIterator[LeaderChange]:
        """Every change of leader from now on (a bounded queue per subscriber: a slow reader
        misses intermediate changes, never the latest)."""
        return self._bus.leader_changes(lambda: self._running)

    # ---- writes ------------------------------------------------------------------------------
    async def replicate(self, command: bytes, timeout: float | None = None) -> Any:
        """Replicate ``command``; returns the state machine's result once committed and
        applied. Raises NotLeaderError (with the leader's id and address) on a follower;
        after this member lost the lead with the command in flight, CommandLostError when
        another leader's entry was committed at its index, CommandOutcomeUnknownError as soon
        as its entry is replaced in this member's log (another member may still commit it).
        ``command`` is bytes or any bytes-like object (copied at the call); anything else is a
        ``TypeError``."""
        future = self._writes.enqueue_command(command) \
            or await self._writes.enqueue(payloads_of((command,)), False)
        if timeout is None:
            return await future
        return await asyncio.wait_for(future, timeout)

    async def replicate_many(self, commands: Iterable[bytes],
                             timeout: float | None = None) -> list[Any]:
        """Replicate several commands as one batch: they enter the log together, in order,
        and the call returns their results in order once the last is applied. One waiter
        serves the whole batch, so this is the fast path for many small commands. If some
        of them were lost to a leader change, it raises CommandLostError (the others may
        have been applied; a caller that must know resends with its own deduplication).
        Each command is bytes or any bytes-like object (copied at the call); anything else
        is a ``TypeError``."""
        payloads = payloads_of(commands)
        if not payloads:
            return []
        future = self._writes.enqueue_now(payloads, True) \
            or await self._writes.enqueue(payloads, True)
        return await (future if timeout is None else asyncio.wait_for(future, timeout))

    def _check_writable(self) -> None:
        """Raise why this member takes no write now; ``Writes`` calls it only when its own
        check (writes open, leading, storage working) does not pass, so this must refuse
        in each of those cases."""
        if not self._running:
            raise ClusterStoppedError(f"member {self.id} is not running")
        if self._stopped:
            raise ClusterStoppedError(f"member {self.id} is stopping")
        if self.fatal_error is not None:
            raise ClusterStoppedError(f"member {self.id} failed: {self.fatal_error!r}")
        if self._writer.failed is not None:
            raise self._writer.failed
        view = self.view  # is_leader without its property frame: every write asks
        if view is None or not view.is_leader:
            raise self._not_leader()

    # ---- reads and consistency (``reads``) ---------------------------------------------------
    async def apply_read_barrier(self, timeout: float | None = None) -> int:
        """Wait until this member's state machine reflects every write committed before the
        call (read index, thesis 6.4; works on followers). Returns the read index."""
        return await self._reads.read_barrier(timeout)

    async def force_replication(self, timeout: float | None = None) -> None:
        """A heartbeat round acknowledged by a majority (on the leader)."""
        if not self.is_leader:
            raise self._not_leader()
        await self.apply_read_barrier(timeout)

    async def wait_for_commit(self, index: int, timeout: float | None = None) -> None:
        """Wait until this member's commit index reaches ``index``."""
        await self._reads.until_committed(index, timeout)

    async def wait_for_applied(self, index: int, timeout: float | None = None) -> None:
        """Wait until this member's state machine has applied ``index``."""
        await self._reads.until_applied(index, timeout)

    async def ensure_consistency(self, timeout: float | None = None) -> None:
        """Wait until this member's view is up to date, on any member. On the leader: until
        the last committed entry is from its current term (its no-op committed), so its
        commit index is the cluster's. On any other member: a read-index round trip to the
        leader (waiting for one to be known), then until this member has applied the
        leader's commit index as of the call; a request lost to a leader change is asked
        again of the next leader. Raises ``ClusterTimeoutError`` (a ``TimeoutError``) naming
        ``timeout`` when it passes first."""
        await self._reads.consistent(timeout)

    async def wait_for_leader(self, timeout: float | None = None) -> int:
        """The id of the leader, once one is known to this member (at once if it is already).
        Raises ``ClusterTimeoutError`` (a ``TimeoutError``) naming ``timeout`` when none is
        known in time."""
        return await self._reads.leader(timeout)

    def _request_read(self, context: bytes) -> None:
        """Ask the core for a read index for ``context`` (``Reads.read_barrier``)."""
        self._node.read_index(context)
        self._wake.set()

    def _check_running(self) -> asyncio.AbstractEventLoop:
        if not self._running:
            raise ClusterStoppedError(f"member {self.id} is not running")
        if self.fatal_error is not None:
            raise ClusterStoppedError(f"member {self.id} failed: {self.fatal_error!r}")
        return self._loop

    # ---- leadership --------------------------------------------------------------------------
    async def resign(self) -> int:
        if not self.is_leader:
            raise self._not_leader()
        target = self._node.resign()
        self._wake.set()
        return target

    async def transfer_leadership(self, member: int, timeout: float | None = None) -> None:
        """Hand leadership to ``member``; returns once it leads (or raises on timeout)."""
        self._node.transfer_leadership(member)
        self._wake.set()
        status = self._status
        await self._reads.until(lambda: status.lead == member and status.term > 0, timeout)

    # ---- membership --------------------------------------------------------------------------
    async def add_member(self, member: int, address: str,
                         metadata: Mapping[str, str] | None = None,
                         timeout: float | None = None) -> None:
        """Add ``member`` at ``address``: it joins as a learner, is warmed up, then promoted;
        returns once the configuration with it as a voter is committed."""
        if not self.is_leader:
            raise self._not_leader()
        await self._changes.add(member, address, metadata, timeout)

    async def remove_member(self, member: int, timeout: float | None = None) -> None:
        """Remove ``member``; returns once the configuration without it is committed."""
        if not self.is_leader:
            raise self._not_leader()
        await self._changes.remove(member, timeout)

    # ---- the engine --------------------------------------------------------------------------
    def _on_unreachable(self, member: int) -> None:
        if self._running:
            self._node.report_unreachable(member)

    async def _tick_loop(self) -> None:
        interval = self.config.tick_ms / 1000.0
        loop = self._loop
        next_at = loop.time() + interval
        clock = self._clock
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += interval
            if loop.time() - next_at > 10 * interval:  # the loop was blocked: do not burst
                next_at = loop.time() + interval
            self._node.tick()
            clock.ticked(loop.time())
            engine = self._engine
            if engine is not None and (engine.persisting or engine.pipeline):
                # the processing task waits for a sync: the heartbeats (and appends) of
                # this leader leave now instead of after it (a slow disk must not look
                # like a dead leader to the followers)
                messages = self._node.take_leader_traffic()
                if messages:
                    engine.send_now(messages)
            self._wake.set()

    def _fatal(self, error: Exception) -> None:
        """A bug or a broken state machine: log it, refuse everything from now on, and fail
        every waiter; the member must be restarted from its data directory."""
        if self.fatal_error is not None:
            return
        log.critical("member %d: processing failed; the member stops serving (restart it "
                     "from its data directory)", self.id, exc_info=error)
        self.fatal_error = error
        self._writes.open = False
        engine = self._engine
        if engine is not None:  # its tasks see it and end: nothing more is sent
            engine.failed = True
            engine.stop_waiting()
        self._fail_all(ClusterStoppedError(f"member {self.id} failed: {error!r}"),
                       CommandInterruptedError(
                           f"member {self.id} failed with the command in flight: a later "
                           f"leader may still commit it ({error!r})"))

    def _fail_all(self, error: Exception, in_flight: Exception) -> None:
        """The member stopped or failed: the writes in its log and undecided get
        ``in_flight`` (a ``CommandInterruptedError``: another member may commit them), the
        queued writes and every other waiter ``error``."""
        self._ledger.fail_all(error, in_flight)
        self._waiters.fail_all(error)

    def _untrack(self, task: asyncio.Task[Any]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)

    def _address_of(self, member: int | None) -> str | None:
        return self._peers.address_of(member, self.view.configuration if self.view else None)

    def _snapshot_installed(self, index: int) -> None:
        """A snapshot from the leader was installed: the state machine is at ``index``."""
        if self._engine is not None:
            self._engine.applied_index = index


def _default_transport(config: ClusterConfig) -> Transport:
    """The TCP (or TLS) transport a member gets when it is given none: built from the
    configuration, like every other part of the member."""
    from pyraft.transport.tcp import TcpTransport

    return TcpTransport.from_config(config)
