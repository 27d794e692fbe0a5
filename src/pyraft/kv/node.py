"""``pyraft node``: one member of a replicated key-value service.

Runs a ``RaftCluster`` (TCP or TLS between members, durable log in ``--data``) with the
``KVStateMachine`` and serves the HTTP API (``pyraft.kv.http``) on ``--http``. Every member
publishes its HTTP address in its metadata (key ``http``), so followers can redirect clients
to the leader. Start three in three terminals; kill one; restart it: its state recovers from
its data directory::

    pyraft node --id 1 --listen 127.0.0.1:7001 --http 127.0.0.1:8001 \\
        --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 --data /tmp/node1

``--config FILE`` (JSON or TOML, see ``pyraft.config.ClusterConfig``) supplies any setting;
command-line options override it. SIGTERM or Ctrl+C stops the member gracefully.

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
import dataclasses
import logging
import os
import signal
import sqlite3
import sys

from pyraft.cluster.runtime import RaftCluster
from pyraft.config import ClusterConfig, TlsConfig, _is_wildcard, parse_address
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
#: Where ``--state`` keeps the key-value state.
STATES = ("memory", "sqlite")


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
    parser.add_argument("--peers", default="",
                        help="ID=HOST:PORT,... of the initial members; needed on the first "
                             "start only: a restart uses the membership stored in --data "
                             "(peers that contradict it are refused)")
    parser.add_argument("--http-peers", default="",
                        help="ID=HOST:PORT,... of the members' HTTP APIs (for redirects before "
                             "their addresses arrive through the log)")
    parser.add_argument("--routes", default="",
                        help="ID=HOST:PORT,... where to dial members instead of the address "
                             "they announce (a proxy or tunnel); outgoing connections only")
    parser.add_argument("--data", default=None,
                        help="data directory (default: in memory, and a restart forgets "
                             "everything: the member comes back as a new one)")
    parser.add_argument("--config", default=None, help="a JSON or TOML ClusterConfig file")
    parser.add_argument("--cluster-id", type=int, default=None)
    parser.add_argument("--sync", choices=["always", "interval", "never"], default=None)
    parser.add_argument("--transport", choices=["tcp", "tls"], default="tcp")
    parser.add_argument("--cert"), parser.add_argument("--key"), parser.add_argument("--ca")
    parser.add_argument("--standby", action="store_true", help="replicate, never lead")
    parser.add_argument("--join", default=None, metavar="URL",
                        help="join a running cluster: announce this member to the HTTP API at "
                             "URL (any member; followers redirect to the leader), which adds "
                             "it (warm-up, then promotion); --peers lists existing members")
    parser.add_argument("--metrics", default=None, metavar="HOST:PORT",
                        help="serve Prometheus metrics on http://HOST:PORT/metrics")
    parser.add_argument("--snapshot-entries", type=_positive_int,
                        default=SNAPSHOT_ENTRIES_DEFAULT,
                        help="entries applied between two snapshots of the key-value state "
                             f"(default {SNAPSHOT_ENTRIES_DEFAULT})")
    parser.add_argument("--state", choices=STATES, default="memory",
                        help="where the key-value state lives: in memory (default), or in "
                             f"SQLite in DATA_DIR/{DATABASE_NAME} (needs --data)")
    parser.add_argument("--log-level", default="INFO")
    security.add_server_arguments(parser)


#: the flag that sets a configuration field, for messages
_FLAGS = {"public_endpoint": "--advertise", "listen": "--listen", "peers": "--peers",
          "routes": "--routes", "data_dir": "--data", "cluster_id": "--cluster-id",
          "sync": "--sync", "standby": "--standby"}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def http_address(args: argparse.Namespace) -> str:
    """The HTTP address this member announces: ``--advertise-http``, else ``--http`` (which
    must then be an address clients can reach). ``ConfigError`` names the flag."""
    advertised = getattr(args, "advertise_http", None)
    for flag, value in (("--http", args.http), ("--advertise-http", advertised)):
        if value is not None:
            try:
                parse_address(value, port_zero=flag == "--http")
            except ValueError as error:
                raise ConfigError(flag, str(error)) from None
    if advertised is not None:
        host, _ = parse_address(advertised)
        if _is_wildcard(host):
            raise ConfigError("--advertise-http", f"{advertised!r} is not an address clients "
                                                  "can reach")
        return advertised
    host, _ = parse_address(args.http, port_zero=True)
    if _is_wildcard(host):
        raise ConfigError("--http", f"{args.http!r} listens on every interface: give "
                                    "--advertise-http HOST:PORT, the address clients reach")
    return args.http


def build_config(args: argparse.Namespace) -> ClusterConfig:
    base = ClusterConfig.from_file(args.config) if args.config else ClusterConfig(
        member_id=args.id)
    peers = parse_members(args.peers)
    changes = {"member_id": args.id, "listen": args.listen,
               "metadata": {**dict(base.metadata), "http": http_address(args)}}
    if getattr(args, "advertise", None) is not None:
        changes["public_endpoint"] = args.advertise
    if peers:
        changes["peers"] = peers
    if args.routes:
        changes["routes"] = parse_members(args.routes)
    if args.data is not None:
        changes["data_dir"] = args.data
    if args.cluster_id is not None:
        changes["cluster_id"] = args.cluster_id
    if args.sync is not None:
        changes["sync"] = args.sync
    if args.standby:
        changes["standby"] = True
    if args.join:
        changes["cold_start"] = False
    if args.transport == "tls":
        if not (args.cert and args.key and args.ca):
            raise SystemExit("--transport tls needs --cert, --key and --ca")
        changes["tls"] = TlsConfig(args.cert, args.key, args.ca, require_client_cert=True)
    return dataclasses.replace(base, **changes).validate()


def parse_members(text: str) -> dict[int, str]:
    members = {}
    for part in filter(None, text.split(",")):
        member, _, address = part.partition("=")
        members[int(member)] = address
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
                        raise RuntimeError(
                            f"{url} refused this member's credential ({response.status}: "
                            f"{await response.text()}); give it the cluster's "
                            "--admin-token-file, or an --http-cert from the cluster's --http-ca")
                    if response.status != 200:
                        raise RuntimeError(f"{url} answered {response.status}: "
                                           f"{await response.text()}")
                    log.info("member %d joined through %s", member, url)
                    return
        raise RuntimeError("too many redirects")

    return announce


def build_machine(config: ClusterConfig, state: str,
                  snapshot_entries: int) -> KVStateMachine | SqliteKVStateMachine:
    """The key-value state machine ``--state`` names (``sqlite`` needs ``config.data_dir``)."""
    if state == "sqlite":
        path = os.path.join(config.data_dir, DATABASE_NAME)
        os.makedirs(config.data_dir, exist_ok=True)
        try:
            return SqliteKVStateMachine(path, snapshot_entries=snapshot_entries)
        except sqlite3.DatabaseError as error:  # "file is not a database", a damaged page
            raise CorruptStateError(f"the key-value database does not open ({error})",
                                    path) from error
    return KVStateMachine(snapshot_entries=snapshot_entries)


async def serve(config: ClusterConfig, http: str, http_peers: dict[int, str],
                join_url: str | None = None, metrics: str | None = None,
                snapshot_entries: int = SNAPSHOT_ENTRIES_DEFAULT, state: str = "memory",
                credentials: security.ServerSecurity | None = None) -> None:
    from pyraft.kv.http import serve as serve_http

    credentials = credentials or security.ServerSecurity()
    machine = build_machine(config, state, snapshot_entries)
    options = {}
    if join_url:
        options["announcer"] = _http_announcer(join_url, credentials)
    try:
        cluster = RaftCluster.from_config(config, state_machine=machine, **options)
    except BaseException:
        machine.close()
        raise
    await cluster.start()
    host, _, port = http.rpartition(":")
    runner = await serve_http(cluster, machine, host, int(port),
                              http_addresses={**http_peers,
                                              config.member_id: config.metadata.get("http", http)},
                              ssl_context=credentials.ssl, admin=credentials.admin)
    log.info("member %d serves the key-value API on %s://%s", config.member_id,
             credentials.scheme, http)
    metrics_runner = None
    if metrics:
        from pyraft.metrics import serve_metrics

        host, _, port = metrics.rpartition(":")
        metrics_runner = await serve_metrics(cluster, host, int(port))
        log.info("member %d serves metrics on http://%s/metrics", config.member_id, metrics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()
        await cluster.stop()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level,
                        format=f"%(asctime)s member {args.id} %(name)s: %(message)s")
    try:
        config = build_config(args)
        credentials = security.server_options(args)
    except ConfigError as error:
        message = str(error).removeprefix(f"{error.field}: ")
        flag = _FLAGS.get(error.field, error.field)
        print(f"pyraft node: member {args.id} refused to start: {flag}: {message}",
              file=sys.stderr, flush=True)
        return EXIT_CONFIG
    state = getattr(args, "state", "memory")
    if state == "sqlite" and config.data_dir is None:
        print("pyraft node: --state sqlite needs --data DIR (the database lives there)",
              file=sys.stderr, flush=True)
        return EXIT_USAGE
    if config.data_dir is None:
        log.warning("member %d keeps its log in memory (no --data): a restart forgets every "
                    "vote and entry, and the member comes back as a new one", config.member_id)
    main = serve(config, args.http, parse_members(args.http_peers), args.join, args.metrics,
                 getattr(args, "snapshot_entries", SNAPSHOT_ENTRIES_DEFAULT), state,
                 credentials)
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
        print(f"pyraft node: member {args.id} refused to start: --peers {error.given} "
              f"contradict the membership stored in {config.data_dir} ({error.stored}); start "
              "it without --peers to use the stored membership, or with an empty --data to "
              "make a new member", file=sys.stderr, flush=True)
        return EXIT_CONFIG
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
