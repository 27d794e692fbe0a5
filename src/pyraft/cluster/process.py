"""Run one member as a process: ``python -m pyraft.cluster.process --id 1 --listen ...``.

Used by the integration tests and the cluster benchmarks (real processes on 127.0.0.1).
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

With ``--state count`` the member keeps only the number and total size of the commands
applied (the benchmarks use it: ``items`` then answers an error), not every item.
Errors answer ``{"ok": false, "error": "<type>", "message": ..., "leader": ..., "address": ...}``.
The process prints ``ready <control address>`` on stdout once it serves, and stops cleanly on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import ssl
import sys

import msgpack

import pyraft
from pyraft.bench.load import run_load
from pyraft.bench.stats import make_result
from pyraft.cluster.runtime import RaftCluster
from pyraft.config import ClusterConfig
from pyraft.errors import NotLeaderError, ProposalDroppedError, PyraftError
from pyraft.storage.log import DurableLogStorage
from pyraft.storage.state_machine import MemoryStateMachine
from pyraft.transport.tcp import TcpTransport
from raftcore.framing import RECORD_HEADER_BYTES

log = logging.getLogger("pyraft.process")


class ItemLog(MemoryStateMachine):
    """The replicated state: the list of every item appended; apply returns its position."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.items: list[str] = []

    def apply(self, index, command):
        self.items.append(bytes(command).decode())
        return len(self.items) - 1

    def build_snapshot(self):
        return msgpack.packb(self.items)

    def restore_snapshot(self, data):
        self.items = list(msgpack.unpackb(data)) if data else []


def parse_peers(text: str) -> dict[int, str]:
    peers = {}
    for part in filter(None, text.split(",")):
        member, _, address = part.partition("=")
        peers[int(member)] = address
    return peers


def ssl_contexts(args) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    if not args.cert:
        return None, None
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=args.ca)
    server.load_cert_chain(args.cert, args.key)
    server.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: members prove who they are
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.ca)
    client.load_cert_chain(args.cert, args.key)
    client.check_hostname = False  # members are addressed by IP; the CA is what is trusted
    return server, client


class CountLog(MemoryStateMachine):
    """The replicated state of a benchmark: how many commands were applied and their total
    size; apply returns the command's position. Snapshots are a few bytes."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.count = 0
        self.bytes = 0

    def apply(self, index, command):
        self.count += 1
        self.bytes += len(command)
        return self.count - 1

    def apply_commands(self, batch):
        first = self.count
        self.count += len(batch)
        self.bytes += batch.nbytes - RECORD_HEADER_BYTES * len(batch)  # records carry no padding
        return list(range(first, self.count))

    def build_snapshot(self):
        return msgpack.packb([self.count, self.bytes])

    def restore_snapshot(self, data):
        self.count, self.bytes = msgpack.unpackb(data) if data else (0, 0)


def _mode(args) -> str:
    if not args.data:
        return "memory"
    return "durable (fdatasync)" if args.sync == "always" else f"durable (sync {args.sync})"


async def load(cluster: RaftCluster, request: dict, mode: str) -> dict:
    """The ``load`` op: see the module docstring; answers a result of pyraft.bench.stats."""
    size, inflight = int(request.get("size", 16)), int(request.get("inflight", 1))
    batch, rate = int(request.get("batch", 1)), request.get("rate")
    duration_s = float(request.get("duration_s", 5.0))
    if size < 0 or batch < 1:
        raise ValueError("size must be >= 0 and batch >= 1")
    payload = b"x" * size
    if batch == 1:
        def unit():
            return cluster.replicate(payload)
    else:
        commands = [payload] * batch

        def unit():
            return cluster.replicate_many(commands)
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

    async def lease_read():
        if not cluster.lease.valid:
            raise ProposalDroppedError("the lease is not valid")
        await asyncio.sleep(0)  # one loop turn per read, as a server handling requests does
        return machine.applied_index

    async def barrier_read():
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


def _result(seen, mode: str, workload: dict, per_call: int = 1) -> dict:
    notes = "" if seen.first_error is None else f"first error: {seen.first_error}"
    return make_result(system="pyraft", version=pyraft.__version__, mode=mode,
                       workload=workload, writes=seen.writes, errors=seen.errors,
                       elapsed_s=seen.elapsed_s, latencies_s=seen.latencies_s,
                       done_at_s=seen.done_at_s, notes=notes, per_call=per_call)


async def handle(cluster: RaftCluster, request: dict, mode: str = "memory") -> dict:
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
        if not hasattr(cluster.state_machine, "items"):
            raise ValueError("this member keeps no items (--state count)")
        if request.get("barrier"):
            await cluster.apply_read_barrier(timeout=5)
        return {"ok": True, "items": cluster.state_machine.items}
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
    return {"ok": False, "error": "BadRequest", "message": f"unknown op {op!r}"}


async def serve(args) -> None:
    peers = parse_peers(args.peers)
    peers.setdefault(args.id, args.listen)
    server_ssl, client_ssl = ssl_contexts(args)
    transport = TcpTransport(args.id, args.listen, cluster_id=args.cluster_id,
                             ssl_server=server_ssl, ssl_client=client_ssl)
    storage = DurableLogStorage(args.data, cluster_id=args.cluster_id, sync=args.sync) \
        if args.data else None
    # the transport above is built here, so the transport timeouts only need to be valid
    config = ClusterConfig(member_id=args.id, tick_ms=args.tick_ms,
                           election_timeout_ms_lower=args.election_ms,
                           election_timeout_ms_upper=args.election_ms * 2, standby=args.standby,
                           failure_dead_ms=args.failure_dead_ms, listen=args.listen,
                           cluster_id=args.cluster_id, peers=peers, cold_start=not args.join,
                           request_timeout_ms=min(100.0, args.election_ms),
                           connect_timeout_ms=min(50.0, args.election_ms))
    machine_class = CountLog if args.state == "count" else ItemLog
    machine = machine_class(compaction="sequential", snapshot_entries=args.snapshot_entries)
    cluster = RaftCluster(config, transport=transport, storage=storage, state_machine=machine)
    await cluster.start()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    answer = await handle(cluster, json.loads(line), _mode(args))
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

    host, _, port = args.control.rpartition(":")
    server = await asyncio.start_server(client, host, int(port))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyraft.cluster.process")
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--listen", required=True, help="HOST:PORT for members")
    parser.add_argument("--control", default="127.0.0.1:0", help="HOST:PORT for the control")
    parser.add_argument("--peers", default="", help="ID=HOST:PORT,... of the initial members")
    parser.add_argument("--data", default=None, help="data directory (default: in memory)")
    parser.add_argument("--sync", default="always", choices=["always", "interval", "never"])
    parser.add_argument("--cluster-id", type=int, default=1)
    parser.add_argument("--tick-ms", type=float, default=10.0)
    parser.add_argument("--election-ms", type=float, default=150.0)
    parser.add_argument("--join", action="store_true", help="wait to be added by the leader")
    parser.add_argument("--standby", action="store_true", help="replicate, never lead")
    parser.add_argument("--failure-dead-ms", type=float, default=0.0,
                        help="remove voters judged dead this long (0: off)")
    parser.add_argument("--state", default="items", choices=["items", "count"],
                        help="keep every item (tests) or only a count (benchmarks)")
    parser.add_argument("--snapshot-entries", type=int, default=50_000,
                        help="applied entries between two snapshots")
    parser.add_argument("--cert"), parser.add_argument("--key"), parser.add_argument("--ca")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format=f"%(asctime)s member {args.id} %(name)s %(message)s")
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args))
    else:
        uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
