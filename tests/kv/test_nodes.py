"""End to end through real ``pyraft node`` processes and the HTTP API on 127.0.0.1: writes on
any member (redirected to the leader), reads at each consistency, SIGKILL of the leader during
writes with client retries and no duplicate application, restart from the data directory."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

from pyraft.kv.client import KVClient
from pyraft.kv.security import write_token_file
from pyraft.testing.processes import free_port


def start_node(member, peers, http, data, *extra):
    args = [sys.executable, "-m", "pyraft", "node", "--id", str(member), "--listen",
            peers[member], "--http", http[member], "--data", str(data),
            "--peers", ",".join(f"{m}={a}" for m, a in peers.items()),
            "--http-peers", ",".join(f"{m}={a}" for m, a in http.items()),
            "--log-level", "WARNING", *extra]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(process, sig=signal.SIGTERM):
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
    process.stderr.close()


async def wait_ready(urls, timeout=15.0):
    deadline = time.monotonic() + timeout
    async with KVClient(urls, timeout_s=1.0, retries=2) as client:
        while time.monotonic() < deadline:
            try:
                status = await client.status(urls[0])
                if status.get("leader"):
                    return
            except Exception:  # not up yet
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("no leader in time")


#: the read modes of GET, each checked in the same cluster (one start, one leader kill)
CONSISTENCIES = ("barrier", "lease", "local")


def test_nodes_serve_the_key_value_api(tmp_path):
    peers = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3)}
    http = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3)}
    processes = {m: start_node(m, peers, http, tmp_path / f"n{m}") for m in peers}
    urls = [f"http://{http[m]}" for m in (3, 2, 1)]  # start with a member that may follow
    try:
        asyncio.run(scenario(urls, processes, peers, http, tmp_path))
    finally:
        for process in processes.values():
            stop(process)


async def scenario(urls, processes, peers, http, tmp_path):
    await wait_ready(urls)
    async with KVClient(urls, timeout_s=2.0, retries=40) as client:
        for i in range(20):
            await client.put("counter", str(i))
        assert await client.cas("counter", "19", "20") == (True, b"20")
        assert await client.cas("counter", "19", "21") == (False, b"20")
        for consistency in CONSISTENCIES:
            assert await client.get("counter", consistency=consistency) in (
                (b"20",) if consistency != "local" else (b"20", b"19", None)), consistency
        # kill the leader while writing: the client retries with the same sequence number
        status = await client.status()
        leader = status["leader"]
        await client.put("chain", "0")

        async def chain():
            # compare-and-sets in a chain: a retry applied twice would make the next one fail
            for i in range(60):
                assert await client.cas("chain", str(i), str(i + 1)) == (
                    True, str(i + 1).encode())

        writing = asyncio.ensure_future(chain())
        await asyncio.sleep(0.1)
        processes[leader].send_signal(signal.SIGKILL)  # while the chain is being written
        processes[leader].wait(10)
        await writing
        assert await client.get("chain") == b"60"
        for i in range(10):
            await client.put(f"after{i}", str(i))
        # restart the killed member from its data directory; it catches up
        processes[leader].stderr.close()
        processes[leader] = start_node(leader, peers, http, tmp_path / f"n{leader}")
        async with KVClient([f"http://{http[leader]}"], timeout_s=2.0, retries=60) as direct:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    if await direct.get("after9") == b"9":
                        break
                except Exception:  # still starting
                    pass
                await asyncio.sleep(0.1)
            assert await direct.get("after9") == b"9"
            assert await direct.get("counter") == b"20"
            # the restarted member answers every read mode (through the leader for the
            # linearizable ones, from its own state for "local", which has caught up)
            for consistency in CONSISTENCIES:
                assert await direct.get("after9", consistency=consistency) == b"9", consistency


def test_the_command_line_client(tmp_path):
    peers = {1: f"127.0.0.1:{free_port()}"}
    http = {1: f"127.0.0.1:{free_port()}"}
    process = start_node(1, peers, http, tmp_path / "n1")
    url = f"http://{http[1]}"
    try:
        asyncio.run(wait_ready([url]))

        def cli(*args):
            return subprocess.run([sys.executable, "-m", "pyraft", *args], capture_output=True,
                                  text=True, timeout=60)

        assert cli("kv", "--cluster", url, "put", "color", "blue").returncode == 0
        got = cli("kv", "--cluster", url, "get", "color")
        assert (got.returncode, got.stdout.strip()) == (0, "blue")
        missing = cli("kv", "--cluster", url, "--json", "get", "nothing")
        assert missing.returncode == 3 and '"value": null' in missing.stdout
        assert cli("kv", "--cluster", url, "cas", "color", "red", "green").returncode == 3
        assert cli("kv", "--cluster", url, "cas", "color", "blue", "green").returncode == 0
        assert cli("kv", "--cluster", url, "cas", "shape", "-", "round").returncode == 0
        assert cli("kv", "--cluster", url, "delete", "shape").returncode == 0
        status = cli("status", "--cluster", url, "--json")
        assert status.returncode == 0 and '"role": "leader"' in status.stdout
        human = cli("status", "--cluster", url)
        assert human.stdout.splitlines()[1].split()[:4] == ["1", peers[1], http[1], "leader"]
        bad = cli("kv", "--cluster", "http://127.0.0.1:1", "--timeout", "0.2", "get", "x")
        assert bad.returncode == 1 and "connection refused" in bad.stderr
    finally:
        stop(process)


def test_a_node_joins_a_running_cluster(tmp_path):
    peers = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3)}
    http = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3, 4)}
    # membership changes need the admin credential: every member and the joiner share a token
    token = ("--admin-token-file", write_token_file(str(tmp_path / "admin-token")))
    processes = {m: start_node(m, peers, http, tmp_path / f"n{m}", *token) for m in peers}
    urls = [f"http://{http[m]}" for m in peers]
    try:
        asyncio.run(wait_ready(urls))
        joiner_peers = {**peers, 4: f"127.0.0.1:{free_port()}"}
        args = [sys.executable, "-m", "pyraft", "node", "--id", "4", "--listen",
                joiner_peers[4], "--http", http[4], "--data", str(tmp_path / "n4"),
                "--peers", ",".join(f"{m}={a}" for m, a in peers.items()),
                "--http-peers", ",".join(f"{m}={a}" for m, a in http.items()),
                "--join", urls[2], "--log-level", "WARNING", *token]
        processes[4] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        async def check():
            async with KVClient(urls, timeout_s=2.0, retries=40) as client:
                await client.put("before-join", "1")
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    status = await client.status()
                    voters = {m["id"] for m in status["members"] if m["voter"]}
                    if 4 in voters:
                        break
                    await asyncio.sleep(0.1)
                assert 4 in voters
                await client.put("after-join", "2")
            async with KVClient([f"http://{http[4]}"], timeout_s=2.0, retries=40) as direct:
                assert await direct.get("before-join") == b"1"
                assert await direct.get("after-join") == b"2"

        asyncio.run(check())
    finally:
        for process in processes.values():
            stop(process)
