"""FailureDetector / VoterWatch: the leader's phi-accrual watch over voters, in ticks."""

from __future__ import annotations

import pytest

from pyraft.core.failure import FailureDetector
from pyraft.core.raft import RaftOptions
from pyraft.errors import ConfigError


def run(detector: FailureDetector, answers: dict[int, range], ticks: int,
        unheard_ticks: int = 100) -> list[list[int]]:
    """Tick 1..ticks; voter v answers at the ticks in answers[v]. Returns dead() per tick
    (10 ticks of looking dead, ``unheard_ticks`` without any answer)."""
    heard = dict.fromkeys(answers, 0)
    verdicts = []
    for tick in range(1, ticks + 1):
        for member, when in answers.items():
            if tick in when:
                heard[member] = tick
        detector.observe(frozenset(answers) | {1}, heard, tick)
        verdicts.append(detector.dead(tick, 10, unheard_ticks))
    return verdicts


def test_a_voter_that_keeps_answering_is_never_dead():
    detector = FailureDetector(heartbeat_ticks=2, tick_ms=1.0, phi_threshold=8.0)
    verdicts = run(detector, {2: range(0, 300, 2)}, 300)
    assert verdicts[-1] == [] and all(v == [] for v in verdicts)
    assert detector.watches[2].dead_since is None and detector.watches[2].fed_tick == 298


def test_a_voter_that_stops_answering_is_dead_after_dead_ticks():
    detector = FailureDetector(heartbeat_ticks=2, tick_ms=1.0, phi_threshold=8.0)
    verdicts = run(detector, {2: range(0, 100, 2), 3: range(0, 300, 2)}, 300)
    assert verdicts[99] == [] and verdicts[-1] == [2]
    watch = detector.watches[2]
    first_dead = next(i for i, v in enumerate(verdicts, start=1) if v)
    assert watch.dead_since is not None and first_dead - watch.dead_since == 10
    assert watch.dead_for(300) == 300 - watch.dead_since


def test_an_answer_brings_a_voter_back():
    detector = FailureDetector(heartbeat_ticks=2, tick_ms=1.0, phi_threshold=8.0)
    answers = {2: range(0, 300, 2)}
    verdicts = run(detector, {2: [t for t in answers[2] if not 100 < t < 200]}, 300)
    assert [2] in verdicts[150:200] and verdicts[-1] == []
    assert detector.watches[2].dead_for(300) == 0


@pytest.mark.parametrize("tick_ms", [10.0, 0.5, 50.0])
def test_verdicts_do_not_depend_on_the_length_of_a_tick(tick_ms):
    """Phi is a function of ratios of durations: milliseconds change no verdict."""
    answers = {2: range(0, 120, 2), 3: range(0, 300, 3), 4: [0, 5, 9, 50, 51, 200]}
    in_ticks = run(FailureDetector(2, 1.0, 8.0), answers, 300)
    in_ms = run(FailureDetector(2, tick_ms, 8.0), answers, 300)
    assert in_ticks == in_ms and any(in_ticks)


def test_watches_follow_the_voters():
    detector = FailureDetector(2, 1.0, 8.0)
    detector.observe(frozenset({1, 2, 3}), {2: 1, 3: 1}, 1)
    assert sorted(detector.watches) == [2, 3]
    detector.observe(frozenset({1, 2}), {2: 1, 3: 1}, 2)  # 3 removed from the voters
    assert sorted(detector.watches) == [2]
    detector.observe(frozenset({1, 2, 4}), {2: 1}, 3)  # 4 not tracked by the leader yet
    assert sorted(detector.watches) == [2] and detector.unheard == {}
    detector.observe(frozenset({1, 2, 4}), {2: 1, 4: 0}, 4)  # tracked, never heard from
    assert sorted(detector.watches) == [2] and detector.unheard == {4: 4}
    detector.observe(frozenset({1, 2}), {2: 1, 4: 0}, 5)  # 4 removed: not waited for
    assert detector.unheard == {}
    detector.observe(frozenset({1, 2, 4}), {2: 1, 4: 0}, 6)
    detector.reset()
    assert detector.watches == {} and detector.unheard == {}


def test_a_watch_starts_at_the_voters_first_answer():
    """Not at the leader's election: phi judges the silence after an answer, never the time
    before the first one."""
    detector = FailureDetector(heartbeat_ticks=3, tick_ms=10.0, phi_threshold=8.0)
    detector.observe(frozenset({1, 2}), {2: 0}, 50)
    assert detector.watches == {} and detector.unheard == {2: 50}
    detector.observe(frozenset({1, 2}), {2: 400}, 401)
    watch = detector.watches[2]
    assert detector.unheard == {} and watch.fed_tick == 400 and watch.dead_for(401) == 0
    watch.observe(heard_tick=10, tick=402, phi_threshold=8.0)  # an older answer is not fed
    assert watch.fed_tick == 400 and watch.dead_for(402) == 0


def test_a_voter_never_heard_from_is_judged_on_the_longer_clock():
    """A member slow to start is not removed at the dead window; one that never answers at
    all is, once the leader has waited ``unheard_ticks`` for it."""
    detector = FailureDetector(heartbeat_ticks=2, tick_ms=1.0, phi_threshold=8.0)
    late = range(150, 1000, 2)  # starts 150 ticks after the election, then answers steadily
    verdicts = run(detector, {2: range(0, 1000, 2), 3: late, 4: []}, 400, unheard_ticks=300)
    assert all(3 not in v for v in verdicts)
    # waited for from tick 1 (the first observation): judged at tick 301
    assert all(4 not in v for v in verdicts[:300]) and all(v == [4] for v in verdicts[300:])
    assert sorted(detector.watches) == [2, 3] and detector.unheard == {4: 1}


def test_a_late_voter_that_stops_answering_is_dead_after_dead_ticks():
    """Once heard from, a voter is judged by phi like any other."""
    detector = FailureDetector(heartbeat_ticks=2, tick_ms=1.0, phi_threshold=8.0)
    verdicts = run(detector, {2: range(0, 400, 2), 3: range(200, 260, 2)}, 400,
                   unheard_ticks=1000)
    assert all(v == [] for v in verdicts[:260])
    first_dead = next(i for i, v in enumerate(verdicts, start=1) if v)
    assert verdicts[-1] == [3] and first_dead < 320


def test_raft_options_refuse_a_tick_that_is_not_positive():
    with pytest.raises(ConfigError, match="tick_ms"):
        RaftOptions(id=1, tick_ms=0).validate()
    assert RaftOptions(id=1).tick_ms == 1.0


def test_the_runtime_configuration_passes_its_tick_length():
    """ClusterConfig speaks milliseconds; the core's detector gets them, not bare ticks."""
    from pyraft.config import RaftConfig

    assert RaftConfig(member_id=1, tick_ms=5.0).core_options().tick_ms == 5.0
