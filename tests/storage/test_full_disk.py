"""A real full disk: a small tmpfs is mounted for the test (root only; this machine and CI
run as root). The log refuses writes with StorageFullError, loses nothing durable, and
resumes once space returns."""

from __future__ import annotations

import os
import subprocess

import pytest

from pyraft.core import Configuration
from pyraft.errors import StorageFullError
from pyraft.storage.log import DurableLogStorage
from raftcore.framing import encode_entries

VOTERS = Configuration(frozenset({1}))


@pytest.fixture
def tiny_disk(tmp_path):
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=768k", "tmpfs", str(mountpoint)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}); the ENOSPC path "
                    "is still covered by test_durable_log.py with a failing WAL")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_full_disk_refuses_writes_keeps_data_and_recovers(tiny_disk):
    storage = DurableLogStorage(tiny_disk / "node", VOTERS, segment_bytes_max=64 * 1024)
    filler = tiny_disk / "filler"
    with open(filler, "wb") as f:  # leave room for only a few segments
        f.write(bytes(512 * 1024))
    payload = bytes(1000)
    acknowledged = 0
    with pytest.raises(StorageFullError) as info:
        for _ in range(10_000):
            first = storage.last_index() + 1
            storage.append(encode_entries(first, 1, [payload] * 8))
            acknowledged = storage.sync()
    assert info.value.errno == 28 and "node" in (info.value.path or "")
    assert acknowledged > 0
    # nothing acknowledged is lost, before or after a restart
    assert storage.entries(1, acknowledged + 1).last_index == acknowledged
    storage.close()
    storage = DurableLogStorage(tiny_disk / "node", VOTERS, segment_bytes_max=64 * 1024)
    assert storage.last_index() >= acknowledged
    batch = storage.entries(1, acknowledged + 1)
    assert all(bytes(p) == payload for p in batch.payloads())
    # space returns: writes resume
    os.unlink(filler)
    first = storage.last_index() + 1
    storage.append(encode_entries(first, 1, [payload] * 8))
    assert storage.sync() == first + 7
    storage.close()
