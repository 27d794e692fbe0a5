"""Fuzz tests: ``--fuzz-seconds S`` sets each coverage-guided atheris run (default below)."""

from __future__ import annotations

import pytest

#: seconds of atheris per target in the default run: 8 targets x (this + ~2 s start-up); the
#: long runs are separate (``python -m pyraft.testing.fuzz TARGET --runs N``, README)
FUZZ_SECONDS_DEFAULT = 1.0


@pytest.fixture(scope="session")
def fuzz_seconds(request: pytest.FixtureRequest) -> float:
    value = request.config.getoption("--fuzz-seconds")
    return FUZZ_SECONDS_DEFAULT if value is None else float(value)
