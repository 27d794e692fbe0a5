"""The machine a benchmark ran on, and two raw reference costs measured on it.

``describe(directory)`` reports the CPU model, cores, kernel, Python, memory, and the disk
holding ``directory`` (device, model and rotational flag from ``/sys/block``, file system
from ``/proc/mounts``), and the UTC date; unknown facts are ``None``, never guessed.
``fdatasync_ms`` is the median cost of one 4 KiB ``pwrite`` + ``fdatasync`` in a file
preallocated in ``directory``; ``loopback_rtt_ms`` is the median round trip of one byte over
TCP on 127.0.0.1 to an echo server in another process. ``replication_floor_ms`` is what one
durable write costs three processes with no consensus logic at all: this process sends 64
bytes to two others over TCP on 127.0.0.1 and writes + fdatasyncs its own copy; each of the
others writes + fdatasyncs and answers one byte; the write counts as done at the first
answer (a majority of three), and the next one starts after the second (one in flight). It
is the floor any 3-member engine meets on this machine and disk. With ``work_us`` each of the
three also spends that much CPU (a busy loop) per write where an engine does its work: the
others before they write, the writer half before it sends and half after the first answer.
``work_budget_us`` finds, from such runs, how much work per member per write still keeps the
floor within a latency bound: what the bound leaves an engine for everything it does.
``process_cpu_s`` reads a process's CPU time (user and system), to set an engine's cost per
write beside that budget. All clean up after themselves.
"""

from __future__ import annotations

import datetime
import os
import platform
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

_ECHO_SERVER = """
import socket, sys
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
server.settimeout(30)
connection, _ = server.accept()
connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while data := connection.recv(64):
    connection.sendall(data)
"""

_FLOOR_MEMBER = """
import os, socket, sys, time
path, work_s = sys.argv[1], float(sys.argv[2]) / 1e6
clock = time.perf_counter
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
server.settimeout(30)
connection, _ = server.accept()
connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
try:
    os.posix_fallocate(fd, 0, 1 << 22)
    os.fsync(fd)
    offset = 0
    while True:
        message = b""
        while len(message) < 64:
            data = connection.recv(64 - len(message))
            if not data:
                sys.exit(0)
            message += data
        until = clock() + work_s
        while clock() < until:
            pass
        os.pwrite(fd, message, offset % (1 << 22))
        offset += 64
        os.fdatasync(fd)
        connection.sendall(b"a")
finally:
    os.close(fd)
    os.unlink(path)
"""


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def cpu_model() -> str | None:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
            return value.strip()
    return platform.processor() or None


def memory_bytes() -> int | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def mount_of(directory: str, mounts_text: str | None = None) -> dict[str, str] | None:
    """The /proc/mounts entry (device, mount point, file system) that holds ``directory``:
    the longest mount point that is a prefix of its real path."""
    path = os.path.realpath(directory)
    best = None
    text = mounts_text if mounts_text is not None else (_read("/proc/mounts") or "")
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        device, point, fstype = fields[0], fields[1].replace("\\040", " "), fields[2]
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > len(best["mount_point"])):
            best = {"device": device, "mount_point": point, "filesystem": fstype}
    return best


def _block_device(device: str) -> str | None:
    """The whole-disk name in /sys/block of ``device`` (a partition maps to its disk)."""
    name = os.path.basename(os.path.realpath(device)) if device.startswith("/dev/") else None
    if not name or not os.path.exists(f"/sys/class/block/{name}"):
        return None
    if os.path.exists(f"/sys/class/block/{name}/partition"):
        return os.path.basename(os.path.dirname(os.path.realpath(f"/sys/class/block/{name}")))
    return name


def disk_of(directory: str) -> dict[str, object]:
    mount = mount_of(directory) or {}
    disk: dict[str, object] = {"directory": os.path.realpath(directory), **mount,
                               "block_device": None, "model": None, "rotational": None}
    block = _block_device(str(mount.get("device", "")))
    if block:
        disk["block_device"] = block
        model = _read(f"/sys/block/{block}/device/model") or _read(
            f"/sys/block/{block}/device/name")
        disk["model"] = model or None
        rotational = _read(f"/sys/block/{block}/queue/rotational")
        disk["rotational"] = None if rotational is None else rotational == "1"
    return disk


def describe(directory: str) -> dict[str, object]:
    """Facts about this machine and the disk under ``directory``."""
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "memory_bytes": memory_bytes(),
        "disk": disk_of(directory),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def fdatasync_ms(directory: str, count: int = 200, size: int = 4096) -> float:
    """Median milliseconds of one ``size``-byte pwrite + fdatasync, over ``count`` tries."""
    if count < 1:
        raise ValueError(f"count must be >= 1, not {count!r}")
    fd, path = tempfile.mkstemp(prefix="fdatasync-", dir=directory)
    try:
        os.write(fd, bytes(size * (count + 1)))  # preallocated, as a WAL segment is
        os.fdatasync(fd)
        data = os.urandom(size)
        costs = []
        for i in range(count):
            started = time.perf_counter()
            os.pwrite(fd, data, i * size)
            os.fdatasync(fd)
            costs.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        os.unlink(path)
    return statistics.median(costs) * 1e3


def _start_listener(script: str, *args: str) -> tuple[subprocess.Popen, int]:
    """A helper process running ``script`` (it prints the port it listens on first)."""
    process = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None  # a pipe was asked for
    try:
        return process, int(process.stdout.readline())
    except BaseException:  # it died before listening: leave nothing behind
        process.kill()
        process.wait(10)
        process.stdout.close()
        raise


def _connect(port: int, timeout_s: float) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def loopback_rtt_ms(count: int = 2000, timeout_s: float = 30.0) -> float:
    """Median milliseconds of a one-byte TCP round trip on 127.0.0.1 to another process."""
    if count < 1:
        raise ValueError(f"count must be >= 1, not {count!r}")
    server, port = _start_listener(_ECHO_SERVER)
    try:
        costs = []
        with _connect(port, timeout_s) as connection:
            for _ in range(count):
                started = time.perf_counter()
                connection.sendall(b"x")
                if not connection.recv(1):
                    raise ConnectionError("the echo server closed the connection")
                costs.append(time.perf_counter() - started)
    finally:
        server.kill()
        server.wait(10)
        if server.stdout is not None:
            server.stdout.close()
    return statistics.median(costs) * 1e3


def _busy(seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def replication_floor_ms(directory: str, count: int = 2000, timeout_s: float = 30.0,
                         work_us: float = 0.0) -> float:
    """Median milliseconds of one durable write among three processes with no consensus
    logic (see the module docstring): the floor of a 3-member engine's one-write latency.
    ``work_us``: CPU each process spends per write, as an engine would (0: none)."""
    if count < 1:
        raise ValueError(f"count must be >= 1, not {count!r}")
    if not 0.0 <= work_us <= 1e6:
        raise ValueError(f"work_us must be in [0, 1e6], not {work_us!r}")
    half_s = work_us / 2e6
    members, connections = [], []
    fd, path = tempfile.mkstemp(prefix="floor-", dir=directory)
    try:
        for i in range(2):
            member, port = _start_listener(_FLOOR_MEMBER, f"{path}.{i}", repr(work_us))
            members.append(member)
            connections.append(_connect(port, timeout_s))
        os.posix_fallocate(fd, 0, 1 << 22)
        os.fsync(fd)
        message = os.urandom(64)
        costs = []
        for i in range(count):
            started = time.perf_counter()
            _busy(half_s)
            for connection in connections:
                connection.sendall(message)
            os.pwrite(fd, message, (i * 64) % (1 << 22))
            os.fdatasync(fd)
            answered, _, _ = select.select(connections, [], [], timeout_s)
            if not answered:
                raise TimeoutError("no member answered within the timeout")
            _busy(half_s)
            costs.append(time.perf_counter() - started)
            for connection in connections:  # both answers, before the next write
                if not connection.recv(1):
                    raise ConnectionError("a member closed the connection")
    finally:
        for connection in connections:
            connection.close()
        for member in members:
            try:
                member.wait(timeout_s)
            except subprocess.TimeoutExpired:
                member.kill()
                member.wait(10)
            if member.stdout is not None:
                member.stdout.close()
        os.close(fd)
        os.unlink(path)
    return statistics.median(costs) * 1e3


def work_budget_us(directory: str, bound_ms: float, count: int = 2000, step_us: float = 25.0,
                   steps_max: int = 12, floor: Callable[..., float] | None = None) -> dict:
    """The CPU per member per write (``work_us`` of ``replication_floor_ms``) at which the
    floor's median reaches ``bound_ms``: ``{"bound_ms", "points": [[work_us, p50_ms], ...],
    "work_budget_us"}``. Work grows by ``step_us`` until the median passes the bound (at most
    ``steps_max`` steps); the budget is interpolated between the last two points, 0 when the
    floor alone is over the bound, None when ``steps_max`` steps stay under it. ``floor``
    measures one point (default: ``replication_floor_ms``)."""
    if bound_ms <= 0 or step_us <= 0 or steps_max < 1:
        raise ValueError("bound_ms and step_us must be > 0 and steps_max >= 1")
    floor = floor or replication_floor_ms
    points: list[list[float]] = []
    budget: float | None = None
    for step in range(steps_max + 1):
        work = step * step_us
        points.append([work, floor(directory, count, work_us=work)])
        if points[-1][1] > bound_ms:
            if step == 0:
                budget = 0.0
            else:
                (w0, p0), (w1, p1) = points[-2], points[-1]
                budget = w0 + (w1 - w0) * (bound_ms - p0) / (p1 - p0)
            break
    return {"bound_ms": bound_ms, "points": points, "work_budget_us": budget}


def process_cpu_s(pid: int) -> tuple[float, float] | None:
    """``(user, system)`` CPU seconds process ``pid`` has used (None where /proc cannot
    tell). The user part is what compares with ``work_us``: the floor's processes make the
    same kinds of system calls."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick
    except (OSError, IndexError, ValueError):
        return None
