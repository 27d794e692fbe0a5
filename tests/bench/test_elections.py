"""``pyraft bench elections``: spurious elections and failover of real ``pyraft node`` members.

Run as a user runs it (a subprocess of the documented command); the counting of elections
and leader changes from polled statuses is checked on scripted statuses as well.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pyraft.bench import elections


def _bench(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyraft", "bench", "elections", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_elections_prints_elections_leader_changes_and_failover(tmp_path):
    settings = tmp_path / "timing.json"
    settings.write_text(json.dumps({"election_timeout_ms_lower": 200.0,
                                    "election_timeout_ms_upper": 400.0}))
    done = _bench("--duration", "3", "--failovers", "2", "--config", str(settings),
                  "--dir", str(tmp_path), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "3 pyraft node members, 3 s idle"
    assert lines[1].startswith("elections (term changes) per member: member 1: ")
    assert lines[2].startswith("leader changes: ")
    assert lines[3].startswith("failover after SIGKILL of the leader (2 kills): median ")
    with open(tmp_path / "out" / "report.json") as f:
        figures = json.load(f)["elections"]
    assert set(figures["elections_per_member"]) == {"1", "2", "3"}
    assert figures["polls"] >= 2 and figures["config"] == str(settings)
    failover = figures["failover"]
    assert failover["kills"] == 2 and failover["seconds"] == sorted(failover["seconds"])
    assert 0 < failover["min_ms"] <= failover["median_ms"] <= failover["max_ms"]
    # every kill made an election: the members' logs say who won
    assert any("won the election" in line for lines in figures["member_logs"].values()
               for line in lines)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("elections-")]


@pytest.mark.parametrize("args, field", [
    (["--load", "big"], "--load"),
    (["--load", "16x0"], "--load"),
    (["--duration", "0"], "--duration"),
    (["--failovers", "-1"], "--failovers"),
    (["--config", "/nonexistent/timing.json"], "--config"),
])
def test_elections_refuses_bad_arguments_in_one_line(args, field):
    done = _bench(*args, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0], done.stderr


class _Scripted:
    def __init__(self, member: int) -> None:
        self.member = member


def test_watch_counts_term_changes_and_leader_changes(monkeypatch):
    nodes = [_Scripted(1), _Scripted(2), _Scripted(3)]
    script = iter([
        # poll 1: member 1 leads term 4
        {1: (4, 1), 2: (4, 1), 3: (4, 1)},
        # poll 2: member 3 saw nothing yet, member 2 campaigns (term 5, no leader known)
        {1: (4, 1), 2: (5, None), 3: None},
        # poll 3: member 2 leads term 5; member 3 went through terms 5 and 6 meanwhile
        # (its own campaign, no leader known in term 6)
        {1: (5, 2), 2: (5, 2), 3: (6, None)},
    ])
    current: dict = {}

    def status(node, timeout_s=1.0):
        got = current[node.member]
        return None if got is None else {"term": got[0], "leader": got[1]}

    monkeypatch.setattr(elections, "status", status)
    watch = elections.Watch(nodes)
    for step in script:
        current.update(step)
        watch.poll()
    figures = watch.figures()
    assert figures["elections_per_member"] == {"1": 1, "2": 1, "3": 2}
    assert figures["elections"] == 2
    assert figures["leader_changes"] == 1
    assert figures["polls"] == 3 and figures["unanswered_polls"] == 1


def test_parse_load():
    assert elections.parse_load(None) is None and elections.parse_load("idle") is None
    assert elections.parse_load("1024x256") == (1024, 256)
    with pytest.raises(ValueError, match="SIZExINFLIGHT"):
        elections.parse_load("1024")
