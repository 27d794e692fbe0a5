"""Which configuration is in force at each point of the log (Raft thesis 4.1).

Configuration entries take effect as soon as they are appended, so a member's configuration is
the newest configuration entry in its log, or the one its snapshot (or bootstrap) recorded
when the log after the snapshot holds none. A truncated suffix reverts the entries it held; a
compaction folds the entries it covers into the base. ``ConfigurationHistory`` keeps that list
and answers "what is in force at index i"; the node decides what a change of configuration
means for its role (``RaftNode._refresh_configuration``).
"""

from __future__ import annotations

from pyraft.core.membership import Configuration
from raftcore.framing import EntryBatch


class ConfigurationHistory:
    """The base configuration and the configuration entries of the log after it.

    Invariant: ``entries`` is sorted by index, strictly increasing; every index is past the
    base (the snapshot, or the bootstrap at 0), except at most one entry at ``first - 1`` kept
    by ``drop_before`` (the entry a snapshot at ``first - 1`` itself records).
    """

    __slots__ = ("base", "entries")

    def __init__(self, base: Configuration) -> None:
        #: the configuration of the snapshot (or the bootstrap): in force before every entry
        self.base = base
        #: configuration entries appended after the base, (index, configuration), oldest first
        self.entries: list[tuple[int, Configuration]] = []

    def latest(self) -> Configuration:
        """The configuration in force: the newest entry's, or the base."""
        return self.entries[-1][1] if self.entries else self.base

    def latest_index(self) -> int:
        """Index of the newest configuration entry (0: none since the base)."""
        return self.entries[-1][0] if self.entries else 0

    def before_latest(self) -> Configuration:
        """The configuration the newest entry replaced (the base when there is one entry or
        none)."""
        return self.entries[-2][1] if len(self.entries) > 1 else self.base

    def add_batch(self, batch: EntryBatch) -> None:
        """Record the configuration entries of ``batch`` (appended after every known entry)."""
        for position in batch.config_positions.tolist():
            index = batch.first_index + position
            self.entries.append((index, Configuration.decode(batch.payload(position))))

    def drop_from(self, index: int) -> None:
        """Entries at ``index`` and after were truncated from the log: forget them."""
        self.entries = [(i, c) for i, c in self.entries if i < index]

    def drop_before(self, first_index: int) -> None:
        """The log now starts at ``first_index``: forget entries before ``first_index - 1``."""
        self.entries = [(i, c) for i, c in self.entries if i >= first_index - 1]

    def at(self, index: int) -> Configuration:
        """The configuration in force at log ``index`` (the newest entry at or before it)."""
        in_force = self.base
        for entry_index, configuration in self.entries:
            if entry_index > index:
                break
            in_force = configuration
        return in_force

    def any_between(self, after: int, up_to: int) -> bool:
        """Is there a configuration entry with ``after < index <= up_to``?"""
        return any(after < index <= up_to for index, _ in self.entries)

    def compacted_to(self, index: int) -> None:
        """Storage dropped the log up to ``index``: the newest entry at or before it becomes
        the base; the entries after it stay."""
        kept = [(i, c) for i, c in self.entries if i <= index]
        if kept:
            self.base = kept[-1][1]
        self.entries = [(i, c) for i, c in self.entries if i > index]

    def restore(self, base: Configuration) -> None:
        """A snapshot replaced the log: ``base`` is its configuration, no entry follows."""
        self.base = base
        self.entries = []
