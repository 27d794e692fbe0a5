"""The differential proof: one source, two builds, the same trace.

The core is compiled from the same ``.py`` files the simulator drives (``pyraft._compiled``);
the compiled build must make exactly the decisions of its source. The simulator is
deterministic, so every seed must send the same messages (every field, at the same tick),
deliver them alike and apply the same entries in both builds: ``trace_digest`` fingerprints
all of that, and these tests compare the digests seed by seed between this process's build
(compiled by default) and the other one (``PYRAFT_PURE_CORE=1``; or the compiled build when
this process runs pure) computed at the same time in a subprocess.

Default run: seeds 0..199 of 3 members and 0..99 of 5, every fault on (``SEEDS_DEFAULT``;
the ones ``test_sim.py`` would run anyway: this file runs them with its checks instead, so
the proof costs the suite little more than the other build's subprocess, on the second
core). ``pytest --soak``: 5,000 seeds of each member count each way. By hand::

    python -m pyraft.testing.sim --seeds 0:5000 --trace-digests > compiled.json
    PYRAFT_PURE_CORE=1 python -m pyraft.testing.sim --seeds 0:5000 --trace-digests > pure.json
    diff compiled.json pure.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyraft.core import Message, Snapshot, SnapshotMeta
from pyraft.testing import sim
from pyraft.testing.sim import (
    SimConfig,
    TraceRecorder,
    compare_builds,
    digest_of,
    first_difference,
    message_record,
    trace_digest,
    trace_run,
)

#: the default run's seeds: ``test_sim.py`` leaves these to this file, which runs them with
#: the same checks (every checker, something committed, the recorded commit digest) and
#: traces them on the way; the other build runs them at the same time on the other core
SEEDS_DEFAULT = {3: range(0, 200), 5: range(0, 100)}
SEEDS_SOAK = {3: range(0, 5000), 5: range(0, 5000)}
RECORDED = json.loads((Path(__file__).parent / "testdata" / "commit_digests.json").read_text())

#: a safe but different core: a follower's rejection hints back all the way to the start
#: of its log instead of to the last entry of a term not after the leader's (slower
#: backtracking, the same safety); applied in the pure build's subprocess
PERTURBED_CORE = """
from pyraft.core import log
log.RaftLog.find_conflict_by_term = lambda self, index, term: self.first_index() - 1
"""


def _other_build() -> tuple[dict[str, str], str]:
    """The environment of the other build and the name it reports."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYRAFT_PURE_CORE", "PYRAFT_NO_EXTENSIONS")}
    if sim.build_name() == "compiled":
        env["PYRAFT_PURE_CORE"] = "1"
        return env, "pure-core"
    return env, "compiled"


def _start(nodes: int, seeds: range, env: dict[str, str],
           prelude: str | None = None) -> subprocess.Popen:
    argv = ["--seeds", f"{seeds.start}:{seeds.stop}", "--nodes", str(nodes), "--trace-digests"]
    if prelude is None:
        command = [sys.executable, "-m", "pyraft.testing.sim", *argv]
    else:
        command = [sys.executable, "-c", prelude + "\nimport sys\nfrom pyraft.testing.sim "
                   f"import main\nsys.exit(main({argv!r}))"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _stop(process: subprocess.Popen) -> None:
    """End the subprocess this test started (by its handle) if it still runs."""
    if process.poll() is None:
        process.kill()
        process.communicate()


def _finish(process: subprocess.Popen, build: str, timeout_s: float) -> dict[int, str]:
    """The digests the subprocess printed, once it ran ``build`` and ended well."""
    try:
        out, err = process.communicate(timeout=timeout_s)
    finally:
        _stop(process)
    assert process.returncode == 0, err[-4000:]
    assert f"build: {build} " in err, f"the subprocess ran another build: {err[-2000:]}"
    return {int(seed): digest for seed, digest in json.loads(out).items()}


def _traced_here(nodes: int, seeds: range, recorded: dict[str, str] | None) -> dict[int, str]:
    """Trace ``seeds`` in this process; each must also pass every check, commit something
    and commit what ``recorded`` holds for it (as ``test_sim._run`` requires)."""
    config = SimConfig(nodes=nodes)
    digests, failures, changed = {}, [], []
    for seed in seeds:
        run = trace_run(seed, config)
        result = run.result
        if not result.ok:
            failures.append(
                f"{result.line()}: {result.detail}\n  " + "\n  ".join(result.trace[-30:]))
        assert result.commits > 0, f"seed {seed} committed nothing"
        expected = (recorded or {}).get(str(seed))
        if expected is not None and digest_of(result, run.applied) != expected:
            changed.append(seed)
        digests[seed] = run.digest
    assert not failures, "\n".join(failures[:3])
    assert not changed, f"seeds {changed[:10]} ({nodes} members) commit other entries than " \
                        "recorded in testdata/commit_digests.json"
    return digests


def _differential(nodes: int, seeds: range, timeout_s: float) -> None:
    """Trace ``seeds`` here and in the other build at once; fail naming the first seed that
    differs and the command that shows the first message where the builds part."""
    env, other = _other_build()
    here = sim.build_name()
    process = _start(nodes, seeds, env)
    try:
        ours = _traced_here(nodes, seeds, RECORDED.get(str(nodes)))
    except BaseException:
        _stop(process)
        raise
    theirs = _finish(process, other, timeout_s)
    assert len(ours) == len(theirs) == len(seeds)
    mismatch = compare_builds(ours, theirs, nodes, (here, other))
    assert mismatch is None, mismatch


@pytest.mark.parametrize("nodes", sorted(SEEDS_DEFAULT))
def test_both_builds_trace_every_seed_alike(nodes):
    _differential(nodes, SEEDS_DEFAULT[nodes], timeout_s=600)


@pytest.mark.soak
@pytest.mark.parametrize("nodes", sorted(SEEDS_SOAK))
def test_soak_both_builds_trace_every_seed_alike(nodes):
    _differential(nodes, SEEDS_SOAK[nodes], timeout_s=4 * 3600)


def test_a_perturbed_core_is_caught():
    """The whole proof can fail: the pure core with one safe change of behaviour (see
    ``PERTURBED_CORE``) traces every one of these seeds differently, and the comparison
    names the first one."""
    seeds = range(0, 6)
    env = {**os.environ, "PYRAFT_PURE_CORE": "1"}
    env.pop("PYRAFT_NO_EXTENSIONS", None)
    process = _start(3, seeds, env, prelude=PERTURBED_CORE)
    try:
        ours = _traced_here(3, seeds, RECORDED["3"])
    except BaseException:
        _stop(process)
        raise
    theirs = _finish(process, "pure-core", 300)
    report = compare_builds(ours, theirs, 3, (sim.build_name(), "perturbed"))
    assert report is not None and "first is seed 0" in report, report
    assert "6 of 6 seeds" in report and "replay: diff <(" in report


# ---- the proof can fail ----------------------------------------------------------------------


def test_the_comparison_names_the_first_differing_seed_and_the_replay():
    ours = {0: "a", 1: "b", 2: "c", 3: "d"}
    assert first_difference(ours, dict(ours)) is None
    assert compare_builds(ours, dict(ours), 3) is None
    theirs = {**ours, 2: "x", 3: "y"}
    assert first_difference(ours, theirs) == 2
    report = compare_builds(ours, theirs, 5, ("compiled", "pure-core"))
    assert report is not None
    assert "2 of 4 seeds (5 members)" in report and "first is seed 2" in report
    assert "compiled c, pure-core x" in report
    assert "--seeds 2 --nodes 5" in report and "PYRAFT_PURE_CORE=1" in report
    # a seed only one side ran is a difference too
    assert first_difference(ours, {k: v for k, v in ours.items() if k != 1}) == 1


def test_the_digest_is_replayable_and_sees_another_run():
    assert trace_digest(5, 3) == trace_digest(5, 3)
    assert trace_digest(5, 3) != trace_digest(6, 3)
    assert trace_digest(5, 3) != trace_digest(5, 5)


def test_the_trace_holds_every_message_and_apply():
    lines: list[str] = []
    digest = trace_digest(8, 3, lines=lines)
    assert digest == trace_digest(8, 3)
    sends = [line for line in lines if " send " in line]
    delivers = [line for line in lines if " deliver " in line]
    applies = [line for line in lines if " apply " in line]
    assert sends and delivers and applies
    assert any(" entries=" in line and " crc=" in line for line in sends)
    assert lines[-1].startswith("True ") and f"messages={len(sends) + len(delivers)}" \
        in lines[-1] and f"applied={len(applies)}" in lines[-1]


def _message(**fields):
    from raftcore.framing import encode_entries

    base = dict(type=sim.MessageType.APPEND, src=1, dst=2, term=3, log_term=2, index=4,
                commit=4, entries=encode_entries(5, 3, [b"put", b"x"]), context=b"r1")
    return Message(**{**base, **fields})


@pytest.mark.parametrize("field, value", [
    ("type", sim.MessageType.HEARTBEAT), ("src", 3), ("dst", 3), ("term", 4),
    ("log_term", 3), ("index", 5), ("commit", 3), ("reject", True), ("reject_hint", 1),
    ("hint_term", 1), ("context", b"r2"), ("transfer", True), ("snapshot_offset", 8),
    ("snapshot_done", False), ("fresh", True), ("entries", None),
])
def test_the_record_sees_every_field(field, value):
    assert message_record(_message(**{field: value})) != message_record(_message())


def test_the_record_sees_entries_and_snapshots():
    from raftcore.framing import empty_batch, encode_entries

    record = message_record(_message())
    for entries in (encode_entries(5, 3, [b"put", b"y"]), encode_entries(5, 2, [b"put", b"x"]),
                    encode_entries(6, 3, [b"put", b"x"]), encode_entries(5, 3, [b"put"])):
        assert message_record(_message(entries=entries)) != record
    # no entries and an empty batch are the same on the wire
    assert message_record(_message(entries=None)) == message_record(
        _message(entries=empty_batch(5)))
    meta = SnapshotMeta(7, 2, (1, 2, 3))
    snapshot = message_record(_message(type=sim.MessageType.SNAPSHOT, entries=None,
                                       snapshot=Snapshot(meta, b"abc")))
    for other in (Snapshot(meta, b"abd"), Snapshot(SnapshotMeta(7, 2, (1, 2)), b"abc"),
                  Snapshot(SnapshotMeta(8, 2, (1, 2, 3)), b"abc")):
        assert message_record(_message(type=sim.MessageType.SNAPSHOT, entries=None,
                                       snapshot=other)) != snapshot


def test_a_core_that_sends_one_field_differently_changes_the_digest(monkeypatch):
    """One field of one message sent otherwise (a compiled core that miscomputed the commit
    of one heartbeat) gives another digest."""
    before = trace_digest(8, 3)
    real = TraceRecorder.message

    def skewed(self, event, now, m):  # the leader's commit of one heartbeat is off by one
        if m.type == sim.MessageType.HEARTBEAT and self.messages == 40:
            m = Message(**{**{f: getattr(m, f) for f in _FIELDS}, "commit": m.commit + 1})
        real(self, event, now, m)

    monkeypatch.setattr(TraceRecorder, "message", skewed)
    assert trace_digest(8, 3) != before


_FIELDS = ("type", "src", "dst", "term", "log_term", "index", "commit", "entries", "reject",
           "reject_hint", "hint_term", "context", "snapshot", "transfer", "snapshot_offset",
           "snapshot_done", "fresh")


def test_cli_prints_trace_digests_and_traces(capsys):
    assert sim.main(["--seeds", "3:5", "--nodes", "3", "--trace-digests"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"3": trace_digest(3, 3), "4": trace_digest(4, 3)}
    assert captured.err.startswith(f"build: {sim.build_name()} nodes=3 faults=all seeds=3:5")
    assert sim.main(["--seeds", "3", "--trace-messages"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"seed 3 digest {trace_digest(3, 3)}"
    assert any(" send APPEND " in line for line in out)
