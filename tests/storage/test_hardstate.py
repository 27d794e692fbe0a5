"""Hard state stores: durability, corruption detection, and the term/vote invariants."""

from __future__ import annotations

import errno
import os

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyraft.core.messages import HardState
from pyraft.errors import CorruptStateError, InvariantError, StorageError, StorageFullError
from pyraft.storage.files import atomic_write, pack_checked
from pyraft.storage.hardstate import (
    HARD_STATE_FILE,
    FileHardStateStore,
    HardStateStore,
    MemoryHardStateStore,
)


@pytest.fixture(params=["memory", "file"])
def store(request, tmp_path):
    if request.param == "memory":
        return MemoryHardStateStore()
    return FileHardStateStore(tmp_path / "state")


def fail_with(code: int):
    def raiser(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return raiser


def test_both_stores_follow_the_protocol(tmp_path):
    assert isinstance(MemoryHardStateStore(), HardStateStore)
    assert isinstance(FileHardStateStore(tmp_path), HardStateStore)


def test_fresh_store_loads_the_zero_state(store):
    assert store.load() == HardState()


def test_round_trip(store):
    state = HardState(term=7, vote=3, commit=41)
    store.save(state)
    assert store.load() == state


def test_file_survives_reopening(tmp_path):
    FileHardStateStore(tmp_path).save(HardState(term=2, vote=1, commit=5))
    assert FileHardStateStore(tmp_path).load() == HardState(term=2, vote=1, commit=5)
    assert os.listdir(tmp_path) == [HARD_STATE_FILE]


def test_memory_store_accepts_an_initial_state():
    assert MemoryHardStateStore(HardState(3, 2, 1)).load() == HardState(3, 2, 1)


@given(
    steps=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 5), st.integers(0, 1000)), max_size=12
    )
)
def test_valid_histories_round_trip(tmp_path_factory, steps):
    """Any history that only raises the term, and votes at most once per term, is stored."""
    directory = tmp_path_factory.mktemp("hs")
    store = FileHardStateStore(directory)
    current = HardState()
    for term_step, vote, commit in steps:
        term = current.term + term_step
        if term == current.term and current.vote != 0:
            vote = current.vote
        current = HardState(term, vote, commit)
        store.save(current)
        assert FileHardStateStore(directory).load() == current


# -- invariants ---------------------------------------------------------------------------------


def test_lower_term_is_refused(store):
    store.save(HardState(term=5, vote=1))
    with pytest.raises(InvariantError, match="term"):
        store.save(HardState(term=4, vote=1))
    assert store.load() == HardState(term=5, vote=1)


def test_changed_vote_in_the_same_term_is_refused(store):
    store.save(HardState(term=5, vote=1))
    with pytest.raises(InvariantError, match="vote"):
        store.save(HardState(term=5, vote=2))
    with pytest.raises(InvariantError, match="vote"):
        store.save(HardState(term=5, vote=0))  # forgetting a vote is a change too
    assert store.load() == HardState(term=5, vote=1)


def test_allowed_transitions(store):
    store.save(HardState(term=5, vote=0))
    store.save(HardState(term=5, vote=2))  # first vote of the term
    store.save(HardState(term=5, vote=2, commit=9))  # commit is a hint
    store.save(HardState(term=5, vote=2, commit=3))
    store.save(HardState(term=6, vote=0))  # a new term clears the vote
    store.save(HardState(term=8, vote=4))
    assert store.load() == HardState(term=8, vote=4)


@pytest.mark.parametrize(
    "state",
    [
        HardState(term=-1),
        HardState(vote=-2),
        HardState(commit=-1),
        HardState(term=1.5),
        HardState(term=True),
        HardState(term=2**64),
    ],
)
def test_invalid_values_are_refused(store, state):
    with pytest.raises(InvariantError):
        store.save(state)


def test_invariant_holds_across_reopening(tmp_path):
    FileHardStateStore(tmp_path).save(HardState(term=9, vote=2))
    reopened = FileHardStateStore(tmp_path)
    with pytest.raises(InvariantError):
        reopened.save(HardState(term=9, vote=3))
    with pytest.raises(InvariantError):
        FileHardStateStore(tmp_path).save(HardState(term=8))


# -- corruption -----------------------------------------------------------------------------------


def test_every_bit_flip_is_a_corrupt_state_error(tmp_path):
    FileHardStateStore(tmp_path).save(HardState(term=12, vote=3, commit=100))
    path = tmp_path / HARD_STATE_FILE
    good = path.read_bytes()
    for position in range(len(good)):
        for bit in range(8):
            damaged = bytearray(good)
            damaged[position] ^= 1 << bit
            path.write_bytes(damaged)
            with pytest.raises(CorruptStateError) as caught:
                FileHardStateStore(tmp_path).load()
            assert caught.value.path == str(path)


def test_every_truncation_is_a_corrupt_state_error(tmp_path):
    FileHardStateStore(tmp_path).save(HardState(term=12, vote=3, commit=100))
    path = tmp_path / HARD_STATE_FILE
    good = path.read_bytes()
    for length in range(len(good)):
        path.write_bytes(good[:length])
        with pytest.raises(CorruptStateError) as caught:
            FileHardStateStore(tmp_path).load()
        assert caught.value.path == str(path)


def test_a_corrupt_file_is_never_reset_by_save(tmp_path):
    FileHardStateStore(tmp_path).save(HardState(term=12, vote=3))
    path = tmp_path / HARD_STATE_FILE
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(CorruptStateError):
        FileHardStateStore(tmp_path).save(HardState(term=1))
    assert len(path.read_bytes()) > 0


@pytest.mark.parametrize(
    "record",
    [
        [1, 2, 3],
        {"term": 1, "vote": 2},
        {"term": 1, "vote": 2, "commit": 3, "extra": 4},
        {"term": -1, "vote": 2, "commit": 3},
        {"term": "1", "vote": 2, "commit": 3},
        {"term": True, "vote": 2, "commit": 3},
    ],
)
def test_well_framed_but_invalid_content_is_corrupt(tmp_path, record):
    atomic_write(tmp_path / HARD_STATE_FILE, pack_checked(b"HARD", msgpack.packb(record)))
    with pytest.raises(CorruptStateError, match="hard state"):
        FileHardStateStore(tmp_path).load()


def test_undecodable_payload_is_corrupt(tmp_path):
    atomic_write(tmp_path / HARD_STATE_FILE, pack_checked(b"HARD", b"\xc1"))
    with pytest.raises(CorruptStateError, match="undecodable"):
        FileHardStateStore(tmp_path).load()


# -- failures and crashes ------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["write", "fsync"])
def test_full_disk_keeps_the_old_state(tmp_path, monkeypatch, call):
    store = FileHardStateStore(tmp_path)
    store.save(HardState(term=3, vote=1))
    monkeypatch.setattr(os, call, fail_with(errno.ENOSPC))
    with pytest.raises(StorageFullError) as caught:
        store.save(HardState(term=4, vote=2))
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.path == str(tmp_path / HARD_STATE_FILE)
    assert FileHardStateStore(tmp_path).load() == HardState(term=3, vote=1)
    assert os.listdir(tmp_path) == [HARD_STATE_FILE]
    store.save(HardState(term=4, vote=2))  # space is back
    assert FileHardStateStore(tmp_path).load() == HardState(term=4, vote=2)


def test_io_error_is_a_storage_error(tmp_path, monkeypatch):
    store = FileHardStateStore(tmp_path)
    monkeypatch.setattr(os, "fsync", fail_with(errno.EIO))
    with pytest.raises(StorageError) as caught:
        store.save(HardState(term=1))
    assert type(caught.value) is StorageError and caught.value.errno == errno.EIO


def test_crash_leftovers_are_removed_on_open(tmp_path):
    FileHardStateStore(tmp_path).save(HardState(term=3, vote=1))
    leftover = tmp_path / f"{HARD_STATE_FILE}.0123abcd.tmp"
    leftover.write_bytes(b"half a new state")
    store = FileHardStateStore(tmp_path)
    assert not leftover.exists()
    assert store.load() == HardState(term=3, vote=1)


def test_unchanged_state_is_not_rewritten(tmp_path, monkeypatch):
    store = FileHardStateStore(tmp_path)
    store.save(HardState(term=3, vote=1))
    monkeypatch.setattr(os, "fsync", fail_with(errno.EIO))
    store.save(HardState(term=3, vote=1))  # already durable: no I/O
