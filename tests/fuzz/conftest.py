"""Fuzz tests: ``--fuzz-seconds S`` sets each coverage-guided atheris run (default below)."""

from __future__ import annotations

import pytest

#: seconds of atheris per target in the default run: 6 targets x (this + ~2 s start-up)
FUZZ_SECONDS_DEFAULT = 2.0


@pytest.fixture
def fuzz_seconds(request: pytest.FixtureRequest) -> float:
    value = request.config.getoption("--fuzz-seconds")
    return FUZZ_SECONDS_DEFAULT if value is None else float(value)
