"""The per-batch part of every state machine (``pyraft.storage.applier``), compiled in the
default build: the hooks a subclass overrides are still called, ``_after_apply`` from the
threshold its ``snapshot_entries`` sets, and the state machines' own tests pass in the pure
build too (run here in a child process)."""

from __future__ import annotations

import dis
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pyraft.storage.applier
from pyraft import _compiled
from pyraft.core.membership import Configuration
from pyraft.errors import InvariantError
from pyraft.storage.state_machine import ConsensusOnlyState, MemoryStateMachine, StateMachine
from raftcore.framing import KIND_CONFIGURATION, KIND_NOOP, concat_batches, encode_entries

HERE = Path(__file__).parent


class Counting(MemoryStateMachine):
    """Counts the commands and the calls of the hooks (no automatic snapshot of its own)."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.total = 0
        self.after: list[int] = []

    def apply(self, index: int, command: memoryview) -> object:
        self.total += len(command)
        return index

    def build_snapshot(self) -> bytes:
        return str(self.total).encode()

    def restore_snapshot(self, data: bytes) -> None:
        self.total = int(data or b"0")

    def _after_apply(self) -> None:
        self.after.append(self.applied_index)
        super()._after_apply()


def test_applier_is_compiled_in_the_default_build() -> None:
    assert "pyraft.storage.applier" in _compiled.MODULES
    assert _compiled.is_compiled(pyraft.storage.applier) != _compiled.PURE
    assert issubclass(StateMachine, pyraft.storage.applier.Applier)


def test_after_apply_is_called_from_the_threshold_and_snapshots_follow() -> None:
    taken: list[int] = []
    machine = Counting(snapshot_entries=3, snapshot_sink=lambda index, data: taken.append(index))
    index = 1
    for size in (1, 1, 2, 1, 3, 1):  # batches of commands
        batch = encode_entries(index, 1, [b"x"] * size)
        assert machine.apply_batch(batch) == list(range(index, index + size))
        index += size
    # applied 1, 2, 4 (snapshot: 4), 5, 8 (snapshot: 8), 9: the hook only at 3 or more past
    # the last snapshot, where the sequential policy takes one
    assert machine.after == [4, 8]
    assert taken == [4, 8] and machine.snapshot_index == 8 and machine.applied_index == 9
    assert machine.total == 9


def test_a_direct_subclass_gets_after_apply_after_every_batch() -> None:
    """``snapshot_entries`` defaults to 0 in ``StateMachine``: a subclass with its own policy
    keeps the hook after every batch, as before the applier was compiled."""

    class Own(StateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.after = 0

        def apply(self, index: int, command: memoryview) -> object:
            return bytes(command)

        def install_snapshot(self, snapshot) -> None:  # pragma: no cover - not used here
            raise NotImplementedError

        def force_compaction(self) -> int:  # pragma: no cover - not used here
            raise NotImplementedError

        def _recover_base(self, log, commit_index, snapshot) -> None:  # pragma: no cover
            raise NotImplementedError

        def _after_apply(self) -> None:
            self.after += 1

    machine = Own()
    for index in range(1, 6):
        assert machine.apply_batch(encode_entries(index, 1, [b"c%d" % index])) == [b"c%d" % index]
    assert machine.after == 5 and machine.applied_index == 5


def test_apply_entries_overrides_are_called_and_mixed_batches_split() -> None:
    """The default ``_apply_entries`` hands the command runs between no-op and configuration
    entries to ``apply_commands``; ``ConsensusOnlyState`` overrides it (it follows the
    configuration entries), and the override is what runs."""
    configuration = Configuration(frozenset({1, 2, 3}))
    parts = [encode_entries(1, 1, [b"a", b"bb"]),
             encode_entries(3, 1, [configuration.encode()], KIND_CONFIGURATION),
             encode_entries(4, 1, [b""], KIND_NOOP),
             encode_entries(5, 1, [b"ccc"])]
    mixed = concat_batches(parts)
    machine = Counting()
    only = ConsensusOnlyState()
    assert machine.apply_batch(mixed) == [1, 2, None, None, 5]
    assert only.apply_batch(mixed) == [None] * 5
    assert machine.total == 6 and machine.applied_index == 5
    assert only.applied_index == 5 and only.configuration == configuration
    # the default is called without the override lookup; any override through it; the
    # class's apply_commands is held as a function and called with the machine
    assert machine._plain_entries and not only._plain_entries
    assert machine._commands is Counting.apply_commands

    class Traced(Counting):  # a user's subclass of a subclass, overriding the hook
        def __init__(self) -> None:
            super().__init__()
            self.batches: list[tuple[int, int]] = []

        def _apply_entries(self, batch):
            self.batches.append((batch.first_index, batch.last_index))
            return super()._apply_entries(batch)

    traced = Traced()
    assert not traced._plain_entries
    assert traced.apply_batch(mixed) == [1, 2, None, None, 5]
    assert traced.batches == [(1, 5)] and traced.total == 6


def test_refusals_are_typed_and_leave_the_state() -> None:
    machine = Counting()
    machine.apply_batch(encode_entries(1, 1, [b"a"]))
    with pytest.raises(InvariantError, match="batch starts at 3 but the applied index is 1"):
        machine.apply_batch(encode_entries(3, 1, [b"c"]))
    assert machine.apply_batch(encode_entries(2, 1, [])) == []  # empty: nothing to check

    class Broken(Counting):
        def apply(self, index: int, command: memoryview) -> object:
            raise RuntimeError("user bug")

    broken = Broken()
    with pytest.raises(RuntimeError, match="user bug"):
        broken.apply_batch(encode_entries(1, 1, [b"a"]))
    with pytest.raises(InvariantError, match=r"unusable: applying entries 1\.\.1 raised"):
        broken.apply_batch(encode_entries(1, 1, [b"a"]))
    assert broken.applied_index == 0
    machine.close()
    with pytest.raises(InvariantError, match="after close"):
        machine.apply_batch(encode_entries(2, 1, [b"b"]))


class _Tagged:
    """A mixin after StateMachine in the MRO: its attributes are set inside
    ``StateMachine.__init__``'s ``super().__init__()``, before the dictionary is replaced."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.tag = "mixin"


class Reading(MemoryStateMachine, _Tagged):
    """Reads and writes its own attributes per command, as users' machines do; counts the
    attribute assignments its ``__setattr__`` sees."""

    def __init__(self, **options) -> None:
        self.assigned: list[str] = []
        super().__init__(**options)
        self.total = 0

    def __setattr__(self, name: str, value: object) -> None:
        if name != "assigned":
            self.assigned.append(name)
        super().__setattr__(name, value)

    def apply(self, index: int, command: memoryview) -> object:
        self.total = self.total + len(command)
        return self.total

    def build_snapshot(self) -> bytes:
        return b""

    def restore_snapshot(self, data: bytes) -> None:
        self.total = 0


def _first_read(code, name: str) -> int:
    return next(i.offset for i in dis.get_instructions(code)
                if i.opname == "LOAD_ATTR" and i.argval == name)


def test_a_users_state_machine_keeps_its_own_attribute_reads_fast() -> None:
    """A Python subclass of the compiled ``Applier`` starts without the inline attribute
    storage; the dictionary it got shared its keys with the class, and CPython 3.11's
    specialized ``self.total`` read missed on every such dictionary, fell back to the generic
    lookup and was specialized again in a cycle (``OWN_DICTIONARY``). With a dictionary of its
    own keys, once specialized the read stays so, and nothing set before is lost."""
    machine = Reading()
    assert machine.tag == "mixin" and machine.total == 0 and machine.snapshot_sink is None
    assert "__dict__" not in machine.assigned and "total" in machine.assigned
    code = Reading.apply.__code__
    if not hasattr(code, "_co_code_adaptive"):
        pytest.skip("this interpreter does not specialize attribute reads (CPython < 3.11)")
    offset = _first_read(code, "total")
    forms = []
    for index in range(1, 401):
        assert machine.apply_batch(encode_entries(index, 1, [b"ab"])) == [2 * index]
        form = dis._all_opname[code._co_code_adaptive[offset]]
        if not forms or forms[-1] != form:
            forms.append(form)
    specialized = [f for f in forms if f != "LOAD_ATTR" and not f.endswith("_ADAPTIVE")]
    assert specialized, forms
    assert forms.index(specialized[0]) == len(forms) - 1, forms  # never generic again
    assert machine.total == 800 and machine.applied_index == 400


def test_the_state_machine_tests_pass_in_the_other_build() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYRAFT_PURE_CORE", "PYRAFT_NO_EXTENSIONS")}
    if _compiled.is_compiled(pyraft.storage.applier):
        env["PYRAFT_PURE_CORE"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
         str(HERE / "test_state_machine.py"), str(HERE / "test_interpreter.py"),
         f"{__file__}::test_after_apply_is_called_from_the_threshold_and_snapshots_follow",
         f"{__file__}::test_refusals_are_typed_and_leave_the_state"],
        env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0 and " passed" in done.stdout, done.stdout[-4000:] + done.stderr
