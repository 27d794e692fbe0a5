"""Test-wide settings: hypothesis profiles and the opt-in soak marker.

``pytest`` runs the default profile (bounded, a few minutes in all on 2 cores).
``pytest --soak`` selects tests marked ``soak`` and the ``soak`` hypothesis profile (many more
examples); ``HYPOTHESIS_PROFILE`` overrides the profile.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "soak", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="run the long soak and fuzz tests")


def pytest_configure(config: pytest.Config) -> None:
    profile = os.environ.get("HYPOTHESIS_PROFILE") or (
        "soak" if config.getoption("--soak") else "default"
    )
    settings.load_profile(profile)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="soak test: run with --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
