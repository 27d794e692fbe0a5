"""Smoke tests of an installation: the compiled kernels load and work, a cluster commits.

Valid against the source tree (``PYTHONPATH=src pytest tests/smoke``) and against an installed
wheel, run from a directory outside the checkout (``tests/packaging/test_wheel.py`` and
cibuildwheel's test command do that). With ``PYRAFT_SMOKE_INSTALLED=1`` the tests also require that
``raftcore`` and ``pyraft`` come from site-packages, not from a ``src/`` directory, and that
the ``pyraft`` console script is installed beside the interpreter.

The file needs only pytest and the package's own dependencies, and no ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import msgpack
import pytest

import pyraft
import raftcore
from pyraft.storage.state_machine import MemoryStateMachine
from pyraft.testing.cluster import leader_of, memory_cluster, run_on_fresh_loop
from pyraft.transport.memory import MemoryNetwork
from raftcore import framing
from raftcore.crc import crc32c
from raftcore.wal import WriteAheadLog

INSTALLED = os.environ.get("PYRAFT_SMOKE_INSTALLED", "") not in ("", "0")
KERNELS = ("crc", "framing", "index", "phi", "wal")
# RFC 3720 appendix B.4, plus the standard "check" input of CRC-32C
CRC_VECTORS = [
    (b"", 0x00000000),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
    (b"123456789", 0xE3069283),
]
COMMAND_TIMEOUT_S = 60


def _site_directories() -> list[Path]:
    paths = sysconfig.get_paths()
    return [Path(paths[key]).resolve() for key in ("purelib", "platlib")]


def test_the_compiled_kernels_are_loaded():
    assert not raftcore.USE_TWINS, "PYRAFT_NO_EXTENSIONS is set: this run tests the twins"
    extension_suffixes = (".so", ".pyd")
    for name in KERNELS:
        module = __import__(f"raftcore._{name}", fromlist=["_"])
        assert module.__file__ is not None and module.__file__.endswith(extension_suffixes), (
            f"raftcore._{name} is not a compiled extension: {module.__file__}")
        if name != "wal":  # the WAL has no twin, so its facade has no IMPLEMENTATION switch
            facade = __import__(f"raftcore.{name}", fromlist=["IMPLEMENTATION"])
            assert facade.IMPLEMENTATION == "compiled", (name, facade.IMPLEMENTATION)


@pytest.mark.skipif(not INSTALLED, reason="source-tree run: PYRAFT_SMOKE_INSTALLED is not set")
def test_packages_come_from_site_packages_not_a_checkout():
    sites = _site_directories()
    for module in (raftcore, pyraft):
        location = Path(module.__file__).resolve()
        assert any(site in location.parents for site in sites), (
            f"{module.__name__} imported from {location}, not from {sites}")


@pytest.mark.parametrize(("data", "expected"), CRC_VECTORS)
def test_crc32c_known_answers(data, expected):
    assert crc32c(data) == expected
    cut = len(data) // 3
    assert crc32c(data[cut:], crc32c(data[:cut])) == expected  # chaining


def test_entry_records_and_frames_round_trip():
    payloads = [b"first", b"", bytes(range(256)) * 3]
    batch = framing.encode_entries(7, [2, 2, 3], payloads, kinds=framing.KIND_COMMAND)
    decoded = framing.decode_entries(batch.tobytes(), 7)
    assert (decoded.first_index, decoded.last_index, decoded.last_term) == (7, 9, 3)
    assert [bytes(p) for p in decoded.payloads()] == payloads
    damaged = bytearray(batch.tobytes())
    damaged[-1] ^= 0x01
    with pytest.raises(raftcore.CorruptRecordError):
        framing.decode_entries(bytes(damaged), 7)

    stream = framing.encode_frame(5, b"hello") + framing.encode_frame(6, b"")
    decoder = framing.FrameDecoder()
    frames = decoder.feed(stream[:3]) + decoder.feed(stream[3:])
    assert frames == [(5, b"hello"), (6, b"")]
    assert decoder.buffered == 0


def test_wal_append_and_reopen(tmp_path):
    payloads = [f"entry {i}".encode() for i in range(1, 21)]
    with WriteAheadLog(tmp_path / "wal", cluster_id=11) as log:
        log.append(framing.encode_entries(1, 1, payloads[:10]))
        log.append(framing.encode_entries(11, 2, payloads[10:]))
        log.sync()
        assert log.durable_index() == 20
    with WriteAheadLog(tmp_path / "wal", cluster_id=11) as log:
        assert (log.first_index(), log.last_index(), log.last_term()) == (1, 20, 2)
        assert (log.term_at(10), log.term_at(11)) == (1, 2)
        assert log.recovery.torn_bytes == 0
        assert [bytes(p) for p in log.read(1, 21).payloads()] == payloads
    with pytest.raises(raftcore.WalClusterMismatchError):
        WriteAheadLog(tmp_path / "wal", cluster_id=12)


class Journal(MemoryStateMachine):
    """Keeps every applied command; ``apply`` returns how many it has seen."""

    def __init__(self, **options):
        super().__init__(**options)
        self.entries: list[bytes] = []

    def apply(self, index, command):
        self.entries.append(bytes(command))
        return len(self.entries)

    def build_snapshot(self):
        return msgpack.packb(self.entries)

    def restore_snapshot(self, data):
        self.entries = msgpack.unpackb(data) if data else []


LOOPS = ["asyncio"] + (["uvloop"] if sys.platform in ("linux", "darwin") else [])


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_three_members_commit_writes(loop_kind):
    writes = [f"write {i}".encode() for i in range(30)]

    async def body():
        async with memory_cluster(MemoryNetwork(through_codec=True), machine=Journal) as members:
            leader = await leader_of(members, timeout=COMMAND_TIMEOUT_S)
            results = await asyncio.wait_for(
                asyncio.gather(*[leader.replicate(w) for w in writes]), COMMAND_TIMEOUT_S)
            assert sorted(results) == list(range(1, len(writes) + 1))
            target = leader.commit_index
            deadline = time.monotonic() + COMMAND_TIMEOUT_S
            while min(m.applied_index for m in members) < target:
                assert time.monotonic() < deadline, [m.applied_index for m in members]
                await asyncio.sleep(0.01)
            for member in members:
                assert member.state_machine.entries == leader.state_machine.entries
                assert sorted(member.state_machine.entries) == sorted(writes)

    run_on_fresh_loop(body, loop_kind)


def _console_script() -> str | None:
    """The ``pyraft`` script installed beside this interpreter, if any."""
    bindir = Path(sysconfig.get_path("scripts"))
    for name in ("pyraft", "pyraft.exe"):
        if (bindir / name).is_file():
            return str(bindir / name)
    return None


def _run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                          check=False)
    assert done.returncode == 0, f"{command} exit {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


def _check_info(output: str) -> None:
    facts = json.loads(output)
    assert facts["pyraft"] == pyraft.__version__ and facts["raftcore"] == raftcore.__version__
    assert set(facts["kernels"].values()) == {"compiled"}, facts["kernels"]
    # the core and the write path, compiled from their .py files (pyraft._compiled.MODULES)
    assert facts["build"] == "compiled"
    assert set(facts["compiled"].values()) == {"compiled"}, facts["compiled"]


def test_python_dash_m_pyraft_info_reports_compiled_kernels():
    _check_info(_run([sys.executable, "-m", "pyraft", "info", "--json"]))


def test_the_core_alone_benchmark_runs_from_the_package():
    # the suite's core-alone figure (issue 18) comes from the package, not from the
    # checkout's benchmarks/: an installed wheel measures it too, in both builds
    for pure in (False, True):
        env = {name: value for name, value in os.environ.items() if name != "PYRAFT_PURE_CORE"}
        if pure:
            env["PYRAFT_PURE_CORE"] = "1"
        done = subprocess.run([sys.executable, "-m", "pyraft.bench.core", "--json", "--batches",
                               "20", "--runs", "1"], capture_output=True, text=True, env=env,
                              timeout=COMMAND_TIMEOUT_S, check=False, cwd=tempfile.gettempdir())
        assert done.returncode == 0, done.stderr[-2000:]
        figure = json.loads(done.stdout.strip().splitlines()[-1])
        assert figure["median_entries_per_cpu_s"] > 0 and figure["batches"] == 20


@pytest.mark.skipif(not INSTALLED and _console_script() is None,
                    reason="source-tree run without an installed pyraft script")
def test_console_script_runs():
    script = _console_script()
    assert script is not None, f"no pyraft script in {sysconfig.get_path('scripts')}"
    _check_info(_run([script, "info", "--json"]))
