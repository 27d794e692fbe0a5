"""State-machine base classes: apply and replay semantics, compaction policies, recovery.

The model is a small key-value store whose commands are msgpack ``[op, key, argument]`` with
``op`` one of ``set`` / ``add`` / ``del``. One class implements the hooks of every compaction
policy, so the same command sequences run under each of them.
"""

from __future__ import annotations

import threading

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyraft.core import Configuration, MemoryLogStorage, Snapshot, SnapshotMeta
from pyraft.errors import ConfigError, InvariantError, LogCompactedError
from pyraft.storage.state_machine import (
    ConsensusOnlyState,
    DiskStateMachine,
    MemoryStateMachine,
)
from raftcore.framing import KIND_COMMAND, KIND_CONFIGURATION, KIND_NOOP, encode_entries

CONFIGURATION = Configuration(frozenset({1, 2, 3}))
WORKER_NAME = "pyraft-compaction"


# ---- the model ------------------------------------------------------------------------------
def step(data: dict, op: str, key: str, argument: int | None):
    """The model's transition: returns the result; mutates ``data``."""
    if op == "set":
        data[key] = argument
        return None
    if op == "add":
        data[key] = data.get(key, 0) + argument
        return data[key]
    return data.pop(key, None)


class KV(MemoryStateMachine):
    """Implements every policy's hooks; records which indexes reached ``apply``."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.data: dict = {}
        self.seen: list[int] = []
        self.capture_threads: list[str] = []

    def apply(self, index, command):
        self.seen.append(index)
        op, key, argument = msgpack.unpackb(command)
        result = step(self.data, op, key, argument)
        self.mark_dirty(key)  # a no-op outside the incremental policy
        return result

    def capture(self):
        self.capture_threads.append(threading.current_thread().name)
        return dict(self.data)

    def build_snapshot_from(self, captured):
        items = sorted(captured.items())
        half = len(items) // 2
        return iter([msgpack.packb(items[:half]), msgpack.packb(items[half:])])  # two chunks

    def restore_snapshot(self, data):
        self.data = {}
        unpacker = msgpack.Unpacker()
        unpacker.feed(data)
        for part in unpacker:
            self.data.update((k, v) for k, v in part)

    def snapshot_item(self, key):
        return msgpack.packb(self.data[key]) if key in self.data else None

    def restore_items(self, items):
        self.data = {k: msgpack.unpackb(v) for k, v in items.items()}


class Sink:
    """Collects ``(index, bytes)`` and the thread each call came from."""

    def __init__(self) -> None:
        self.snapshots: list[tuple[int, bytes]] = []
        self.threads: list[str] = []

    def __call__(self, index, data) -> None:
        self.threads.append(threading.current_thread().name)
        if data is not None and not isinstance(data, bytes):
            data = b"".join(data)
        self.snapshots.append((index, data))

    @property
    def indexes(self) -> list[int]:
        return [index for index, _ in self.snapshots]


def command(op: str, key: str, argument: int | None = None) -> bytes:
    return msgpack.packb([op, key, argument])


def batch(first: int, payloads: list[bytes], kinds=KIND_COMMAND, term: int = 1):
    return encode_entries(first, term, payloads, kinds)


def log_of(payloads: list[bytes], kinds=KIND_COMMAND) -> MemoryLogStorage:
    log = MemoryLogStorage(CONFIGURATION)
    if payloads:
        log.append(batch(1, payloads, kinds))
    return log


def replayed(payloads: list[bytes]) -> dict:
    data: dict = {}
    for payload in payloads:
        step(data, *msgpack.unpackb(payload))
    return data


def snapshot_at(index: int, data: bytes) -> Snapshot:
    return Snapshot(SnapshotMeta(index, 1, (1, 2, 3)), data)


ops = st.one_of(
    st.tuples(st.just("set"), st.sampled_from("abcd"), st.integers(-5, 5)),
    st.tuples(st.just("add"), st.sampled_from("abcd"), st.integers(-5, 5)),
    st.tuples(st.just("del"), st.sampled_from("abcd"), st.none()),
)


# ---- applying -------------------------------------------------------------------------------
def test_results_per_entry_and_only_commands_reach_user_code():
    kv = KV(compaction=None)
    payloads = [
        b"",
        command("add", "x", 2),
        CONFIGURATION.encode(),
        command("add", "x", 3),
        command("del", "x"),
        b"",
    ]
    kinds = [KIND_NOOP, KIND_COMMAND, KIND_CONFIGURATION, KIND_COMMAND, KIND_COMMAND, KIND_NOOP]
    assert kv.apply_batch(batch(1, payloads, kinds)) == [None, 2, None, 5, 5, None]
    assert kv.seen == [2, 4, 5]
    assert kv.applied_index == 6
    assert kv.apply_batch(batch(7, [])) == []
    assert kv.applied_index == 6


def test_apply_commands_override_sees_only_command_runs():
    class Fast(KV):
        def apply_commands(self, entries):
            self.runs.append((entries.first_index, entries.last_index, set(entries.kinds)))
            return [index * 10 for index, _, _, _ in entries]

    fast = Fast(compaction=None)
    fast.runs = []
    kinds = [KIND_COMMAND, KIND_COMMAND, KIND_NOOP, KIND_COMMAND, KIND_NOOP, KIND_NOOP]
    results = fast.apply_batch(batch(1, [b"c"] * 6, kinds))
    assert results == [10, 20, None, 40, None, None]
    assert fast.runs == [(1, 2, {KIND_COMMAND}), (4, 4, {KIND_COMMAND})]


def test_batches_must_follow_the_applied_index():
    kv = KV(compaction=None)
    kv.apply_batch(batch(1, [command("set", "a", 1)]))
    with pytest.raises(InvariantError, match="starts at 3"):
        kv.apply_batch(batch(3, [command("set", "a", 1)]))
    with pytest.raises(InvariantError, match="starts at 1"):
        kv.apply_batch(batch(1, [command("set", "a", 1)]))


def test_a_raising_apply_makes_the_state_machine_unusable():
    kv = KV(compaction=None)
    with pytest.raises(ValueError):
        kv.apply_batch(batch(1, [command("set", "a", 1), b"\xc1"]))
    assert kv.applied_index == 0
    with pytest.raises(InvariantError, match="unusable"):
        kv.apply_batch(batch(1, [command("set", "a", 1)]))


def test_construction_checks_policy_and_hooks():
    with pytest.raises(ConfigError) as info:
        KV(compaction="eager")
    assert info.value.field == "compaction"
    with pytest.raises(ConfigError) as info:
        KV(snapshot_entries=0)
    assert info.value.field == "snapshot_entries"

    class ApplyOnly(MemoryStateMachine):
        def apply(self, index, command):
            return None

    with pytest.raises(TypeError, match="restore_snapshot"):
        ApplyOnly()
    with pytest.raises(TypeError, match="capture, build_snapshot_from, restore_snapshot"):
        ApplyOnly(compaction="background")
    with pytest.raises(TypeError, match="snapshot_item, restore_items"):
        ApplyOnly(compaction="incremental")


# ---- recovery -------------------------------------------------------------------------------
PAYLOADS = [command("add", "n", i) for i in range(1, 11)]  # n after i entries: i*(i+1)/2


def test_recover_replays_committed_entries_only():
    log = log_of(PAYLOADS)
    kv = KV(compaction=None)
    assert kv.recover(log, commit_index=6) == 6
    assert kv.seen == [1, 2, 3, 4, 5, 6]
    assert kv.data == {"n": 21}
    assert kv.applied_index == 6


def test_recover_restores_the_snapshot_then_replays_after_it():
    reference = KV(compaction=None)
    reference.apply_batch(batch(1, PAYLOADS[:4]))
    data = b"".join(reference.build_snapshot())
    log = log_of(PAYLOADS)
    log.create_snapshot(4, data, CONFIGURATION)
    kv = KV(compaction=None)
    kv.recover(log, 8, log.snapshot(), replay_bytes_max=1)  # one entry per read
    assert kv.seen == [5, 6, 7, 8]
    assert kv.data == {"n": 36}
    assert kv.snapshot_index == 4 and kv.applied_index == 8


def test_recover_with_the_commit_hint_below_the_snapshot_replays_nothing():
    log = log_of(PAYLOADS)
    kv = KV(compaction=None)
    kv.recover(log, 2, snapshot_at(5, b""))
    assert kv.seen == [] and kv.applied_index == 5


def test_recover_refuses_a_log_compacted_past_the_snapshot_and_a_second_call():
    log = log_of(PAYLOADS)
    log.create_snapshot(6, b"", CONFIGURATION)
    kv = KV(compaction=None)
    with pytest.raises(LogCompactedError):
        kv.recover(log, 8, snapshot_at(3, b""))
    used = KV(compaction=None)
    used.recover(log_of(PAYLOADS), 3)
    with pytest.raises(InvariantError, match="fresh"):
        used.recover(log_of(PAYLOADS), 3)


def test_recover_compacts_with_the_sequential_policy():
    sink = Sink()
    kv = KV(snapshot_entries=4, snapshot_sink=sink)
    kv.recover(log_of(PAYLOADS), 10, replay_bytes_max=1)
    assert sink.indexes == [4, 8]


# ---- compaction policies: snapshots at the right indexes, and they restore the same state ---
def expected_indexes(batch_ends: list[int], every: int) -> list[int]:
    indexes, last = [], 0
    for end in batch_ends:
        if end - last >= every:
            indexes.append(end)
            last = end
    return indexes


def split(payloads: list[bytes], cuts: list[int]) -> list[tuple[int, list[bytes]]]:
    points = sorted({c % len(payloads) for c in cuts} | {0, len(payloads)})
    return [(a + 1, payloads[a:b]) for a, b in zip(points, points[1:])]


@given(
    commands=st.lists(ops, min_size=1, max_size=40),
    cuts=st.lists(st.integers(0, 40), max_size=10),
    every=st.integers(1, 8),
    mode=st.sampled_from(["sequential", "incremental", "background"]),
)
def test_snapshots_plus_replay_equal_a_full_replay(commands, cuts, every, mode):
    payloads = [command(*c) for c in commands]
    batches = split(payloads, cuts)
    sink = Sink()
    with KV(compaction=mode, snapshot_entries=every, snapshot_sink=sink) as kv:
        for first, part in batches:
            kv.apply_batch(batch(first, part))
    ends = [first + len(part) - 1 for first, part in batches]
    if mode == "background":
        # a trigger is skipped while a build is in flight: increasing batch ends, spaced out
        assert sink.indexes == sorted(set(sink.indexes))
        assert set(sink.indexes) <= set(ends)
        assert all(b - a >= every for a, b in zip([0, *sink.indexes], sink.indexes))
        assert set(sink.threads) <= {WORKER_NAME}
    else:
        assert sink.indexes == expected_indexes(ends, every)
        assert set(sink.threads) <= {threading.current_thread().name}
    full = replayed(payloads)
    assert kv.data == full
    log = log_of(payloads)
    for index, data in sink.snapshots:
        at_snapshot = KV(compaction=mode)
        at_snapshot.install_snapshot(snapshot_at(index, data))
        assert at_snapshot.data == replayed(payloads[:index])
        restarted = KV(compaction=mode)
        restarted.recover(log, len(payloads), snapshot_at(index, data))
        assert restarted.data == full
        assert restarted.seen == list(range(index + 1, len(payloads) + 1))


def test_incremental_builds_only_the_changed_keys():
    class Counting(KV):
        def snapshot_item(self, key):
            self.items.append(key)
            return super().snapshot_item(key)

    sink = Sink()
    kv = Counting(compaction="incremental", snapshot_entries=2, snapshot_sink=sink)
    kv.items = []
    kv.apply_batch(batch(1, [command("set", "a", 1), command("set", "b", 2)]))
    kv.apply_batch(batch(3, [command("set", "b", 3), command("del", "a")]))
    kv.apply_batch(batch(5, [command("set", "c", 4), command("set", "c", 5)]))
    assert sorted(kv.items) == sorted("abbac")  # once per changed key and snapshot
    assert sink.indexes == [2, 4, 6]
    assert msgpack.unpackb(sink.snapshots[-1][1]) == {"b": msgpack.packb(3), "c": msgpack.packb(5)}
    with pytest.raises(TypeError, match="int, str or bytes"):
        kv.mark_dirty(("a", 1))


# ---- the background policy ------------------------------------------------------------------
class SlowKV(KV):
    """Its background build waits for ``release``; ``building`` is set once it started."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.building = threading.Event()
        self.release = threading.Event()
        self.built: list[int] = []

    def build_snapshot_from(self, captured):
        self.building.set()
        assert self.release.wait(10), "the test never released the build"
        self.built.append(sum(captured.values()))
        return super().build_snapshot_from(captured)


def test_background_build_never_blocks_applies_and_close_joins():
    sink = Sink()
    kv = SlowKV(compaction="background", snapshot_entries=2, snapshot_sink=sink)
    kv.start()
    kv.apply_batch(batch(1, [command("add", "n", 1), command("add", "n", 1)]))
    assert kv.building.wait(10)
    # the build is blocked: applies go on, and no second build starts meanwhile
    for first in range(3, 30, 2):
        kv.apply_batch(batch(first, [command("add", "n", 1), command("add", "n", 1)]))
    assert kv.applied_index == 30 and kv.data == {"n": 30}
    assert sink.snapshots == [] and kv.capture_threads == [threading.current_thread().name]
    # close waits for the build in flight (released by another thread a little later)
    releaser = threading.Timer(0.05, kv.release.set)
    releaser.start()
    kv.close()
    releaser.join()
    assert sink.indexes == [2] and sink.threads == [WORKER_NAME]
    assert kv.built == [2]  # built from the captured copy, not from the live state (30)
    assert kv.snapshot_index == 2
    assert not any(t.name == WORKER_NAME for t in threading.enumerate())
    with pytest.raises(InvariantError, match="after close"):
        kv.apply_batch(batch(31, [command("add", "n", 1)]))


def test_background_takes_the_next_snapshot_after_the_build_finished():
    sink = Sink()
    with SlowKV(compaction="background", snapshot_entries=2, snapshot_sink=sink) as kv:
        kv.release.set()
        kv.apply_batch(batch(1, [command("add", "n", 1)] * 2))
        assert kv.force_compaction() == 2  # waits for the automatic build at 2
        kv.apply_batch(batch(3, [command("add", "n", 1)] * 3))
        index = kv.force_compaction()
    assert index == 5
    assert sink.indexes[0] == 2 and sink.indexes[-1] == 5


def test_background_without_a_running_worker_takes_no_automatic_snapshot():
    sink = Sink()
    kv = KV(compaction="background", snapshot_entries=1, snapshot_sink=sink)
    kv.apply_batch(batch(1, [command("set", "a", 1)]))
    assert sink.indexes == []
    assert kv.force_compaction() == 1  # built inline, in the calling thread
    assert sink.threads == [threading.current_thread().name]
    kv.close()


def test_force_compaction_waits_for_a_build_in_flight():
    sink = Sink()
    kv = SlowKV(compaction="background", snapshot_entries=2, snapshot_sink=sink)
    kv.start()
    kv.apply_batch(batch(1, [command("add", "n", 1)] * 2))
    assert kv.building.wait(10)
    kv.apply_batch(batch(3, [command("add", "n", 1)]))
    results: list[int] = []
    forcing = threading.Thread(target=lambda: results.append(kv.force_compaction()))
    forcing.start()
    kv.release.set()
    forcing.join(10)
    kv.close()
    assert results == [3]
    assert sink.indexes == [2, 3]


def test_a_failed_background_build_is_reported_and_retried():
    class Failing(KV):
        def build_snapshot_from(self, captured):
            self.attempts.append(threading.current_thread().name)
            raise OSError("disk full")

    kv = Failing(compaction="background", snapshot_entries=1, snapshot_sink=Sink())
    kv.attempts = []
    kv.start()
    kv.apply_batch(batch(1, [command("set", "a", 1)]))
    with pytest.raises(OSError, match="disk full"):
        kv.force_compaction()  # waits for the build in flight, which failed
    kv.apply_batch(batch(2, [command("set", "a", 2)]))  # retried: nothing was taken
    with pytest.raises(OSError, match="disk full"):
        kv.close()  # joins the worker, then reports
    assert kv.attempts == [WORKER_NAME, WORKER_NAME] and kv.snapshot_index == 0


# ---- force_compaction and failures in the sequential policies --------------------------------
@pytest.mark.parametrize("mode", ["sequential", "incremental", None])
def test_force_compaction(mode):
    sink = Sink()
    kv = KV(compaction=mode, snapshot_entries=100, snapshot_sink=sink)
    assert kv.force_compaction() == 0 and sink.indexes == []  # nothing applied yet
    kv.apply_batch(batch(1, [command("set", "a", 1), command("set", "b", 2)]))
    assert kv.force_compaction() == 2
    assert kv.force_compaction() == 2  # nothing new: no second snapshot
    assert sink.indexes == [2] and kv.snapshot_index == 2
    restored = KV(compaction=mode)
    restored.install_snapshot(snapshot_at(2, sink.snapshots[0][1]))
    assert restored.data == {"a": 1, "b": 2} and restored.applied_index == 2


def test_force_compaction_needs_a_sink():
    kv = KV()
    with pytest.raises(InvariantError, match="snapshot_sink"):
        kv.force_compaction()


def test_a_failed_sink_is_reported_before_the_next_batch_applies():
    calls: list[int] = []

    def sink(index, data):
        calls.append(index)
        if len(calls) == 1:
            raise OSError("no space left")

    kv = KV(snapshot_entries=2, snapshot_sink=sink)
    assert kv.apply_batch(batch(1, [command("add", "n", 1)] * 2)) == [1, 2]
    with pytest.raises(OSError, match="no space"):
        kv.apply_batch(batch(3, [command("add", "n", 1)]))
    assert kv.applied_index == 2 and kv.data == {"n": 2}  # the failing call applied nothing
    kv.apply_batch(batch(3, [command("add", "n", 1)]))  # retried after this batch
    assert calls == [2, 3] and kv.snapshot_index == 3


def test_install_snapshot_refuses_to_go_back():
    kv = KV(compaction=None)
    kv.apply_batch(batch(1, [command("set", "a", 1)] * 3))
    with pytest.raises(InvariantError, match="older"):
        kv.install_snapshot(snapshot_at(2, b""))


# ---- the disk state machine -----------------------------------------------------------------
class DiskKV(DiskStateMachine):
    """A fake durable store: ``durable`` survives a crash, ``data`` is the working copy."""

    def __init__(self, durable: dict | None = None, **options) -> None:
        super().__init__(**options)
        self.durable = durable if durable is not None else {"index": 0, "data": {}}
        self.data = dict(self.durable["data"])
        self.applied = self.durable["index"]
        self.seen: list[int] = []
        self.flushes = 0

    def apply(self, index, command):
        self.seen.append(index)
        self.applied = index
        return step(self.data, *msgpack.unpackb(command))

    def persisted_index(self):
        return self.durable["index"]

    def flush(self):
        self.flushes += 1
        self.durable.update(index=self.applied, data=dict(self.data))

    def export_snapshot(self):
        return iter([msgpack.packb([self.durable["index"], sorted(self.durable["data"].items())])])

    def import_snapshot(self, chunks, index):
        stored, items = msgpack.unpackb(b"".join(chunks))
        self.data = dict(items)
        self.applied = stored
        self.flush()


def test_disk_recover_replays_after_the_persisted_index_up_to_the_commit():
    durable = {"index": 3, "data": {"n": 6}}
    log = log_of(PAYLOADS)
    disk = DiskKV(durable)
    assert disk.recover(log, 7) == 7
    assert disk.seen == [4, 5, 6, 7] and disk.data == {"n": 28}
    assert durable["index"] == 3  # nothing flushed yet
    disk.close()
    assert durable == {"index": 7, "data": {"n": 28}}


def test_disk_recover_refuses_a_store_behind_the_log():
    log = log_of(PAYLOADS)
    log.create_snapshot(5, b"", CONFIGURATION)
    with pytest.raises(LogCompactedError, match="durable up to 2"):
        DiskKV({"index": 2, "data": {}}).recover(log, 8)
    with pytest.raises(LogCompactedError, match="snapshot"):
        DiskKV({"index": 2, "data": {}}).recover(log_of(PAYLOADS), 8, snapshot_at(4, b""))
    ahead = DiskKV({"index": 9, "data": {"n": 45}})
    assert ahead.recover(log, 6) == 9 and ahead.seen == []  # the commit hint may lag


def test_disk_compaction_flushes_and_reports_the_durable_index():
    sink = Sink()
    disk = DiskKV(snapshot_entries=3, snapshot_sink=sink)
    for first in range(1, 9, 2):
        disk.apply_batch(batch(first, PAYLOADS[first - 1 : first + 1]))
    assert sink.snapshots == [(4, None), (8, None)]
    disk.apply_batch(batch(9, PAYLOADS[8:9]))
    assert disk.force_compaction() == 9 and sink.snapshots[-1] == (9, None)
    index, chunks = disk.open_snapshot()
    follower = DiskKV()
    follower.install_chunks(index, chunks)
    assert follower.data == disk.data and follower.applied_index == 9
    other = DiskKV()
    other.install_snapshot(Snapshot(SnapshotMeta(9, 1, (1,)), b"".join(disk.export_snapshot())))
    assert other.data == disk.data


# ---- consensus only -------------------------------------------------------------------------
def test_consensus_only_snapshots_bound_the_log_they_are_stored_in():
    """The runtime's wiring in small: every batch is appended to the member's log, then
    applied; the sink stores the empty snapshot in that log (which releases the prefix), as
    the runtime's snapshot sink does. The log never holds much more than snapshot_entries."""
    log = MemoryLogStorage(CONFIGURATION)
    sink = Sink()
    state = ConsensusOnlyState(CONFIGURATION, snapshot_entries=10)

    def store(index, data):
        sink(index, data)
        log.create_snapshot(index, data, state.configuration)

    state.snapshot_sink = store
    grown = CONFIGURATION.add_learner(4)
    longest = 0
    for first in range(1, 200, 4):
        kinds = [KIND_COMMAND, KIND_NOOP, KIND_COMMAND, KIND_COMMAND]
        payloads = [b"x", b"", b"y", b"z"]
        if first == 101:
            kinds[1], payloads[1] = KIND_CONFIGURATION, grown.encode()
        entries = batch(first, payloads, kinds)
        log.append(entries)
        assert state.apply_batch(entries) == [None] * 4
        longest = max(longest, log.last_index() - log.first_index() + 1)
    assert longest <= 10 + 4
    assert state.applied_index == 200 and log.last_index() == 200
    assert sink.indexes == list(range(12, 201, 12)) and {d for _, d in sink.snapshots} == {b""}
    assert log.snapshot().meta.learners == (4,) and state.configuration == grown
    assert state.force_compaction() == 200 and log.first_index() == 201
    assert state.force_compaction() == 200 and sink.indexes[-1] == 200  # nothing new: no call
    assert len(sink.indexes) == len(range(12, 201, 12)) + 1


def test_consensus_only_takes_no_snapshot_without_a_sink():
    state = ConsensusOnlyState(CONFIGURATION, snapshot_entries=2)
    state.apply_batch(batch(1, [b"a"] * 6))
    assert state.applied_index == 6 and state.snapshot_index == 0


def test_consensus_only_keeps_a_failed_sink_for_the_next_call():
    def failing(index, data):
        raise OSError("disk full")

    state = ConsensusOnlyState(CONFIGURATION, snapshot_entries=2, snapshot_sink=failing)
    state.apply_batch(batch(1, [b"a", b"b"]))  # the sink failed: kept, the state is intact
    assert state.applied_index == 2 and state.snapshot_index == 0
    with pytest.raises(OSError, match="disk full"):
        state.apply_batch(batch(3, [b"c"]))
    state.snapshot_sink = Sink()
    assert state.apply_batch(batch(3, [b"c"])) == [None]  # retried after the batch
    assert state.snapshot_sink.indexes == [3] and state.snapshot_index == 3


def test_consensus_only_recovers_and_installs_the_leaders_empty_snapshots():
    log = MemoryLogStorage(CONFIGURATION)
    log.append(batch(1, [b"a"] * 6))
    fresh = ConsensusOnlyState(snapshot_entries=100)
    assert fresh.recover(log, 2) == 2 and fresh.configuration == CONFIGURATION
    log.create_snapshot(3, b"", CONFIGURATION)
    restarted = ConsensusOnlyState(snapshot_entries=100)
    assert restarted.recover(log, 5, log.snapshot()) == 5
    assert restarted.snapshot_index == 3 and restarted.configuration == CONFIGURATION
    restarted.install_snapshot(Snapshot(SnapshotMeta(9, 2, (1, 2)), b""))
    assert restarted.applied_index == 9 and restarted.snapshot_index == 9
    assert restarted.configuration == Configuration(frozenset({1, 2}))
    restarted.apply_batch(batch(10, [b"b"], term=2))  # applies go on after it
    with pytest.raises(InvariantError, match="older than the applied index"):
        restarted.install_snapshot(Snapshot(SnapshotMeta(8, 2, (1, 2)), b""))
