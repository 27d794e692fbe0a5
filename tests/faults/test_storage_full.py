"""A full disk (ENOSPC) under a member: on a small tmpfs mounted for the test when this
process may mount (root), otherwise with the error injected at the storage boundary (see
``tests.faults.disks``); the same tests run either way.

- the log: a segment that cannot be created, a snapshot that cannot be written, leave the
  directory as it was: it reopens (while still full) with every synced entry and no
  corruption error, and works again once space returns;
- a follower whose disk fills: the others keep committing; it refuses writes with
  ``StorageFullError`` and counts ``storage_failures``; once space returns it catches up by
  itself, without a restart;
- a leader whose disk fills: writes to its HTTP API answer ``503`` with a JSON body typed
  ``StorageFullError`` naming the full disk (or ``504``: written, outcome unknown; or ``307``
  once another member leads), never a ``500``; every write acknowledged with ``200`` is
  read back afterwards by a barrier read on every member; it recovers without a restart.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import time

import aiohttp
import pytest

from pyraft.cluster.runtime import RaftCluster
from pyraft.config import ClusterConfig
from pyraft.core import Configuration
from pyraft.errors import CorruptStateError, StorageFullError
from pyraft.kv.http import bound_port, serve
from pyraft.kv.machine import KVClientSession, KVStateMachine
from pyraft.storage import snapshots as snapshot_module
from pyraft.storage.log import DurableLogStorage
from pyraft.testing.cluster import run_on_fresh_loop
from pyraft.transport.memory import MemoryNetwork
from raftcore.framing import encode_entries
from tests.faults.disks import Disk, FaultyLogStorage

VOTERS = Configuration(frozenset({1}))
PEERS = {m: f"127.0.0.1:{7400 + m}" for m in (1, 2, 3)}
SEGMENT_BYTES = 64 * 1024


@pytest.fixture
def disks(tmp_path):
    made: list[Disk] = []

    def make(name: str) -> Disk:
        disk = Disk(tmp_path / name)
        made.append(disk)
        return disk

    try:
        yield make
    finally:
        for disk in made:
            disk.close()


def _append(storage: DurableLogStorage, count: int, payload: bytes) -> int:
    first = storage.last_index() + 1
    storage.append(encode_entries(first, 1, [payload] * count))
    return storage.sync()


def _leftovers(directory) -> list[str]:
    return [name for _, _, names in os.walk(directory) for name in names
            if name.endswith(".tmp")]


# -- the log on a full disk ----------------------------------------------------------------------


def test_segment_creation_on_a_full_disk_keeps_the_log(disks, monkeypatch):
    disk = disks("wal")
    storage = DurableLogStorage(disk.path / "m", VOTERS, segment_bytes_max=SEGMENT_BYTES)
    payload = bytes(range(256)) * 4
    acknowledged = _append(storage, 10, payload)
    disk.fill()
    if not disk.mounted:  # injected: the new segment's file cannot be created
        real_open = os.open

        def open_on_full_disk(path, *args, **kwargs):
            if str(path).endswith(".wal.tmp") and disk.injected_full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", open_on_full_disk)
    with pytest.raises(StorageFullError) as info:
        for _ in range(1000):  # each batch fits a segment: a new one is needed soon
            acknowledged = _append(storage, 8, payload)
    assert info.value.errno == errno.ENOSPC and "wal" in (info.value.path or "")
    assert "No space left" in str(info.value)
    assert _leftovers(disk.path / "m") == []
    storage.close()
    # reopen while still full: nothing synced is lost, nothing reads as corrupt
    storage = DurableLogStorage(disk.path / "m", VOTERS, segment_bytes_max=SEGMENT_BYTES)
    assert storage.last_index() >= acknowledged > 10
    assert all(bytes(p) == payload for p in storage.entries(1, acknowledged + 1).payloads())
    disk.free()
    resumed = _append(storage, 80, payload)  # more than a segment: creates new ones
    assert resumed == storage.last_index() > acknowledged
    storage.close()
    storage = DurableLogStorage(disk.path / "m", VOTERS, segment_bytes_max=SEGMENT_BYTES)
    assert storage.last_index() == resumed
    storage.close()


def test_snapshot_write_on_a_full_disk_keeps_the_directory(disks, monkeypatch):
    disk = disks("snap")
    storage = DurableLogStorage(disk.path / "m", VOTERS, segment_bytes_max=SEGMENT_BYTES)
    payload = b"entry" * 100
    acknowledged = _append(storage, 40, payload)
    first = storage.create_snapshot(10, b"state at 10", VOTERS)
    disk.fill()
    if not disk.mounted:  # injected: the data chunks of the snapshot cannot be written
        real_write_all = snapshot_module.write_all

        def write_all_on_full_disk(fd, data):
            if disk.injected_full and len(data) > 1000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real_write_all(fd, data)

        monkeypatch.setattr(snapshot_module, "write_all", write_all_on_full_disk)
    state = os.urandom(1 << 20)  # larger than what is left on the full disk
    with pytest.raises(StorageFullError) as info:
        storage.create_snapshot(30, state, VOTERS)
    assert info.value.errno == errno.ENOSPC and "snapshots" in (info.value.path or "")
    assert _leftovers(disk.path / "m") == []
    assert storage.snapshot().meta == first.meta  # the old snapshot still serves
    assert storage.first_index() == 11  # the log was not released for the failed snapshot
    storage.close()
    storage = DurableLogStorage(disk.path / "m", VOTERS, segment_bytes_max=SEGMENT_BYTES)
    assert storage.snapshot().meta == first.meta
    assert bytes(storage.snapshot().data) == b"state at 10"
    assert storage.last_index() == acknowledged
    assert all(bytes(p) == payload for p in storage.entries(11, acknowledged + 1).payloads())
    disk.free()
    assert storage.create_snapshot(30, state, VOTERS).meta.index == 30
    storage.close()
    storage = DurableLogStorage(disk.path / "m", VOTERS, segment_bytes_max=SEGMENT_BYTES)
    assert storage.snapshot().meta.index == 30 and bytes(storage.snapshot().data) == state
    storage.close()


def test_a_damaged_configuration_store_names_file_and_offset(tmp_path):
    from pyraft.storage.configstore import ClusterMembers, FileConfigurationStore, MemberInfo

    store = FileConfigurationStore(tmp_path / "config")
    members = ClusterMembers({1: MemberInfo(1, "127.0.0.1:7001")}, VOTERS, 3)
    store.save_active(members)
    with open(store.active_path, "r+b") as f:
        f.seek(-2, os.SEEK_END)
        byte = f.read(1)[0]
        f.seek(-2, os.SEEK_END)
        f.write(bytes([byte ^ 0x04]))
    with pytest.raises(CorruptStateError) as info:
        FileConfigurationStore(tmp_path / "config").load_active()
    assert info.value.path == store.active_path and info.value.offset == 14
    assert f"{store.active_path} at byte offset 14" in str(info.value)


# -- members on a full disk ----------------------------------------------------------------------


async def _cluster(disks_by_member, machines, election_ms: float = 300.0):
    network = MemoryNetwork()
    members = {}
    for m in PEERS:
        config = ClusterConfig(member_id=m, tick_ms=10, election_timeout_ms_lower=election_ms,
                               election_timeout_ms_upper=2 * election_ms, peers=PEERS)
        storage = FaultyLogStorage(disks_by_member[m], Configuration(frozenset(PEERS)),
                                   segment_bytes_max=SEGMENT_BYTES)
        members[m] = RaftCluster(config, transport=network.transport(m),
                                 state_machine=machines[m], storage=storage)
    for member in members.values():
        await member.start()
    return members


async def _leader(members, timeout: float = 20.0) -> RaftCluster:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leaders = [m for m in members.values() if m.is_leader]
        if leaders:
            return max(leaders, key=lambda m: m.term)
        await asyncio.sleep(0.01)
    raise AssertionError("no leader in time")


async def _wait(condition, timeout: float = 30.0, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {message}")
        await asyncio.sleep(0.02)


async def _barrier_reads(members, machines, expected: dict[bytes, bytes]) -> None:
    """Every member answers every expected key after a read barrier."""
    for m, member in members.items():
        for attempt in range(100):
            try:
                await member.apply_read_barrier(timeout=2.0)
                break
            except Exception:  # noqa: BLE001 - an election in progress: retry
                if attempt == 99:
                    raise
                await asyncio.sleep(0.05)
        data = machines[m].data
        missing = {k for k, v in expected.items() if data.get(k) != v}
        assert not missing, f"member {m} lost acknowledged writes: {sorted(missing)[:5]}"


def test_a_follower_with_a_full_disk(disks):
    disks_by_member = {m: disks(f"m{m}") for m in PEERS}

    async def body():
        machines = {m: KVStateMachine() for m in PEERS}
        members = await _cluster(disks_by_member, machines)
        try:
            leader = await _leader(members)
            follower = next(m for m in members.values() if m is not leader)
            disk = disks_by_member[follower.id]
            disk.fill()
            opened = await leader.replicate(KVClientSession.open_payload(), timeout=10)
            session = KVClientSession(opened.client)
            expected = {}
            value = os.urandom(2000)
            for i in range(100):  # about three segments of entries: the follower must roll
                key = b"k%d" % i
                session.complete(await leader.replicate(session.put(key, value), timeout=10))
                expected[key] = value
            await _wait(lambda: follower.metrics.storage_failures.value() > 0, 10,
                        "the follower hit the full disk")
            with pytest.raises(StorageFullError) as info:
                await follower.replicate(b"refused", timeout=5)
            assert info.value.errno == errno.ENOSPC
            assert follower.applied_index < leader.commit_index
            disk.free()
            await _wait(lambda: follower.applied_index >= leader.commit_index, 30,
                        "the follower caught up")
            await _barrier_reads(members, machines, expected)
        finally:
            for member in members.values():
                await member.stop()

    run_on_fresh_loop(body)


def test_a_leader_with_a_full_disk_answers_a_typed_error(disks):
    disks_by_member = {m: disks(f"m{m}") for m in PEERS}

    async def body():
        machines = {m: KVStateMachine() for m in PEERS}
        # a long election timeout: the full leader keeps leading long enough to be asked
        members = await _cluster(disks_by_member, machines, election_ms=1500.0)
        runners = {}
        try:
            for m, member in members.items():
                runners[m] = await serve(member, machines[m], "127.0.0.1", 0,
                                         request_timeout_s=0.5)
            urls = {m: f"http://127.0.0.1:{bound_port(r)}" for m, r in runners.items()}
            leader = await _leader(members)
            disk = disks_by_member[leader.id]
            acknowledged: dict[bytes, bytes] = {}
            answers: list[tuple[int, dict | None]] = []
            value = os.urandom(4000)
            async with aiohttp.ClientSession() as session:
                for i in range(3):
                    async with session.put(f"{urls[leader.id]}/v1/kv/before{i}",
                                           data=value) as response:
                        assert response.status in (200, 204), await response.text()
                        acknowledged[b"before%d" % i] = value
                disk.fill()
                for i in range(200):  # the leader needs a new segment within ~16 writes
                    key = f"k{i}"
                    async with session.put(f"{urls[leader.id]}/v1/kv/{key}", data=value,
                                           allow_redirects=False) as response:
                        body_text = await response.text()
                        kind = None
                        if response.content_type == "application/json":
                            kind = json.loads(body_text)
                        answers.append((response.status, kind))
                        if response.status in (200, 204):
                            acknowledged[key.encode()] = value
                        elif response.status == 503 and kind["error"] == "StorageFullError":
                            assert "No space left on device" in kind["message"], kind
                            break
                        elif response.status == 307:
                            break  # leadership moved before we asked again
                async with session.get(f"{urls[leader.id]}/v1/status") as response:
                    reported = (await response.json())["storage_error"]
                async with session.get(f"{urls[leader.id]}/readyz") as response:
                    readiness = response.status, await response.json()
            statuses = {status for status, _ in answers}
            assert statuses <= {200, 204, 307, 503, 504}, answers
            assert (503, "StorageFullError") in {
                (s, k and k.get("error")) for s, k in answers}, answers
            assert acknowledged, answers
            if any(s == 503 for s, _ in answers[-1:]):  # still failed when status was asked
                assert reported and reported.startswith("StorageFullError"), reported
                # the disk is still full: the member is not ready (a balancer skips it)
                assert readiness[0] == 503, readiness
                assert readiness[1]["reason"] == "storage_error", readiness
            disk.free()
            await _wait(lambda: leader.metrics.storage_failures.value() > 0, 1)
            await _wait(lambda: leader.storage_failure is None, 30, "storage works again")
            await _wait(lambda: leader.applied_index >= max(
                m.commit_index for m in members.values()) and any(
                m.is_leader for m in members.values()), 30, "the old leader recovered")
            await _barrier_reads(members, machines, acknowledged)
            new_leader = await _leader(members)
            opened = await new_leader.replicate(KVClientSession.open_payload(), timeout=10)
            session = KVClientSession(opened.client)
            await new_leader.replicate(session.put(b"after", b"1"), timeout=10)
            await _barrier_reads(members, machines, {**acknowledged, b"after": b"1"})
        finally:
            for runner in runners.values():
                await runner.cleanup()
            for member in members.values():
                await member.stop()

    run_on_fresh_loop(body)
