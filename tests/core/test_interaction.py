"""Interaction tests of the Raft core: one test per ``testdata/*.txt`` script.

Each script (format: the docstring of ``pyraft.testing.interaction``) drives a few nodes by
hand, command by command, and holds the expected rendered output after each command. A
mismatch fails with a unified diff of the whole file (expected -> actual).

Regenerating expectations (etcd's ``--rewrite``): run

    PYRAFT_REWRITE=1 PYTHONPATH=src pytest tests/core/test_interaction.py

and the scripts are rewritten in place with the actual outputs instead of being compared.
Then read ``git diff tests/core/testdata``: every changed line is a change of protocol
behaviour that a reviewer must judge against the rule the script quotes, never bless blindly.

The module also tests the parser itself (round trip, etcd's double separator, errors).
"""

from __future__ import annotations

import difflib
import os
import pathlib

import pytest

from pyraft.testing.interaction import (
    InteractionEnv,
    ScriptError,
    parse_command,
    parse_script,
    render_script,
    run_script,
)

TESTDATA = pathlib.Path(__file__).parent / "testdata"
SCRIPTS = sorted(TESTDATA.glob("*.txt"))
REWRITE = os.environ.get("PYRAFT_REWRITE", "") not in ("", "0")


def test_there_are_scripts():
    assert len(SCRIPTS) >= 10, f"interaction scripts missing from {TESTDATA}"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_interaction(path: pathlib.Path):
    text = path.read_text()
    cases, outputs = run_script(text, source=path.name)
    actual = render_script(cases, outputs)
    if REWRITE:
        if actual != text:
            path.write_text(actual)
        return
    if actual == text:
        return
    first = next((c for c, o in zip(cases, outputs) if c.expected != o.splitlines()), None)
    where = f"the first differing case has its '----' at line {first.line}" if first else ""
    diff = "".join(
        difflib.unified_diff(
            text.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            fromfile=f"{path.name} (expected)",
            tofile=f"{path.name} (actual)",
        )
    )
    pytest.fail(
        f"{path.name}: output differs; {where}\n"
        f"(PYRAFT_REWRITE=1 rewrites the file; then review the diff)\n{diff}",
        pytrace=False,
    )


# ---- the parser ----------------------------------------------------------------------------------
SAMPLE = """\
# a comment before the first case

raft-state
----
ok

# two commands in one case
heal
heal
----
ok
ok
"""


def test_parse_keeps_comments_and_round_trips():
    cases = parse_script(SAMPLE)
    assert [[c.name for c in case.commands] for case in cases] == [["raft-state"], ["heal", "heal"]]
    assert cases[0].expected == ["ok"] and cases[1].expected == ["ok", "ok"]
    assert cases[1].commands[0].line == 8
    assert render_script(cases, ["ok", "ok\nok"]) == SAMPLE


def test_parse_command_words_options_and_quotes():
    command = parse_command('propose 1 "two words" voters=1,2,3 learners= x=y=z', 7)
    assert command.name == "propose" and command.line == 7
    assert command.args == ("1", "two words")
    assert command.option_ids("voters") == [1, 2, 3]
    assert command.option_ids("learners") == []
    assert command.options["x"] == "y=z"
    assert command.option_ids("standby", [9]) == [9]


def test_double_separator_allows_blank_lines_and_is_written_back():
    text = "heal\n----\n----\nline one\n\nline three\n----\n----\n\nheal\n----\nok\n"
    cases = parse_script(text)
    assert cases[0].expected == ["line one", "", "line three"]
    assert cases[1].expected == ["ok"]
    assert render_script(cases, ["line one\n\nline three", "ok"]) == text


def test_output_at_end_of_file_without_blank_line():
    cases = parse_script("heal\n----\nok")
    assert cases[0].expected == ["ok"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("----\nok\n", "without a command"),
        ("heal\n", "has no '----'"),
        ("heal\n----\n----\nok\n", "unclosed"),
        ('propose 1 "open\n----\nok\n', "quotation"),
        ("", "no test cases"),
    ],
)
def test_malformed_scripts_are_rejected_with_a_line(text, message):
    with pytest.raises(ScriptError, match=message):
        parse_script(text, "bad.txt")


def test_unknown_command_and_bad_arguments_are_script_errors():
    env = InteractionEnv()
    with pytest.raises(ScriptError, match=r"<script>:3: unknown command 'frobnicate'"):
        env.run(parse_command("frobnicate 1", 3))
    with pytest.raises(ScriptError, match=r":4: no node 1"):
        env.run(parse_command("status 1", 4))
    with pytest.raises(ScriptError, match="not an integer"):
        env.run(parse_command("add-nodes three", 5))


def test_core_errors_render_instead_of_raising():
    env = InteractionEnv()
    env.run(parse_command("add-nodes 3"))
    assert env.run(parse_command("propose 2 x")) == ["error: not the leader; the leader is unknown"]


def test_runs_are_deterministic():
    script = "add-nodes 3\n----\nok\n\ntick-election 1\nstabilize\n----\nok\n"
    first = run_script(script)[1]
    assert first == run_script(script)[1]
    assert "leader" in first[1]
