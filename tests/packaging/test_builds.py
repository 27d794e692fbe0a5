"""The two builds of one source: pyraft's core and write path compiled from their .py files
(the default), or those same .py files (``PYRAFT_PURE_CORE=1``; ``PYRAFT_NO_EXTENSIONS=1``
runs the kernels pure too). See ``pyraft._compiled``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pyraft import _compiled

TIMEOUT_S = 120


def _info(**env: str) -> dict:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("PYRAFT_PURE_CORE", "PYRAFT_NO_EXTENSIONS")}
    environment.update(env)
    done = subprocess.run([sys.executable, "-m", "pyraft", "info", "--json"],
                          capture_output=True, text=True, timeout=TIMEOUT_S, env=environment,
                          check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_default_build_runs_every_listed_module_compiled():
    if _compiled.PURE:
        pytest.skip("this test process runs the pure build (PYRAFT_PURE_CORE / NO_EXTENSIONS)")
    facts = _info()
    assert facts["build"] == "compiled"
    assert facts["compiled"] == {name: "compiled" for name in _compiled.MODULES}
    assert set(facts["kernels"].values()) == {"compiled"}


def test_pyraft_pure_core_runs_the_py_files_over_compiled_kernels():
    facts = _info(PYRAFT_PURE_CORE="1")
    assert facts["build"].startswith("pure core")
    assert facts["compiled"] == {name: "pure" for name in _compiled.MODULES}
    assert set(facts["kernels"].values()) == {"compiled"}


def test_pyraft_no_extensions_runs_everything_pure():
    facts = _info(PYRAFT_NO_EXTENSIONS="1")
    assert facts["build"].startswith("pure (")
    assert facts["compiled"] == {name: "pure" for name in _compiled.MODULES}
    # every kernel with a pure twin runs it (the WAL's segment I/O has none: it stays compiled)
    twins = ("clock", "crc", "framing", "index", "phi")
    assert {name: facts["kernels"][name] for name in twins} == {name: "python" for name in twins}


def test_a_missing_compiled_module_is_a_loud_import_error(tmp_path):
    # a build without the core's extensions: the import fails and says what to do,
    # instead of quietly running the .py file
    script = (
        "import pyraft._compiled as c\n"
        "c._extension_path = lambda name: None\n"
        "import pyraft\n"
        "try:\n"
        "    import pyraft.core.progress\n"
        "except ImportError as e:\n"
        "    print('ERR', e)\n"
        "else:\n"
        "    print('LOADED', pyraft.core.progress.__file__)\n"
    )
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("PYRAFT_PURE_CORE", "PYRAFT_NO_EXTENSIONS")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=TIMEOUT_S, env=environment, check=False)
    # (the first compiled module the import chain reaches is the one named)
    assert done.stdout.startswith("ERR pyraft: the compiled module pyraft.core."), (
        done.stdout + done.stderr)
    assert " is missing (" in done.stdout
    assert "PYRAFT_PURE_CORE=1" in done.stdout and "pip install" in done.stdout


def test_setup_builds_exactly_the_listed_modules():
    # setup.py reads the list from pyraft/_compiled.py: one list, and each entry has its source
    for name in _compiled.MODULES:
        assert os.path.exists(_compiled._source_path(name)), name


def test_the_twin_is_the_py_source_whatever_the_build():
    twin = _compiled.load_twin("pyraft.transport.codec")
    assert twin.__file__.endswith(os.path.join("pyraft", "transport", "codec.py"))
    assert not _compiled.is_compiled(twin)


def test_python_dash_m_runs_a_compiled_module():
    # an extension has no code object for runpy: pyraft._compiled's loader gives it one that
    # calls the module's main(), as the .py file's __main__ block does
    done = subprocess.run([sys.executable, "-m", "pyraft.testing.sim", "--seeds", "0:2"],
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr
    assert "2 seeds, 2 passed, 0 failed" in done.stdout


def test_pyraft_node_accepts_the_build_switches_in_its_environment(tmp_path):
    # PYRAFT_* variables that name no setting are refused, except pyraft's own switches: a
    # member started in the pure build must not be refused for it
    env = dict(os.environ, PYRAFT_PURE_CORE="1", PYRAFT_PURE_MODULES="pyraft.core.raft")
    done = subprocess.run([sys.executable, "-m", "pyraft", "node", "--help"], env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr
    from pyraft.config import ClusterConfig

    config = ClusterConfig.from_env(environ={
        "PYRAFT_MEMBER_ID": "1", "PYRAFT_PURE_CORE": "1", "PYRAFT_PURE_MODULES": "x"})
    assert config == ClusterConfig.from_env(environ={"PYRAFT_MEMBER_ID": "1"})
