"""Restarts the way operators do them, through real ``pyraft node`` processes on 127.0.0.1
started with the documented flags only: the membership a member was started with is durable
in its data directory, so a restart without ``--peers`` rejoins its cluster (it used to
bootstrap a one-member cluster of its own and acknowledge writes the cluster never saw), and
a restart with ``--peers`` that contradict the stored membership is refused with one line.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

from pyraft.kv.client import KVClient
from pyraft.kv.security import write_token_file
from pyraft.testing.processes import free_port
from tests.kv.test_nodes import stop as end


def node(member, listen, http, data, *extra):
    """``pyraft node`` exactly as the README shows it, plus ``extra`` flags."""
    args = [sys.executable, "-m", "pyraft", "node", "--id", str(member), "--listen", listen,
            "--http", http, "--data", str(data), "--log-level", "WARNING", *extra]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


async def status_of(url):
    async with KVClient([url], timeout_s=1.0, retries=0) as client:
        return await client.status(url)


async def wait_for_status(url, condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = await status_of(url)
            if condition(last):
                return last
        except Exception:  # not serving yet
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url}: condition not met in {timeout} s; last status {last}")


def cluster_addresses():
    peers = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3)}
    http = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3)}
    return peers, http


def peers_flag(peers):
    return ",".join(f"{m}={a}" for m, a in sorted(peers.items()))


def test_a_member_restarted_without_peers_rejoins_its_cluster(tmp_path):
    peers, http = cluster_addresses()
    processes = {m: node(m, peers[m], http[m], tmp_path / f"n{m}", "--peers", peers_flag(peers))
                 for m in peers}
    try:
        asyncio.run(_restart_without_peers(processes, peers, http, tmp_path))
    finally:
        for process in processes.values():
            end(process)


async def _restart_without_peers(processes, peers, http, tmp_path):
    urls = [f"http://{http[m]}" for m in (1, 2, 3)]
    first = await wait_for_status(urls[0], lambda s: s["leader"] and s["commit"] > 0)
    async with KVClient(urls, timeout_s=2.0, retries=40) as client:
        await client.put("before", "1")
    # SIGKILL a member that is not the leader, and restart it with no --peers at all
    victim = next(m for m in (3, 2, 1) if m != first["leader"])
    end(processes[victim], signal.SIGKILL)
    processes[victim] = node(victim, peers[victim], http[victim], tmp_path / f"n{victim}")
    url = f"http://{http[victim]}"
    status = await wait_for_status(url, lambda s: s["leader"] is not None)
    # it follows the cluster's leader in the stored three-member membership: it never led
    assert status["leader"] != victim and status["role"] != "leader"
    assert sorted(m["id"] for m in status["members"]) == [1, 2, 3]
    # a write through the restarted member reaches the cluster (redirected to the leader) and
    # every member holds it
    async with KVClient([url], timeout_s=2.0, retries=40) as client:
        await client.put("after", "2")
    async with KVClient(urls, timeout_s=2.0, retries=40) as client:
        for member in (1, 2, 3):
            value = None
            for _ in range(100):
                async with KVClient([f"http://{http[member]}"], timeout_s=2.0,
                                    retries=5) as one:
                    value = await one.get("after", consistency="local")
                if value == b"2":
                    break
                await asyncio.sleep(0.05)
            assert value == b"2", f"member {member} does not hold the write"
        assert await client.get("before") == b"1"


def test_a_restart_with_contradicting_peers_is_refused(tmp_path):
    peers, http = cluster_addresses()
    processes = {m: node(m, peers[m], http[m], tmp_path / f"n{m}", "--peers", peers_flag(peers))
                 for m in peers}
    try:
        asyncio.run(wait_for_status(f"http://{http[1]}", lambda s: s["leader"]))
        end(processes[3], signal.SIGKILL)
        # the operator's mistake: --peers naming only itself (it used to lead a cluster of one)
        refused = node(3, peers[3], http[3], tmp_path / "n3", "--peers", f"3={peers[3]}")
        try:
            code = refused.wait(30)
            stderr = refused.stderr.read()
        finally:
            end(refused)
        assert code == 2
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1, stderr
        assert "Traceback" not in stderr
        line = lines[0]
        assert line.startswith("pyraft node: member 3 refused to start: --peers ")
        # it names both: the peers given and the membership stored
        assert f"3={peers[3]} contradict" in line
        assert peers_flag(peers) in line
        assert str(tmp_path / "n3") in line
        # the same member restarted with its original command line is welcome
        processes[3] = node(3, peers[3], http[3], tmp_path / "n3", "--peers", peers_flag(peers))
        status = asyncio.run(wait_for_status(f"http://{http[3]}", lambda s: s["leader"]))
        assert sorted(m["id"] for m in status["members"]) == [1, 2, 3]
    finally:
        for process in processes.values():
            end(process)


def test_a_static_cluster_redirects_to_the_advertised_addresses(tmp_path):
    """No --http-peers: every member's addresses reach the others through the log. Members
    listen on 127.0.0.1 and advertise `localhost` names (another spelling of the same place),
    so the redirect and the status prove the advertised addresses travelled."""
    peers, http = cluster_addresses()
    processes = {
        m: node(m, peers[m], http[m], tmp_path / f"n{m}", "--peers", peers_flag(peers),
                "--advertise", peers[m].replace("127.0.0.1", "localhost"),
                "--advertise-http", http[m].replace("127.0.0.1", "localhost"))
        for m in peers}
    try:
        asyncio.run(_static_redirect(peers, http))
    finally:
        for process in processes.values():
            end(process)


async def _static_redirect(peers, http):
    import aiohttp

    urls = {m: f"http://{http[m]}" for m in http}
    advertised = {m: http[m].replace("127.0.0.1", "localhost") for m in http}
    first = await wait_for_status(urls[1], lambda s: s["leader"] and all(
        member["http"] == advertised[member["id"]] and member["address"].startswith("localhost")
        for member in s["members"]))
    leader = first["leader"]
    follower = next(m for m in (1, 2, 3) if m != leader)
    await wait_for_status(urls[follower], lambda s: s["leader"] == leader and all(
        member["http"] == advertised[member["id"]] for member in s["members"]))
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{urls[follower]}/v1/kv/k", data=b"v",
                               allow_redirects=False) as response:
            assert response.status == 307, await response.text()
            assert response.headers["Location"] == f"http://{advertised[leader]}/v1/kv/k"


def test_a_member_that_joined_restarts_without_join(tmp_path):
    peers, http = cluster_addresses()
    # membership changes need the admin credential: the members and the joiner share a token
    token = ("--admin-token-file", write_token_file(str(tmp_path / "admin-token")))
    processes = {m: node(m, peers[m], http[m], tmp_path / f"n{m}", "--peers", peers_flag(peers),
                         *token) for m in peers}
    joiner_listen, joiner_http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    try:
        asyncio.run(wait_for_status(f"http://{http[1]}", lambda s: s["leader"]))
        # the documented way to join: --join URL of any member, --peers the existing ones
        processes[4] = node(4, joiner_listen, joiner_http, tmp_path / "n4",
                            "--join", f"http://{http[1]}", "--peers", peers_flag(peers),
                            *token)
        url = f"http://{joiner_http}"
        asyncio.run(wait_for_status(url, lambda s: any(
            m["id"] == 4 and m["voter"] for m in s["members"])))
        end(processes[4], signal.SIGKILL)
        # restarted with neither --join nor --peers: the stored membership says it is a voter
        processes[4] = node(4, joiner_listen, joiner_http, tmp_path / "n4")
        status = asyncio.run(wait_for_status(url, lambda s: s["leader"] is not None))
        assert sorted(m["id"] for m in status["members"] if m["voter"]) == [1, 2, 3, 4]

        async def write_and_read():
            async with KVClient([url], timeout_s=2.0, retries=40) as client:
                await client.put("joined", "yes")
                assert await client.get("joined") == b"yes"

        asyncio.run(write_and_read())
    finally:
        for process in processes.values():
            end(process)


def test_a_member_without_data_says_a_restart_forgets_everything():
    listen, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    args = [sys.executable, "-m", "pyraft", "node", "--id", "1", "--listen", listen,
            "--http", http, "--log-level", "WARNING"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    try:
        asyncio.run(wait_for_status(f"http://{http}", lambda s: s["leader"] == 1))
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    lines = [line for line in stderr.splitlines() if "in memory" in line]
    assert len(lines) == 1, stderr
    assert "no --data" in lines[0] and "a restart forgets every vote and entry" in lines[0]
