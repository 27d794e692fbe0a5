"""A load's result says how each member batched its writes (``batching``): real member
processes on 127.0.0.1, durable, the counters read from each member before and after."""

from __future__ import annotations

from pyraft.bench import workloads
from pyraft.testing.processes import leader


def test_a_load_reports_each_members_appends_and_syncs(tmp_path):
    inflight = 8
    with workloads.member_cluster(str(tmp_path)) as (_, members):
        first = leader(members)
        result = workloads._load(members, 1.0, size=16, inflight=inflight)
    batching = result["batching"]
    assert result["segments"][-1]["member"] == first.id
    writes = result["writes"]
    assert writes > 100
    # a closed loop keeps at most ``inflight`` writes outstanding: no leader's append holds
    # more (a follower's may: the one the commit did not wait for can take two at once)
    assert 1 <= batching["leader"]["entries_per_append"] <= inflight, batching
    for member in [batching["leader"], *batching["followers"]]:
        assert member["entries_per_append"] >= 1, member
        assert member["syncs"] >= 1 and member["sync_ms"] > 0, member
    assert len(batching["followers"]) == 2
    # every write completed in the load was appended once on the leader during it, but
    # for the writes in flight when it started or ended
    leader_entries = batching["leader"]["appends"] * batching["leader"]["entries_per_append"]
    assert writes - inflight <= round(leader_entries) <= writes + inflight


def test_batching_is_none_when_a_member_did_not_answer():
    class Silent:
        id, pid = 1, 0

        def call(self, op: str, **fields):
            raise ConnectionError("member 1 is not running")

    class Counting:
        id, pid = 2, 0

        def call(self, op: str, **fields):
            return {"ok": True, "syncs": 4, "sync_s": 0.002, "appends": 4, "entries": 40}

    assert workloads._pipeline(Silent()) is None
    before = {1: {"ok": True, "syncs": 0, "sync_s": 0.0, "appends": 0, "entries": 0},
              2: {"ok": True, "syncs": 2, "sync_s": 0.001, "appends": 2, "entries": 20}}
    assert workloads._batching([Silent(), Counting()], before, 2) is None
    assert workloads._batching([Counting()], before, 2) == {
        "leader": {"appends": 2, "entries_per_append": 10.0, "syncs": 2, "sync_ms": 0.5},
        "followers": []}
