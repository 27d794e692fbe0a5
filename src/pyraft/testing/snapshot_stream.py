"""Memory of a snapshot install between member processes (issue 15, finding 5).

A 3-member cluster on 127.0.0.1 whose state is one large file (``BlobStore``, a disk state
machine: a ``grow`` command appends pseudo-random bytes generated from a seed, so a command
is 12 bytes however much state it makes). Members 1 and 2 start, the leader grows the state
to ``snapshot_bytes`` and compacts; member 3 then starts empty and can only catch up by an
InstallSnapshot of the whole store. ``measure_install`` reports the rise of the resident set
(``VmHWM`` after the install minus ``VmRSS`` before it, the high-water mark reset through
``/proc/<pid>/clear_refs`` where the kernel allows) of the leader and of member 3: what the
transfer itself cost each side in memory.

Used by ``tests/cluster/test_snapshot_memory.py`` (a small size) and ``pyraft bench
snapshot`` (1 GiB). Member processes: ``python -m pyraft.testing.snapshot_stream member``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

from pyraft.storage.state_machine import DiskStateMachine

_GROW = struct.Struct(">IQ")  # bytes to append, seed
_PIECE_BYTES = 1 << 20
_STATE = struct.Struct(">QQ")  # persisted index, persisted size


class BlobStore(DiskStateMachine):
    """A store that is one file of bytes, its own snapshot (module docstring). ``size``: the
    bytes applied; the durable state (index and size) is in ``state`` beside the file."""

    def __init__(self, directory: str, **options) -> None:
        super().__init__(**options)
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "blob")
        self.state_path = os.path.join(directory, "state")
        self.persisted, self.size = 0, 0
        with contextlib.suppress(FileNotFoundError), open(self.state_path, "rb") as file:
            self.persisted, self.size = _STATE.unpack(file.read())
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        os.ftruncate(self.fd, self.size)  # what was applied after the last flush goes
        self.applied = self.persisted
        self.imports = 0

    def apply(self, index: int, command: memoryview) -> None:
        count, seed = _GROW.unpack(bytes(command))
        done = 0
        while done < count:  # generated and written a piece at a time: bounded memory
            piece = random.Random(seed * 1_000_003 + done).randbytes(
                min(_PIECE_BYTES, count - done))
            os.pwrite(self.fd, piece, self.size + done)
            done += len(piece)
        self.size += count
        self.applied = index

    def persisted_index(self) -> int:
        return self.persisted

    def flush(self) -> None:
        os.fsync(self.fd)
        self._save_state(self.applied, self.size)

    def export_snapshot(self):
        index, size = self.persisted, self.size
        yield _STATE.pack(index, size)
        for offset in range(0, size, _PIECE_BYTES):
            yield os.pread(self.fd, min(_PIECE_BYTES, size - offset), offset)

    def import_snapshot(self, chunks, index: int) -> None:
        temporary = self.path + ".import"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        header = b""
        written = 0
        try:
            for chunk in chunks:
                chunk = bytes(chunk)
                if len(header) < _STATE.size:
                    take = _STATE.size - len(header)
                    header, chunk = header + chunk[:take], chunk[take:]
                if chunk:
                    os.pwrite(fd, chunk, written)
                    written += len(chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        stored, size = _STATE.unpack(header)
        if stored != index or size != written:
            raise ValueError(f"snapshot of {written} bytes at {index}: header says "
                             f"{size} bytes at {stored}")
        os.replace(temporary, self.path)
        os.close(self.fd)
        self.fd = os.open(self.path, os.O_RDWR)
        self.size, self.applied = size, index
        self._save_state(index, size)
        self.imports += 1

    def _save_state(self, index: int, size: int) -> None:
        temporary = self.state_path + ".tmp"
        with open(temporary, "wb") as file:
            file.write(_STATE.pack(index, size))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.state_path)
        self.persisted = index

    def close(self) -> None:
        super().close()
        os.close(self.fd)


# ---- one member process ------------------------------------------------------------------------
async def _member(args: argparse.Namespace) -> None:
    from pyraft.cluster import RaftCluster
    from pyraft.config import ClusterConfig

    peers = {int(k): v for k, v in (p.split("=", 1) for p in args.peers.split(","))}
    config = ClusterConfig(member_id=args.id, listen=peers[args.id], peers=peers,
                           data_dir=os.path.join(args.data, "raft"), tick_ms=10,
                           election_timeout_ms_lower=300, election_timeout_ms_upper=600,
                           ).validate()
    machine = BlobStore(os.path.join(args.data, "store"), snapshot_entries=8)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    async with RaftCluster.from_config(config, state_machine=machine) as member:
        grown = False
        seed = 0
        while not stopping.is_set():
            if member.is_leader and not grown and args.grow_bytes:
                while machine.size < args.grow_bytes:
                    seed += 1
                    count = min(args.command_bytes, args.grow_bytes - machine.size)
                    await member.replicate(_GROW.pack(count, seed), timeout=60)
                machine.force_compaction()  # the log goes: a newcomer needs the snapshot
                grown = True
            status = {"applied": member.applied_index, "leader": member.is_leader,
                      "store_bytes": machine.size, "imports": machine.imports,
                      "grown": grown, "first_index": member.storage.first_index()}
            temporary = args.status + ".tmp"
            with open(temporary, "w") as file:
                json.dump(status, file)
            os.replace(temporary, args.status)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), 0.05)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pyraft.testing.snapshot_stream")
    parser.add_argument("role", choices=["member"])
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--peers", required=True, help="1=127.0.0.1:port,2=...")
    parser.add_argument("--data", required=True)
    parser.add_argument("--status", required=True)
    parser.add_argument("--grow-bytes", type=int, default=0)
    parser.add_argument("--command-bytes", type=int, default=8 << 20)
    parser.add_argument("--wait-for", default=None, help="start once this file exists")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    while args.wait_for and not os.path.exists(args.wait_for):
        time.sleep(0.01)
    asyncio.run(_member(args))
    return 0


# ---- the measurement ---------------------------------------------------------------------------
def _proc_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux >= 4.0); False if refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as file:
            file.write("5")
        return True
    except OSError:
        return False


def _read_status(path: str) -> dict:
    try:
        with open(path) as file:
            return json.load(file)
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def measure_install(snapshot_bytes: int, base: str | None = None,
                    timeout_s: float = 600.0) -> dict:
    """Run the scenario of the module docstring; returns the figures (sizes in bytes)."""
    from pyraft.testing.processes import free_port

    directory = tempfile.mkdtemp(prefix="snapshot-stream-", dir=base)
    peers = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3)}
    peer_arg = ",".join(f"{m}={a}" for m, a in peers.items())
    go = os.path.join(directory, "go-3")
    processes: dict[int, subprocess.Popen] = {}

    def status(member: int) -> dict:
        return _read_status(os.path.join(directory, f"status-{member}.json"))

    def wait(condition, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            for member, process in processes.items():
                if process.poll() is not None:
                    with open(os.path.join(directory, f"m{member}.log"), "rb") as log:
                        tail = log.read()[-2000:].decode(errors="replace")
                    raise RuntimeError(f"member {member} exited ({process.returncode}) "
                                       f"while waiting for {what}:\n{tail}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(0.02)

    try:
        for member in (1, 2, 3):
            command = [sys.executable, "-m", "pyraft.testing.snapshot_stream", "member",
                       "--id", str(member), "--peers", peer_arg,
                       "--data", os.path.join(directory, f"m{member}"),
                       "--status", os.path.join(directory, f"status-{member}.json")]
            if member != 3:
                command += ["--grow-bytes", str(snapshot_bytes)]
            else:
                command += ["--wait-for", go]
            with open(os.path.join(directory, f"m{member}.log"), "wb") as log:
                processes[member] = subprocess.Popen(command, stdout=log, stderr=log)
        started = time.perf_counter()
        wait(lambda: any(status(m).get("grown") for m in (1, 2)), "the state to grow")
        leader = next(m for m in (1, 2) if status(m).get("grown"))
        target = status(leader)["applied"]
        grow_seconds = time.perf_counter() - started
        time.sleep(0.5)  # member 3's interpreter has started and waits for the go file
        pids = {"leader": processes[leader].pid, "follower": processes[3].pid}
        before = {name: _proc_kib(pid, "VmRSS") for name, pid in pids.items()}
        reset = all(_reset_peak(pid) for pid in pids.values())
        started = time.perf_counter()
        with open(go, "w"):
            pass
        wait(lambda: status(3).get("applied", 0) >= target, "member 3 to catch up")
        seconds = time.perf_counter() - started
        peak = {name: _proc_kib(pid, "VmHWM") for name, pid in pids.items()}
        final = status(3)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(directory, ignore_errors=True)
    return {
        "snapshot_bytes": final["store_bytes"],
        "installed_by_snapshot": final["imports"] > 0,
        "leader_rss_rise_bytes": (peak["leader"] - before["leader"]) * 1024,
        "follower_rss_rise_bytes": (peak["follower"] - before["follower"]) * 1024,
        "leader_rss_before_bytes": before["leader"] * 1024,
        "follower_rss_before_bytes": before["follower"] * 1024,
        "peak_reset": reset,
        "install_seconds": seconds,
        "grow_seconds": grow_seconds,
        "note": "rise = VmHWM after the install - VmRSS before it (the high-water mark reset "
                "just before when peak_reset); the follower starts empty and catches up by "
                "one InstallSnapshot of a disk state machine's store",
    }


if __name__ == "__main__":
    sys.exit(main())
