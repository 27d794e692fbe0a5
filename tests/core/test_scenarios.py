"""Named scenarios of the Raft paper and dissertation, run in the simulator without random
faults: the faults here are placed by hand (partitions, crashes) so each test checks one rule.
The simulator's checkers (election safety, state-machine safety, log matching, leader
completeness) run after every step of each scenario as well.
"""

from __future__ import annotations

import collections
from dataclasses import replace

import pytest

from pyraft.core import Configuration, Role
from pyraft.errors import NotLeaderError, ProposalDroppedError
from pyraft.testing.sim import FAULTS, SimConfig, Simulation

QUIET = SimConfig(faults=frozenset(), op_rate=0.0)


def sim(nodes=3, seed=1, **changes):
    return Simulation(seed, replace(QUIET, nodes=nodes, **changes))


def run(s, ticks, until=None):
    for _ in range(ticks):
        s.step_once()
        if until is not None and until():
            return True
    return until is None


def leaders(s):
    return [m for m, n in s.nodes.items() if n is not None and n.core.role is Role.LEADER]


def isolate(s, member):
    others = [m for m in s.members if m != member]
    s.blocked = {(member, o) for o in others} | {(o, member) for o in others}


def elect(s, ticks=200):
    """Run until a leader has committed an entry of its term (its no-op): from then on it
    may change the membership."""
    assert run(s, ticks, lambda: any(s.nodes[m].core.committed_in_current_term()
                                     for m in leaders(s)))
    return leaders(s)[0]


def write(s, key, value, ticks=200):
    op_id = s.submit(0, ("put", key, value), force_log=True)
    assert op_id is not None
    assert run(s, ticks, lambda: s.ops[op_id].ret is not None), "write did not commit"
    return op_id


@pytest.mark.parametrize("nodes", [3, 5, 7, 9])
def test_members_starting_together_elect_one_leader_quickly(nodes):
    """Randomized timeouts (Raft 5.2) spread candidates out: one leader, few terms."""
    for seed in range(10):
        s = sim(nodes, seed)
        assert run(s, 200, lambda s=s: len(leaders(s)) == 1)
        assert s.now <= 60, f"seed {seed}: first leader only at tick {s.now}"
        assert max(n.core.term for n in s.nodes.values()) <= 3, "election storm"


def test_pre_vote_keeps_a_rejoining_member_from_raising_terms():
    """Thesis 9.6: 'a server first asks whether its log is up to date enough to get votes'
    - a partitioned member does not increase its term, so it cannot unseat the leader."""
    s = sim(3)
    run(s, 100, lambda: leaders(s))
    leader = leaders(s)[0]
    follower = next(m for m in s.members if m != leader)
    term = s.nodes[leader].core.term
    isolate(s, follower)
    run(s, 300)
    assert s.nodes[follower].core.term == term
    s.blocked = set()
    run(s, 100)
    assert leaders(s) == [leader] and s.nodes[leader].core.term == term


def test_check_quorum_isolated_leader_steps_down_and_majority_elects():
    """Thesis 6.2: a leader that cannot reach a majority within an election timeout steps
    down; the majority side elects a new leader in a higher term."""
    s = sim(5)
    run(s, 100, lambda: leaders(s))
    old = leaders(s)[0]
    isolate(s, old)
    run(s, 2 * 10 + 2)  # two minimum election timeouts
    assert s.nodes[old].core.role is not Role.LEADER
    assert run(s, 200, lambda: any(m != old for m in leaders(s)))
    s.blocked = set()
    assert run(s, 100, lambda: s.nodes[old].core.lead not in (0, old))


def test_leader_lease_expires_before_another_leader_can_exist():
    """Thesis 6.4.1: while a leader's lease is valid no other leader can be elected; so at no
    tick may an isolated leader hold a valid lease while another member leads."""
    overlaps = 0
    for seed in range(40):
        s = sim(5, seed)
        run(s, 100, lambda s=s: leaders(s))
        old = leaders(s)[0]
        run(s, 20)
        assert s.nodes[old].core.lease_valid()
        isolate(s, old)
        for _ in range(200):
            s.step_once()
            others = [m for m in leaders(s) if m != old]
            if others:
                overlaps += s.nodes[old].core.role is Role.LEADER
                assert not s.nodes[old].core.lease_valid(), f"seed {seed}: two leases"
    assert overlaps > 0, "no run had the old leader still leading: the check proved nothing"


def test_no_lease_without_check_quorum():
    """Followers refuse votes while they hear from a leader only under check-quorum; without
    it a lease would promise what nobody keeps, so there is none."""
    s = sim(3)
    run(s, 100, lambda: leaders(s))
    run(s, 20)
    core = s.nodes[leaders(s)[0]].core
    assert core.lease_valid()
    core.options = replace(core.options, check_quorum=False)
    assert not core.lease_valid() and core.lease_remaining_ticks() == 0


def test_read_index_from_a_follower_sees_the_latest_write():
    s = sim(3)
    run(s, 100, lambda: leaders(s))
    write(s, "x", 1)
    leader = leaders(s)[0]
    follower = next(m for m in s.members if m != leader)
    node = s.nodes[follower]
    context = b"read-1"
    s.ops.append(type(s.ops[0])(5, ("get", "x"), s.now, None, None, follower))
    node.reads[context] = len(s.ops) - 1
    node.core.read_index(context)
    assert run(s, 50, lambda: s.ops[-1].ret is not None)
    assert s.ops[-1].result == 1


def test_leadership_transfer_under_load():
    """Thesis 3.10: the leader catches the target up, then sends TimeoutNow."""
    s = sim(3, op_rate=0.8)
    run(s, 100, lambda: leaders(s))
    old = leaders(s)[0]
    target = max(m for m in s.members if m != old)
    term = s.nodes[old].core.term
    s.nodes[old].core.transfer_leadership(target)
    assert run(s, 60, lambda: leaders(s) == [target])
    assert s.nodes[target].core.term == term + 1
    write(s, "after-transfer", 1)


def test_standby_members_never_lead():
    """A standby member replicates and votes but never campaigns, even when it is the only
    one left that could (the simulator fails the run if a standby member leads)."""
    for seed in range(20):  # safety under every fault
        result = Simulation(seed, SimConfig(nodes=3, standby=frozenset({3}))).run()
        # Known limitation, not hidden: with membership changes the voters left may all be
        # behind a standby member's log, and then nobody can ever lead (liveness only).
        assert result.ok or result.prop == "liveness", (seed, result.prop, result.detail)
    s = Simulation(3, SimConfig(nodes=3, standby=frozenset({3}),
                                faults=frozenset(FAULTS) - {"membership"}))
    result = s.run()
    assert result.ok, result.detail
    s = sim(3, standby=frozenset({1, 2}))
    run(s, 200)
    assert leaders(s) == [3]


def test_removing_the_leader():
    """Thesis 4.2.2: the leader replicates the configuration without itself, steps down once
    it is committed, and the remaining members elect a leader among themselves."""
    s = sim(3)
    old = elect(s)
    core = s.nodes[old].core
    core.propose_configuration(Configuration(frozenset(m for m in s.members if m != old)))
    assert run(s, 200, lambda: any(m != old for m in leaders(s)))
    new = next(m for m in leaders(s) if m != old)
    assert s.nodes[new].core.configuration.voters == frozenset(s.members) - {old}
    write(s, "after-removal", 1)


def _events(s):
    return [line for line in s.trace if "promoted" in line or "catch-up-failed" in line]


def test_adding_a_member_warms_it_up_then_promotes_it():
    """Thesis 4.1/4.2.1: a new member joins as a learner (no vote, no quorum weight), is
    caught up in rounds, and is promoted once a round is shorter than an election timeout."""
    s = sim(3, initial_voters=2)
    run(s, 100, lambda: leaders(s))
    leader = s.nodes[leaders(s)[0]].core
    assert leader.configuration.voters == frozenset({1, 2})
    for i in range(20):
        write(s, f"k{i}", i)
    leader.add_member(3)
    assert leader.configuration.learners == frozenset({3})
    with pytest.raises(ProposalDroppedError, match="in progress"):
        leader.remove_member(1)  # one change at a time
    assert run(s, 200, lambda: leader.configuration.voters == frozenset({1, 2, 3}))
    assert any("promoted 3" in line for line in _events(s))
    assert run(s, 50, lambda: s.nodes[3].core.configuration.voters == frozenset({1, 2, 3}))
    write(s, "three-voters", 1)
    assert run(s, 20, lambda: s.nodes[3].sm.data == s.nodes[leader.id].sm.data)


def test_a_learner_with_a_long_first_round_is_promoted_once_it_holds_the_log():
    """A first round longer than an election timeout (a big log to send) followed by no new
    writes: the learner holds the whole log, so it is promoted, although no later round
    (no answer moving its match) will ever come to promote it in."""
    s = sim(3, initial_voters=2)
    run(s, 100, lambda: leaders(s))
    leader = s.nodes[leaders(s)[0]].core
    for i in range(20):
        write(s, f"k{i}", i)
    s.blocked = {(3, m) for m in (1, 2)} | {(m, 3) for m in (1, 2)}
    leader.add_member(3)
    run(s, 3 * 20)  # three election timeouts: the first round cannot end meanwhile
    assert leader.configuration.learners == frozenset({3})
    s.blocked = set()
    assert run(s, 150, lambda: leader.configuration.voters == frozenset({1, 2, 3}))
    assert any("promoted 3" in line for line in _events(s))


def test_a_learner_that_never_catches_up_is_removed():
    """The leader gives up on a new member that makes no progress: it proposes the removal
    and reports it, leaving the cluster as it was."""
    s = sim(3, initial_voters=2)
    leader = s.nodes[elect(s)].core
    s.crash(3)
    s.restart_at[3] = 10**9
    leader.add_member(3)
    limit = leader.options.warmup_rounds * leader.options.election_ticks_upper
    assert run(s, limit + 100, lambda: leader.configuration.members == frozenset({1, 2}))
    assert any("catch-up-failed 3" in line for line in _events(s))
    write(s, "still-works", 1)


def test_a_far_behind_follower_is_sent_a_snapshot():
    s = sim(3, snapshot_entries=30)
    run(s, 100, lambda: leaders(s))
    leader = leaders(s)[0]
    lagging = next(m for m in s.members if m != leader)
    s.crash(lagging)
    s.restart_at[lagging] = 10**9
    for i in range(100):
        s.submit(0, ("put", f"k{i % 5}", i), force_log=True)
        s.client_busy.clear()
        s.step_once()
    run(s, 100)
    assert s.storages[leader].first_index() > s.storages[lagging].last_index() + 1
    s.restart(lagging)
    target = max(s.applied)
    assert run(s, 300, lambda: s.nodes[lagging].sm.applied >= target)
    chunks = [line for line in s.trace if f"deliver SNAPSHOT {leader}->{lagging}" in line]
    assert len(chunks) > 1 and "done" in chunks[-1], "the snapshot was not sent in chunks"
    assert any(f"deliver SNAPSHOT_RESPONSE {lagging}->{leader}" in line for line in s.trace)
    assert s.nodes[lagging].sm.data == s.nodes[leader].sm.data


def test_figure_7_divergent_logs_are_repaired():
    """Raft figure 7: followers with missing and extra uncommitted entries converge to the
    leader's log. Built by cutting the leader off while it appends, several times."""
    s = sim(5, seed=3)
    run(s, 100, lambda: leaders(s))
    for round_ in range(4):
        leader = leaders(s)[0]
        isolate(s, leader)
        for i in range(5):  # appended by the isolated leader, never committed
            try:
                s.nodes[leader].core.propose([f"orphan-{round_}-{i}".encode()])
            except Exception:
                break
        run(s, 200, lambda leader=leader: any(m != leader for m in leaders(s)))
        s.blocked = set()
        write(s, f"round-{round_}", round_)
    run(s, 100)
    s.check_log_matching()
    lasts = {n.core.log.last_index() for n in s.nodes.values()}
    terms = {n.core.log.last_term() for n in s.nodes.values()}
    assert len(lasts) == 1 and len(terms) == 1


def test_membership_change_during_a_partition_is_rolled_back():
    """Thesis 4.1: a configuration takes effect when appended, before it commits; so a
    minority leader's uncommitted change must be undone when a majority leader overwrites
    its log, and every member ends up with the majority's configuration."""
    s = sim(5, seed=2)
    old = elect(s)
    others = [m for m in s.members if m != old]
    minority = {old, others[0]}
    majority = set(others[1:])
    s.blocked = {(a, b) for a in minority for b in majority} | {
        (b, a) for a in minority for b in majority
    }
    removed = others[1]
    s.nodes[old].core.remove_member(removed)
    assert removed not in s.nodes[old].core.configuration.voters  # in force once appended
    assert run(s, 300, lambda: any(m in majority for m in leaders(s)))
    s.blocked = set()
    write(s, "after-heal", 1)
    run(s, 50)
    for node in s.nodes.values():
        assert node.core.configuration.voters == frozenset(s.members), node.id
    new = leaders(s)[0]
    s.nodes[new].core.remove_member(removed)  # the cluster can change again afterwards
    assert run(s, 100, lambda: all(
        n.core.configuration.voters == frozenset(s.members) - {removed}
        for m, n in s.nodes.items() if m != removed))


def test_leader_memory_stays_bounded_while_a_follower_is_down():
    """A follower that is down for long costs the leader a probe state and nothing that
    grows: no queued appends, an empty in-flight window, and the log still compacts."""
    s = sim(3, snapshot_entries=50)
    run(s, 100, lambda: leaders(s))
    leader = leaders(s)[0]
    down = next(m for m in s.members if m != leader)
    s.crash(down)
    s.restart_at[down] = 10**9
    core = s.nodes[leader].core
    sent_to_down = 0

    class CountingRecorder:  # the simulator shows it every message sent (and delivered)
        def message(self, event, now, m):
            nonlocal sent_to_down
            sent_to_down += event == "send" and m.dst == down

    s.recorder = CountingRecorder()
    ticks = 0
    for i in range(2000):
        s.submit(0, ("put", f"k{i % 7}", i), force_log=True)
        s.client_busy.clear()
        s.step_once()
        ticks += 1
    pr = core.progress[down]
    assert len(pr.inflights) <= 1 and pr.inflights.bytes <= core.options.append_bytes_max
    # heartbeats plus at most one probe per heartbeat round reach the dead member
    assert sent_to_down <= 2 * ticks // core.options.heartbeat_ticks + 10
    assert len(core.log.unstable) <= 2
    assert s.storages[leader].first_index() > 1500  # compaction was not held back


def test_proposals_are_refused_past_the_uncommitted_bound():
    """Without a quorum nothing commits; the leader refuses proposals once the uncommitted
    bytes reach their bound (a typed error) instead of growing without limit."""
    s = sim(3, snapshot_entries=10**6)
    run(s, 100, lambda: leaders(s))
    leader = leaders(s)[0]
    core = s.nodes[leader].core
    core.options = replace(core.options, uncommitted_bytes_max=10_000)
    for member in s.members:
        if member != leader:
            s.crash(member)
            s.restart_at[member] = 10**9
    refused = 0
    for _ in range(5):  # within one election timeout (check-quorum would end the term)
        for _ in range(50):
            try:
                core.propose([b"x" * 100])
            except ProposalDroppedError:
                refused += 1
        s.step_once()
    assert core.role is Role.LEADER and refused > 0
    assert core.uncommitted_bytes <= 10_000 + 200


def test_resign_hands_leadership_to_the_most_caught_up_voter():
    s = sim(3, op_rate=0.5)
    run(s, 100, lambda: leaders(s))
    old = leaders(s)[0]
    term = s.nodes[old].core.term
    target = s.nodes[old].core.resign()
    assert target != old
    assert run(s, 60, lambda: leaders(s) == [target])
    assert s.nodes[target].core.term == term + 1
    with pytest.raises(NotLeaderError):
        s.nodes[old].core.resign()
    single = sim(1)
    run(single, 100, lambda: leaders(single))
    with pytest.raises(ProposalDroppedError, match="no other voter"):
        single.nodes[1].core.resign()


@pytest.mark.parametrize("seed", range(5))
def test_failure_detection_shrinks_seven_members_step_by_step(seed):
    """The seed's scenario: members die one after another; the leader's phi-accrual detector
    removes each dead voter through a configuration change, so the cluster keeps a live
    majority of its current configuration and stays available down to the floor of 3."""
    s = sim(7, seed=seed, failure_dead_ticks=30, failure_voters_min=3)
    s.trace = collections.deque(maxlen=100_000)  # keep every event of the run
    run(s, 200, lambda: leaders(s))
    dead: set[int] = set()
    for step in range(4):
        current = leaders(s)[0]
        # kill a follower, and once the leader itself
        victim = current if step == 1 else max(m for m in s.members
                                               if m not in dead and m != current)
        s.crash(victim)
        s.restart_at[victim] = 10**9
        dead.add(victim)
        assert run(s, 600, lambda v=victim: leaders(s) and
                   v not in s.nodes[leaders(s)[0]].core.configuration.voters), f"step {step}"
        write(s, f"after-{step}", step)
    leader = s.nodes[leaders(s)[0]].core
    assert leader.configuration.voters == frozenset(s.members) - dead
    assert len(leader.configuration.voters) == 3
    assert sum("removed-dead" in line for line in s.trace) >= 3  # by the detector


def test_failure_detection_keeps_the_floor():
    s = sim(3, failure_dead_ticks=20, failure_voters_min=3)
    run(s, 100, lambda: leaders(s))
    follower = next(m for m in s.members if m != leaders(s)[0])
    s.crash(follower)
    s.restart_at[follower] = 10**9
    run(s, 300)
    assert len(s.nodes[leaders(s)[0]].core.configuration.voters) == 3  # never below the floor


@pytest.mark.parametrize("seed", range(3))
def test_failure_detection_waits_longer_for_a_member_that_starts_late(seed):
    """An operator starts five members one by one: the first three elect a leader before the
    last two run. Their lateness is not a death: a voter the leader has never heard from is
    judged after ``failure_unheard_ticks``, not after the dead window. One that never starts
    at all is still removed once that longer window has passed."""
    s = sim(5, seed=seed, failure_dead_ticks=30, failure_unheard_ticks=400,
            failure_voters_min=3)
    for late in (4, 5):
        s.crash(late)
    s.restart_at[4] = s.now + 250  # long after the election and the dead window
    s.restart_at[5] = 10**9  # never
    assert run(s, 200, lambda: leaders(s))
    elected_at = s.now  # the leader begins waiting for 4 and 5 at its first tick as leader
    elect(s)
    leader = s.nodes[leaders(s)[0]].core
    assert run(s, 380, lambda: 4 in s.nodes and s.nodes[4] is not None
               and s.nodes[4].core.log.last_index() == leader.log.last_index())
    write(s, "k", "v")
    assert run(s, 600, lambda: leaders(s) and 5 not in
               s.nodes[leaders(s)[0]].core.configuration.voters)
    current = s.nodes[leaders(s)[0]].core
    assert current.configuration.voters == frozenset({1, 2, 3, 4})
    assert s.now - elected_at >= 400  # not before the unheard window


def test_failure_detection_waits_ten_dead_windows_for_a_voter_never_heard_from_by_default():
    s = sim(5, failure_dead_ticks=20, failure_voters_min=3)
    s.crash(5)
    s.restart_at[5] = 10**9
    assert run(s, 200, lambda: leaders(s))
    elected_at = s.now

    def removed():
        return bool(leaders(s)) and 5 not in s.nodes[leaders(s)[0]].core.configuration.voters

    assert run(s, 400, removed)
    assert 200 <= s.now - elected_at <= 220  # 10 x 20 ticks, and the change's commit


def test_a_follower_that_lost_acknowledged_entries_is_sent_them_again():
    """A follower whose log lost entries it had acknowledged (an operator repaired its
    damaged log, or its disk lied) rejects the leader's next append right at its old match:
    the leader takes ``match`` back and resends, without waiting for a leader change."""
    s = sim(3)
    run(s, 100, lambda: leaders(s))
    leader = leaders(s)[0]
    term = s.nodes[leader].core.term
    for i in range(12):
        write(s, "k", f"v{i}")
    follower = next(m for m in s.members if m != leader)
    run(s, 50, lambda: s.nodes[follower].core.log.last_index()
        == s.nodes[leader].core.log.last_index())
    lost_from = s.nodes[follower].core.log.last_index() - 4
    s.crash(follower)
    storage = s.storages[follower]
    storage._truncate_from(lost_from)
    storage.hard_state = replace(storage.hard_state, commit=min(storage.hard_state.commit,
                                                                lost_from - 1))
    s.restart(follower)
    # the other follower is cut off: only the damaged one can make a quorum with the leader
    other = next(m for m in s.members if m not in (leader, follower))
    s.blocked = {(other, leader), (leader, other)}
    write(s, "k", "after", ticks=400)
    assert leaders(s) == [leader] and s.nodes[leader].core.term == term
    assert s.nodes[follower].core.log.last_index() == s.nodes[leader].core.log.last_index()


def test_an_idle_follower_learns_the_commit_index_at_the_next_tick():
    """The commit index rides on the next append; when there is none, the leader sends an
    empty one at its next tick (no message per commit: the interaction scripts show the
    exact messages). A follower's commit index trails the leader's by a tick at most: here,
    the tick plus the step that delivers it."""
    s = sim(3)
    assert run(s, 200, lambda: len(leaders(s)) == 1)
    leader = s.nodes[leaders(s)[0]]
    for i in range(5):
        write(s, "k", f"v{i}")
        committed = leader.core.log.committed
        start = s.now
        assert run(s, 20, lambda: all(n.core.log.committed >= committed  # noqa: B023
                                      for n in s.nodes.values()))
        assert s.now - start <= 2


def test_a_leader_changes_membership_only_after_committing_in_its_term():
    """Single-server changes are safe only if a leader appends a configuration entry after
    it committed an entry of its own term (the 2015 correction to the dissertation's rule)."""
    s = sim(3)
    assert run(s, 200, lambda: bool(leaders(s)))
    core = s.nodes[leaders(s)[0]].core
    assert not core.committed_in_current_term()  # elected this tick: its no-op is in flight
    with pytest.raises(ProposalDroppedError, match="committed an entry of its term"):
        core.remove_member(3)
    run(s, 50, core.committed_in_current_term)
    assert core.remove_member(3) > 0


def test_a_fresh_vote_counts_only_in_a_unanimous_election():
    """A member that started with empty storage may have forgotten what it acknowledged: a
    candidate wins with its vote only when every voter grants, or without it by a majority
    of the others (RaftOptions.fresh_start_guard)."""
    s = sim(3, fresh_start_guard=True)
    assert all(n.core.fresh for n in s.nodes.values())
    isolate(s, 3)  # two of three up, both fresh: no leader, however long
    assert not run(s, 300, lambda: bool(leaders(s)))
    s.blocked = set()  # all three: a unanimous election
    assert run(s, 300, lambda: bool(leaders(s)))
    write(s, "k", 1)
    run(s, 20)
    assert not any(n.core.fresh for n in s.nodes.values())  # caught up: ordinary voters
    leader = leaders(s)[0]
    isolate(s, leader)  # now a majority of the other two elects
    assert run(s, 300, lambda: any(m != leader for m in leaders(s)))


def test_member_info_travels_through_the_log():
    """Each member tells the leader where it is and its metadata; the leader records it
    with an info-only configuration entry, so every member learns every member's info."""
    s = sim(3)
    for member, node in s.nodes.items():
        node.core.set_own_info(f"10.0.0.{member}:7000", {"zone": f"z{member}"})
    assert run(s, 400, lambda: all(
        n.core.configuration.metadata_of(m) == {"zone": f"z{m}"}
        for n in s.nodes.values() for m in s.members))
    for node in s.nodes.values():
        configuration = node.core.configuration
        assert configuration.voters == frozenset(s.members)
        assert [configuration.address_of(m) for m in s.members] == [
            f"10.0.0.{m}:7000" for m in s.members]
    # a member that moves tells the leader again
    s.nodes[2].core.set_own_info("10.0.0.22:7000", {"zone": "z2"})
    assert run(s, 400, lambda: all(n.core.configuration.address_of(2) == "10.0.0.22:7000"
                                   for n in s.nodes.values()))


def test_a_member_without_labels_of_its_own_keeps_the_labels_it_was_given():
    """An operator labels a member (``add_member(..., metadata)``, or a configuration that
    says them); the member starts without labels of its own and states only its address:
    the labels stay. Labels it states go over the recorded ones, key by key; the others
    stay."""
    s = sim(3)
    assert run(s, 200, lambda: bool(leaders(s)))
    leader = s.nodes[leaders(s)[0]].core
    run(s, 50, leader.committed_in_current_term)
    leader.propose_configuration(leader.configuration.with_info(2, "10.0.0.2:7000",
                                                                {"zone": "a"}))
    assert run(s, 200, lambda: all(n.core.configuration.metadata_of(2) == {"zone": "a"}
                                   for n in s.nodes.values()))
    s.nodes[2].core.set_own_info("10.0.0.22:7000")  # moved; no labels of its own
    assert s.nodes[2].core.own_info == ("10.0.0.22:7000", None)
    assert run(s, 400, lambda: all(n.core.configuration.address_of(2) == "10.0.0.22:7000"
                                   for n in s.nodes.values()))
    run(s, 200)  # announced again and again: nothing changes the labels
    assert all(n.core.configuration.metadata_of(2) == {"zone": "a"} for n in s.nodes.values())
    assert s.nodes[2].core.info_recorded(2, s.nodes[2].core.own_info)
    s.nodes[2].core.set_own_info("10.0.0.22:7000", {"zone": "b", "http": "10.0.0.22:8000"})
    merged = {"zone": "b", "http": "10.0.0.22:8000"}
    assert run(s, 400, lambda: all(n.core.configuration.metadata_of(2) == merged
                                   for n in s.nodes.values()))
    leader = s.nodes[leaders(s)[0]].core
    assert run(s, 200, lambda: leader.pending_conf_index <= leader.log.committed)
    leader.propose_configuration(leader.configuration.with_info(
        2, "10.0.0.22:7000", {**merged, "rack": "r1"}))  # the operator adds a label
    run(s, 400)  # the member's own labels are all recorded: it says nothing more
    assert all(n.core.configuration.metadata_of(2) == {**merged, "rack": "r1"}
               for n in s.nodes.values())


def test_a_leader_ignores_malformed_member_info():
    from pyraft.core import Message, MessageType

    s = sim(3)
    assert run(s, 200, lambda: bool(leaders(s)))
    leader = s.nodes[leaders(s)[0]].core
    run(s, 50, leader.committed_in_current_term)
    before = leader.configuration
    follower = next(m for m in s.members if m != leader.id)
    for context in (b"\xc1", b"\x92\x01\x02", b"\x92\xa1x\x81\x01\x02", b"x" * 20_000):
        leader.step(Message(MessageType.MEMBER_INFO, follower, leader.id, term=leader.term,
                            context=context))
    assert leader.configuration is before and leader.pending_conf_index <= leader.log.committed
