"""Test-wide settings: hypothesis profiles and the opt-in soak marker.

``pytest`` runs the default profile (bounded, a few minutes in all on 2 cores).
``pytest --soak [MINUTES]`` selects tests marked ``soak`` and the ``soak`` hypothesis profile
(many more examples); time-boxed soaks (the Jepsen-style run) last MINUTES (10 by default).
``HYPOTHESIS_PROFILE`` overrides the profile. ``--fuzz-seconds S`` sets how long each
coverage-guided fuzz target runs (a few seconds by default).

Tests marked ``pure_core`` break the core on purpose (they patch a method of ``RaftLog``, or
of the simulator's classes, to show the simulator's checkers catch it); the compiled
build's classes cannot be patched, so
in a compiled test run such a test runs in a child ``pytest`` with ``PYRAFT_PURE_CORE=1``,
and passes only if it passed there.

The default run is spread over one pytest-xdist worker per available CPU (``-n auto`` in
``pyproject.toml``, at most :data:`MAX_WORKERS`); ``-n 0`` runs everything in this process.
The packaging tests share one build, so they run on one worker (``xdist_group``), and the
longest groups (the packaging builds, the Jepsen-style runs) are handed out first, so no
worker is left with one of them at the end while the other idles. A pytest a test starts
(the pure-build children below) is a session of its own, not a worker: the variables xdist
sets in a worker are not passed on to it. Each worker hands out TCP ports from its own share
of the range (``RAFTCORE_TEST_PORTS``, :mod:`pyraft.testing.processes`), it and the processes
its tests start: a port one worker found free, or one a member freed for a moment while it
restarted, is never the other worker's pick.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, settings

from pyraft import _compiled
from pyraft.testing import processes

settings.register_profile(
    "default", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "soak", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", nargs="?", type=float, const=10.0, default=None,
                     metavar="MINUTES",
                     help="run the long soak tests; time-boxed ones last MINUTES (default 10)")
    parser.addoption("--fuzz-seconds", type=float, default=None, metavar="S",
                     help="seconds for each coverage-guided fuzz target (default: a short run)")


@pytest.fixture
def soak_minutes(request: pytest.FixtureRequest) -> float | None:
    """The ``--soak`` time box in minutes, or None when soak tests are not selected."""
    return request.config.getoption("--soak")


#: what xdist tells a worker's code; a child pytest that inherited them would take itself for
#: a worker (pytest-benchmark turns itself off and warns, which this suite makes an error)
WORKER_VARIABLES = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT",
                    "PYTEST_XDIST_TESTRUNUID")


def pytest_configure(config: pytest.Config) -> None:
    for name in WORKER_VARIABLES:  # children of a test are sessions of their own
        os.environ.pop(name, None)
    worker = getattr(config, "workerinput", None)
    if worker is not None:  # its own ports, for it and the processes its tests start
        os.environ[processes.PORTS_VARIABLE] = processes.worker_ports(
            int(worker["workerid"].removeprefix("gw")), int(worker["workercount"]))
    profile = os.environ.get("HYPOTHESIS_PROFILE") or (
        "soak" if config.getoption("--soak") is not None else "default"
    )
    settings.load_profile(profile)


PURE_CORE_CHILD_TIMEOUT_S = 300
#: the most workers ``-n auto`` starts: each test may start several member processes
MAX_WORKERS = 8
#: tests of these markers take tens of seconds each: scheduled first
LONG_MARKERS = ("packaging", "jepsen")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        available = os.cpu_count() or 1
    return max(1, min(available, MAX_WORKERS))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if _compiled.PURE or pyfuncitem.get_closest_marker("pure_core") is None:
        return None
    env = dict(os.environ, PYRAFT_PURE_CORE="1")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
         pyfuncitem.nodeid],
        cwd=str(pyfuncitem.config.rootpath), env=env, capture_output=True, text=True,
        timeout=PURE_CORE_CHILD_TIMEOUT_S, check=False)
    assert done.returncode == 0 and " passed" in done.stdout, (
        f"{pyfuncitem.nodeid} failed in the pure build (PYRAFT_PURE_CORE=1):\n"
        f"{done.stdout[-4000:]}{done.stderr[-2000:]}")
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("packaging") is not None:
            item.add_marker(pytest.mark.xdist_group("packaging"))
    items.sort(key=lambda item: not any(item.get_closest_marker(m) for m in LONG_MARKERS))
    if config.getoption("--soak") is not None:
        return
    skip = pytest.mark.skip(reason="soak test: run with --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
