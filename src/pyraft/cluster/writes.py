"""The writes of one member between the public API and the core, around the ``ProposalLedger``.

- ``enqueue`` (``replicate``, ``replicate_many``): a write enters the ledger's queue, with
  back-pressure: while the queue has no room the writer waits for it, or is refused with
  ``ProposalDroppedError`` under ``proposal_queue_full = "raise"``; the member's
  ``writable()`` check (running, not failed, storage working, leading) is made on entry and
  again after every wait. Returns the future the ledger settles with the write's fate.
  Every write asks, so the common answer is read here, compiled, from the state itself:
  the writes are ``open`` (the runtime opens them at start and closes them when it begins
  to stop or fails), the core's role is leader, and the log writer has no storage failure;
  only when one of those says no is ``writable()`` called, to raise why (it stays the
  authority: it must refuse whenever the fast check does not pass). A lone writer's write
  (nothing of this member's in flight, and the last batch proposed held one write) is
  proposed and handled within the call by ``Engine.propose_now`` when the engine is idle:
  a turn of the loop sooner. Writers that settle together come back in the same turn, and
  their writes wait for the task's turn to go in one batch.
- ``propose_queued`` (the processing task, each loop turn and after each Ready): what is
  queued goes to the core as one batch (one append, one sync, one AppendEntries per
  follower); a refusal by the core (not the leader, a transfer under way, a bound reached)
  fails that batch; anything else is a bug: the batch fails with ``ClusterStoppedError``
  and the error goes up to stop the member.
- ``drain`` (a graceful stop): the writes in flight may finish within a timeout; those
  still undecided then are left to the runtime, which fails them with
  ``CommandInterruptedError`` (their outcome is unknown: never a cancellation).
- ``settle_replaced`` (each Ready): writes proposed during an earlier lead of this member
  whose entries a Ready replaces (or a snapshot covers) get ``CommandOutcomeUnknownError``.

The part owns no task; the runtime binds it to its loop, its wake-up and its core at start.
Applying committed entries is the engine's (``Engine.apply`` calls ``ledger.applied``).

``Wake`` is that wake-up: what ``asyncio.Event`` does for the one task that waits on it (the
processing task), compiled, so that setting it (on every message received, every write
into an empty queue) is a C call rather than an interpreted frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from pyraft.cluster.ledger import ProposalLedger
from pyraft.cluster.persist import LogWriter
from pyraft.core.messages import Role, Snapshot
from pyraft.core.raft import RaftNode
from pyraft.errors import (
    ClusterStoppedError,
    InvariantError,
    NotLeaderError,
    ProposalDroppedError,
)
from pyraft.metrics import Metrics
from raftcore.framing import KIND_COMMAND, EntryBatch

__all__ = ["Proposer", "StorageState", "Wake", "Writes", "payloads_of"]

_LEADER = Role.LEADER


def payloads_of(commands: Iterable[Any]) -> list[bytes]:
    """The commands of one write as a list of its own: a ``bytes`` as it is (it cannot
    change), any other bytes-like object (``bytearray``, ``memoryview``, an array) copied
    now, so that changing it after the call does not change what is replicated. Anything
    else is a ``TypeError``: an ``int`` is not taken for a length as ``bytes(5)`` would.

    ``replicate_many`` calls this with every batch; compiled, it is a C loop (interpreted,
    the comprehension it replaces cost about a fifth of a leader's time at peak)."""
    payloads = list(commands)
    for i in range(len(payloads)):
        command = payloads[i]
        if type(command) is not bytes:
            payloads[i] = bytes(memoryview(command))
    return payloads


class Proposer(Protocol):
    """What the writes ask of the core (``RaftNode`` is one): its role and term, and to
    propose."""

    role: Role
    term: int

    def propose(self, payloads: Sequence[bytes], kind: int = ...) -> tuple[int, int]: ...


class StorageState(Protocol):
    """The log writer's state as the writes see it: the storage failure that refuses
    writes now, or None (``pyraft.cluster.persist.LogWriter`` is one)."""

    @property
    def failed(self) -> BaseException | None: ...


class Wake:
    """The processing task's wake-up: ``set``, ``clear`` and ``is_set`` as an
    ``asyncio.Event``'s, for one waiting task. ``wait()`` returns a future to await, done
    when the wake-up is set (at once if it is; a cancelled wait leaves nothing behind)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        if not self._set:
            self._set = True
            waiter = self._waiter
            if waiter is not None:
                self._waiter = None
                if not waiter.done():
                    waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def wait(self) -> asyncio.Future[None]:
        waiter = self._loop.create_future()
        if self._set:
            waiter.set_result(None)
        else:
            self._waiter = waiter
        return waiter


class Writes:
    """The writes of member ``member_id`` (module docstring). ``writable()`` raises why the
    member takes no write now (and must raise whenever ``open`` is False, the core does not
    lead or the storage failed); ``not_leader()`` is the ``NotLeaderError`` naming the
    leader this member knows. A proposed batch was appended in the core's ``term``, read
    right after ``propose``."""

    def __init__(self, member_id: int, ledger: ProposalLedger, metrics: Metrics, *,
                 writable: Callable[[], None], not_leader: Callable[[], NotLeaderError]) -> None:
        self.id = member_id
        self.ledger = ledger
        self._metrics = metrics
        #: held directly: each proposed batch records its size (a C call, compiled)
        self._proposal_batch = metrics.proposal_batch
        self._writable = writable
        self._not_leader = not_leader
        #: the member takes writes (started, not stopping, not failed): set by the runtime
        self.open = False
        #: set by the runtime once its engine exists (``Engine.propose_now``): proposes what
        #: is queued and handles its Ready at once when the engine is idle, True if it did
        self.propose_now: Callable[[], bool] | None = None
        # given by ``bind`` at start
        self._loop: asyncio.AbstractEventLoop
        self._new_future: Callable[[], asyncio.Future[Any]]
        self._wake: Wake | asyncio.Event
        self._core: Proposer
        self._storage: StorageState
        #: ``core`` again when it is pyraft's ``RaftNode``, and ``storage`` when it is pyraft's
        #: ``LogWriter``: the compiled build reads and calls them through these typed
        #: references (writes.pxd); None for others (a test's), reached through the above
        self._node: RaftNode | None = None
        self._writer: LogWriter | None = None

    def bind(self, loop: asyncio.AbstractEventLoop, wake: Wake | asyncio.Event,
             core: Proposer, storage: StorageState) -> None:
        """The member starts: its loop, the processing task's wake-up, its core, its log
        writer (``open`` stays False until the runtime opens the writes)."""
        self._loop, self._wake, self._core, self._storage = loop, wake, core, storage
        #: the loop's ``create_future``, looked up once: every write makes a future
        self._new_future = loop.create_future
        self._node = core if isinstance(core, RaftNode) else None
        self._writer = storage if isinstance(storage, LogWriter) else None

    def check_writable(self) -> None:
        """Raise why the member takes no write now (module docstring: the fast check, then
        ``writable()`` only when it does not pass)."""
        node, writer = self._node, self._writer
        if node is not None and writer is not None:  # pyraft's own: C reads when compiled
            if self.open and node.role is _LEADER and writer.failed is None:
                return
        elif self.open and self._core.role is _LEADER and self._storage.failed is None:
            return
        self._writable()

    def enqueue_now(self, payloads: list[bytes], many: bool) -> asyncio.Future[Any] | None:
        """``enqueue`` when the queue has room, without a coroutine (every write takes this
        path while the queue is not full): the write's future, or None when there is no
        room (then ``enqueue`` waits for it, or refuses)."""
        return self._enqueue_now(payloads, b"", many)

    def _enqueue_now(self, payloads: list[bytes] | None, command: bytes,
                     many: bool) -> asyncio.Future[Any] | None:
        """``enqueue_now`` of ``payloads``, or (None) of the one ``command`` of a
        ``replicate``, queued without a list of it."""
        self.check_writable()
        ledger = self.ledger
        if not ledger.has_room(1 if payloads is None else len(payloads)):
            return None
        future: asyncio.Future[Any] = self._new_future()
        propose_now: Callable[[], bool] | None = None  # set for a lone writer's write
        if not ledger.queued:
            # Only a write into an empty queue wakes the processing task: it clears the
            # wake-up and then takes the whole queue on the same turn of the loop
            # (``Engine.run``: every ``propose_queued`` ends a step, and the queue is empty
            # whenever it waits), so a non-empty queue always has a wake-up pending. This
            # saves an ``Event.set`` call (a Python frame) per write. A lone writer's write
            # (nothing of ours in flight, and the last batch held one write: concurrent
            # writers settle together and come back together, and theirs wait for the
            # task's turn to go in one append) is proposed, written and sent in this call
            # instead, a turn of the loop sooner, when the engine can (``propose_now``).
            if not ledger.proposals and ledger.last_batch_writes == 1:
                propose_now = self.propose_now  # None until the runtime binds its engine
            if propose_now is None:
                self._wake.set()
        if payloads is None:
            ledger.enqueue_command(command, future)
        else:
            ledger.enqueue(payloads, future, many)
        if propose_now is not None and not propose_now():  # not now: the task's turn
            self._wake.set()
        return future

    def enqueue_command(self, command: Any) -> asyncio.Future[Any] | None:
        """``enqueue_now`` of one ``replicate``'s command, taken as ``payloads_of`` takes it
        (a ``bytes`` as it is, another bytes-like object copied, anything else a
        ``TypeError``, before the writability check): the path of every single write, one
        call from the runtime instead of a tuple, ``payloads_of`` and ``enqueue_now``."""
        if type(command) is bytes:
            return self._enqueue_now(None, command, False)
        return self._enqueue_now(payloads_of((command,)), b"", False)

    async def enqueue(self, payloads: list[bytes], many: bool) -> asyncio.Future[Any]:
        """Queue one write (``many``: a ``replicate_many``, whose future gets the list of
        results); returns its future once it is in the queue."""
        self.check_writable()
        count = len(payloads)
        ledger = self.ledger
        if not ledger.has_room(count):
            if ledger.queue_full == "raise":
                raise ProposalDroppedError(
                    f"the proposal queue holds {ledger.queued} commands (the bound is "
                    f"{ledger.queue_max})")
            while not ledger.has_room(count):
                waiter: asyncio.Future[None] = self._loop.create_future()
                ledger.wait_for_room(waiter)
                await waiter
                self.check_writable()
        future = self.enqueue_now(payloads, many)
        if future is None:  # room was checked on this very turn of the loop
            raise InvariantError("the proposal queue had no room right after it had")
        return future

    async def drain(self, timeout: float) -> None:
        """Let the writes in flight finish, for at most ``timeout`` seconds (a graceful
        stop). The futures still pending then stay pending: the runtime fails them with
        ``CommandInterruptedError``. Cancelling them would tell their writers that their own
        task was cancelled, and an asyncio caller (a ``TaskGroup``) would take it so."""
        pending = [f for f in self.ledger.pending() if isinstance(f, asyncio.Future)]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    def propose_queued(self) -> None:
        """Hand everything queued to the core as one batch (module docstring)."""
        ledger = self.ledger
        batch = ledger.take_queue()
        if batch is None:
            return
        self._proposal_batch.observe(len(batch.payloads))
        node = self._node
        try:
            if node is not None:  # a C call when compiled
                first, _last = node.propose(batch.payloads, KIND_COMMAND)
            else:
                first, _last = self._core.propose(batch.payloads, KIND_COMMAND)
        except (NotLeaderError, ProposalDroppedError) as error:
            if isinstance(error, NotLeaderError):
                error = self._not_leader()
            ledger.fail_batch(batch, error)
        except Exception as error:
            # A bug (the core refuses proposals only with the errors above): the processing
            # loop stops the member (_fatal), which fails the queue and the proposals; the
            # commands taken off the queue are in neither, so they fail here, or their
            # writers would wait forever.
            failure = ClusterStoppedError(f"member {self.id} failed: {error!r}")
            failure.__cause__ = error
            ledger.fail_batch(batch, failure)
            raise
        else:
            ledger.proposed(batch, first, node.term if node is not None else self._core.term)

    def settle_replaced(self, entries: Sequence[EntryBatch], snapshot: Snapshot | None,
                        leading: bool, term: int) -> None:
        """A Ready brings ``entries`` (and maybe ``snapshot``) to this member's log, which
        leads ``term`` if ``leading``: proposals from an earlier lead whose entries they
        replace (or the snapshot covers) have an unknown outcome."""
        ledger = self.ledger
        if ledger.proposals and (entries or snapshot is not None) and not (
                leading and ledger.leads_term(term)):
            if snapshot is not None:  # it covers what is below: unknown
                ledger.replaced(snapshot.meta.index + 1, entries, covered=snapshot.meta.index)
            else:
                ledger.replaced(entries[0].first_index, entries)
