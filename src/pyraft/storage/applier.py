"""What every state machine does per committed batch, below the user's code: ``Applier``.

``StateMachine`` (``pyraft.storage.state_machine``) extends it; users extend those. The
runtime calls ``apply_batch`` for every committed batch on every member, so this part is
compiled from this very file (``pyraft._compiled``; typed by ``applier.pxd``): the checks,
the apply lock and the hand-over to the user's ``apply_commands`` are C, and the state they
guard is C fields. The rest of a state machine (recovery, snapshots, the compaction
policies, the worker thread) stays in ``state_machine.py``, interpreted: it runs per snapshot,
not per write.

The fields (set by ``StateMachine.__init__``), guarded by ``_lock``, the apply lock:

- ``_applied_index``: the last entry whose effects are in the state; a batch must start at
  ``_applied_index + 1``;
- ``_snapshot_index``: the last entry covered by a snapshot handed to the sink, restored or
  installed (``<= _applied_index``);
- ``_broken``: why the state can no longer be trusted (the user's ``apply`` raised), or
  ``None``;
- ``_closed``: ``close()`` was called;
- ``_plain_entries``: the class keeps ``Applier._apply_entries`` (a subclass overriding it
  is called through the lookup an override needs; the compiled build skips it otherwise:
  with a Python subclass's instance dictionary changing every batch, that lookup is made
  anew each time);
- ``_commands``: the class's ``apply_commands`` as a plain function, called with the state
  machine (no bound method made and no lookup per batch: a Python subclass's method, found
  through the instance on every batch otherwise); None: the class's, looked up per batch;
- ``snapshot_entries``: how many entries applied since ``_snapshot_index`` make the hook
  ``_after_apply`` worth calling (0, the default: after every batch). Every compaction
  policy waits for at least that many, counted from ``_snapshot_index`` or from a later
  index, so below it no policy has anything to do: the hook, interpreted code, is called
  only from there.

``_failure`` (guarded by ``_cv``, a ``threading.Condition``) is a compaction exception not yet
reported.
"""

from __future__ import annotations

from typing import Any

from pyraft.errors import InvariantError, invariant
from raftcore.framing import KIND_COMMAND, EntryBatch

__all__ = ["Applier"]


class Applier:
    """The per-batch part of a state machine (module docstring); ``StateMachine`` is the
    class to extend."""

    _lock: Any
    _cv: Any
    _applied_index: int
    _snapshot_index: int
    _broken: str | None
    _failure: BaseException | None
    _closed: bool
    snapshot_entries: int
    _plain_entries: bool
    _commands: Any

    def apply_batch(self, batch: EntryBatch) -> list[object]:
        """Apply a committed batch; one result per entry (``None`` for no-op/configuration)."""
        if self._failure is not None:  # read without the lock, as ``_raise_failure`` does
            self._raise_failure()
        count = len(batch)
        if not count:
            return []
        lock = self._lock
        lock.acquire()
        try:
            first = batch.first_index
            if self._closed or self._broken is not None or first != self._applied_index + 1:
                self._refuse(batch)  # raises (its message formatted only then)
            try:
                if self._plain_entries:  # not overridden: a C call, no lookup (compiled)
                    results = Applier._apply_entries(self, batch)
                else:
                    results = self._apply_entries(batch)
            except BaseException:
                self._broken = f"applying entries {first}..{batch.last_index} raised"
                raise
            if len(results) != count:
                raise InvariantError(f"{len(results)} results for a batch of {count} entries")
            self._applied_index = batch.last_index
            if self._applied_index - self._snapshot_index >= self.snapshot_entries:
                self._after_apply()
        finally:
            lock.release()
        return results

    def _refuse(self, batch: EntryBatch) -> None:
        """Why ``batch`` cannot be applied now (under the apply lock): always raises."""
        if self._closed:
            raise InvariantError("apply_batch() after close()")
        if self._broken is not None:
            raise InvariantError(f"the state machine is unusable: {self._broken}")
        raise InvariantError(
            f"batch starts at {batch.first_index} but the applied index is {self._applied_index}")

    def apply_commands(self, batch: EntryBatch) -> list[object]:
        """Apply a batch holding only command entries: ``StateMachine`` implements and
        documents it (users may override it there)."""
        raise NotImplementedError(f"{type(self).__name__} must implement apply_commands()")

    def _apply_entries(self, batch: EntryBatch) -> list[object]:
        """Hand the runs of command entries to ``apply_commands``; ``None`` for the rest."""
        count = len(batch)
        commands = self._commands
        if commands is None:  # not noted at start: the class's, looked up now
            commands = type(self).apply_commands
        if batch.count_kind(KIND_COMMAND) == count:  # counted in C (a C call), no array built
            applied = commands(self, batch)
            return applied if isinstance(applied, list) else list(applied)
        first = batch.first_index
        results: list[object] = [None] * count
        start = 0
        others = [i for i, kind in enumerate(batch.kinds.tolist()) if kind != KIND_COMMAND]
        for position in [*others, count]:
            if position > start:
                part = commands(self, batch.slice(first + start, first + position))
                part = part if isinstance(part, list) else list(part)
                invariant(
                    len(part) == position - start,
                    f"apply_commands returned {len(part)} results for {position - start} entries",
                )
                results[start:position] = part
            start = position + 1
        return results

    def _after_apply(self) -> None:
        """Called under the apply lock after a batch that brings the entries applied since
        ``_snapshot_index`` to ``snapshot_entries`` or more: compaction policies hook in
        here."""
        return

    def _raise_failure(self) -> None:
        if self._failure is None:
            # the common case, read without the lock (this runs per applied batch): a
            # failure a worker stores meanwhile, under the lock, is raised by the next call
            return
        with self._cv:
            failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
