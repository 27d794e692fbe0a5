"""Hard state storage: the current term, the vote cast in it, and the commit hint.

Raft figure 2 requires ``currentTerm`` and ``votedFor`` to be on stable storage before the
node answers any RPC that depends on them: a node that forgets its vote after a crash could
vote twice in one term and let two leaders be elected (Raft thesis 3.4). Hence:

- ``save`` is durable when it returns (atomic replacement, see ``pyraft.storage.files``);
- a missing file is a fresh node (``HardState()``), but a damaged one is a
  ``CorruptStateError``, never silently reset to zero;
- lowering the term, or changing the vote within a term, is refused with ``InvariantError``:
  the core never asks for it, so a request to do so is a bug in the caller.

``commit`` is only a hint (safe to lose, it is re-learned from the leader); it is stored with
the rest but not checked beyond being non-negative.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

import msgpack

from pyraft.core.messages import HardState
from pyraft.errors import CorruptStateError, invariant
from pyraft.storage.files import (
    atomic_write,
    ensure_directory,
    pack_checked,
    read_checked,
    remove_temp_files,
)

__all__ = [
    "HARD_STATE_FILE",
    "FileHardStateStore",
    "HardStateStore",
    "MemoryHardStateStore",
    "check_hard_state_transition",
]

#: Name of the hard state file inside the store's directory.
HARD_STATE_FILE = "hardstate"
_KIND = b"HARD"
_FIELDS = ("term", "vote", "commit")


@runtime_checkable
class HardStateStore(Protocol):
    def load(self) -> HardState:
        """The stored hard state (``HardState()`` when nothing was ever saved)."""
        ...

    def save(self, state: HardState) -> None:
        """Store ``state``; durable when this returns."""
        ...


def check_hard_state_transition(current: HardState, new: HardState) -> None:
    """Raise ``InvariantError`` unless ``new`` may replace ``current``.

    Terms never decrease; within one term a vote, once cast, never changes (Raft figure 2:
    "votedFor: candidateId that received vote in current term").
    """
    for name in _FIELDS:
        value = getattr(new, name)
        invariant(
            isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 64,
            f"hard state {name} must be an integer in [0, 2**64), not {value!r}",
        )
    invariant(
        new.term >= current.term,
        f"hard state term would go back from {current.term} to {new.term}",
    )
    invariant(
        new.term != current.term or current.vote == 0 or new.vote == current.vote,
        f"hard state vote in term {new.term} would change from {current.vote} to {new.vote}",
    )


class MemoryHardStateStore:
    """A hard state kept in memory (tests, the simulator, consensus-only nodes)."""

    def __init__(self, initial: HardState | None = None) -> None:
        #: The last saved state; only ever replaced through ``check_hard_state_transition``.
        self._state = HardState()
        if initial is not None:
            self.save(initial)

    def load(self) -> HardState:
        return self._state

    def save(self, state: HardState) -> None:
        check_hard_state_transition(self._state, state)
        self._state = state


def _encode(state: HardState) -> bytes:
    return pack_checked(
        _KIND, msgpack.packb({"term": state.term, "vote": state.vote, "commit": state.commit})
    )


def _decode(path: str, payload: bytes) -> HardState:
    try:
        record = msgpack.unpackb(payload)
    except Exception as error:  # msgpack raises several unrelated types
        raise CorruptStateError(f"undecodable hard state ({error})", path) from error
    if not isinstance(record, dict) or sorted(record) != sorted(_FIELDS):
        raise CorruptStateError(f"hard state has unexpected fields: {record!r}", path)
    for name in _FIELDS:
        value = record[name]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
            raise CorruptStateError(f"hard state {name} is invalid: {value!r}", path)
    return HardState(term=record["term"], vote=record["vote"], commit=record["commit"])


class FileHardStateStore:
    """A hard state kept in ``<directory>/hardstate``, a checked file replaced atomically.

    Opening creates the directory if needed and removes temporary files a crash left behind;
    the file itself is read by ``load`` (or by the first ``save``, which needs it to check the
    transition).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        #: Absolute path of the store's directory.
        self.directory = ensure_directory(directory)
        #: Absolute path of the hard state file.
        self.path = os.path.join(self.directory, HARD_STATE_FILE)
        remove_temp_files(self.directory, HARD_STATE_FILE + ".")
        #: What the file holds, once read or written by this store; None until then.
        self._state: HardState | None = None

    def load(self) -> HardState:
        """Read and verify the file; ``HardState()`` when it does not exist."""
        payload = read_checked(self.path, _KIND)
        self._state = HardState() if payload is None else _decode(self.path, payload)
        return self._state

    def save(self, state: HardState) -> None:
        """Replace the stored state by ``state`` durably (nothing is written when unchanged)."""
        current = self._state if self._state is not None else self.load()
        check_hard_state_transition(current, state)
        if state == current:
            return  # already durable
        try:
            atomic_write(self.path, _encode(state))
        except BaseException:
            # The rename may have happened before the failure (a failed directory sync):
            # re-read the file before the next transition check rather than guess.
            self._state = None
            raise
        self._state = state
