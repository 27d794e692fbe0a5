"""Validated configuration, in the units people think in (milliseconds, bytes).

Two classes:

- ``RaftConfig``: the protocol's parameters. It turns times into the ticks the pure core
  counts (``core_options()``); the simulator and the interaction tests need nothing more.
- ``ClusterConfig(RaftConfig)``: one cluster member's full configuration: the protocol's
  parameters plus its addresses, the initial member list, storage, transport limits, TLS and
  the runtime's queues. A ``ClusterConfig`` is a ``RaftConfig``, so ``core_options()`` works
  on it unchanged.

Every field is checked in ``validate()``, both sides of every limit; a bad value raises
``ConfigError`` whose ``field`` names the setting (``"tls.cert_file"`` for a TLS option). The
constructors return validated configurations:

- keyword arguments: ``ClusterConfig(member_id=1, listen="10.0.0.1:7100").validate()``;
- ``from_dict(mapping)``: JSON-shaped values (peer ids may be strings of digits, ``tls`` a
  mapping, integers stand for floats); an unknown key is refused, naming the key;
- ``from_file(path)``: a JSON (``.json``) or TOML (``.toml``) file holding such a mapping at
  its top level (``[peers]``, ``[metadata]`` and ``[tls]`` as tables). TOML has no null: leave
  out a key to keep its default;
- ``from_env(prefix="PYRAFT_", environ=os.environ)``: one variable per setting, named
  ``PREFIX`` + the field in upper case (``PYRAFT_ELECTION_TIMEOUT_MS_LOWER=150``). Integers,
  floats, booleans (``true/false``, ``1/0``, ``yes/no``, ``on/off``), ``PYRAFT_PEERS=
  "1=10.0.0.1:7100,2=10.0.0.2:7100"``, ``PYRAFT_METADATA="zone=a,rack=3"``, TLS as
  ``PYRAFT_TLS_CERT_FILE`` / ``_KEY_FILE`` / ``_CA_FILE`` / ``_REQUIRE_CLIENT_CERT`` (TLS is on
  when any of them is set). An empty value means None for optional settings. A variable under
  the prefix that names no setting is refused (a typo must not be silently ignored), except
  pyraft's own switches (``ENV_SWITCHES``: ``NO_EXTENSIONS``, ``REWRITE``, the client's
  ``CLUSTER`` and the tests' own); ``strict=False`` ignores them (for a prefix that other
  software shares);
- ``read_file(path)`` and ``read_env(prefix)``: what a file or the environment gives, parsed
  but not yet validated, to layer sources before ``from_dict`` (``pyraft node``: defaults <
  ``--config`` file < ``PYRAFT_*`` variables < command-line flags);
- ``to_dict()`` (the inverse of ``from_dict``, also through JSON) and ``to_env(prefix)`` (the
  inverse of ``from_env``).

Timing relations (Raft 5.6, thesis 6.4.1):
- heartbeat interval = ``heartbeat_threshold`` x ``election_timeout_ms_lower``, well below the
  election timeout, so followers hear from a healthy leader several times per timeout;
- election timeouts are drawn from [lower, upper) to split votes rarely;
- the leader lease lasts ``election_timeout_ms_lower / clock_drift_bound`` after a quorum
  acknowledged a heartbeat, less one tick: followers do not vote for another candidate
  within the lower election timeout after hearing from the leader, and clocks may run
  faster than each other by at most ``clock_drift_bound``;
- ``connect_timeout_ms <= request_timeout_ms <= election_timeout_ms_lower``: a message that
  takes longer to reach a peer than the lower election timeout is useless to the protocol, and
  a connection that takes longer to open than one request may take is as good as down.

Membership at start (``cold_start``, ``peers``):
- ``peers`` is the initial member list, ``member id -> "host:port"``, this member included when
  it is one of the initial voters (like etcd's ``initial-cluster``);
- ``cold_start=True``: this member bootstraps a new cluster whose voters are ``peers`` (so
  ``member_id`` must be among them), or itself alone when ``peers`` is empty. A standby member
  cannot bootstrap a cluster alone: nobody could ever be elected;
- ``cold_start=False``: this member joins a cluster that exists; ``peers`` are the members it
  knows about: at least one for ``RaftCluster.from_config``; ``pyraft node --join URL``
  without ``--peers`` asks the member at URL for them (``GET /v1/status``);
- either way, a member restarting from a ``data_dir`` that already holds state uses the
  configuration stored there: ``cold_start`` and ``peers`` only matter on the first start.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeVar

from pyraft.core.raft import RaftOptions
from pyraft.errors import ConfigError
from raftcore.framing import FRAME_BYTES_MAX

#: applied entries between two automatic snapshots of a state machine, unless given at its
#: construction (``pyraft.storage.state_machine``), and the consensus-only default
#: (``ClusterConfig.consensus_snapshot_entries``). 8192: the log of a consensus-only member
#: then holds at most ~8k entries plus one batch (a bounded, small amount of memory), while
#: a snapshot (an empty one there: O(1) in memory, one small file and its fsyncs on the I/O
#: thread on disk) comes only every 8k writes
SNAPSHOT_ENTRIES_DEFAULT = 8192

__all__ = [
    "RaftConfig",
    "ClusterConfig",
    "TlsConfig",
    "parse_address",
    "format_address",
    "is_wildcard",
    "LIMITS",
    "MEMBER_ID_MAX",
    "PEERS_MAX",
    "METADATA_BYTES_MAX",
    "FRAME_HEADROOM_BYTES",
    "SYNC_POLICIES",
    "PROPOSAL_QUEUE_FULL_POLICIES",
    "ENV_SWITCHES",
]

#: the core's defaults for the bounds it shares with this class (one source of truth)
_CORE: dict[str, Any] = {f.name: f.default for f in fields(RaftOptions)}
#: the most Readys a member keeps in flight (``ready_pipeline_max``)
READY_PIPELINE_MAX = 1024

#: member ids travel as 64-bit integers (msgpack, frames); signed, to be safe everywhere
MEMBER_ID_MAX = 2**63 - 1
#: the initial member list holds at most this many members
PEERS_MAX = 1024
#: keys and values of ``metadata`` together, UTF-8 encoded
METADATA_BYTES_MAX = 16 * 1024
#: a frame must hold a full append (or a snapshot chunk) plus the message around it
FRAME_HEADROOM_BYTES = 64 * 1024
SYNC_POLICIES = ("always", "interval", "never")
PROPOSAL_QUEUE_FULL_POLICIES = ("wait", "raise")
#: variables under the prefix that are switches of pyraft itself, not settings
ENV_SWITCHES = frozenset({"NO_EXTENSIONS", "PURE_CORE", "PURE_MODULES", "REWRITE", "CLUSTER",
                          "SMOKE_INSTALLED", "TEST_INJECT_ENOSPC", "FUZZ_TMP"})


@dataclass(frozen=True)
class _Range:
    """Inclusive bounds, except an exclusive ``low`` when ``low_open`` ("must be positive")."""

    low: float
    high: float
    low_open: bool = False

    def contains(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    def describe(self) -> str:
        low = _number(self.low)
        return f"must be in {'(' if self.low_open else '['}{low}, {_number(self.high)}]"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


#: the fixed bounds of ``ClusterConfig``'s own settings. Bounds that depend on other settings
#: (connect <= request <= lower election timeout; frames hold an append) are checked as well.
LIMITS: dict[str, _Range] = {
    "cluster_id": _Range(0, 2**64 - 1),
    "sync_interval_ms": _Range(0, 10_000.0, low_open=True),
    "consensus_snapshot_entries": _Range(1, 2**32 - 1),
    "request_timeout_ms": _Range(0, 60_000.0, low_open=True),
    "connect_timeout_ms": _Range(0, 60_000.0, low_open=True),
    "linger_ms": _Range(0, 60_000.0),
    "graceful_shutdown_timeout_ms": _Range(0, 600_000.0, low_open=True),
    "transmission_block_bytes": _Range(1, 16 * 1024 * 1024),
    "server_backlog": _Range(1, 65_535),
    "frame_bytes_max": _Range(1, 2**32 - 1),
    "send_queue_messages_max": _Range(1, 1_000_000),
    "proposal_queue_max": _Range(1, 1_000_000),
    "ttl_hops": _Range(1, 255),
    "handshakes_max": _Range(1, 2**32 - 1),
    "unknown_members_max": _Range(0, 2**32 - 1),
    "user_requests_inflight_max": _Range(1, 2**32 - 1),
    "receive_bytes_per_s_min": _Range(0, 2**32 - 1),
    "inline_sync_max_ms": _Range(0, 1_000.0),
    "inline_sync_bytes_max": _Range(0, 2**32 - 1),
}

_C = TypeVar("_C", bound="RaftConfig")


# ---- addresses -------------------------------------------------------------------------------
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
                       r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?")
_PORT = re.compile(r"[0-9]{1,5}")


def parse_address(text: object, *, port_zero: bool = False) -> tuple[str, int]:
    """Split ``"host:port"`` into ``(host, port)``; ``ValueError`` says what is wrong.

    ``host`` is a host name, an IPv4 address or an IPv6 address in brackets (``[::1]:7100``;
    returned without them). The port is in 1..65535, or 0..65535 with ``port_zero`` (a
    listening socket may let the system pick its port).

    The one parser of member addresses: the configuration, the transports, ``pyraft node``
    and the test tools all split ``"host:port"`` here, so they accept the same addresses.
    """
    if not isinstance(text, str):
        raise ValueError(f"must be a HOST:PORT string, not {type(text).__name__}")
    host, colon, port_text = text.rpartition(":")
    if not colon or not host:
        raise ValueError(f"{text or 'an empty address'} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text}: {host} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"{text}: an IPv6 address goes in brackets, as in [::1]:7100")
    elif len(host) > 253 or not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{text}: {host} is not a host name or address")
    if not _PORT.fullmatch(port_text):
        raise ValueError(f"{text}: the port {port_text or '(empty)'} is not a number")
    port = int(port_text)
    if not (0 if port_zero else 1) <= port <= 65_535:
        raise ValueError(f"{text}: the port must be in [{0 if port_zero else 1}, 65535]")
    return host, port


def format_address(host: str, port: int) -> str:
    """The inverse of ``parse_address``: ``"host:port"``, an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_wildcard(host: str) -> bool:
    """Whether ``host`` (as ``parse_address`` returns it) is the unspecified address
    (``0.0.0.0``, ``::``): a socket may listen there, but nobody can connect to it."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


# ---- read-only mappings --------------------------------------------------------------------
class _ReadOnlyDict(dict):
    """The ``peers`` and ``metadata`` of a frozen configuration: a dict that refuses changes
    (use ``dataclasses.replace``), is hashable, and pickles and copies like a dict."""

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object):
        raise TypeError("configuration mappings are read-only; use dataclasses.replace")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self):
        return (type(self), (dict(self),))


# ---- field kinds: the type of each setting, for checks and for parsing text --------------
_KINDS: dict[str, tuple[str, bool]] = {
    "int": ("int", False),
    "float": ("float", False),
    "bool": ("bool", False),
    "str": ("str", False),
    "str | None": ("str", True),
    "float | None": ("float", True),
    "Mapping[int, str]": ("members", False),
    "Mapping[str, str]": ("strings", False),
    "TlsConfig | None": ("tls", True),
}


def _kind(f) -> tuple[str, bool]:
    annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    return _KINDS[annotation]


def _type_error(name: str, expected: str, value: object) -> ConfigError:
    return ConfigError(name, f"must be {expected}, not {type(value).__name__} {value!r}")


def _check_type(name: str, kind: str, optional: bool, value: object) -> None:
    if value is None and optional:
        return
    if kind == "bool":
        if not isinstance(value, bool):
            raise _type_error(name, "true or false", value)
    elif kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise _type_error(name, "an integer", value)
    elif kind == "float":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _type_error(name, "a number", value)
        if not math.isfinite(value):
            raise ConfigError(name, f"must be a finite number, not {value!r}")
    elif kind == "str":
        if not isinstance(value, str):
            raise _type_error(name, "a string", value)
    elif kind in ("members", "strings"):
        if not isinstance(value, Mapping):
            raise _type_error(name, "a mapping", value)
        for key, item in value.items():
            if kind == "members" and (not isinstance(key, int) or isinstance(key, bool)):
                raise ConfigError(name, f"member ids must be integers, not {key!r}")
            if kind == "strings" and not isinstance(key, str):
                raise ConfigError(name, f"keys must be strings, not {key!r}")
            if not isinstance(item, str):
                raise ConfigError(name, f"the value for {key!r} must be a string, not {item!r}")
    elif kind == "tls":
        if not isinstance(value, TlsConfig):
            raise _type_error(name, "a TlsConfig or None", value)


def _unknown(name: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(name, "unknown setting" + hint)


def _reason(error: ConfigError) -> str:
    """The message of ``error`` without the ``"field: "`` prefix."""
    text = str(error)
    prefix = f"{error.field}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def _coerce(name: str, kind: str, value: object) -> object:
    """Bring a JSON/TOML-shaped value to the field's type where that is unambiguous; anything
    else is left alone for ``validate()`` to refuse with a message naming the field."""
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind == "members" and isinstance(value, Mapping):
        members: dict[object, object] = {}
        for key, address in value.items():
            if isinstance(key, str) and re.fullmatch(r"[0-9]+", key):
                number = int(key)
                if number in members:
                    raise ConfigError(name, f"member {number} is listed twice")
                members[number] = address
            else:
                members[key] = address
        return members
    if kind == "tls" and isinstance(value, Mapping):
        known = [f.name for f in fields(TlsConfig)]
        for key in value:
            if key not in known:
                raise _unknown(f"{name}.{key}", [f"{name}.{k}" for k in known])
        for f in fields(TlsConfig):
            if f.default is MISSING and f.name not in value:
                raise ConfigError(f"{name}.{f.name}", "is required when TLS is configured")
        return TlsConfig(**value)
    return value


# ---- environment variables -----------------------------------------------------------------
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_pairs(name: str, variable: str, text: str) -> list[tuple[str, str]]:
    pairs = []
    for item in text.split(","):
        if not item.strip():
            continue
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ConfigError(name, f"{variable}: {item.strip()!r} is not 'key=value'")
        pairs.append((key.strip(), value.strip()))
    return pairs


def _parse_text(name: str, variable: str, kind: str, optional: bool, text: str) -> object:
    """The value of setting ``name`` from the text of environment variable ``variable``."""
    stripped = text.strip()
    if optional and not stripped:
        return None
    if kind == "bool":
        if stripped.lower() in _TRUE:
            return True
        if stripped.lower() in _FALSE:
            return False
        raise ConfigError(name, f"{variable}={text!r} is not a boolean (true/false, 1/0, "
                                "yes/no, on/off)")
    if kind == "int":
        if not re.fullmatch(r"[+-]?[0-9](?:_?[0-9])*", stripped):
            raise ConfigError(name, f"{variable}={text!r} is not an integer")
        return int(stripped)
    if kind == "float":
        try:
            return float(stripped)
        except ValueError:
            raise ConfigError(name, f"{variable}={text!r} is not a number") from None
    if kind == "members":
        members: dict[int, str] = {}
        for key, address in _parse_pairs(name, variable, text):
            if not re.fullmatch(r"[0-9]+", key):
                raise ConfigError(name, f"{variable}: member id {key!r} is not a number")
            if int(key) in members:
                raise ConfigError(name, f"{variable}: member {int(key)} is listed twice")
            members[int(key)] = address
        return members
    if kind == "strings":
        strings: dict[str, str] = {}
        for key, value in _parse_pairs(name, variable, text):
            if key in strings:
                raise ConfigError(name, f"{variable}: key {key!r} is listed twice")
            strings[key] = value
        return strings
    return stripped  # str


def _format_text(name: str, kind: str, value: object) -> str:
    """The inverse of ``_parse_text``."""
    if value is None:
        return ""
    if kind == "bool":
        return "true" if value else "false"
    if kind == "float":
        return repr(float(value))  # type: ignore[arg-type]
    if kind in ("members", "strings"):
        items = []
        for key, item in value.items():  # type: ignore[attr-defined]
            key_text, item_text = str(key), str(item)
            if ("," in key_text + item_text or "=" in key_text
                    or key_text != key_text.strip() or item_text != item_text.strip()):
                raise ConfigError(name, f"{key_text!r}={item_text!r} cannot be written as an "
                                        "environment variable (a ',' or '=' inside, or "
                                        "surrounding spaces)")
            items.append(f"{key_text}={item_text}")
        return ",".join(items)
    text = str(value)
    if text != text.strip():
        raise ConfigError(name, f"{text!r} cannot be written as an environment variable "
                                "(surrounding spaces)")
    return text


# ---- TLS -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS for the member's connections, both those it accepts and those it opens."""

    #: this member's certificate chain (PEM), presented to clients and to servers
    cert_file: str
    #: the private key of ``cert_file`` (PEM)
    key_file: str
    #: the CA bundle that signed the members' certificates (PEM), used to verify the servers
    #: this member connects to and, with ``require_client_cert``, its clients; None = the
    #: system's default trust store
    ca_file: str | None = None
    #: mutual TLS: refuse clients that present no certificate signed by ``ca_file``
    require_client_cert: bool = False
    #: bind certificates to member ids: a member's certificate must carry the DNS subject
    #: alternative name ``member-<id>.pyraft`` (``pyraft.transport.tls.member_identity``);
    #: a server whose certificate does not name the member dialed is refused, and so is a
    #: client whose certificate does not name the member id it claims in the handshake (so
    #: member identity implies mutual TLS, whatever ``require_client_cert`` says). Issue
    #: with trustme: ``ca.issue_cert("127.0.0.1", "member-2.pyraft")``; with openssl: ``-addext
    #: "subjectAltName=DNS:member-2.pyraft,IP:127.0.0.1"``. False trusts any certificate of
    #: the CA for any member id (every member holding one certificate)
    member_identity: bool = True

    def validate(self) -> TlsConfig:
        for f in fields(self):
            kind, optional = _kind(f)
            _check_type(f"tls.{f.name}", kind, optional, getattr(self, f.name))
        for name in ("cert_file", "key_file", "ca_file"):
            path = getattr(self, name)
            if path is not None and (not path.strip() or "\0" in path):
                raise ConfigError(f"tls.{name}", "must be a file path")
        if self.require_client_cert and self.ca_file is None:
            raise ConfigError("tls.ca_file", "is required to verify client certificates "
                                             "(require_client_cert)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ---- the protocol's parameters -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RaftConfig:
    member_id: int
    #: election timeouts: a follower that hears from no leader for a time drawn from
    #: [lower, upper) campaigns (Raft 5.2). The defaults were chosen by measurement on a busy
    #: 2-vCPU machine (issue 16, ``pyraft bench elections``): no spurious election idle or
    #: under the bench loads, where 150-300 ms with heartbeats every 75 ms had 5 leader
    #: changes in 2 minutes of a 1 KiB x256 load; failover after SIGKILL of the leader about
    #: 0.4-0.5 s (median), under 0.6 s at worst. A leader may stall for about lower minus
    #: one heartbeat interval (240 ms) without losing its followers. Lower them on quiet
    #: hosts for a faster failover; raise them where processes stall longer
    election_timeout_ms_lower: float = 300.0
    election_timeout_ms_upper: float = 600.0
    #: the leader's heartbeat interval as a fraction of ``election_timeout_ms_lower`` (0.2:
    #: every 60 ms, five per lower timeout, so a late heartbeat or two starts no election)
    heartbeat_threshold: float = 0.2
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
    #: bytes of snapshot chunks in flight to one follower (at least one chunk goes)
    snapshot_inflight_bytes_max: int = _CORE["snapshot_inflight_bytes_max"]
    warmup_rounds: int = _CORE["warmup_rounds"]
    #: Readys in flight: the next one's entries are written and sent while earlier ones
    #: sync on the I/O thread (at most 1024; 1: one Ready at a time, persisted before the
    #: next is taken)
    ready_pipeline_max: int = _CORE["ready_pipeline_max"]
    #: automatic failure detection: remove a voter the leader's phi-accrual detector has
    #: judged dead (phi above ``failure_phi_threshold``) for this long; 0 turns it off
    failure_dead_ms: float = 0.0
    #: a voter that has not answered the leader once in its term (down before the election,
    #: or not started yet) is removed after this long instead (phi needs answers to judge
    #: by); 0: ten times ``failure_dead_ms``
    failure_unheard_ms: float = 0.0
    failure_phi_threshold: float = _CORE["failure_phi_threshold"]
    #: never remove below this many voters
    failure_voters_min: int = _CORE["failure_voters_min"]

    def validate(self: _C) -> _C:
        for f in fields(self):
            kind, optional = _kind(f)
            _check_type(f.name, kind, optional, getattr(self, f.name))
        if not isinstance(self.member_id, int) or not 0 < self.member_id <= MEMBER_ID_MAX:
            raise ConfigError("member_id", f"must be a positive integer up to {MEMBER_ID_MAX}")
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
            "snapshot_inflight_bytes_max",
            "warmup_rounds",
            "ready_pipeline_max",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(name, "must be a positive integer")
        if self.ready_pipeline_max > READY_PIPELINE_MAX:
            raise ConfigError("ready_pipeline_max", f"must be at most {READY_PIPELINE_MAX}")
        if self.append_bytes_max > self.uncommitted_bytes_max:
            raise ConfigError("append_bytes_max", "must not exceed uncommitted_bytes_max")
        if not isinstance(self.failure_dead_ms, (int, float)) or not (
            0 <= self.failure_dead_ms <= 3_600_000
        ):
            raise ConfigError("failure_dead_ms", "must be in [0, 3600000] ms (0: off)")
        if not isinstance(self.failure_unheard_ms, (int, float)) or not (
            0 <= self.failure_unheard_ms <= 36_000_000
        ):
            raise ConfigError("failure_unheard_ms",
                              "must be in [0, 36000000] ms (0: ten times failure_dead_ms)")
        if self.failure_unheard_ms and self.failure_unheard_ms < self.failure_dead_ms:
            raise ConfigError("failure_unheard_ms", "must be at least failure_dead_ms: a "
                              "voter never heard from gets at least the time of one that "
                              "stopped answering (0: ten times failure_dead_ms)")
        if self.failure_dead_ms and self.failure_dead_ms < self.election_timeout_ms_upper:
            raise ConfigError("failure_dead_ms", "must be at least election_timeout_ms_upper: "
                              "a member is not dead before an election could have happened")
        if not isinstance(self.failure_phi_threshold, (int, float)) or not (
            1.0 <= self.failure_phi_threshold <= 100.0
        ):
            raise ConfigError("failure_phi_threshold", "must be in [1, 100]")
        if not isinstance(self.failure_voters_min, int) or not 1 <= self.failure_voters_min <= 1024:
            raise ConfigError("failure_voters_min", "must be in [1, 1024]")
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
            failure_dead_ticks=math.ceil(self.failure_dead_ms / self.tick_ms),
            failure_unheard_ticks=math.ceil(self.failure_unheard_ms / self.tick_ms),
            **{name: getattr(self, name) for name in sorted(same)},
        ).validate()

    # ---- constructors and their inverses ----------------------------------------------------
    @classmethod
    def from_dict(cls: type[_C], data: Mapping[str, Any]) -> _C:
        """A validated configuration from a mapping of setting names to values."""
        if not isinstance(data, Mapping):
            raise ConfigError("config", "must be a mapping of setting names to values, not "
                                        f"{type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            f = known.get(key)  # type: ignore[call-overload]
            if f is None:
                raise _unknown(str(key), list(known))
            values[key] = _coerce(key, _kind(f)[0], value)
        for f in fields(cls):
            if f.default is MISSING and f.default_factory is MISSING and f.name not in values:
                raise ConfigError(f.name, "is required")
        return cls(**values).validate()

    @classmethod
    def read_file(cls, path: str | os.PathLike[str]) -> dict[str, Any]:
        """The settings a ``.json`` or ``.toml`` file holds, as a mapping of setting names to
        JSON-shaped values, not yet validated (``from_dict`` does that), so that they can be
        layered under other sources (``pyraft node``: file < environment < flags). A key that
        names no setting raises ``ConfigError`` naming the key and the file; a file that cannot
        be parsed, ``ConfigError`` naming the file; one that cannot be read, ``OSError``."""
        path = os.fspath(path)
        suffix = os.path.splitext(path)[1].lower()
        if suffix == ".json":
            with open(path, "rb") as f:
                raw = f.read()
            try:
                data = json.loads(raw)
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
                raise ConfigError(path, f"not valid JSON: {exc}") from None
        elif suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # Python 3.10: the tomli package (a dependency there)
                try:
                    import tomli as tomllib
                except ModuleNotFoundError:
                    raise ConfigError(path, "reading TOML needs Python 3.11 or the tomli "
                                            "package") from None
            with open(path, "rb") as f:
                raw = f.read()
            try:
                data = tomllib.loads(raw.decode("utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(path, f"not valid TOML: {exc}") from None
        else:
            raise ConfigError(path, f"unknown file type {suffix!r}: use .json or .toml")
        if not isinstance(data, Mapping):
            raise ConfigError("config", "must be a mapping of setting names to values, not "
                                        f"{type(data).__name__} (in {path})")
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                error = _unknown(str(key), known)
                raise ConfigError(error.field, f"{_reason(error)} (in {path})")
        return dict(data)

    @classmethod
    def from_file(cls: type[_C], path: str | os.PathLike[str]) -> _C:
        """A validated configuration from a ``.json`` or ``.toml`` file (see the module
        docstring). A file that cannot be read raises ``OSError``; a file that cannot be
        parsed, or holds a bad setting, ``ConfigError`` (naming the setting and the file)."""
        data = cls.read_file(path)
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(exc.field, f"{_reason(exc)} (in {os.fspath(path)})") from None

    @classmethod
    def read_env(
        cls,
        prefix: str = "PYRAFT_",
        environ: Mapping[str, str] | None = None,
        *,
        strict: bool = True,
    ) -> dict[str, Any]:
        """The settings environment variables give (see the module docstring), parsed to the
        settings' types but not yet validated together (``from_dict`` does that): a mapping of
        setting names to values, ``tls`` a mapping of TLS settings. A value that does not parse,
        or (``strict``) a variable under the prefix that names no setting, raises
        ``ConfigError`` whose message names the variable."""
        if not prefix:
            raise ConfigError("prefix", "must not be empty: every variable would be a setting")
        environ = os.environ if environ is None else environ
        known = {prefix + f.name.upper(): f for f in fields(cls)}
        tls_known = {prefix + "TLS_" + f.name.upper(): f for f in fields(TlsConfig)}
        has_tls = "tls" in {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        tls: dict[str, object] = {}
        for variable in sorted(environ):
            if not variable.startswith(prefix) or variable[len(prefix):] in ENV_SWITCHES:
                continue
            text = environ[variable]
            if has_tls and variable in tls_known:
                tls_field = tls_known[variable]
                kind, optional = _kind(tls_field)
                tls[tls_field.name] = _parse_text(f"tls.{tls_field.name}", variable, kind,
                                                  optional, text)
                continue
            f = known.get(variable)
            if f is None and not strict:
                continue
            if f is None:
                candidates = list(known) + (list(tls_known) if has_tls else [])
                raise _unknown(variable, candidates)
            kind, optional = _kind(f)
            values[f.name] = _parse_text(f.name, variable, kind, optional, text)
        if tls:
            values["tls"] = tls
        return values

    @classmethod
    def from_env(
        cls: type[_C],
        prefix: str = "PYRAFT_",
        environ: Mapping[str, str] | None = None,
        *,
        strict: bool = True,
    ) -> _C:
        """A validated configuration from environment variables (see the module docstring).
        ``strict=False`` ignores variables under the prefix that name no setting."""
        return cls.from_dict(cls.read_env(prefix, environ, strict=strict))

    def to_dict(self) -> dict[str, Any]:
        """Every setting, as plain values (dicts, not read-only mappings); ``from_dict`` of the
        result, also after a JSON round trip, equals this configuration."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, TlsConfig):
                value = value.to_dict()
            out[f.name] = value
        return out

    def to_env(self, prefix: str = "PYRAFT_") -> dict[str, str]:
        """Every setting as environment variables; ``from_env`` of the result equals this
        configuration. ``ConfigError`` when a peer or metadata entry cannot be written so."""
        out: dict[str, str] = {}
        for f in fields(self):
            kind, _ = _kind(f)
            value = getattr(self, f.name)
            if kind == "tls":
                if value is not None:
                    for g in fields(TlsConfig):
                        out[f"{prefix}TLS_{g.name.upper()}"] = _format_text(
                            f"tls.{g.name}", _kind(g)[0], getattr(value, g.name))
                continue
            out[prefix + f.name.upper()] = _format_text(f.name, kind, value)
        return out


# ---- one member's full configuration -------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ClusterConfig(RaftConfig):
    """One cluster member's configuration: the protocol (``RaftConfig``'s fields) and how the
    member runs: addresses, the initial members, storage, transport and queue limits, TLS.

    Every default is here once: ``pyraft.transport.tcp.TcpTransport.from_config`` builds the
    member's transport from these values (TLS contexts by ``pyraft.transport.tls``), and the
    transport's own keyword defaults are read from this class."""

    #: identifies the cluster; written into every WAL segment so a member never opens the log
    #: of another cluster
    cluster_id: int = 0
    #: where this member accepts connections, "host:port"; port 0 lets the system choose
    #: (tests), a wildcard host ("0.0.0.0", "[::]") listens on every interface
    listen: str = "127.0.0.1:7100"
    #: where the others reach this member, when that is not ``listen`` (NAT, containers, a
    #: wildcard ``listen``). None: ``peers[member_id]`` when listed, else ``listen``. See
    #: ``endpoint``
    public_endpoint: str | None = None
    #: the initial member list, member id -> "host:port" (see the module docstring)
    peers: Mapping[int, str] = field(default_factory=_ReadOnlyDict)
    #: where this member dials other members, member id -> "host:port", when that is not the
    #: address they announce (a proxy, a tunnel, NAT). Overrides the configuration's addresses
    #: for outgoing connections only; nothing here is replicated
    routes: Mapping[int, str] = field(default_factory=_ReadOnlyDict)
    #: bootstrap a new cluster (True) or join one that exists (False)
    cold_start: bool = True
    #: free-form labels of this member (zone, rack, version), announced to the others
    metadata: Mapping[str, str] = field(default_factory=_ReadOnlyDict)
    #: the directory of the log, hard state and snapshots; None keeps everything in memory
    #: (nothing survives a restart)
    data_dir: str | None = None
    #: without a state machine of its own (consensus only: ``ConsensusOnlyState``), a member
    #: takes an empty snapshot and releases its log every this many applied entries, in
    #: memory and on disk; a state machine given to the runtime has its own setting
    consensus_snapshot_entries: int = SNAPSHOT_ENTRIES_DEFAULT
    #: when the WAL reaches the disk: "always" (fdatasync before acknowledging: durable),
    #: "interval" (at most every ``sync_interval_ms``: a power loss may lose that much), or
    #: "never" (tests and benchmarks)
    sync: str = "always"
    sync_interval_ms: float = 10.0
    #: how long a message may take to reach a peer (write and drain) before it is dropped and
    #: the peer reported unreachable; at most ``election_timeout_ms_lower``
    request_timeout_ms: float = 100.0
    #: how long opening a connection to a peer may take (TCP and TLS handshakes); at most
    #: ``request_timeout_ms``
    connect_timeout_ms: float = 50.0
    #: SO_LINGER on close: None keeps the system's default (close returns at once, the kernel
    #: sends what is left), 0 resets the connection, more waits that long (whole seconds,
    #: rounded up) for unsent data
    linger_ms: float | None = None
    #: how long ``stop()`` waits for in-flight work (sends, applies) before it closes anyway
    graceful_shutdown_timeout_ms: float = 2_000.0
    #: bytes a connection to a peer may hold unsent (beyond the kernel's socket buffer)
    #: before it takes no more messages; they wait in the peer's queue meanwhile
    transmission_block_bytes: int = 65_535
    #: connections waiting to be accepted (listen(2) backlog; the system may lower it)
    server_backlog: int = 100
    #: the largest transport frame accepted; must hold ``append_bytes_max`` and
    #: ``snapshot_chunk_bytes`` plus ``FRAME_HEADROOM_BYTES``; by default the framing
    #: kernel's own limit (``raftcore.framing.FRAME_BYTES_MAX``, 64 MiB)
    frame_bytes_max: int = FRAME_BYTES_MAX
    #: messages queued for one peer; past this, messages to it are dropped (Raft retries)
    send_queue_messages_max: int = 1_024
    #: commands waiting to enter the core (back-pressure); a ``replicate_many`` bigger than
    #: this still enters an empty queue, alone
    proposal_queue_max: int = 65_536
    #: a proposal arriving at a full queue waits for room ("wait") or is refused at once with
    #: ``ProposalDroppedError`` ("raise")
    proposal_queue_full: str = "wait"
    #: the IP time-to-live of the member's packets, in router hops (IP_TTL / IPV6_UNICAST_HOPS)
    ttl_hops: int = 64
    #: incoming connections that have not finished TLS and HELLO; more are closed at once
    handshakes_max: int = 64
    #: open connections from member ids outside the configuration (a member being added
    #: dials in before its configuration reaches everyone); more are refused
    unknown_members_max: int = 8
    #: member messages (``pyraft.cluster.messaging``) whose handler runs at once, per
    #: connection; one beyond is dropped (and counted), the connection kept
    user_requests_inflight_max: int = 256
    #: once a frame has taken longer than ``request_timeout_ms`` to arrive, it must average
    #: at least this many bytes/s or the connection is closed (slow-loris); 0: no check
    receive_bytes_per_s_min: int = 64 * 1024
    #: None: plain TCP
    tls: TlsConfig | None = None
    #: the WAL's syncs of small batches run on the loop's thread while they take less than
    #: this on average (handing a sync to the I/O thread and back costs more than a fast
    #: disk's fdatasync); 0: always on the I/O thread
    inline_sync_max_ms: float = 0.5
    #: ... and while the batch holds at most this many bytes
    inline_sync_bytes_max: int = 256 * 1024

    def __post_init__(self) -> None:
        for name in ("peers", "metadata", "routes"):
            value = getattr(self, name)
            if isinstance(value, Mapping) and not isinstance(value, _ReadOnlyDict):
                object.__setattr__(self, name, _ReadOnlyDict(value))
        if isinstance(self.data_dir, os.PathLike):
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))

    @property
    def endpoint(self) -> str:
        """The address the other members reach this member at: ``public_endpoint``, else
        ``peers[member_id]``, else ``listen`` (whose port may be 0 until the listener is
        bound: the runtime then announces the bound address instead)."""
        if self.public_endpoint is not None:
            return self.public_endpoint
        return self.peers.get(self.member_id, self.listen)

    @property
    def voters(self) -> frozenset[int]:
        """The voters of the cluster this member bootstraps (``cold_start``): ``peers``, or
        this member alone when ``peers`` is empty."""
        return frozenset(self.peers) or frozenset({self.member_id})

    def validate(self) -> ClusterConfig:
        RaftConfig.validate(self)
        for name, bounds in LIMITS.items():
            value = getattr(self, name)
            if value is not None and not bounds.contains(value):
                raise ConfigError(name, f"{bounds.describe()}, not {value!r}")
        self._validate_addresses()
        self._validate_membership()
        if self.data_dir is not None and (not self.data_dir.strip() or "\0" in self.data_dir):
            raise ConfigError("data_dir", "must be a directory path, or None to keep the log "
                                          "in memory")
        if self.sync not in SYNC_POLICIES:
            raise ConfigError("sync", f"must be one of {SYNC_POLICIES}, not {self.sync!r}")
        if self.proposal_queue_full not in PROPOSAL_QUEUE_FULL_POLICIES:
            raise ConfigError("proposal_queue_full", f"must be one of "
                              f"{PROPOSAL_QUEUE_FULL_POLICIES}, not {self.proposal_queue_full!r}")
        if self.connect_timeout_ms > self.request_timeout_ms:
            raise ConfigError("connect_timeout_ms", f"must not exceed request_timeout_ms "
                              f"({self.request_timeout_ms} ms)")
        if self.request_timeout_ms > self.election_timeout_ms_lower:
            raise ConfigError("request_timeout_ms", f"must not exceed election_timeout_ms_lower "
                              f"({self.election_timeout_ms_lower} ms)")
        needed = max(self.append_bytes_max, self.snapshot_chunk_bytes) + FRAME_HEADROOM_BYTES
        if self.frame_bytes_max < needed:
            raise ConfigError("frame_bytes_max", f"must be at least {needed} (the larger of "
                              "append_bytes_max and snapshot_chunk_bytes, plus "
                              f"{FRAME_HEADROOM_BYTES} for the message around them)")
        self._validate_metadata()
        if self.tls is not None:
            self.tls.validate()
        return self

    def _validate_addresses(self) -> None:
        try:
            parse_address(self.listen, port_zero=True)
        except ValueError as exc:
            raise ConfigError("listen", str(exc)) from None
        if self.public_endpoint is not None:
            try:
                host, _ = parse_address(self.public_endpoint)
            except ValueError as exc:
                raise ConfigError("public_endpoint", str(exc)) from None
            if is_wildcard(host):
                raise ConfigError("public_endpoint", f"{self.public_endpoint} is not an "
                                                     "address the others can connect to")
        if len(self.peers) > PEERS_MAX:
            raise ConfigError("peers", f"at most {PEERS_MAX} members, not {len(self.peers)}")
        seen: dict[tuple[str, int], int] = {}
        for member, address in sorted(self.peers.items()):
            if not 0 < member <= MEMBER_ID_MAX:
                raise ConfigError("peers", f"member id {member} is not in [1, {MEMBER_ID_MAX}]")
            try:
                host, port = parse_address(address)
            except ValueError as exc:
                raise ConfigError("peers", f"member {member}: {exc}") from None
            if is_wildcard(host):
                raise ConfigError("peers", f"member {member}: {address} is not an address "
                                           "the others can connect to")
            key = (host.lower().rstrip("."), port)
            if key in seen:
                raise ConfigError("peers", f"members {seen[key]} and {member} share the "
                                           f"address {address}")
            seen[key] = member
        for member, address in sorted(self.routes.items()):
            if not isinstance(member, int) or not 0 < member <= MEMBER_ID_MAX:
                raise ConfigError("routes", f"member id {member!r} is not in [1, "
                                            f"{MEMBER_ID_MAX}]")
            try:
                parse_address(address)
            except ValueError as exc:
                raise ConfigError("routes", f"member {member}: {exc}") from None

    def _validate_membership(self) -> None:
        if not self.cold_start:
            return
        if self.peers and self.member_id not in self.peers:
            raise ConfigError("peers", f"must include this member ({self.member_id}) when it "
                                       "bootstraps the cluster (cold_start)")
        if self.standby and self.voters == {self.member_id}:
            raise ConfigError("standby", "a standby member cannot bootstrap a cluster alone "
                                         "(cold_start): nobody could ever be elected")

    def _validate_metadata(self) -> None:
        total = 0
        for key, value in self.metadata.items():
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-/]*", key):
                raise ConfigError("metadata", f"key {key!r}: letters, digits and '_.-/' only, "
                                              "starting with a letter or digit")
            total += len(key.encode()) + len(value.encode("utf-8", "surrogatepass"))
        if total > METADATA_BYTES_MAX:
            raise ConfigError("metadata", f"at most {METADATA_BYTES_MAX} bytes of keys and "
                                          f"values, not {total}")
