"""The deterministic simulator over many faulty seeds, and proof that its checkers can fail.

Default run: 300 seeds of 3 members and 200 of 5, every fault on, two Readys in flight per
member (the first 200 and 100 in ``test_differential.py``, which also compares their traces
between the two builds); each also commits exactly what it committed when the digests were
recorded (its digest is in ``testdata/commit_digests.json``, see ``test_commit_digests.py``).
``pytest --soak`` runs thousands more (``SIM_SOAK_SEEDS`` sets how many).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pyraft.core import RaftNode, Role
from pyraft.core.log import RaftLog
from pyraft.testing import sim
from pyraft.testing.sim import FAULTS, SimConfig, Simulation, Trace, digest_of, run_seed

#: what each seed of 0..999 (3 members) and 0..499 (5 members) committed when recorded
RECORDED = json.loads((Path(__file__).parent / "testdata" / "commit_digests.json").read_text())


def _run(seeds, nodes, recorded=None):
    """Run ``seeds`` with every fault on; each must pass every check, commit something and,
    when ``recorded`` has its digest, commit exactly what it did before."""
    config = SimConfig(nodes=nodes)
    failures = []
    changed = []
    for seed in seeds:
        simulation = Simulation(seed, config)
        simulation.applied_log = []
        result = simulation.run()
        if not result.ok:
            failures.append(
                f"{result.line()}: {result.detail}\n  " + "\n  ".join(result.trace[-30:])
            )
        assert result.commits > 0, f"seed {seed} committed nothing"
        expected = (recorded or {}).get(str(seed))
        if expected is not None and digest_of(result, simulation.applied_log) != expected:
            changed.append(seed)
    assert not failures, "\n".join(failures[:3])
    assert not changed, f"seeds {changed[:10]} ({nodes} members) commit other entries than " \
                        "recorded in testdata/commit_digests.json"


# seeds 0..199 of 3 members and 0..99 of 5 run in test_differential.py, with the same checks
# (and traced there in both builds): the blocks here start after them
@pytest.mark.parametrize("block", range(4, 6))
def test_three_members_all_faults(block):
    _run(range(block * 50, block * 50 + 50), nodes=3, recorded=RECORDED["3"])


@pytest.mark.parametrize("block", range(2, 4))
def test_five_members_all_faults(block):
    _run(range(block * 50, block * 50 + 50), nodes=5, recorded=RECORDED["5"])


def test_five_members_with_automatic_failure_detection():
    """Every fault on, and the leader removes members its phi-accrual detector judges dead
    (crashed members then come back outside the configuration): safety and liveness hold."""
    config = SimConfig(nodes=5, failure_dead_ticks=40)
    removals = 0
    for seed in range(20_000, 20_100):
        simulation = Simulation(seed, config)
        simulation.trace = Trace(maxlen=100_000)
        result = simulation.run()
        assert result.ok, f"{result.line()}: {result.detail}"
        removals += sum("removed-dead" in line for line in simulation.trace)
    assert removals > 0  # the detector did act


@pytest.mark.soak
@pytest.mark.parametrize("nodes", [3, 5, 7])
def test_soak(nodes):
    count = int(os.environ.get("SIM_SOAK_SEEDS", "3000"))
    _run(range(100_000, 100_000 + count), nodes=nodes)


def test_a_seed_replays_exactly():
    a = Simulation(1234, SimConfig(nodes=5)).run()
    b = Simulation(1234, SimConfig(nodes=5)).run()
    assert (a.ok, a.ticks, a.commits, a.operations, a.elections) == (
        b.ok,
        b.ticks,
        b.commits,
        b.operations,
        b.elections,
    )
    first, second = Simulation(77, SimConfig()), Simulation(77, SimConfig())
    first.run()
    second.run()
    assert first.ops == second.ops
    assert list(first.trace) == list(second.trace)


def test_the_harness_draws_delays_as_randint_does():
    """The harness's own draw of a delay (``_below``, typed in the compiled build) takes the
    same numbers from a generator's state as ``Random.randint(0, n - 1)``: the seeds replay
    the runs they replayed before."""
    import random

    for n in (1, 2, 3, 4, 5, 7, 8, 61, 2**40 + 3):
        ours, theirs = random.Random(n), random.Random(n)
        assert [sim._below(ours, n) for _ in range(200)] == \
            [theirs.randint(0, n - 1) for _ in range(200)]
        assert ours.getstate() == theirs.getstate()


def test_faults_actually_happen():
    """The fault injector is not idle: crashes, partitions and drops occur in a run."""
    s = Simulation(5, SimConfig(nodes=5))
    s.run()
    events = " ".join(s.trace) + " ".join(str(x) for x in s.leaders.items())
    crashes = partitions = 0
    for seed in range(20):
        t = Simulation(seed, SimConfig())
        t.run()
        crashes += sum("crash" in line for line in t.trace)
        partitions += sum("partition" in line for line in t.trace)
    assert events
    assert crashes > 0 and partitions > 0


def _failures_with(monkeypatch, target, name, replacement, seeds=range(80)):
    monkeypatch.setattr(target, name, replacement)
    return [r for r in (run_seed(s, SimConfig()) for s in seeds) if not r.ok]


@pytest.mark.pure_core
def test_checkers_catch_a_broken_vote_rule(monkeypatch):
    """Granting votes to candidates with stale logs (Raft 5.4.1 removed) must be caught."""
    failures = _failures_with(monkeypatch, RaftLog, "is_up_to_date", lambda self, i, t: True)
    assert failures, "the simulator did not notice votes for out-of-date candidates"
    assert {f.prop for f in failures} <= {
        "leader completeness",
        "state-machine safety",
        "linearizability",
        "log matching",
        "core invariant",
    }


@pytest.mark.pure_core  # patches sim.py's classes (extension classes when compiled)
def test_checkers_catch_messages_sent_before_persistence(monkeypatch):
    """Sending votes and acknowledgements before the Ready is durable must be caught."""

    def send_everything_at_once(self):
        if not self.core.has_ready():
            return
        rd = self.core.ready()
        rd.messages += rd.persisted_messages
        rd.persisted_messages = []
        for m in rd.messages:
            self.sim.send(m)
        self.pending.append((self.sim.now, rd))
        self.finish_due()

    failures = _failures_with(monkeypatch, sim.SimNode, "handle_ready", send_everything_at_once,
                              seeds=range(10))
    assert failures and {f.prop for f in failures} == {"persistence contract"}


@pytest.mark.pure_core  # patches sim.py's classes (extension classes when compiled)
def test_deep_pipelines_on_slow_disks_are_safe(monkeypatch):
    """Four Readys in flight per member, each write taking up to six ticks: every seed
    passes every check, and the pipelines do fill up (several Readys become durable
    together, reported with one ``on_persist_ready``)."""
    deepest = together = 0
    handle, finish = sim.SimNode.handle_ready, sim.SimNode.finish_due

    def measured_handle(self):
        nonlocal deepest
        handle(self)
        deepest = max(deepest, len(self.pending))

    def measured_finish(self):
        nonlocal together
        before = len(self.pending)
        finish(self)
        together = max(together, before - len(self.pending))

    monkeypatch.setattr(sim.SimNode, "handle_ready", measured_handle)
    monkeypatch.setattr(sim.SimNode, "finish_due", measured_finish)
    config = SimConfig(nodes=3, ready_pipeline_max=4, disk_ticks_max=6)
    failures = _failing(config, range(300, 360))
    assert not failures, [(f.seed, f.prop, f.detail) for f in failures[:3]]
    assert deepest == 4 and together >= 2


def test_a_pipeline_of_one_keeps_the_recorded_digests():
    """With one Ready in flight the pipelined simulator makes the draws and sends the
    messages it made before pipelining: the digests recorded then (commit 47f77d1,
    ``commit_digests.json`` of that commit) still match. All 1,500 were compared when the
    pipeline came (``--pipeline 1``); these are a few of them."""
    before = {"3": {"0": "ea98fe8064c53bf3", "7": "39db290bda3fd30f"},
              "5": {"1": "4453b87bada48acb"}}
    for nodes, seeds in before.items():
        for seed, digest in seeds.items():
            config = SimConfig(nodes=int(nodes), ready_pipeline_max=1)
            assert sim.commit_digest(int(seed), config=config) == digest


@pytest.mark.pure_core
def test_checkers_catch_a_leader_counting_entries_not_yet_durable(monkeypatch):
    """A leader that counts itself in the quorum for entries as soon as they are handed out
    (thesis 10.2.1 broken) must be caught."""
    ready = RaftNode.ready

    def count_at_once(self):
        rd = ready(self)
        if self.role is Role.LEADER and rd.entries:
            self.progress[self.id].maybe_update(rd.entries[-1].last_index)
        return rd

    failures = _failures_with(monkeypatch, RaftNode, "ready", count_at_once, seeds=range(10))
    assert failures and {f.prop for f in failures} == {"persistence contract"}


@pytest.mark.pure_core  # patches sim.py's classes (extension classes when compiled)
def test_checkers_catch_answers_sent_before_an_earlier_ready_is_durable(monkeypatch):
    """A runtime that lets the next Ready's answers leave with this one's (before the next
    one is durable) must be caught."""
    finish = sim.SimNode.finish_persist

    def answer_early(self, rd):
        finish(self, rd)
        if self.pending:
            following = self.pending[0][1]
            for m in following.persisted_messages:
                self.sim.check_ready_durable(m, self, following.number)
                self.sim.send(m)
            following.persisted_messages = []

    monkeypatch.setattr(sim.SimNode, "finish_persist", answer_early)
    failures = _failing(SimConfig(ready_pipeline_max=4, disk_ticks_max=6), range(10))
    assert failures and {f.prop for f in failures} == {"persistence contract"}


def test_cli_summary_and_exit_status(capsys):
    assert sim.main(["--seeds", "0:3", "--nodes", "3", "--faults", "all"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("3 seeds, 3 passed, 0 failed")
    assert sim.main(["--seeds", "4", "--faults", "drop,partition", "--verbose"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("seed 4: ok") and out[-1].startswith("1 seeds, 1 passed")
    with pytest.raises(SystemExit):
        sim.main(["--faults", "meteor"])
    assert set(FAULTS) >= {"drop", "duplicate", "delay", "partition", "crash", "slow-disk"}


@pytest.mark.pure_core
def test_cli_reports_a_failing_seed(monkeypatch, capsys):
    monkeypatch.setattr(RaftLog, "is_up_to_date", lambda self, i, t: True)
    failing = next(s for s in range(200) if not run_seed(s, SimConfig()).ok)
    assert sim.main(["--seeds", f"{failing}:{failing + 1}"]) == 1
    out = capsys.readouterr().out
    assert f"seed {failing}: FAILED" in out and "replay:" in out and "last events:" in out
    assert out.strip().splitlines()[-1].startswith("1 seeds, 0 passed, 1 failed")


def _failing(config, seeds):
    return [r for r in (run_seed(s, config) for s in seeds) if not r.ok]


def test_operator_restarts_with_wrong_peers_are_safe():
    """Restarts with peers that contradict the stored membership (only itself, a subset)
    on every restart: the stored membership wins, and every seed passes."""
    config = SimConfig(wrong_peers_rate=1.0, snapshot_entries=10**6,
                       faults=frozenset(FAULTS) - {"amnesia"})
    failures = _failing(config, range(60))
    assert not failures, [(f.seed, f.prop, f.detail) for f in failures[:3]]


@pytest.mark.pure_core  # patches sim.py's classes (extension classes when compiled)
def test_checkers_catch_a_restart_that_trusts_the_command_line(monkeypatch):
    """The old wiring (the command line's peers are the membership until the first
    snapshot) must be caught: a member restarted with only itself elects itself."""
    from pyraft.core.messages import Snapshot, SnapshotMeta

    def command_line_wins(storage, peers):
        if storage.snapshot().meta.index == 0:
            storage._snapshot = Snapshot(SnapshotMeta(0, 0, **peers.snapshot_fields()), b"")

    monkeypatch.setattr(Simulation, "bootstrap", staticmethod(command_line_wins))
    config = SimConfig(wrong_peers_rate=1.0, snapshot_entries=10**6,
                       faults=frozenset(FAULTS) - {"amnesia"})
    failures = _failing(config, range(30))
    assert failures, "the simulator did not notice a member leading a cluster of its own"
    assert {f.prop for f in failures} <= {"election safety", "leader completeness",
                                          "state-machine safety", "linearizability",
                                          "log matching", "core invariant"}


def test_members_that_forget_are_safe():
    """Every crash forgets (memory-only members), one member at a time: every seed passes."""
    for nodes, seeds in ((3, range(60)), (5, range(20_000, 20_030))):
        failures = _failing(SimConfig(nodes=nodes, amnesia_rate=1.0), seeds)
        assert not failures, [(f.seed, f.prop, f.detail) for f in failures[:3]]


def test_checkers_catch_votes_of_members_that_forgot():
    """Without the fresh-start guard, a member that forgot what it acknowledged elects a
    stale member: the checkers must say so."""
    failures = _failing(SimConfig(amnesia_rate=1.0, fresh_start_guard=False), range(40))
    assert failures, "the simulator did not notice a forgotten acknowledgement"
    assert {f.prop for f in failures} <= {"leader completeness", "state-machine safety",
                                          "linearizability", "log matching", "core invariant"}
