"""The two builds of one source (issue 18), measured side by side in one run.

pyraft's core and per-write path are compiled from their ``.py`` files; with
``PYRAFT_PURE_CORE=1`` in its environment a process runs those same files pure, over the
compiled kernels: the *pure build*, the baseline every goal of issue 18 is measured against.
The suite runs it as a peer: member processes (and the load generator inside the leader)
are started under :func:`environment` of each build in turn, with the same load shapes.

This module also runs the two build comparisons that need no cluster, each as one
subprocess per build and round, alternating builds so a change of the host's speed during
the run touches both:

- :func:`core`: ``python -m pyraft.bench.core --json`` (what ``benchmarks/test_bench_core.py``
  runs), committed entries per CPU second through 3 cores with an instant network (no I/O);
- :func:`simulator`: the simulator's ``main`` as ``python -m pyraft.testing.sim --seeds A:B``
  runs it, seeds per CPU minute (the CPU time of ``main`` measured around it in the child,
  to the microsecond: the simulator's own summary rounds it to 0.1 s, too coarse for a quick
  run; interpreter start and imports are left out, so a busy machine slows both builds
  alike).

:func:`info` asks ``pyraft info --json`` under each build's environment, so the report says
which build each figure had, as the process itself saw it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator

COMPILED = "compiled"
PURE = "pure"
BUILDS = (COMPILED, PURE)
#: the ``system`` of results measured with the pure build
PURE_SYSTEM = "pyraft-pure"
#: what each build sets in a child's environment (None: removed)
ENVIRONMENT: dict[str, dict[str, str | None]] = {
    COMPILED: {"PYRAFT_PURE_CORE": None},
    PURE: {"PYRAFT_PURE_CORE": "1"},
}
#: ``pyraft info``'s ``build`` of each (the start of it)
INFO_BUILD = {COMPILED: "compiled", PURE: "pure core over compiled kernels"}


class BuildError(RuntimeError):
    """A build comparison could not run (a subprocess failed or printed no figure)."""


def _check(build: str) -> None:
    if build not in BUILDS:
        raise ValueError(f"build must be one of {BUILDS}, not {build!r}")


def child_environment(build: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default: this process's environment) set for ``build``."""
    _check(build)
    env = dict(os.environ if base is None else base)
    for name, value in ENVIRONMENT[build].items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


@contextlib.contextmanager
def environment(build: str) -> Iterator[None]:
    """This process's environment set for ``build`` while inside: every child started here
    (member processes) inherits it. Restored on exit."""
    _check(build)
    saved = {name: os.environ.get(name) for name in ENVIRONMENT[build]}
    try:
        for name, value in ENVIRONMENT[build].items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def info(build: str, timeout_s: float = 120.0) -> dict:
    """``pyraft info --json`` run under ``build``'s environment: ``{"build", "compiled",
    "profile_guided"}``,
    with ``"as_expected"`` False when the process did not get the build asked for (a build
    not installed, or PYRAFT_NO_EXTENSIONS set)."""
    done = subprocess.run([sys.executable, "-m", "pyraft", "info", "--json"],
                          capture_output=True, text=True, timeout=timeout_s,
                          env=child_environment(build))
    if done.returncode != 0:
        raise BuildError(f"pyraft info ({build}) exited {done.returncode}: "
                         f"{done.stderr.strip()[-1000:]}")
    answer = json.loads(done.stdout)
    modules = answer.get("compiled", {})
    return {"build": answer.get("build"),
            "profile_guided": bool(answer.get("profile_guided", False)),
            "modules_compiled": sum(1 for v in modules.values() if v == "compiled"),
            "modules": len(modules),
            "as_expected": str(answer.get("build", "")).startswith(INFO_BUILD[build])}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def alternate(rounds: int, measure: Callable[[str], float]) -> dict:
    """``measure(build)`` ``rounds`` times per build, alternating compiled and pure; per
    build the values and their median, and the ratio of the medians (compiled / pure)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, not {rounds!r}")
    values: dict[str, list[float]] = {build: [] for build in BUILDS}
    for _ in range(rounds):
        for build in BUILDS:
            values[build].append(measure(build))
    out: dict = {build: {"values": values[build], "median": statistics.median(values[build])}
                 for build in BUILDS}
    out["ratio"] = ratio(out[COMPILED]["median"], out[PURE]["median"])
    return out


# ---- the core alone -------------------------------------------------------------------------
def core_once(build: str, batches: int, runs: int, timeout_s: float = 300.0) -> float:
    """The median committed entries per CPU second of one ``python -m pyraft.bench.core
    --json`` process under ``build`` (from the temporary directory: the package imported is
    the one installed, or the checkout's in an editable install)."""
    done = subprocess.run([sys.executable, "-m", "pyraft.bench.core", "--json", "--batches",
                           str(batches), "--runs", str(runs)], capture_output=True, text=True,
                          timeout=timeout_s, env=child_environment(build),
                          cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise BuildError(f"core benchmark ({build}) exited {done.returncode}: "
                         f"{done.stderr.strip()[-1000:]}")
    figure = json.loads(done.stdout.strip().splitlines()[-1])
    return float(figure["median_entries_per_cpu_s"])


def core(batches: int, runs: int, rounds: int) -> dict:
    """Committed entries per CPU second of the core alone, compiled and pure (see
    :func:`alternate`), with the command."""
    out = alternate(rounds, lambda build: core_once(build, batches, runs))
    out["unit"] = "committed entries per CPU second"
    out["command"] = (f"python -m pyraft.bench.core --json --batches {batches} "
                      f"--runs {runs} (each member snapshots every 8,192 applied entries, "
                      f"as by default; PYRAFT_PURE_CORE=1 for the pure build)")
    return out


# ---- the simulator ----------------------------------------------------------------------------
_SIM_LINE = re.compile(r"^(\d+) seeds, (\d+) passed, (\d+) failed .*cpu=([0-9.]+)s", re.M)


def parse_sim_output(text: str) -> dict:
    """``{"seeds", "passed", "failed", "cpu_s"}`` from the simulator's closing line;
    BuildError when there is none."""
    match = _SIM_LINE.search(text)
    if match is None:
        raise BuildError(f"no summary line in the simulator's output: {text.strip()[-500:]!r}")
    seeds, passed, failed = (int(match.group(i)) for i in (1, 2, 3))
    return {"seeds": seeds, "passed": passed, "failed": failed, "cpu_s": float(match.group(4))}


#: the child that runs the simulator: its ``main`` (what ``python -m pyraft.testing.sim``
#: runs) with the CPU time around it printed as the last line
_SIM_RUNNER = """
import json, sys, time
from pyraft.testing import sim
started = time.process_time()
code = sim.main(["--seeds", sys.argv[1]])
print(json.dumps({"main_cpu_s": time.process_time() - started}))
sys.exit(code)
"""


def simulator_once(build: str, seeds: str, timeout_s: float = 900.0) -> float:
    """Seeds per CPU minute of the simulator's ``main(["--seeds", SEEDS])`` in one process
    under ``build``; BuildError when a seed failed (a figure of a broken run is no figure)."""
    done = subprocess.run([sys.executable, "-c", _SIM_RUNNER, seeds], capture_output=True,
                          text=True, timeout=timeout_s, env=child_environment(build))
    figures = parse_sim_output(done.stdout)
    if done.returncode != 0 or figures["failed"]:
        raise BuildError(f"simulator ({build}) --seeds {seeds}: {figures['failed']} seeds "
                         f"failed (exit {done.returncode})")
    try:
        cpu_s = float(json.loads(done.stdout.strip().splitlines()[-1])["main_cpu_s"])
    except (ValueError, KeyError, IndexError) as error:
        raise BuildError(f"simulator ({build}): no CPU time printed: {error}") from error
    if cpu_s <= 0:
        raise BuildError(f"simulator ({build}): CPU time {cpu_s} s")
    return figures["seeds"] / cpu_s * 60.0


def simulator(seeds: str, rounds: int) -> dict:
    """The simulator's seeds per CPU minute, compiled and pure (see :func:`alternate`)."""
    out = alternate(rounds, lambda build: simulator_once(build, seeds))
    out["unit"] = "seeds per CPU minute"
    out["command"] = (f"python -m pyraft.testing.sim --seeds {seeds} (3 members, all faults; "
                      f"PYRAFT_PURE_CORE=1 for the pure build; CPU time of its main)")
    return out


__all__ = ["COMPILED", "PURE", "BUILDS", "PURE_SYSTEM", "BuildError", "child_environment",
           "environment", "info", "ratio", "alternate", "core", "simulator",
           "parse_sim_output"]
