"""RaftCluster is built from one ClusterConfig: its settings come from there, the defaults are
the config's, a RaftConfig is refused, and transport and storage are built when not given."""

from __future__ import annotations

import asyncio

import pytest

from pyraft.cluster.runtime import RaftCluster
from pyraft.config import ClusterConfig, RaftConfig
from pyraft.core import MemoryLogStorage
from pyraft.errors import ConfigError, ProposalDroppedError
from pyraft.storage.log import DurableLogStorage
from pyraft.testing.cluster import leader_of, run_on_fresh_loop
from pyraft.transport.memory import MemoryNetwork
from pyraft.transport.tcp import TcpTransport


def test_a_protocol_config_is_refused_with_a_type_error() -> None:
    with pytest.raises(TypeError, match="ClusterConfig, not a RaftConfig"):
        RaftCluster(RaftConfig(member_id=1), transport=MemoryNetwork().transport(1))  # type: ignore[arg-type]


def test_settings_come_from_the_config() -> None:
    config = ClusterConfig(member_id=2, peers={1: "127.0.0.1:7101", 2: "127.0.0.1:7102"},
                           metadata={"zone": "a"}, routes={1: "127.0.0.1:9101"},
                           proposal_queue_max=7, proposal_queue_full="raise",
                           graceful_shutdown_timeout_ms=123.0, inline_sync_max_ms=0.25,
                           inline_sync_bytes_max=1000, consensus_snapshot_entries=11)
    member = RaftCluster(config, transport=MemoryNetwork().transport(2))
    assert member._ledger.queue_max == 7 and member._ledger.queue_full == "raise"
    assert member.graceful_shutdown_timeout_ms == 123.0
    assert member._writer.inline_sync_max_ms == 0.25
    assert member._writer.inline_sync_bytes_max == 1000
    assert member.state_machine.snapshot_entries == 11
    assert member._metadata == {"zone": "a"} and member._peers._routes == {1: "127.0.0.1:9101"}
    assert member.bootstrap_configuration.voters == {1, 2}
    assert member.bootstrap_configuration.address_of(2) == "127.0.0.1:7102"
    assert isinstance(member.storage, MemoryLogStorage)


def test_one_default_each_in_the_config() -> None:
    config = ClusterConfig(member_id=1)
    member = RaftCluster(config, transport=MemoryNetwork().transport(1))
    assert member._ledger.queue_max == config.proposal_queue_max == 65_536
    assert member.graceful_shutdown_timeout_ms == config.graceful_shutdown_timeout_ms == 2_000
    assert member._writer.inline_sync_max_ms == 0.5


def test_a_joining_member_is_not_in_the_starting_configuration() -> None:
    config = ClusterConfig(member_id=4, cold_start=False,
                           peers={1: "127.0.0.1:7101", 4: "127.0.0.1:7104"})
    member = RaftCluster(config, transport=MemoryNetwork().transport(4))
    assert member.bootstrap_configuration.voters == {1}
    assert member._peers.static[4] == "127.0.0.1:7104"


def test_without_transport_or_storage_they_are_built_from_the_config(tmp_path) -> None:
    config = ClusterConfig(member_id=1, listen="127.0.0.1:0", data_dir=str(tmp_path / "d"),
                           cluster_id=5, sync="never")
    member = RaftCluster(config)
    assert isinstance(member.transport, TcpTransport)
    assert isinstance(member.storage, DurableLogStorage)
    assert member.storage.directory == str(tmp_path / "d")
    member.storage.close()
    same = RaftCluster.from_config(config)  # the same thing under its documented name
    assert isinstance(same.transport, TcpTransport)
    assert isinstance(same.storage, DurableLogStorage)
    same.storage.close()


def test_a_durable_log_from_a_config_needs_a_data_dir() -> None:
    with pytest.raises(ConfigError, match="data_dir"):
        DurableLogStorage.from_config(ClusterConfig(member_id=1))


def test_a_write_bigger_than_the_queue_bound_enters_an_empty_queue() -> None:
    """replicate_many of more commands than proposal_queue_max works (alone in the queue);
    with "raise", a write arriving at a non-empty full queue is refused."""

    async def body() -> None:
        config = ClusterConfig(member_id=1, tick_ms=5, peers={1: "127.0.0.1:7101"},
                               proposal_queue_max=4, proposal_queue_full="raise")
        async with RaftCluster(config, transport=MemoryNetwork().transport(1)) as member:
            await leader_of([member])
            results = await member.replicate_many([b"c%d" % i for i in range(10)], timeout=5)
            assert results == [None] * 10
            first = member.replicate_many([b"x"] * 3)
            second = member.replicate_many([b"y"] * 3)
            done = await asyncio.gather(first, second, return_exceptions=True)
            assert done[0] == [None] * 3
            assert isinstance(done[1], ProposalDroppedError)

    run_on_fresh_loop(body, timeout_s=30)
