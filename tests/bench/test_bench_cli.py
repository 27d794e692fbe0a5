"""``pyraft bench``: the figures code (percentiles, series, open-loop arithmetic, the result
schema, goals, kernel folding) and one quick run of the cluster section into a temp dir."""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyraft.bench import compare, machine, report, stats, workloads
from pyraft.bench import load as load_module
from pyraft.bench.cli import Progress
from pyraft.bench.load import run_load
from pyraft.bench.workloads import (
    DURABLE,
    fold_kernels,
    kernels_command,
)

finite = st.floats(min_value=0, max_value=1e6, allow_nan=False)


# ---- percentiles and samples ------------------------------------------------------------------
@given(st.lists(finite, min_size=1, max_size=200), st.floats(min_value=1e-6, max_value=1.0))
def test_percentile_is_the_nearest_rank(values, q):
    ordered = sorted(values)
    value = stats.percentile(ordered, q)
    assert value in ordered
    at_or_below = sum(v <= value for v in ordered)
    below = sum(v < value for v in ordered)
    assert at_or_below >= q * len(ordered) - 1e-6  # at least q of the values are <= it
    assert below < q * len(ordered) + 1e-6  # and it is the smallest such value


def test_percentiles_of_a_known_distribution():
    latencies = [i / 1000 for i in range(1, 1001)]  # 1 ms .. 1000 ms, shuffled below
    latencies = latencies[::2] + latencies[1::2]
    summary = stats.latency_summary(latencies)
    assert summary == pytest.approx({"p50": 500, "p90": 900, "p99": 990, "p999": 999,
                                     "max": 1000})
    assert stats.latency_summary([]) == {"p50": None, "p90": None, "p99": None, "p999": None,
                                         "max": None}


@pytest.mark.parametrize("q", [0, -0.5, 1.5, float("nan")])
def test_percentile_rejects_bad_quantiles(q):
    with pytest.raises(ValueError, match="quantile"):
        stats.percentile([1.0], q)


def test_percentile_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="no values"):
        stats.percentile([], 0.5)


@given(st.lists(finite, min_size=0, max_size=3000), st.integers(min_value=2, max_value=50))
def test_latency_sample_is_bounded_sorted_and_keeps_the_extremes(values, points):
    sample = stats.latency_sample(values, points)
    assert len(sample) == min(len(values), points)
    assert sample == sorted(sample)
    if values:
        assert sample[0] == pytest.approx(min(values) * 1e3)
        assert sample[-1] == pytest.approx(max(values) * 1e3)


# ---- throughput over time and open-loop arithmetic ----------------------------------------------
@given(st.lists(st.floats(min_value=-1, max_value=20, allow_nan=False), max_size=500),
       st.floats(min_value=0.05, max_value=10), st.integers(min_value=1, max_value=256))
def test_series_counts_every_completion_inside_the_run_once(done_at, duration, weight):
    points = stats.series(done_at, duration, weight=weight)
    assert len(points) == max(1, math.ceil(duration / stats.WINDOW_S - 1e-9))
    assert sum(count for _, count in points) == weight * sum(0 <= t <= duration for t in done_at)
    starts = [t for t, _ in points]
    assert starts == sorted(starts) and starts[0] == 0


def test_series_windows():
    assert stats.series([0.0, 0.05, 0.1, 0.25, 0.3, 0.31], 0.3) == [[0.0, 2], [0.1, 1], [0.2, 2]]
    with pytest.raises(ValueError):
        stats.series([], 1.0, window_s=0)


@given(st.floats(min_value=0.5, max_value=1e6), st.floats(min_value=0.01, max_value=100))
def test_open_loop_sends_rate_times_duration_all_due_within_the_run(rate, duration):
    count = stats.open_loop_count(rate, duration)
    assert count >= 1
    # exactly the requests due in [0, duration): the last one inside, the next one not
    assert stats.open_loop_offset(count - 1, rate) < duration or count == 1
    assert stats.open_loop_offset(count, rate) >= duration * (1 - 1e-9)
    if count:
        offsets = [stats.open_loop_offset(i, rate) for i in range(min(count, 50))]
        assert all(b - a == pytest.approx(1 / rate) for a, b in zip(offsets, offsets[1:]))


@pytest.mark.parametrize("rate,duration", [(0, 1), (-1, 1), (10, 0), (float("nan"), 1)])
def test_open_loop_rejects_non_positive_rates_and_durations(rate, duration):
    with pytest.raises(ValueError):
        stats.open_loop_count(rate, duration)


def test_open_loop_charges_a_stall_to_every_request_due_during_it():
    calls = []

    async def unit():
        calls.append(time.perf_counter())
        if len(calls) == 5:
            time.sleep(0.2)  # the loop itself stalls: requests due meanwhile are late

    seen = asyncio.run(run_load(unit, rate=200, duration_s=0.5))
    assert seen.writes == 100 and seen.errors == 0
    late = [latency for latency in seen.latencies_s if latency > 0.05]
    # the ~40 requests due during the stall are charged from their due time, not from when
    # they could finally be sent (a closed-loop client would report one slow request)
    assert len(late) >= 20
    assert max(seen.latencies_s) >= 0.15


def test_closed_loop_counts_batches_errors_and_stops():
    calls = 0

    async def unit():
        nonlocal calls
        calls += 1
        mine = calls
        await asyncio.sleep(0)
        if mine % 4 == 0:
            raise RuntimeError("lost")

    seen = asyncio.run(run_load(unit, inflight=3, duration_s=0.2, per_unit=8, count=40,
                                error_pause_s=0))
    assert calls == 40
    assert seen.errors == 10 and seen.writes == 30 * 8
    assert seen.first_error == "RuntimeError: lost"
    assert len(seen.latencies_s) == len(seen.done_at_s) == 30
    result = stats.make_result(system="pyraft", version="0", mode="memory",
                               workload=_workload(), writes=seen.writes, errors=seen.errors,
                               elapsed_s=seen.elapsed_s, latencies_s=seen.latencies_s,
                               done_at_s=seen.done_at_s, per_call=8)
    assert sum(count for _, count in result["series"]) == 240
    assert stats.check_result(result) is result



def test_a_closed_loop_call_is_timed_from_its_start_after_the_previous_one():
    """One worker: each call starts once the previous returned, so its latency (>= the 2 ms
    it sleeps) fits between the two completions, and a pause after an error is not counted
    in the next call's latency."""
    calls = 0

    async def unit():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.002)
        if calls == 3:
            raise RuntimeError("once")

    seen = asyncio.run(run_load(unit, inflight=1, duration_s=5, count=8, error_pause_s=0.5))
    assert calls == 8 and seen.writes == 7 and seen.errors == 1
    latencies, done = list(seen.latencies_s), list(seen.done_at_s)
    assert len(latencies) == len(done) == 7
    assert all(0.002 <= latency < 0.5 for latency in latencies)  # the pause is not in any
    assert all(later - earlier >= latency - 1e-9
               for earlier, later, latency in zip(done, done[1:], latencies[1:]))

def test_a_closed_loop_worker_records_its_calls_across_chunks(monkeypatch):
    """A worker notes completion times and turns them into latencies per ``RECORD_CALLS``
    calls (3 here): with a clock that reads 0, 1, 2, ... each call and each pause takes
    exactly one reading, so every latency is 1, at chunk boundaries and after errors too
    (errors at calls 3, 6, 7 and 13: a pause inside a chunk, two in a row across one, and one
    after the last call), and the completion times are the readings of the successes."""
    readings = iter(range(10_000))
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(readings)))
    monkeypatch.setattr(load_module, "RECORD_CALLS", 3)
    calls = 0

    async def unit():
        nonlocal calls
        calls += 1
        if calls in (3, 6, 7, 13):
            raise RuntimeError("lost")

    seen = asyncio.run(run_load(unit, inflight=1, duration_s=1e6, count=13, per_unit=2,
                                error_pause_s=0))
    assert calls == 13 and seen.errors == 4 and seen.writes == 9 * 2
    assert list(seen.latencies_s) == [1.0] * 9
    done = list(seen.done_at_s)  # since the load's start, its first reading: the loop may
    assert done[0] >= 2.0  # read the clock before it does
    assert [t - done[0] for t in done] == [0.0, 1.0, 3.0, 4.0, 7.0, 8.0, 9.0, 10.0, 11.0]


def test_run_load_rejects_bad_arguments():
    async def unit():
        return None

    for kwargs in ({"duration_s": 0}, {"duration_s": 1, "inflight": 0},
                   {"duration_s": 1, "count": 0}):
        with pytest.raises(ValueError):
            asyncio.run(run_load(unit, **kwargs))


# ---- the result schema ------------------------------------------------------------------------
def _workload(**changes):
    return {"kind": "closed", "api": "engine", "size": 16, "inflight": 256, "rate": None,
            "duration_s": 1.0, "members": 3, **changes}


def _result(writes_per_s=1000.0, p50=1.0, mode=DURABLE, **workload):
    return {"system": "pyraft", "version": "0", "mode": mode, "workload": _workload(**workload),
            "writes": int(writes_per_s), "errors": 0, "elapsed_s": 1.0,
            "writes_per_s": writes_per_s,
            "latency_ms": {"p50": p50, "p90": p50, "p99": p50 * 2, "p999": p50 * 3,
                           "max": p50 * 4},
            "series": [[0.0, 10]], "latency_sample_ms": [p50], "notes": ""}


@pytest.mark.parametrize("change,field", [
    (lambda r: r.pop("writes"), "writes"),
    (lambda r: r["workload"].pop("members"), "workload.members"),
    (lambda r: r["workload"].update(kind="sideways"), "workload.kind"),
    (lambda r: r.update(errors=-1), "errors"),
    (lambda r: r.update(writes_per_s="fast"), "writes_per_s"),
    (lambda r: r["latency_ms"].update(p99=0.1), "latency_ms"),
    (lambda r: r["latency_ms"].pop("p999"), "latency_ms"),
    (lambda r: r.update(series=[[1, 2, 3]]), "series"),
    (lambda r: r.update(latency_sample_ms=[1.0] * 5000), "latency_sample_ms"),
    (lambda r: r.update(system=None), "system"),
])
def test_check_result_names_the_bad_field(change, field):
    result = _result()
    change(result)
    with pytest.raises(stats.BenchSchemaError) as error:
        stats.check_result(result)
    assert error.value.field == field
    assert isinstance(error.value, ValueError)


def test_check_result_accepts_skipped_results_with_a_reason():
    assert stats.check_result(stats.skipped("etcd", "not installed"))["skipped"]
    with pytest.raises(stats.BenchSchemaError):
        stats.check_result({"system": "etcd", "skipped": ""})
    with pytest.raises(stats.BenchSchemaError):
        stats.check_result([1, 2])


# ---- goals and ratios ------------------------------------------------------------------------
def _report(peer_writes=None, failover=(200.0, 500.0), p50=0.5):
    cluster = {
        "throughput": [_result(150_000.0), _result(800.0, p50=p50, inflight=1)],
        "latency": [], "reads": [],
        "peak": [_result(300_000.0, batch=128, inflight=8)],
        "failover": {"trials": 20, "median_ms": failover[0], "max_ms": failover[1],
                     "election_timeout_ms": [150.0, 300.0]},
    }
    peers = {"pysyncobj": stats.skipped("pysyncobj", "not installed"),
             "etcd": stats.skipped("etcd", "not installed")}
    if peer_writes is not None:
        peers["pysyncobj"] = {"system": "pysyncobj", "runs": [
            {"spec": spec, "result": _result(peer_writes)}
            for spec in ({"kind": "closed", "size": 16, "inflight": 256, "rate": None,
                          "journal": True},
                         {"kind": "peak", "size": 16, "inflight": None, "rate": None,
                          "journal": True})]}
    return {"cluster": cluster, "peers": peers,
            "reference": {"fdatasync_4k_ms": 0.3, "loopback_rtt_ms": 0.05,
                          "replication_floor_ms": 0.4}}


def test_goals_met_not_met_and_not_measured():
    goals = {g["goal"][:2]: g for g in report.issue7_goals(_report())}
    assert goals["1a"]["status"] == "met" and goals["1a"]["ratio"] == pytest.approx(1.5)
    assert goals["1b"]["status"] == "not measured"
    assert "not installed" in goals["1b"]["figures"]["reason"]
    assert goals["2."]["status"] == "not measured"
    assert goals["3."]["status"] == "met"  # 0.5 <= 2 * (0.3 + 0.05)
    assert goals["3."]["figures"]["p50_over_floor"] == pytest.approx(0.5 / 0.4)
    assert goals["4."]["status"] == "met"  # 200 < 600 and 500 < 1200
    goals = {g["goal"][:2]: g for g in report.issue7_goals(_report(
        peer_writes=10_000.0, p50=0.8, failover=(200.0, 1300.0)))}
    assert goals["1b"]["status"] == "not met" and goals["1b"]["ratio"] == pytest.approx(15)
    assert goals["2."]["status"] == "met" and goals["2."]["ratio"] == pytest.approx(30)
    assert goals["3."]["status"] == "not met"
    assert goals["4."]["status"] == "not met"
    assert all(g["status"] == "not measured" for g in report.issue7_goals({}))


def test_ratios_pair_the_same_load_shape():
    data = _report(peer_writes=10_000.0)
    rows = compare.ratios(data["cluster"], data["peers"])
    closed = next(r for r in rows if r["spec"]["kind"] == "closed")
    assert closed["ratio_writes_per_s"] == pytest.approx(15.0)
    peak = next(r for r in rows if r["spec"]["kind"] == "peak")
    assert peak["ratio_writes_per_s"] == pytest.approx(30.0)
    data["cluster"]["throughput"] = []
    assert "skipped" in compare.ratios(data["cluster"], data["peers"])[0]


def test_missing_peer_drivers_are_reported_as_skipped(monkeypatch):
    plan = compare.Plan.build(quick=True)
    labels = []
    got = compare.run_peers(plan, None, labels.append, names=("no_such_system",))
    assert got["no_such_system"]["skipped"].startswith("driver not available")
    assert labels == ["peer no_such_system"]


def test_durability_keyword_follows_the_driver():
    def journaled(workdir, *, journal=False):
        return None

    def always_durable(workdir, *, size=16):
        return None

    assert compare.durability(journaled, True) == {"journal": True}
    assert compare.durability(always_durable, True) == {}
    with pytest.raises(ValueError, match="non-durable"):
        compare.durability(always_durable, False)


def test_summary_and_json_hold_every_figure(tmp_path):
    data = _report()
    data["goals"] = report.goals(data)
    data["goals_issue7"] = report.issue7_goals(data)
    text = report.summary(data)
    assert "goals of issue 7" in text and "goals of issue 18" in text
    assert "150,000" in text and "failover" in text and "skipped (not installed)" in text
    path = report.write_json(data, str(tmp_path))
    with open(path) as f:
        assert json.load(f) == data


# ---- kernels, machine, progress ---------------------------------------------------------------
def test_fold_kernels_gives_medians_and_reference_ratios():
    raw = {"benchmarks": [
        {"group": "crc32c 1MiB", "name": "t[a]", "param": "raftcore-1MiB",
         "stats": {"median": 1e-4}},
        {"group": "crc32c 1MiB", "name": "t[b]", "param": "crc32c-package-1MiB",
         "stats": {"median": 3e-4}},
        {"group": "frames", "name": "test_frame", "param": None, "stats": {"median": 2e-3}},
    ]}
    folded = fold_kernels(raw)["groups"]
    assert folded["crc32c 1MiB"]["compiled"] == "raftcore-1MiB"
    assert folded["crc32c 1MiB"]["ratio_to_compiled"] == {"crc32c-package-1MiB":
                                                          pytest.approx(3.0)}
    assert folded["frames"]["median_s"] == {"test_frame": 2e-3}
    assert folded["frames"]["ratio_to_compiled"] == {}


def test_mount_of_picks_the_longest_mount_point(tmp_path):
    mounts = ("/dev/vda1 / ext4 rw 0 0\n"
              f"/dev/nvme0n1p2 {tmp_path} xfs rw 0 0\n"
              f"tmpfs {tmp_path}x tmpfs rw 0 0\n")
    assert machine.mount_of(str(tmp_path / "data"), mounts) == {
        "device": "/dev/nvme0n1p2", "mount_point": str(tmp_path), "filesystem": "xfs"}
    assert machine.mount_of("/etc", mounts)["filesystem"] == "ext4"
    assert machine.mount_of("/etc", "") is None


def test_reference_costs_are_positive(tmp_path):
    assert machine.fdatasync_ms(str(tmp_path), count=5) > 0
    assert machine.loopback_rtt_ms(count=20) > 0
    floor = machine.replication_floor_ms(str(tmp_path), count=20)
    assert 0 < floor < 1000  # a sync's cost varies run to run: only that it ran is checked
    assert os.listdir(tmp_path) == []  # the three files are gone, the members have exited
    with pytest.raises(ValueError):
        machine.fdatasync_ms(str(tmp_path), count=0)
    with pytest.raises(ValueError):
        machine.replication_floor_ms(str(tmp_path), count=0)
    with pytest.raises(ValueError):
        machine.replication_floor_ms(str(tmp_path), count=1, work_us=-1)


def test_floor_work_lies_on_the_write_path(tmp_path):
    # 2 ms of work per member per write: the writer's 1 ms before it sends and 1 ms after the
    # first answer, the answering member's 2 ms before it writes: at least 4 ms per write
    assert machine.replication_floor_ms(str(tmp_path), count=3, work_us=2000) >= 4.0
    assert os.listdir(tmp_path) == []


def test_work_budget_is_interpolated_where_the_floor_crosses_the_bound():
    curve = {0.0: 0.1, 25.0: 0.2, 50.0: 0.4, 75.0: 0.8}
    calls = []

    def floor(directory, count, work_us):
        calls.append(work_us)
        return curve[work_us]

    found = machine.work_budget_us("unused", 0.3, floor=floor)
    assert found["work_budget_us"] == pytest.approx(37.5)  # 25 + 25 * (0.3 - 0.2) / 0.2
    assert found["points"] == [[0.0, 0.1], [25.0, 0.2], [50.0, 0.4]] and calls == [0, 25, 50]
    assert machine.work_budget_us("unused", 0.05, floor=floor)["work_budget_us"] == 0.0
    assert machine.work_budget_us("unused", 5.0, floor=floor, steps_max=3)[
        "work_budget_us"] is None  # never crossed within the steps allowed
    with pytest.raises(ValueError):
        machine.work_budget_us("unused", 0.0, floor=floor)


def test_process_cpu_time_grows_with_work():
    before = machine.process_cpu_s(os.getpid())
    until = time.process_time() + 0.05
    while time.process_time() < until:
        pass
    after = machine.process_cpu_s(os.getpid())
    assert before is not None and after is not None
    assert sum(after) - sum(before) >= 0.03  # clock ticks are 10 ms: most of the 50 ms
    assert machine.process_cpu_s(2**22 + 7) is None  # no such process


def test_progress_bar_counts_steps():
    stream = io.StringIO()
    progress = Progress(4, stream, width=8)
    progress.tick("one")
    progress.tick("two")
    assert stream.getvalue().splitlines()[-1].startswith("[####----] 2/4")
    assert stream.getvalue().splitlines()[-1].endswith("two")


# ---- one quick run of the cluster section -----------------------------------------------------
def _run_bench(args, timeout=240):
    return subprocess.run([sys.executable, "-m", "pyraft", "bench", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_bad_options_are_refused_clearly(tmp_path):
    done = _run_bench(["cluster", "--duration", "-1", "--out", str(tmp_path)], timeout=60)
    assert done.returncode != 0 and "--duration must be positive" in done.stderr
    done = _run_bench(["cluster", "--dir", str(tmp_path / "missing"), "--out", str(tmp_path)],
                      timeout=60)
    assert done.returncode != 0 and "is not a directory" in done.stderr



def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the members through /proc")
@pytest.mark.parametrize("after_s", [0.0, 3.0], ids=["while-starting", "mid-load"])
def test_sigterm_stops_the_run_and_every_member_it_started(tmp_path, after_s):
    data = tmp_path / "data"
    data.mkdir()
    bench = subprocess.Popen([sys.executable, "-m", "pyraft", "bench", "cluster", "--quick",
                              "--no-peers", "--duration", "30", "--dir", str(data), "--out",
                              str(tmp_path / "out")], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_processes_mentioning(str(data))) < 4:
            time.sleep(0.2)  # the bench and its three members
        members = [pid for pid in _processes_mentioning(str(data)) if pid != bench.pid]
        assert len(members) >= 3, "the members did not start"
        time.sleep(after_s)  # 0: members may still be starting; 3 s: inside a 30 s load
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(60) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _processes_mentioning(str(data)):
            time.sleep(0.2)
        assert _processes_mentioning(str(data)) == []  # every member stopped with it
        assert os.listdir(data) == []  # and its data removed
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait(10)
        for pid in _processes_mentioning(str(data)):  # only the members this test started
            os.kill(pid, signal.SIGKILL)

def test_quick_cluster_run_writes_a_complete_report(tmp_path):
    out, data = tmp_path / "out", tmp_path / "data"
    data.mkdir()
    done = _run_bench(["cluster", "--quick", "--no-peers", "--duration", "0.5", "--failovers",
                       "2", "--catchup-bytes", str(4 << 20), "--snapshot-bytes", str(8 << 20),
                       "--sim-seeds", "0:2", "--dir", str(data), "--out", str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "failover" in done.stdout and "report:" in done.stdout
    steps = re.findall(r"\] (\d+)/(\d+) ", done.stderr)
    assert steps and steps[-1][0] == steps[-1][1]  # the progress bar reached its end
    assert {total for _, total in steps} == {steps[-1][1]}  # whose length it knew at the start
    # one step per line, none past the end (a bar that counts too few steps stays full)
    assert [int(done) for done, _ in steps] == list(range(1, int(steps[-1][1]) + 1))
    assert os.listdir(data) == []  # data directories removed
    result = json.loads((out / "report.json").read_text())
    facts = result["machine"]
    assert facts["cores"] >= 1 and facts["kernel"] and facts["python"].startswith("CPython")
    assert facts["disk"]["filesystem"] and facts["memory_bytes"] > 0
    assert result["reference"]["fdatasync_4k_ms"] > 0 < result["reference"]["loopback_rtt_ms"]
    budget = result["latency_budget"]
    assert budget["bound_ms"] == pytest.approx(2 * (result["reference"]["fdatasync_4k_ms"]
                                                    + result["reference"]["loopback_rtt_ms"]))
    assert budget["points"][0][0] == 0 and budget["points"][0][1] > 0
    assert result["reference"]["work_budget_us"] == budget["work_budget_us"]
    assert "latency budget:" in done.stdout
    cluster = result["cluster"]
    loads = [*cluster["throughput"], *cluster["latency"], *cluster["peak"], *cluster["reads"]]
    assert len(cluster["throughput"]) == 7 and len(cluster["latency"]) == 2
    assert len(cluster["reads"]) == 2
    assert [(r["workload"]["inflight"], r["workload"]["batch"]) for r in cluster["peak"]] == [
        (shape["inflight"], shape["batch"]) for shape in workloads.PEAK_SHAPES]
    apis = {r["workload"]["api"] for r in cluster["throughput"]}
    assert apis == {"engine", "http", "kvclient"}
    for load in loads:
        stats.check_result(load)
        assert load["writes"] > 0 and load["writes_per_s"] > 0 and load["elapsed_s"] > 0
        assert load["latency_ms"]["p50"] > 0 and load["series"]
    for load in [*cluster["throughput"][:1], *cluster["peak"]]:  # engine loads: CPU per write
        cpu = load["cpu_us_per_write"]
        assert cpu["leader"]["user"] > 0 and len(cpu["followers"]) == 2
        assert all(f["user"] >= 0 and f["system"] >= 0 for f in cpu["followers"])
    assert cluster["failover"]["trials"] == 2 and cluster["failover"]["median_ms"] > 0
    [catchup] = cluster["catchup"]  # the quick plan: one catch-up, snapshots every 4096
    assert catchup["bytes"] >= 4 << 20 and catchup["seconds"] > 0
    assert catchup["snapshot_entries"] == 4096 and catchup["snapshot_used"]
    assert 0 < catchup["snapshot_index"] <= catchup["leader_commit"]
    assert catchup["replicated_entries"] == catchup["leader_commit"] - catchup["snapshot_index"]
    assert "catch-up of a new member" in done.stdout
    install = cluster["snapshot_install"]  # a new member installs an 8 MiB snapshot
    assert install["snapshot_bytes"] == 8 << 20 and install["installed_by_snapshot"]
    assert install["install_seconds"] > 0 and install["leader_rss_rise_bytes"] >= 0
    assert "snapshot install of 8 MiB" in done.stdout
    # the pure build beside the compiled one: the same durable engine shapes, same run
    assert result["builds"]["pure"]["as_expected"] and result["builds"]["compiled"]["as_expected"]
    pure = result["pure_build"]["throughput"]
    assert [r["workload"]["inflight"] for r in pure] == [1, 16, 256]
    for load in pure:
        stats.check_result(load)
        assert load["system"] == "pyraft-pure" and load["build"] == "pure"
        assert load["writes"] > 0 and load["mode"] == DURABLE
    assert pure[0]["cpu_us_per_write"]["leader"]["user"] > 0
    assert all(r["build"] == "compiled" for r in cluster["throughput"]
               if r["workload"]["api"] == "engine")
    for key in ("core", "simulator"):
        assert result[key]["compiled"]["median"] > 0 < result[key]["pure"]["median"]
        assert result[key]["ratio"] > 0
    assert "pure build vs compiled build, same run" in done.stdout
    assert len(result["goals"]) == 7 and len(result["goals_issue7"]) == 5
    for goal in result["goals"]:  # --no-peers: only the PySyncObj peak is unmeasured
        assert goal["status"] in ({"not measured"} if "PySyncObj" in goal["goal"]
                                  else {"met", "not met"}), goal
        assert goal["target"] > 0
    assert result["errors"] == []
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib" in result["plots_skipped"]
    else:
        assert sorted(result["plots"]) == ["latency.png", "throughput.png"]
        for name in result["plots"]:
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("quick", [True, False])
def test_the_kernel_benchmark_command_is_one_pytest_accepts(quick, tmp_path):
    """The full suite once ran ``pytest -k`` with no expression (a usage error, exit 4)."""
    where = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
    command = [part for part in kernels_command(where, str(tmp_path / "k.json"), quick)
               if not part.startswith("--benchmark-json")] + ["--collect-only"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          cwd=where.parent)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert ("test_core_commit_throughput" in done.stdout) is not quick


def test_the_kernel_benchmarks_measure_under_the_suites_own_configuration(tmp_path):
    """``pyraft bench``'s kernel run starts pytest in this checkout, whose configuration
    spreads tests over xdist workers, where pytest-benchmark measures nothing: the run must
    measure all the same (two CRC benchmarks here, to keep it short)."""
    where = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
    json_path = tmp_path / "k.json"
    command = kernels_command(where, str(json_path), True)
    command[command.index("-k") + 1] = "test_crc32c and 64B and (raftcore or zlib)"
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          cwd=where.parent)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert json_path.exists(), f"no benchmark measured:\n{done.stdout[-2000:]}"
    raw = json.loads(json_path.read_text())
    assert len(raw["benchmarks"]) == 2, done.stdout[-2000:]
    assert all(b["stats"]["rounds"] >= 3 and b["stats"]["median"] > 0
               for b in raw["benchmarks"])
    [group] = fold_kernels(raw)["groups"].values()
    assert len(group["median_s"]) == 2


def test_plot_panels_compare_one_load_shape_each():
    from pyraft.bench.plots import panels

    def result(**workload):
        return {"workload": {"size": 16, "rate": None, "inflight": 1, **workload}}

    shapes = [result(), result(inflight=256), result(rate=1000.0, inflight=4096),
              result(inflight=16, batch=1024), result(inflight=20000), result(size=1024),
              result(operation="read-lease", inflight=16)]
    grouped = dict(panels(shapes))
    assert [len(v) for v in grouped.values()] == [1, 1, 1, 2]
    open_loop = grouped["open loop (fixed offered load)"]
    assert open_loop[0]["workload"]["rate"] == 1000.0


def test_the_catch_up_fill_goes_on_through_the_next_leader(monkeypatch):
    asked = []

    def load(members, duration_s, *, size, batch, inflight, count):
        asked.append(count)
        done = {10: 4, 6: 6}[count]  # the first leader is deposed after 4 of its 10 calls
        return {"writes": done * batch, "notes": "NotLeaderError" if done < count else "",
                "leader_changes": 1 if done < count else 0}

    monkeypatch.setattr(workloads, "_load", load)
    filled = workloads._fill([], 60, size=1024, batch=256, inflight=8, calls=10)
    assert asked == [10, 6] and filled["writes"] == 10 * 256
    assert filled["leader_changes"] == 1 and filled["writes_per_s"] > 0
    monkeypatch.setattr(workloads, "_load", lambda *a, **k: {"writes": 0, "notes": "down",
                                                             "leader_changes": 1})
    with pytest.raises(workloads.WorkloadError, match="through 4 leaders: down"):
        workloads._fill([], 60, size=1024, batch=256, inflight=8, calls=10)
