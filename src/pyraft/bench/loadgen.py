"""The client-path load generator: ``python -m pyraft.bench.loadgen --urls URL,... [options]``.

``--api http`` (the default) drives the HTTP API with raw aiohttp requests, as below;
``--api kvclient`` drives the members' binary client protocol (``pyraft node --client``,
``--urls pyraft://HOST:PORT,...``) through one :class:`pyraft.kv.KVClient`, as an application
does: ``--inflight`` concurrent ``put`` calls (the client's pool holds one session per write in
flight, so every write is exactly-once), closed-loop or open-loop. The client follows the
leader itself (redirects, retries); a call that fails counts as an error. It prints the same
JSON line, with api "kvclient". Given HTTP URLs, ``--api kvclient`` measures KVClient over the
HTTP API instead (api "kvclient-http"): ``--inflight`` clients, since an HTTP client runs one
write at a time (its one session).

Runs in its own process so the client does not share the leader's CPU. It finds the leader
through ``GET /v1/status``, opens one session per in-flight slot (``POST /v1/sessions``) and
then sends ``PUT /v1/kv/bench-<slot>`` with ``X-Client-Id`` / ``X-Request-Seq`` (exactly-once
writes), closed-loop with ``--inflight`` outstanding requests or open-loop at ``--rate``
(:mod:`pyraft.bench.load`). A write counts when the leader answers 200 or 204; anything else
is an error. A load follows the leader: after a failed write (a redirect, 503, a refused
connection) it finds the leader again through ``/v1/status`` (one search at a time) and goes
on there; the sessions are replicated, so they hold on the new leader. It prints one JSON
line: a result of :mod:`pyraft.bench.stats` with api "http", with ``leader_changes`` (the
leader's term at the end minus at the start: the elections during the load).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pyraft
from pyraft.bench.load import Observations, run_load, warmup_s
from pyraft.bench.stats import make_result

#: how long a load's end waits for a leader to count the leader changes: a cluster that lost
#: its leader near the end, on a loaded host, may take seconds to elect the next one
FINAL_LEADER_WAIT_S = 20.0


class HttpStatusError(RuntimeError):
    """The member answered a status other than 200/204 to a write."""


async def measured_load(unit: Callable[[], Awaitable[object]],
                        args: argparse.Namespace) -> Observations:
    """``unit`` run as ``args`` say, after a discarded warm-up of the same shape
    (``pyraft.bench.load.warmup_s``, as before the engine's loads and the peers')."""
    await run_load(unit, inflight=args.inflight, rate=args.rate,
                   duration_s=warmup_s(args.duration_s), outstanding_max=args.inflight)
    return await run_load(unit, inflight=args.inflight, rate=args.rate,
                          duration_s=args.duration_s, outstanding_max=args.inflight)


async def find_leader(session, urls: list[str], timeout_s: float = 20.0) -> str:
    """The base URL of the member that says it leads, polled until ``timeout_s``."""
    return (await find_leader_status(session, urls, timeout_s))[0]


async def find_leader_status(session, urls: list[str], timeout_s: float = 20.0
                             ) -> tuple[str, dict]:
    """The base URL and the status of the member that says it leads; of two that say so
    (a deposed leader that has not heard of its successor yet), the one of the higher
    term."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        leaders: list[tuple[int, str, dict]] = []
        for url in urls:
            try:
                async with session.get(f"{url}/v1/status") as response:
                    status = await response.json()
            except (OSError, asyncio.TimeoutError, ValueError):
                continue
            except Exception as error:  # aiohttp's client errors
                if type(error).__module__.startswith("aiohttp"):
                    continue
                raise
            if status.get("role") == "leader":
                leaders.append((int(status.get("term", 0)), url, status))
        if leaders:
            _, url, status = max(leaders, key=lambda found: found[0])
            return url, status
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no member of {urls} led within {timeout_s} s")


async def run_kvclient(args: argparse.Namespace) -> dict:
    """The load through one KVClient over the binary protocol."""
    from pyraft.kv.client import KVClient

    urls = [u if "://" in u else f"pyraft://{u}" for u in args.urls.split(",") if u]
    over_http = not urls[0].startswith("pyraft://")
    # a binary client runs writes concurrently on its pool of sessions; an HTTP one has one
    # session and runs one write at a time: as many clients as writes in flight
    clients = [KVClient(urls, timeout_s=args.request_timeout_s, retries=20,
                        sessions_max=args.inflight)
               for _ in range(args.inflight if over_http else 1)]
    async with contextlib.AsyncExitStack() as stack:
        for kv in clients:
            await stack.enter_async_context(kv)
        first = await _kv_status(clients[0], timeout_s=20.0)
        payload = b"x" * args.size
        # open the sessions before measuring (one per write in flight)
        await asyncio.gather(*(clients[slot % len(clients)].put(f"bench-{slot}", payload)
                               for slot in range(args.inflight)))
        free = list(range(args.inflight))

        async def unit() -> None:
            slot = free.pop()
            try:
                await clients[slot % len(clients)].put(f"bench-{slot}", payload)
            finally:
                free.append(slot)

        seen = await measured_load(unit, args)
        leader_changes: int | None
        try:
            last = await _kv_status(clients[0], timeout_s=FINAL_LEADER_WAIT_S)
            leader_changes = int(last["term"]) - int(first["term"])
        except TimeoutError:
            leader_changes = None
    return _result(args, "kvclient-http" if over_http else "kvclient", len(urls), seen,
                   leader_changes)


async def _kv_status(kv, timeout_s: float) -> dict:
    """The status of the member that leads (asked of each until one says so)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for url in kv.urls:
            try:
                status = await kv.status(url, deadline_s=1.0)
            except Exception:  # not up yet, or gone: ask the next
                continue
            if status.get("role") == "leader":
                return status
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no member of {kv.urls} led within {timeout_s} s")


def _result(args: argparse.Namespace, api: str, members: int, seen, leader_changes) -> dict:
    workload = {"kind": "closed" if args.rate is None else "open", "api": api,
                "size": args.size, "inflight": args.inflight, "rate": args.rate,
                "duration_s": args.duration_s, "members": members, "batch": 1,
                "operation": "write"}
    notes = "" if seen.first_error is None else f"first error: {seen.first_error}"
    result = make_result(system="pyraft", version=pyraft.__version__, mode=args.mode,
                         workload=workload, writes=seen.writes, errors=seen.errors,
                         elapsed_s=seen.elapsed_s, latencies_s=seen.latencies_s,
                         done_at_s=seen.done_at_s, notes=notes)
    result["leader_changes"] = leader_changes
    return result


async def run(args: argparse.Namespace) -> dict:
    if getattr(args, "api", "http") == "kvclient":
        return await run_kvclient(args)
    import aiohttp

    urls = [u if u.startswith("http") else f"http://{u}" for u in args.urls.split(",") if u]
    connector = aiohttp.TCPConnector(limit=args.inflight + 4)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        leader, first = await find_leader_status(session, urls)
        current: dict[str, Any] = {"url": leader, "generation": 0}
        searching = asyncio.Lock()
        sessions = []
        for _ in range(args.inflight):
            async with session.post(f"{leader}/v1/sessions") as response:
                if response.status != 200:
                    raise HttpStatusError(f"opening a session: HTTP {response.status}")
                sessions.append([int((await response.json())["client_id"]), 0])
        payload = b"x" * args.size
        free = list(range(args.inflight))

        async def follow(generation: int) -> None:
            """Find the leader again after a failed write (once per failure generation)."""
            async with searching:
                if current["generation"] != generation:
                    return  # another writer found it meanwhile
                try:
                    current["url"] = await find_leader(session, urls, timeout_s=5.0)
                except TimeoutError:
                    pass  # keep the last one; the next failure searches again
                current["generation"] += 1

        async def unit() -> None:
            slot = free.pop()  # a session has one request outstanding at a time
            generation, url = current["generation"], current["url"]
            try:
                client = sessions[slot]
                client[1] += 1
                headers = {"X-Client-Id": str(client[0]), "X-Request-Seq": str(client[1])}
                async with session.put(f"{url}/v1/kv/bench-{slot}", data=payload,
                                       headers=headers, allow_redirects=False) as response:
                    await response.read()
                    if response.status not in (200, 204):
                        raise HttpStatusError(f"HTTP {response.status}")
            except Exception:
                await follow(generation)
                raise
            finally:
                free.append(slot)

        seen = await measured_load(unit, args)
        leader_changes: int | None
        try:
            _, last = await find_leader_status(session, urls, timeout_s=FINAL_LEADER_WAIT_S)
            leader_changes = int(last["term"]) - int(first["term"])
        except TimeoutError:
            leader_changes = None  # no leader at the end: not known
    return _result(args, "http", len(urls), seen, leader_changes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyraft.bench.loadgen",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--urls", required=True,
                        help="the members' addresses, comma list: HTTP URLs (--api http) or "
                             "pyraft://HOST:PORT (--api kvclient)")
    parser.add_argument("--api", choices=("http", "kvclient"), default="http",
                        help="http: raw HTTP requests (default); kvclient: one KVClient over "
                             "the binary client protocol")
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--inflight", type=int, default=16)
    parser.add_argument("--rate", type=float, default=None, help="open loop: writes/s")
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--request-timeout-s", type=float, default=10.0)
    parser.add_argument("--mode", default="durable (fdatasync)", help="reported as is")
    args = parser.parse_args(argv)
    if args.inflight < 1 or args.size < 0 or args.duration_s <= 0:
        parser.error("--inflight must be >= 1, --size >= 0, --duration-s > 0")
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(args))
    else:
        result = uvloop.run(run(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
