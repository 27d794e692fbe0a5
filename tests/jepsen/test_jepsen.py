"""Jepsen-style runs (``pyraft.testing.jepsen``): five real ``pyraft node`` processes on
127.0.0.1, concurrent clients over HTTP, a seeded nemesis (kill, pause, partition, one-way
loss, slow fsync, wipe and rejoin, restarts without or with wrong ``--peers``), and every
history checked for linearizability.

The default runs last about a minute of load with every fault (``--state memory``) and 15 s
with the operator's faults (``--state sqlite``); ``pytest tests/jepsen --soak
MINUTES`` runs a soak of MINUTES for each state, and the broken ``stale_reads`` mode that
the checker must reject."""

from __future__ import annotations

import argparse
import asyncio
import random
import types

import pytest

from pyraft.kv.node import add_arguments as node_arguments
from pyraft.testing.jepsen import (
    FAULTS,
    OPERATOR_FAULTS,
    Record,
    RunConfig,
    RunResult,
    _Node,
    engine_errors,
    history_operations,
    main,
    refusal_problem,
    run,
)
from pyraft.testing.linearizability import check_history

SEED = 20261127


# ---- the history as the checker sees it ---------------------------------------------------
def test_outcomes_map_to_the_checkers_history():
    records = [
        Record(1, 1, ("put", "k", "a"), None, 0.0, 1.0, "ok", None),
        Record(2, 2, ("put", "k", "b"), None, 0.5, None, "info", None, "timeout"),
        Record(3, 3, ("get", "k"), "lease", 0.6, None, "info", None, "timeout"),
        Record(4, 4, ("cas", "k", "z", "c"), None, 1.1, 1.2, "fail", False),
        Record(5, 5, ("put", "k", "d"), None, 1.3, 1.4, "fail", None, "410 session expired"),
        Record(6, 6, ("get", "k"), "barrier", 2.0, 2.1, "ok", "b"),
    ]
    operations = history_operations(records)
    assert [o.id for o in operations] == [1, 2, 4, 6]
    assert operations[1].ret is None  # an indeterminate write may or may not take effect
    assert operations[2].result is False  # a cas mismatch is a definite observation
    assert check_history(operations).ok


def _stale_read_history() -> list[Record]:
    """A put acknowledged, a later put acknowledged, then a read of the first value."""
    return [
        Record(1, 1, ("put", "k", "1.1"), None, 0.0, 0.1, "ok", None),
        Record(2, 2, ("put", "k", "2.1"), None, 0.2, 0.3, "ok", None),
        Record(3, 3, ("get", "k"), "lease", 0.4, 0.5, "ok", "1.1"),
    ]


def test_the_checker_rejects_a_stale_read_in_a_harness_history():
    result = check_history(history_operations(_stale_read_history()))
    assert not result.ok and result.key == "k"
    # the same read made concurrent with the second put is fine
    records = _stale_read_history()
    records[2].call = 0.25
    assert check_history(history_operations(records)).ok


def test_a_failed_run_summary_names_the_failing_key():
    records = _stale_read_history()
    check = check_history(history_operations(records))
    result = RunResult(RunConfig(), records, [], check, 0.01, True, "test", 1.0, 1.0)
    assert not result.ok
    text = result.summary()
    assert "NOT LINEARIZABLE" in text and "'k'" in text


def test_exceptions_in_member_logs_are_found(tmp_path):
    log = tmp_path / "n1.log"
    log.write_text(
        "---- start 0\n"
        "2026-01-01 member 1 pyraft.transport: cannot connect (retry)\n"
        "2026-01-01 member 1 asyncio: Fatal error on transport TCPTransport\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n'
        "KeyError: 3\n"
        "\n"
        "During handling of the above exception, another exception occurred:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 2, in g\n'
        "ValueError: batches are not contiguous: 10 then 101\n"
        "2026-01-01 member 1 pyraft.transport: cannot connect (retry)\n")
    assert dict(engine_errors(str(log))) == {
        "KeyError: 3": 1, "ValueError: batches are not contiguous: 10 then 101": 1}
    assert not engine_errors(str(tmp_path / "missing.log"))


def test_bad_run_options_are_clear_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown faults"):
        RunConfig(faults=("flood",)).validate()
    with pytest.raises(ValueError, match="members"):
        RunConfig(members=2).validate()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "n1").mkdir()
    with pytest.raises(ValueError, match="not empty"):
        RunConfig(workdir=str(tmp_path / "old")).validate()
    with pytest.raises(ValueError, match="unknown state"):
        RunConfig(state="disk").validate()
    with pytest.raises(SystemExit) as exit_info:
        main(["--faults", "kill,flood"])
    assert exit_info.value.code == 2
    assert "unknown faults" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--state", "disk"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_the_old_name_of_the_membership_fault_still_works():
    assert RunConfig(faults=("membership", "kill")).validate().faults == ("wipe-rejoin", "kill")
    assert set(OPERATOR_FAULTS) <= set(FAULTS)


_REFUSAL = ("pyraft node: member 2 refused to start: --peers 2=127.0.0.1:7002 contradict the "
            "membership stored in /tmp/run/n2 (1=127.0.0.1:7001,2=127.0.0.1:7002,"
            "3=127.0.0.1:7003); start it without --peers to use the stored membership, or "
            "with an empty --data to make a new member\n")


def test_every_restart_uses_only_documented_flags(tmp_path):
    """The harness' command lines parse with ``pyraft node``'s own parser, in each form."""
    parser = argparse.ArgumentParser(prog="pyraft node")
    node_arguments(parser)
    harness = types.SimpleNamespace(
        workdir=str(tmp_path), nodes={}, config=RunConfig(state="sqlite"),
        token_file=str(tmp_path / "admin-token"),
        proxy=types.SimpleNamespace(routes=lambda member: "2=127.0.0.1:9002"))
    for member in (1, 2, 3):
        harness.nodes[member] = _Node(member, harness)
    node = harness.nodes[1]
    forms = {"first": node.command(), "no peers": node.command(peers=[]),
             "wrong peers": node.command(peers=[1]),
             "join": node.command(join_url="http://127.0.0.1:8002")}
    for form, command in forms.items():
        assert command[1:4] == ["-m", "pyraft", "node"], form
        args = parser.parse_args(command[4:])
        assert (args.id, args.state, args.data) == (1, "sqlite", node.data), form
        assert args.admin_token_file == harness.token_file, form  # membership changes
    assert "--peers" not in forms["no peers"] and "--http-peers" not in forms["no peers"]
    assert parser.parse_args(forms["wrong peers"][4:]).peers == f"1={node.listen}"
    assert parser.parse_args(forms["first"][4:]).peers.count("=") == 3


def test_a_wrong_peers_start_must_be_refused_with_status_2_and_one_line():
    assert refusal_problem(_REFUSAL, 2, 2, "/tmp/run/n2") is None
    # log lines of the member around the refusal are allowed, not a second message
    logged = "2026-12-05 03:50:01,123 member 2 pyraft.cluster: finished installing\n"
    assert refusal_problem(logged + _REFUSAL, 2, 2, "/tmp/run/n2") is None
    assert "started" in refusal_problem("", None, 2, "/tmp/run/n2")
    assert "exit status 0" in refusal_problem("", 0, 2, "/tmp/run/n2")
    assert "exit status 3" in refusal_problem(_REFUSAL, 3, 2, "/tmp/run/n2")
    assert "traceback" in refusal_problem("Traceback (most recent call last):\n" + _REFUSAL,
                                          2, 2, "/tmp/run/n2")
    assert "one-line" in refusal_problem(_REFUSAL + _REFUSAL, 2, 2, "/tmp/run/n2")
    assert "one-line" in refusal_problem(_REFUSAL, 2, 3, "/tmp/run/n2")  # another member
    assert "one-line" in refusal_problem(_REFUSAL, 2, 2, "/tmp/run/n3")  # another directory


# ---- real runs ----------------------------------------------------------------------------
def _assert_sound(result: RunResult, min_ok: int) -> None:
    summary = result.summary()
    assert result.check is not None and result.check.ok, summary
    assert result.converged, summary
    assert not result.problems, summary
    outcomes = result.outcomes()
    writes = sum(r.outcome == "ok" and r.op[0] != "get" for r in result.records)
    reads = sum(r.outcome == "ok" and r.op[0] == "get" for r in result.records)
    # a dead or stuck cluster cannot pass: enough definite answers, of both kinds
    assert outcomes["ok"] >= min_ok and writes >= min_ok // 4 and reads >= min_ok // 4, summary


def _assert_operator_faults_checked(result: RunResult) -> None:
    """Each operator fault ran to its end: refused starts refused, restarts back."""
    for fault in result.faults:
        if fault.kind == "restart-wrong-peers":
            assert "refused (status 2, one line)" in fault.description, result.summary()
        if fault.kind in OPERATOR_FAULTS:
            assert "back as a voter" in fault.description, result.summary()


@pytest.mark.jepsen
def test_a_short_run_with_every_fault_is_linearizable(tmp_path):
    config = RunConfig(minutes=0.5, seed=SEED, quiet_s=(0.3, 0.6), hold_s=(1.5, 2.5),
                       workdir=str(tmp_path / "run"))
    result = asyncio.run(run(config))
    print(result.summary())
    _assert_sound(result, min_ok=300)
    assert result.fault_kinds() == set(FAULTS), result.summary()
    _assert_operator_faults_checked(result)
    # the paused leader was hammered with lease reads sent to it alone
    assert any(r.direct and r.consistency == "lease" for r in result.records), \
        result.summary()


@pytest.mark.jepsen
def test_a_short_sqlite_run_with_the_operators_faults_is_linearizable(tmp_path):
    """The same with ``--state sqlite`` (the key-value state in each member's database),
    shorter: the operator's faults only (each one restarts a member), with less quiet time."""
    config = RunConfig(minutes=0.25, seed=SEED + 1, state="sqlite", faults=OPERATOR_FAULTS,
                       quiet_s=(0.3, 0.6), workdir=str(tmp_path / "run"))
    result = asyncio.run(run(config))
    print(result.summary())
    _assert_sound(result, min_ok=100)
    assert result.fault_kinds() == set(OPERATOR_FAULTS), result.summary()
    _assert_operator_faults_checked(result)


@pytest.mark.jepsen
@pytest.mark.soak
@pytest.mark.parametrize("state", ["memory", "sqlite"])
def test_soak(tmp_path, soak_minutes, state):
    seed = random.SystemRandom().randrange(1 << 32)
    config = RunConfig(minutes=soak_minutes, seed=seed, workdir=str(tmp_path / "run"),
                       keep=True, state=state)
    result = asyncio.run(run(config))
    print(result.summary())
    _assert_sound(result, min_ok=300)


@pytest.mark.jepsen
@pytest.mark.soak
def test_stale_local_reads_from_an_isolated_leader_are_caught(tmp_path):
    """The broken mode: ``consistency=local`` reads from a leader cut off by a partition
    return values the majority has overwritten; the run must be reported not linearizable."""
    config = RunConfig(minutes=0.4, seed=SEED, faults=("partition",), stale_reads=True,
                       workdir=str(tmp_path / "run"))
    result = asyncio.run(run(config))
    print(result.summary())
    assert any(r.consistency == "local" and r.outcome == "ok" for r in result.records)
    assert result.check is not None and not result.check.ok and not result.check.timed_out, \
        result.summary()
