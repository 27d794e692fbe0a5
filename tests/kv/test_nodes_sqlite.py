"""``pyraft node --state sqlite`` (issue 15, finding 2): real processes on 127.0.0.1 whose
key-value state lives in SQLite, a disk state machine. A follower offline while the leader
compacts its log behind the store's flushes catches up by snapshot (an export of the leader's
database) when it comes back; a member that joins after compaction gets the state the same
way; the leader never stops."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import tempfile
import time

from pyraft.kv.client import KVClient
from pyraft.kv.security import write_token_file
from pyraft.testing.processes import free_port

KEYS = 2000
WRITERS = 8


class Node:
    """One ``pyraft node --state sqlite`` process, started as the README documents it."""

    def __init__(self, member, peers, http, data, join=None, token=None):
        self.member, self.http, self.data = member, http[member], data
        self.args = [sys.executable, "-m", "pyraft", "node", "--id", str(member),
                     "--listen", peers[member], "--http", http[member], "--data", str(data),
                     "--peers", ",".join(f"{m}={a}" for m, a in peers.items() if m != 4
                                         or join is None),
                     "--http-peers", ",".join(f"{m}={a}" for m, a in http.items()),
                     "--state", "sqlite", "--snapshot-entries", "200", "--log-level", "INFO"]
        if join is not None:
            self.args += ["--join", join]
        if token is not None:  # the admin credential membership changes need
            self.args += ["--admin-token-file", str(token)]
        self.log = tempfile.TemporaryFile(mode="w+", prefix=f"node{member}-")
        self.process = None

    @property
    def url(self):
        return f"http://{self.http}"

    def start(self):
        # the log goes to a file, never a pipe nobody reads (a full pipe blocks the member)
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=self.log)
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGKILL)
                self.process.wait(10)

    def close(self):
        self.stop()
        self.log.close()

    def text(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]


def start_cluster(tmp_path, members=(1, 2, 3), extra=(4,)):
    peers = {m: f"127.0.0.1:{free_port()}" for m in (*members, *extra)}
    http = {m: f"127.0.0.1:{free_port()}" for m in (*members, *extra)}
    token = write_token_file(str(tmp_path / "admin-token"))
    nodes = {m: Node(m, {k: v for k, v in peers.items() if k in members}, http,
                     tmp_path / f"n{m}", token=token).start() for m in members}
    return peers, http, nodes


async def status_of(url):
    async with KVClient([url], timeout_s=1.0, retries=1) as client:
        return await client.status(url)


async def wait_for_leader(nodes, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node in nodes:
            try:
                status = await status_of(node.url)
            except Exception:  # not up yet
                continue
            if status["role"] == "leader":
                return node, status
        await asyncio.sleep(0.1)
    raise AssertionError("no leader in time")


async def write_keys(urls, count=KEYS, writers=WRITERS):
    """``count`` keys ``key-<i>`` = ``value-<i>``, through ``writers`` clients at once."""

    async def writer(part):
        async with KVClient(urls, timeout_s=2.0, retries=40) as client:
            for i in range(part, count, writers):
                await client.put(f"key-{i}", f"value-{i}")

    await asyncio.gather(*(writer(part) for part in range(writers)))


async def caught_up(node, leader_url, timeout=15.0):
    """Wait until ``node`` applied everything the leader committed; return its status."""
    target = (await status_of(leader_url))["commit"]
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        try:
            status = await status_of(node.url)
            if status["applied"] >= target:
                return status
        except Exception:  # starting
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"member {node.member} did not catch up: {status}\n{node.text()}")


async def every_key_reads_back_locally(node, count=KEYS):
    async with KVClient([node.url], timeout_s=2.0, retries=5) as client:
        for start in range(0, count, 200):
            values = await asyncio.gather(*(client.get(f"key-{i}", consistency="local")
                                            for i in range(start, min(start + 200, count))))
            for i, value in zip(range(start, count), values):
                assert value == f"value-{i}".encode(), (i, value)


def test_a_follower_offline_while_the_leader_compacts_catches_up_by_snapshot(tmp_path):
    peers, http, nodes = start_cluster(tmp_path)

    async def scenario():
        leader, _ = await wait_for_leader(list(nodes.values()))
        follower = next(n for n in nodes.values() if n is not leader)
        before = await status_of(follower.url)
        follower.stop(signal.SIGKILL)  # offline: nothing it did not sync survives
        urls = [n.url for n in nodes.values() if n is not follower]
        await write_keys(urls)
        status = await status_of(leader.url)
        assert status["role"] == "leader" and status["fatal_error"] is None
        # the leader's log no longer holds what the follower lacks: only a snapshot helps
        assert status["first_index"] > before["applied"] + 1 + 1000, status
        follower.start()
        await caught_up(follower, leader.url)
        await every_key_reads_back_locally(follower)
        status = await status_of(leader.url)
        assert status["role"] == "leader" and status["fatal_error"] is None
        assert leader.process.poll() is None
        assert "exported the store" in leader.text()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        for node in nodes.values():
            node.close()


def test_a_member_joining_after_compaction_gets_the_state(tmp_path):
    peers, http, nodes = start_cluster(tmp_path)

    async def scenario():
        leader, _ = await wait_for_leader(list(nodes.values()))
        urls = [n.url for n in nodes.values()]
        await write_keys(urls)
        assert (await status_of(leader.url))["first_index"] > 1000
        joiner = Node(4, peers, http, tmp_path / "n4", join=urls[0],
                      token=tmp_path / "admin-token").start()
        nodes[4] = joiner
        deadline = time.monotonic() + 15
        voters = set()
        while time.monotonic() < deadline and 4 not in voters:
            status = await status_of(leader.url)
            voters = {m["id"] for m in status["members"] if m["voter"]}
            await asyncio.sleep(0.1)
        assert 4 in voters, joiner.text()
        await caught_up(joiner, leader.url)
        await every_key_reads_back_locally(joiner)
        status = await status_of(leader.url)
        assert status["role"] == "leader" and status["fatal_error"] is None

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        for node in nodes.values():
            node.close()
