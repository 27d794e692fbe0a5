"""The member's I/O thread (pyraft.cluster.iothread): one queue, one order, whichever way the
work came in, and nothing handed over is skipped."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from pyraft.cluster.iothread import IOThread
from pyraft.errors import StorageError


def io_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_run_and_submit_share_one_order_on_one_thread() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        io = IOThread(loop, "test-order-io")
        assert io_threads("test-order-io") == []  # started by the first item
        seen: list[tuple[str, int]] = []

        def work(n: int) -> int:
            time.sleep(0.001 * (n % 3))  # uneven items: the order is the queue's, not speed's
            seen.append((threading.current_thread().name, n))
            return n * n

        futures = []
        for n in range(30):
            if n % 3 == 0:
                futures.append(loop.run_in_executor(io, work, n))  # through submit
            elif n % 3 == 1:
                futures.append(asyncio.wrap_future(io.submit(work, n)))
            else:
                futures.append(io.run(work, n))
        assert await asyncio.gather(*futures) == [n * n for n in range(30)]
        assert seen == [("test-order-io", n) for n in range(30)]
        assert len(io_threads("test-order-io")) == 1
        io.shutdown(wait=True)
        assert io_threads("test-order-io") == []

    asyncio.run(body())


def test_an_exception_reaches_the_caller_as_raised() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        with IOThread(loop, "test-error-io") as io:
            def fail(message: str) -> None:
                raise StorageError(message)

            with pytest.raises(StorageError, match="disk gone"):
                await io.run(fail, "disk gone")
            with pytest.raises(StorageError, match="still gone"):
                await loop.run_in_executor(io, fail, "still gone")
            assert await io.run(len, b"abc") == 3  # the thread goes on after a failure
            assert await io.run(divmod, 7, 2) == (3, 1)  # several arguments
            assert await asyncio.wrap_future(io.submit(int, "ff", base=16)) == 255  # keywords

    asyncio.run(body())


def test_an_item_runs_though_its_waiter_went_away() -> None:
    """A sync handed over must run even when the task awaiting it is cancelled (a member
    stopping): the next item's sync covers it only if it ran. Its late answer is dropped
    without an error on the loop."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        errors: list[dict] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        gate = threading.Event()
        ran: list[int] = []

        def held(n: int) -> int:
            gate.wait(5)
            ran.append(n)
            return n

        with IOThread(loop, "test-cancel-io") as io:
            first = io.run(held, 1)
            second = io.run(ran.append, 2)
            first.cancel()
            gate.set()
            await second
            await asyncio.sleep(0.01)  # the first item's answer arrives, to a done future
        assert ran == [1, 2] and first.cancelled() and not errors

    asyncio.run(body())


def test_shutdown_runs_what_was_queued_then_refuses_work() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        io = IOThread(loop, "test-shutdown-io")
        done: list[int] = []
        futures = [io.submit(lambda n=n: (time.sleep(0.002), done.append(n))) for n in range(5)]
        io.shutdown(wait=True)
        assert done == [0, 1, 2, 3, 4] and all(f.done() for f in futures)
        with pytest.raises(RuntimeError, match="test-shutdown-io: cannot take work after"):
            io.run(len, b"")
        with pytest.raises(RuntimeError, match="cannot take work after shutdown"):
            io.submit(len, b"")
        io.shutdown(wait=True)  # twice is fine
        with pytest.raises(ValueError, match="runs every item"):
            io.shutdown(cancel_futures=True)
        never = IOThread(loop, "test-unused-io")
        never.shutdown(wait=True)  # a thread never started: nothing to wait for
        assert io_threads("test-unused-io") == []

    asyncio.run(body())


def test_work_handed_over_from_other_threads_during_shutdown_is_run_or_refused() -> None:
    """An executor may be given work from any thread: an item either runs (its future
    settles) or is refused at once, never queued behind the shutdown and forgotten."""
    loop = asyncio.new_event_loop()
    io = IOThread(loop, "test-race-io")
    taken: list = []
    refused = [0]
    go = threading.Event()

    def hand_over() -> None:
        go.wait(5)
        for _ in range(300):
            try:
                taken.append(io.submit(len, b"abc"))
            except RuntimeError:
                refused[0] += 1

    threads = [threading.Thread(target=hand_over) for _ in range(4)]
    for t in threads:
        t.start()
    go.set()
    time.sleep(0.002)
    io.shutdown(wait=True)
    for t in threads:
        t.join(5)
    loop.close()
    assert len(taken) + refused[0] == 1200
    assert all(f.done() and f.result() == 3 for f in taken)


def test_an_answer_for_a_closed_loop_does_not_end_the_thread() -> None:
    """A loop closed while its item runs: the answer has nowhere to go, and the thread
    still serves the next loop's items."""
    gate = threading.Event()
    loop = asyncio.new_event_loop()
    io = IOThread(loop, "test-closed-io")
    try:
        late = io.run(lambda _: gate.wait(5), None)
    finally:
        loop.close()
    gate.set()
    assert late is not None
    other = asyncio.new_event_loop()
    try:
        assert other.run_until_complete(asyncio.wrap_future(io.submit(len, b"ab"),
                                                            loop=other)) == 2
    finally:
        other.close()
        io.shutdown(wait=True)
    assert io_threads("test-closed-io") == []


def test_members_whose_every_sync_is_handed_over_commit_and_recover(tmp_path) -> None:
    """Three durable members built as a user builds them (``RaftCluster.from_config``, TCP
    on 127.0.0.1), configured to sync only on the I/O thread (``inline_sync_max_ms=0``, as a
    slow disk does): writes at 16 in flight commit and apply, each member's I/O thread ends
    with it, and the members restarted from their logs hold every write."""
    from pyraft.cluster import RaftCluster
    from pyraft.config import ClusterConfig
    from pyraft.testing.cluster import settled_leader
    from pyraft.testing.member import CountLog
    from pyraft.testing.processes import free_port

    peers = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3)}

    def members() -> list[RaftCluster]:
        return [RaftCluster.from_config(
            ClusterConfig(member_id=m, peers=peers, listen=peers[m], inline_sync_max_ms=0,
                          data_dir=str(tmp_path / f"m{m}")),
            state_machine=CountLog()) for m in peers]

    async def applied(cluster: list[RaftCluster]) -> list[int]:
        """Each member's count of applied writes, once all reach 400 (or after 5 s)."""
        for _ in range(500):
            if all(member.state_machine.count >= 400 for member in cluster):
                break
            await asyncio.sleep(0.01)
        return [member.state_machine.count for member in cluster]

    async def first_run() -> list[int]:
        cluster = members()
        for member in cluster:
            await member.start()
        try:
            leader = await settled_leader(cluster, 30)

            async def writer(n: int) -> list[int]:
                return [await asyncio.wait_for(leader.replicate(b"w%d" % n), 10)
                        for _ in range(25)]

            results = [r for part in await asyncio.gather(*[writer(n) for n in range(16)])
                       for r in part]
            assert sorted(results) == list(range(len(results))) and len(results) == 400
            assert {f"pyraft-{m}-io" for m in peers} <= {t.name for t in threading.enumerate()}
            return await applied(cluster)  # the followers apply what the leader committed
        finally:
            for member in cluster:
                await member.stop()

    assert asyncio.run(first_run()) == [400, 400, 400]
    assert not {f"pyraft-{m}-io" for m in peers} & {t.name for t in threading.enumerate()}

    async def again() -> list[int]:
        cluster = members()
        for member in cluster:
            await member.start()
        try:
            await settled_leader(cluster, 30)
            return await applied(cluster)
        finally:
            for member in cluster:
                await member.stop()

    assert asyncio.run(again()) == [400, 400, 400]
