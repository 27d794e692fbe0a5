"""The key-value state machine: determinism through snapshots, exactly-once writes, log-driven
session expiry, compare-and-set, malformed payloads, snapshot round trips."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyraft.core.messages import Snapshot, SnapshotMeta
from pyraft.errors import ConfigError
from pyraft.kv import (
    CasResult,
    CompareAndSet,
    Delete,
    Get,
    KeepAlive,
    KVClientSession,
    KVStateMachine,
    MalformedRequest,
    OpenSession,
    Put,
    RequestPendingError,
    SessionExpired,
    SessionOpened,
    SnapshotFormatError,
    StaleRequest,
)
from pyraft.storage.interpreter import Command
from raftcore.framing import KIND_COMMAND, KIND_NOOP, encode_entries

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
encode = KVStateMachine.encode

KEYS = st.sampled_from([b"a", b"b", b"c"])
VALUES = st.sampled_from([b"", b"x", b"y", b"zz"])


@st.composite
def log_entries(draw, size_max=60):
    """Entries as a log would hold them: mostly commands of the sessions opened earlier in the
    list (a client id is the index of its OpenSession entry), with next, repeated and old
    sequences, unknown clients, malformed payloads and no-op entries."""
    entries: list[tuple[int, bytes]] = []
    clients: dict[int, int] = {}  # client id -> the last sequence it used
    for index in range(1, draw(st.integers(0, size_max)) + 1):
        kind = draw(st.sampled_from(["write"] * 6 + ["get", "open", "alive", "junk", "noop"]))
        if kind == "open" or (kind == "write" and not clients):
            entries.append((KIND_COMMAND, encode(OpenSession(draw(st.none() | st.integers(0, 3))))))
            clients[index] = 0
            continue
        if kind == "noop":
            entries.append((KIND_NOOP, b""))
            continue
        if kind == "junk":
            entries.append((KIND_COMMAND, draw(st.binary(max_size=12))))
            continue
        key = draw(KEYS)
        if kind == "get":
            entries.append((KIND_COMMAND, encode(Get(key))))
            continue
        known = st.sampled_from(sorted(clients)) if clients else st.nothing()
        client = draw(known | known | known | st.integers(0, 99))
        if kind == "alive":
            entries.append((KIND_COMMAND, encode(KeepAlive(client))))
            continue
        last = clients.get(client, 0)
        sequence = last + draw(st.sampled_from([1, 1, 1, 0, -1, 2]))
        clients[client] = max(last, sequence)
        operation = draw(st.sampled_from(["put", "delete", "cas"]))
        if operation == "put":
            command: Command = Put(client, sequence, key, draw(VALUES))
        elif operation == "delete":
            command = Delete(client, sequence, key)
        else:
            command = CompareAndSet(client, sequence, key, draw(st.none() | VALUES), draw(VALUES))
        entries.append((KIND_COMMAND, encode(command)))
    return entries


def machine(**options) -> KVStateMachine:
    options.setdefault("session_ttl_entries", 6)
    options.setdefault("sessions_max", 3)
    return KVStateMachine(compaction=None, **options)


def apply_entries(kv: KVStateMachine, entries) -> list:
    """Apply ``entries`` as one batch after the applied index; the command results."""
    if not entries:
        return []
    first = kv.applied_index + 1
    kinds = [kind for kind, _ in entries]
    results = kv.apply_batch(encode_entries(first, 1, [p for _, p in entries], kinds))
    return [r for r, kind in zip(results, kinds) if kind == KIND_COMMAND]


def install(kv: KVStateMachine) -> KVStateMachine:
    """A fresh instance brought to ``kv``'s state by a snapshot, as a follower would be."""
    copy = machine(session_ttl_entries=kv.session_ttl_entries, sessions_max=kv.sessions_max)
    meta = SnapshotMeta(index=kv.applied_index, term=1, voters=(1,))
    copy.install_snapshot(Snapshot(meta, kv.build_snapshot()))
    return copy


# ---- determinism -----------------------------------------------------------------------------
@SETTINGS
@given(log_entries(), st.data())
def test_replicas_agree_through_a_snapshot(entries, data):
    """Any entries, applied straight or with a snapshot + restore midway, give the same results
    and the same state (the snapshots are byte-equal)."""
    split = data.draw(st.integers(0, len(entries)))
    limits = {
        "session_ttl_entries": data.draw(st.sampled_from([3, 12, 1000])),
        "sessions_max": data.draw(st.sampled_from([2, 4, 100])),
    }
    straight = machine(**limits)
    results = apply_entries(straight, entries)

    first = machine(**limits)
    before = apply_entries(first, entries[:split])
    second = install(first)
    assert second.build_snapshot() == first.build_snapshot()
    after = apply_entries(second, entries[split:])

    assert before + after == results
    assert second.build_snapshot() == straight.build_snapshot()
    assert second.sessions == straight.sessions
    assert dict(second.data) == dict(straight.data)
    assert len(straight.sessions) <= straight.sessions_max


# ---- the batch's own loop --------------------------------------------------------------------
class EntryByEntry(KVStateMachine):
    """The same store with a step of ``apply`` overridden (to itself): its batches go through
    ``apply`` entry by entry, the reference for ``apply_commands``' own loop."""

    def _session_changed(self, client: int) -> None:
        super()._session_changed(client)


#: payloads a ``Put`` almost is: each must be answered as ``apply`` answers it
NEAR_PUTS = st.sampled_from([
    msgpack.packb([Put.command_id, True, 1, b"k", b"v"]),  # a bool client
    msgpack.packb([Put.command_id, 1, 1.0, b"k", b"v"]),  # a float sequence
    msgpack.packb([float(Put.command_id), 1, 1, b"k", b"v"]),  # a float id
    msgpack.packb([Put.command_id, 1, 1, "k", b"v"]),  # a str key
    msgpack.packb([Put.command_id, 1, 1, b"k", None]),  # no value
    msgpack.packb([Put.command_id, 1, 1, b"k"]),  # a field missing
    msgpack.packb([Put.command_id, 1, 1, b"k", b"v", b"w"]),  # one too many
    msgpack.packb([Put.command_id, 1, 1, b"k", b"v"]) + b"\x00",  # trailing bytes
    msgpack.packb([Put.command_id, 1, 1, b"k", b"v"])[:-1],  # cut short
    msgpack.packb({Put.command_id: [1, 1, b"k", b"v"]}),  # a map with an int key
    msgpack.packb([Put.command_id, -1, 1, b"k", b"v"]),  # a client no session has
    msgpack.packb([Put.command_id, 2, 0, b"k", b"v"]),  # sequence 0
])


@SETTINGS
@given(log_entries(), st.lists(st.tuples(st.integers(0, 60), NEAR_PUTS), max_size=6), st.data())
def test_a_batch_applies_as_entry_by_entry(entries, near, data):
    """``apply_commands`` runs a Put itself: for any entries (writes of live, expired, evicted
    and unknown sessions; next, repeated and old sequences; malformed payloads and payloads a
    Put almost is), cut into any batches, its results and its state after each batch are
    those of ``apply`` entry by entry."""
    for position, payload in sorted(near, reverse=True):
        entries.insert(min(position, len(entries)), (KIND_COMMAND, payload))
    limits = {
        "session_ttl_entries": data.draw(st.sampled_from([2, 5, 1000])),
        "sessions_max": data.draw(st.sampled_from([1, 3, 100])),
    }
    inline, reference = machine(**limits), EntryByEntry(compaction=None, **limits)
    assert inline._puts_inline and not reference._puts_inline
    start = 0
    while start < len(entries):
        end = start + data.draw(st.integers(1, 20))
        assert apply_entries(inline, entries[start:end]) == \
            apply_entries(reference, entries[start:end])
        assert inline.build_snapshot() == reference.build_snapshot()
        assert list(inline.sessions.items()) == list(reference.sessions.items())
        start = end


@pytest.mark.parametrize("sequences", [[0], [1, 1], [2, 1], [1, 0], [1, 2, 2, 3], [-1, 1]])
def test_a_batch_answers_each_sequence_as_entry_by_entry(sequences):
    """The session rules at their edges (a first sequence of 0, a retry, an old sequence, a
    negative one), in one batch after the session's opening."""
    opened = [(KIND_COMMAND, KVClientSession.open_payload())]
    writes = [(KIND_COMMAND, encode(Put(1, sequence, b"k", b"%d" % n)))
              for n, sequence in enumerate(sequences)]
    inline, reference = machine(), EntryByEntry(compaction=None, session_ttl_entries=6,
                                                sessions_max=3)
    assert apply_entries(inline, opened + writes) == apply_entries(reference, opened + writes)
    assert inline.build_snapshot() == reference.build_snapshot()


def test_a_subclass_that_changes_a_step_keeps_it():
    """A subclass overriding a step of ``apply`` (here ``_mutate``) sees every Put of a
    batch."""

    class Upper(KVStateMachine):
        def _mutate(self, command):
            if type(command) is Put:
                command = Put(command.client, command.sequence, command.key,
                              command.value.upper())
            return super()._mutate(command)

    kv = Upper(compaction=None)
    [opened] = apply_entries(kv, [(KIND_COMMAND, KVClientSession.open_payload())])
    apply_entries(kv, [(KIND_COMMAND, encode(Put(opened.client, 1, b"k", b"v"))),
                       (KIND_COMMAND, encode(Put(opened.client, 2, b"j", b"w")))])
    assert dict(kv.data) == {b"k": b"V", b"j": b"W"}


# ---- exactly once ----------------------------------------------------------------------------
# a request: (client slot, operation, key, value, expected, deliveries)
REQUESTS = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.sampled_from(["put", "delete", "cas"]),
        KEYS,
        VALUES,
        st.none() | VALUES,
        st.integers(1, 3),
    ),
    max_size=40,
)


@SETTINGS
@given(REQUESTS, st.randoms(use_true_random=False))
def test_retried_writes_apply_exactly_once(requests, rng):
    """Each request is delivered one to three times, the copies interleaved with other
    clients' traffic; the data and every answer equal a model that applies it once."""
    kv = machine(session_ttl_entries=10_000, sessions_max=10)
    opened = apply_entries(kv, [(KIND_COMMAND, KVClientSession.open_payload(i)) for i in range(3)])
    clients = [KVClientSession(result.client) for result in opened]
    model: dict[bytes, bytes] = {}
    for slot, operation, key, value, expected, deliveries in requests:
        client = clients[slot]
        if operation == "put":
            client.put(key, value)
            answer: object = model.get(key)
            model[key] = value
        elif operation == "delete":
            client.delete(key)
            answer = model.pop(key, None)
        else:
            client.compare_and_set(key, expected, value)
            ok = model.get(key) == expected
            if ok:
                model[key] = value
            answer = CasResult(ok, model.get(key))
        for delivery in range(deliveries):
            noise = [(KIND_COMMAND, encode(Get(key)))] * rng.randrange(3)
            before = dict(kv.data)
            [result, *_] = apply_entries(kv, [(KIND_COMMAND, client.retry()), *noise])
            assert result == answer
            if delivery > 0:  # a duplicate leaves the data untouched
                assert dict(kv.data) == before
        client.complete(result)
        assert dict(kv.data) == model
    # an older sequence is answered as stale, not re-applied
    if requests:
        client = clients[requests[-1][0]]
        old = encode(Put(client.client, client.sequence - 1, b"a", b"late"))
        [result] = apply_entries(kv, [(KIND_COMMAND, old)])
        assert result == StaleRequest(client.client, client.sequence - 1, client.sequence)
        assert dict(kv.data) == model


def test_cached_result_survives_a_snapshot():
    kv = machine()
    [opened] = apply_entries(kv, [(KIND_COMMAND, KVClientSession.open_payload())])
    client = KVClientSession(opened.client)
    apply_entries(kv, [(KIND_COMMAND, encode(Put(opened.client, 1, b"k", b"old")))])
    client.sequence = 1
    payload = client.compare_and_set(b"k", b"old", b"new")
    assert apply_entries(kv, [(KIND_COMMAND, payload)]) == [CasResult(True, b"new")]
    copy = install(kv)
    assert apply_entries(copy, [(KIND_COMMAND, client.retry())]) == [CasResult(True, b"new")]
    assert copy.data[b"k"] == b"new"


# ---- expiry ----------------------------------------------------------------------------------
@SETTINGS
@given(st.integers(1, 20), st.integers(1, 40), st.sampled_from(["put", "keep_alive"]))
def test_session_expires_after_ttl_entries_without_a_command(ttl, gap, kind):
    """A session last active at index a serves a command at a + ttl and has expired at
    a + ttl + 1; the entries between (no-ops or other traffic) do not keep it alive."""
    kv = machine(session_ttl_entries=ttl)
    [opened] = apply_entries(kv, [(KIND_COMMAND, KVClientSession.open_payload())])
    filler = [(KIND_NOOP, b""), (KIND_COMMAND, encode(Get(b"a")))]
    apply_entries(kv, [filler[i % 2] for i in range(gap - 1)])
    if kind == "put":
        payload = encode(Put(opened.client, 1, b"k", b"v"))
    else:
        payload = encode(KeepAlive(opened.client))
    [result] = apply_entries(kv, [(KIND_COMMAND, payload)])
    if gap <= ttl:
        assert not isinstance(result, SessionExpired)
        assert kv.sessions[opened.client].last_active == opened.client + gap
    else:
        assert result == SessionExpired(opened.client)
        assert opened.client not in kv.sessions
        assert b"k" not in kv.data


@SETTINGS
@given(st.integers(1, 5), st.lists(st.integers(0, 9), max_size=30))
def test_sessions_are_bounded_and_the_least_recently_active_goes_first(limit, touches):
    kv = machine(session_ttl_entries=10_000, sessions_max=limit)
    live: list[int] = []  # least recently active first
    for touch in touches:
        if touch >= len(live):
            [opened] = apply_entries(kv, [(KIND_COMMAND, KVClientSession.open_payload())])
            if len(live) == limit:
                live.pop(0)
            live.append(opened.client)
        else:
            client = live.pop(touch)
            assert apply_entries(kv, [(KIND_COMMAND, encode(KeepAlive(client)))]) == [None]
            live.append(client)
        assert list(kv.sessions) == live
        assert len(kv.sessions) <= limit


def test_unknown_client_and_stale_sequence():
    kv = machine()
    assert apply_entries(kv, [(KIND_COMMAND, encode(Delete(99, 1, b"k")))]) == [
        SessionExpired(99)
    ]
    [opened] = apply_entries(kv, [(KIND_COMMAND, encode(OpenSession(5)))])
    assert opened == SessionOpened(2, 5)
    for sequence in (0, -1):
        payload = encode(Put(2, sequence, b"k", b"v"))
        assert apply_entries(kv, [(KIND_COMMAND, payload)]) == [StaleRequest(2, sequence, 0)]
    assert b"k" not in kv.data


# ---- compare-and-set -------------------------------------------------------------------------
def test_compare_and_set():
    kv = machine()
    apply_entries(kv, [(KIND_COMMAND, KVClientSession.open_payload())])
    client = KVClientSession(1)

    def run(payload):
        [result] = apply_entries(kv, [(KIND_COMMAND, payload)])
        return client.complete(result)

    assert run(client.compare_and_set(b"k", b"v", b"w")) == CasResult(False, None)
    assert run(client.compare_and_set(b"k", None, b"v")) == CasResult(True, b"v")
    assert run(client.compare_and_set(b"k", None, b"w")) == CasResult(False, b"v")
    assert run(client.compare_and_set(b"k", b"x", b"w")) == CasResult(False, b"v")
    assert run(client.compare_and_set(b"k", b"v", b"")) == CasResult(True, b"")
    assert run(client.compare_and_set(b"k", None, b"z")) == CasResult(False, b"")
    assert run(client.put(b"k", b"p")) == b""
    assert run(client.delete(b"k")) == b"p"
    assert run(client.delete(b"k")) is None
    [value] = apply_entries(kv, [(KIND_COMMAND, KVClientSession.get_payload(b"k"))])
    assert value is None


# ---- malformed payloads ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",
        msgpack.packb({"not": "a command"}),
        msgpack.packb([99, b"k"]),  # an unknown id
        msgpack.packb([Put.command_id, 1, 1, "text", b"v"]),  # a str key
        msgpack.packb([Put.command_id, True, 1, b"k", b"v"]),  # a bool client
        msgpack.packb([Put.command_id, 1, 1, b"k"]),  # a field missing
        msgpack.packb([Get.command_id, b"k", b"extra"]),
        msgpack.packb([CompareAndSet.command_id, 1, 1, b"k", 3, b"v"]),
        msgpack.packb([Get.command_id, b"k"]) + b"\x00",  # trailing bytes
    ],
)
def test_malformed_payloads_are_error_results(payload):
    kv = machine()
    apply_entries(kv, [(KIND_COMMAND, KVClientSession.open_payload())])
    state = kv.build_snapshot()
    [result] = apply_entries(kv, [(KIND_COMMAND, payload)])
    assert isinstance(result, MalformedRequest) and result.reason
    assert kv.build_snapshot() == state
    assert apply_entries(kv, [(KIND_COMMAND, encode(Get(b"k")))]) == [None]  # still usable


@SETTINGS
@given(st.binary(max_size=40))
def test_arbitrary_bytes_never_raise(payload):
    one, two = machine(), machine()
    assert apply_entries(one, [(KIND_COMMAND, payload)]) == apply_entries(
        two, [(KIND_COMMAND, payload)]
    )


# ---- snapshots -------------------------------------------------------------------------------
def test_snapshot_round_trip_and_compaction_through_the_sink():
    snapshots: list[tuple[int, bytes]] = []
    kv = KVStateMachine(
        snapshot_entries=5,
        session_ttl_entries=50,
        snapshot_sink=lambda index, data: snapshots.append((index, data)),
    )
    [opened] = apply_entries(kv, [(KIND_COMMAND, encode(OpenSession()))])
    client = KVClientSession(opened.client)
    for i in range(12):
        [result] = apply_entries(kv, [(KIND_COMMAND, client.put(b"k%d" % (i % 4), b"%d" % i))])
        client.complete(result)
    assert [index for index, _ in snapshots] == [5, 10]
    assert kv.force_compaction() == 13
    index, data = snapshots[-1]
    copy = machine(session_ttl_entries=50)
    copy.restore_snapshot(data)
    assert copy.build_snapshot() == data
    assert dict(copy.data) == dict(kv.data)
    assert copy.sessions == kv.sessions
    assert copy.sessions[opened.client].last_result == b"7"
    empty = machine()
    empty.restore_snapshot(b"")
    assert not empty.data and not empty.sessions


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"version": 2, "data": {}, "sessions": []}),
        msgpack.packb({"version": 1, "data": {"k": b"v"}, "sessions": []}),
        msgpack.packb({"version": 1, "data": {}, "sessions": [[1, 2, 3, [7]]]}),
        msgpack.packb({"version": 1, "data": {}, "sessions": [[1, 2]]}),
    ],
)
def test_bad_snapshots_raise_a_typed_error(data):
    with pytest.raises(SnapshotFormatError):
        machine().restore_snapshot(data)


# ---- configuration and the client helper -----------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [
        {"session_ttl_entries": 0},
        {"sessions_max": 0},
        {"sessions_max": 1.5},
        {"compaction": "incremental"},
    ],
)
def test_limits_are_validated(options):
    with pytest.raises(ConfigError):
        KVStateMachine(**options)


def test_limits_accept_their_lower_bound():
    kv = machine(session_ttl_entries=1, sessions_max=1)
    assert apply_entries(kv, [(KIND_COMMAND, encode(OpenSession()))] * 2) == [
        SessionOpened(1, None),
        SessionOpened(2, None),
    ]
    assert list(kv.sessions) == [2]


def test_client_session_numbers_requests_and_reuses_the_sequence_on_retry():
    client = KVClientSession(7)
    first = client.put(b"k", b"v")
    assert KVStateMachine().decode(first) == Put(7, 1, b"k", b"v")
    assert client.retry() == first
    with pytest.raises(RequestPendingError):
        client.delete(b"k")
    client.complete(None)
    with pytest.raises(RuntimeError):
        client.retry()
    assert KVStateMachine().decode(client.delete(b"k")) == Delete(7, 2, b"k")
    assert client.complete(SessionExpired(7)) == SessionExpired(7)
    assert client.expired
    assert KVStateMachine().decode(client.keep_alive_payload()) == KeepAlive(7)
