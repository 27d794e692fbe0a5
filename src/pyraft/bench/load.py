"""Load drivers: run an async operation closed-loop or open-loop for a bounded time.

``run_load(unit, ...)`` calls ``await unit()`` and records, per call, its latency and when it
completed; ``per_unit`` writes are counted per successful call (``batch`` commands per
``replicate_many``). It is used inside a leader process (the engine API) and by the HTTP load
generator, so both report the same way (:mod:`pyraft.bench.stats`).

- closed loop: ``inflight`` workers, each calling ``unit`` again as soon as the previous call
  returns, until ``duration_s`` passed (or ``count`` calls were started);
- open loop: call ``i`` is due at ``start + i / rate`` whatever happened before, and its
  latency counts from that due time; a stall therefore shows as latency of every call due
  during it. At most ``outstanding_max`` calls are in flight; a call due while that many are
  outstanding is not sent and counts as an error.

Bounds: no call is started after ``duration_s``; calls still running ``drain_s`` after it are
cancelled and count as errors. A failed call counts as an error and (closed loop) its worker
pauses ``error_pause_s`` before the next call, so a cluster without a leader is not spun on.
A call that fails with one of the ``stop_on`` exceptions (``NotLeaderError``: this member
lost its lead) ends the run early: no call starts after it, the calls in flight finish, and
``Observations.stopped_by`` says why; the caller follows the new leader and goes on there
instead of counting a flood of errors against a member that no longer leads.

Every measured load is preceded by a discarded warm-up of the same shape (``warmup_s``: a
quarter of its length, at most ``WARMUP_S_MAX``), pyraft's loads and the peers' alike: the
first second of a new cluster pays for what every process does once (memory arenas grown,
code and data touched for the first time, connections' buffers sized), which is not a write's
cost.

Latencies and completion times are kept in ``array('d')`` (8 bytes each, no object per
call), so a run of millions of calls can be summarised (``pyraft.bench.stats``) in a worker
thread with numpy without holding the event loop.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pyraft.bench.stats import open_loop_count, open_loop_offset

#: the longest discarded warm-up before a measured load (module docstring)
WARMUP_S_MAX = 1.0


def warmup_s(duration_s: float) -> float:
    """How long the discarded warm-up before a measured load of ``duration_s`` runs."""
    return min(WARMUP_S_MAX, 0.25 * duration_s)


@dataclass
class Observations:
    """What one run saw: successful writes, failed calls, the run's length, and per successful
    call its latency and its completion time (both in seconds, the latter since the start)."""

    writes: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    latencies_s: array = field(default_factory=lambda: array("d"))
    done_at_s: array = field(default_factory=lambda: array("d"))
    first_error: str | None = None
    #: the error that ended the run early (one of ``stop_on``), None when it ran its course
    stopped_by: str | None = None

    def failed(self, error: BaseException) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = f"{type(error).__name__}: {error}"


async def run_load(unit: Callable[[], Awaitable[object]], *, inflight: int = 1,
                   rate: float | None = None, duration_s: float, per_unit: int = 1,
                   count: int | None = None, drain_s: float = 30.0,
                   outstanding_max: int = 100_000, error_pause_s: float = 0.01,
                   stop_on: tuple[type[BaseException], ...] = ()) -> Observations:
    """Run ``unit`` closed-loop (``rate`` None) or open-loop at ``rate`` calls/s; a call
    failing with one of ``stop_on`` ends the run early (see the module docstring)."""
    if duration_s <= 0 or inflight < 1 or per_unit < 1:
        raise ValueError("duration_s must be > 0, inflight and per_unit >= 1")
    if count is not None and count < 1:
        raise ValueError(f"count must be >= 1, not {count!r}")
    seen = Observations()
    clock = time.perf_counter
    start = clock()
    deadline = start + duration_s

    async def call(due: float) -> bool:
        try:
            await unit()
        except Exception as error:  # counted; the run goes on
            seen.failed(error)
            if stop_on and isinstance(error, stop_on) and seen.stopped_by is None:
                seen.stopped_by = f"{type(error).__name__}: {error}"
            return False
        now = clock()
        seen.latencies_s.append(now - due)
        seen.done_at_s.append(now - start)
        seen.writes += per_unit
        return True

    tasks: set[asyncio.Task] = set()
    if rate is None:
        budget = [count if count is not None else -1]
        latencies, done_at = seen.latencies_s, seen.done_at_s

        async def worker() -> None:
            # ``call``'s steps inline: a coroutine less per call, so that what the load costs
            # its process is mostly the calls it makes
            due = clock()
            while due < deadline and budget[0] != 0 and seen.stopped_by is None:
                budget[0] -= 1
                try:
                    await unit()
                except Exception as error:  # counted; the run goes on after a pause
                    seen.failed(error)
                    if stop_on and isinstance(error, stop_on) and seen.stopped_by is None:
                        seen.stopped_by = f"{type(error).__name__}: {error}"
                    await asyncio.sleep(error_pause_s)
                    due = clock()
                    continue
                now = clock()
                latencies.append(now - due)
                done_at.append(now - start)
                seen.writes += per_unit
                due = now

        tasks = {asyncio.ensure_future(worker()) for _ in range(inflight)}
    else:
        total = open_loop_count(rate, duration_s)
        if count is not None:
            total = min(total, count)
        i = 0
        while i < total and seen.stopped_by is None:
            now = clock()
            if now > deadline + drain_s:
                break
            due_now = min(total, int((now - start) * rate) + 1)
            while i < due_now:
                if len(tasks) >= outstanding_max:
                    seen.failed(OverflowError(f"{outstanding_max} calls outstanding"))
                else:
                    task = asyncio.ensure_future(call(start + open_loop_offset(i, rate)))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                i += 1
            if i < total:
                await asyncio.sleep(max(0.0, start + open_loop_offset(i, rate) - clock()))
        if seen.stopped_by is None:
            seen.errors += total - i  # due but never sent (the drain ran out)
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=max(0.0, deadline + drain_s - clock()))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            seen.errors += len(pending)
    end = start + max(seen.done_at_s, default=0.0)
    seen.elapsed_s = max(end, min(clock(), deadline)) - start
    return seen
