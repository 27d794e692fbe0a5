"""``pyraft playground``: a local key-value cluster on 127.0.0.1 in one command.

Starts N ``pyraft node`` processes (:class:`pyraft.testing.processes.KVNode`; Raft between
them over TCP, or TLS with ``--transport tls`` and throw-away certificates; durable logs and
the key-value state in SQLite (``pyraft node --state sqlite``, a disk state machine) in a
temporary directory, or everything in memory with ``--memory``), each serving the key-value
HTTP API (over HTTPS with ``--transport tls``, with the same throw-away CA; the playground's
client trusts it). Every member accepts the admin token the playground writes to
``admin-token`` in its directory (mode 600), so the membership endpoints can be tried with
``--admin-token-file``. It then writes a key every ``--interval`` seconds through the Python
client and prints what happens: elections, the leader, commit and applied indexes per
member, and the URLs to try ``pyraft kv`` or curl on.
With ``--chaos S`` it kills the leader with SIGKILL every S seconds and restarts it from its
data directory, so failover and recovery can be watched. Ctrl+C (or ``--duration``) stops
every process it started and removes the temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterable

from pyraft.argtypes import positive_seconds
from pyraft.errors import ConfigError
from pyraft.kv.client import KVClient, KVClientError
from pyraft.kv.security import client_ssl_context, write_token_file
from pyraft.testing.processes import KVNode, TlsFiles, free_port

#: entries between two flushes of a durable member's store: small, so a demo sees them
PLAYGROUND_SNAPSHOT_ENTRIES = 20
#: the most members a playground starts (each is a process on this machine)
MEMBERS_MAX = 9


def _members(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a number of members") from None
    if not 1 <= value <= MEMBERS_MAX:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MEMBERS_MAX}, not {value}")
    return value


def _tls_files(directory: str, members: Iterable[int]) -> dict[int, TlsFiles]:
    """Throw-away certificates: one CA, and per member a certificate naming 127.0.0.1 and the
    member's identity (``member-<id>.pyraft``, checked at every connection)."""
    try:
        import trustme
    except ImportError as exc:
        raise ConfigError("--transport", "tls needs the trustme package to make throw-away "
                                         "certificates: pip install trustme") from exc
    from pyraft.transport.tcp import member_identity

    ca = trustme.CA()
    ca_path = f"{directory}/ca.pem"
    ca.cert_pem.write_to_path(ca_path)
    files = {}
    for member in members:
        cert = ca.issue_cert("127.0.0.1", member_identity(member))
        paths = (f"{directory}/member{member}.pem", f"{directory}/member{member}.key", ca_path)
        cert.cert_chain_pems[0].write_to_path(paths[0])
        cert.private_key_pem.write_to_path(paths[1])
        files[member] = paths
    return files


async def _status(client: KVClient, node: KVNode) -> dict | None:
    if not node.alive:
        return None
    try:
        return await asyncio.wait_for(client.status(node.url), 1.0)
    except (KVClientError, OSError, asyncio.TimeoutError, ValueError):
        return None


async def _leader(client: KVClient, nodes: list[KVNode], timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node in nodes:
            status = await _status(client, node)
            if status is not None and status["role"] == "leader":
                return status
        await asyncio.sleep(0.05)
    raise SystemExit("no leader was elected in time")


async def _run(args: argparse.Namespace, nodes: list[KVNode], stopping: asyncio.Event) -> int:
    started = time.monotonic()
    tls = nodes[0].tls
    context = None if tls is None else client_ssl_context(tls[2])
    async with KVClient([n.url for n in nodes], timeout_s=2.0, retries=40,
                        ssl=context) as client:
        status = await _leader(client, nodes)
        leader, term = status["id"], status["term"]
        print(f"member {leader} won the election for term {term} "
              f"({(time.monotonic() - started) * 1000:.0f} ms after the members started)",
              flush=True)
        print("try: python3 -m pyraft kv --cluster " + ",".join(n.url for n in nodes)
              + ("" if tls is None else f" --http-ca {tls[2]}") + " get playground",
              flush=True)
        written = 0
        next_chaos = time.monotonic() + args.chaos if args.chaos else None
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stopping.is_set() and (deadline is None or time.monotonic() < deadline):
            await client.put("playground", f"write {written}")
            written += 1
            statuses = {n.id: await _status(client, n) for n in nodes}
            current = next((s for s in statuses.values() if s and s["role"] == "leader"), None)
            if current is not None and (current["id"], current["term"]) != (leader, term):
                leader, term = current["id"], current["term"]
                print(f"leader is now member {leader} (term {term})", flush=True)
            applied = ", ".join(
                f"{m}:{s['applied']}" if s else f"{m}:down" for m, s in statuses.items())
            commit = current["commit"] if current else "?"
            print(f"put playground='write {written - 1}': commit {commit}, "
                  f"applied per member [{applied}]", flush=True)
            if next_chaos is not None and time.monotonic() >= next_chaos and current:
                victim = next(n for n in nodes if n.id == current["id"])
                print(f"chaos: SIGKILL member {victim.id} (the leader)", flush=True)
                killed_at = time.monotonic()
                victim.kill()
                new = await _leader(client, [n for n in nodes if n is not victim])
                print(f"member {new['id']} leads after "
                      f"{(time.monotonic() - killed_at) * 1000:.0f} ms; restarting member "
                      f"{victim.id} " + ("empty (in memory: it catches up from the leader)"
                                         if args.memory else "from its log"), flush=True)
                victim.start()
                next_chaos = time.monotonic() + args.chaos
            try:
                await asyncio.wait_for(stopping.wait(), args.interval)
            except asyncio.TimeoutError:
                pass
        value = await client.get("playground")
        last = "(none)" if value is None else value.decode("utf-8", "replace")
        print(f"stopping: {written} writes, last value {last}", flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    workdir = tempfile.mkdtemp(prefix="pyraft-playground-")
    nodes: list[KVNode] = []
    try:
        peers = {m: f"127.0.0.1:{free_port()}" for m in range(1, args.members + 1)}
        http = {m: f"127.0.0.1:{free_port()}" for m in peers}
        tls = _tls_files(workdir, peers) if args.transport == "tls" else None
        token_file = write_token_file(os.path.join(workdir, "admin-token"))
        print(f"admin token (membership changes): {token_file}", flush=True)
        for member in peers:
            data = None if args.memory else f"{workdir}/member{member}"
            node = KVNode(member, peers, http, data, tls[member] if tls else None, token_file,
                          snapshot_entries=PLAYGROUND_SNAPSHOT_ENTRIES)
            node.start()
            nodes.append(node)
            print(f"member {member}: raft on {peers[member]}, key-value API on {node.url}"
                  + ("" if data is None else f", data in {data}"), flush=True)

        async def main() -> int:
            stopping = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stopping.set)
            return await _run(args, nodes, stopping)

        return asyncio.run(main())
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--members", type=_members, default=3,
                        help=f"how many members, 1 to {MEMBERS_MAX} (default 3)")
    parser.add_argument("--memory", action="store_true", help="keep the logs in memory")
    parser.add_argument("--transport", choices=["tcp", "tls"], default="tcp",
                        help="between members: tcp (default), or mutual tls with "
                             "throw-away certificates (needs the trustme package; the HTTP "
                             "API is then HTTPS too)")
    parser.add_argument("--interval", type=positive_seconds, default=0.5,
                        help="seconds between writes (default 0.5)")
    parser.add_argument("--duration", type=positive_seconds, default=None,
                        help="stop after this many seconds (default: run until Ctrl+C)")
    parser.add_argument("--chaos", type=positive_seconds, default=None,
                        help="SIGKILL the leader every this many seconds, then restart it")
