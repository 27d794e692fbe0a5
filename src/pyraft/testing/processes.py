"""Member processes on 127.0.0.1 for integration tests, benchmarks and the playground.

``NodeProcess`` is one ``pyraft node`` started the way an operator starts it (the tools add
their flags), ended by its pid; ``KVNode`` is the key-value node the playground and the HTTP
benchmarks start (durable SQLite state or memory, TLS, an admin token). ``Member`` starts
``python -m pyraft.testing.member`` (a member built from a ``ClusterConfig``, see
:mod:`pyraft.testing.member`) and talks to it over its JSON-lines control port;
``start_cluster`` starts several; ``leader`` and ``write`` find the leader and write through
it, retrying across elections. Only processes started here are signalled, by their own pid.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Any, TypeVar

from pyraft.config import parse_address

#: the certificate, key and CA files (PEM) of one member, in that order
TlsFiles = tuple[str, str, str]
#: entries between two flushes of a durable ``KVNode``'s store, unless the caller says
KV_NODE_SNAPSHOT_ENTRIES = 20
_T = TypeVar("_T")

#: ports this process has handed out (never twice: two members of one test must differ)
_GIVEN: set[int] = set()
_RANDOM = random.Random()  # its own: a test that seeds ``random`` must not repeat ports


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections (Linux; else IANA's)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as file:
            low, high = (int(word) for word in file.read().split())
        return low, high
    except (OSError, ValueError):
        return 49152, 65535


#: ``LOW-HIGH``: the ports :func:`free_port` hands out in this process and the processes it
#: starts. Two pytest-xdist workers each get their own share (``tests/conftest.py``): a port
#: one of them checked free could otherwise be taken by the other before its member binds it,
#: or while a member restarts on its old port.
#: (not PYRAFT_: a member refuses a PYRAFT_ variable that names no setting)
PORTS_VARIABLE = "RAFTCORE_TEST_PORTS"


def _port_range() -> tuple[int, int] | None:
    """The ``[low, high)`` range :data:`PORTS_VARIABLE` sets, or None."""
    text = os.environ.get(PORTS_VARIABLE, "")
    if not text:
        return None
    try:
        low, high = (int(part) for part in text.split("-"))
    except ValueError:
        raise ValueError(f"{PORTS_VARIABLE} must be LOW-HIGH, not {text!r}") from None
    if not 1024 <= low < high <= 65536:
        raise ValueError(f"{PORTS_VARIABLE}: {text!r} is not a range of ports above 1023")
    return low, high


def _below_ephemeral() -> tuple[int, int] | None:
    """``[20000, first ephemeral port)`` when that leaves room, else None."""
    low, _high = _ephemeral_range()
    return (20000, low) if low > 24000 else None


def worker_ports(worker: int, workers: int) -> str:
    """Worker ``worker``'s share (of ``workers``) of the ports below the kernel's ephemeral
    range, as :data:`PORTS_VARIABLE` says it."""
    lowest, highest = _below_ephemeral() or (1024, _ephemeral_range()[0])
    span = (highest - lowest) // workers
    return f"{lowest + worker * span}-{lowest + (worker + 1) * span}"


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nobody listens on, for a process about to start.

    Chosen below the kernel's ephemeral range when that leaves room: a port the kernel
    handed out (binding port 0) is one it also gives to outgoing connections, so under load
    a client's connection could take it before the member binds it. Within
    :data:`PORTS_VARIABLE`'s range when it is set. Never the same port twice in this
    process; bound once to check it is free."""
    chosen = _port_range() or _below_ephemeral()
    for _ in range(256):
        if chosen is None:
            port = _bound_port(0)
        else:
            candidate = _RANDOM.randrange(*chosen)
            port = _bound_port(candidate) if candidate not in _GIVEN else None
        if port is not None and port not in _GIVEN:
            _GIVEN.add(port)
            return port
    raise OSError("no free TCP port found on 127.0.0.1")


def _bound_port(port: int) -> int | None:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return None
        return s.getsockname()[1]


class NodeProcess:
    """One ``pyraft node`` process: member ``member`` of the members ``peers`` (id -> Raft
    address) whose HTTP APIs are at ``http`` (id -> address). :meth:`spawn` starts it with
    the flags every member needs and the caller's own; it is signalled by its pid only."""

    member: int
    peers: dict[int, str]
    http: dict[int, str]
    process: subprocess.Popen | None

    def spawn(self, extra: list[str], stderr: int | IO[Any] | None = subprocess.DEVNULL
              ) -> subprocess.Popen:
        args = [sys.executable, "-m", "pyraft", "node", "--id", str(self.member),
                "--listen", self.peers[self.member], "--http", self.http[self.member],
                "--peers", ",".join(f"{m}={a}" for m, a in self.peers.items()),
                "--http-peers", ",".join(f"{m}={a}" for m, a in self.http.items()), *extra]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr)
        return self.process

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.process is not None and self.alive:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class KVNode(NodeProcess):
    """One ``pyraft node`` of a local key-value cluster (the playground, the HTTP benchmarks):
    its durable state in SQLite under ``data`` (flushed every ``snapshot_entries`` entries),
    or everything in memory when ``data`` is None; Raft over mutual TLS and the HTTP API over
    HTTPS when ``tls`` names its files; ``token_file`` the admin token it accepts. Started by
    :meth:`start` (again after :meth:`kill`: it recovers from ``data``), ended by its pid."""

    def __init__(self, member: int, peers: dict[int, str], http: dict[int, str],
                 data: str | None, tls: TlsFiles | None, token_file: str | None = None,
                 snapshot_entries: int = KV_NODE_SNAPSHOT_ENTRIES) -> None:
        self.member, self.peers, self.http, self.data, self.tls = member, peers, http, data, tls
        self.token_file = token_file
        self.snapshot_entries = snapshot_entries
        self.process: subprocess.Popen | None = None

    @property
    def id(self) -> int:
        return self.member

    @property
    def url(self) -> str:
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://{self.http[self.id]}"

    def arguments(self) -> list[str]:
        """The flags this node adds to those every ``pyraft node`` gets."""
        args = ["--log-level", "WARNING"]
        if self.data is not None:  # flushes (and log releases) every few entries
            args += ["--data", self.data, "--state", "sqlite",
                     "--snapshot-entries", str(self.snapshot_entries)]
        if self.tls is not None:
            args += ["--transport", "tls", "--cert", self.tls[0], "--key", self.tls[1],
                     "--ca", self.tls[2],
                     "--http-cert", self.tls[0], "--http-key", self.tls[1]]
        if self.token_file is not None:
            args += ["--admin-token-file", self.token_file]
        return args

    def start(self) -> None:
        self.spawn(self.arguments(), stderr=None)  # its warnings reach the caller's terminal


class Member:
    """One ``python -m pyraft.testing.member`` process and its control connection.

    ``tls``: this member's certificate, key and CA (mutual TLS; the certificate must name
    ``member-<id>.pyraft``, as every member's does by default, ``TlsConfig.member_identity``).
    ``election_ms``: the lower election timeout (the upper is twice it); None keeps the
    configuration's default. ``extra_args`` go last, so they override the flags set here."""

    def __init__(self, member_id: int, listen: str, peers: Mapping[int, str], data: object,
                 tls: TlsFiles | None = None, join: bool = False,
                 extra_args: Iterable[str] = (), election_ms: float | None = None) -> None:
        self.id, self.listen, self.peers, self.data = member_id, listen, peers, data
        self.tls, self.join, self.extra_args = tls, join, list(extra_args)
        self.election_ms = election_ms
        self.process: subprocess.Popen | None = None
        self.control: socket.socket | None = None
        self.reader: IO[str] | None = None
        self.stderr: IO[str] | None = None
        self._log = ""

    def arguments(self) -> list[str]:
        """The command line of the member process."""
        args = [sys.executable, "-m", "pyraft.testing.member", "--id", str(self.id),
                "--listen", self.listen, "--peers",
                ",".join(f"{m}={a}" for m, a in self.peers.items()), "--tick-ms", "10"]
        if self.data is not None:
            args += ["--data", str(self.data)]
        if self.join:
            args.append("--join")
        if self.election_ms is not None:
            args += ["--election-ms", str(self.election_ms)]
        if self.tls:
            args += ["--cert", self.tls[0], "--key", self.tls[1], "--ca", self.tls[2]]
        return args + self.extra_args

    def start(self, timeout: float = 15.0) -> Member:
        args = self.arguments()
        # The member's log goes to a file, never to a pipe nobody reads: a full pipe would
        # block the member mid-write (a stall that looks like a Raft bug).
        if self.stderr is not None:
            self.stderr.close()
        self.stderr = tempfile.TemporaryFile(mode="w+", prefix=f"member{self.id}-")
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.stderr,
                                        text=True)
        assert self.process.stdout is not None  # a pipe was asked for
        try:
            line = self.process.stdout.readline()
            assert line.startswith("ready"), self.log()
            host, port = parse_address(line.split()[1])
            self.control = socket.create_connection((host, port), timeout=timeout)
            self.reader = self.control.makefile("r")
        except BaseException:  # failed or interrupted while starting: leave nothing running
            self.kill()
            raise
        return self

    @property
    def pid(self) -> int:
        """The id of the member's process (the last one started)."""
        if self.process is None:
            raise ConnectionError(f"member {self.id} was never started")
        return self.process.pid

    def set_timeout(self, seconds: float | None) -> None:
        """How long a control call may wait for its answer (then ``TimeoutError``)."""
        if self.control is None:
            raise ConnectionError(f"member {self.id} is not running")
        self.control.settimeout(seconds)

    def call(self, op: str, **fields: Any) -> dict:
        if self.control is None or self.reader is None:
            raise ConnectionError(f"member {self.id} is not running")
        self.control.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
        return json.loads(self.reader.readline())

    def kill(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGKILL)
                self.process.wait(10)
        self._close()

    def _close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        if self.stderr is not None:
            self._log = self.log()
            self.stderr.close()
            self.stderr = None

    def log(self) -> str:
        """What the member wrote to stderr (its log) so far (kept after it stopped)."""
        if self.stderr is None:
            return self._log
        self.stderr.flush()
        self.stderr.seek(0)
        text = self.stderr.read()
        self.stderr.seek(0, 2)
        return text


def wait_for(condition: Callable[[], _T | None], timeout: float = 10.0,
             interval: float = 0.02) -> _T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def leader(members: Sequence[Member]) -> Member:
    def find() -> Member | None:
        statuses = [(m, m.call("status")) for m in members if m.control is not None]
        leaders = [(s["term"], m) for m, s in statuses if s["role"] == "leader"]
        return max(leaders, key=lambda pair: pair[0])[1] if leaders else None

    return wait_for(find)


def write(members: list[Member], text: str, attempts: int = 200) -> object:
    """Write through whoever leads, retrying across elections; returns once acknowledged."""
    for _ in range(attempts):
        current = leader(members)
        answer = current.call("replicate", data=text, timeout=2)
        if answer["ok"]:
            return answer["result"]
        time.sleep(0.02)
    raise AssertionError(f"could not write {text!r}")


def start_cluster(directory: object, size: int, tls: Mapping[int, TlsFiles] | None = None,
                  extra_args: Iterable[str] = (), election_ms: float | None = None
                  ) -> tuple[dict[int, str], list[Member]]:
    """Start ``size`` members (ids 1 to ``size``); ``directory`` None keeps their logs in
    memory; ``tls`` maps each member id to its files (mutual TLS)."""
    peers = {m: f"127.0.0.1:{free_port()}" for m in range(1, size + 1)}
    members: list[Member] = []
    try:
        for m in peers:
            members.append(Member(m, peers[m], peers,
                                  None if directory is None else f"{directory}/m{m}",
                                  None if tls is None else tls[m], extra_args=extra_args,
                                  election_ms=election_ms).start())
    except BaseException:  # one failed or the caller was interrupted: stop the others
        for member in members:
            member.stop()
        raise
    return peers, members
