"""Warmup rounds of a learner (Raft thesis 4.2.1), without a node around them."""

from __future__ import annotations

from pyraft.core.warmup import CatchUp, RoundOutcome, Warmup

LOWER, ROUNDS = 10, 3


def test_a_round_is_not_over_until_the_learner_reaches_its_end():
    catch_up = CatchUp(round_end=100, round_start_tick=0, started_tick=0)
    assert catch_up.end_round(99, 120, 5, LOWER, ROUNDS) is None
    assert catch_up.rounds == 0


def test_a_round_shorter_than_an_election_timeout_promotes():
    """"If the last round lasts less than an election timeout, the leader adds the new server
    to the cluster" (thesis 4.2.1)."""
    catch_up = CatchUp(round_end=100, round_start_tick=0, started_tick=0)
    assert catch_up.end_round(100, 150, LOWER - 1, LOWER, ROUNDS) is RoundOutcome.PROMOTE
    assert catch_up.promote and catch_up.rounds == 1
    assert catch_up.end_round(150, 150, LOWER, LOWER, ROUNDS) is None  # promotion pending


def test_a_slow_round_starts_the_next_one_at_the_leaders_last_index():
    catch_up = CatchUp(round_end=100, round_start_tick=0, started_tick=0)
    assert catch_up.end_round(100, 180, LOWER, LOWER, ROUNDS) is RoundOutcome.NEXT_ROUND
    assert (catch_up.round_end, catch_up.round_start_tick, catch_up.rounds) == (180, LOWER, 1)


def test_a_learner_holding_the_whole_log_is_promoted_however_slow_the_round():
    catch_up = CatchUp(round_end=100, round_start_tick=0, started_tick=0)
    assert catch_up.end_round(100, 100, 500, LOWER, ROUNDS) is RoundOutcome.PROMOTE


def test_warmup_rounds_slow_rounds_give_up():
    catch_up = CatchUp(round_end=10, round_start_tick=0, started_tick=0)
    outcomes = []
    tick, last = 0, 10
    for _ in range(ROUNDS):
        tick += 2 * LOWER
        last += 50
        outcomes.append(catch_up.end_round(catch_up.round_end, last, tick, LOWER, ROUNDS))
    assert outcomes == [RoundOutcome.NEXT_ROUND, RoundOutcome.NEXT_ROUND, RoundOutcome.GIVE_UP]


def test_a_learner_that_keeps_moving_is_not_stalled():
    catch_up = CatchUp(round_end=10**6, round_start_tick=0, started_tick=0)
    assert not any(catch_up.stalled(match, tick, 30) for tick, match in enumerate(range(1, 200)))
    assert catch_up.progress_match == 199


def test_a_learner_whose_match_does_not_move_stalls_after_the_limit():
    catch_up = CatchUp(round_end=100, round_start_tick=5, started_tick=5)
    assert not catch_up.stalled(7, 6, 30)  # first sight: progress
    assert not catch_up.stalled(7, 36, 30)
    assert catch_up.stalled(7, 37, 30)
    promoted = CatchUp(round_end=1, round_start_tick=0, started_tick=0, promote=True)
    assert not promoted.stalled(0, 10**6, 30)


def test_warmup_tracks_exactly_the_learners():
    warmup = Warmup()
    assert not warmup
    warmup.sync({4, 5}, last_index=30, tick=7)
    assert 4 in warmup and 5 in warmup and warmup
    assert warmup.catch_ups[4] == CatchUp(30, 7, 7)
    warmup.catch_ups[4].rounds = 2
    warmup.sync({4, 6}, last_index=40, tick=9)  # 5 left, 6 arrived, 4 keeps its rounds
    assert sorted(warmup.catch_ups) == [4, 6] and warmup.catch_ups[4].rounds == 2
    warmup.discard(6)
    warmup.discard(99)
    assert [m for m, _ in warmup.items()] == [4]
    warmup.reset()
    assert not warmup


def test_to_promote_lists_caught_up_learners_by_id():
    warmup = Warmup()
    warmup.sync({7, 3, 5}, last_index=1, tick=0)
    warmup.catch_ups[7].promote = warmup.catch_ups[3].promote = True
    assert warmup.to_promote() == [3, 7]
