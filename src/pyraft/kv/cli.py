"""``pyraft kv``, ``pyraft status`` and ``pyraft member``: the command-line client of the
key-value service.

    pyraft kv put KEY VALUE --cluster http://127.0.0.1:8001,http://127.0.0.1:8002
    pyraft kv get KEY [--consistency barrier|lease|local]
    pyraft kv delete KEY
    pyraft kv cas KEY EXPECTED NEW      (EXPECTED "-" means: the key is absent)
    pyraft status [--cluster URL[,URL...]]
    pyraft member list | add ID ADDRESS [--http-address HOST:PORT] | remove ID

Every client command builds its client with :func:`add_client_arguments` and
:func:`client_from_args`: ``--cluster`` (default: ``$PYRAFT_CLUSTER``), ``--timeout`` (the
whole command's deadline) and ``--json``; options may come before or after the command's
arguments. Output is for people by default and JSON with ``--json``; the exit statuses are
:data:`EXIT_STATUSES`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import textwrap
import time
from collections.abc import Callable

from pyraft.argtypes import positive_int, positive_seconds
from pyraft.errors import ConfigError
from pyraft.kv.client import InvalidURLError, KVClient, KVClientError, RequestError
from pyraft.kv.security import add_client_security_arguments, client_security

__all__ = ["CLUSTER_VARIABLE", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_NEGATIVE", "EXIT_OK",
           "EXIT_USAGE", "TIMEOUT_DEFAULT_S", "add_client_arguments", "add_kv_arguments",
           "add_member_arguments", "add_status_arguments", "client_from_args", "run_kv",
           "run_member", "run_status"]

#: the environment variable that gives ``--cluster`` when the flag is absent
CLUSTER_VARIABLE = "PYRAFT_CLUSTER"
#: default of ``--timeout``: the whole command's deadline, in seconds
TIMEOUT_DEFAULT_S = 5.0
#: retries allowed within the deadline (a bound on the loop; the deadline ends it first)
RETRIES_MAX = 1000

EXIT_OK = 0
#: the cluster did not answer within ``--timeout``, or refused the operation
EXIT_FAILED = 1
#: a usage error: a bad flag, URL or key, no ``--cluster``
EXIT_USAGE = 2
#: a negative answer: ``kv get`` of an absent key, ``kv cas`` that did not apply
EXIT_NEGATIVE = 3
#: interrupted by Ctrl+C (SIGINT), as shells report it
EXIT_INTERRUPTED = 130

EXIT_STATUSES = f"""exit status:
  {EXIT_OK}  success
  {EXIT_FAILED}  the cluster did not answer within --timeout (the error names each URL tried
     and its last error: connection refused, DNS failure, timed out, HTTP status), or it
     refused the operation; for status: a member did not answer (its row says why)
  {EXIT_USAGE}  usage error: a bad option, URL or key, or no --cluster / ${CLUSTER_VARIABLE}
  {EXIT_NEGATIVE}  negative answer: kv get of an absent key (nothing is printed), kv cas
     that did not apply
  {EXIT_INTERRUPTED}  interrupted (Ctrl+C)"""

VALUES = """values: printed as UTF-8 text; a value that is not UTF-8 is printed as
"base64:" followed by its base64 form. With --json a value is {"value": TEXT,
"encoding": "utf-8" | "base64"}, null when absent."""


#: the type of a member id argument
_member_id = positive_int("a member id")


class _UsageError(Exception):
    """An operator's mistake on the command line: one line, exit status 2."""


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options every client command takes: ``--cluster``, ``--timeout``, ``--json``.

    Their defaults are suppressed so that the options can be given on a command and on its
    subcommand (``pyraft kv --json get k`` and ``pyraft kv get k --json``) without one
    clobbering the other; :func:`client_from_args` and :func:`_option` apply the defaults."""
    group = parser.add_argument_group("client options")
    group.add_argument("--cluster", default=argparse.SUPPRESS, metavar="URL[,URL...]",
                       help="HTTP API URLs of one or more members, http://HOST:PORT or "
                            f"HOST:PORT (default: ${CLUSTER_VARIABLE})")
    group.add_argument("--timeout", type=positive_seconds, default=argparse.SUPPRESS,
                       metavar="SECONDS",
                       help="deadline of the whole command: attempts, retries with "
                            "jittered exponential backoff and redirects all end by then; one "
                            "exchange with one member takes at most half of it, leaving time "
                            f"to try another (default {TIMEOUT_DEFAULT_S:g})")
    group.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help="print JSON for machines instead of text for people")
    add_client_security_arguments(parser, repeatable=True)


def _option(args: argparse.Namespace, name: str):
    defaults = {"cluster": None, "timeout": TIMEOUT_DEFAULT_S, "json": False}
    return getattr(args, name, defaults[name])


def cluster_urls(args: argparse.Namespace) -> list[str]:
    """The URLs of ``--cluster``, else of ``$PYRAFT_CLUSTER``; a usage error when neither."""
    text = _option(args, "cluster")
    source = "--cluster"
    if text is None:
        text, source = os.environ.get(CLUSTER_VARIABLE), CLUSTER_VARIABLE
    if text is None or not text.strip():
        raise _UsageError(f"no cluster: give --cluster URL[,URL...] or set {CLUSTER_VARIABLE}")
    urls = [url.strip() for url in text.split(",") if url.strip()]
    if not urls:
        raise _UsageError(f"{source}: no URL in {text}")
    return urls


def client_from_args(args: argparse.Namespace, **options) -> KVClient:
    """The :class:`KVClient` the options of :func:`add_client_arguments` describe; a usage
    error (``InvalidURLError``, ``ValueError``) names the bad URL. ``options`` go to
    ``KVClient`` and override the defaults (``retries=``, ...)."""
    deadline = _option(args, "timeout")
    try:
        context, token = client_security(args)
    except ConfigError as error:
        raise _UsageError(str(error)) from None
    settings = {"timeout_s": max(deadline / 2, 0.05), "deadline_s": deadline,
                "retries": RETRIES_MAX, "ssl": context, "token": token, **options}
    try:
        return KVClient(cluster_urls(args), **settings)
    except InvalidURLError as error:
        raise _UsageError(f"--cluster: {error}") from None


# ---- parsers -------------------------------------------------------------------------------
def _leaf(operations, name: str, help: str, description: str | None = None):
    parser = operations.add_parser(name, help=help,
                                   description=textwrap.fill(description or help, 79),
                                   epilog=EXIT_STATUSES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_client_arguments(parser)
    return parser


def _with_epilog(parser: argparse.ArgumentParser, text: str) -> None:
    parser.epilog = text
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def add_kv_arguments(parser: argparse.ArgumentParser) -> None:
    _with_epilog(parser, EXIT_STATUSES + "\n\n" + VALUES)
    add_client_arguments(parser)
    operations = parser.add_subparsers(dest="operation", required=True, metavar="OPERATION")
    get = _leaf(operations, "get", "print the value of a key")
    get.add_argument("key", help="the key (UTF-8, without '/')")
    get.add_argument("--consistency", choices=["barrier", "lease", "local"], default="barrier",
                     help="barrier: linearizable on any member (default); lease: "
                          "linearizable on the leader under a lease; local: this member's "
                          "state, may be stale")
    put = _leaf(operations, "put", "set a key to a value")
    put.add_argument("key", help="the key (UTF-8, without '/')")
    put.add_argument("value", help="the value, stored as UTF-8")
    delete = _leaf(operations, "delete", "remove a key")
    delete.add_argument("key", help="the key (UTF-8, without '/')")
    cas = _leaf(operations, "cas", "compare-and-set: set a key to NEW if it holds EXPECTED")
    cas.add_argument("key", help="the key (UTF-8, without '/')")
    cas.add_argument("expected", help='the current value, or "-" for an absent key')
    cas.add_argument("new", help="the value to set")
    for leaf in (get, put, delete, cas):
        leaf.epilog = EXIT_STATUSES + "\n\n" + VALUES


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = textwrap.fill(
        "One row per member: id, Raft address, HTTP address, role, term, commit and applied "
        "indexes, lag behind the leader (from the leader's view) and any storage or "
        "connection error. The members are discovered from the status of the given URLs; a "
        "member that does not answer is a row with the error.", 79)
    _with_epilog(parser, EXIT_STATUSES)
    add_client_arguments(parser)


def add_member_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "List, add or remove the members of the cluster (through the leader)."
    _with_epilog(parser, EXIT_STATUSES)
    add_client_arguments(parser)
    actions = parser.add_subparsers(dest="member_command", required=True, metavar="ACTION")
    _leaf(actions, "list", "the members: id, addresses, voter or learner, leader")
    add = _leaf(actions, "add", "add a member whose process runs and waits to join",
                "Add a member through the leader, which warms it up and promotes it to "
                "voter once it caught up. The member's process must be running and not "
                "bootstrap a cluster of its own: pyraft node --peers (the existing members) "
                "--config FILE with cold_start = false (pyraft node --join URL announces "
                "itself instead). Give a --timeout long enough for its catch-up.")
    add.add_argument("id", type=_member_id, help="the new member's id (an integer >= 1)")
    add.add_argument("address", help="HOST:PORT where the members reach its Raft transport")
    add.add_argument("--http-address", default=None, metavar="HOST:PORT",
                     help="its HTTP API address (metadata \"http\": followers redirect to it "
                          "and pyraft status asks it)")
    add.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE",
                     help="more metadata for the member (repeatable)")
    remove = _leaf(actions, "remove", "remove a member (the leader included)")
    remove.add_argument("id", type=_member_id, help="the id of the member to remove")


# ---- running -------------------------------------------------------------------------------
def _run(command: str, args: argparse.Namespace,
         work: Callable[[argparse.Namespace], int]) -> int:
    """Run ``work``; operator mistakes and failures end in one line on stderr."""
    try:
        return work(args)
    except _UsageError as error:
        print(f"pyraft {command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except RequestError as error:
        if error.status == 400:
            print(f"pyraft {command}: the request was refused: {error}", file=sys.stderr)
            return EXIT_USAGE
        print(f"pyraft {command}: the cluster refused: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KVClientError as error:
        print(f"pyraft {command}: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"pyraft {command}: interrupted (a write's outcome is unknown)", file=sys.stderr)
        return EXIT_INTERRUPTED


def _encoded(value: bytes | None) -> dict:
    if value is None:
        return {"value": None}
    try:
        return {"value": value.decode("utf-8"), "encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"value": base64.b64encode(value).decode("ascii"), "encoding": "base64"}


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode("ascii")


def _check_key(key: str) -> None:
    if not key or "/" in key:
        raise _UsageError(f"key {key}: a key is a non-empty string without '/'")


def run_kv(args: argparse.Namespace) -> int:
    return _run("kv", args, _kv)


def _kv(args: argparse.Namespace) -> int:
    _check_key(args.key)
    client = client_from_args(args)
    code, answer, human = asyncio.run(_kv_call(client, args))
    if _option(args, "json"):
        print(json.dumps(answer))
    elif human is not None:
        print(human)
    return code


async def _kv_call(client: KVClient, args: argparse.Namespace):
    async with client:
        if args.operation == "get":
            value = await client.get(args.key, consistency=args.consistency)
            return ((EXIT_OK, {"key": args.key, **_encoded(value)}, _text(value))
                    if value is not None else (EXIT_NEGATIVE, {"key": args.key, "value": None},
                                               None))
        if args.operation == "put":
            previous = await client.put(args.key, args.value)
            return EXIT_OK, {"key": args.key, "previous": _encoded(previous)}, "OK"
        if args.operation == "delete":
            removed = await client.delete(args.key)
            return (EXIT_OK, {"key": args.key, "deleted": removed is not None,
                              "removed": _encoded(removed)},
                    "deleted" if removed is not None else "absent: nothing deleted")
        expected = None if args.expected == "-" else args.expected
        ok, current = await client.cas(args.key, expected, args.new)
        answer = {"key": args.key, "ok": ok, **_encoded(current)}
        if ok:
            return EXIT_OK, answer, "OK"
        now = "the key is absent" if current is None else f"the value is {_text(current)}"
        return EXIT_NEGATIVE, answer, f"not applied: {now}"


# ---- status --------------------------------------------------------------------------------
def run_status(args: argparse.Namespace) -> int:
    return _run("status", args, _status)


def _status(args: argparse.Namespace) -> int:
    client = client_from_args(args, retries=1)
    rows = asyncio.run(_status_rows(client))
    if _option(args, "json"):
        print(json.dumps({"members": rows}, indent=2))
    else:
        print(_table(["ID", "RAFT ADDRESS", "HTTP ADDRESS", "ROLE", "TERM", "COMMIT",
                      "APPLIED", "LAG", "ERROR"],
                     [[row["id"], row["address"], row["http"], row["role"], row["term"],
                       row["commit"], row["applied"], row["lag"], row["error"]]
                      for row in rows]))
    return EXIT_OK if rows and all(row["error"] is None for row in rows) else EXIT_FAILED


def _host_port(url: str) -> str:
    return url.split("://", 1)[1]


async def _status_rows(client: KVClient) -> list[dict]:
    """Ask the given URLs, then every member their answers name, in parallel rounds, all
    within the client's deadline (the command's ``--timeout``)."""
    answers: dict[str, dict | str] = {}  # host:port -> its status, or why there is none
    end = time.monotonic() + (client.deadline_s or TIMEOUT_DEFAULT_S)

    async def ask(url: str) -> None:
        left = end - time.monotonic()
        if left < 0.01:
            answers[_host_port(url)] = "not asked: the deadline passed"
            return
        try:
            status = await client.status(url, deadline_s=left)
        except KVClientError as error:
            tried = getattr(error, "tried", {})
            answers[_host_port(url)] = tried.get(url) or str(error)
            return
        answers[_host_port(url)] = status if isinstance(status.get("id"), int) \
            else "the answer is not a member's status"

    async with client:
        pending = list(dict.fromkeys(client.urls))
        scheme = client.urls[0].split("://")[0]
        for _ in range(8):  # rounds of discovery (each finds members named by the last)
            for url in pending:  # the rows of unknown URLs keep the order given
                answers.setdefault(_host_port(url), "not asked")
            await asyncio.gather(*(ask(url) for url in pending))
            asked = {_host_port(url) for url in client.urls} | set(answers)
            named = {member.get("http") for status in _statuses(answers)
                     for member in status.get("members", [])}
            pending = [f"{scheme}://{http}" for http in sorted(named - asked - {None})]
            if not pending:
                break
    return _rows(answers)


def _statuses(answers: dict[str, dict | str]) -> list[dict]:
    return [answer for answer in answers.values() if isinstance(answer, dict)]


def _rows(answers: dict[str, dict | str]) -> list[dict]:
    """One row per member any answer names (and per given URL that answered nothing)."""
    statuses = _statuses(answers)
    members: dict[int, dict] = {}  # id -> its membership entry, merged from every answer
    for status in statuses:
        members.setdefault(status["id"], {})
        for member in status.get("members", []):
            members.setdefault(member["id"], {}).update(
                {k: v for k, v in member.items() if v is not None})
    leaders = [s for s in statuses if s.get("role") == "leader"]
    leader = max(leaders, key=lambda s: s.get("term", 0)) if leaders else None
    lags = {m["id"]: m.get("lag") for m in (leader or {}).get("members", [])}
    rows, seen = [], set()
    for member_id in sorted(members):
        member = members[member_id]
        own = next((s for s in statuses if s.get("id") == member_id), None)
        http = member.get("http")
        error = None
        if own is None:
            answer = answers.get(http) if http else None
            error = answer if isinstance(answer, str) else (
                "HTTP address unknown" if not http else "not asked")
        else:
            error = own.get("storage_error") or own.get("fatal_error")
            for address, answer in answers.items():
                if answer is own:
                    http = http or address
                    seen.add(address)
        if http:
            seen.add(http)
        role = own.get("role") if own else None
        if role == "follower" and member.get("voter") is False:
            role = "learner"
        rows.append({
            "id": member_id, "address": member.get("address"), "http": http, "role": role,
            "term": own.get("term") if own else None,
            "commit": own.get("commit") if own else None,
            "applied": own.get("applied") if own else None,
            "lag": lags.get(member_id), "voter": member.get("voter"), "error": error,
        })
    for address, answer in answers.items():  # a given URL that answered nothing
        if address not in seen and isinstance(answer, str):
            rows.append({"id": None, "address": None, "http": address, "role": None,
                         "term": None, "commit": None, "applied": None, "lag": None,
                         "voter": None, "error": answer})
    return rows


def _table(header: list[str], rows: list[list]) -> str:
    cells = [header] + [["-" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in cells)


# ---- member --------------------------------------------------------------------------------
def run_member(args: argparse.Namespace) -> int:
    return _run("member", args, _member)


def _member(args: argparse.Namespace) -> int:
    metadata = {}
    if args.member_command == "add":
        for item in args.metadata:
            key, equals, value = item.partition("=")
            if not equals or not key:
                raise _UsageError(f"--metadata {item}: give KEY=VALUE")
            metadata[key] = value
        if args.http_address is not None:
            metadata["http"] = args.http_address
    client = client_from_args(args)
    answer, human = asyncio.run(_member_call(client, args, metadata))
    if _option(args, "json"):
        print(json.dumps(answer, indent=2))
    else:
        print(human)
    return EXIT_OK


async def _member_call(client: KVClient, args: argparse.Namespace, metadata: dict):
    async with client:
        if args.member_command == "add":
            answer = await client.add_member(args.id, args.address, metadata)
            already = " (it was a voter already)" if answer.get("already") else ""
            return ({"id": args.id, "address": args.address, "metadata": metadata, **answer},
                    f"member {args.id} added at {args.address}{already}")
        if args.member_command == "remove":
            answer = await client.remove_member(args.id)
            return {"id": args.id, **answer}, f"member {args.id} removed"
        status = await client.status()
        members = [{"id": m["id"], "address": m.get("address"), "http": m.get("http"),
                    "voter": m.get("voter"), "leader": m["id"] == status.get("leader"),
                    "metadata": m.get("metadata") or {}}
                   for m in status.get("members", [])]
        table = _table(["ID", "RAFT ADDRESS", "HTTP ADDRESS", "KIND", "LEADER"],
                       [[m["id"], m["address"], m["http"],
                         "voter" if m["voter"] else "learner", "*" if m["leader"] else ""]
                        for m in members])
        return {"leader": status.get("leader"), "members": members}, table
