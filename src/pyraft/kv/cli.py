"""``pyraft kv`` and ``pyraft status``: the command-line client of the key-value service.

    pyraft kv --cluster http://127.0.0.1:8001,http://127.0.0.1:8002 put KEY VALUE
    pyraft kv --cluster URL get KEY [--consistency barrier|lease|local]
    pyraft kv --cluster URL delete KEY
    pyraft kv --cluster URL cas KEY EXPECTED NEW      (EXPECTED "-" means: the key is absent)
    pyraft status --cluster URL [--json]

Output is for people by default and JSON with ``--json``. Exit status: 0 success, 1 a
negative answer (a missing key, a failed compare-and-set), 2 an error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from pyraft.client import KVClient, KVClientError


def add_kv_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", required=True, help="URL[,URL...] of members' HTTP APIs")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    operations = parser.add_subparsers(dest="operation", required=True)
    get = operations.add_parser("get")
    get.add_argument("key", help="the key to read")
    get.add_argument("--consistency", choices=["barrier", "lease", "local"], default="barrier",
                     help="barrier (default: linearizable), lease (the leader's lease) or local "
                          "(this member's state, maybe stale)")
    put = operations.add_parser("put")
    put.add_argument("key", help="the key to write")
    put.add_argument("value", help="its new value")
    delete = operations.add_parser("delete")
    delete.add_argument("key", help="the key to delete")
    cas = operations.add_parser("cas")
    cas.add_argument("key", help="the key to compare and set")
    cas.add_argument("expected", help='the current value, or "-" for an absent key')
    cas.add_argument("new", help="the value to write when the current one is expected")


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", required=True, help="URL[,URL...] of members' HTTP APIs")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.hex()


async def _kv(args) -> tuple[int, dict]:
    urls = args.cluster.split(",")
    async with KVClient(urls, timeout_s=args.timeout) as client:
        if args.operation == "get":
            value = await client.get(args.key, consistency=args.consistency)
            return (0 if value is not None else 1), {"key": args.key, "value": _text(value)}
        if args.operation == "put":
            previous = await client.put(args.key, args.value)
            return 0, {"key": args.key, "previous": _text(previous)}
        if args.operation == "delete":
            removed = await client.delete(args.key)
            return 0, {"key": args.key, "removed": _text(removed)}
        expected = None if args.expected == "-" else args.expected
        ok, current = await client.cas(args.key, expected, args.new)
        return (0 if ok else 1), {"key": args.key, "ok": ok, "value": _text(current)}


async def _status(args) -> dict:
    urls = args.cluster.split(",")
    async with KVClient(urls) as client:
        return await client.status()


def run_kv(args) -> int:
    try:
        code, answer = asyncio.run(_kv(args))
    except (KVClientError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(answer))
    elif args.operation == "get":
        print(answer["value"] if answer["value"] is not None else "(absent)")
    elif args.operation == "cas":
        print(("ok" if answer["ok"] else "not changed") + f", value {answer['value']!r}")
    else:
        print("ok")
    return code


def run_status(args) -> int:
    try:
        status = asyncio.run(_status(args))
    except (KVClientError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"member {status['id']} ({status['role']}), term {status['term']}, leader "
          f"{status['leader']} at {status.get('leader_http')}, commit {status['commit']}, "
          f"applied {status['applied']}")
    for member in status.get("members", []):
        lag = member.get("lag")
        print(f"  member {member['id']}: {member.get('address')} http {member.get('http')}"
              f"{' voter' if member.get('voter') else ' learner'}"
              + (f", match {member.get('match')}, lag {lag}" if lag is not None else ""))
    return 0
