"""The member's per-Ready path: messages into the core, each Ready handled in order.

``RaftCluster`` (``runtime.py``) keeps the lifecycle, the tick task and the public API; what
runs for every message and every Ready is here, compiled from this very file as the core is
(``pyraft._compiled``; typed by ``engine.pxd``: the core, its Readys, the writes, the ledger,
the log writer and the wake-up are extension classes, so each step is a C call):

- ``on_message``: a message from the transport goes to ``core.step``, and the processing
  task is woken; over a transport that reports the end of each read's messages
  (``report_deliveries``: TCP, memory), ``delivered`` then handles what they produced in
  that same turn of the loop (``drain``) when the task is parked, instead of waking it: a
  follower answers an append inside the read that brought it. A Ready that must not be
  pipelined goes to the task (``handoff``), which may have to wait for the pipeline;
- ``propose_now``: a lone writer's write (``Writes.enqueue_now``) is proposed and its Ready
  handled within the writer's call, as the task would on its next turn, when the engine is
  idle (nothing pipelined or handed off, no ``ready_done`` on the stack: ``busy``);
- ``run`` (the processing task): hands the queued writes to the core, then takes each Ready.
  Pipelined (``ready_pipeline_max`` above 1, and a Ready the log writer may write while
  earlier ones sync), ``begin_ready`` sends its leader traffic, writes its entries and starts
  its sync, and ``finish`` (the finishing task) completes it once durable, in Ready order.
  Otherwise ``handle_ready`` persists it first (after the pipeline empties);
- completing a Ready (``ready_done``): its answers leave, its committed entries are applied
  and their writes settled, read states, membership events and lost leaderships are
  reported, the core is told it is done (``advance``), the waiters resolve, the metrics
  record it (its duration; the term, commit and applied index it left).

Any exception out of the core, the log writer or the state machine is a bug or a broken
state machine: it goes to the runtime's ``fatal`` (the member stops serving) and the tasks
end. ``failed`` is the runtime's word for that; ``running`` is False before start and from
stop on (messages are then dropped).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable

from pyraft.cluster.events import Leadership
from pyraft.cluster.ledger import ProposalLedger
from pyraft.cluster.membership import Peers
from pyraft.cluster.persist import LogWriter, Written
from pyraft.cluster.waiters import Waiters
from pyraft.cluster.writes import Wake, Writes
from pyraft.core.messages import MembershipEventKind, Message, Ready, Role
from pyraft.core.raft import RaftNode
from pyraft.core.view import CoreView
from pyraft.instruments import Cell, Counter
from pyraft.metrics import Metrics
from pyraft.storage.state_machine import StateMachine
from pyraft.transport.base import Transport
from raftcore.clock import perf_counter  # a C call when compiled (the .pxd cimports it)

__all__ = ["Engine"]

log = logging.getLogger("pyraft.cluster")

_CATCH_UP_FAILED = MembershipEventKind.CATCH_UP_FAILED
_LEADER = Role.LEADER


def peer_cell(cells: dict[int, Cell], counter: Counter, peer: int) -> Cell:
    """``counter``'s series for ``peer`` as a cell, kept in ``cells`` by peer (the first
    message to or from that peer)."""
    cell = cells[peer] = counter.cell((peer,))
    return cell


class Engine:
    """The per-Ready path of member ``member_id`` (module docstring), built by the runtime at
    start once the core exists. ``applied_index``: the last entry the state machine applied
    (the runtime's ``applied_index`` reads it)."""

    def __init__(self, member_id: int, core: RaftNode, view: CoreView, *, writes: Writes,
                 ledger: ProposalLedger, writer: LogWriter, wake: Wake, transport: Transport,
                 metrics: Metrics, state_machine: StateMachine, waiters: Waiters,
                 leadership: Leadership, peers: Peers, loop: asyncio.AbstractEventLoop,
                 fatal: Callable[[Exception], None], applied_index: int) -> None:
        self.id = member_id
        self.core = core
        self.view = view
        self.writes = writes
        self.ledger = ledger
        self.writer = writer
        self.wake = wake
        self.transport = transport
        self.send_messages = transport.sender()  # each Ready's messages, a list
        self.metrics = metrics
        self.state_machine = state_machine
        self.waiters = waiters
        self.leadership = leadership
        self.peers = peers
        #: the configuration last handed to ``peers`` (the core's object: a change replaces it)
        self.configuration_seen: object = None
        self.loop = loop
        self._fatal = fatal
        # messages counted per peer, each peer's series held as a cell (``peer_cell``)
        self._sent = metrics.messages_sent
        self._received = metrics.messages_received
        self._sent_cells: dict[int, Cell] = {}
        self._received_cells: dict[int, Cell] = {}
        # what each handled Ready records: its duration and the state it left
        self._ready_seconds = metrics.ready_seconds
        self._term = metrics.term.cell()
        self._commit_index = metrics.commit_index.cell()
        self._applied_index = metrics.applied_index.cell()
        self.applied_index = applied_index
        #: set by the runtime: it runs (messages are taken), it failed (the tasks end)
        self.running = False
        self.failed = False
        #: the processing task waits for this member's storage (a Ready being persisted):
        #: the tick task sends the leader's heartbeats itself meanwhile
        self.persisting = False
        #: pipelined Readys written and not yet finished (durable, answered, applied),
        #: oldest first, each with its sync and when it was taken; at most
        #: ``ready_pipeline_max``
        self.pipeline: collections.deque[tuple[Ready, Written, float]] = collections.deque()
        # set when the pipeline gets a Ready (the finishing task waits for one) and when it
        # empties (the processing task waits for that before a Ready it does not pipeline)
        self.pipeline_fed = asyncio.Event()
        self.pipeline_empty = asyncio.Event()
        self.pipeline_empty.set()
        self.pipelined = core.options.ready_pipeline_max > 1
        #: the transport reports the end of each read's messages (``delivered``): they are
        #: stepped as they come, and handled together at the end, without the task's turn
        self.batched = False
        self.stepped = False  # a message was stepped since the last ``delivered``
        #: the processing task waits for its wake-up (nothing of it in progress)
        self.parked = False
        #: a Ready taken by ``delivered`` that only the task can handle (not pipelined)
        self.handoff: Ready | None = None
        #: ``ready_done`` is on the stack: the one step of a Ready that runs user code (the
        #: state machine, the callbacks), so a write started there eagerly must not begin
        #: another Ready inside it (``propose_now``)
        self.busy = False

    def on_message(self, message: Message) -> None:
        """A message from the transport (its ``deliver`` callback)."""
        if not self.running or message.dst != self.id or self.failed:
            return
        cell = self._received_cells.get(message.src)
        if cell is None:
            cell = peer_cell(self._received_cells, self._received, message.src)
        cell.value += 1
        try:
            self.core.step(message)
        except Exception as error:  # a bug: stop serving rather than go on half-broken
            self._fatal(error)
            return
        if self.batched:
            self.stepped = True  # handled at the end of the read (``delivered``)
        else:
            self.wake.set()

    def delivered(self) -> None:
        """The transport delivered the messages of one read: handle what they produced now,
        in this turn of the loop, when the processing task is parked (it would otherwise
        take a turn of its own to do the same); else wake it."""
        if not self.stepped:
            return
        self.stepped = False
        if not self.parked or self.failed or not self.running:
            self.wake.set()
            return
        try:
            self.drain()
        except Exception as error:  # as in the task: never die silently
            self._fatal(error)

    def drain(self) -> None:
        """The processing task's loop body for ``delivered``, but for the writes queued:
        those wait for the task's turn, at the end of this one, to be proposed together
        with the writes the rest of the turn queues (proposing them at each read would cut
        a leader's batches small). A Ready that cannot be pipelined goes to the task (it
        may have to wait)."""
        core = self.core
        writer = self.writer
        while core.has_ready():
            rd = core.ready()
            if self.pipelined and writer.can_pipeline(rd):
                self.begin_ready(rd)
            else:
                self.handoff = rd
                self.wake.set()
                return

    def propose_now(self) -> bool:
        """A lone write was queued (``Writes.enqueue_now``): propose it and handle its Ready
        now, as the processing task would on its next turn, when nothing of the engine is in
        progress (the task parked with nothing handed to it, no Ready pipelined, no
        ``ready_done`` on the stack) and Readys are pipelined, and when another voter must answer
        before it commits (a single voter would commit it inside the call, and a writer
        awaiting ``replicate`` in a loop would then never give the loop a turn). Returns
        whether it did; otherwise the caller wakes the task."""
        if not self.parked or self.busy or self.pipeline or self.handoff is not None \
                or not self.pipelined or self.failed or not self.running \
                or len(self.core.configuration.voters) < 2:
            return False
        try:
            self.writes.propose_queued()
            self.drain()
        except Exception as error:  # as in the task: never die silently
            self._fatal(error)
        return True

    def stop_waiting(self) -> None:
        """The member failed: wake every task of the engine, which then ends."""
        self.wake.set()
        self.pipeline_empty.set()
        self.pipeline_fed.set()

    async def run(self) -> None:
        """The processing task (module docstring)."""
        core = self.core
        writes = self.writes
        writer = self.writer
        wake = self.wake
        pipelined = self.pipelined
        try:
            while not self.failed:
                if not wake.is_set():
                    self.parked = True
                    try:
                        await wake.wait()
                    finally:
                        self.parked = False
                wake.clear()
                if self.failed:
                    break
                rd = self.handoff
                if rd is not None:  # taken by ``delivered``, not pipelined
                    self.handoff = None
                    if self.pipeline:
                        await self.pipeline_empty.wait()
                        if self.failed:
                            break
                    await self.handle_ready(rd)
                writes.propose_queued()
                while core.has_ready():
                    rd = core.ready()
                    if pipelined and writer.can_pipeline(rd):
                        self.begin_ready(rd)
                    else:
                        if self.pipeline:
                            await self.pipeline_empty.wait()
                            if self.failed:
                                break
                        await self.handle_ready(rd)
                    writes.propose_queued()
        except Exception as error:  # a bug or a broken state machine: never die silently
            self._fatal(error)

    def begin_ready(self, rd: Ready) -> None:
        """Pipelined: send ``rd``'s leader traffic, write its entries and start its sync;
        the finishing task does the rest, in Ready order (module docstring)."""
        started = perf_counter()
        self.ready_sent(rd)
        written = self.writer.begin(rd)
        if not self.pipeline and written.job is None and written.error is None:
            self.ready_done(rd, started)  # synced inline, nothing before it: done now
            return
        self.pipeline.append((rd, written, started))
        self.pipeline_empty.clear()
        self.pipeline_fed.set()

    async def finish(self) -> None:
        """The finishing task (pipelined): wait for each Ready's sync in order, then answer,
        apply and report it durable; a member that waits for a pipeline to empty is woken
        when it does."""
        pipeline = self.pipeline
        writer = self.writer
        try:
            while not self.failed:
                if not pipeline:
                    writer.pipeline_empty()
                    self.pipeline_empty.set()
                    await self.pipeline_fed.wait()
                    self.pipeline_fed.clear()
                    continue
                rd, written, started = pipeline[0]
                await writer.finish(rd, written)
                pipeline.popleft()
                self.ready_done(rd, started)
                self.wake.set()  # the core may hand out more: commits, a free slot
        except Exception as error:  # a bug or a broken state machine: never die silently
            self._fatal(error)

    async def handle_ready(self, rd: Ready) -> None:
        """Persist ``rd`` (nothing pipelined before it), then complete it."""
        started = perf_counter()
        self.ready_sent(rd)
        self.persisting = True
        try:
            await self.writer.persist(rd)
        finally:
            self.persisting = False
        self.ready_done(rd, started)

    def ready_sent(self, rd: Ready) -> None:
        """Steps 1 of ``rd``: what may leave before anything is persisted."""
        core = self.core  # its fields, not the view's properties: C reads when compiled
        # proposals from an earlier lead: this Ready may replace their entries
        self.writes.settle_replaced(rd.entries, rd.snapshot, core.role is _LEADER, core.term)
        if rd.messages:  # on the wire before this member syncs: the network works meanwhile
            self.send_now(rd.messages)

    def ready_done(self, rd: Ready, started: float) -> None:
        """Steps 3 to 5 of ``rd``, once it and every Ready before it are durable (``busy``
        meanwhile: the state machine and the callbacks run here)."""
        busy = self.busy
        self.busy = True
        try:
            self._ready_done(rd, started)
        finally:
            self.busy = busy

    def _ready_done(self, rd: Ready, started: float) -> None:
        if rd.persisted_messages:  # answers go out before this member applies
            self.send_now(rd.persisted_messages)
        if rd.committed:
            self.apply(rd)
        if rd.read_states:
            waiters = self.waiters
            for state in rd.read_states:
                waiters.read_state(state.context, state.index)
        for event in rd.events:
            if event.kind is _CATCH_UP_FAILED:
                self.waiters.catch_up_failed(event.member)
            log.info("member %d: %s %d (entry %d)", self.id, event.kind.value, event.member,
                     event.index)
        core = self.core  # its fields, not the view's properties: C reads when compiled
        core.advance(rd)
        for lost in rd.leadership_lost:
            self.leadership.lost(lost)
        if rd.soft_state is not None:
            self.leadership.changed(rd.soft_state, self.view, self.loop, rd.leadership_lost)
        configuration = core.configuration
        if configuration is not self.configuration_seen:  # a change: the transport's peers
            self.configuration_seen = configuration
            self.peers.update(configuration)
        self.resolve_waiters()
        self._ready_seconds.observe(perf_counter() - started)
        self._term.value = core.term
        self._commit_index.value = core.log.committed
        self._applied_index.value = self.applied_index

    def send_now(self, messages: list[Message]) -> None:
        """Send ``messages`` and flush them to the wire."""
        cells = self._sent_cells
        for message in messages:
            cell = cells.get(message.dst)
            if cell is None:
                cell = peer_cell(cells, self._sent, message.dst)
            cell.value += 1
        self.send_messages(messages)

    def apply(self, rd: Ready) -> None:
        """Apply ``rd``'s committed entries and settle their writes."""
        machine = self.state_machine
        ledger = self.ledger
        for batch in rd.committed:
            results = machine.apply_batch(batch)
            self.applied_index = batch.last_index
            ledger.applied(batch, results)

    def resolve_waiters(self) -> None:
        raft_log = self.core.log
        self.waiters.resolve(raft_log.committed, raft_log.applied)
