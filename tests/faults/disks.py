"""Disks that fill up, for in-process tests: a small tmpfs per member when this process may
mount one (root), otherwise an injected ``ENOSPC`` at the storage boundary.

``Disk.fill()`` makes the disk full, ``Disk.free()`` gives the space back. With a tmpfs the
errors are the kernel's own (the WAL's preallocation, writes of snapshots and hard state);
with injection (or with ``PYRAFT_TEST_INJECT_ENOSPC=1``), ``FaultyLogStorage`` raises the
``StorageFullError`` that ``pyraft.storage.files.storage_error`` makes of ``ENOSPC`` from every
write it is asked to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

from pyraft.storage.files import storage_error
from pyraft.storage.log import DurableLogStorage
from tests.faults.nodes import fill, mount_tmpfs, unmount


class Disk:
    """One member's disk at ``path`` (a directory that may be full or not)."""

    def __init__(self, path: Path, size: str = "4m") -> None:
        self.path = path
        # PYRAFT_TEST_INJECT_ENOSPC=1 takes the injected path even where mounting works
        self.mounted = not os.environ.get("PYRAFT_TEST_INJECT_ENOSPC") and mount_tmpfs(path, size)
        path.mkdir(parents=True, exist_ok=True)
        #: True while an injected disk is full (never set for a tmpfs: it really fills)
        self.injected_full = False
        self._filler: Path | None = None

    @property
    def mode(self) -> str:
        return "tmpfs" if self.mounted else "injected"

    def fill(self) -> None:
        if self.mounted:
            self._filler = fill(self.path)
        else:
            self.injected_full = True

    def free(self) -> None:
        if self._filler is not None:
            self._filler.unlink()
            self._filler = None
        self.injected_full = False

    def check(self, action: str, path: str) -> None:
        """Raise the full-disk error when an injected disk is full."""
        if self.injected_full:
            raise storage_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), action, path)

    def close(self) -> None:
        if self.mounted:
            try:
                unmount(self.path)
            except subprocess.CalledProcessError:  # still busy (a failed test left a file
                subprocess.run(["umount", "-l", str(self.path)], check=True,  # open): detach
                               capture_output=True, timeout=30)
            self.mounted = False
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.path)


class FaultyLogStorage(DurableLogStorage):
    """``DurableLogStorage`` on a ``Disk``: every write checks the disk first."""

    def __init__(self, disk: Disk, *args, **kwargs) -> None:
        self.disk = disk
        super().__init__(disk.path / "member", *args, **kwargs)

    def set_hard_state(self, hard_state):
        saved = self._saved
        if hard_state.term != saved.term or hard_state.vote != saved.vote:
            self.disk.check("cannot write", str(self.state.path))
        return super().set_hard_state(hard_state)

    def append(self, batch):
        if len(batch):
            self.disk.check("cannot append to the log", self.wal.directory)
        return super().append(batch)

    def sync(self):
        self.disk.check("cannot sync the log", self.wal.directory)
        return super().sync()

    def apply_snapshot(self, snapshot, **options):
        self.disk.check("cannot write snapshot", self.snapshots.directory)
        return super().apply_snapshot(snapshot, **options)

    def create_snapshot(self, index, data, configuration):
        self.disk.check("cannot write snapshot", self.snapshots.directory)
        return super().create_snapshot(index, data, configuration)
