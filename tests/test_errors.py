"""One error hierarchy: every public exception of pyraft derives from ``PyraftError``.

The test imports every module of the product (not the test and benchmark tools, whose errors
never reach an application) and checks each exception class a module defines or exports
under a public name, so an error added anywhere later is held to the rule as well.
"""

from __future__ import annotations

import asyncio
import importlib
import pickle
import pkgutil

import pytest

import pyraft
from pyraft import errors
from pyraft.errors import PyraftError

#: tools: their errors are for the test suite and the benchmark runner, not for applications
TOOLS = ("pyraft.testing", "pyraft.bench", "pyraft.__main__")


def product_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(pyraft.__path__, "pyraft."):
        if info.name.startswith(TOOLS):
            continue
        names.append(info.name)
    return sorted(names)


def public_exceptions(module) -> dict[str, type]:
    found = {}
    for name in dir(module):
        value = getattr(module, name)
        if name.startswith("_") or not isinstance(value, type):
            continue
        if issubclass(value, BaseException) and value.__module__.startswith("pyraft"):
            found[name] = value
    return found


def test_every_public_error_derives_from_pyraft_error():
    outside = []
    seen = 0
    for name in product_modules():
        module = importlib.import_module(name)
        for attribute, cls in public_exceptions(module).items():
            seen += 1
            if not issubclass(cls, PyraftError):
                outside.append(f"{name}.{attribute}")
    assert seen >= len(errors.__all__) - 1, "the walk found too few errors to mean anything"
    assert outside == [], f"errors outside the PyraftError hierarchy: {outside}"


def test_the_checker_sees_an_error_outside_the_hierarchy():
    class Stray(ValueError):
        pass
    Stray.__module__ = "pyraft.stray"

    class Module:
        pass
    Module.Stray = Stray
    found = public_exceptions(Module)
    assert found == {"Stray": Stray} and not issubclass(found["Stray"], PyraftError)


@pytest.mark.parametrize("name", [n for n in errors.__all__ if n != "invariant"])
def test_errors_module_exports_only_pyraft_errors(name):
    cls = getattr(errors, name)
    assert issubclass(cls, PyraftError), name


@pytest.mark.parametrize("name, builtin", [
    ("ClusterStoppedError", RuntimeError),
    ("ClusterTimeoutError", TimeoutError),
    ("ClusterTimeoutError", asyncio.TimeoutError),
    ("CommandLostError", RuntimeError),
    ("CommandOutcomeUnknownError", RuntimeError),
    ("CommandInterruptedError", errors.ClusterStoppedError),
    ("CommandInterruptedError", errors.CommandOutcomeUnknownError),
    ("MessageTimeoutError", TimeoutError),
    ("MalformedMessageError", ValueError),
    ("HandshakeError", ConnectionError),
    ("KVClientError", PyraftError),
    ("TlsError", ConnectionError),
    ("InvalidURLError", ValueError),
    ("StorageFullError", OSError),
    ("ConfigError", ValueError),
])
def test_errors_keep_the_builtin_they_stand_for(name, builtin):
    assert issubclass(getattr(errors, name), builtin)


@pytest.mark.parametrize("old_home, name", [
    ("pyraft.cluster.runtime", "ClusterStoppedError"),
    ("pyraft.cluster.runtime", "CommandOutcomeUnknownError"),
    ("pyraft.cluster.messaging", "MessageTimeoutError"),
    ("pyraft.transport.codec", "MalformedMessageError"),
    ("pyraft.transport.tcp", "HandshakeRefusedError"),
    ("pyraft.client", "UnavailableError"),
])
def test_errors_are_still_importable_where_they_were_defined(old_home, name):
    assert getattr(importlib.import_module(old_home), name) is getattr(errors, name)


def test_errors_with_fields_survive_pickling():
    samples = [
        errors.ClusterTimeoutError("wait_for_leader: 2 s", 2.0),
        errors.MalformedMessageError("bad type byte", 3),
        errors.HandshakeRefusedError("wrong cluster id"),
        errors.RequestError(409, "conflict", "version mismatch"),
        errors.UnavailableError("no member answered", {"http://a": "refused"}, 3, 1.5),
    ]
    for error in samples:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
