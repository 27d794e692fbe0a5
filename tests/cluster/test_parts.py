"""The parts RaftCluster is made of, each on its own: the event bus, the waiters and the
snapshotting (a memory log and a disk log, without a cluster)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import pytest

from pyraft.cluster.events import ClusterEvent, EventBus, LeaderChange
from pyraft.cluster.snapshots import Snapshotting, read_whole
from pyraft.cluster.waiters import Waiters
from pyraft.core import Configuration, MemoryLogStorage
from pyraft.core.messages import HardState, Snapshot, SnapshotChunk, SnapshotMeta
from pyraft.errors import ClusterStoppedError, InvariantError, ProposalDroppedError
from pyraft.metrics import Metrics
from pyraft.storage.log import DurableLogStorage
from pyraft.storage.state_machine import ConsensusOnlyState
from raftcore.framing import KIND_COMMAND, encode_entries
from tests.cluster.test_ledger import FakeFuture


# ---- the event bus --------------------------------------------------------------------------
def test_the_bus_calls_every_callback_even_after_one_raises() -> None:
    bus = EventBus()
    seen: list[object] = []

    def broken(_change: LeaderChange) -> None:
        raise RuntimeError("a user's bug")

    bus.on_leader_changed(broken)
    bus.on_leader_changed(seen.append)
    bus.on_event(seen.append)
    change = LeaderChange(2, 5, "a:2")
    event = ClusterEvent("leader-changed", 2, 5, "follower")
    bus.publish_leader_change(change)
    bus.emit(event)
    assert seen == [change, event]


def test_a_slow_subscriber_keeps_the_latest_changes() -> None:
    async def body() -> list[LeaderChange]:
        bus = EventBus()
        running = True
        stream = bus.leader_changes(lambda: running)
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)  # the subscriber is registered
        for term in range(1, 101):  # more than the queue holds
            bus.publish_leader_change(LeaderChange(1, term, None))
        got = [await first]
        while len(got) < 64:
            got.append(await stream.__anext__())
        running = False
        await stream.aclose()
        return got

    got = asyncio.run(body())
    assert got[-1].term == 100  # the newest is never dropped
    assert [c.term for c in got] == sorted(c.term for c in got)


def test_the_leadership_token_is_one_per_term_and_cancelled_on_loss() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        bus = EventBus()
        token = bus.token_for_term(3, loop)
        assert bus.token_for_term(3, loop) is token and not token.cancelled
        called: list[bool] = []
        token.add_callback(lambda: called.append(True))
        bus.cancel_token()
        await asyncio.sleep(0)
        assert token.cancelled and called == [True]
        await asyncio.wait_for(token.wait_cancelled(), 1)
        renewed = bus.token_for_term(3, loop)  # a cancelled token is never handed out again
        assert renewed is not token and not renewed.cancelled
        newer = bus.token_for_term(4, loop)
        assert renewed.cancelled and newer.term == 4

    asyncio.run(body())


# ---- waiters --------------------------------------------------------------------------------
def test_waiters_resolve_on_commit_apply_read_and_condition() -> None:
    waiters = Waiters()
    commit, applied, read, condition = FakeFuture(), FakeFuture(), FakeFuture(), FakeFuture()
    state = {"ok": False}
    waiters.until_committed(5, commit)
    waiters.until_applied(4, applied)
    waiters.add_read(b"r1", read)
    waiters.until(lambda: state["ok"], condition)
    waiters.resolve(committed=4, applied=3)
    assert not (commit.done() or applied.done() or read.done() or condition.done())
    waiters.read_state(b"r1", 4)  # the read index arrived: now waits for index 4 applied
    state["ok"] = True
    waiters.resolve(committed=5, applied=4)
    assert commit.outcomes == [("result", None)]
    assert applied.outcomes == [("result", 4)] and read.outcomes == [("result", 4)]
    assert condition.outcomes == [("result", None)]


def test_a_condition_that_raises_fails_its_waiter() -> None:
    waiters = Waiters()
    future = FakeFuture()
    error = ProposalDroppedError("could not catch up")

    def condition() -> bool:
        raise error

    waiters.until(condition, future)
    waiters.resolve(0, 0)
    assert future.outcomes == [("error", error)]


def test_catch_up_failure_and_fail_all() -> None:
    waiters = Waiters()
    failed, commit, read, gave_up = FakeFuture(), FakeFuture(), FakeFuture(), FakeFuture()
    waiters.failed_catch_up[7] = failed
    waiters.catch_up_failed(7)
    waiters.catch_up_failed(8)  # nobody is adding member 8: nothing happens
    assert failed.outcomes == [("result", None)]
    waiters.until_committed(9, commit)
    waiters.add_read(b"r", read)
    waiters.until_applied(9, gave_up)
    gave_up.set_result("timed out")  # a caller that gave up is never settled again
    stop = ClusterStoppedError("stopped")
    waiters.fail_all(stop)
    assert commit.outcomes == [("error", stop)] and read.outcomes == [("error", stop)]
    assert gave_up.outcomes == [("result", "timed out")]


# ---- snapshotting ---------------------------------------------------------------------------
class FakeCore:
    """The two calls snapshotting makes of the core."""

    def __init__(self, configuration: Configuration) -> None:
        self.configuration = configuration
        self.compacted: list[int] = []

    def configuration_at(self, index: int) -> Configuration:
        return self.configuration

    def compacted_to(self, index: int) -> None:
        self.compacted.append(index)


CONFIGURATION = Configuration(frozenset({1}))


def snapshotting(storage: Any, machine: ConsensusOnlyState) -> tuple[Snapshotting, list[Any]]:
    fatal: list[Any] = []
    tasks: list[Any] = []
    part = Snapshotting(1, storage, machine, Metrics(1), chunk_bytes=1024,
                        running=lambda: True, failed=lambda: bool(fatal), fatal=fatal.append,
                        track=tasks.append, untrack=tasks.remove)
    return part, fatal


def fill(storage: Any, count: int) -> None:
    storage.append(encode_entries(1, [1] * count, [b"c%d" % i for i in range(count)],
                                  KIND_COMMAND))


def test_a_snapshot_in_memory_is_stored_at_once_and_releases_the_log() -> None:
    async def body() -> None:
        storage = MemoryLogStorage(CONFIGURATION)
        fill(storage, 10)
        part, fatal = snapshotting(storage, ConsensusOnlyState(CONFIGURATION))
        core = FakeCore(CONFIGURATION)
        with concurrent.futures.ThreadPoolExecutor(1) as executor:
            part.bind(asyncio.get_running_loop(), executor, core)
            part.sink(6, [b"ab", b"cd"])  # chunks are joined
        assert core.compacted == [6] and not fatal
        assert storage.snapshot().meta.index == 6 and storage.snapshot().data == b"abcd"

    asyncio.run(body())


def test_a_snapshot_on_disk_is_written_on_the_io_thread_then_adopted(tmp_path) -> None:
    async def body() -> None:
        storage = DurableLogStorage(str(tmp_path), sync="never")
        storage.record_membership(CONFIGURATION)
        fill(storage, 10)
        storage.sync()
        part, fatal = snapshotting(storage, ConsensusOnlyState(CONFIGURATION))
        core = FakeCore(CONFIGURATION)
        with concurrent.futures.ThreadPoolExecutor(1) as executor:
            part.bind(asyncio.get_running_loop(), executor, core)
            part.sink(4, b"first")
            part.sink(6, b"second")  # waits for the first write
            part.sink(8, b"third")  # replaces the one waiting: it covers more
            assert core.compacted == []  # nothing adopted before its file is written
            for _ in range(200):
                if core.compacted == [4, 8]:
                    break
                await asyncio.sleep(0.01)
        assert core.compacted == [4, 8] and not fatal
        assert read_whole(storage.snapshot().data) == b"third"
        storage.close()

    asyncio.run(body())


def test_read_whole_reads_a_buffer() -> None:
    assert read_whole(b"x") == b"x"
    assert read_whole(bytearray(b"abc")) == b"abc"


class Recording(ConsensusOnlyState):
    def __init__(self) -> None:
        super().__init__(CONFIGURATION)
        self.installed: list[tuple[int, bytes]] = []

    def install_snapshot(self, snapshot: Snapshot) -> None:
        self.installed.append((snapshot.meta.index, bytes(snapshot.data)))
        super().install_snapshot(snapshot)


@pytest.mark.parametrize("durable", [False, True])
def test_a_received_snapshot_is_written_in_chunks_then_installed(tmp_path, durable) -> None:
    async def body() -> None:
        storage: Any = DurableLogStorage(str(tmp_path), sync="never") if durable \
            else MemoryLogStorage()
        storage.record_membership(CONFIGURATION)
        machine = Recording()
        part, fatal = snapshotting(storage, machine)
        meta = SnapshotMeta(20, 3, **CONFIGURATION.snapshot_fields())
        chunks = [SnapshotChunk(meta, 0, b"abc", False), SnapshotChunk(meta, 3, b"def", True)]
        with concurrent.futures.ThreadPoolExecutor(1) as executor:
            part.bind(asyncio.get_running_loop(), executor, FakeCore(CONFIGURATION))
            part.write_chunks(chunks[:1])
            part.write_chunks(chunks)  # a retried Ready: the chunk written is skipped
            assert await part.install_received(meta) == 6
        assert machine.installed == [(20, b"abcdef")] and not fatal
        assert storage.first_index() == 21
        assert read_whole(storage.snapshot().data) == b"abcdef"
        part.discard_unused_receive()  # nothing left to discard
        if durable:
            storage.close()

    asyncio.run(body())


def test_installing_before_the_last_chunk_is_a_broken_invariant() -> None:
    async def body() -> None:
        storage = MemoryLogStorage(CONFIGURATION)
        part, _ = snapshotting(storage, Recording())
        meta = SnapshotMeta(20, 3, **CONFIGURATION.snapshot_fields())
        with concurrent.futures.ThreadPoolExecutor(1) as executor:
            part.bind(asyncio.get_running_loop(), executor, FakeCore(CONFIGURATION))
            part.write_chunks([SnapshotChunk(meta, 0, b"abc", False)])
            with pytest.raises(InvariantError, match="before it was received whole"):
                await part.install_received(meta)
            part.abort_receive()

    asyncio.run(body())


# ---- recovery at start ----------------------------------------------------------------------
class Recovering(ConsensusOnlyState):
    """Records what ``recover`` was given."""

    def __init__(self) -> None:
        super().__init__(CONFIGURATION)
        self.given: list[tuple[int, int | None, Any]] = []

    def recover(self, log: Any, commit_index: int, snapshot: Snapshot | None = None,
                **options: Any) -> int:
        self.given.append((commit_index, None if snapshot is None else snapshot.meta.index,
                           options.get("sink")))
        return super().recover(log, commit_index, snapshot, **options)


def test_recovery_replays_from_the_stored_snapshot_to_the_commit_hint() -> None:
    async def body() -> None:
        storage = MemoryLogStorage(CONFIGURATION)
        fill(storage, 10)
        first, _ = snapshotting(storage, ConsensusOnlyState(CONFIGURATION))
        with concurrent.futures.ThreadPoolExecutor(1) as executor:
            first.bind(asyncio.get_running_loop(), executor, FakeCore(CONFIGURATION))
            first.sink(6, b"state at 6")
        # a restart: a fresh state machine, the commit hint beyond the snapshot
        storage.set_hard_state(HardState(term=1, vote=1, commit=9))
        machine = Recovering()
        part, fatal = snapshotting(storage, machine)
        part.finish_interrupted_install()  # not a disk state machine: nothing to finish
        assert part.recover() == 9 and not fatal
        ((commit, snapshot_index, sink),) = machine.given
        assert (commit, snapshot_index) == (9, 6) and sink == part.sink
        # a commit hint beyond the log is cut to the log's end
        storage.set_hard_state(HardState(term=1, vote=1, commit=50))
        again = Recovering()
        assert snapshotting(storage, again)[0].recover() == 10
        assert again.given[0][:2] == (10, 6)

    asyncio.run(body())


def test_recovery_without_a_snapshot_replays_the_log_to_the_commit_hint() -> None:
    storage = MemoryLogStorage(CONFIGURATION)
    fill(storage, 5)
    storage.set_hard_state(HardState(term=1, vote=1, commit=3))
    machine = Recovering()
    assert snapshotting(storage, machine)[0].recover() == 3
    assert machine.given[0][:2] == (3, None)
