"""A read-only status view of one ``RaftNode``: what the layers above the core may read.

The runtime drives the core through its entry points (``tick``, ``step``, ``propose``,
``ready``/``advance``, the membership and leadership calls); everything it, the metrics and
the key-value API *read* goes through a ``CoreView``, so none of them depends on the core's
fields or on its log (``core.log.*``). The view holds no state of its own: each property
reads the node now. It reads only the names the core promises to keep (``term``, ``role``,
``lead``, ``log.committed``/``applied``/``applying``, ``log.first_index()``/``last_index()``/
``term_or_none()``, ``configuration``, ``pending_conf_index``, ``progress``, ``options``,
``ticks``, ``election_elapsed``, ``fresh``, ``lease_valid()``, ``lease_remaining_ticks()``,
``committed_in_current_term()``, ``configuration_at()``, ``configuration_index()``,
``own_info``, ``info_recorded()``, ``status()``).

Accessor convention: a view is a status, so every position, term and flag is a read-only
property (``view.committed``, ``view.last_index``); what takes an argument is a method
(``view.term_or_none(index)``, ``view.configuration_at(index)``). Storage and ``raftcore``
(``LogStorage``, ``WriteAheadLog``) keep positions as methods: they may compute or read.

The per-write path reads ``committed`` and ``applied`` once per Ready: one attribute hop
more than reading the node, which is why the view keeps a direct reference to the node's
log (``_log``) rather than going through the node each time.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from pyraft.core.membership import Configuration
from pyraft.core.messages import Role

if TYPE_CHECKING:
    from pyraft.core.progress import Progress
    from pyraft.core.raft import RaftNode, RaftOptions

__all__ = ["CoreView", "MemberInfo"]

#: what a member announces of itself: (address, sorted metadata pairs, or None when it
#: has no metadata of its own and states only its address)
MemberInfo = tuple[str, tuple[tuple[str, str], ...] | None]


class CoreView:
    """Read-only status of ``node`` (module docstring). Invariant: ``applied <= applying <=
    committed <= last_index`` and ``first_index - 1 <= applied``."""

    __slots__ = ("_node", "_log")

    def __init__(self, node: RaftNode) -> None:
        self._node = node
        self._log = node.log  # the node keeps its log object for its whole life

    # ---- identity and role -------------------------------------------------------------------
    @property
    def id(self) -> int:
        return self._node.id

    @property
    def term(self) -> int:
        return self._node.term

    @property
    def role(self) -> Role:
        return self._node.role

    @property
    def is_leader(self) -> bool:
        return self._node.role is Role.LEADER

    @property
    def lead(self) -> int:
        """The leader of the current term as far as this member knows; 0 for unknown."""
        return self._node.lead

    @property
    def leader(self) -> int | None:
        """The leader as far as this member knows; None for unknown."""
        return self._node.lead or None

    @property
    def fresh(self) -> bool:
        return self._node.fresh

    # ---- the log -----------------------------------------------------------------------------
    @property
    def committed(self) -> int:
        return self._log.committed

    @property
    def applied(self) -> int:
        return self._log.applied

    @property
    def applying(self) -> int:
        return self._log.applying

    @property
    def first_index(self) -> int:
        return self._log.first_index()

    @property
    def last_index(self) -> int:
        return self._log.last_index()

    def term_or_none(self, index: int) -> int | None:
        """The term of the entry at ``index``; None when the log does not hold it."""
        return self._log.term_or_none(index)

    @property
    def committed_in_current_term(self) -> bool:
        """Whether the newest committed entry is of the current term (a leader's no-op
        committed: its commit index is the cluster's)."""
        return self._node.committed_in_current_term()

    # ---- membership --------------------------------------------------------------------------
    @property
    def configuration(self) -> Configuration:
        return self._node.configuration

    @property
    def configuration_index(self) -> int:
        """Index of the newest configuration entry this member knows of (0: the bootstrap)."""
        return self._node.configuration_index()

    def configuration_at(self, index: int) -> Configuration:
        return self._node.configuration_at(index)

    @property
    def pending_conf_index(self) -> int:
        return self._node.pending_conf_index

    @property
    def configuration_committed(self) -> bool:
        """Whether the newest configuration change this leader appended is committed."""
        return self._node.pending_conf_index <= self._log.committed

    @property
    def own_info(self) -> MemberInfo | None:
        """What this member announces of itself (``RaftNode.set_own_info``), or None."""
        return self._node.own_info

    def info_recorded(self, member: int, info: MemberInfo | None) -> bool:
        return self._node.info_recorded(member, info)

    # ---- the leader's view of the others -----------------------------------------------------
    @property
    def progress(self) -> Mapping[int, Progress]:
        """The leader's replication progress per member (empty on any other member)."""
        return MappingProxyType(self._node.progress)

    def match_index(self, member: int) -> int | None:
        """How far ``member``'s log is known to match this leader's (None: not known)."""
        progress = self._node.progress.get(member)
        return progress.match if progress is not None else None

    def heard_within(self, member: int, ticks: int) -> bool:
        """On the leader: whether ``member`` was heard from within the last ``ticks``."""
        progress = self._node.progress.get(member)
        return progress is not None and self._node.ticks - progress.heard_tick < ticks

    # ---- time and leases ---------------------------------------------------------------------
    @property
    def options(self) -> RaftOptions:
        return self._node.options

    @property
    def ticks(self) -> int:
        return self._node.ticks

    @property
    def election_elapsed(self) -> int:
        return self._node.election_elapsed

    @property
    def lease_valid(self) -> bool:
        return self._node.lease_valid()

    @property
    def lease_remaining_ticks(self) -> int:
        return self._node.lease_remaining_ticks()

    def status(self) -> dict[str, Any]:
        return self._node.status()
