"""RaftConfig: both sides of every limit, and the translation into ticks."""

from __future__ import annotations

import pytest

from pyraft.config import RaftConfig
from pyraft.errors import ConfigError


def test_defaults_translate_into_ticks():
    options = RaftConfig(member_id=1).core_options()
    assert (options.election_ticks_lower, options.election_ticks_upper) == (15, 30)
    assert options.heartbeat_ticks == 7  # 0.5 x 150 ms at 10 ms per tick, rounded down
    assert options.lease_ticks == 14  # one tick short of the lower election timeout
    assert options.id == 1 and options.pre_vote and options.check_quorum


def test_clock_drift_shortens_the_lease():
    options = RaftConfig(member_id=1, clock_drift_bound=1.5).core_options()
    assert options.lease_ticks == 9  # 15 / 1.5 - 1


@pytest.mark.parametrize(
    "field,bad,good",
    [
        ("member_id", 0, 1),
        ("tick_ms", 0, 1.0),
        ("election_timeout_ms_lower", 29.0, 30.0),
        ("election_timeout_ms_upper", 155.0, 160.0),
        ("heartbeat_threshold", 1.0, 0.9),
        ("heartbeat_threshold", 0.0, 0.1),
        ("clock_drift_bound", 0.99, 1.0),
        ("clock_drift_bound", 10.5, 10.0),
        ("inflight_messages_max", 0, 1),
        ("inflight_bytes_max", 0, 1),
        ("append_bytes_max", 0, 1),
        ("uncommitted_bytes_max", 0, 64 * 1024 * 1024),
        ("apply_bytes_max", 0, 1),
        ("snapshot_chunk_bytes", 0, 1),
        ("warmup_rounds", 0, 1),
        ("warmup_rounds", True, 2),
    ],
)
def test_both_sides_of_each_limit(field, bad, good):
    with pytest.raises(ConfigError) as info:
        RaftConfig(**{"member_id": 1, field: bad}).validate()
    assert info.value.field == field and field in str(info.value)
    assert isinstance(info.value, ValueError)
    RaftConfig(**{"member_id": 1, field: good}).core_options()


def test_heartbeat_must_beat_the_election_timeout_in_ticks():
    with pytest.raises(ConfigError, match="heartbeat_threshold"):
        # 34 ms is 3 ticks (rounded); 0.99 x 34 ms is also 3 ticks (rounded down)
        RaftConfig(member_id=1, election_timeout_ms_lower=34, election_timeout_ms_upper=60,
                   heartbeat_threshold=0.99).validate()


def test_append_bound_within_uncommitted_bound():
    with pytest.raises(ConfigError, match="append_bytes_max"):
        RaftConfig(member_id=1, append_bytes_max=2048, uncommitted_bytes_max=1024).validate()
