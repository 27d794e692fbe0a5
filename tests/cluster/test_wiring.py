"""The smaller parts of RaftCluster on their own: bootstrap membership and peer addresses
(membership), the lease in real time and quorum contact (lease), and persisting a Ready with
its inline-sync decision and retry after a storage failure (persist)."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from pyraft.cluster.iothread import IOThread
from pyraft.cluster.lease import TickClock, in_touch_with_quorum, lease_status
from pyraft.cluster.membership import Peers, announce, bootstrap, check_peers
from pyraft.cluster.persist import LogWriter
from pyraft.cluster.snapshots import Snapshotting
from pyraft.config import RaftConfig
from pyraft.core import Configuration, MemoryLogStorage, RaftNode
from pyraft.core.messages import HardState, Message, Ready
from pyraft.core.view import CoreView
from pyraft.errors import ConfigError, MembershipMismatchError, StorageFullError
from pyraft.metrics import Metrics
from pyraft.storage.state_machine import ConsensusOnlyState
from pyraft.transport.base import Transport
from raftcore.framing import KIND_COMMAND, encode_entries
from tests.core.test_view import leader_alone

PEERS = {1: "127.0.0.1:7101", 2: "127.0.0.1:7102", 3: "127.0.0.1:7103"}


# ---- membership -----------------------------------------------------------------------------
def test_bootstrap_of_a_starting_and_of_a_joining_member() -> None:
    configuration, static = bootstrap(1, PEERS, PEERS[1], join=False)
    assert configuration is not None and configuration.voters == {1, 2, 3}
    assert configuration.address_of(2) == PEERS[2] and static == PEERS
    joining, static = bootstrap(4, PEERS, "127.0.0.1:7104", join=True)
    assert joining is not None and joining.voters == {1, 2, 3} and static[4] == "127.0.0.1:7104"
    restarted, static = bootstrap(4, None, "127.0.0.1:7104", join=True)
    assert restarted is None and static == {4: "127.0.0.1:7104"}
    alone, _ = bootstrap(1, None, "127.0.0.1:7101", join=False)
    assert alone is not None and alone.voters == {1}
    with pytest.raises(ValueError, match="addresses of existing members"):
        bootstrap(4, {4: "127.0.0.1:7104"}, "127.0.0.1:7104", join=True)


def test_peers_given_on_a_restart_must_match_the_stored_membership() -> None:
    wanted, _ = bootstrap(1, PEERS, PEERS[1], join=False)
    assert wanted is not None
    check_peers(1, wanted, wanted, wanted)  # the same: fine
    other, _ = bootstrap(1, {1: PEERS[1], 2: PEERS[2]}, PEERS[1], join=False)
    assert other is not None
    check_peers(1, other, wanted, other)  # the configuration in force agrees
    with pytest.raises(MembershipMismatchError):
        check_peers(1, other, wanted, wanted)


class RecordingTransport(Transport):
    def __init__(self) -> None:
        self.peers: list[dict[int, str]] = []

    async def start(self, deliver: Any) -> None: ...

    def set_peers(self, peers: Mapping[int, str]) -> None:
        self.peers.append(dict(peers))

    def send(self, message: Message) -> None: ...

    async def stop(self) -> None: ...


def test_peers_follow_the_configuration_with_routes_and_report_changes() -> None:
    transport = RecordingTransport()
    events: list[tuple[str, int | None]] = []
    peers = Peers(1, {1: PEERS[1], 2: PEERS[2], 3: PEERS[3]}, {3: "127.0.0.1:9103"},
                  transport, lambda kind, member: events.append((kind, member)))
    first, _ = bootstrap(1, PEERS, PEERS[1], join=False)
    assert first is not None
    peers.update(first)
    peers.update(first)  # the same configuration object: nothing to do
    assert transport.peers == [{2: PEERS[2], 3: "127.0.0.1:9103"}] and events == []
    peers.add(4, "127.0.0.1:7104")
    second = first.add_learner(4).with_info(4, "127.0.0.1:7104")
    peers.update(second)
    assert transport.peers[-1][4] == "127.0.0.1:7104" and events == [("member-added", 4)]
    third = Configuration(frozenset({1, 2}))
    peers.update(third)
    assert ("member-removed", 3) in events
    assert peers.address_of(2, None) == PEERS[2] and peers.address_of(None, third) is None


def test_announce_retries_then_stops_when_refused() -> None:
    async def body() -> list[int]:
        calls: list[int] = []

        async def announcer(member: int, address: str, metadata: dict[str, str]) -> None:
            calls.append(member)
            if len(calls) == 1:
                raise OSError("the leader is not reachable yet")
            raise ConfigError("credential", "refused")

        readiness: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await asyncio.wait_for(announce(4, "127.0.0.1:7104", {}, announcer, readiness), 5)
        with pytest.raises(ConfigError):
            readiness.result()
        return calls

    assert asyncio.run(body()) == [4, 4]


# ---- lease ----------------------------------------------------------------------------------
def test_the_lease_is_counted_from_the_real_time_of_its_tick() -> None:
    node = leader_alone()
    view = CoreView(node)
    clock = TickClock(node.options.lease_ticks)
    for tick in range(3):
        node.tick()
        clock.ticked(100.0 + tick * 0.01)  # ticks every 10 ms
    assert view.lease_remaining_ticks > 0
    fresh = lease_status(view, clock, 10.0, now=100.03)
    assert fresh.valid and fresh.expires_in_ms > 0
    paused = lease_status(view, clock, 10.0, now=200.0)  # the loop was paused: gone
    assert not paused.valid and paused.expires_in_ms == 0.0
    assert not lease_status(None, clock, 10.0, now=0.0).valid
    assert not lease_status(view, TickClock(), 10.0, now=100.03).valid  # no tick remembered


def test_a_lone_leader_is_in_touch_with_its_quorum_and_a_lone_follower_is_not() -> None:
    assert in_touch_with_quorum(CoreView(leader_alone()), 1)
    follower = RaftNode(RaftConfig(member_id=2).core_options(),
                        MemoryLogStorage(Configuration(frozenset({1, 2, 3}))), random.Random(4))
    assert not in_touch_with_quorum(CoreView(follower), 2)


# ---- persist --------------------------------------------------------------------------------
class FullDisk(MemoryLogStorage):
    """Fails the first ``failures`` appends with a full disk."""

    def __init__(self, failures: int) -> None:
        super().__init__(Configuration(frozenset({1})))
        self.failures = failures

    def append(self, batch: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise StorageFullError("no space left", path="/tmp")
        super().append(batch)


def ready_with(entries: list[Any], hard_state: HardState | None = None) -> Ready:
    """A Ready with what persisting reads: entries, a hard state, a sync when entries."""
    rd = Ready(1)
    rd.entries = entries
    rd.hard_state = hard_state
    rd.must_sync = bool(entries)
    return rd


def writer_for(storage: Any, metrics: Metrics) -> LogWriter:
    snapshots = Snapshotting(1, storage, ConsensusOnlyState(), metrics, chunk_bytes=1024,
                             running=lambda: True, failed=lambda: False, fatal=print,
                             track=lambda task: None, untrack=lambda task: None)
    return LogWriter(1, storage, metrics, snapshots, inline_sync_max_ms=0.5,
                     inline_sync_bytes_max=1000, installed=lambda index: None)


def test_a_ready_is_persisted_and_a_storage_failure_retried(monkeypatch) -> None:
    monkeypatch.setattr("pyraft.cluster.persist.RETRY_SECONDS", 0.01)

    async def body() -> None:
        storage = FullDisk(failures=2)
        metrics = Metrics(1)
        writer = writer_for(storage, metrics)
        with IOThread(asyncio.get_running_loop(), "test-io") as executor:
            writer.bind(asyncio.get_running_loop(), executor)
            entries = encode_entries(1, 1, [b"a", b"b"], KIND_COMMAND)
            task = asyncio.ensure_future(writer.persist(ready_with([entries], HardState(1, 1, 0))))
            for _ in range(100):
                if writer.failed is not None:
                    break
                await asyncio.sleep(0.001)
            assert isinstance(writer.failed, StorageFullError)  # writes refused meanwhile
            await asyncio.wait_for(task, 5)
        assert writer.failed is None and storage.last_index() == 2
        assert storage.hard_state == HardState(1, 1, 0)
        assert metrics.storage_failures.value() == 2

    asyncio.run(body())


def test_syncs_run_inline_in_memory_and_while_fast_and_small(tmp_path) -> None:
    from pyraft.storage.log import DurableLogStorage

    metrics = Metrics(1)
    memory = writer_for(MemoryLogStorage(), metrics)
    durable_storage = DurableLogStorage(str(tmp_path), sync="never")
    durable = writer_for(durable_storage, metrics)
    small = ready_with([encode_entries(1, 1, [b"x" * 10])])
    big = ready_with([encode_entries(1, 1, [b"x" * 2000])])
    assert memory.sync_inline(big)
    assert durable.sync_inline(small) and not durable.sync_inline(big)
    durable.sync_seconds = 0.005
    assert not durable.sync_inline(small)
    durable_storage.close()


# ---- persist: pipelined Readys --------------------------------------------------------------
class SyncFailsOnce(MemoryLogStorage):
    """Appends work; the first ``sync`` fails with a full disk (a log that syncs: durable)."""

    durable = True

    def __init__(self) -> None:
        super().__init__(Configuration(frozenset({1})))
        self.sync_failures = 1

    def sync(self) -> None:
        if self.sync_failures:
            self.sync_failures -= 1
            raise StorageFullError("no space left", path="/tmp")



class Delegating:
    """A ``LogStore`` that extends none of pyraft's classes (a user's own): every call goes
    to a memory log, counted, and it says it is durable (so its syncs are real calls)."""

    durable = True

    def __init__(self) -> None:
        self.inner = MemoryLogStorage(Configuration(frozenset({1})))
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def append(self, batch) -> None:
        self.calls.append("append")
        self.inner.append(batch)

    def sync(self) -> None:
        self.calls.append("sync")

    def set_hard_state(self, hard_state: HardState) -> None:
        self.calls.append("hard_state")
        self.inner.set_hard_state(hard_state)

    def last_index(self) -> int:
        return self.inner.last_index()


class Overriding(MemoryLogStorage):
    """pyraft's memory log with its writes overridden in Python (the compiled writer calls
    pyraft's storages through their class: an override must still be the one called)."""

    durable = True

    def __init__(self) -> None:
        super().__init__(Configuration(frozenset({1})))
        self.calls: list[str] = []

    def append(self, batch) -> None:
        self.calls.append("append")
        super().append(batch)

    def sync(self) -> None:
        self.calls.append("sync")

    def set_hard_state(self, hard_state: HardState) -> None:
        self.calls.append("hard_state")
        super().set_hard_state(hard_state)


@pytest.mark.parametrize("kind", [Delegating, Overriding])
def test_the_writer_writes_any_log_store_through_its_own_methods(kind) -> None:
    """The writer appends, syncs and saves the hard state through the storage's methods,
    whether it is one of pyraft's classes overridden in Python or a class of its own."""
    storage = kind()
    writer = writer_for(storage, Metrics(1))
    first = ready_with([encode_entries(1, 1, [b"a", b"b"])], HardState(1, 1, 0))
    second = ready_with([encode_entries(3, 1, [b"c"])], HardState(1, 1, 2))
    for rd in (first, second):
        assert writer.can_pipeline(rd)
        written = writer.begin(rd)  # small and fast: synced inline
        assert written.job is None and written.error is None
    assert storage.calls == ["append", "sync", "hard_state"] * 2
    assert storage.last_index() == 3 and storage.hard_state == HardState(1, 1, 2)
    assert not writer.can_pipeline(ready_with([encode_entries(2, 2, [b"x"])]))


def test_a_ready_that_only_moves_the_commit_index_is_stored_untimed() -> None:
    """A Ready whose hard state changed only in its commit index has nothing to make durable:
    the writer stores the hard state (a hint) without a sync and without timing it as one;
    a Ready with entries, or a new term or vote, is synced and timed."""
    async def body() -> None:
        storage = Overriding()
        metrics = Metrics(1)
        writer = writer_for(storage, metrics)
        with IOThread(asyncio.get_running_loop(), "test-io") as executor:
            writer.bind(asyncio.get_running_loop(), executor)
            writer.begin(ready_with([encode_entries(1, 1, [b"a"])], HardState(1, 1, 0)))
            assert metrics.fsync_seconds.count() == 1
            commit = ready_with([], HardState(1, 1, 1))  # must_sync stays False
            assert writer.begin(commit).job is None
            await writer.persist(ready_with([], HardState(1, 1, 1)))
            assert metrics.fsync_seconds.count() == 1  # neither path timed a sync
            assert storage.calls == ["append", "sync", "hard_state", "hard_state", "hard_state"]
            vote = ready_with([], HardState(2, 3, 1))
            vote.must_sync = True  # a new term and vote must be durable before answering
            writer.begin(vote)
            assert metrics.fsync_seconds.count() == 2 and storage.hard_state == HardState(2, 3, 1)

    asyncio.run(body())

def test_what_the_writer_pipelines() -> None:
    storage = MemoryLogStorage(Configuration(frozenset({1})))
    writer = writer_for(storage, Metrics(1))
    storage.append(encode_entries(1, 1, [b"a", b"b"]))
    assert writer.can_pipeline(ready_with([encode_entries(3, 1, [b"c"])]))
    assert writer.can_pipeline(ready_with([], HardState(2, 1, 0)))
    assert not writer.can_pipeline(ready_with([encode_entries(2, 2, [b"c"])]))  # replaces entry 2
    with_snapshot = ready_with([])
    with_snapshot.snapshot = object()  # type: ignore[assignment]
    assert not writer.can_pipeline(with_snapshot)
    with_chunks = ready_with([])
    with_chunks.snapshot_chunks = [object()]
    assert not writer.can_pipeline(with_chunks)
    writer.failed = StorageFullError("no space left", path="/tmp")
    assert not writer.can_pipeline(ready_with([encode_entries(3, 1, [b"c"])]))


def test_a_failed_sync_rewrites_its_ready_and_every_later_one(monkeypatch) -> None:
    """Two Readys written, both syncs on the I/O thread; the first sync fails. Rewriting the
    first cuts the second's entries from the log (an append replaces the suffix), so the
    second is written again too: the log ends with both, in order."""
    monkeypatch.setattr("pyraft.cluster.persist.RETRY_SECONDS", 0.01)

    async def body() -> None:
        storage = SyncFailsOnce()
        metrics = Metrics(1)
        writer = writer_for(storage, metrics)
        writer.inline_sync_max_ms = 0.0  # every sync on the I/O thread
        with IOThread(asyncio.get_running_loop(), "test-io") as executor:
            writer.bind(asyncio.get_running_loop(), executor)
            first = ready_with([encode_entries(1, 1, [b"a", b"b"])], HardState(1, 1, 0))
            second = ready_with([encode_entries(3, 1, [b"c", b"d"])])
            written = [writer.begin(first), writer.begin(second)]
            assert all(w.job is not None for w in written) and storage.last_index() == 4
            await writer.finish(first, written[0])
            assert storage.last_index() == 2  # the rewrite of the first cut the second
            assert not writer.can_pipeline(ready_with([encode_entries(5, 1, [b"e"])]))
            await writer.finish(second, written[1])
            writer.pipeline_empty()
        assert storage.last_index() == 4 and list(storage.entries(1, 5).terms) == [1] * 4
        assert writer.failed is None and metrics.storage_failures.value() == 1
        assert storage.hard_state == HardState(1, 1, 0)
        assert writer.can_pipeline(ready_with([encode_entries(5, 1, [b"e"])]))

    asyncio.run(body())


def test_an_append_that_fails_stops_the_pipeline_until_it_is_written(monkeypatch) -> None:
    monkeypatch.setattr("pyraft.cluster.persist.RETRY_SECONDS", 0.01)

    async def body() -> None:
        storage = FullDisk(failures=1)
        writer = writer_for(storage, Metrics(1))
        with IOThread(asyncio.get_running_loop(), "test-io") as executor:
            writer.bind(asyncio.get_running_loop(), executor)
            rd = ready_with([encode_entries(1, 1, [b"a"])])
            written = writer.begin(rd)
            assert isinstance(written.error, StorageFullError) and written.job is None
            # the next Ready is not written behind the failed one
            assert not writer.can_pipeline(ready_with([encode_entries(2, 1, [b"b"])]))
            await writer.finish(rd, written)
            writer.pipeline_empty()
        assert storage.last_index() == 1 and writer.failed is None
        assert writer.can_pipeline(ready_with([encode_entries(2, 1, [b"b"])]))

    asyncio.run(body())


class CountedSyncs(MemoryLogStorage):
    """Counts syncs and the hard states saved; the first sync waits for ``release``
    (a log that syncs: durable)."""

    durable = True

    def __init__(self) -> None:
        super().__init__(Configuration(frozenset({1})))
        self.syncs = 0
        self.saved: list[HardState] = []
        self.release = threading.Event()

    def sync(self) -> None:
        self.syncs += 1
        if self.syncs == 1:
            self.release.wait(5)

    def set_hard_state(self, hard_state: HardState) -> None:
        self.saved.append(hard_state)
        super().set_hard_state(hard_state)


def test_readys_written_while_a_sync_waits_share_it() -> None:
    """Ready 1's sync runs (held); Readys 2 and 3 are written meanwhile: they share one
    queued sync, which saves the newer hard state, not one sync each."""

    async def body() -> CountedSyncs:
        storage = CountedSyncs()
        writer = writer_for(storage, Metrics(1))
        writer.inline_sync_max_ms = 0.0  # every sync on the I/O thread
        with IOThread(asyncio.get_running_loop(), "test-io") as executor:
            writer.bind(asyncio.get_running_loop(), executor)
            readys = [ready_with([encode_entries(1, 1, [b"a"])], HardState(1, 1, 0)),
                      ready_with([encode_entries(2, 1, [b"b"])], HardState(1, 1, 1)),
                      ready_with([encode_entries(3, 1, [b"c"])], HardState(1, 1, 2))]
            first = writer.begin(readys[0])
            for _ in range(500):  # until the I/O thread holds the first sync
                if storage.syncs:
                    break
                await asyncio.sleep(0.001)
            written = [first, writer.begin(readys[1]), writer.begin(readys[2])]
            assert written[1].job is written[2].job is not written[0].job
            storage.release.set()
            for rd, w in zip(readys, written):
                await writer.finish(rd, w)
        return storage

    storage = asyncio.run(body())
    assert storage.syncs == 2 and storage.last_index() == 3
    assert storage.saved == [HardState(1, 1, 0), HardState(1, 1, 2)]
