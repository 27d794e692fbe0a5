"""``free_port``: the ports the tools give the processes they start (tests, benchmarks, the
playground)."""

from __future__ import annotations

import socket

import pytest

from pyraft.testing import processes
from pyraft.testing.processes import free_port


def test_ports_are_free_distinct_and_outside_the_outgoing_range():
    low, _high = processes._ephemeral_range()
    ports = [free_port() for _ in range(64)]
    assert len(set(ports)) == len(ports)  # never the same port twice in one process
    if low > 24000:  # room below it: outgoing connections never take these
        assert all(20000 <= port < low for port in ports)
    for port in ports[:8]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # nobody listens there


def test_a_port_in_use_is_passed_over(monkeypatch):
    monkeypatch.delenv(processes.PORTS_VARIABLE, raising=False)  # a test worker's share
    monkeypatch.setattr(processes, "_ephemeral_range", lambda: (32768, 60999))
    candidates = [port for port in range(20000, 32768, 97)
                  if port not in processes._GIVEN and processes._bound_port(port)]
    in_use, free = candidates[0], candidates[1]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", in_use))
        taken.listen()
        picks = iter([in_use, in_use, free])

        class Picks:
            def randrange(self, start: int, stop: int) -> int:
                assert (start, stop) == (20000, 32768)
                return next(picks)

        monkeypatch.setattr(processes, "_RANDOM", Picks())
        assert free_port() == free


def test_the_workers_shares_are_disjoint_and_free_port_keeps_to_its_own(monkeypatch):
    shares = [processes.worker_ports(worker, 3) for worker in range(3)]
    bounds = [tuple(int(part) for part in share.split("-")) for share in shares]
    assert all(low < high for low, high in bounds)
    assert all(a[1] <= b[0] for a, b in zip(bounds, bounds[1:]))
    monkeypatch.setenv(processes.PORTS_VARIABLE, shares[1])
    low, high = bounds[1]
    assert all(low <= processes.free_port() < high for _ in range(50))


@pytest.mark.parametrize("value", ["20000", "30000-20000", "80-90", "a-b"])
def test_a_malformed_range_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv(processes.PORTS_VARIABLE, value)
    with pytest.raises(ValueError, match="RAFTCORE_TEST_PORTS"):
        processes.free_port()
