"""Run one member as a process: ``python -m pyraft.testing.member --id 1 --listen ...``.

A tool for the integration tests and the cluster benchmarks (real processes on 127.0.0.1),
started by :class:`pyraft.testing.processes.Member`; not part of the product's runtime. The
member is built the way users build theirs: a ``ClusterConfig`` (``build_config``: each flag
sets one configuration field, every other field keeps the configuration's default) and
``RaftCluster.from_config``, which makes the TCP or TLS transport and the durable log from it.
The flags and the fields they set:

    --id member_id       --listen listen        --peers peers (ID=HOST:PORT,...)
    --data data_dir      --sync sync            --cluster-id cluster_id
    --tick-ms tick_ms    --standby standby      --join cold_start = False
    --election-ms election_timeout_ms_lower (and _upper = twice it)
    --failure-dead-ms failure_dead_ms           --proposal-queue-max proposal_queue_max
    --cert/--key/--ca tls (mutual TLS: require_client_cert, as ``pyraft node --transport tls``)
    --config FILE: any setting, from a .json or .toml file (``ClusterConfig.read_file``);
    the flags above override it

The member runs a small replicated log of items (``ItemLog``) and answers a line-based
JSON control protocol on ``--control HOST:PORT`` (one request per line, one answer per line):

    {"op": "status"}                       -> role, leader, term, commit, applied, members
    {"op": "replicate", "data": "text"}    -> {"ok": true, "result": <index of the item>}
    {"op": "barrier"}                      -> {"ok": true, "index": <read index>}
    {"op": "items", "barrier": true}       -> every item applied here (after a read barrier)
    {"op": "lease"}                        -> {"valid": ..., "expires_in_ms": ...}
    {"op": "add_member", "id": 4, "address": "127.0.0.1:7004"}
    {"op": "remove_member", "id": 4}   {"op": "transfer", "id": 2}   {"op": "resign"}
    {"op": "load", "size": 16, "inflight": 256, "duration_s": 5}
                                            -> {"ok": true, "result": <result>,
                                                "stopped_by": null | "NotLeaderError: ..."}:
        a write load
        run inside this (leader) process through ``replicate`` (``"batch": n``: each call is
        ``replicate_many`` of n commands), closed-loop, or open-loop with ``"rate": per_s``;
        ``"count": n`` stops after n calls (see pyraft.bench.load and pyraft.bench.stats); a
        load stops early when this member loses its lead (``stopped_by``)
    {"op": "reads", "mode": "lease" | "barrier", "inflight": 16, "duration_s": 2}
                                            -> {"ok": true, "result": <result>}: local reads
        under a valid lease, or each after ``apply_read_barrier``, counted as "writes"
    {"op": "pipeline"}                     -> {"ok": true, "syncs": n, "sync_s": seconds,
                                                "appends": n, "entries": n}: the syncs of
        entries, hard state or both this member timed and their total time, the Readys
        whose entries it wrote and their entries, since it started (``pyraft_fsync_seconds``,
        ``pyraft_append_entries``); a load's difference says how its writes were batched

The ``load`` and ``reads`` ops drive the benchmark's load driver and answer its result
schema (``pyraft.bench.load``, ``pyraft.bench.stats``): those stay in ``pyraft.bench``, beside
the peers' drivers, the HTTP load generator and the report that share them; a tool may import
another tool, the product imports neither.

With ``--state count`` the member keeps only the number and total size of the commands
applied (the benchmarks use it: ``items`` then answers an error), not every item.
Errors answer ``{"ok": false, "error": "<type>", "message": ..., "leader": ..., "address": ...}``.
The process prints ``ready <control address>`` on stdout once it serves, and stops cleanly on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack  # type: ignore[import-untyped]

import pyraft
from pyraft.bench.load import Observations, run_load
from pyraft.bench.stats import make_result
from pyraft.cluster.runtime import RaftCluster
from pyraft.config import ClusterConfig, parse_address
from pyraft.errors import ConfigError, NotLeaderError, ProposalDroppedError, PyraftError
from pyraft.storage.state_machine import MemoryStateMachine
from raftcore.framing import RECORD_HEADER_BYTES, EntryBatch

log = logging.getLogger("pyraft.testing.member")


class ItemLog(MemoryStateMachine):
    """The replicated state: the list of every item appended; apply returns its position."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.items: list[str] = []

    def apply(self, index: int, command: memoryview) -> int:
        self.items.append(bytes(command).decode())
        return len(self.items) - 1

    def build_snapshot(self) -> bytes:
        return msgpack.packb(self.items)

    def restore_snapshot(self, data: bytes) -> None:
        self.items = list(msgpack.unpackb(data)) if data else []


def parse_peers(text: str) -> dict[int, str]:
    """``ID=HOST:PORT,...`` as a mapping (``ConfigError`` naming ``--peers`` when a part has
    no ``=`` or its id is not a number; the addresses are checked by ``ClusterConfig``)."""
    peers = {}
    for part in filter(None, text.split(",")):
        member, equals, address = part.partition("=")
        if not equals or not member.strip().isdigit():
            raise ConfigError("--peers", f"{part} is not ID=HOST:PORT")
        peers[int(member)] = address.strip()
    return peers


def build_config(args: argparse.Namespace) -> ClusterConfig:
    """The member's validated configuration: the defaults of ``ClusterConfig``, then the
    ``--config`` file, then the flags (see the module docstring for which field each sets).
    A flag left out keeps the field of the layer below; a bad value raises ``ConfigError``."""
    values: dict[str, Any] = ClusterConfig.read_file(args.config) if args.config else {}
    peers = parse_peers(args.peers)
    peers.setdefault(args.id, args.listen)  # a joining member leaves itself out of the voters
    values.update(member_id=args.id, listen=args.listen)
    if peers:
        values["peers"] = peers
    if args.join:
        values["cold_start"] = False
    if args.standby:
        values["standby"] = True
    for flag, name in (("data", "data_dir"), ("sync", "sync"), ("cluster_id", "cluster_id"),
                       ("tick_ms", "tick_ms"), ("failure_dead_ms", "failure_dead_ms"),
                       ("proposal_queue_max", "proposal_queue_max")):
        if getattr(args, flag) is not None:
            values[name] = getattr(args, flag)
    if args.election_ms is not None:
        values["election_timeout_ms_lower"] = args.election_ms
        values["election_timeout_ms_upper"] = 2 * args.election_ms
    files = (args.cert, args.key, args.ca)
    if any(files):
        if not all(files):
            raise ConfigError("--cert", "TLS needs --cert, --key and --ca (PEM files)")
        # mutual TLS, as ``pyraft node --transport tls``: members prove who they are
        values["tls"] = {**(values.get("tls") or {}), "cert_file": args.cert,
                         "key_file": args.key, "ca_file": args.ca,
                         "require_client_cert": True}
    return ClusterConfig.from_dict(values)


class CountLog(MemoryStateMachine):
    """The replicated state of a benchmark: how many commands were applied and their total
    size; apply returns the command's position. Snapshots are a few bytes."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.count = 0
        self.bytes = 0

    def apply(self, index: int, command: memoryview) -> int:
        self.count += 1
        self.bytes += len(command)
        return self.count - 1

    def apply_commands(self, batch: EntryBatch) -> list[object]:
        first = self.count
        self.count += len(batch)
        self.bytes += batch.nbytes - RECORD_HEADER_BYTES * len(batch)  # records carry no padding
        return list(range(first, self.count))

    def build_snapshot(self) -> bytes:
        return msgpack.packb([self.count, self.bytes])

    def restore_snapshot(self, data: bytes) -> None:
        self.count, self.bytes = msgpack.unpackb(data) if data else (0, 0)


def _mode(config: ClusterConfig) -> str:
    """How the member keeps its log, as the benchmark results name it."""
    if config.data_dir is None:
        return "memory"
    return "durable (fdatasync)" if config.sync == "always" else f"durable (sync {config.sync})"


async def load(cluster: RaftCluster, request: dict, mode: str) -> dict:
    """The ``load`` op: see the module docstring; answers a result of pyraft.bench.stats."""
    size, inflight = int(request.get("size", 16)), int(request.get("inflight", 1))
    batch, rate = int(request.get("batch", 1)), request.get("rate")
    duration_s = float(request.get("duration_s", 5.0))
    if size < 0 or batch < 1:
        raise ValueError("size must be >= 0 and batch >= 1")
    payload = b"x" * size
    commands = [payload] * batch
    # a partial, not a function of ours: each call is then a C call, no Python frame (the
    # driver's cost per write counts in this process's CPU beside the engine's)
    unit: Callable[[], Awaitable[object]] = (
        functools.partial(cluster.replicate, payload) if batch == 1
        else functools.partial(cluster.replicate_many, commands))
    seen = await run_load(unit, inflight=inflight, rate=None if rate is None else float(rate),
                          duration_s=duration_s, per_unit=batch, count=request.get("count"),
                          stop_on=(NotLeaderError,))
    workload = {"kind": "closed" if rate is None else "open", "api": "engine", "size": size,
                "inflight": inflight if rate is None else None, "rate": rate,
                "duration_s": duration_s,
                "members": len(cluster.members), "batch": batch, "operation": "write"}
    # Summarising millions of calls takes a while: in a worker thread (numpy sorts without
    # the GIL), so this member's loop keeps its heartbeats going meanwhile.
    result = await asyncio.get_running_loop().run_in_executor(
        None, _result, seen, mode, workload, batch)
    return {"ok": True, "result": result, "stopped_by": seen.stopped_by}


async def reads(cluster: RaftCluster, request: dict, mode: str) -> dict:
    """The ``reads`` op: local reads under the lease, or after a read barrier each."""
    kind = request.get("mode", "lease")
    inflight, duration_s = int(request.get("inflight", 16)), float(request.get("duration_s", 2))
    machine = cluster.state_machine

    async def lease_read() -> int:
        if not cluster.lease.valid:
            raise ProposalDroppedError("the lease is not valid")
        await asyncio.sleep(0)  # one loop turn per read, as a server handling requests does
        return machine.applied_index

    async def barrier_read() -> int:
        await cluster.apply_read_barrier(timeout=5)
        return machine.applied_index

    if kind not in ("lease", "barrier"):
        raise ValueError(f"mode must be lease or barrier, not {kind!r}")
    seen = await run_load(lease_read if kind == "lease" else barrier_read, inflight=inflight,
                          duration_s=duration_s)
    workload = {"kind": "closed", "api": "engine", "size": 0, "inflight": inflight,
                "rate": None, "duration_s": duration_s, "members": len(cluster.members),
                "operation": f"read-{kind}"}
    result = await asyncio.get_running_loop().run_in_executor(None, _result, seen, mode,
                                                              workload)
    return {"ok": True, "result": result}


def _result(seen: Observations, mode: str, workload: dict, per_call: int = 1) -> dict:
    notes = "" if seen.first_error is None else f"first error: {seen.first_error}"
    return make_result(system="pyraft", version=pyraft.__version__, mode=mode,
                       workload=workload, writes=seen.writes, errors=seen.errors,
                       elapsed_s=seen.elapsed_s, latencies_s=seen.latencies_s,
                       done_at_s=seen.done_at_s, notes=notes, per_call=per_call)


async def handle(cluster: RaftCluster, request: dict, mode: str = "memory") -> dict:
    """One control request (see the module docstring) and its answer."""
    op = request.get("op")
    if op == "status":
        return {
            "ok": True, "id": cluster.id, "role": cluster.role.value, "leader": cluster.leader,
            "term": cluster.term, "commit": cluster.commit_index,
            "applied": cluster.applied_index,
            "snapshots_installed": cluster.metrics.snapshots.value(("installed",)),
            "snapshot_index": cluster.storage.latest_snapshot_meta().index,
            "members": [[m.id, m.address, m.voter, m.match_index] for m in cluster.members],
        }
    if op == "replicate":
        result = await cluster.replicate(request["data"].encode(), timeout=request.get("timeout"))
        return {"ok": True, "result": result}
    if op == "barrier":
        return {"ok": True, "index": await cluster.apply_read_barrier(timeout=5)}
    if op == "items":
        machine = cluster.state_machine
        if not isinstance(machine, ItemLog):
            raise ValueError("this member keeps no items (--state count)")
        if request.get("barrier"):
            await cluster.apply_read_barrier(timeout=5)
        return {"ok": True, "items": machine.items}
    if op == "lease":
        lease = cluster.lease
        return {"ok": True, "valid": lease.valid, "expires_in_ms": lease.expires_in_ms}
    if op == "add_member":
        await cluster.add_member(request["id"], request["address"],
                                 timeout=float(request.get("timeout", 10)))
        return {"ok": True}
    if op == "remove_member":
        await cluster.remove_member(request["id"], timeout=10)
        return {"ok": True}
    if op == "transfer":
        await cluster.transfer_leadership(request["id"], timeout=5)
        return {"ok": True}
    if op == "resign":
        return {"ok": True, "to": await cluster.resign()}
    if op == "load":
        return await load(cluster, request, mode)
    if op == "reads":
        return await reads(cluster, request, mode)
    if op == "pipeline":
        metrics = cluster.metrics
        return {"ok": True, "syncs": metrics.fsync_seconds.count(),
                "sync_s": metrics.fsync_seconds.total(),
                "appends": metrics.append_entries.count(),
                "entries": metrics.append_entries.total()}
    return {"ok": False, "error": "BadRequest", "message": f"unknown op {op!r}"}


def build_machine(args: argparse.Namespace) -> ItemLog | CountLog:
    """The state machine ``--state`` names, snapshotting every ``--snapshot-entries``."""
    machine_class = CountLog if args.state == "count" else ItemLog
    return machine_class(compaction="sequential", snapshot_entries=args.snapshot_entries)


async def serve(config: ClusterConfig, machine: ItemLog | CountLog,
                control: tuple[str, int]) -> None:
    """Run the member built from ``config`` with ``machine`` and its control server on
    ``control`` (host, port) until SIGTERM or SIGINT."""
    cluster = RaftCluster.from_config(config, state_machine=machine)
    await cluster.start()
    mode = _mode(config)

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    answer = await handle(cluster, json.loads(line), mode)
                except NotLeaderError as error:
                    answer = {"ok": False, "error": "NotLeaderError", "message": str(error),
                              "leader": error.leader_id, "address": error.leader_address}
                except (PyraftError, asyncio.TimeoutError, ValueError, KeyError) as error:
                    answer = {"ok": False, "error": type(error).__name__, "message": str(error)}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # shutting down: the connection closes below
        finally:
            writer.close()

    server = await asyncio.start_server(client, *control)
    bound = server.sockets[0].getsockname()
    print(f"ready {bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()
    await cluster.stop()


def parser() -> argparse.ArgumentParser:
    """The command line; flags that set a configuration field default to None (the field's
    default, or the ``--config`` file's value)."""
    parser = argparse.ArgumentParser(prog="python -m pyraft.testing.member")
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--listen", required=True, help="HOST:PORT for members")
    parser.add_argument("--control", default="127.0.0.1:0", help="HOST:PORT for the control")
    parser.add_argument("--peers", default="", help="ID=HOST:PORT,... of the initial members")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="ClusterConfig settings (.json or .toml) under the flags")
    parser.add_argument("--data", default=None, help="data directory (default: in memory)")
    parser.add_argument("--sync", default=None, choices=["always", "interval", "never"])
    parser.add_argument("--cluster-id", type=int, default=None)
    parser.add_argument("--tick-ms", type=float, default=None)
    parser.add_argument("--election-ms", type=float, default=None,
                        help="lower election timeout; the upper one is twice it")
    parser.add_argument("--join", action="store_true", help="wait to be added by the leader")
    parser.add_argument("--standby", action="store_true", help="replicate, never lead")
    parser.add_argument("--failure-dead-ms", type=float, default=None,
                        help="remove voters judged dead this long (0: off)")
    parser.add_argument("--proposal-queue-max", type=int, default=None,
                        help="commands waiting to enter the core (back-pressure)")
    parser.add_argument("--state", default="items", choices=["items", "count"],
                        help="keep every item (tests) or only a count (benchmarks)")
    parser.add_argument("--snapshot-entries", type=int, default=50_000,
                        help="applied entries between two snapshots")
    parser.add_argument("--cert"), parser.add_argument("--key"), parser.add_argument("--ca")
    parser.add_argument("--log-level", default="WARNING")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format=f"%(asctime)s member {args.id} %(name)s %(message)s")
    try:
        config = build_config(args)
        try:
            control = parse_address(args.control, port_zero=True)
        except ValueError as error:
            raise ConfigError("--control", str(error)) from None
    except ConfigError as error:
        print(f"python -m pyraft.testing.member: {error}", file=sys.stderr)
        return 2
    main_task = serve(config, build_machine(args), control)
    try:
        import uvloop
    except ImportError:
        asyncio.run(main_task)
    else:
        uvloop.run(main_task)
    return 0


if __name__ == "__main__":
    sys.exit(main())
