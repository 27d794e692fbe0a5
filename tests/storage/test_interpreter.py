"""Command interpreter: declarations, the wire format, typed errors, and a state machine built
on it in a few lines (the one in the module docstring)."""

from __future__ import annotations

import dataclasses
import textwrap
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyraft.core import MemoryLogStorage, Snapshot, SnapshotMeta
from pyraft.errors import InvariantError
from pyraft.storage import interpreter as interpreter_module
from pyraft.storage.interpreter import (
    Command,
    CommandError,
    CommandInterpreter,
    MalformedCommandError,
    UnknownCommandError,
    handles,
)
from pyraft.storage.state_machine import MemoryStateMachine
from raftcore.framing import KIND_NOOP, encode_entries


class KV(Command):
    pass


class Put(KV, id=1):
    key: bytes
    value: bytes


class Delete(KV, id=2):
    key: bytes


class Everything(KV, id=300):
    number: int
    ratio: float
    flag: bool
    name: str
    blob: bytes
    nothing: None
    maybe: int | None
    names: list[str]
    pairs: tuple[int, ...]
    table: dict[bytes, list[float]]
    anything: Any
    tail: str = "default"


class Empty(KV, id=4):
    pass


class KVStore(MemoryStateMachine, CommandInterpreter):
    """The example of the module docstring."""

    def __init__(self, **options):
        super().__init__(**options)
        self.data = {}

    def apply(self, index, command):
        return self.dispatch(command, index)

    @handles(Put)
    def put(self, command, index):
        self.data[command.key] = command.value

    @handles(Delete)
    def delete(self, command, index):
        return self.data.pop(command.key, None)

    def build_snapshot(self):
        return msgpack.packb(self.data)

    def restore_snapshot(self, data):
        self.data = msgpack.unpackb(data) if data else {}


def everything_interpreter() -> CommandInterpreter:
    interpreter = CommandInterpreter()
    for command in (Put, Delete, Everything, Empty):
        interpreter.handler(command)(lambda command, index: (command, index))
    return interpreter


msgpack_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.text(), st.binary()
)
everything = st.builds(
    Everything,
    number=st.integers(-(2**63), 2**64 - 1),
    ratio=st.floats(allow_nan=False),
    flag=st.booleans(),
    name=st.text(),
    blob=st.binary(),
    nothing=st.none(),
    maybe=st.none() | st.integers(0, 10**6),
    names=st.lists(st.text(max_size=5), max_size=5),
    pairs=st.lists(st.integers(-100, 100), max_size=5).map(tuple),
    table=st.dictionaries(st.binary(max_size=4), st.lists(st.floats(allow_nan=False), max_size=3)),
    anything=st.recursive(msgpack_scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=5),
    tail=st.text(max_size=5),
)
commands = st.one_of(
    st.builds(Put, key=st.binary(), value=st.binary()),
    st.builds(Delete, key=st.binary()),
    st.just(Empty()),
    everything,
)


# ---- declarations ---------------------------------------------------------------------------
def test_a_declaration_is_a_frozen_dataclass_with_its_id():
    put = Put(key=b"k", value=b"v")
    assert put == Put(b"k", b"v") and hash(put) == hash(Put(b"k", b"v"))
    assert repr(put) == "Put(key=b'k', value=b'v')"
    assert Put.command_id == 1 and KV.command_id is None
    with pytest.raises(AttributeError):
        put.key = b"other"


def test_duplicate_ids_and_bad_declarations_raise_type_error():
    with pytest.raises(TypeError, match="already Put"):

        class Again(KV, id=1):
            key: str

    class Other(Command):  # another family: its ids are its own
        pass

    class OtherPut(Other, id=1):
        key: str

    assert OtherPut.command_id == 1
    with pytest.raises(TypeError, match="cannot be subclassed"):

        class Larger(Put):
            extra: int

    with pytest.raises(TypeError, match="command id"):

        class Negative(Other, id=-1):
            pass

    with pytest.raises(TypeError, match="unsupported field type"):

        class Odd(Other, id=2):
            when: set[int]

    with pytest.raises(TypeError, match="dict keys"):

        class BadKeys(Other, id=3):
            table: dict[float, int]

    with pytest.raises(TypeError, match="unions"):

        class Either(Other, id=4):
            value: int | str


def test_handler_registration_errors():
    interpreter = CommandInterpreter()
    interpreter.handler(Put)(lambda command, index: None)
    with pytest.raises(TypeError, match="already has a handler"):
        interpreter.handler(Put)(lambda command, index: None)
    with pytest.raises(TypeError, match="not a declared command"):
        interpreter.handler(KV)
    with pytest.raises(TypeError, match="both handle"):

        class Twice(CommandInterpreter):
            @handles(Put)
            def one(self, command, index):
                return 1

            @handles(Put)
            def two(self, command, index):
                return 2

    class Other(Command):
        pass

    class Clash(Other, id=1):
        pass

    class Base(CommandInterpreter):
        @handles(Put)
        def put(self, command, index):
            return "base"

    with pytest.raises(TypeError, match="share the id 1"):

        class Mixed(Base):
            @handles(Clash)
            def clash(self, command, index):
                return None

    class Child(Base):
        @handles(Put)
        def put_again(self, command, index):
            return "child"

    assert Child().dispatch(Child.encode(Put(b"k", b"v")), 1) == "child"
    assert Base().dispatch(Base.encode(Put(b"k", b"v")), 1) == "base"


# ---- the wire format ------------------------------------------------------------------------
def test_encoding_is_compact():
    assert CommandInterpreter.encode(Put(b"k", b"v")) == b"\x93\x01\xc4\x01k\xc4\x01v"
    assert CommandInterpreter.encode(Empty()) == b"\x91\x04"


@given(commands)
def test_round_trip(command):
    interpreter = everything_interpreter()
    payload = interpreter.encode(command)
    decoded = interpreter.decode(memoryview(payload))
    assert decoded == command and type(decoded) is type(command)
    assert interpreter.dispatch(payload, 7) == (command, 7)


def test_decoding_normalizes_containers_and_fills_trailing_defaults():
    interpreter = everything_interpreter()
    fields = [300, 1, 2, True, "n", bytearray(b"b"), None, None, ["a"], [1, 2], {b"k": [1]}, [1]]
    decoded = interpreter.decode(msgpack.packb(fields))
    assert decoded.ratio == 2.0 and type(decoded.ratio) is float
    assert decoded.pairs == (1, 2) and decoded.table == {b"k": [1.0]}
    assert decoded.tail == "default"


def test_default_factories_and_post_init_apply_when_decoding():
    class Checked(Command):
        pass

    class Range(Checked, id=1):
        low: int
        high: int
        tags: list[str] = dataclasses.field(default_factory=list)

        def __post_init__(self):
            if self.low > self.high:
                raise ValueError("low > high")

    interpreter = CommandInterpreter()
    interpreter.handler(Range)(lambda command, index: command)
    decoded = interpreter.decode(msgpack.packb([1, 1, 2]))
    assert decoded == Range(1, 2) and decoded.tags == []
    assert decoded.tags is not interpreter.decode(msgpack.packb([1, 1, 2])).tags
    with pytest.raises(MalformedCommandError, match="low > high"):
        interpreter.decode(msgpack.packb([1, 3, 2]))


def test_encoding_checks_field_types():
    with pytest.raises(TypeError, match=r"Put\.key: expected bytes, got str"):
        CommandInterpreter.encode(Put("k", b"v"))
    with pytest.raises(TypeError, match="not a declared command"):
        CommandInterpreter.encode(KV())
    assert CommandInterpreter.encode(Put(memoryview(b"k"), bytearray(b"v"))) == (
        CommandInterpreter.encode(Put(b"k", b"v"))
    )


@pytest.mark.parametrize(
    ("payload", "error", "match"),
    [
        (b"", MalformedCommandError, "not one msgpack value"),
        (b"\xc1", MalformedCommandError, "not one msgpack value"),
        (msgpack.packb([1, b"k", b"v"]) + b"\x00", MalformedCommandError, "not one"),
        (msgpack.packb({"id": 1}), MalformedCommandError, "command id"),
        (msgpack.packb([]), MalformedCommandError, "command id"),
        (msgpack.packb(["1", b"k"]), MalformedCommandError, "command id"),
        (msgpack.packb([1, b"k"]), MalformedCommandError, "2 fields"),
        (msgpack.packb([1, b"k", b"v", b"x"]), MalformedCommandError, "2 fields"),
        (msgpack.packb([1, "k", b"v"]), MalformedCommandError, r"Put\.key: expected bytes"),
        (msgpack.packb([2, True]), MalformedCommandError, "expected bytes, got bool"),
        (msgpack.packb([9, b"k"]), UnknownCommandError, "command id 9"),
        (msgpack.packb([2**40]), UnknownCommandError, "command id"),
    ],
)
def test_bad_payloads_raise_typed_errors(payload, error, match):
    interpreter = everything_interpreter()
    with pytest.raises(error, match=match) as info:
        interpreter.dispatch(payload, 1)
    assert isinstance(info.value, ValueError)
    if error is UnknownCommandError:
        assert info.value.command_id == msgpack.unpackb(payload)[0]


@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_a_command_error(payload):
    interpreter = everything_interpreter()
    try:
        interpreter.decode(payload)
    except CommandError:
        pass


def test_an_id_without_a_handler_is_unknown_here():
    interpreter = CommandInterpreter()
    interpreter.handler(Put)(lambda command, index: "put")
    assert interpreter.commands == {1: Put}
    with pytest.raises(UnknownCommandError):
        interpreter.decode(interpreter.encode(Delete(b"k")))


# ---- a state machine on the interpreter -----------------------------------------------------
def test_the_docstring_state_machine():
    snapshots: list[tuple[int, bytes]] = []
    store = KVStore(snapshot_entries=3, snapshot_sink=lambda i, d: snapshots.append((i, d)))
    payloads = [
        store.encode(Put(b"a", b"1")),
        b"",
        store.encode(Put(b"b", b"2")),
        store.encode(Delete(b"a")),
        store.encode(Delete(b"zz")),
    ]
    entries = encode_entries(1, 1, payloads, [0, KIND_NOOP, 0, 0, 0])
    assert store.apply_batch(entries) == [None, None, None, b"1", None]
    assert store.data == {b"b": b"2"}
    assert [index for index, _ in snapshots] == [5]
    log = MemoryLogStorage()
    log.append(entries)
    restarted = KVStore()
    at_three = msgpack.packb({b"a": b"1", b"b": b"2"})
    restarted.recover(log, 5, Snapshot(SnapshotMeta(3, 1, (1,)), at_three))
    assert restarted.data == store.data and restarted.applied_index == 5


def docstring_blocks(text: str) -> list[str]:
    """The literal blocks (after a line ending in ``::``) of a reStructuredText docstring."""
    blocks, current, inside = [], [], False
    for line in text.splitlines():
        if inside and (not line.strip() or line.startswith("    ")):
            current.append(line[4:])
            continue
        if current:
            blocks.append(textwrap.dedent("\n".join(current)))
            current = []
        inside = line.rstrip().endswith("::")
    if current:
        blocks.append(textwrap.dedent("\n".join(current)))
    return blocks


def test_the_module_docstring_examples_run():
    namespace = {
        "Command": Command,
        "CommandInterpreter": CommandInterpreter,
        "MemoryStateMachine": MemoryStateMachine,
        "handles": handles,
        "msgpack": msgpack,
    }
    declarations, state_machine = docstring_blocks(interpreter_module.__doc__)
    exec(declarations, namespace)
    exec(state_machine, namespace)
    put, delete = namespace["Put"], namespace["Delete"]
    store = namespace["KVStore"](snapshot_entries=2, snapshot_sink=lambda i, d: None)
    entries = encode_entries(1, 1, [store.encode(put(b"k", b"v")), store.encode(delete(b"k"))])
    assert store.apply_batch(entries) == [None, b"v"] and store.data == {}
    assert store.snapshot_index == 2


def test_a_malformed_committed_command_stops_the_state_machine():
    store = KVStore()
    with pytest.raises(MalformedCommandError):
        store.apply_batch(encode_entries(1, 1, [b"\x92\x01"]))
    with pytest.raises(InvariantError):
        store.apply_batch(encode_entries(1, 1, [store.encode(Put(b"a", b"1"))]))


def test_handlers_are_per_instance():
    first, second = KVStore(), KVStore()
    first.apply(1, memoryview(first.encode(Put(b"k", b"v"))))
    assert first.data == {b"k": b"v"} and second.data == {}
