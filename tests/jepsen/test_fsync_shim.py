"""The slow-disk shim: compiled with gcc, loaded with LD_PRELOAD, it interposes the
``fdatasync`` that the compiled WAL (``raftcore._wal``, calling libc) issues on every sync, and
the delay follows its control file at run time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from pyraft.testing.jepsen import FSYNC_DELAY_ENV, build_fsync_shim

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                                reason="needs a C compiler")

# Appends and syncs a WAL, timing each sync; switches the delay file between syncs.
WRITER = textwrap.dedent(
    """
    import sys, time
    from raftcore.framing import encode_entries
    from raftcore.wal import WriteAheadLog

    log = WriteAheadLog(sys.argv[1], sync="always")
    control = sys.argv[2]
    for index, delay_us in enumerate([0, 250000, 250000, 0], start=1):
        with open(control, "w") as f:
            f.write(str(delay_us))
        log.append(encode_entries(index, 1, [b"x" * 100]))
        started = time.monotonic()
        log.sync()
        print(delay_us, time.monotonic() - started, flush=True)
    log.close()
    """
)


def test_the_shim_delays_the_wal_syncs_of_a_process(tmp_path):
    library = build_fsync_shim(str(tmp_path))
    symbols = subprocess.run(["nm", "-D", "--defined-only", library], capture_output=True,
                             text=True, timeout=60).stdout if shutil.which("nm") else ""
    if symbols:
        assert " fdatasync" in symbols and " fsync" in symbols
    env = dict(os.environ, LD_PRELOAD=library, **{FSYNC_DELAY_ENV: str(tmp_path / "delay")})
    done = subprocess.run([sys.executable, "-c", WRITER, str(tmp_path / "wal"),
                           str(tmp_path / "delay")], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    timings = [line.split() for line in done.stdout.split("\n") if line]
    assert len(timings) == 4
    delayed = [float(seconds) for delay, seconds in timings if delay != "0"]
    # a lower bound only: each delayed sync slept at least its 250 ms, so the libc symbol
    # the compiled WAL calls is the shim's
    assert all(seconds >= 0.25 for seconds in delayed), timings


def test_a_broken_compiler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="gcc"):
        build_fsync_shim(str(tmp_path))
