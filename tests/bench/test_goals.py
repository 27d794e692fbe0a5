"""Issue 18's goals as ratios in one run: the judging of synthetic reports (compiled build
against the pure build, the replication floor, PySyncObj at its best configuration), the
peers' configurations, and the build switch and the two build comparisons run for real on
tiny inputs (a few seconds)."""

from __future__ import annotations

import os

import pytest

from pyraft.bench import builds, compare, report, stats
from pyraft.bench.workloads import DURABLE, Plan

CPU_PURE = {"leader": {"user": 350.0, "system": 40.0},
            "followers": [{"user": 221.0, "system": 30.0}, {"user": 233.0, "system": 30.0}]}


def _result(writes_per_s, p50=1.0, system="pyraft", mode=DURABLE, cpu=None, config=None,
            **workload):
    shape = {"kind": "closed", "api": "engine", "size": 16, "inflight": 256, "rate": None,
             "duration_s": 1.0, "members": 3, **workload}
    out = {"system": system, "version": "0", "mode": mode, "workload": shape,
           "writes": int(writes_per_s), "errors": 0, "elapsed_s": 1.0,
           "writes_per_s": writes_per_s,
           "latency_ms": {"p50": p50, "p90": p50, "p99": p50 * 2, "p999": p50 * 3,
                          "max": p50 * 4},
           "series": [[0.0, 10]], "latency_sample_ms": [p50], "notes": ""}
    if cpu is not None:
        out["cpu_us_per_write"] = cpu
    if config is not None:
        out["config"] = config
    return out


def _cpu(leader, *followers):
    return {"leader": {"user": leader, "system": 40.0},
            "followers": [{"user": f, "system": 30.0} for f in followers]}


PEAK = {"kind": "peak", "size": 16, "inflight": None, "rate": None, "journal": True}


def _synthetic(compiled_cpu=(100.0, 70.0, 60.0), p50=0.30, x16=(9000.0, 4000.0),
               x256=(150_000.0, 60_000.0), peak=2_000_000.0, peers=(15_000.0, 25_000.0),
               core=(4.0e6, 1.0e6), sim=(300.0, 200.0)) -> dict:
    """A report as the suite writes it, every figure chosen by the caller."""
    compiled = {
        "throughput": [_result(1000.0, p50=p50, inflight=1, cpu=_cpu(*compiled_cpu)),
                       _result(x16[0], inflight=16), _result(x256[0], inflight=256)],
        "latency": [], "reads": [],
        "peak": [_result(peak, inflight=32, batch=1024)],
    }
    pure = {"throughput": [
        _result(400.0, p50=0.9, system=builds.PURE_SYSTEM, inflight=1, cpu=CPU_PURE),
        _result(x16[1], system=builds.PURE_SYSTEM, inflight=16),
        _result(x256[1], system=builds.PURE_SYSTEM, inflight=256)]}
    runs = [{"spec": PEAK, "config": config, "config_text": config,
             "result": _result(writes, system="pysyncobj", mode="journal (no fsync)",
                               config=config)}
            for config, writes in zip(("default", "latency"), peers)]

    def both(pair):
        return {"compiled": {"values": [pair[0]], "median": pair[0]},
                "pure": {"values": [pair[1]], "median": pair[1]},
                "ratio": pair[0] / pair[1], "unit": "u", "command": "c"}

    return {"cluster": compiled, "pure_build": pure,
            "reference": {"replication_floor_ms": 0.25},
            "peers": {"pysyncobj": {"system": "pysyncobj", "runs": runs}},
            "core": both(core), "simulator": both(sim),
            "builds": {"compiled": {"build": "compiled", "as_expected": True},
                       "pure": {"build": "pure core over compiled kernels",
                                "as_expected": True}}}


def _by_start(goals: list[dict]) -> dict[str, dict]:
    names = ("cpu", "floor", "x16", "x256", "peak", "core", "sim")
    assert len(goals) == len(names)
    return dict(zip(names, goals))


def test_every_goal_is_a_ratio_with_its_target_and_status():
    goals = _by_start(report.goals(_synthetic()))
    cpu = goals["cpu"]
    # the worst of leader 350/100 and followers (221/60, 233/70): the follower 233/70
    assert cpu["ratio"] == pytest.approx(233 / 70) and cpu["status"] == "met"
    assert cpu["target"] == 3.0
    assert cpu["figures"]["leader_ratio"] == pytest.approx(3.5)
    floor = goals["floor"]
    assert floor["ratio"] == pytest.approx(0.30 / 0.25) and floor["status"] == "met"
    assert floor["at_most"] and floor["target"] == 1.5
    assert floor["figures"]["pure_p50_over_floor"] == pytest.approx(0.9 / 0.25)
    assert goals["x16"]["ratio"] == pytest.approx(2.25) and goals["x16"]["status"] == "met"
    assert goals["x256"]["ratio"] == pytest.approx(2.5) and goals["x256"]["status"] == "met"
    # against PySyncObj's better configuration (latency: 25,000/s), not its default
    peak = goals["peak"]
    assert peak["ratio"] == pytest.approx(80.0) and peak["status"] == "not met"
    assert peak["figures"]["pysyncobj_config"] == "latency"
    assert set(peak["figures"]["pysyncobj_configs"]) == {"default", "latency"}
    assert goals["core"]["ratio"] == pytest.approx(4.0) and goals["core"]["status"] == "met"
    assert goals["sim"]["ratio"] == pytest.approx(1.5) and goals["sim"]["status"] == "not met"


def test_goals_not_met_on_the_other_side_of_each_target():
    goals = _by_start(report.goals(_synthetic(compiled_cpu=(100.0, 60.0, 80.0), p50=0.40,
                                              x16=(7000.0, 4000.0), peak=3_000_000.0,
                                              core=(2.0e6, 1.0e6), sim=(500.0, 200.0))))
    assert goals["cpu"]["status"] == "not met"  # a follower: 233 / 80 < 3
    assert goals["cpu"]["ratio"] == pytest.approx(233 / 80)
    assert goals["floor"]["status"] == "not met"  # 0.40 / 0.25 = 1.6 > 1.5
    assert goals["x16"]["status"] == "not met"
    assert goals["peak"]["status"] == "met"  # 3,000,000 / 25,000 = 120
    assert goals["core"]["status"] == "not met" and goals["sim"]["status"] == "met"


def test_goals_are_not_measured_without_their_figures():
    unmeasured = report.goals({})
    assert {g["status"] for g in unmeasured} == {"not measured"}
    assert [g["target"] for g in unmeasured] == [3.0, 1.5, 2.0, 2.0, 100.0, 3.0, 2.0]
    data = _synthetic()
    data["builds"]["pure"] = {"build": "compiled", "as_expected": False}
    goals = _by_start(report.goals(data))
    for name in ("cpu", "x16", "x256", "core", "sim"):  # the builds were not what they say
        assert goals[name]["status"] == "not measured"
        assert "pure build's processes" in goals[name]["figures"]["reason"]
    assert goals["floor"]["status"] == "met"  # compiled against the floor: still valid
    data = _synthetic()
    data["peers"]["pysyncobj"]["runs"] = [
        {**run, "result": stats.skipped("pysyncobj", "not installed")}
        for run in data["peers"]["pysyncobj"]["runs"]]
    data["simulator"] = {"error": "BuildError: 1 seeds failed"}
    goals = _by_start(report.goals(data))
    assert goals["peak"]["status"] == "not measured"
    assert "not installed" in goals["peak"]["figures"]["reason"]
    assert "seeds failed" in goals["sim"]["figures"]["reason"]


def test_summary_shows_the_builds_side_by_side_and_every_goal():
    data = _synthetic()
    data["goals"] = report.goals(data)
    text = report.summary(data)
    assert "pure build vs compiled build, same run" in text
    assert "engine durable 16 B x256 writes/s" in text and "2.50" in text
    assert "user us/write (leader / followers)" in text and "350 / 221 / 233" in text
    assert "goals of issue 18" in text and ">= 100" in text and "<= 1.5" in text
    assert "pyraft-pure engine durable 16 B x1" in text  # in the table of every load


def _bounded(compiled=14_000.0, pure=30_000.0, floor=11_000.0) -> dict:
    """``instructions.bounded``'s result for these counts per write."""
    return {"compiled": {"values": [compiled], "median": compiled},
            "pure": {"values": [pure], "median": pure}, "ratio": compiled / pure,
            "unit": "instructions per write x256 (3 members in one process)", "command": "c",
            "floor": floor,
            "above_floor": {"compiled": compiled - floor, "pure": pure - floor,
                            "ratio": (compiled - floor) / (pure - floor)},
            "ceiling": pure / floor}


def test_the_256_goal_carries_its_count_of_instructions_and_their_floor():
    """The count at 256 in flight says how far compiling can move that ratio: the floor (the
    load alone) is the same in both builds, so the pure count over it bounds the ratio."""
    data = _synthetic()
    assert "instructions_per_write" not in _by_start(report.goals(data))["x256"]["figures"]
    data["instructions_256"] = _bounded()
    goals = _by_start(report.goals(data))
    counted = goals["x256"]["figures"]["instructions_per_write"]
    assert counted["ratio"] == pytest.approx(30_000 / 14_000)
    assert counted["above_floor_ratio"] == pytest.approx(19_000 / 3_000)
    assert counted["ceiling"] == pytest.approx(30_000 / 11_000) and counted["floor"] == 11_000
    assert "instructions_per_write" not in goals["x16"]["figures"]  # counted at 256 only
    assert goals["x256"]["ratio"] == pytest.approx(2.5)  # the goal is still writes/s
    data["goals"] = report.goals(data)
    text = report.summary(data)
    assert "instructions_256: above the floor of 11,000" in text
    assert "instructions_256: ceiling (pure / floor)" in text and "2.73" in text


# ---- peers at their best ----------------------------------------------------------------------
def test_the_better_configuration_depends_on_the_load_shape():
    closed = {"kind": "closed", "size": 16, "inflight": 1, "rate": None, "journal": True}
    opened = {"kind": "open", "size": 16, "inflight": None, "rate": 500.0, "journal": True}
    runs = [
        {"spec": closed, "config": "default", "result": _result(10.0, p50=101.0, inflight=1)},
        {"spec": closed, "config": "latency", "result": _result(2000.0, p50=0.5, inflight=1)},
        {"spec": opened, "config": "default", "result": _result(500.0, p50=150.0)},
        {"spec": opened, "config": "latency", "result": _result(499.0, p50=0.6)},
    ]
    assert compare.best_run(runs, closed)["config"] == "latency"
    best = compare.best_run(runs, opened)  # open loop: the lower p50 wins, not writes/s
    assert best["config"] == "latency"
    assert best["configs"]["default"]["p50_ms"] == 150.0
    runs[1]["result"] = stats.skipped("pysyncobj", "cannot start")
    best = compare.best_run(runs, closed)
    assert best["config"] == "default"
    assert best["configs"]["latency"] == {"skipped": "cannot start"}
    assert compare.best_run(runs, {"kind": "peak"}) is None


def test_ratios_take_the_peer_at_its_best_and_name_its_configuration():
    spec = {"kind": "closed", "size": 16, "inflight": 256, "rate": None, "journal": True}
    cluster = {"throughput": [_result(100_000.0, inflight=256)]}
    runs = [{"spec": spec, "config": c, "config_text": f"{c} text",
             "result": _result(w, system="pysyncobj", mode="journal (no fsync)", config=c)}
            for c, w in (("default", 2000.0), ("latency", 5000.0))]
    [row] = compare.ratios(cluster, {"pysyncobj": {"runs": runs}})
    assert row["ratio_writes_per_s"] == pytest.approx(20.0)
    assert row["peer_config"] == "latency" and row["peer_config_text"] == "latency text"
    assert row["peer_mode"] == "journal (no fsync)" and row["peer_errors"] == 0
    assert row["peer_configs"]["default"]["writes_per_s"] == 2000.0


class _FakeDriver:
    CONFIGS = {"default": {}, "latency": {"batch": False}}
    CONFIG_TEXT = {"default": "its defaults", "latency": "no batching"}

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    @staticmethod
    def available():
        return None

    def run(self, workdir, *, size, inflight, rate, duration_s, journal, config):
        self.calls.append(("run", size, inflight, rate, journal, config))
        return _result(1000.0 if config == "default" else 3000.0, system="fake",
                       config=config, size=size, inflight=inflight, rate=rate,
                       kind="open" if rate else "closed")

    def peak(self, workdir, *, size, duration_s, journal, config):
        self.calls.append(("peak", size, None, None, journal, config))
        return _result(9000.0, system="fake", config=config)


def test_every_load_shape_runs_in_every_configuration(monkeypatch, tmp_path):
    driver = _FakeDriver()
    monkeypatch.setattr(compare, "_driver", lambda name: (driver, None))
    plan = Plan.build(quick=True)
    out = compare.run_peers(plan, str(tmp_path), lambda label: None, names=("fake",))
    specs = compare.peer_specs(plan)
    assert len(out["fake"]["runs"]) == 2 * len(specs)
    assert [call[-1] for call in driver.calls] == ["default", "latency"] * len(specs)
    assert {run["config_text"] for run in out["fake"]["runs"]} == {"its defaults",
                                                                    "no batching"}
    assert os.listdir(tmp_path) == []  # every work directory removed


def test_a_driver_without_configurations_runs_once_in_its_defaults(monkeypatch, tmp_path):
    calls = []

    class Single:
        DEFAULT_CONFIG = "etcd defaults"

        @staticmethod
        def available():
            return None

        @staticmethod
        def run(workdir, *, size, inflight, rate, duration_s):
            calls.append(size)
            return _result(100.0, system="single", size=size)

        @staticmethod
        def peak(workdir, *, size, duration_s):
            calls.append("peak")
            return _result(100.0, system="single")

    monkeypatch.setattr(compare, "_driver", lambda name: (Single, None))
    plan = Plan.build(quick=True)
    runs = compare.run_peers(plan, str(tmp_path), lambda label: None,
                             names=("single",))["single"]["runs"]
    durable = [s for s in compare.peer_specs(plan) if s["journal"]]
    assert len(calls) == len(durable)  # always durable: the memory shape is skipped
    assert all(r["config_text"] == "etcd defaults" for r in runs)


# ---- the build switch and the two comparisons, for real ---------------------------------------
def test_the_build_environment_is_set_inside_and_restored(monkeypatch):
    monkeypatch.setenv("PYRAFT_PURE_CORE", "0")
    with builds.environment(builds.PURE):
        assert os.environ["PYRAFT_PURE_CORE"] == "1"
    assert os.environ["PYRAFT_PURE_CORE"] == "0"
    monkeypatch.setenv("PYRAFT_PURE_CORE", "1")  # the caller's own setting: the compiled
    with builds.environment(builds.COMPILED):  # build's children must not inherit it
        assert "PYRAFT_PURE_CORE" not in os.environ
    assert os.environ["PYRAFT_PURE_CORE"] == "1"
    assert builds.child_environment(builds.COMPILED, {"PYRAFT_PURE_CORE": "1"}) == {}
    with pytest.raises(ValueError):
        builds.child_environment("fast")


def test_each_build_runs_what_it_says():
    """``pyraft info`` in each build's environment: the pure build really is pure."""
    compiled, pure = builds.info(builds.COMPILED), builds.info(builds.PURE)
    assert compiled["as_expected"] and pure["as_expected"], (compiled, pure)
    assert pure["modules_compiled"] == 0 < pure["modules"]
    assert compiled["modules_compiled"] == compiled["modules"] > 0


def test_the_comparisons_alternate_builds_and_take_the_ratio_of_medians():
    order = []
    values = {builds.COMPILED: iter([3.0, 5.0, 4.0]), builds.PURE: iter([1.0, 2.0, 9.0])}

    def measure(build):
        order.append(build)
        return next(values[build])

    out = builds.alternate(3, measure)
    assert order == [builds.COMPILED, builds.PURE] * 3
    assert out["compiled"]["median"] == 4.0 and out["pure"]["median"] == 2.0
    assert out["ratio"] == pytest.approx(2.0)
    with pytest.raises(ValueError):
        builds.alternate(0, measure)


def test_the_simulator_summary_line_is_parsed_and_a_missing_one_is_an_error():
    text = "noise\n12 seeds, 12 passed, 0 failed (nodes=3 faults=all committed=99 cpu=4.5s)\n"
    assert builds.parse_sim_output(text) == {"seeds": 12, "passed": 12, "failed": 0,
                                             "cpu_s": 4.5}
    with pytest.raises(builds.BuildError):
        builds.parse_sim_output("Traceback (most recent call last): ...")


def test_core_and_simulator_figures_come_from_real_processes_of_each_build():
    for build in builds.BUILDS:
        assert builds.core_once(build, batches=20, runs=1) > 0
        assert builds.simulator_once(build, "0:1") > 0


# ---- the CLI: the builds section and its flags ------------------------------------------------
def _fake_builds(monkeypatch, calls: list):
    from pyraft.bench import cli

    def info(build):
        calls.append(("info", build))
        return {"build": builds.INFO_BUILD[build], "as_expected": True, "modules": 16,
                "modules_compiled": 16 if build == builds.COMPILED else 0}

    def core(batches, runs, rounds):
        calls.append(("core", batches, runs, rounds))
        return {"compiled": {"values": [3.0e6], "median": 3.0e6},
                "pure": {"values": [1.0e6], "median": 1.0e6}, "ratio": 3.0, "unit": "u",
                "command": "c"}

    def simulator(seeds, rounds):
        calls.append(("simulator", seeds, rounds))
        return {"compiled": {"values": [150.0], "median": 150.0},
                "pure": {"values": [100.0], "median": 100.0}, "ratio": 1.5, "unit": "u",
                "command": "c"}

    monkeypatch.setattr(cli.builds, "info", info)
    monkeypatch.setattr(cli.builds, "core", core)
    def counted(writes, rounds):
        calls.append(("instructions", writes, rounds))
        return {"compiled": {"values": [1.0e6], "median": 1.0e6},
                "pure": {"values": [1.25e6], "median": 1.25e6}, "ratio": 0.8,
                "unit": "instructions per write", "command": "c"}

    def bounded(writes, rounds, inflight):
        calls.append(("bounded", writes, rounds, inflight))
        return _bounded()

    monkeypatch.setattr(cli.builds, "simulator", simulator)
    monkeypatch.setattr(cli.instructions, "instructions", counted)
    monkeypatch.setattr(cli.instructions, "bounded", bounded)
    monkeypatch.setattr(cli.instructions, "available", lambda: None)
    return cli


def test_the_builds_section_runs_both_comparisons_and_judges_them(monkeypatch, tmp_path,
                                                                   capsys):
    calls: list = []
    cli = _fake_builds(monkeypatch, calls)
    out = tmp_path / "out"
    assert cli.main(["builds", "--quick", "--sim-seeds", "3:9", "--out", str(out)]) == 0
    assert ("simulator", "3:9", 1) in calls and ("core", 3000, 3, 1) in calls
    assert ("instructions", cli.INSTRUCTIONS_WRITES, 1) in calls
    assert ("bounded", 5120, 1, 256) in calls
    assert {c[1] for c in calls if c[0] == "info"} == {"compiled", "pure"}
    result = __import__("json").loads((out / "report.json").read_text())
    goals = _by_start(result["goals"])
    assert goals["core"]["status"] == "met" and goals["sim"]["status"] == "not met"
    assert goals["x256"]["status"] == "not measured"  # no cluster in this section
    assert result["plan"]["sim_seeds"] == "3:9"
    printed = capsys.readouterr().out
    assert "goals of issue 18" in printed
    assert result["instructions"]["ratio"] == 0.8
    assert "instructions: instructions per write" in printed
    assert result["instructions_256"]["ceiling"] == pytest.approx(30_000 / 11_000)
    assert "instructions_256: ceiling (pure / floor)" in printed


def test_no_pure_leaves_the_builds_out_and_bad_seeds_are_refused(monkeypatch, tmp_path):
    calls: list = []
    cli = _fake_builds(monkeypatch, calls)
    out = tmp_path / "out"
    assert cli.main(["builds", "--no-pure", "--out", str(out)]) == 0
    assert calls == []
    for bad in ("9:3", "a:b", "12", "-1:4"):
        with pytest.raises(SystemExit, match="--sim-seeds must be A:B"):
            cli.main(["builds", f"--sim-seeds={bad}", "--out", str(out)])
    assert calls == []


def test_quick_and_full_plans_judge_the_same_peak():
    """The peak goal compares pyraft's best batched load with PySyncObj's peak, which its
    driver searches over several in-flight counts in every plan; the quick plan must run
    pyraft's largest batched shape too (it ran 8 x 128, a quarter of the full plan's peak),
    both peaks are searched up to the same number of writes in flight, and that shape fits
    the members' proposal queue. The shape judged before (32 x 1024) still runs in both."""
    from pyraft.bench.peers import pysyncobj_peer
    from pyraft.bench.workloads import PEAK_SHAPE, PROPOSAL_QUEUE_MAX

    def commands(shape):
        return shape["inflight"] * shape["batch"]

    quick, full = Plan.build(quick=True), Plan.build(quick=False)
    assert max(map(commands, quick.peak)) == max(map(commands, full.peak)) == commands(PEAK_SHAPE)
    assert commands(PEAK_SHAPE) == max(pysyncobj_peer.PEAK_INFLIGHTS) == PROPOSAL_QUEUE_MAX
    for plan in (quick, full):
        assert {"inflight": 32, "batch": 1024} in plan.peak


def test_the_one_write_loads_run_long_enough_to_read_user_cpu(monkeypatch, tmp_path):
    """The CPU goal reads user CPU from the one-write durable loads, which the kernel splits
    from system time by sampling at its tick: the quick plan runs those loads (both builds)
    3 s rather than 1, every other load its duration; a longer duration is kept."""
    import contextlib

    from pyraft.bench import workloads
    from pyraft.bench.workloads import MEMORY

    quick, full = Plan.build(quick=True), Plan.build(quick=False)
    assert quick.load_s(DURABLE, 1) == 3.0 and quick.duration_s == 1.0
    assert quick.load_s(DURABLE, 16) == quick.load_s(MEMORY, 1) == 1.0
    assert all(full.load_s(mode, n) == 10.0 for mode in (DURABLE, MEMORY) for n in (1, 256))
    assert Plan.build(quick=True, duration_s=5.0).load_s(DURABLE, 1) == 5.0

    ran = []

    def load(members, duration_s, **fields):
        ran.append((members[0], fields.get("inflight"), fields.get("rate"), duration_s))
        return _round(float(len(ran)), 1.0, 1.0, [1.0, 1.0])

    @contextlib.contextmanager
    def cluster(directory, extra_args=None):
        pure = os.environ.get("PYRAFT_PURE_CORE") == "1"  # set by builds.environment
        yield {}, [builds.PURE if pure else builds.COMPILED]

    monkeypatch.setattr(workloads, "_load", load)
    monkeypatch.setattr(workloads, "member_cluster", cluster)
    monkeypatch.setattr(workloads, "call_leader", lambda *a, **k: {"result": {"writes": 1}})
    monkeypatch.setattr(workloads, "check_result", lambda result: result)
    workloads.engine_workloads(quick, DURABLE, str(tmp_path), lambda label: None, pure=True)
    closed = [(build, n, s) for build, n, rate, s in ran if rate is None and n is not None]
    assert (builds.COMPILED, 1, 3.0) in closed and (builds.PURE, 1, 3.0) in closed
    assert all(s == 1.0 for _, n, s in closed if n != 1)
    assert all(s == 1.0 for _, n, rate, s in ran if rate is not None)  # the open-loop ones


def _round(writes_per_s, p50, leader, followers, notes=""):
    return {"writes_per_s": writes_per_s, "latency_ms": {"p50": p50}, "notes": notes,
            "cpu_us_per_write": {"leader": {"user": leader, "system": leader / 10},
                                 "followers": [{"user": f, "system": f / 10}
                                               for f in followers]}}


def test_both_builds_run_their_shared_loads_in_alternating_rounds(monkeypatch, tmp_path):
    """Each load both builds run goes ``pure_rounds`` times per build, the builds taking turns
    at going first (the host moves between samples), and each build gets one result: its
    rounds merged; a load only the compiled build runs goes once."""
    import contextlib

    from pyraft.bench import workloads

    ran = []

    def load(members, duration_s, **fields):
        ran.append((members[0], fields.get("size"), fields.get("inflight"), fields.get("rate")))
        return _round(float(len(ran)), 1.0, 1.0, [1.0, 1.0])

    @contextlib.contextmanager
    def cluster(directory, extra_args=None):
        pure = os.environ.get("PYRAFT_PURE_CORE") == "1"
        yield {}, [builds.PURE if pure else builds.COMPILED]

    monkeypatch.setattr(workloads, "_load", load)
    monkeypatch.setattr(workloads, "member_cluster", cluster)
    monkeypatch.setattr(workloads, "call_leader", lambda *a, **k: {"result": {"writes": 1}})
    monkeypatch.setattr(workloads, "check_result", lambda result: result)
    plan = Plan.build(quick=True)
    assert plan.pure_rounds == 3
    out = workloads.engine_workloads(plan, DURABLE, str(tmp_path), lambda label: None,
                                     pure=True)
    compiled, pure = builds.COMPILED, builds.PURE
    for n in (1, 16, 256):
        assert [b for b, size, inflight, rate in ran
                if size == 16 and inflight == n and rate is None] == \
            [compiled, pure, pure, compiled, compiled, pure]
    merged = [r for r in out["throughput"] if len(r.get("rounds", [])) == 3]
    assert [r["build"] for r in merged] == [compiled] * 3
    assert len(out["pure"]) == 3
    assert all(r["build"] == pure and len(r["rounds"]) == 3 for r in out["pure"])
    assert [b for b, size, inflight, rate in ran if size == 1024] == [compiled]  # once
    assert not any("rounds" in r for r in out["throughput"] if r not in merged)


def test_merged_rounds_take_the_median_round_and_each_members_median_cpu():
    from pyraft.bench.workloads import merge_rounds

    rounds = [_round(900.0, 1.3, 30.0, [16.0, 19.0], notes="a"),
              _round(1000.0, 1.1, 28.0, [20.0, 15.0]),
              _round(1100.0, 1.0, 35.0, [17.0, 30.0])]
    merged = merge_rounds(rounds)
    assert merged["writes_per_s"] == 1000.0 and merged["latency_ms"]["p50"] == 1.1
    cpu = merged["cpu_us_per_write"]
    assert cpu["leader"] == {"user": 30.0, "system": 3.0}
    # followers ranked by user CPU within each round: (16, 19), (15, 20), (17, 30)
    assert cpu["followers"] == [{"user": 16.0, "system": 1.6}, {"user": 20.0, "system": 2.0}]
    assert [r["writes_per_s"] for r in merged["rounds"]] == [900.0, 1000.0, 1100.0]
    assert "median" in merged["notes"]
    assert merge_rounds(rounds[:1]) is rounds[0]
    assert rounds[1]["cpu_us_per_write"]["leader"]["user"] == 28.0  # the inputs are kept
