"""The client path's figures (``pyraft.bench.client_path``): KVClient's writes/s beside the
engine API's and etcd's gateway's from the same run, the two ratios and the goals."""

from __future__ import annotations

import pytest

from pyraft.bench import client_path
from pyraft.bench.stats import skipped
from pyraft.bench.workloads import DURABLE, MEMORY


def _result(api: str, writes_per_s: float, *, size=16, inflight=256, mode=DURABLE) -> dict:
    return {"system": "pyraft", "mode": mode, "writes_per_s": writes_per_s,
            "workload": {"kind": "closed", "api": api, "size": size, "inflight": inflight}}


def _etcd(writes_per_s: float | None, reason: str = "") -> dict:
    spec = {"kind": "closed", "size": 16, "inflight": 256, "rate": None, "journal": True}
    result = skipped("etcd", reason) if writes_per_s is None else \
        {"system": "etcd", "writes_per_s": writes_per_s}
    other = {"kind": "closed", "size": 16, "inflight": 16, "rate": None, "journal": True}
    return {"system": "etcd", "runs": [{"spec": other, "result": {"writes_per_s": 1.0}},
                                       {"spec": spec, "result": result}]}


def test_figures_take_the_shape_from_each_source_and_compute_both_ratios():
    cluster = {"throughput": [
        _result("engine", 999.0, inflight=16),  # other shapes and modes are ignored
        _result("kvclient", 1.0, mode=MEMORY),
        _result("engine", 120_000.0),
        _result("kvclient", 36_000.0),
        _result("kvclient-http", 4_000.0),
        _result("http", 3_000.0),
    ]}
    found = client_path.figures(cluster, {"etcd": _etcd(6_000.0)})
    assert found["kvclient_writes_per_s"] == 36_000.0
    assert found["engine_writes_per_s"] == 120_000.0
    assert found["etcd_gateway_writes_per_s"] == 6_000.0
    assert found["kvclient_http_writes_per_s"] == 4_000.0
    assert found["http_writes_per_s"] == 3_000.0
    assert found["ratio_kvclient_to_etcd"] == pytest.approx(6.0)
    assert found["ratio_kvclient_to_engine"] == pytest.approx(0.3)
    assert found["met_etcd"] is True and found["met_engine"] is True
    text = client_path.summary(found)
    assert "36,000" in text and "6.00" in text and "0.30" in text and "NOT met" not in text


def test_a_goal_missed_or_not_measured_is_said_so():
    cluster = {"throughput": [_result("engine", 200_000.0), _result("kvclient", 30_000.0)]}
    found = client_path.figures(cluster, {"etcd": _etcd(10_000.0)})
    assert found["met_etcd"] is False and found["met_engine"] is False  # 3x and 0.15x
    assert client_path.summary(found).count("NOT met") == 2
    missing = client_path.figures(cluster, {"etcd": _etcd(None, "etcd is not installed")})
    assert missing["etcd_gateway_writes_per_s"] is None and missing["met_etcd"] is None
    assert missing["etcd_missing"] == "etcd is not installed"
    assert "not measured" in client_path.summary(missing)
    assert client_path.figures(cluster, None)["etcd_missing"] == "etcd was not run"
    nothing = client_path.figures({}, None)
    assert nothing["kvclient_writes_per_s"] is None and nothing["met_engine"] is None


def test_run_refuses_a_shape_it_cannot_measure():
    with pytest.raises(ValueError):
        client_path.run(1.0, 0, None, lambda label: None)
    with pytest.raises(ValueError):
        client_path.run(0.0, 1, None, lambda label: None)
