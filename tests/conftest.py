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
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, settings

from pyraft import _compiled

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


def pytest_configure(config: pytest.Config) -> None:
    profile = os.environ.get("HYPOTHESIS_PROFILE") or (
        "soak" if config.getoption("--soak") is not None else "default"
    )
    settings.load_profile(profile)


PURE_CORE_CHILD_TIMEOUT_S = 300


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if _compiled.PURE or pyfuncitem.get_closest_marker("pure_core") is None:
        return None
    env = dict(os.environ, PYRAFT_PURE_CORE="1")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", pyfuncitem.nodeid],
        cwd=str(pyfuncitem.config.rootpath), env=env, capture_output=True, text=True,
        timeout=PURE_CORE_CHILD_TIMEOUT_S, check=False)
    assert done.returncode == 0 and " passed" in done.stdout, (
        f"{pyfuncitem.nodeid} failed in the pure build (PYRAFT_PURE_CORE=1):\n"
        f"{done.stdout[-4000:]}{done.stderr[-2000:]}")
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak") is not None:
        return
    skip = pytest.mark.skip(reason="soak test: run with --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
