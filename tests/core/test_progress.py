"""Progress (the leader's view of one follower) and its in-flight window, tested directly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyraft.core.progress import Inflights, Progress, ProgressState
from pyraft.errors import InvariantError


def progress(next_index: int = 11, messages: int = 4, nbytes: int = 1000) -> Progress:
    return Progress(next_index, messages, nbytes)


# ---- states ------------------------------------------------------------------------------------
def test_a_new_progress_probes_from_next():
    pr = progress(11)
    assert (pr.state, pr.match, pr.next, pr.probe_sent) == (ProgressState.PROBE, 0, 11, False)
    assert not pr.is_paused()


def test_probe_sends_one_append_at_a_time():
    pr = progress(11)
    pr.probe_sent = True
    assert pr.is_paused()
    assert pr.maybe_update(10)  # the answer: match moves, the probe is over
    assert not pr.is_paused() and (pr.match, pr.next) == (10, 11)


def test_replicate_pipelines_until_the_window_is_full_by_count():
    pr = progress(11, messages=2, nbytes=10**6)
    pr.maybe_update(10)
    pr.become_replicate()
    assert (pr.state, pr.next) == (ProgressState.REPLICATE, 11)
    pr.inflights.add(12, 100)
    assert not pr.is_paused()
    pr.inflights.add(14, 100)
    assert pr.is_paused()
    pr.inflights.free_to(12)
    assert not pr.is_paused()


def test_replicate_pauses_when_the_window_is_full_by_bytes():
    pr = progress(1, messages=100, nbytes=300)
    pr.become_replicate()
    pr.inflights.add(1, 200)
    assert not pr.is_paused()
    pr.inflights.add(2, 100)
    assert pr.is_paused() and pr.inflights.bytes == 300
    pr.inflights.free_to(1)
    assert not pr.is_paused() and pr.inflights.bytes == 100


def test_snapshot_pauses_everything_until_it_is_done():
    pr = progress(11)
    pr.maybe_update(5)
    pr.become_snapshot(40)
    assert pr.state is ProgressState.SNAPSHOT and pr.is_paused()
    assert (pr.pending_snapshot, pr.snapshot_offset, pr.snapshot_sent) == (40, 0, 0)
    assert pr.snapshot_probing and not pr.snapshot_done_sent
    pr.become_probe()  # a failed snapshot: probe after what it would have installed
    assert (pr.state, pr.next, pr.pending_snapshot) == (ProgressState.PROBE, 41, 0)


def test_probe_after_replicate_restarts_after_match_and_clears_the_window():
    pr = progress(1)
    pr.maybe_update(7)
    pr.become_replicate()
    pr.inflights.add(9, 10)
    pr.next = 10
    pr.become_probe()
    assert (pr.state, pr.next, len(pr.inflights), pr.inflights.bytes) == (
        ProgressState.PROBE, 8, 0, 0)


def test_snapshot_rewind_sends_again_one_chunk_at_a_time():
    pr = progress()
    pr.become_snapshot(9)
    pr.snapshot_sent, pr.snapshot_done_sent, pr.snapshot_probing = 64, True, False
    pr.snapshot_rewind(16)
    assert (pr.snapshot_sent, pr.snapshot_done_sent, pr.snapshot_probing) == (16, False, True)


# ---- maybe_update / maybe_decrease_to ---------------------------------------------------------
def test_maybe_update_moves_match_forward_only():
    pr = progress(11)
    assert pr.maybe_update(12) and (pr.match, pr.next) == (12, 13)
    assert not pr.maybe_update(12) and not pr.maybe_update(3)
    assert (pr.match, pr.next) == (12, 13)


def test_a_stale_rejection_in_replicate_is_ignored():
    pr = progress(1)
    pr.maybe_update(20)
    pr.become_replicate()
    pr.next = 30
    assert not pr.maybe_decrease_to(15, 15)
    assert pr.next == 30


def test_a_rejection_in_replicate_goes_back_to_match():
    pr = progress(1)
    pr.maybe_update(20)
    pr.become_replicate()
    pr.next = 30
    assert pr.maybe_decrease_to(25, 22)
    assert pr.next == 21


def test_a_rejection_in_probe_follows_the_hint():
    pr = progress(51)
    assert pr.maybe_decrease_to(50, 30)  # follower's log ends at 30
    assert (pr.next, pr.probe_sent) == (31, False)
    assert not pr.maybe_decrease_to(50, 10)  # an answer to an earlier probe: stale
    assert pr.next == 31


def test_a_rejection_never_goes_below_match_plus_one():
    pr = progress(51)
    pr.maybe_update(20)
    pr.next = 51
    assert pr.maybe_decrease_to(50, 3)
    assert pr.next == 21


def test_a_follower_that_lost_acknowledged_entries_is_sent_them_again():
    pr = progress(1)
    pr.maybe_update(40)
    pr.become_replicate()
    assert pr.maybe_decrease_to(40, 25)  # rejected at match, with a shorter log
    assert (pr.match, pr.next) == (25, 26)


# ---- the in-flight window ---------------------------------------------------------------------
def test_inflights_refuse_adding_to_a_full_window_and_out_of_order():
    window = Inflights(2, 100)
    window.add(5, 10, tick=3)
    with pytest.raises(InvariantError):
        window.add(5, 10)
    window.add(6, 10, tick=4)
    assert window.full() and window.oldest_tick() == 3
    with pytest.raises(InvariantError):
        window.add(7, 10)


def test_inflights_free_to_forgets_what_was_acknowledged():
    window = Inflights(10, 1000)
    for last, size, tick in ((3, 10, 1), (6, 20, 2), (9, 30, 3)):
        window.add(last, size, tick)
    window.free_to(5)  # not the end of the second append: it stays
    assert (len(window), window.bytes, window.oldest_tick()) == (2, 50, 2)
    window.free_to(100)
    assert (len(window), window.bytes, window.oldest_tick()) == (0, 0, None)


@given(st.integers(1, 8), st.integers(1, 500),
       st.lists(st.tuples(st.booleans(), st.integers(1, 120)), max_size=60))
def test_inflights_agree_with_a_list(capacity, bytes_max, operations):
    """Against a naive oracle: add when not full (sizes grow the window), free to an index."""
    window = Inflights(capacity, bytes_max)
    oracle: list[tuple[int, int]] = []
    last = 0
    for is_add, value in operations:
        if is_add:
            full = len(oracle) >= capacity or sum(s for _, s in oracle) >= bytes_max
            assert window.full() == full
            if full:
                continue
            last += 1 + value % 5
            window.add(last, value)
            oracle.append((last, value))
        else:
            index = last - value % 7
            window.free_to(index)
            oracle = [(i, s) for i, s in oracle if i > index]
        assert len(window) == len(oracle)
        assert window.bytes == sum(s for _, s in oracle)


@given(st.integers(1, 50), st.lists(st.tuples(st.sampled_from(
    ["update", "reject", "probe", "replicate", "snapshot"]), st.integers(0, 80),
    st.integers(0, 80)), max_size=50))
def test_match_stays_below_next(start, operations):
    """The module's invariant ``0 <= match < next`` holds whatever the answers say."""
    pr = progress(start)
    for operation, a, b in operations:
        if operation == "update":
            pr.maybe_update(a)
        elif operation == "reject":
            pr.maybe_decrease_to(a, b)
        elif operation == "probe":
            pr.become_probe()
        elif operation == "replicate":
            pr.become_replicate()
        else:
            pr.become_snapshot(max(a, pr.match))
        assert 0 <= pr.match < pr.next
