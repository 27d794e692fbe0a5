"""A leader that steps down says why: each reason produced in the simulator, without random
faults, and checked on the Ready that reports it (``Ready.leadership_lost``) and on the
core's ``leadership_lost``.

Reasons: a higher term seen (from which member, which term), check-quorum (Raft thesis 6.2:
"a leader steps down if an election timeout elapses without a successful round of
heartbeats to a majority of its cluster"), leadership transfer (thesis 3.10) and resign,
removal from the configuration (thesis 4.2.2: the leader "steps down once the Cnew entry
is committed").
"""

from __future__ import annotations

from dataclasses import replace

from pyraft.core import Configuration, LeadershipLossReason, LeadershipLost, Ready, Role
from pyraft.testing.sim import SimConfig, Simulation

QUIET = SimConfig(faults=frozenset(), op_rate=0.0)
R = LeadershipLossReason


def sim(nodes=3, seed=1):
    return Simulation(seed, replace(QUIET, nodes=nodes))


def run(s, ticks, until):
    for _ in range(ticks):
        s.step_once()
        if until():
            return True
    return False


def leaders(s):
    return [m for m, n in s.nodes.items() if n is not None and n.core.role is Role.LEADER]


def elect(s):
    """Run until a leader has committed its no-op; returns (leader id, its term)."""
    assert run(s, 300, lambda: any(s.nodes[m].core.committed_in_current_term()
                                   for m in leaders(s)))
    leader = leaders(s)[0]
    return leader, s.nodes[leader].core.term


def losses(s, member):
    return [lost for who, lost in s.leadership_lost if who == member]


def isolate(s, member):
    others = [m for m in s.members if m != member]
    s.blocked = {(member, o) for o in others} | {(o, member) for o in others}


def test_check_quorum_when_the_leader_hears_from_no_quorum():
    s = sim()
    leader, term = elect(s)
    isolate(s, leader)
    assert run(s, 60, lambda: losses(s, leader))
    assert losses(s, leader) == [LeadershipLost(R.CHECK_QUORUM, term)]
    assert s.nodes[leader].core.leadership_lost == LeadershipLost(R.CHECK_QUORUM, term)
    assert s.nodes[leader].core.role is Role.FOLLOWER
    assert any(f"{leader} lost leadership of term {term}: no quorum heard" in line
               for line in s.trace)


def test_higher_term_names_the_member_and_its_term():
    """A follower without pre-vote campaigns alone while cut off, raising its term; back, it
    answers the leader's appends with that term, and the leader steps down for it."""
    s = sim()
    leader, term = elect(s)
    disruptor = next(m for m in s.members if m != leader)
    core = s.nodes[disruptor].core
    core.options = replace(core.options, pre_vote=False)
    isolate(s, disruptor)
    assert run(s, 200, lambda: core.term >= term + 2)
    assert leaders(s) == [leader]
    assert losses(s, leader) == []
    disrupting_term = core.term
    s.blocked = set()
    assert run(s, 60, lambda: losses(s, leader))
    lost = losses(s, leader)[0]
    assert lost == LeadershipLost(R.HIGHER_TERM, term, disruptor, lost.member_term)
    assert lost.member_term >= disrupting_term
    assert lost.describe() == f"member {disruptor} has term {lost.member_term}"


def test_transfer_names_the_new_leader():
    s = sim()
    leader, term = elect(s)
    target = next(m for m in s.members if m != leader)
    s.nodes[leader].core.transfer_leadership(target)
    assert run(s, 100, lambda: leaders(s) == [target])
    assert losses(s, leader) == [LeadershipLost(R.TRANSFER, term, target, term + 1)]
    assert losses(s, leader)[0].describe() == f"leadership transferred to member {target}"


def test_resign_names_the_member_leadership_went_to():
    s = sim()
    leader, term = elect(s)
    target = s.nodes[leader].core.resign()
    assert run(s, 100, lambda: leaders(s) == [target])
    assert losses(s, leader) == [LeadershipLost(R.RESIGN, term, target, term + 1)]


def test_a_transfer_after_a_resign_is_a_transfer():
    """The resign flag belongs to the transfer it started, not to the next one."""
    s = sim()
    leader, term = elect(s)
    core = s.nodes[leader].core
    first = min(m for m in s.members if m != leader)
    s.blocked = {(leader, first)}  # its TimeoutNow is lost: the resign does not complete
    assert core.resign() == first
    second = next(m for m in s.members if m not in (leader, first))
    core.transfer_leadership(second)
    assert run(s, 100, lambda: leaders(s) == [second])
    assert losses(s, leader) == [LeadershipLost(R.TRANSFER, term, second, term + 1)]


def test_removed_from_the_configuration():
    s = sim()
    leader, term = elect(s)
    core = s.nodes[leader].core
    core.propose_configuration(Configuration(frozenset(m for m in s.members if m != leader)))
    assert run(s, 200, lambda: losses(s, leader))
    assert losses(s, leader) == [LeadershipLost(R.REMOVED, term)]
    assert losses(s, leader)[0].describe() == "removed from the configuration"


def test_the_ready_carries_each_loss_once_and_a_follower_reports_none():
    s = sim()
    leader, term = elect(s)
    isolate(s, leader)
    assert run(s, 60, lambda: losses(s, leader))
    assert all(who == leader for who, _ in s.leadership_lost)
    assert len(s.leadership_lost) == 1
    assert Ready(1).leadership_lost == [] and Ready(1).empty()
    rd = Ready(1)
    rd.leadership_lost.append(LeadershipLost(R.STOPPED, term))
    assert not rd.empty()
