"""In-process clusters for tests: members on ``pyraft.transport.memory``, one event loop.

- ``run_on_fresh_loop(body, loop_kind="asyncio", timeout_s=None)`` runs ``await body()`` on
  a new loop (``"uvloop"`` too), returns its result, and fails on an unhandled exception in
  the loop or a task left running;
- ``memory_cluster(network, peers, ...)`` starts a ``RaftCluster`` per member (an async
  context manager that stops them all);
- ``leader_of(members)`` waits for the leader of the highest term.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable, Mapping

from pyraft.cluster import RaftCluster
from pyraft.config import ClusterConfig

PEERS = {m: f"127.0.0.1:{7100 + m}" for m in (1, 2, 3)}


def run_on_fresh_loop(body: Callable, loop_kind: str = "asyncio",
                      timeout_s: float | None = None):
    """``await body()`` on a new loop ("asyncio" or "uvloop"), within ``timeout_s`` if
    given; returns its result. Fails on an unhandled exception in the loop or a task still
    pending when the body is done. The loop is closed (tasks cancelled, async generators
    and the default executor shut down) and garbage collected, so unclosed resources warn."""
    loop: asyncio.AbstractEventLoop
    if loop_kind == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    problems: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: problems.append(context))

    async def checked():
        result = await (body() if timeout_s is None else asyncio.wait_for(body(), timeout_s))
        await asyncio.sleep(0)
        current = asyncio.current_task()
        leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        assert not leaked, f"tasks still pending: {leaked}"
        return result

    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(checked())
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        asyncio.set_event_loop(None)
        loop.close()
        gc.collect()
        assert not problems, f"unhandled loop exceptions: {problems}"


@contextlib.asynccontextmanager
async def memory_cluster(network, peers: Mapping[int, str] = PEERS, *, storage=None,
                         machine: Callable | None = None, tick_ms: float = 5.0, **settings):
    """A started member per id of ``peers`` on ``network``; ``settings`` are more
    ``ClusterConfig`` fields, ``storage(id)`` and ``machine()`` make each one's storage and
    state machine."""
    members = [
        RaftCluster(ClusterConfig(member_id=m, tick_ms=tick_ms, peers=peers, **settings),
                    transport=network.transport(m), state_machine=machine() if machine else None,
                    storage=storage(m) if storage else None)
        for m in peers
    ]
    for member in members:
        await member.start()
    try:
        yield members
    finally:
        for member in members:
            await member.stop()


async def settled_leader(members, timeout: float = 5.0) -> RaftCluster:
    """The leader, once it has committed an entry of its term and every member in
    ``members`` has that commit: from then on in-memory members are ordinary voters (they
    vote as fresh ones until a commit of the leader's term reaches them, RaftNode.fresh), so
    any majority of them can elect the next leader.

    The configuration also carries every member's address and metadata by then (each member
    announces them, RaftNode.set_own_info, and the leader records them with an info-only
    configuration entry): no such entry comes later to shift the log's indexes."""
    leader = await leader_of(members, timeout)
    await leader.ensure_consistency(timeout)

    async def announced() -> None:
        view = leader.view
        views = [(m.id, m.view) for m in members]
        if view is None or any(v is None for _, v in views):
            raise RuntimeError("settled_leader needs started members")
        while not (view.configuration_committed
                   and all(view.info_recorded(m, v.own_info) for m, v in views if v)):
            await asyncio.sleep(0.005)

    await asyncio.wait_for(announced(), timeout)
    for member in members:
        await member.wait_for_commit(leader.commit_index, timeout)
    return leader


async def leader_of(members, timeout: float = 5.0) -> RaftCluster:
    async def wait():
        while True:
            leaders = [m for m in members if m.is_leader and m._running]
            if leaders:
                return max(leaders, key=lambda m: m.term)
            await asyncio.sleep(0.005)

    return await asyncio.wait_for(wait(), timeout)
