"""Configuration stores: round trips, validation naming the field, corruption, failures."""

from __future__ import annotations

import errno
import os

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyraft.core.membership import Configuration
from pyraft.errors import ConfigError, CorruptStateError, StorageError, StorageFullError
from pyraft.storage.configstore import (
    ACTIVE_FILE,
    PROPOSED_FILE,
    ClusterMembers,
    ConfigurationStore,
    FileConfigurationStore,
    MemberInfo,
    MemoryConfigurationStore,
    validate_address,
)
from pyraft.storage.files import atomic_write, pack_checked


def cluster(voters=(1, 2, 3), learners=(), index=10, **metadata) -> ClusterMembers:
    ids = sorted({*voters, *learners})
    return ClusterMembers(
        {i: MemberInfo(i, f"node{i}.example:{7000 + i}", dict(metadata)) for i in ids},
        Configuration(frozenset(voters), frozenset(learners)),
        index,
    )


@pytest.fixture(params=["memory", "file"])
def store(request, tmp_path):
    if request.param == "memory":
        return MemoryConfigurationStore()
    return FileConfigurationStore(tmp_path / "config")


def fail_with(code: int):
    def raiser(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return raiser


def test_both_stores_follow_the_protocol(tmp_path):
    assert isinstance(MemoryConfigurationStore(), ConfigurationStore)
    assert isinstance(FileConfigurationStore(tmp_path), ConfigurationStore)


def test_fresh_store_has_nothing(store):
    assert store.load_active() is None
    assert store.load_proposed() is None
    store.clear_proposed()  # no-op


def test_active_and_proposed_round_trip(store):
    active = cluster(index=4, zone="a")
    proposed = cluster(voters=(1, 2, 3), learners=(4,), index=9)
    store.save_active(active)
    store.save_proposed(proposed)
    assert store.load_active() == active
    assert store.load_proposed() == proposed
    store.clear_proposed()
    assert store.load_proposed() is None
    assert store.load_active() == active


def test_promotion_in_two_steps(store):
    store.save_active(cluster(index=1))
    proposed = cluster(voters=(1, 2, 3, 4), index=5)
    store.save_proposed(proposed)
    store.save_active(proposed)
    store.clear_proposed()
    assert store.load_active() == proposed and store.load_proposed() is None


def test_file_store_survives_reopening(tmp_path):
    FileConfigurationStore(tmp_path).save_active(cluster(index=3))
    FileConfigurationStore(tmp_path).save_proposed(cluster(learners=(5,), index=4))
    reopened = FileConfigurationStore(tmp_path)
    assert reopened.load_active() == cluster(index=3)
    assert reopened.load_proposed() == cluster(learners=(5,), index=4)
    assert sorted(os.listdir(tmp_path)) == [ACTIVE_FILE, PROPOSED_FILE]


def test_memory_store_keeps_copies():
    store = MemoryConfigurationStore()
    members = cluster(zone="a")
    store.save_active(members)
    members.members[1].metadata["zone"] = "changed"
    members.members.pop(2)
    loaded = store.load_active()
    assert loaded == cluster(zone="a")
    loaded.members[1].metadata["zone"] = "changed again"
    assert store.load_active() == cluster(zone="a")


members_strategy = st.builds(
    lambda voters, learners, index, metadata: ClusterMembers(
        {i: MemberInfo(i, f"10.0.0.{i % 250}:{1000 + i}", metadata) for i in voters | learners},
        Configuration(frozenset(voters), frozenset(learners - voters)),
        index,
    ),
    st.sets(st.integers(1, 2000), min_size=1, max_size=7),
    st.sets(st.integers(1, 2000), max_size=3),
    st.integers(0, 2**63),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
)


@given(members=members_strategy)
def test_any_valid_configuration_round_trips(tmp_path_factory, members):
    directory = tmp_path_factory.mktemp("cfg")
    FileConfigurationStore(directory).save_active(members)
    assert FileConfigurationStore(directory).load_active() == members


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address", ["127.0.0.1:7000", "localhost:1", "node-3.example.com:65535", "[::1]:7000"]
)
def test_valid_addresses(address):
    validate_address("address", address)


@pytest.mark.parametrize(
    "address",
    [
        "",
        None,
        7000,
        "localhost",
        ":7000",
        "localhost:",
        "localhost:0",
        "localhost:65536",
        "localhost:-1",
        "localhost:70a",
        "localhost:+80",
        "localhost:٣",  # a non-ASCII digit
        "::1:7000",
        "[::1:7000",
        "[]:7000",
        "my host:7000",
    ],
)
def test_invalid_addresses(address):
    with pytest.raises(ConfigError) as caught:
        validate_address("members[1].address", address)
    assert caught.value.field == "members[1].address"


def replace_member(members: ClusterMembers, key, info) -> ClusterMembers:
    changed = dict(members.members)
    changed[key] = info
    return ClusterMembers(changed, members.configuration, members.index)


@pytest.mark.parametrize(
    ("members", "field"),
    [
        (replace_member(cluster(), 2, MemberInfo(2, "", {})), "members[2].address"),
        (replace_member(cluster(), 2, MemberInfo(2, "h:99999", {})), "members[2].address"),
        (
            replace_member(cluster(), 2, MemberInfo(2, "node1.example:7001", {})),
            "members[2].address",
        ),
        (replace_member(cluster(), 2, MemberInfo(3, "h:1", {})), "members[2].id"),
        (replace_member(cluster(), 0, MemberInfo(0, "h:1", {})), "members[0]"),
        (replace_member(cluster(), -4, MemberInfo(-4, "h:1", {})), "members[-4]"),
        (replace_member(cluster(), "5", MemberInfo(5, "h:1", {})), "members['5']"),
        (replace_member(cluster(), 2, "h:1"), "members[2]"),
        (replace_member(cluster(), 2, MemberInfo(2, "h:1", {"k": 1})), "members[2].metadata"),
        (replace_member(cluster(), 2, MemberInfo(2, "h:1", [])), "members[2].metadata"),
        (ClusterMembers(cluster().members, cluster().configuration, -1), "index"),
        (ClusterMembers(cluster().members, cluster().configuration, True), "index"),
        (ClusterMembers(cluster().members, cluster().configuration, 2**64), "index"),
        (ClusterMembers(cluster().members, {1, 2}, 0), "configuration"),
        (ClusterMembers([], cluster().configuration, 0), "members"),
        (
            ClusterMembers(cluster().members, Configuration(frozenset({1, 2, 3, 4})), 0),
            "configuration.voters",
        ),
        (
            ClusterMembers(cluster().members, Configuration(frozenset({1}), frozenset({9})), 0),
            "configuration.learners",
        ),
    ],
)
def test_invalid_configurations_name_the_field(store, members, field):
    with pytest.raises(ConfigError) as caught:
        store.save_active(members)
    assert caught.value.field == field
    with pytest.raises(ConfigError):
        store.save_proposed(members)
    assert store.load_active() is None and store.load_proposed() is None


def test_members_outside_the_configuration_are_allowed(store):
    members = cluster()
    extra = replace_member(members, 8, MemberInfo(8, "node8.example:7008", {}))
    store.save_active(extra)
    assert store.load_active() == extra


# -- corruption ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "loader"), [(ACTIVE_FILE, "load_active"), (PROPOSED_FILE, "load_proposed")]
)
def test_every_bit_flip_is_a_corrupt_state_error(tmp_path, name, loader):
    store = FileConfigurationStore(tmp_path)
    store.save_active(cluster(learners=(4,), zone="a"))
    store.save_proposed(cluster(learners=(4,), zone="a"))
    path = tmp_path / name
    good = path.read_bytes()
    for position in range(len(good)):
        damaged = bytearray(good)
        damaged[position] ^= 1 << (position % 8)
        path.write_bytes(damaged)
        with pytest.raises(CorruptStateError) as caught:
            getattr(FileConfigurationStore(tmp_path), loader)()
        assert caught.value.path == str(path)


def test_every_truncation_is_a_corrupt_state_error(tmp_path):
    FileConfigurationStore(tmp_path).save_active(cluster())
    path = tmp_path / ACTIVE_FILE
    good = path.read_bytes()
    for length in range(len(good)):
        path.write_bytes(good[:length])
        with pytest.raises(CorruptStateError) as caught:
            FileConfigurationStore(tmp_path).load_active()
        assert caught.value.path == str(path)


def test_swapped_files_are_detected(tmp_path):
    store = FileConfigurationStore(tmp_path)
    store.save_proposed(cluster())
    os.replace(tmp_path / PROPOSED_FILE, tmp_path / ACTIVE_FILE)
    with pytest.raises(CorruptStateError, match="kind"):
        store.load_active()


VALID_RECORD = {
    "index": 1,
    "voters": [1],
    "learners": [],
    "members": [[1, "h:1", {}]],
}


@pytest.mark.parametrize(
    "record",
    [
        [1],
        {**VALID_RECORD, "extra": 1},
        {**VALID_RECORD, "members": [[1, "h:1"]]},
        {**VALID_RECORD, "members": [[1, "h:1", {}], [1, "h:2", {}]]},
        {**VALID_RECORD, "members": [[1, "no port", {}]]},
        {**VALID_RECORD, "members": [[2, "h:1", {}]]},
        {**VALID_RECORD, "voters": [1], "learners": [1]},
        {**VALID_RECORD, "voters": [0]},
        {**VALID_RECORD, "voters": "1"},
        {**VALID_RECORD, "index": -3},
    ],
)
def test_well_framed_but_invalid_content_is_corrupt(tmp_path, record):
    atomic_write(tmp_path / ACTIVE_FILE, pack_checked(b"CFGA", msgpack.packb(record)))
    with pytest.raises(CorruptStateError, match="configuration") as caught:
        FileConfigurationStore(tmp_path).load_active()
    assert caught.value.path == str(tmp_path / ACTIVE_FILE)


# -- failures and crashes ------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["write", "fsync"])
def test_full_disk_keeps_the_old_configuration(tmp_path, monkeypatch, call):
    store = FileConfigurationStore(tmp_path)
    store.save_active(cluster(index=1))
    monkeypatch.setattr(os, call, fail_with(errno.ENOSPC))
    with pytest.raises(StorageFullError) as caught:
        store.save_active(cluster(voters=(1, 2, 3, 4), index=2))
    monkeypatch.undo()
    assert caught.value.path == str(tmp_path / ACTIVE_FILE)
    assert FileConfigurationStore(tmp_path).load_active() == cluster(index=1)
    assert os.listdir(tmp_path) == [ACTIVE_FILE]


def test_clear_proposed_errors_are_storage_errors(tmp_path, monkeypatch):
    store = FileConfigurationStore(tmp_path)
    store.save_proposed(cluster())
    monkeypatch.setattr(os, "unlink", fail_with(errno.EROFS))
    with pytest.raises(StorageError) as caught:
        store.clear_proposed()
    monkeypatch.undo()
    assert caught.value.errno == errno.EROFS
    assert store.load_proposed() == cluster()


def test_crash_leftovers_are_removed_on_open(tmp_path):
    store = FileConfigurationStore(tmp_path)
    store.save_active(cluster())
    for name in (f"{ACTIVE_FILE}.00ff.tmp", f"{PROPOSED_FILE}.11ee.tmp"):
        (tmp_path / name).write_bytes(b"partial")
    reopened = FileConfigurationStore(tmp_path)
    assert os.listdir(tmp_path) == [ACTIVE_FILE]
    assert reopened.load_active() == cluster()
