"""In-process clusters for tests: members on ``pyraft.transport.memory``, one event loop.

- ``run_on_fresh_loop(body, loop_kind="asyncio")`` runs ``await body()`` on a new loop
  (``"uvloop"`` too) and fails on an unhandled exception in the loop or a task left running;
- ``memory_cluster(network, peers, ...)`` starts a ``RaftCluster`` per member (an async
  context manager that stops them all);
- ``leader_of(members)`` waits for the leader of the highest term.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

from pyraft.cluster import RaftCluster
from pyraft.config import RaftConfig

PEERS = {m: f"127.0.0.1:{7100 + m}" for m in (1, 2, 3)}


def run_on_fresh_loop(body: Callable, loop_kind: str = "asyncio") -> None:
    errors: list = []

    async def checked():
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        await body()
        current = asyncio.current_task()
        leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        assert not leaked, leaked

    if loop_kind == "uvloop":
        import uvloop

        uvloop.run(checked())
    else:
        asyncio.run(checked())
    assert not errors, errors


@contextlib.asynccontextmanager
async def memory_cluster(network, peers: Mapping[int, str] = PEERS, *, storage=None,
                         machine: Callable | None = None, tick_ms: float = 5.0, **options):
    members = [
        RaftCluster(RaftConfig(member_id=m, tick_ms=tick_ms), transport=network.transport(m),
                    peers=peers, state_machine=machine() if machine else None,
                    storage=storage(m) if storage else None, **options)
        for m in peers
    ]
    for member in members:
        await member.start()
    try:
        yield members
    finally:
        for member in members:
            await member.stop()


async def leader_of(members, timeout: float = 5.0) -> RaftCluster:
    async def wait():
        while True:
            leaders = [m for m in members if m.is_leader and m._running]
            if leaders:
                return max(leaders, key=lambda m: m.term)
            await asyncio.sleep(0.005)

    return await asyncio.wait_for(wait(), timeout)
