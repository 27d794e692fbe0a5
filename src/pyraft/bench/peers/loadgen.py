"""Load shapes for the peers, measured exactly like pyraft's (:mod:`pyraft.bench.load`).

- :func:`make_workload` validates a load shape (closed loop with ``inflight`` outstanding, or
  open loop at ``rate`` writes/s) and raises ``ConfigError`` (a ``ValueError``) naming the bad
  field;
- :func:`run_callback_load` is the twin of :func:`pyraft.bench.load.run_load` for callback
  APIs driven from threads (PySyncObj calls back on its own ticking thread). It has the same
  rules, so the figures compare one to one: closed loop keeps ``inflight`` calls outstanding
  and starts none after ``duration_s``; open loop sends call ``i`` at ``start + i / rate``
  whatever happened before and measures its latency from that intended time (no coordinated
  omission); a call due while ``outstanding_max`` are outstanding is not sent and counts as an
  error; calls still outstanding ``drain_s`` after the end count as errors. It also counts the
  open-loop calls sent more than :data:`LATE_THRESHOLD_MS` after their intended time
  (``missed_schedule``);
- :class:`ScheduleWatch` counts the same for an asyncio ``run_load`` open loop;
- :func:`best_of` picks the peak among trials.

Results are built with :func:`pyraft.bench.stats.make_result`, the schema every system shares.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pyraft.bench.load import Observations, warmup_s
from pyraft.bench.stats import open_loop_count, open_loop_offset
from pyraft.errors import ConfigError

#: An open-loop write sent later than this after its intended time missed its schedule.
LATE_THRESHOLD_MS = 1.0
#: Largest command accepted by the drivers.
SIZE_BYTES_MAX = 1 << 20
#: Longest run accepted by the drivers (one hour).
DURATION_S_MAX = 3600.0

#: ``done(ok, error_text)`` is called exactly once per submitted call, from any thread.
Done = Callable[[bool, str | None], None]


@dataclass(frozen=True)
class Workload:
    """A validated load shape: closed loop iff ``rate`` is None (then ``inflight`` is set)."""

    size: int
    inflight: int | None
    rate: float | None
    duration_s: float

    @property
    def kind(self) -> str:
        return "closed" if self.rate is None else "open"

    @property
    def warmup_s(self) -> float:
        """Length of the discarded warm-up run with the same shape before the measured one
        (``pyraft.bench.load.warmup_s``: pyraft's loads have the same)."""
        return warmup_s(self.duration_s)

    def warmup(self) -> Workload:
        return Workload(self.size, self.inflight, self.rate, self.warmup_s)

    def describe(self, *, api: str, members: int, outstanding_max: int) -> dict:
        """The ``workload`` field of a result (the keys of :mod:`pyraft.bench.stats`).

        Open loop reports ``outstanding_max`` as ``inflight``, like pyraft's load generator.
        """
        return {"kind": self.kind, "api": api, "size": self.size,
                "inflight": self.inflight if self.inflight is not None else outstanding_max,
                "rate": self.rate, "duration_s": self.duration_s, "members": members,
                "batch": 1, "operation": "write"}


def make_workload(*, size: int, inflight: int | None, rate: float | None, duration_s: float,
                  inflight_max: int) -> Workload:
    """Validate a load shape; exactly one of ``inflight`` (closed) and ``rate`` (open)."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise ConfigError("size", f"must be an int, got {type(size).__name__}")
    if not 1 <= size <= SIZE_BYTES_MAX:
        raise ConfigError("size", f"must be in [1, {SIZE_BYTES_MAX}], got {size}")
    if (inflight is None) == (rate is None):
        raise ConfigError("inflight",
                          "give exactly one of inflight (closed loop) or rate (open loop)")
    if inflight is not None:
        if isinstance(inflight, bool) or not isinstance(inflight, int):
            raise ConfigError("inflight", f"must be an int, got {type(inflight).__name__}")
        if not 1 <= inflight <= inflight_max:
            raise ConfigError("inflight", f"must be in [1, {inflight_max}], got {inflight}")
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise ConfigError("rate", f"must be a number, got {type(rate).__name__}")
        if not (math.isfinite(rate) and rate > 0):
            raise ConfigError("rate", f"must be a finite number > 0, got {rate}")
    if isinstance(duration_s, bool) or not isinstance(duration_s, (int, float)):
        raise ConfigError("duration_s", f"must be a number, got {type(duration_s).__name__}")
    if not (math.isfinite(duration_s) and 0 < duration_s <= DURATION_S_MAX):
        raise ConfigError("duration_s", f"must be in (0, {DURATION_S_MAX}], got {duration_s}")
    return Workload(size=size, inflight=inflight,
                    rate=None if rate is None else float(rate), duration_s=float(duration_s))


def payload(size: int, index: int) -> bytes:
    """A deterministic command body of exactly ``size`` bytes that varies with ``index``."""
    head = f"{index:016x}".encode()
    if size <= len(head):
        return head[-size:]
    return head + b"x" * (size - len(head))


def run_callback_load(submit: Callable[[Done], None], workload: Workload, *,
                      outstanding_max: int, drain_s: float) -> tuple[Observations, int]:
    """Drive ``submit`` with ``workload``; returns the observations and ``missed_schedule``.

    ``submit(done)`` starts one call and must arrange for ``done`` to be called once. It is
    called from this thread and, in closed loop, from whatever thread runs ``done``.
    """
    seen = Observations()
    lock = threading.Lock()
    clock = time.perf_counter
    start = clock()
    deadline = start + workload.duration_s
    outstanding = [0]       # calls submitted and not yet done (a closed-loop slot stays taken)
    finished = [False]      # set once the run is over: later completions are ignored
    submitting = threading.local()  # .active: this thread is inside submit()
    missed = 0

    def call(due: float, resubmit: bool, *, fresh: bool = True) -> None:
        def done(ok: bool, error: str | None) -> None:
            now = clock()
            with lock:
                if finished[0]:
                    return
                if ok:
                    seen.latencies_s.append(now - due)
                    seen.done_at_s.append(now - start)
                    seen.writes += 1
                else:
                    seen.failed(RuntimeError(error or "failed"))
                # A call that completed inside ``submit`` frees its slot instead of
                # recursing; the sending loop refills it (as it refills failed slots).
                nested = getattr(submitting, "active", False)
                again = resubmit and ok and now < deadline and not nested
                if not again:
                    outstanding[0] -= 1
            if again:   # the slot passes to the next call
                call(clock(), True, fresh=False)

        if fresh:
            with lock:
                outstanding[0] += 1
        submitting.active = True
        try:
            submit(done)
        except Exception as error:  # counted like a failed call; the run goes on
            done(False, f"{type(error).__name__}: {error}")
        finally:
            submitting.active = False

    # a workload has either inflight (closed loop) or rate (open loop): make_workload
    inflight, rate = workload.inflight, workload.rate
    if rate is None and inflight is not None:
        while clock() < deadline:
            # Refill slots freed by failures every 10 ms: this is the pause after an error.
            for _ in range(inflight - outstanding[0]):
                call(clock(), True)
            time.sleep(min(0.01, max(0.0, deadline - clock())))
    elif rate is not None:
        total = open_loop_count(rate, workload.duration_s)
        i = 0
        while i < total and clock() <= deadline + drain_s:
            now = clock()
            due_now = min(total, int((now - start) * rate) + 1)
            while i < due_now:
                due = start + open_loop_offset(i, rate)
                if (clock() - due) * 1e3 > LATE_THRESHOLD_MS:
                    missed += 1
                if outstanding[0] >= outstanding_max:
                    with lock:
                        seen.failed(OverflowError(f"{outstanding_max} calls outstanding"))
                else:
                    call(due, False)
                i += 1
            if i < total:
                time.sleep(min(0.002, max(0.0, start + open_loop_offset(i, rate)
                                          - clock())))
        with lock:
            seen.errors += total - i
    while outstanding[0] > 0 and clock() < deadline + drain_s:
        time.sleep(0.01)
    with lock:
        seen.errors += outstanding[0]       # abandoned: any later completion is not counted
        end = start + max(seen.done_at_s, default=0.0)
        seen.elapsed_s = max(end, min(clock(), deadline)) - start
        finished[0] = True
    return seen, missed


class ScheduleWatch:
    """Counts open-loop calls of :func:`pyraft.bench.load.run_load` that started late.

    ``run_load`` starts call ``i`` as a task due at ``start + i / rate`` and tasks start in
    creation order, so the ``i``-th invocation of the wrapped unit belongs to call ``i``.
    Create the watch immediately before ``run_load`` (its start differs by microseconds).
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.start = time.perf_counter()
        self.calls = 0
        self.missed = 0

    def started(self) -> None:
        due = self.start + open_loop_offset(self.calls, self.rate)
        self.calls += 1
        if (time.perf_counter() - due) * 1e3 > LATE_THRESHOLD_MS:
            self.missed += 1


def best_of(results: list[dict]) -> dict:
    """The measured result with the highest ``writes_per_s`` (or the first skipped one when
    none was measured), with ``peak_trials``: ``[inflight, writes_per_s]`` of every trial."""
    measured = [r for r in results if "skipped" not in r]
    if not measured:
        return results[0]
    best = dict(max(measured, key=lambda r: r["writes_per_s"]))
    best["peak_trials"] = [[r["workload"]["inflight"], r["writes_per_s"]] for r in measured]
    return best
