"""Helpers for the storage-fault tests: ``pyraft node`` processes on 127.0.0.1 with their
stderr in a file, a blocking HTTP client with a timeout on every call, and small tmpfs mounts.

Only processes started here are signalled, by their own pid; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyraft
from pyraft.testing.processes import free_port

PACKAGE_ROOT = Path(pyraft.__file__).resolve().parent.parent  # where ``pyraft`` is imported from


def _env() -> dict[str, str]:
    """The members import the very package the tests import (installed, or a source tree
    built in place), never an unbuilt ``src/``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH", "")]))
    return env


class Node:
    """One ``pyraft node`` process; ``log_path`` receives its stderr."""

    def __init__(self, member: int, peers: dict[int, str], http: dict[int, str], data: Path,
                 log_path: Path, snapshot_entries: int | None = None) -> None:
        self.id, self.peers, self.http, self.data = member, peers, http, data
        self.log_path, self.snapshot_entries = log_path, snapshot_entries
        #: HOST:PORT of the Prometheus endpoint
        self.metrics = f"127.0.0.1:{free_port()}"
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return self.http[self.id]

    def start(self) -> Node:
        args = [sys.executable, "-m", "pyraft", "node", "--id", str(self.id),
                "--listen", self.peers[self.id], "--http", self.http[self.id],
                "--data", str(self.data),
                "--peers", ",".join(f"{m}={a}" for m, a in self.peers.items()),
                "--http-peers", ",".join(f"{m}={a}" for m, a in self.http.items()),
                "--metrics", self.metrics, "--log-level", "INFO"]
        if self.snapshot_entries is not None:
            args += ["--snapshot-entries", str(self.snapshot_entries)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log,
                                            env=_env())
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait(15)
        self.process = None


def make_nodes(directory: Path, size: int = 3, data: dict[int, Path] | None = None,
               snapshot_entries: int | None = None) -> dict[int, Node]:
    peers = {m: f"127.0.0.1:{free_port()}" for m in range(1, size + 1)}
    http = {m: f"127.0.0.1:{free_port()}" for m in range(1, size + 1)}
    data = data or {}
    return {m: Node(m, peers, http, data.get(m, directory / f"n{m}"), directory / f"n{m}.log",
                    snapshot_entries) for m in peers}


def request(address: str, method: str, path: str, body: bytes | None = None,
            timeout: float = 5.0) -> tuple[int, bytes, dict[str, str]]:
    """One HTTP request; (status, body, headers). Connection errors raise ``OSError``."""
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


def metric(node: Node, name: str) -> float | None:
    """The value of the unlabelled metric ``name`` on ``node`` (None when unreachable)."""
    try:
        code, body, _ = request(node.metrics, "GET", "/metrics", timeout=2.0)
    except OSError:
        return None
    if code != 200:
        return None
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def status(node: Node, timeout: float = 2.0) -> dict | None:
    try:
        code, body, _ = request(node.address, "GET", "/v1/status", timeout=timeout)
    except OSError:
        return None
    return json.loads(body) if code == 200 else None


def wait_for(condition, timeout: float = 30.0, interval: float = 0.1, message: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {message}")
        time.sleep(interval)


def leader_of(nodes: dict[int, Node], timeout: float = 30.0) -> Node:
    """The member that a running member reports as leader (and that agrees it leads)."""
    def find():
        for node in nodes.values():
            if node.process is None or node.process.poll() is not None:
                continue
            seen = status(node)
            if seen and seen["leader"] and seen["role"] == "leader":
                return node
        return None

    return wait_for(find, timeout, message="a leader")


def put(nodes: dict[int, Node], key: str, value: str, timeout: float = 30.0) -> None:
    """Write through whoever leads, retrying (same value: a repeat is harmless) until 200/204."""
    def attempt():
        target = leader_of(nodes, timeout)
        try:
            code, _, _ = request(target.address, "PUT", f"/v1/kv/{key}", value.encode())
        except OSError:
            return False
        return code in (200, 204)

    wait_for(attempt, timeout, message=f"write {key}")


def barrier_get(node: Node, key: str, timeout: float = 5.0) -> bytes | None:
    """A linearizable read (read-index barrier) on ``node``; None when the key is absent.
    Raises ``AssertionError`` on any other answer."""
    code, body, _ = request(node.address, "GET", f"/v1/kv/{key}?consistency=barrier",
                            timeout=timeout)
    if code == 404:
        return None
    assert code == 200, (code, body)
    return body


def has_all(node: Node, expected: dict[str, str]) -> bool:
    """True when a barrier read on ``node`` returns every expected value."""
    try:
        return all(barrier_get(node, key) == value.encode() for key, value in expected.items())
    except (OSError, AssertionError):
        return False


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyraft", *args], capture_output=True,
                          text=True, timeout=timeout, env=_env())


@contextlib.contextmanager
def stopping(nodes: dict[int, Node]) -> Iterator[dict[int, Node]]:
    try:
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()


def mount_tmpfs(mountpoint: Path, size: str) -> bool:
    """Mount a tmpfs of ``size`` on ``mountpoint``; False when mounting is not permitted."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                             str(mountpoint)], capture_output=True, text=True, timeout=30)
    return result.returncode == 0


def unmount(mountpoint: Path) -> None:
    subprocess.run(["umount", str(mountpoint)], check=True, capture_output=True, timeout=30)


def fill(directory: Path, name: str = "filler", bytes_max: int = 1 << 30) -> Path:
    """Write zeros into ``directory/name`` until the file system is full (or ``bytes_max``)."""
    path = directory / name
    chunk = bytes(1 << 20)
    written = 0
    with open(path, "ab", buffering=0) as f:
        while written < bytes_max:
            try:
                written += f.write(chunk)
            except OSError:
                break
        with contextlib.suppress(OSError):
            for _ in range(4096):  # the last pages, a little at a time
                f.write(bytes(4096))
    return path
