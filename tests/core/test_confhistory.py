"""ConfigurationHistory: which configuration is in force at each index (Raft thesis 4.1)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pyraft.core.confhistory import ConfigurationHistory
from pyraft.core.membership import Configuration
from raftcore.framing import KIND_COMMAND, KIND_CONFIGURATION, encode_entries

BASE = Configuration(frozenset({1, 2, 3}))
C4 = Configuration(frozenset({1, 2, 3}), frozenset({4}))
C5 = Configuration(frozenset({1, 2, 3, 4}))
C6 = Configuration(frozenset({1, 2, 4}))


def batch(first: int, items: list[Configuration | None]):
    """Entries from ``first``: a configuration entry for each Configuration, a command for None."""
    payloads = [b"cmd" if c is None else c.encode() for c in items]
    kinds = [KIND_COMMAND if c is None else KIND_CONFIGURATION for c in items]
    return encode_entries(first, 1, payloads, kinds)


def history_with(*entries: tuple[int, Configuration]) -> ConfigurationHistory:
    history = ConfigurationHistory(BASE)
    for index, configuration in entries:
        history.add_batch(batch(index, [configuration]))
    return history


def test_the_base_is_in_force_until_an_entry_is_appended():
    history = ConfigurationHistory(BASE)
    assert history.latest() == BASE and history.latest_index() == 0
    assert history.at(10**9) == BASE and history.before_latest() == BASE


def test_configuration_entries_take_effect_at_their_index():
    """"a server always uses the latest configuration in its log, regardless of whether the
    entry is committed" (thesis 4.1)"""
    history = ConfigurationHistory(BASE)
    history.add_batch(batch(5, [None, C4, None, C5, None]))
    assert history.entries == [(6, C4), (8, C5)]
    assert history.latest() == C5 and history.latest_index() == 8
    assert history.before_latest() == C4
    assert [history.at(i) for i in (5, 6, 7, 8, 100)] == [BASE, C4, C4, C5, C5]


def test_a_batch_of_commands_records_nothing():
    history = ConfigurationHistory(BASE)
    history.add_batch(batch(1, [None, None]))
    assert history.entries == [] and history.latest() == BASE


def test_truncation_reverts_entries_from_its_index():
    history = history_with((3, C4), (6, C5))
    history.drop_from(6)
    assert history.latest() == C4 and history.latest_index() == 3
    history.drop_from(3)
    assert history.latest() == BASE and history.entries == []


def test_drop_before_keeps_the_entry_just_before_the_first_index():
    history = history_with((3, C4), (6, C5), (9, C6))
    history.drop_before(7)  # the log starts at 7: the entry at 6 is the snapshot's own
    assert history.entries == [(6, C5), (9, C6)]
    history.drop_before(20)
    assert history.entries == [] and history.latest() == BASE  # base unchanged by drop_before


def test_any_between_is_a_half_open_interval():
    history = history_with((3, C4), (6, C5))
    assert history.any_between(2, 3) and history.any_between(5, 6)
    assert not history.any_between(3, 5) and not history.any_between(6, 100)


def test_compaction_folds_covered_entries_into_the_base():
    history = history_with((3, C4), (6, C5), (9, C6))
    history.compacted_to(7)
    assert history.base == C5 and history.entries == [(9, C6)]
    assert history.at(7) == C5 and history.at(9) == C6
    history.compacted_to(8)  # nothing new covered: the base stays
    assert history.base == C5 and history.entries == [(9, C6)]


def test_restore_replaces_everything():
    history = history_with((3, C4), (6, C5))
    history.restore(C6)
    assert history.base == C6 and history.entries == [] and history.latest() == C6


CONFIGS = [C4, C5, C6]


@given(st.lists(st.one_of(st.none(), st.sampled_from(CONFIGS)), min_size=1, max_size=30),
       st.integers(0, 35), st.integers(0, 35))
def test_at_agrees_with_a_scan_of_the_log(items, query, compact):
    """``at(i)`` is the newest configuration entry at or before ``i`` in the log, before and
    after a compaction up to ``compact`` (the naive oracle reads the whole list)."""
    history = ConfigurationHistory(BASE)
    history.add_batch(batch(1, items))

    def oracle(index: int) -> Configuration:
        found = BASE
        for position, item in enumerate(items, start=1):
            if position <= index and item is not None:
                found = item
        return found

    assert history.at(query) == oracle(query)
    history.compacted_to(compact)
    assert history.at(max(query, compact)) == oracle(max(query, compact))
    assert history.latest() == oracle(len(items))
