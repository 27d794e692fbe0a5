"""Crash tests with real processes: a writer appends and syncs under load and is killed with
SIGKILL at random moments; on reopen every index it reported durable is present and intact.

The writer prints the durable index after each sync. A line printed is a promise made
(a follower would have acknowledged it); the test checks every promise survived.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

from raftcore.wal import WriteAheadLog

WRITER = textwrap.dedent(
    """
    import os, sys
    from raftcore.wal import WriteAheadLog
    from raftcore.framing import encode_entries

    def payload(index):
        return index.to_bytes(8, "little") * (1 + index % 40)

    log = WriteAheadLog(sys.argv[1], segment_bytes_max=64 * 1024, sync="always")
    term = int(sys.argv[2])
    print("ready", log.last_index(), flush=True)
    while True:
        first = log.last_index() + 1
        count = 1 + first % 17
        log.append(encode_entries(first, term, [payload(first + i) for i in range(count)]))
        print(log.sync(), flush=True)
    """
)


def payload(index: int) -> bytes:
    return index.to_bytes(8, "little") * (1 + index % 40)


def test_every_acknowledged_index_survives_sigkill(tmp_path):
    rng = random.Random(20261127)
    directory = str(tmp_path / "wal")
    env = dict(os.environ)
    promised = 0
    for trial in range(12):
        term = trial + 1
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, directory, str(term)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        try:
            first_line = writer.stdout.readline()
            assert first_line.startswith("ready"), writer.stderr.read()
            deadline = time.monotonic() + rng.uniform(0.02, 0.25)
            while time.monotonic() < deadline:
                line = writer.stdout.readline()
                if not line:
                    break
                promised = max(promised, int(line))
        finally:
            writer.send_signal(signal.SIGKILL)  # only the process this test started
            writer.wait(timeout=10)
            writer.stdout.close()
            writer.stderr.close()
        with WriteAheadLog(directory, segment_bytes_max=64 * 1024) as log:
            assert log.last_index() >= promised, f"trial {trial}: lost acknowledged entries"
            batch = log.read(max(log.first_index(), promised - 50), promised + 1)
            for index, _term, _kind, data in batch:
                assert bytes(data) == payload(index)
    assert promised > 100  # the writer really ran under load
