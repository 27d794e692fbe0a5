"""Who this member is among the others: its bootstrap membership, the peers' addresses its
transport dials, the membership events it reports, and the announcement of a joining member.

- ``bootstrap(member_id, peers, own, join)``: the configuration a first start records before
  the member speaks (every member computes the same one from the same ``peers``: addresses
  only; metadata travels through the log), and the static peers (``peers`` plus this member
  at ``own``). A joining member is not in the configuration it starts from.
- ``check_peers``: peers given on a restart must agree with the stored membership (the
  recorded bootstrap or the configuration in force), or ``MembershipMismatchError``.
- ``Peers``: the addresses for the transport (the configuration's, a static peer's for a
  member not in it yet, ``routes`` overriding where this member dials), recomputed only when
  the configuration object changes; it reports members added and removed.
- ``announce``: a joining member asks to be added (the user's announcer) until it is ready.
- ``MembershipChanges``: ``add_member`` and ``remove_member`` on the leader (propose, then
  wait for the committed configuration), whether this member is an active voter
  (``readiness``), and the leader's application endpoint from the members' metadata.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from pyraft.cluster.waiters import Waiters
from pyraft.config import parse_address
from pyraft.core.membership import Configuration
from pyraft.core.view import CoreView
from pyraft.errors import (
    ClusterStoppedError,
    CommandInterruptedError,
    CommandLostError,
    CommandOutcomeUnknownError,
    ConfigError,
    MembershipMismatchError,
    ProposalDroppedError,
)
from pyraft.transport.base import Transport

__all__ = ["Announcer", "MemberStatus", "MembershipChanges", "Peers", "added", "announce",
           "bootstrap", "check_peers", "removed"]

log = logging.getLogger("pyraft.cluster")

#: called by a joining member with (its id, its address, its metadata), until it is added
Announcer = Callable[[int, str, dict[str, str]], Awaitable[None]]


@dataclasses.dataclass(frozen=True, slots=True)
class MemberStatus:
    id: int
    address: str | None
    metadata: dict[str, str]
    voter: bool
    is_self: bool
    is_leader: bool
    match_index: int | None  # known on the leader only


def bootstrap(member_id: int, peers: Mapping[int, str] | None, own: str,
              join: bool) -> tuple[Configuration | None, dict[int, str]]:
    """The bootstrap configuration (None: a joining member restarted without peers, which
    needs a stored membership) and the static peers, this member included at ``own``."""
    joined_before = join and not peers  # a restart: the storage holds the membership
    static = {**(peers or {}), member_id: own}
    # A joining member is not in the configuration it starts from: it waits (never
    # campaigning) until the leader adds it and the log tells it so.
    voters = frozenset(static) - {member_id} if join else frozenset(static)
    configuration = None
    if voters:
        # The same on every member (addresses only): each member's metadata reaches the
        # others through the log, recorded by the leader (RaftNode.set_own_info).
        configuration = Configuration(voters)
        for member, address in static.items():
            if member in voters:
                configuration = configuration.with_info(member, address)
    elif not joined_before:
        raise ValueError("a joining member needs the addresses of existing members")
    return configuration, static


def check_peers(member_id: int, wanted: Configuration, stored: Configuration,
                current: Configuration) -> None:
    """Peers given on a restart must agree with the stored membership: the recorded one or
    the configuration in force (addresses included); anything else is an operator's mistake
    that would split the cluster, refused before this member speaks."""
    if any(_same_members(wanted, known) for known in (stored, current)):
        return
    raise MembershipMismatchError(member_id, _describe_members(wanted),
                                  _describe_members(current))


def _same_members(a: Configuration, b: Configuration) -> bool:
    """The same voters and learners at the same addresses (where both know one)."""
    if a.voters != b.voters or a.learners != b.learners:
        return False
    for member in a.members:
        first, second = a.address_of(member), b.address_of(member)
        if first and second and first != second:
            return False
    return True


def _describe_members(configuration: Configuration) -> str:
    parts = []
    for member in sorted(configuration.members):
        address = configuration.address_of(member)
        learner = " (learner)" if member in configuration.learners else ""
        parts.append(f"{member}={address}{learner}" if address else f"{member}{learner}")
    return ",".join(parts)


class Peers:
    """The peers' addresses this member's transport dials.

    State: ``static``: member -> address given at construction or by ``add_member`` (this
    member included); ``_routes``: where to dial a member instead of its address;
    ``_configuration``: the configuration the transport's peers were computed from (None:
    recompute); ``_logged``: the (voters, learners) last logged; ``_sent``: the peers last
    handed to the transport."""

    def __init__(self, member_id: int, static: dict[int, str], routes: Mapping[int, str],
                 transport: Transport, emit: Callable[[str, int | None], None]) -> None:
        self.id = member_id
        self.static = static
        self._routes = dict(routes)
        self._transport = transport
        self._emit = emit
        self._configuration: Configuration | None = None
        self._logged: tuple[frozenset[int], frozenset[int]] | None = None
        self._sent: dict[int, str] = {}

    def address_of(self, member: int | None, configuration: Configuration | None) -> str | None:
        """Where the others reach ``member``: the configuration's address, else a static one."""
        if member is None:
            return None
        address = configuration.address_of(member) if configuration is not None else None
        return address or self.static.get(member)

    def settle_own(self) -> str:
        """This member's address once its transport serves: the bound port replaces a port
        0 (``listen`` asked the system for one)."""
        own = self.static[self.id]
        bound = self._transport.address
        if own.endswith(":0") and bound:
            own = self.static[self.id] = bound
        return own

    def add(self, member: int, address: str) -> None:
        """A member being added: reachable at ``address`` before the configuration says so."""
        self.static.setdefault(member, address)
        self._configuration = None  # recompute the peers at the next update

    def update(self, configuration: Configuration) -> None:
        """Hand the transport the peers of ``configuration`` (nothing to do when it is the
        configuration of the last update: the usual Ready)."""
        if configuration is self._configuration:
            return
        self._configuration = configuration
        shape = (configuration.voters, configuration.learners)
        if shape != self._logged:
            if self._logged is not None:
                log.info("member %d: configuration is now voters %s, learners %s", self.id,
                         sorted(configuration.voters), sorted(configuration.learners))
                before = self._logged[0] | self._logged[1]
                after = configuration.members
                for member in sorted(after - before):
                    self._emit("member-added", member)
                for member in sorted(before - after):
                    self._emit("member-removed", member)
            self._logged = shape
        peers = {}
        for member in configuration.members | set(self.static):
            if member == self.id:
                continue
            address = self._routes.get(member) or self.address_of(member, configuration)
            if address:
                peers[member] = address
        if peers != self._sent:
            self._sent = peers
            self._transport.set_peers(peers)

    def members(self, status: CoreView) -> list[MemberStatus]:
        configuration = status.configuration
        return [
            MemberStatus(
                id=member,
                address=self.address_of(member, configuration),
                metadata=configuration.metadata_of(member),
                voter=member in configuration.voters,
                is_self=member == self.id,
                is_leader=member == status.lead,
                match_index=status.match_index(member),
            )
            for member in sorted(configuration.members)
        ]


def added(status: CoreView, member: int, term: int, failed: asyncio.Future[None]) -> bool:
    """Whether ``add_member(member)``, proposed by this leader in ``term``, is done: ``member``
    is a voter in a committed configuration. Raises ``ProposalDroppedError`` when the leader
    gave up warming it up (``failed``), ``CommandOutcomeUnknownError`` when leadership changed
    meanwhile."""
    if failed.done():
        raise ProposalDroppedError(f"member {member} could not catch up; removed")
    if status.term != term or not status.is_leader:
        raise CommandOutcomeUnknownError(
            f"leadership changed while member {member} was being added: it may or may not "
            "be (or become) a voter; look at the configuration")
    return member in status.configuration.voters and status.configuration_committed


def removed(status: CoreView, member: int, term: int, index: int) -> bool:
    """Whether the entry at ``index`` that removes ``member`` (appended in ``term``) is
    committed: also on a member that stepped down meanwhile (it learns the commit from the
    next leader). Raises ``CommandLostError`` when another leader's entry took its index."""
    if status.committed < index:
        return False
    entry_term = status.term_or_none(index)
    if entry_term is not None and entry_term != term:
        raise CommandLostError(f"the removal of member {member} (entry {index}) was "
                               "replaced by a later leader's entry")
    return True


async def announce(member_id: int, address: str, metadata: Mapping[str, str],
                   announcer: Announcer, readiness: asyncio.Future[None]) -> None:
    """A joining member tells the cluster about itself (through the user's announcer, e.g. a
    call to the leader's ``add_member``), retrying until ``readiness`` is done (it is an
    active voter). An announcer that raises ``ConfigError`` (the cluster refused this
    member's credential: no retry can help) ends the announcement and fails ``readiness``
    with that error."""
    delay = 0.1
    while not readiness.done():
        try:
            await announcer(member_id, address, dict(metadata))
        except ConfigError as error:
            log.debug("member %d: announcement refused: %s", member_id, error)
            if not readiness.done():
                readiness.set_exception(error)
            return
        except Exception as error:  # the announcer's failure is retried, and logged
            log.warning("member %d: announcement failed (%s); retrying", member_id, error)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


class ConfigurationCore(Protocol):
    """What membership changes ask of the core (``RaftNode`` is one)."""

    def propose_configuration(self, configuration: Configuration) -> object: ...
    def remove_member(self, member: int) -> object: ...


async def _proposed(waiting: Awaitable[None], change: str) -> None:
    """Wait for a configuration change already proposed: if this member stops or fails
    meanwhile, its outcome is unknown (the entry was sent; a later leader may commit it)."""
    try:
        await waiting
    except CommandInterruptedError:
        raise
    except ClusterStoppedError as error:
        raise CommandInterruptedError(
            f"{change} was in flight when the member stopped: a later leader may still commit "
            f"it ({error})") from error


class MembershipChanges:
    """The membership changes of member ``member_id`` as leader (module docstring).

    ``until(condition, timeout)`` waits for a condition re-checked after every Ready (the
    runtime's ``Reads.until``); ``wake()`` wakes the processing task; ``metadata`` is this
    member's own. ``bind`` gives the loop, the core and its view at start."""

    def __init__(self, member_id: int, peers: Peers, waiters: Waiters,
                 metadata: Mapping[str, str], *,
                 until: Callable[[Callable[[], bool], float | None], Awaitable[None]],
                 wake: Callable[[], None]) -> None:
        self.id = member_id
        self._peers = peers
        self._waiters = waiters
        self._metadata = metadata
        self._until = until
        self._wake = wake
        # given by ``bind`` at start
        self._loop: asyncio.AbstractEventLoop
        self._core: ConfigurationCore
        self._status: CoreView

    def bind(self, loop: asyncio.AbstractEventLoop, core: ConfigurationCore,
             status: CoreView) -> None:
        self._loop, self._core, self._status = loop, core, status

    async def add(self, member: int, address: str, metadata: Mapping[str, str] | None,
                  timeout: float | None) -> None:
        """Propose ``member`` as a learner at ``address``; return once it is a voter in a
        committed configuration (``added``). An address the transports would not dial
        (``pyraft.config.parse_address``) is a ``ConfigError`` before anything is proposed:
        the configuration reaches every member's log and transport."""
        try:
            parse_address(address)
        except ValueError as error:
            raise ConfigError("address", f"member {member}: {error}") from None
        status = self._status
        if member in status.configuration.members:
            raise ProposalDroppedError(f"member {member} is already in the configuration")
        configuration = status.configuration.add_learner(member).with_info(member, address,
                                                                           metadata)
        self._peers.add(member, address)
        self._core.propose_configuration(configuration)
        self._peers.update(status.configuration)
        self._wake()
        failed: asyncio.Future[None] = self._loop.create_future()
        self._waiters.failed_catch_up[member] = failed

        term = status.term
        done = functools.partial(added, status, member, term, failed)
        try:
            await _proposed(self._until(done, timeout), f"the addition of member {member}")
        finally:
            self._waiters.failed_catch_up.pop(member, None)

    async def remove(self, member: int, timeout: float | None) -> None:
        """Propose the removal of ``member``; return once it is committed (``removed``)."""
        status = self._status
        term = status.term
        self._core.remove_member(member)
        index = status.pending_conf_index  # the entry that removes it
        self._wake()
        await _proposed(self._until(functools.partial(removed, status, member, term, index),
                                    timeout), f"the removal of member {member}")

    def is_active_voter(self) -> bool:
        """Whether a committed configuration makes this member a voter."""
        status = self._status
        return (self.id in status.configuration.voters
                and status.committed >= status.configuration_index)

    def endpoint_of(self, leader: int, key: str) -> str | None:
        """The metadata value ``key`` of ``leader`` (its own metadata first for this
        member), if it published one."""
        if leader == self.id:
            own = self._metadata.get(key)
            if own:
                return own
        endpoint = self._status.configuration.metadata_of(leader).get(key)
        return str(endpoint) if endpoint else None
