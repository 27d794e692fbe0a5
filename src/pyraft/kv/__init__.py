"""A replicated key-value store on the memory state machine, with exactly-once client
sessions (Raft thesis chapter 6); see :mod:`pyraft.kv.machine`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what type checkers see; at run time __getattr__ imports on first use
    from pyraft.kv.machine import (
        SESSION_TTL_ENTRIES_DEFAULT,
        SESSIONS_MAX_DEFAULT,
        CasResult,
        CompareAndSet,
        Delete,
        Get,
        KeepAlive,
        KVClientSession,
        KVCommand,
        KVStateMachine,
        MalformedRequest,
        OpenSession,
        Put,
        Rejected,
        RequestPendingError,
        SessionExpired,
        SessionInfo,
        SessionOpened,
        SnapshotFormatError,
        StaleRequest,
    )

__all__ = [
    "SESSIONS_MAX_DEFAULT",
    "SESSION_TTL_ENTRIES_DEFAULT",
    "CasResult",
    "CompareAndSet",
    "Delete",
    "Get",
    "KVClientSession",
    "KVCommand",
    "KVStateMachine",
    "KeepAlive",
    "MalformedRequest",
    "OpenSession",
    "Put",
    "Rejected",
    "RequestPendingError",
    "SessionExpired",
    "SessionInfo",
    "SessionOpened",
    "SnapshotFormatError",
    "StaleRequest",
]


def __getattr__(name: str) -> object:
    # ``pyraft.kv.KVStateMachine`` and the rest without importing the state machine (and the
    # runtime, numpy) for every module of this package: ``pyraft kv get`` is a client
    if name in __all__:
        from pyraft.kv import machine

        return getattr(machine, name)
    raise AttributeError(f"module 'pyraft.kv' has no attribute {name!r}")
