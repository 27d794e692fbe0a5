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
thread with numpy without holding the event loop. A closed-loop worker notes only each call's
completion time, in a list, and turns every ``RECORD_CALLS`` of them into those arrays at once
(``_record``): two appends to an array per call cost more than the engine's own bookkeeping of
a write at 256 in flight.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from pyraft.bench.stats import open_loop_count, open_loop_offset

#: a closed-loop worker turns its calls' completion times into latencies per this many calls
#: (``_record``): at most this many floats wait in a list per worker
RECORD_CALLS = 1024
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
        budget = [count if count is not None else 0]  # calls left to start (count given)

        async def worker() -> None:
            # ``call``'s steps inline (a coroutine less per call), and of each call only its
            # completion time noted, in a list: its latency is the time since the previous
            # completion (or since the pause after an error), worked out per ``RECORD_CALLS``
            # calls (``_record``). Two ``array('d')`` appends a call cost this process more
            # than an engine member's own bookkeeping of a write at 256 in flight; what the
            # load costs its process is meant to be mostly the calls it makes.
            due = first_due = clock()
            times: list[float] = []
            noted = times.append
            restarts: list[tuple[int, float]] = []  # (position in times, due after a pause)
            left = RECORD_CALLS
            counted = count is not None  # else no budget to keep: the deadline ends the load
            try:
                while due < deadline and seen.stopped_by is None:
                    if counted:
                        if budget[0] == 0:
                            break
                        budget[0] -= 1
                    try:
                        await unit()
                    except Exception as error:  # counted; the run goes on after a pause
                        seen.failed(error)
                        if stop_on and isinstance(error, stop_on) and seen.stopped_by is None:
                            seen.stopped_by = f"{type(error).__name__}: {error}"
                        await asyncio.sleep(error_pause_s)
                        due = clock()
                        restarts.append((len(times), due))
                        continue
                    due = clock()
                    noted(due)
                    left -= 1
                    if not left:
                        first_due = _record(seen, times, first_due, restarts, start, per_unit)
                        left = RECORD_CALLS
            finally:  # a worker cancelled at the drain's end keeps what it completed
                _record(seen, times, first_due, restarts, start, per_unit)

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


def _record(seen: Observations, times: list[float], first_due: float,
            restarts: list[tuple[int, float]], start: float, per_unit: int) -> float:
    """Note a closed-loop worker's calls completed at ``times`` (``perf_counter``) in
    ``seen``: each call's latency counts from the previous call's completion (``first_due``
    for the first of them), or from the end of the pause after an error (``restarts``:
    the position in ``times`` of the call that followed it, and when the pause ended; one
    after the last call, at the worker's end, has no call to time). Empties ``times`` and
    ``restarts``; returns when the next call became due (a worker notes its calls right
    after a success: the last completion)."""
    count = len(times)
    if count:
        completed = np.array(times, dtype=np.float64)
        due = np.empty(count, dtype=np.float64)
        due[0] = first_due
        due[1:] = completed[:-1]
        for position, restarted in restarts:
            if position < count:
                due[position] = restarted
        seen.latencies_s.frombytes((completed - due).tobytes())
        seen.done_at_s.frombytes((completed - start).tobytes())
        seen.writes += count * per_unit
    next_due = times[-1] if count else first_due
    times.clear()
    restarts.clear()
    return next_due
