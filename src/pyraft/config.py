"""Validated configuration, in the units people think in (milliseconds, bytes).

``RaftConfig`` turns times into the ticks the pure core counts (``core_options()``). Every
field is checked in ``validate()``; a bad value raises ``ConfigError`` naming the field.

Timing relations (Raft 5.6, thesis 6.4.1):
- heartbeat interval = ``heartbeat_threshold`` x ``election_timeout_ms_lower``, well below the
  election timeout, so followers hear from a healthy leader several times per timeout;
- election timeouts are drawn from [lower, upper) to split votes rarely;
- the leader lease lasts ``election_timeout_ms_lower / clock_drift_bound`` after a quorum
  acknowledged a heartbeat, less one tick: followers do not vote for another candidate
  within the lower election timeout after hearing from the leader, and clocks may run
  faster than each other by at most ``clock_drift_bound``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from pyraft.core.raft import RaftOptions
from pyraft.errors import ConfigError

__all__ = ["RaftConfig"]

#: the core's defaults for the bounds it shares with this class (one source of truth)
_CORE = {f.name: f.default for f in fields(RaftOptions)}


@dataclass(frozen=True, slots=True)
class RaftConfig:
    member_id: int
    election_timeout_ms_lower: float = 150.0
    election_timeout_ms_upper: float = 300.0
    heartbeat_threshold: float = 0.5
    clock_drift_bound: float = 1.0
    tick_ms: float = 10.0
    pre_vote: bool = _CORE["pre_vote"]
    check_quorum: bool = _CORE["check_quorum"]
    standby: bool = _CORE["standby"]
    inflight_messages_max: int = _CORE["inflight_messages_max"]
    inflight_bytes_max: int = _CORE["inflight_bytes_max"]
    append_bytes_max: int = _CORE["append_bytes_max"]
    uncommitted_bytes_max: int = _CORE["uncommitted_bytes_max"]
    apply_bytes_max: int = _CORE["apply_bytes_max"]
    snapshot_chunk_bytes: int = _CORE["snapshot_chunk_bytes"]
    warmup_rounds: int = _CORE["warmup_rounds"]

    def validate(self) -> RaftConfig:
        if not isinstance(self.member_id, int) or self.member_id <= 0:
            raise ConfigError("member_id", "must be a positive integer")
        if not self.tick_ms > 0:
            raise ConfigError("tick_ms", "must be positive")
        if not self.election_timeout_ms_lower >= 3 * self.tick_ms:
            raise ConfigError(
                "election_timeout_ms_lower", f"must be at least 3 ticks ({3 * self.tick_ms} ms)"
            )
        if not self.election_timeout_ms_upper >= self.election_timeout_ms_lower + self.tick_ms:
            raise ConfigError(
                "election_timeout_ms_upper",
                "must exceed election_timeout_ms_lower by at least one tick",
            )
        if not 0 < self.heartbeat_threshold < 1:
            raise ConfigError("heartbeat_threshold", "must be in (0, 1)")
        if self._heartbeat_ticks() >= self._lower_ticks():
            raise ConfigError("heartbeat_threshold", "heartbeats must come more often than "
                              "the lower election timeout")
        if not 1.0 <= self.clock_drift_bound <= 10.0:
            raise ConfigError("clock_drift_bound", "must be in [1, 10]")
        for name in (
            "inflight_messages_max",
            "inflight_bytes_max",
            "append_bytes_max",
            "uncommitted_bytes_max",
            "apply_bytes_max",
            "snapshot_chunk_bytes",
            "warmup_rounds",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(name, "must be a positive integer")
        if self.append_bytes_max > self.uncommitted_bytes_max:
            raise ConfigError("append_bytes_max", "must not exceed uncommitted_bytes_max")
        return self

    def _lower_ticks(self) -> int:
        return max(1, round(self.election_timeout_ms_lower / self.tick_ms))

    def _heartbeat_ticks(self) -> int:
        interval_ms = self.heartbeat_threshold * self.election_timeout_ms_lower
        return max(1, math.floor(interval_ms / self.tick_ms))

    def core_options(self) -> RaftOptions:
        """The core's parameters, in ticks of ``tick_ms``."""
        self.validate()
        lower = self._lower_ticks()
        upper = max(lower + 1, round(self.election_timeout_ms_upper / self.tick_ms))
        lease = max(0, min(lower - 1, math.floor(lower / self.clock_drift_bound) - 1))
        same = {f.name for f in fields(RaftOptions)} & {f.name for f in fields(RaftConfig)}
        return RaftOptions(
            id=self.member_id,
            election_ticks_lower=lower,
            election_ticks_upper=upper,
            heartbeat_ticks=self._heartbeat_ticks(),
            lease_ticks=lease,
            **{name: getattr(self, name) for name in sorted(same)},
        ).validate()
