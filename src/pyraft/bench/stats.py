"""Figures of one load run, in the result schema every benchmarked system shares.

A *result* is a dict (``make_result`` builds one, ``check_result`` validates one)::

    {"system": "pyraft" | "pysyncobj" | "etcd", "version": str, "mode": str,
     "workload": {"kind": "closed" | "open", "api": str, "size": int, "inflight": int,
                  "rate": float | None, "duration_s": float, "members": int, ...},
     "writes": int, "errors": int, "elapsed_s": float, "writes_per_s": float,
     "latency_ms": {"p50", "p90", "p99", "p999", "max"},
     "series": [[t_s, count_per_window], ...], "latency_sample_ms": [...], "notes": str}

or ``{"system": ..., "skipped": "reason"}`` when a system could not be measured.

Percentiles are nearest-rank (the smallest value with at least ``q`` of the values at or below
it), so every reported percentile is a latency that was observed. The latency sample keeps the
values at evenly spaced ranks of the sorted latencies (always including the minimum and the
maximum): a bounded, deterministic summary from which the distribution can be plotted.
This module is pure: no clock, no I/O (the load generators pass times in). It sorts and counts
with numpy, which sorts without holding the GIL: a load generator summarises a run of millions
of calls in a worker thread while its event loop (a member's, for the engine loads) keeps
serving heartbeats.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

#: width of the throughput-over-time windows, in seconds
WINDOW_S = 0.1
#: the percentiles reported, by key in ``latency_ms``
PERCENTILES = {"p50": 0.50, "p90": 0.90, "p99": 0.99, "p999": 0.999}
#: the most values a latency sample holds
SAMPLE_POINTS_MAX = 1001
RESULT_KEYS = ("system", "version", "mode", "workload", "writes", "errors", "elapsed_s",
               "writes_per_s", "latency_ms", "series", "latency_sample_ms", "notes")
WORKLOAD_KEYS = ("kind", "api", "size", "inflight", "rate", "duration_s", "members")


class BenchSchemaError(ValueError):
    """A result does not follow the shared schema; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def percentile(sorted_values: Sequence[float] | np.ndarray, q: float) -> float:
    """The nearest-rank ``q``-quantile (0 < q <= 1) of ascending ``sorted_values``."""
    if not 0.0 < q <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], not {q!r}")
    if not len(sorted_values):
        raise ValueError("no values")
    rank = max(1, math.ceil(q * len(sorted_values) - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary(latencies_s: Iterable[float]) -> dict[str, float | None]:
    """p50/p90/p99/p999/max of latencies given in seconds, in milliseconds (None if empty)."""
    ordered = _ascending(latencies_s)
    if not len(ordered):
        return {**{key: None for key in PERCENTILES}, "max": None}
    summary: dict[str, float | None] = {
        key: float(percentile(ordered, q)) * 1e3 for key, q in PERCENTILES.items()}
    summary["max"] = float(ordered[-1]) * 1e3
    return summary


def _ascending(values: Iterable[float]) -> np.ndarray:
    """``values`` as an ascending float64 array (a list, an ``array('d')`` without a copy,
    or any iterable of numbers)."""
    return np.sort(_floats(values))


def _floats(values: Iterable[float]) -> np.ndarray:
    if not isinstance(values, (Sequence, np.ndarray)):
        values = list(values)
    return np.asarray(values, dtype=np.float64)


def latency_sample(latencies_s: Iterable[float], points: int = SAMPLE_POINTS_MAX) -> list[float]:
    """At most ``points`` (>= 2) latencies in ms at evenly spaced ranks, ascending, with the
    minimum and the maximum."""
    if points < 2:
        raise ValueError(f"points must be >= 2, not {points!r}")
    ordered = _ascending(latencies_s)
    if len(ordered) <= points:
        return [float(value) * 1e3 for value in ordered]
    last = len(ordered) - 1
    return [float(ordered[round(i * last / (points - 1))]) * 1e3 for i in range(points)]


def series(done_at_s: Iterable[float], duration_s: float, window_s: float = WINDOW_S,
           weight: int = 1) -> list[list[float]]:
    """Completions per window: ``[[window start in s, count], ...]`` covering
    ``[0, duration_s]``, each completion counting ``weight`` (the writes of one call);
    completions outside that span are not counted."""
    if window_s <= 0 or duration_s < 0 or weight < 1:
        raise ValueError("window_s must be > 0, duration_s >= 0 and weight >= 1")
    windows = max(1, math.ceil(duration_s / window_s - 1e-9))
    times = _floats(done_at_s)
    times = times[(times >= 0) & (times <= duration_s)]
    slots = np.minimum(windows - 1, (times / window_s).astype(np.int64))
    counts = np.bincount(slots, minlength=windows) * weight
    return [[round(i * window_s, 6), int(count)] for i, count in enumerate(counts)]


def open_loop_count(rate: float, duration_s: float) -> int:
    """How many requests an open-loop run at ``rate`` per second sends in ``duration_s``:
    those due in ``[0, duration_s)`` (see ``open_loop_offset``)."""
    if not (rate > 0 and duration_s > 0):
        raise ValueError(f"rate and duration_s must be > 0, not {rate!r}, {duration_s!r}")
    return max(1, math.ceil(rate * duration_s - 1e-9))


def open_loop_offset(i: int, rate: float) -> float:
    """When request ``i`` (from 0) is due, in seconds after the start. Latency is measured from
    this intended time, not from when it was sent, so a stall delays (and charges) every
    request due during it instead of hiding them (no coordinated omission)."""
    return i / rate


def make_result(*, system: str, version: str, mode: str, workload: dict, writes: int,
                errors: int, elapsed_s: float, latencies_s: Sequence[float],
                done_at_s: Sequence[float], notes: str = "", per_call: int = 1) -> dict:
    """A result in the shared schema from the raw observations of one run: a latency and a
    completion time per successful call, each call being ``per_call`` writes."""
    if elapsed_s <= 0:
        raise BenchSchemaError("elapsed_s", f"must be > 0, not {elapsed_s!r}")
    return {
        "system": system,
        "version": version,
        "mode": mode,
        "workload": dict(workload),
        "writes": writes,
        "errors": errors,
        "elapsed_s": elapsed_s,
        "writes_per_s": writes / elapsed_s,
        "latency_ms": latency_summary(latencies_s),
        "series": series(done_at_s, elapsed_s, weight=per_call),
        "latency_sample_ms": latency_sample(latencies_s),
        "notes": notes,
    }


def check_result(result: object) -> dict:
    """Return ``result`` if it follows the schema (a measured or a skipped result); raise
    BenchSchemaError naming the first field that does not."""
    if not isinstance(result, dict):
        raise BenchSchemaError("result", f"must be a dict, not {type(result).__name__}")
    if not isinstance(result.get("system"), str):
        raise BenchSchemaError("system", "missing or not a string")
    if "skipped" in result:
        if not isinstance(result["skipped"], str) or not result["skipped"]:
            raise BenchSchemaError("skipped", "must be a non-empty reason")
        return result
    for key in RESULT_KEYS:
        if key not in result:
            raise BenchSchemaError(key, "missing")
    workload = result["workload"]
    if not isinstance(workload, dict):
        raise BenchSchemaError("workload", "must be a dict")
    for key in WORKLOAD_KEYS:
        if key not in workload:
            raise BenchSchemaError(f"workload.{key}", "missing")
    if workload["kind"] not in ("closed", "open"):
        raise BenchSchemaError("workload.kind", f"must be closed or open, not {workload['kind']!r}")
    for key in ("writes", "errors"):
        if not isinstance(result[key], int) or result[key] < 0:
            raise BenchSchemaError(key, f"must be an integer >= 0, not {result[key]!r}")
    for key in ("elapsed_s", "writes_per_s"):
        if not isinstance(result[key], (int, float)) or result[key] < 0:
            raise BenchSchemaError(key, f"must be a number >= 0, not {result[key]!r}")
    latency = result["latency_ms"]
    if not isinstance(latency, dict) or set(latency) != {*PERCENTILES, "max"}:
        raise BenchSchemaError("latency_ms", f"needs exactly {[*PERCENTILES, 'max']}")
    known = [latency[key] for key in (*PERCENTILES, "max") if latency[key] is not None]
    if known != sorted(known):
        raise BenchSchemaError("latency_ms", f"percentiles must not decrease: {latency}")
    if not isinstance(result["series"], list) or not all(
            isinstance(point, (list, tuple)) and len(point) == 2 for point in result["series"]):
        raise BenchSchemaError("series", "must be a list of [t_s, count] pairs")
    sample = result["latency_sample_ms"]
    if not isinstance(sample, list) or len(sample) > SAMPLE_POINTS_MAX:
        raise BenchSchemaError("latency_sample_ms",
                               f"must be a list of at most {SAMPLE_POINTS_MAX} values")
    return result


def skipped(system: str, reason: str) -> dict:
    """The result of a system that was not measured, with the reason."""
    return {"system": system, "skipped": reason}
