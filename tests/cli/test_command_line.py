"""The ``pyraft`` command line builds only the command it runs: a client command does not
import the server, the runtime or numpy (``pyraft.cli``'s docstring)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pyraft import cli


@pytest.mark.parametrize("argv, command", [
    (["kv", "get", "a"], "kv"),
    (["--debug", "status"], "status"),
    (["bench", "kv"], "bench"),  # an argument that names a command is the command's own
    (["--version"], None),
    (["--help"], None),
    (["frob", "kv"], None),  # not a command: argparse refuses it
    ([], None),
])
def test_the_command_is_the_first_argument_that_is_not_an_option(argv, command):
    assert cli.command_in(argv) == command


def test_a_parser_for_one_command_parses_it_as_the_whole_one_does():
    argv = ["member", "add", "4", "127.0.0.1:7004", "--cluster", "http://127.0.0.1:1"]
    assert vars(cli.build_parser("member").parse_args(argv)) == \
        vars(cli.build_parser().parse_args(argv))


def _imported_by(argv: list[str]) -> set[str]:
    """The modules a fresh interpreter has loaded once ``pyraft`` parsed ``argv``."""
    code = ("import sys; from pyraft import cli; "
            f"cli.build_parser(cli.command_in({argv!r})).parse_args({argv!r}); "
            "print(' '.join(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_a_client_command_imports_no_server_runtime_or_numpy():
    loaded = _imported_by(["kv", "get", "a", "--cluster", "http://127.0.0.1:1"])
    assert "pyraft.kv.client" in loaded  # what it runs
    for module in ("pyraft.cluster.runtime", "pyraft.kv.node", "pyraft.kv.machine",
                   "numpy", "pyraft.bench.cli"):
        assert module not in loaded, module


def test_pyraft_help_lists_every_command_with_its_help_line():
    done = subprocess.run([sys.executable, "-m", "pyraft", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for name, help in cli.COMMANDS.items():
        assert name in done.stdout and help in done.stdout, (name, done.stdout)


def test_the_kv_package_still_exports_the_state_machine_on_first_use():
    import pyraft.kv
    from pyraft.kv import machine

    assert pyraft.kv.KVStateMachine is machine.KVStateMachine
    assert set(pyraft.kv.__all__) <= set(dir(machine))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        pyraft.kv.Nope  # noqa: B018
