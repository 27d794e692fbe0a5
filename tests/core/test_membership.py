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


def _leader_of(voters: frozenset[int], tracked: frozenset[int], matches: dict[int, int]):
    """A leader (member 1, alone at first) given ``voters`` as its configuration and the
    progress of ``tracked`` (their ``matches``), as a configuration change leaves them."""
    import random

    from pyraft.core import MemoryLogStorage, RaftNode, RaftOptions
    from pyraft.core.progress import Progress

    node = RaftNode(RaftOptions(id=1), MemoryLogStorage(Configuration(frozenset({1}))),
                    random.Random(1))
    node.campaign()
    node.configuration = Configuration(voters)
    progress = {member: Progress(1, 8, 1 << 20) for member in tracked | {1}}
    for member, pr in progress.items():
        pr.match = matches.get(member, 0)
    node.progress = progress
    node._progress_changed()
    return node


@given(st.lists(st.integers(0, 50), min_size=1, max_size=7), st.data())
def test_the_leaders_quorum_match_is_the_majority_index(values, data):
    """``_quorum_match`` (the commit rule's index: one to three voters read without a list,
    the voters' progress kept between calls) is ``majority_index`` of the voters' matches, a
    voter the leader tracks no progress of counting 0; a match that moved, a configuration
    replaced and a progress changed are all seen."""
    voters = frozenset(range(1, len(values) + 1))
    untracked = data.draw(st.frozensets(st.sampled_from(sorted(voters - {1}) or [2])))
    matches = dict(zip(sorted(voters), values))
    node = _leader_of(voters, voters - untracked, matches)

    def expected() -> int:
        return majority_index([node.progress[v].match if v in node.progress else 0
                               for v in sorted(node.configuration.voters)])

    assert node._quorum_match() == expected()
    node.progress[1].match += data.draw(st.integers(0, 20))  # the same Progress, moved
    assert node._quorum_match() == expected()
    fewer = frozenset(sorted(voters)[: data.draw(st.integers(1, len(voters)))])
    node.configuration = Configuration(fewer)  # a new configuration object: read anew
    assert node._quorum_match() == expected()
    if len(fewer) > 1:
        member = max(fewer)
        node.progress.pop(member, None)
        node._progress_changed()  # as a configuration change does after it
        assert node._quorum_match() == expected()
