"""Typed commands, declared once, encoded compactly, dispatched to handlers by id.

A command is a class with a numeric id and typed fields, declared by subclassing
:class:`Command` (or a family of commands, see below) with the id as a class keyword::

    class KV(Command):          # a family: ids are unique within it
        pass

    class Put(KV, id=1):
        key: bytes
        value: bytes

    class Delete(KV, id=2):
        key: bytes

The declaration turns the class into a frozen dataclass (``Put(key=b"k", value=b"v")``,
equality, hashing, repr) and checks it: the id is an integer in ``[0, 2**32)`` not yet used
in the family (``TypeError`` otherwise), every field has a supported type (``TypeError``
otherwise), and a declared command cannot be subclassed. A subclass declared without an id
is a family: a separate id space, so unrelated modules do not collide. Commands declared
straight on ``Command`` share its id space.

Field types: ``int``, ``float``, ``bool``, ``str``, ``bytes``, ``None``, ``typing.Any``
(unchecked), ``list[T]``, ``tuple[T, ...]``, ``dict[K, V]`` (keys ``int``, ``str`` or
``bytes``) and ``T | None``. A ``float`` field accepts an ``int``; a ``bytes`` field accepts
any bytes-like object when encoding and holds ``bytes`` once decoded.

Wire format: one msgpack array ``[id, field1, field2, ...]`` in declaration order; a small id
costs one byte and the array header one more. A payload with fewer fields than declared
decodes when the missing trailing fields have defaults, so a command can grow by appending
fields with defaults.

:class:`CommandInterpreter` maps ids to handlers. Register a function with
``@interpreter.handler(Put)`` (called as ``function(command, index)``), or, in a subclass,
mark methods with ``@handles(Put)`` (called as ``self.method(command, index)``).
``encode(command)`` validates and encodes; ``decode(payload)`` gives back the command (an id
without a handler raises :class:`UnknownCommandError`; bytes that are not a well-formed
command raise :class:`MalformedCommandError`); ``dispatch(payload, index)`` decodes and calls
the handler, returning its result.

A memory state machine driven by the interpreter (see ``pyraft.storage.state_machine``)::

    class KVStore(MemoryStateMachine, CommandInterpreter):
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

and proposals are ``interpreter.encode(Put(key=b"k", value=b"v"))`` (any instance encodes:
``KVStore.encode`` works as well as an instance's).
"""

from __future__ import annotations

import dataclasses
import operator
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import msgpack

from pyraft.errors import PyraftError

__all__ = [
    "Command",
    "CommandError",
    "CommandInterpreter",
    "MalformedCommandError",
    "UnknownCommandError",
    "handles",
]

COMMAND_ID_MAX = 2**32 - 1

_Handler = TypeVar("_Handler", bound=Callable[..., Any])

if TYPE_CHECKING:  # declared commands are frozen dataclasses to type checkers too (PEP 681)
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**_options: object) -> Callable[[type], type]:
        return lambda cls: cls


class CommandError(PyraftError, ValueError):
    """A payload is not a command this interpreter can run."""


class UnknownCommandError(CommandError):
    """The payload names a command id without a handler; ``command_id`` is that id."""

    def __init__(self, command_id: int) -> None:
        super().__init__(f"no handler for command id {command_id}")
        self.command_id = command_id


class MalformedCommandError(CommandError):
    """The payload is not a well-formed command; ``reason`` says what is wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"malformed command: {reason}")
        self.reason = reason


class _Mismatch(Exception):
    """A value does not have the declared type (internal; turned into a typed error)."""


# ---- field types: one checker per annotation, built once at declaration ---------------------
# A checker takes a decoded (or to-be-encoded) value and returns it in its declared form, or
# raises _Mismatch naming what it expected.

_Checker = Callable[[object], object]


def _exact(kind: type, name: str) -> _Checker:
    def check(value: object) -> object:
        if type(value) is not kind:
            raise _Mismatch(f"expected {name}, got {type(value).__name__}")
        return value

    return check


def _check_float(value: object) -> object:
    kind = type(value)
    if kind is float:
        return value
    if kind is int:
        return float(value)  # type: ignore[arg-type]
    raise _Mismatch(f"expected float, got {kind.__name__}")


def _check_bytes(value: object) -> object:
    if type(value) is bytes:
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise _Mismatch(f"expected bytes, got {type(value).__name__}")


def _check_none(value: object) -> object:
    if value is not None:
        raise _Mismatch(f"expected None, got {type(value).__name__}")
    return None


def _check_any(value: object) -> object:
    return value


_SCALARS: dict[object, _Checker] = {
    int: _exact(int, "int"),
    bool: _exact(bool, "bool"),
    str: _exact(str, "str"),
    bytes: _check_bytes,
    float: _check_float,
    type(None): _check_none,
    None: _check_none,
    Any: _check_any,
}
_KEY_TYPES = (int, str, bytes)


def _constant(value: Any) -> Callable[[], Any]:
    """A field's default as a factory (every instance gets the same value)."""
    return lambda: value


def _no_values(_command: Any) -> tuple[()]:
    return ()


def _one_value(getter: Callable[[Any], Any]) -> Callable[[Any], tuple[Any]]:
    """The values of a one-field command as a tuple (``attrgetter`` of one name is bare)."""
    return lambda command: (getter(command),)


def _checker(annotation: object, where: str) -> _Checker:
    """The checker of a field annotation; ``TypeError`` for an unsupported one."""
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) != 1 or len(args) != 2:
            raise TypeError(f"{where}: only 'T | None' unions are supported, not {annotation}")
        inner = _checker(options[0], where)

        def check_optional(value: object) -> object:
            return None if value is None else inner(value)

        return check_optional
    if origin is list and len(args) == 1:
        item = _checker(args[0], where)

        def check_list(value: object) -> object:
            if type(value) not in (list, tuple):
                raise _Mismatch(f"expected a list, got {type(value).__name__}")
            return [item(v) for v in value]  # type: ignore[attr-defined]

        return check_list
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _checker(args[0], where)

        def check_tuple(value: object) -> object:
            if type(value) not in (list, tuple):
                raise _Mismatch(f"expected a tuple, got {type(value).__name__}")
            return tuple(item(v) for v in value)  # type: ignore[attr-defined]

        return check_tuple
    if origin is dict and len(args) == 2:
        if args[0] not in _KEY_TYPES:
            raise TypeError(f"{where}: dict keys must be int, str or bytes, not {args[0]}")
        key, item = _checker(args[0], where), _checker(args[1], where)

        def check_dict(value: object) -> object:
            if type(value) is not dict:
                raise _Mismatch(f"expected a dict, got {type(value).__name__}")
            return {key(k): item(v) for k, v in value.items()}  # type: ignore[attr-defined]

        return check_dict
    raise TypeError(f"{where}: unsupported field type {annotation!r}")


# ---- commands ---------------------------------------------------------------------------------
@dataclass_transform(frozen_default=True)
class Command:
    """Base of every command; see the module docstring for how to declare one.

    Class attributes set by the declaration:
    - ``command_id``: the id (``None`` for ``Command`` and families);
    - ``_family_commands``: on a family (and ``Command``), its commands by id;
    - ``_field_names`` / ``_checkers`` / ``_required``: the fields in order, their checkers,
      and how many leading fields have no default;
    - ``_defaults``: a factory per field with a default; ``_post_init``: whether the
      declaration defines ``__post_init__``.
    """

    __slots__ = ()

    command_id: ClassVar[int | None] = None
    _family_commands: ClassVar[dict[int, type[Command]]] = {}
    _field_names: ClassVar[tuple[str, ...]] = ()
    _checkers: ClassVar[tuple[_Checker, ...]] = ()
    _required: ClassVar[int] = 0
    _defaults: ClassVar[dict[str, Callable[[], object]]] = {}
    _post_init: ClassVar[bool] = False
    _values: ClassVar[Callable[[Command], tuple]]

    def __init_subclass__(cls, *, id: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__mro__[1:]:
            if issubclass(base, Command) and base.command_id is not None:
                raise TypeError(f"{cls.__name__}: command {base.__name__} cannot be subclassed")
        if id is None:
            cls._family_commands = {}
            return
        if type(id) is not int or not 0 <= id <= COMMAND_ID_MAX:
            raise TypeError(f"{cls.__name__}: a command id is an integer in [0, 2**32), not {id!r}")
        family = next(
            b for b in cls.__mro__[1:] if issubclass(b, Command) and "_family_commands" in vars(b)
        )
        taken = family._family_commands.get(id)
        if taken is not None:
            raise TypeError(
                f"{cls.__name__}: command id {id} is already {taken.__qualname__} "
                f"in the family {family.__qualname__}"
            )
        dataclasses.dataclass(frozen=True)(cls)
        try:
            hints = typing.get_type_hints(cls)
        except NameError as exc:
            raise TypeError(f"{cls.__name__}: a field type does not resolve ({exc})") from None
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        cls._field_names = tuple(f.name for f in fields)
        cls._checkers = tuple(_checker(hints[f.name], f"{cls.__name__}.{f.name}") for f in fields)
        cls._defaults = {}
        for f in fields:
            if f.default_factory is not dataclasses.MISSING:
                cls._defaults[f.name] = f.default_factory
            elif f.default is not dataclasses.MISSING:
                cls._defaults[f.name] = _constant(f.default)
        with_default = [f.name in cls._defaults for f in fields]
        cls._required = with_default.index(True) if True in with_default else len(fields)
        cls._post_init = hasattr(cls, "__post_init__")
        getter: Callable[[Any], Any] = operator.attrgetter(*cls._field_names) if fields \
            else _no_values
        cls._values = staticmethod(  # type: ignore[assignment]
            getter if len(fields) != 1 else _one_value(getter)
        )
        cls.command_id = id
        family._family_commands[id] = cls

    @classmethod
    def _from_fields(cls, values: list) -> Command:
        """Build from decoded field values (``values[0]`` is the id), checking each one.

        Fills the instance's ``__dict__`` directly (the frozen ``__init__`` costs twice as
        much); a ``__post_init__`` the declaration defines still runs, and a ``ValueError`` or
        ``TypeError`` from it makes the payload malformed.
        """
        count = len(values) - 1
        names = cls._field_names
        if not cls._required <= count <= len(names):
            raise MalformedCommandError(
                f"{cls.__name__} has {len(names)} fields ({cls._required} required), "
                f"the payload {count}"
            )
        command = object.__new__(cls)
        slots = command.__dict__
        for name, check, value in zip(names, cls._checkers, values[1:]):
            try:
                slots[name] = check(value)
            except _Mismatch as exc:
                raise MalformedCommandError(f"{cls.__name__}.{name}: {exc}") from None
        for name in names[count:]:
            slots[name] = cls._defaults[name]()
        if cls._post_init:
            try:
                command.__post_init__()  # type: ignore[attr-defined]
            except (ValueError, TypeError) as exc:
                raise MalformedCommandError(f"{cls.__name__}: {exc}") from None
        return command


def handles(command: type[Command]) -> Callable[[_Handler], _Handler]:
    """Mark a method of a :class:`CommandInterpreter` subclass as the handler of ``command``."""
    _check_command_class(command)

    def mark(method: _Handler) -> _Handler:
        method.__handles_command__ = command  # type: ignore[attr-defined]
        return method

    return mark


def _check_command_class(command: object) -> None:
    declared = isinstance(command, type) and issubclass(command, Command)
    if not declared or command.command_id is None:  # type: ignore[attr-defined]
        raise TypeError(f"{command!r} is not a declared command")


class CommandInterpreter:
    """Handlers by command id; encodes, decodes and dispatches commands.

    State: ``_handlers`` maps an id to ``(command class, handler)``; the class-level
    ``_method_handlers`` maps an id to ``(command class, method name)`` for ``@handles``
    methods (a subclass may replace an inherited one; two in one class is a ``TypeError``).
    """

    _method_handlers: ClassVar[dict[int, tuple[type[Command], str]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table = dict(cls._method_handlers)
        mine: dict[int, str] = {}
        for name, member in vars(cls).items():
            command = getattr(member, "__handles_command__", None)
            if command is None:
                continue
            if command.command_id in mine:
                raise TypeError(
                    f"{cls.__name__}: {mine[command.command_id]} and {name} both handle "
                    f"{command.__name__}"
                )
            mine[command.command_id] = name
            _check_same_id(table, command)
            table[command.command_id] = (command, name)
        cls._method_handlers = table

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._handlers: dict[int, tuple[type[Command], Callable[[Command, int], object]]] = {
            command_id: (command, getattr(self, name))
            for command_id, (command, name) in self._method_handlers.items()
        }

    @property
    def commands(self) -> dict[int, type[Command]]:
        """The commands this interpreter runs, by id."""
        return {command_id: entry[0] for command_id, entry in self._handlers.items()}

    def handler(self, command: type[Command]) -> Callable[[_Handler], _Handler]:
        """Register ``function(command, index)`` as the handler of ``command``."""
        _check_command_class(command)

        def register(function: _Handler) -> _Handler:
            if command.command_id in self._handlers:
                raise TypeError(f"command id {command.command_id} already has a handler")
            self._handlers[command.command_id] = (command, function)  # type: ignore[index]
            return function

        return register

    @staticmethod
    def encode(command: Command) -> bytes:
        """``[id, field...]`` as msgpack; ``TypeError`` when a field has the wrong type."""
        cls = type(command)
        if not isinstance(command, Command) or cls.command_id is None:
            raise TypeError(f"{command!r} is not a declared command")
        values = cls._values(command)
        for name, check, value in zip(cls._field_names, cls._checkers, values):
            try:
                check(value)
            except _Mismatch as exc:
                raise TypeError(f"{cls.__name__}.{name}: {exc}") from None
        return msgpack.packb([cls.command_id, *values])

    def decode(self, payload: bytes | bytearray | memoryview) -> Command:
        """The command ``payload`` encodes; a typed :class:`CommandError` otherwise."""
        try:
            values = msgpack.unpackb(payload, strict_map_key=False)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise MalformedCommandError(
                f"not one msgpack value ({type(exc).__name__}: {exc})"
            ) from None
        if type(values) is not list or not values or type(values[0]) is not int:
            raise MalformedCommandError("not an array starting with a command id")
        entry = self._handlers.get(values[0])
        if entry is None:
            raise UnknownCommandError(values[0])
        return entry[0]._from_fields(values)

    def dispatch(self, payload: bytes | bytearray | memoryview, index: int) -> object:
        """Decode ``payload`` and run its handler with the entry's ``index``."""
        command = self.decode(payload)
        return self._handlers[command.command_id][1](command, index)  # type: ignore[index]


def _check_same_id(table: dict[int, tuple[type[Command], str]], command: type[Command]) -> None:
    present = table.get(command.command_id)  # type: ignore[arg-type]
    if present is not None and present[0] is not command:
        raise TypeError(
            f"{command.__name__} and {present[0].__name__} share the id {command.command_id}"
        )
