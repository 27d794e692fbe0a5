"""The smaller parts of RaftCluster on their own: bootstrap membership and peer addresses
(membership), the lease in real time and quorum contact (lease), and persisting a Ready with
its inline-sync decision and retry after a storage failure (persist)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
from collections.abc import Mapping
from typing import Any

import pytest

from pyraft.cluster.lease import TickClock, in_touch_with_quorum, lease_status
from pyraft.cluster.membership import Peers, announce, bootstrap, check_peers
from pyraft.cluster.persist import LogWriter
from pyraft.cluster.snapshots import Snapshotting
from pyraft.config import RaftConfig
from pyraft.core import Configuration, MemoryLogStorage, RaftNode
from pyraft.core.messages import HardState, Message
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


class Rd:
    """The fields of a Ready that persisting reads."""

    def __init__(self, entries: list[Any], hard_state: HardState | None = None) -> None:
        self.entries = entries
        self.hard_state = hard_state
        self.must_sync = bool(entries)
        self.snapshot = None
        self.snapshot_chunks: list[Any] = []


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
        with concurrent.futures.ThreadPoolExecutor(1) as executor:
            writer.bind(asyncio.get_running_loop(), executor)
            entries = encode_entries(1, 1, [b"a", b"b"], KIND_COMMAND)
            task = asyncio.ensure_future(writer.persist(Rd([entries], HardState(1, 1, 0))))
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
    small = Rd([encode_entries(1, 1, [b"x" * 10])])
    big = Rd([encode_entries(1, 1, [b"x" * 2000])])
    assert memory.sync_inline(big)
    assert durable.sync_inline(small) and not durable.sync_inline(big)
    durable.sync_seconds = 0.005
    assert not durable.sync_inline(small)
    durable_storage.close()
