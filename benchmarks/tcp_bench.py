"""CPU per round trip of the TCP transport alone: two transports in this process, on uvloop.

Member 1 sends an APPEND (one 16-byte entry) to member 2, which answers APPEND_RESPONSE; the
answer's arrival sends the next APPEND. Each side sends through ``send`` + ``flush`` as the
runtime does. Reported: process CPU (user and system apart) per round trip, i.e. the cost of
two messages each encoded, queued, written, read, framed and decoded, plus the event loop.

    python benchmarks/tcp_bench.py [round_trips] [repeats]
    PYRAFT_PURE_CORE=1 python benchmarks/tcp_bench.py        # the pure build

Run both builds alternately several times and compare medians measured in the same session.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import sys
import time

import uvloop

from pyraft import _compiled
from pyraft.core.messages import Message, MessageType
from pyraft.transport.tcp import TcpTransport
from raftcore.framing import encode_entries

CLUSTER = 7


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def _round_trips(count: int) -> tuple[float, float, float]:
    a = TcpTransport(1, "127.0.0.1:0", cluster_id=CLUSTER)
    b = TcpTransport(2, "127.0.0.1:0", cluster_id=CLUSTER)
    done = asyncio.get_running_loop().create_future()
    left = [count]

    def append(n: int) -> Message:
        entries = encode_entries(n + 1, 3, [b"x" * 16])
        return Message(MessageType.APPEND, 1, 2, term=3, log_term=3, index=n, commit=n,
                       entries=entries)

    def on_a(message: Message) -> None:  # the leader: the answer sends the next append
        left[0] -= 1
        if left[0] <= 0:
            if not done.done():
                done.set_result(None)
            return
        a.send(append(message.index))
        a.flush()

    def on_b(message: Message) -> None:  # the follower answers each append
        b.send(Message(MessageType.APPEND_RESPONSE, 2, 1, term=3, index=message.index + 1))
        b.flush()

    await a.start(on_a)
    await b.start(on_b)
    a.set_peers({2: b.address})
    b.set_peers({1: a.address})
    try:
        left[0] = 200  # warm up: connections open, caches fill
        a.send(append(0))
        a.flush()
        await asyncio.wait_for(done, 30)
        done = asyncio.get_running_loop().create_future()
        left[0] = count
        (user, system), wall = _cpu(), time.perf_counter()
        a.send(append(0))
        a.flush()
        await asyncio.wait_for(done, 120)
        (user_end, system_end), wall_end = _cpu(), time.perf_counter()
        return user_end - user, system_end - system, wall_end - wall
    finally:
        await a.stop()
        await b.stop()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    build = "pure" if _compiled.PURE else "compiled"
    user_us, system_us, wall_us = [], [], []
    for _ in range(repeats):
        user, system, wall = uvloop.run(_round_trips(count))
        user_us.append(user / count * 1e6)
        system_us.append(system / count * 1e6)
        wall_us.append(wall / count * 1e6)
    print(f"{build}: per round trip, median of {repeats} runs: user "
          f"{statistics.median(user_us):.2f} us (min {min(user_us):.2f}), system "
          f"{statistics.median(system_us):.2f} us, wall {statistics.median(wall_us):.2f} us")


if __name__ == "__main__":
    main()
