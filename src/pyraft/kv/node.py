"""``pyraft node``: one member of a replicated key-value service.

Runs a ``RaftCluster`` (TCP or TLS between members, durable log in ``--data``) with the
``KVStateMachine`` and serves the HTTP API (``pyraft.kv.http``) on ``--http``. Every member
publishes its HTTP address in its metadata (key ``http``), so followers can redirect clients
to the leader. ``--client HOST:PORT`` also serves the binary client protocol
(:mod:`pyraft.kv.wire`, for ``KVClient(["pyraft://HOST:PORT", ...])``), announced in the
metadata key ``client``. Start three in three terminals; kill one; restart it: its state
recovers from its data directory::

    pyraft node --id 1 --listen 127.0.0.1:7001 --http 127.0.0.1:8001 \\
        --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 --data /tmp/node1

Settings come in layers: ``ClusterConfig``'s defaults < ``--config FILE`` (JSON or TOML, any
setting) < ``PYRAFT_*`` environment variables (``ClusterConfig.read_env``) < command-line
flags. An operator's mistake (a bad flag, file, address in use, variable) raises
``ConfigError`` naming it, before the member touches its data or its cluster: the HTTP and
metrics sockets are bound, and the Raft port checked, first; ``pyraft.cli`` prints the one line
of ``refusal()`` and exits with 2. ``--join URL`` without ``--peers`` asks the member at URL
for the voters (``GET /v1/status``). SIGTERM or Ctrl+C stops the member gracefully.

``--state memory`` (the default) keeps the key-value state in memory (``KVStateMachine``,
rebuilt at start from the latest snapshot and the log); ``--state sqlite`` keeps it in
``DATA_DIR/kv.sqlite3`` (``SqliteKVStateMachine``, a disk state machine: state larger than
memory, a restart replays only what the last flush did not cover). It needs ``--data``
(exit status 2 otherwise). ``--snapshot-entries`` is then the number of entries between two
flushes, after which the log behind the flush is released.

A damaged data directory (``CorruptStateError``: a hard state, snapshot or log segment that
fails its checks, with the file and byte offset) or a storage failure at start
(``StorageError``) stops the member with one line on stderr naming the file, and exit status
``EXIT_STORAGE`` (3), never a traceback: ``pyraft wal inspect DIR/wal`` shows the damage and
``pyraft wal repair DIR/wal --yes`` truncates the log there (the other members send the lost
entries again). A data directory of another cluster (``ClusterMismatchError``) is not damage:
the member stops the same way, saying which cluster the directory belongs to, with no repair
hint.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import errno
import json
import logging
import os
import signal
import socket
import sqlite3
import ssl
import sys
import urllib.parse
from typing import Any

from pyraft.argtypes import positive_int, positive_seconds
from pyraft.cluster.runtime import RaftCluster
from pyraft.config import ClusterConfig, is_wildcard, parse_address
from pyraft.errors import (
    ClusterMismatchError,
    ConfigError,
    CorruptStateError,
    MembershipMismatchError,
    StorageError,
)
from pyraft.kv import security
from pyraft.kv.machine import KVStateMachine
from pyraft.kv.sqlite import DATABASE_NAME, SqliteKVStateMachine
from pyraft.storage.log import MEMBERSHIP_FILE
from raftcore import WalClusterMismatchError, WalCorruptionError

log = logging.getLogger("pyraft.node")

#: Exit status of a member stopped by a damaged data directory or a storage failure.
EXIT_STORAGE = 3
#: Exit status of a member refused at start by its configuration (peers that contradict the
#: membership stored in its data directory).
EXIT_CONFIG = 2
#: Default of ``--snapshot-entries``: entries applied between two state-machine snapshots.
SNAPSHOT_ENTRIES_DEFAULT = 50_000
#: Exit status of a command line that cannot work (as argparse's own errors).
EXIT_USAGE = 2
#: How long ``--join URL`` without ``--peers`` keeps asking URL for the voters.
JOIN_ASK_TIMEOUT_S = 10.0
#: Where ``--state`` keeps the key-value state.
STATES = ("memory", "sqlite")


#: the levels ``--log-level`` takes (in any case)
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
#: the formats ``--log-format`` takes
LOG_FORMATS = ("text", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", type=int, required=True, help="this member's id")
    parser.add_argument("--listen", required=True, help="HOST:PORT for the other members")
    parser.add_argument("--http", required=True, help="HOST:PORT of the key-value HTTP API")
    parser.add_argument("--advertise", default=None, metavar="HOST:PORT",
                        help="where the other members reach this member, when not --listen "
                             "(a wildcard --listen such as 0.0.0.0, NAT, a container); "
                             "announced to every member through the log")
    parser.add_argument("--advertise-http", default=None, metavar="HOST:PORT",
                        help="where clients reach this member's HTTP API, when not --http; "
                             "followers redirect writes there")
    parser.add_argument("--client", default=None, metavar="HOST:PORT",
                        help="also serve the binary client protocol (pipelined msgpack frames, "
                             "pyraft.kv.wire) on HOST:PORT, for KVClient(['pyraft://HOST:PORT', "
                             "...]); announced to the members (metadata key 'client') so "
                             "followers redirect there (default: HTTP only)")
    parser.add_argument("--advertise-client", default=None, metavar="HOST:PORT",
                        help="where clients reach this member's binary protocol, when not "
                             "--client")
    parser.add_argument("--peers", default="",
                        help="ID=HOST:PORT,... of the initial members; needed on the first "
                             "start only: a restart uses the membership stored in --data "
                             "(peers that contradict it are refused)")
    parser.add_argument("--http-peers", default="",
                        help="ID=HOST:PORT,... of the members' HTTP APIs (for redirects before "
                             "their addresses arrive through the log)")
    parser.add_argument("--client-peers", default="",
                        help="ID=HOST:PORT,... of the members' binary client protocols (for "
                             "redirects before their addresses arrive through the log)")
    parser.add_argument("--routes", default="",
                        help="ID=HOST:PORT,... where to dial members instead of the address "
                             "they announce (a proxy or tunnel); outgoing connections only")
    parser.add_argument("--data", default=None,
                        help="data directory (default: in memory, and a restart forgets "
                             "everything: the member comes back as a new one)")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="a JSON (.json) or TOML (.toml) file of ClusterConfig settings; "
                             "PYRAFT_* environment variables override it, and flags override "
                             "both")
    parser.add_argument("--cluster-id", type=int, default=None,
                        help="the cluster's id, written into every log segment: a member "
                             "refuses a data directory of another cluster (default 0)")
    parser.add_argument("--sync", choices=["always", "interval", "never"], default=None,
                        help="when the log reaches the disk: always (fdatasync before "
                             "acknowledging, the default), interval (every sync_interval_ms), "
                             "never (tests)")
    parser.add_argument("--transport", choices=["tcp", "tls"], default=None,
                        help="between members: tcp (the default) or mutual tls (needs --cert, "
                             "--key and --ca)")
    parser.add_argument("--cert", metavar="FILE",
                        help="with --transport tls: this member's certificate chain (PEM), "
                             "naming member-ID.pyraft")
    parser.add_argument("--key", metavar="FILE",
                        help="with --transport tls: the private key of --cert (PEM)")
    parser.add_argument("--ca", metavar="FILE",
                        help="with --transport tls: the CA bundle that signed the members' "
                             "certificates (PEM)")
    parser.add_argument("--standby", action="store_true", help="replicate, never lead")
    parser.add_argument("--join", default=None, metavar="URL",
                        help="join a running cluster: announce this member to the HTTP API at "
                             "URL (any member; followers redirect to the leader), which adds "
                             "it (warm-up, then promotion); without --peers the voters are "
                             "asked at URL (for up to --join-timeout)")
    parser.add_argument("--join-timeout", type=positive_seconds, default=JOIN_ASK_TIMEOUT_S,
                        metavar="SECONDS",
                        help="--join without --peers: how long to keep asking URL for the "
                             "voters before giving up with an error (default "
                             f"{JOIN_ASK_TIMEOUT_S:g} s; a cluster still starting may need "
                             "more)")
    parser.add_argument("--metrics", default=None, metavar="HOST:PORT",
                        help="serve Prometheus metrics on http://HOST:PORT/metrics")
    parser.add_argument("--snapshot-entries", type=positive_int("a number of entries"),
                        default=SNAPSHOT_ENTRIES_DEFAULT,
                        help="entries applied between two snapshots of the key-value state "
                             f"(default {SNAPSHOT_ENTRIES_DEFAULT})")
    parser.add_argument("--state", choices=STATES, default="memory",
                        help="where the key-value state lives: in memory (default), or in "
                             f"SQLite in DATA_DIR/{DATABASE_NAME} (needs --data)")
    parser.add_argument("--log-level", type=_log_level, default="INFO", metavar="LEVEL",
                        help=f"{', '.join(LOG_LEVELS)} (any case; default info)")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                        help="text (default): one line per record, with time, member, level "
                             "and logger; json: one JSON object per line (time, level, logger, "
                             "member, message, exception)")
    security.add_server_arguments(parser)


#: the flag that sets a configuration field, for messages
_FLAGS = {"public_endpoint": "--advertise", "listen": "--listen", "peers": "--peers",
          "routes": "--routes", "data_dir": "--data", "cluster_id": "--cluster-id",
          "sync": "--sync", "standby": "--standby", "tls.cert_file": "--cert",
          "tls.key_file": "--key", "tls.ca_file": "--ca", "tls": "--transport"}
#: the prefix of the environment variables ``pyraft node`` reads
ENV_PREFIX = "PYRAFT_"


def _log_level(text: str) -> str:
    if text.lower() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text} is not a level: give one of "
                                         f"{', '.join(LOG_LEVELS)}")
    return text.upper()


def _checked_address(flag: str, value: str, *, port_zero: bool = True) -> tuple[str, int]:
    try:
        return parse_address(value, port_zero=port_zero)
    except ValueError as error:
        raise ConfigError(flag, f"{error}; give HOST:PORT, as in 127.0.0.1:8001") from None


def http_address(args: argparse.Namespace) -> str:
    """The HTTP address this member announces: ``--advertise-http``, else ``--http`` (which
    must then be an address clients can reach). ``ConfigError`` names the flag."""
    advertised = getattr(args, "advertise_http", None)
    host, _ = _checked_address("--http", args.http)
    if advertised is not None:
        advertised_host, _ = _checked_address("--advertise-http", advertised, port_zero=False)
        if is_wildcard(advertised_host):
            raise ConfigError("--advertise-http", f"{advertised} is not an address clients "
                                                  "can reach: give the host clients dial")
        return advertised
    if is_wildcard(host):
        raise ConfigError("--http", f"{args.http} listens on every interface: give "
                                    "--advertise-http HOST:PORT, the address clients reach")
    return args.http


def client_address(args: argparse.Namespace) -> str | None:
    """The binary-protocol address this member announces (``--advertise-client``, else
    ``--client``), or None without ``--client``. ``ConfigError`` names the flag."""
    listen = getattr(args, "client", None)
    advertised = getattr(args, "advertise_client", None)
    if listen is None:
        if advertised is not None:
            raise ConfigError("--advertise-client", "needs --client HOST:PORT (where the "
                                                    "member serves the binary protocol)")
        return None
    host, _ = _checked_address("--client", listen)
    if advertised is not None:
        advertised_host, _ = _checked_address("--advertise-client", advertised,
                                              port_zero=False)
        if is_wildcard(advertised_host):
            raise ConfigError("--advertise-client", f"{advertised} is not an address clients "
                                                    "can reach: give the host clients dial")
        return advertised
    if is_wildcard(host):
        raise ConfigError("--client", f"{listen} listens on every interface: give "
                                      "--advertise-client HOST:PORT, the address clients reach")
    return listen


def _layers(args: argparse.Namespace) -> tuple[dict, dict[str, str]]:
    """The settings of the ``--config`` file, then of the ``PYRAFT_*`` variables over them,
    and where each came from (the file's path, or the variable's name), for messages."""
    values: dict = {}
    sources: dict[str, str] = {}
    if args.config:
        try:
            from_file = ClusterConfig.read_file(args.config)
        except OSError as error:
            raise ConfigError("--config", f"{args.config}: cannot read it ({error.strerror}); "
                                          "give a readable .json or .toml file") from None
        except ConfigError as error:
            if error.field in (args.config, "config"):
                reason = _reason(error).removesuffix(f" (in {args.config})")
                raise ConfigError("--config", f"{args.config}: {reason}; correct the "
                                              "file") from None
            reason = _reason(error).removesuffix(f" (in {args.config})")
            raise ConfigError("--config", f"{args.config}: {error.field}: {reason}") from None
        values.update(from_file)
        sources.update({name: f"in {args.config}" for name in from_file})
    try:
        from_env = ClusterConfig.read_env(ENV_PREFIX)
    except ConfigError as error:
        variable = error.field if error.field.startswith(ENV_PREFIX) else _variable(error.field)
        reason = _reason(error).removeprefix(f"{variable}=").removeprefix(f"{variable}: ")
        raise ConfigError(variable, f"{reason}; correct or unset the variable") from None
    if "tls" in from_env and isinstance(values.get("tls"), dict):
        from_env["tls"] = {**values["tls"], **from_env["tls"]}
    values.update(from_env)
    for name, value in from_env.items():
        for part in (value if name == "tls" else {None: None}):
            sources[name if part is None else f"{name}.{part}"] = f"from {_variable(name, part)}"
    return values, sources


def _variable(name: str, part: str | None = None) -> str:
    return ENV_PREFIX + (f"{name}_{part}" if part else name).replace(".", "_").upper()


def _reason(error: ConfigError) -> str:
    return str(error).removeprefix(f"{error.field}: ")


def build_config(args: argparse.Namespace) -> ClusterConfig:
    """The member's configuration: defaults < ``--config`` file < ``PYRAFT_*`` variables <
    flags. A bad value raises ``ConfigError`` naming the flag, variable or file it came
    from."""
    values, sources = _layers(args)
    peers = parse_members(args.peers, "--peers")
    metadata = {**dict(values.get("metadata") or {}), "http": http_address(args)}
    announced_client = client_address(args)
    if announced_client is not None:
        metadata["client"] = announced_client
    values.update({"member_id": args.id, "listen": args.listen, "metadata": metadata})
    flags = {"member_id": "--id", "listen": "--listen"}
    changes: dict = {}
    if getattr(args, "advertise", None) is not None:
        changes["public_endpoint"] = args.advertise
    if peers:
        changes["peers"] = peers
    if args.routes:
        changes["routes"] = parse_members(args.routes, "--routes")
    if args.data is not None:
        changes["data_dir"] = args.data
    if args.cluster_id is not None:
        changes["cluster_id"] = args.cluster_id
    if args.sync is not None:
        changes["sync"] = args.sync
    if args.standby:
        changes["standby"] = True
    if args.metrics is not None:
        _checked_address("--metrics", args.metrics)
    if args.http_peers:
        parse_members(args.http_peers, "--http-peers")
    if getattr(args, "client_peers", ""):
        parse_members(args.client_peers, "--client-peers")
    if args.join:
        _check_url("--join", args.join)
        changes["cold_start"] = False
    if args.transport == "tcp":
        changes["tls"] = None
    elif args.transport == "tls":
        tls = dict(values.get("tls") or {})
        for flag, name in (("--cert", "cert_file"), ("--key", "key_file"), ("--ca", "ca_file")):
            if getattr(args, flag[2:]):
                tls[name] = getattr(args, flag[2:])
                flags[f"tls.{name}"] = flag
            elif not tls.get(name):
                raise ConfigError(flag, "--transport tls needs --cert, --key and --ca (PEM "
                                        "files): give all three")
        tls["require_client_cert"] = True
        changes["tls"] = tls
    values.update(changes)
    flags.update({name: _FLAGS.get(name, name) for name in changes})
    try:
        config = ClusterConfig.from_dict(values)
    except ConfigError as error:
        raise _located(error, flags, sources) from None
    if config.data_dir is not None and os.path.exists(config.data_dir) and not os.path.isdir(
            config.data_dir):
        raise _located(ConfigError("data_dir", f"{config.data_dir} is a file, not a directory: "
                                               "give a directory (made when missing)"),
                       flags, sources)
    if config.tls is not None:
        for name in ("cert_file", "key_file", "ca_file"):
            path = getattr(config.tls, name)
            if path is not None:
                try:
                    security.check_readable(f"tls.{name}", path)
                except ConfigError as error:
                    raise _located(error, flags, sources) from None
    return config


def _located(error: ConfigError, flags: dict[str, str], sources: dict[str, str]) -> ConfigError:
    """``error`` naming the flag, variable or file that gave the field."""
    field, reason = error.field, _reason(error)
    top = field.split(".")[0]
    if field in flags:
        return ConfigError(flags[field], reason)
    source = sources.get(field) or sources.get(top)
    if source is not None and source.startswith("from "):
        return ConfigError(source.removeprefix("from "), f"{reason} ({field}); correct or "
                                                         "unset the variable")
    if source is not None:
        return ConfigError(f"{field} {source}", reason)
    if top in flags or field in _FLAGS:
        return ConfigError(flags.get(top) or _FLAGS[field], reason)
    return error


def _check_url(flag: str, url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise ConfigError(flag, f"{url} is not the URL of a member's HTTP API: give "
                                "http://HOST:PORT")


def parse_members(text: str, flag: str = "--peers") -> dict[int, str]:
    """``ID=HOST:PORT,...`` as a mapping; ``ConfigError`` names ``flag`` and the bad part."""
    members: dict[int, str] = {}
    for part in filter(None, (item.strip() for item in text.split(","))):
        member, equals, address = part.partition("=")
        if not equals or not member.strip().isdigit():
            raise ConfigError(flag, f"{part} is not ID=HOST:PORT: give, for example, "
                                    "1=127.0.0.1:7001,2=127.0.0.1:7002")
        _checked_address(flag, address.strip(), port_zero=False)
        members[int(member)] = address.strip()
    return members


def _http_announcer(join_url: str, credentials: security.ServerSecurity | None = None):
    """Announce a joining member with ``POST /v1/members`` (following the leader redirect),
    with the member's admin credential (token, client certificate)."""
    import aiohttp

    credentials = credentials or security.ServerSecurity()
    headers = {} if credentials.token is None else {
        "Authorization": f"Bearer {credentials.token}"}
    context = credentials.client_ssl if credentials.client_ssl is not None else True

    async def announce(member: int, address: str, metadata: dict) -> None:
        url = join_url.rstrip("/") + "/v1/members"
        body = {"id": member, "address": address, "metadata": metadata}
        async with aiohttp.ClientSession() as session:
            for _ in range(5):
                async with session.post(url, json=body, allow_redirects=False,
                                        headers=headers, ssl=context) as response:
                    if response.status == 307:
                        url = response.headers["Location"]
                        continue
                    if response.status in (401, 403):
                        raise ConfigError("--join", _refused_join(
                            url, response.status, await response.text()))
                    if response.status != 200:
                        raise RuntimeError(f"{url} answered {response.status}: "
                                           f"{await response.text()}")
                    log.info("member %d joined through %s", member, url)
                    return
        raise RuntimeError("too many redirects")

    return announce


def _refused_join(url: str, status: int, body: str) -> str:
    """Why the cluster refused to add this member, and what to give it."""
    try:
        document = json.loads(body)
        reason = f"{document['error']}: {document['message']}"
    except (ValueError, TypeError, KeyError):
        reason = body.strip()
    return (f"{url} refused this member ({status} {reason}); give it the cluster's "
            "--admin-token-file, or an --http-cert and --http-key from the cluster's --http-ca")


def build_machine(config: ClusterConfig, state: str,
                  snapshot_entries: int) -> KVStateMachine | SqliteKVStateMachine:
    """The key-value state machine ``--state`` names (``sqlite`` needs ``config.data_dir``)."""
    if state == "sqlite":
        if config.data_dir is None:
            raise ConfigError("--state", "sqlite needs --data DIR (the database lives there)")
        path = os.path.join(config.data_dir, DATABASE_NAME)
        try:
            os.makedirs(config.data_dir, exist_ok=True)
        except OSError as error:  # a full or read-only disk, no permission
            raise StorageError(f"cannot make the data directory: {error.strerror}",
                               config.data_dir, error.errno) from error
        try:
            return SqliteKVStateMachine(path, snapshot_entries=snapshot_entries)
        except sqlite3.DatabaseError as error:  # "file is not a database", a damaged page
            raise CorruptStateError(f"the key-value database does not open ({error})",
                                    path) from error
    return KVStateMachine(snapshot_entries=snapshot_entries)


def bind(flag: str, address: str) -> socket.socket:
    """A listening socket on ``address`` (``HOST:PORT``), bound before the member starts: a
    member that cannot serve must not join its cluster. ``ConfigError`` names ``flag``."""
    host, port = _checked_address(flag, address)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        return socket.create_server(sockaddr[:2], family=family, backlog=128)
    except socket.gaierror as error:
        raise ConfigError(flag, f"{address}: the host does not resolve ({error.strerror}); "
                                "give an address of this machine") from None
    except OSError as error:
        raise _bind_error(flag, address, error) from None


def _bind_error(flag: str, address: str, error: OSError) -> ConfigError:
    if error.errno == errno.EADDRINUSE:
        return ConfigError(flag, f"{address} is already in use: stop the process that "
                                 "listens there, or choose another port")
    if error.errno == errno.EADDRNOTAVAIL:
        return ConfigError(flag, f"{address} is not an address of this machine: give one of "
                                 "its addresses, or 0.0.0.0")
    if error.errno == errno.EACCES:
        return ConfigError(flag, f"{address}: permission denied: choose a port above 1023")
    return ConfigError(flag, f"{address}: cannot listen there ({error.strerror})")


async def members_of(url: str, timeout_s: float = JOIN_ASK_TIMEOUT_S, *,
                     ssl_context: ssl.SSLContext | None = None) -> dict[int, str]:
    """The voters of the cluster the member at ``url`` belongs to, ``id -> Raft address``,
    asked with ``GET /v1/status`` (retried for ``timeout_s``; an ``https://`` URL is verified
    with ``ssl_context``, else the system's trust store); ``ConfigError`` names ``--join``
    when nobody answers."""
    import aiohttp

    deadline = asyncio.get_running_loop().time() + timeout_s
    problem = "no answer"
    while True:
        try:
            async with aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=2.0)) as session:
                async with session.get(url.rstrip("/") + "/v1/status",
                                       ssl=ssl_context if ssl_context is not None else True
                                       ) as response:
                    if response.status == 200:
                        status = await response.json()
                        members = {int(m["id"]): str(m["address"])
                                   for m in status["members"] if m.get("voter")}
                        if members:
                            return members
                        problem = "it lists no voters"
                    else:
                        problem = f"it answered {response.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            problem = f"no answer ({error or type(error).__name__})"
        except (ValueError, KeyError, TypeError):
            problem = "its answer is not the status of a pyraft member"
        if asyncio.get_running_loop().time() >= deadline:
            raise ConfigError("--join", f"{url}: {problem} (asked for {timeout_s:g} s); give "
                                        "the URL of a running member's HTTP API, or --peers "
                                        "(or more --join-timeout)")
        await asyncio.sleep(0.5)


def _has_state(config: ClusterConfig) -> bool:
    """Whether the data directory already holds a membership (a restart)."""
    return config.data_dir is not None and os.path.exists(
        os.path.join(config.data_dir, "state", MEMBERSHIP_FILE))


async def serve(config: ClusterConfig, http: str, http_peers: dict[int, str],
                join_url: str | None = None, metrics: str | None = None,
                snapshot_entries: int = SNAPSHOT_ENTRIES_DEFAULT, state: str = "memory",
                credentials: security.ServerSecurity | None = None,
                client: str | None = None,
                client_peers: dict[int, str] | None = None,
                join_timeout_s: float = JOIN_ASK_TIMEOUT_S) -> None:
    """Run the member until SIGTERM or SIGINT. The HTTP and metrics sockets are bound first
    and the Raft port checked next, so an address in use stops the member before it touches
    its storage or joins its cluster. ``credentials``: HTTPS and the admin credential of the
    HTTP API (and what ``--join`` presents); ``client``: where to serve the binary client
    protocol (:mod:`pyraft.kv.wire`; over TLS too when the HTTP API is HTTPS), and
    ``client_peers`` the other members' (``--client-peers``); ``join_timeout_s``: how long
    ``--join`` without peers asks ``join_url`` for the voters (``--join-timeout``)."""
    from pyraft.kv import wire
    from pyraft.kv.http import member_status
    from pyraft.kv.http import serve as serve_http

    credentials = credentials or security.ServerSecurity()
    with contextlib.ExitStack() as bound:
        http_socket = bound.enter_context(bind("--http", http))
        metrics_socket = bound.enter_context(bind("--metrics", metrics)) if metrics else None
        client_socket = bound.enter_context(bind("--client", client)) if client else None
        config, options = await _membership(config, join_url, credentials, join_timeout_s)
        bind("--listen", config.listen).close()
        cluster, machine = await _start_member(config, state, snapshot_entries, options)
        runners = []
        binary: wire.WireServer | None = None
        http_addresses = {**http_peers, config.member_id: config.metadata.get("http", http)}
        try:
            runners.append(await serve_http(
                cluster, machine, sock=http_socket, http_addresses=http_addresses,
                ssl_context=credentials.ssl, admin=credentials.admin))
            log.info("member %d serves the key-value API on %s://%s", config.member_id,
                     credentials.scheme, http)
            if client_socket is not None and client:
                client_addresses: dict[int, str] = {
                    **(client_peers or {}),
                    config.member_id: config.metadata.get("client") or client}
                binary = await wire.serve(
                    cluster, machine, client_socket, ssl_context=credentials.ssl,
                    client_addresses=client_addresses,
                    status=lambda: member_status(cluster, http_addresses, client_addresses))
                log.info("member %d serves the binary client protocol on %s",
                         config.member_id, client)
            if metrics_socket is not None:
                from pyraft.metrics import serve_metrics

                runners.append(await serve_metrics(cluster, sock=metrics_socket))
                log.info("member %d serves metrics on http://%s/metrics", config.member_id,
                         metrics)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            stopped = loop.create_task(stop.wait())
            readiness = cluster.readiness
            if readiness is None:  # start() creates it: a member that started has one
                raise RuntimeError(f"member {config.member_id} started without readiness")
            waiting: list[asyncio.Future[Any]] = [stopped, readiness]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not stopped.done():
                stopped.cancel()
                refused = None if readiness.cancelled() else readiness.exception()
                if refused is not None:
                    # a refused join (its credential): no retry can help
                    raise refused
                await stop.wait()
        finally:
            if binary is not None:
                await binary.close()
            for runner in reversed(runners):
                await runner.cleanup()
            await cluster.stop()


async def _membership(config: ClusterConfig, join_url: str | None,
                      credentials: security.ServerSecurity,
                      timeout_s: float = JOIN_ASK_TIMEOUT_S) -> tuple[ClusterConfig, dict]:
    """The configuration a joining member starts from, and the runtime's join options:
    ``--join`` without ``--peers`` asks the member at the URL for the voters, unless the data
    directory already holds a membership (a restart, which uses it, and announces itself
    again until it is a voter: the cluster may not have added it before it stopped)."""
    if not join_url:
        return config, {}
    if not config.peers and _has_state(config):
        log.info("member %d restarts from %s: it uses the membership stored there (--join is "
                 "needed only until it is a voter)", config.member_id, config.data_dir)
        return config, {"announcer": _http_announcer(join_url, credentials)}
    if not config.peers:
        config = dataclasses.replace(
            config, peers=await members_of(join_url, timeout_s,
                                           ssl_context=credentials.client_ssl))
    return config, {"announcer": _http_announcer(join_url, credentials)}


async def _start_member(config: ClusterConfig, state: str, snapshot_entries: int,
                        options: dict) -> tuple[RaftCluster, KVStateMachine | SqliteKVStateMachine]:
    machine = build_machine(config, state, snapshot_entries)
    try:
        cluster = RaftCluster.from_config(config, state_machine=machine, **options)
    except BaseException:
        machine.close()
        raise
    try:
        await cluster.start()
    except OSError as error:  # the Raft port, taken since it was checked
        if isinstance(error, StorageError) or error.errno not in (
                errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        await cluster.stop()
        raise _bind_error("--listen", config.listen, error) from None
    if config.data_dir is None:
        log.warning("member %d keeps its log in memory (no --data): a restart forgets every "
                    "vote and entry, and the member comes back as a new one", config.member_id)
    return cluster, machine


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``member``, ``message`` and, when the record carries one, ``exception``."""

    def __init__(self, member: int) -> None:
        super().__init__()
        self.member = member

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        line = {"time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "level": record.levelname, "logger": record.name, "member": self.member,
                "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


def setup_logging(member: int, level: str, form: str) -> None:
    """Log to stderr: text lines (time, member, level, logger, message) or JSON lines."""
    handler = logging.StreamHandler()
    if form == "json":
        handler.setFormatter(JsonLogFormatter(member))
    else:
        handler.setFormatter(logging.Formatter(
            f"%(asctime)s member {member} %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def refusal(args: argparse.Namespace, error: ConfigError) -> str:
    """The one line that says why the member did not start (``pyraft.cli`` prints it)."""
    if isinstance(error, MembershipMismatchError):
        data = error.data_dir or args.data
        return (f"pyraft node: member {args.id} refused to start: --peers {error.given} "
                f"contradict the membership stored in {data} ({error.stored}); start "
                "it without --peers to use the stored membership, or with an empty --data to "
                "make a new member")
    flag = _FLAGS.get(error.field, error.field)
    return f"pyraft node: member {args.id} refused to start: {flag}: {_reason(error)}"


def run(args: argparse.Namespace) -> int:
    """Run ``pyraft node``. A mistake of the operator raises ``ConfigError`` (``pyraft.cli``
    prints ``refusal()`` and exits with 2); damaged data ends with ``EXIT_STORAGE``."""
    setup_logging(args.id, args.log_level, getattr(args, "log_format", "text"))
    config = build_config(args)
    credentials = security.server_options(args)
    state = getattr(args, "state", "memory")
    if state == "sqlite" and config.data_dir is None:
        raise ConfigError("--state", "sqlite needs --data DIR (the database lives there)")
    main = serve(config, args.http, parse_members(args.http_peers, "--http-peers"), args.join,
                 args.metrics, getattr(args, "snapshot_entries", SNAPSHOT_ENTRIES_DEFAULT),
                 state, credentials, getattr(args, "client", None),
                 parse_members(getattr(args, "client_peers", ""), "--client-peers"),
                 getattr(args, "join_timeout", JOIN_ASK_TIMEOUT_S))
    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(main)
        else:
            uvloop.run(main)
    except (CorruptStateError, WalCorruptionError, StorageError) as error:
        return report_storage_failure(args.id, error)
    except MembershipMismatchError as error:
        error.data_dir = config.data_dir  # the message names it
        raise
    return 0


def report_storage_failure(member: int, error: BaseException) -> int:
    """Print the one-line message for a damaged data directory, another cluster's one or a
    failed disk on stderr; returns ``EXIT_STORAGE``."""
    what, hint = "storage failed", ""
    if isinstance(error, ClusterMismatchError):
        # a mistyped --cluster-id or --data, not damage: a repair hint would be destructive
        print(f"pyraft node: member {member} stopped: {error} (--cluster-id); start with "
              f"--cluster-id {error.stored_cluster_id} or another --data", file=sys.stderr,
              flush=True)
        return EXIT_STORAGE
    if isinstance(error, WalClusterMismatchError):
        what = "the data directory belongs to another cluster"
    elif isinstance(error, (CorruptStateError, WalCorruptionError)):
        what = "the data directory is damaged"
        if str(getattr(error, "path", "")).endswith(".wal"):
            hint = "; see `pyraft wal inspect DIR/wal` and `pyraft wal repair DIR/wal --yes`"
    print(f"pyraft node: member {member} stopped: {what}: {error}{hint}", file=sys.stderr,
          flush=True)
    return EXIT_STORAGE
