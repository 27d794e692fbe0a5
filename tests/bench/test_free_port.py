"""``free_port``: the ports the tools give the processes they start (tests, benchmarks, the
playground)."""

from __future__ import annotations

import socket

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
