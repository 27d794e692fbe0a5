"""Crash durability (``pyraft.testing.crashsoak``): three ``pyraft node --data`` members
under a write load, a random one SIGKILLed and restarted with its original command line
again and again; every acknowledged write must be read back with its value at the end.

The default run kills 8 times (``--state sqlite``); ``pytest tests/jepsen --soak`` kills
1,000 times for each state (about half an hour each on a 2-vCPU VM), the figure reported in
the README."""

from __future__ import annotations

import asyncio

import pytest

from pyraft.testing.crashsoak import SoakConfig, main, run

SEED = 20261205


def _assert_durable(result, kills: int) -> None:
    summary = result.summary()
    assert result.kills == kills, summary
    assert result.acknowledged >= 10 * kills, summary  # the writes went on between kills
    assert result.read_back == result.acknowledged and not result.missing, summary
    assert not result.wrong and not result.unread, summary
    assert not result.problems, summary
    assert result.ok, summary


def test_bad_soak_options_are_clear_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown state"):
        SoakConfig(state="disk").validate()
    with pytest.raises(ValueError, match="members"):
        SoakConfig(members=2).validate()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "n1").mkdir()
    with pytest.raises(ValueError, match="not empty"):
        SoakConfig(workdir=str(tmp_path / "old")).validate()
    with pytest.raises(SystemExit) as exit_info:
        main(["--members", "2"])
    assert exit_info.value.code == 2
    assert "members" in capsys.readouterr().err


@pytest.mark.jepsen
def test_acknowledged_writes_survive_sigkills_of_random_members(tmp_path):
    config = SoakConfig(kills=6, seed=SEED, state="sqlite", workdir=str(tmp_path / "run"))
    result = asyncio.run(run(config))
    print(result.summary())
    _assert_durable(result, 6)


@pytest.mark.jepsen
@pytest.mark.soak
@pytest.mark.parametrize("state", ["memory", "sqlite"])
def test_a_thousand_sigkills(tmp_path, state):
    config = SoakConfig(kills=1000, seed=SEED, state=state, workdir=str(tmp_path / "run"),
                        keep=True)
    result = asyncio.run(run(config))
    print(result.summary())
    _assert_durable(result, 1000)
