"""Child-process plumbing for the peer drivers: ports, JSON-line pipes with deadlines, and
stopping a process by its own pid (SIGTERM, then SIGKILL after a timeout)."""

from __future__ import annotations

import json
import os
import pathlib
import select
import signal
import subprocess
import sys
import time

import pyraft
from pyraft.testing.processes import free_port as free_port  # for the peer drivers


class PeerError(RuntimeError):
    """A peer failed after it started (a child died, replied badly or timed out)."""




def child_env() -> dict[str, str]:
    """The environment for a Python child: this ``pyraft`` is first on its path."""
    env = dict(os.environ)
    src = str(pathlib.Path(pyraft.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def python_child(module: str, args: list[str], log_path: pathlib.Path) -> subprocess.Popen:
    """Start ``python -m module args`` with JSON lines on stdin/stdout, stderr to ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", module, *args], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log, env=child_env())


class LineReader:
    """Reads newline-terminated JSON objects from a pipe, each before a deadline."""

    def __init__(self, stream, what: str) -> None:
        self._fd = stream.fileno()
        self._buffer = bytearray()
        self._what = what

    def read(self, timeout_s: float) -> dict:
        """The next JSON object; :class:`PeerError` on timeout, end of file or bad JSON."""
        deadline = time.monotonic() + timeout_s
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[:end + 1]
                try:
                    value = json.loads(line)
                except ValueError as error:
                    raise PeerError(f"{self._what}: bad reply {line[:200]!r}") from error
                if not isinstance(value, dict):
                    raise PeerError(f"{self._what}: reply is not an object: {line[:200]!r}")
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerError(f"{self._what}: no reply within {timeout_s:.1f} s")
            ready, _, _ = select.select([self._fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self._fd, 1 << 20)
                if not chunk:
                    raise PeerError(f"{self._what}: exited before replying")
                self._buffer += chunk


def stop_process(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Stop ``process`` (started by us) by its pid: SIGTERM, then SIGKILL; always reaped."""
    if process.poll() is None:
        try:
            os.kill(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout_s)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            try:
                stream.close()
            except OSError:  # a pipe to a dead child may fail to flush
                pass


def log_tail(path: pathlib.Path, lines: int = 5) -> str:
    """The last ``lines`` lines of a log file, for error messages ('' if unreadable)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])


class ManagedCluster:
    """A peer cluster as a context manager: ``start()`` on entry (``close()`` if starting
    fails), ``close()`` on exit. Subclasses define both."""

    def start(self):  # pragma: no cover - defined by every subclass
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - defined by every subclass
        raise NotImplementedError

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info) -> None:
        self.close()
