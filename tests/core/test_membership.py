"""Configurations carry member addresses and metadata through the log and snapshots."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyraft.core import Configuration, SnapshotMeta
from pyraft.core.membership import majority_index
from pyraft.errors import ProposalDroppedError
from pyraft.storage.snapshots import SnapshotStore


def cluster() -> Configuration:
    config = Configuration(frozenset({1, 2, 3}))
    for member in (1, 2, 3):
        config = config.with_info(member, f"127.0.0.1:{7000 + member}", {"zone": f"z{member}"})
    return config


def test_info_survives_changes_and_encoding():
    config = cluster().add_learner(4).with_info(4, "127.0.0.1:7004")
    assert Configuration.decode(config.encode()) == config
    promoted = config.promote(4)
    assert promoted.address_of(4) == "127.0.0.1:7004" and 4 in promoted.voters
    removed = promoted.remove(2)
    assert removed.address_of(2) is None and removed.metadata_of(3) == {"zone": "z3"}
    with pytest.raises(ProposalDroppedError):
        removed.remove(9)
    assert not config.differs_by_at_most_one(Configuration(frozenset({5, 6, 7})))


def test_info_survives_a_snapshot_file(tmp_path):
    config = cluster()
    meta = SnapshotMeta(10, 2, **config.snapshot_fields())
    store = SnapshotStore(tmp_path)
    with store.begin(meta) as writer:
        writer.write(b"state")
        writer.commit()
    assert Configuration.from_snapshot(store.latest()) == config


@given(st.lists(st.integers(0, 100), min_size=1, max_size=9))
def test_majority_index_against_a_naive_oracle(values):
    """The largest value that a majority reaches, checked by counting."""
    best = max(v for v in values if sum(x >= v for x in values) > len(values) // 2)
    assert majority_index(values) == best
