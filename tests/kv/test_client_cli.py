"""The client commands as a user runs them: ``python -m pyraft kv|status|member ...`` as
subprocesses against real ``pyraft node`` processes on 127.0.0.1, and against addresses that
do not answer (a refused port, a black hole, an ftp URL, a name that does not resolve).

Exit statuses checked: 0 success, 1 cluster unavailable or operation failed, 2 usage error,
3 negative answer (absent key, compare-and-set not applied)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from pyraft.kv.client import KVClient
from pyraft.testing.processes import free_port
from tests.kv.test_nodes import start_node, stop, wait_ready


def cli(*args, env=None, timeout=60):
    environment = {k: v for k, v in os.environ.items() if k != "PYRAFT_CLUSTER"}
    environment.update(env or {})
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pyraft", *args], capture_output=True,
                          text=True, timeout=timeout, env=environment)
    done.elapsed = time.monotonic() - started
    return done


def one_line_error(done, status):
    """The command failed with ``status`` and one line on stderr, no traceback; the line."""
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


# ---- a cluster that cannot be reached --------------------------------------------------------
@pytest.fixture
def black_hole():
    """A listening socket that never accepts (its backlog fills): its URL."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    yield f"http://127.0.0.1:{hole.getsockname()[1]}"
    hole.close()


def test_a_black_hole_ends_at_the_timeout_naming_the_url(black_hole):
    done = cli("kv", "get", "k", "--cluster", black_hole, "--timeout", "0.5")
    line = one_line_error(done, 1)
    assert black_hole in line and "timed out" in line
    assert done.elapsed < 5  # the old client took about 12 s here


def test_ctrl_c_ends_a_command_with_one_line_and_status_130():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(30)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    environment = {k: v for k, v in os.environ.items() if k != "PYRAFT_CLUSTER"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pyraft", "kv", "put", "k", "v", "--cluster", url,
         "--timeout", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=environment)
    try:
        connection, _ = listener.accept()  # the command is waiting for an answer now
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        connection.close()
    finally:
        listener.close()
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 130
    assert stderr.strip() == "pyraft kv: interrupted (a write's outcome is unknown)"


def test_a_refused_port_is_retried_until_the_timeout():
    url = f"http://127.0.0.1:{free_port()}"
    done = cli("kv", "put", "k", "v", "--cluster", url, "--timeout", "0.5")
    line = one_line_error(done, 1)
    assert f"{url}: connection refused" in line and "deadline" in line
    assert done.elapsed < 5


@pytest.mark.parametrize("command", [["kv", "delete", "k"], ["kv", "cas", "k", "-", "v"],
                                     ["member", "list"], ["member", "add", "4", "h:1"],
                                     ["member", "remove", "4"]])
def test_every_command_says_which_url_refused(command):
    url = f"http://127.0.0.1:{free_port()}"
    done = cli(*command, "--timeout", "0.5", env={"PYRAFT_CLUSTER": url})
    assert f"{url}: connection refused" in one_line_error(done, 1)
    assert done.stdout == ""


def test_the_status_of_a_cluster_that_does_not_answer_is_a_row_per_url():
    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    done = cli("status", "--cluster", ",".join(urls), "--timeout", "0.5")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[0] == "ID" and len(lines) == 3
    for url, line in zip(urls, lines[1:]):
        assert line.split()[:2] == ["-", "-"] and url.removeprefix("http://") in line
        assert line.endswith("connection refused")


def test_a_name_that_does_not_resolve_fails_at_once():
    url = "http://nonexistent.invalid:8080"
    done = cli("kv", "get", "k", "--cluster", url, "--timeout", "20")
    line = one_line_error(done, 1)
    assert f"{url}: DNS failure" in line
    assert done.elapsed < 15  # not retried until the 20 s deadline


@pytest.mark.parametrize("args, names", [
    (["kv", "get", "k", "--cluster", "ftp://127.0.0.1:8080"], "ftp://127.0.0.1:8080"),
    (["kv", "get", "k", "--cluster", "http://127.0.0.1:99999"], "http://127.0.0.1:99999"),
    (["status", "--cluster", "http://127.0.0.1:1/v1/status"], "http://127.0.0.1:1/v1/status"),
    (["member", "list", "--cluster", "http:// bad:1"], "http:// bad:1"),
    (["kv", "get", "k"], "PYRAFT_CLUSTER"),
    (["status"], "--cluster"),
    (["member", "list"], "PYRAFT_CLUSTER"),
    (["kv", "get", "a/b", "--cluster", "http://127.0.0.1:1"], "a/b"),
])
def test_usage_errors_are_one_line_and_exit_2(args, names):
    done = cli(*args)
    line = one_line_error(done, 2)
    assert names in line
    assert done.elapsed < 15  # nothing is retried


def test_a_bad_url_in_pyraft_cluster_is_a_usage_error():
    done = cli("kv", "get", "k", env={"PYRAFT_CLUSTER": "ftp://127.0.0.1:1"})
    assert "ftp://127.0.0.1:1" in one_line_error(done, 2)


def test_every_client_option_has_help():
    for command in (["kv"], ["kv", "get"], ["kv", "put"], ["kv", "delete"], ["kv", "cas"],
                    ["status"], ["member"], ["member", "list"], ["member", "add"],
                    ["member", "remove"]):
        done = cli(*command, "--help")
        assert done.returncode == 0, done.stderr
        for option in ("--cluster", "--timeout", "--json"):
            assert option in done.stdout
        assert "exit status" in done.stdout and "PYRAFT_CLUSTER" in done.stdout
        lines = done.stdout.splitlines()
        options = [i for i, line in enumerate(lines) if line.startswith("  -")]
        assert len(options) >= 4, command
        for i in options:
            # the help follows on the same line after two spaces or on the next, indented
            same_line = len(re.split(r"\s{2,}", lines[i].strip(), maxsplit=1)) == 2
            assert same_line or lines[i + 1].startswith(" " * 20), (command, lines[i])


# ---- a running cluster -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Three ``pyraft node`` members on 127.0.0.1: (peers, http, processes, urls, tmp); their
    admin token is in ``tmp / "admin-token"`` (membership changes need it)."""
    tmp = tmp_path_factory.mktemp("client-cli")
    token = tmp / "admin-token"
    token.write_text("client-cli-admin-token\n")
    token.chmod(0o600)
    peers = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3)}
    http = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3)}
    processes = {m: start_node(m, peers, http, tmp / f"n{m}", "--admin-token-file", str(token))
                 for m in peers}
    urls = {m: f"http://{http[m]}" for m in peers}
    try:
        asyncio.run(wait_ready(list(urls.values()), timeout=30))
        yield peers, http, processes, urls, tmp
    finally:
        for process in processes.values():
            stop(process)


def leader_of(urls) -> int:
    done = cli("member", "list", "--json", "--cluster", ",".join(urls.values()),
               "--timeout", "10")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["leader"]


def test_options_may_come_before_or_after_the_arguments(cluster):
    _, _, _, urls, _ = cluster
    url = ",".join(urls.values())
    assert cli("kv", "--cluster", url, "put", "color", "blue").stdout.strip() == "OK"
    assert cli("kv", "put", "color", "green", "--cluster", url).stdout.strip() == "OK"
    assert cli("kv", "--timeout", "10", "put", "--cluster", url, "shape", "round") \
        .returncode == 0
    for order in (["kv", "get", "color", "--json", "--cluster", url],
                  ["kv", "--json", "get", "color", "--cluster", url],
                  ["kv", "--cluster", url, "get", "--json", "color"],
                  ["kv", "get", "--cluster", url, "color", "--json", "--consistency", "lease"]):
        done = cli(*order)
        assert done.returncode == 0, (order, done.stderr)
        assert json.loads(done.stdout) == {"key": "color", "value": "green",
                                           "encoding": "utf-8"}, order
    done = cli("kv", "get", "color", "--cluster", url)
    assert (done.returncode, done.stdout) == (0, "green\n")
    done = cli("status", "--json", "--cluster", url)
    assert done.returncode == 0 and len(json.loads(done.stdout)["members"]) == 3


def test_pyraft_cluster_is_the_default_of_every_client_command(cluster):
    _, _, _, urls, _ = cluster
    env = {"PYRAFT_CLUSTER": ",".join(urls.values())}
    assert cli("kv", "put", "planet", "mars", env=env).returncode == 0
    assert cli("kv", "get", "planet", env=env).stdout == "mars\n"
    listed = cli("member", "list", "--json", env=env)
    assert listed.returncode == 0
    assert {m["id"] for m in json.loads(listed.stdout)["members"]} == {1, 2, 3}
    status = cli("status", env=env)
    assert status.returncode == 0 and status.stdout.count("\n") == 4  # header + 3 rows
    # --cluster wins over the variable
    wrong = {"PYRAFT_CLUSTER": f"http://127.0.0.1:{free_port()}"}
    assert cli("kv", "get", "planet", "--cluster", urls[1], env=wrong).stdout == "mars\n"
    assert "connection refused" in one_line_error(
        cli("kv", "get", "planet", "--timeout", "0.5", env=wrong), 1)


def test_human_output_has_no_python_reprs(cluster):
    _, _, _, urls, _ = cluster
    url = urls[2]
    absent = cli("kv", "get", "never-written", "--cluster", url)
    assert (absent.returncode, absent.stdout, absent.stderr) == (3, "", "")
    absent_json = cli("kv", "get", "never-written", "--cluster", url, "--json")
    assert absent_json.returncode == 3
    assert json.loads(absent_json.stdout) == {"key": "never-written", "value": None}
    assert cli("kv", "put", "fruit", "pear", "--cluster", url).stdout == "OK\n"
    failed = cli("kv", "cas", "fruit", "apple", "plum", "--cluster", url)
    assert (failed.returncode, failed.stdout) == (3, "not applied: the value is pear\n")
    failed = cli("kv", "cas", "fresh", "apple", "plum", "--cluster", url)
    assert (failed.returncode, failed.stdout) == (3, "not applied: the key is absent\n")
    assert cli("kv", "cas", "fruit", "pear", "plum", "--cluster", url).stdout == "OK\n"
    assert cli("kv", "cas", "new", "-", "x", "--cluster", url).returncode == 0
    assert cli("kv", "delete", "new", "--cluster", url).stdout == "deleted\n"
    assert cli("kv", "delete", "new", "--cluster", url).stdout == "absent: nothing deleted\n"
    binary = b"\xff\x00raw"

    async def put_binary():
        async with KVClient([url], timeout_s=5, deadline_s=20) as kv:
            await kv.put("blob", binary)

    asyncio.run(put_binary())
    done = cli("kv", "get", "blob", "--cluster", url)
    assert done.stdout == "base64:" + base64.b64encode(binary).decode() + "\n"
    done = cli("kv", "get", "blob", "--cluster", url, "--json")
    assert json.loads(done.stdout)["encoding"] == "base64"
    assert base64.b64decode(json.loads(done.stdout)["value"]) == binary
    for done in (absent, failed, cli("status", "--cluster", url),
                 cli("member", "list", "--cluster", url)):
        for repr_text in ("None", "b'", "'"):
            assert repr_text not in done.stdout, done.stdout


def test_member_add_list_and_remove_through_a_follower(cluster, tmp_path):
    token = ["--admin-token-file", str(cluster[4] / "admin-token")]
    peers, _, _, urls, _ = cluster
    leader = leader_of(urls)
    follower_url = next(u for m, u in urls.items() if m != leader)
    raft, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    config = tmp_path / "joiner.json"
    config.write_text(json.dumps({"member_id": 4, "cold_start": False}))
    joiner = subprocess.Popen(
        [sys.executable, "-m", "pyraft", "node", "--id", "4", "--listen", raft, "--http", http,
         "--data", str(tmp_path / "n4"), "--config", str(config), "--log-level", "WARNING",
         "--peers", ",".join(f"{m}={a}" for m, a in peers.items())],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    async def wait_serving():  # as an operator would: the new member's process is up
        async with KVClient([f"http://{http}"], timeout_s=1, deadline_s=30) as kv:
            await kv.status()

    try:
        asyncio.run(wait_serving())
        refused = cli("member", "add", "4", raft, "--cluster", follower_url, "--timeout", "10")
        assert "401" in one_line_error(refused, 1)
        added = cli("member", "add", "4", raft, "--http-address", http, "--metadata",
                    "zone=a", "--cluster", follower_url, "--timeout", "40", *token)
        assert added.returncode == 0, added.stderr
        assert added.stdout == f"member 4 added at {raft}\n"
        listed = cli("member", "list", "--cluster", follower_url, "--json")
        members = {m["id"]: m for m in json.loads(listed.stdout)["members"]}
        assert set(members) == {1, 2, 3, 4}
        assert members[4]["address"] == raft and members[4]["http"] == http
        assert members[4]["metadata"]["zone"] == "a"
        table = cli("member", "list", "--cluster", urls[leader]).stdout.splitlines()
        assert table[0].split() == ["ID", "RAFT", "ADDRESS", "HTTP", "ADDRESS", "KIND",
                                    "LEADER"]
        row = next(line.split() for line in table[1:] if line.split()[0] == "4")
        assert row == ["4", raft, http, "voter"]
        again = cli("member", "add", "4", raft, "--cluster", follower_url, "--timeout", "20",
                    *token)
        assert again.returncode == 0 and "voter already" in again.stdout
        # the new member answers a status of its own, found through the others' membership
        status = cli("status", "--cluster", follower_url, "--json", "--timeout", "10")
        rows = {row["id"]: row for row in json.loads(status.stdout)["members"]}
        assert set(rows) == {1, 2, 3, 4} and rows[4]["http"] == http
        assert rows[4]["error"] is None and rows[4]["role"] == "follower"
        # the new member announced its own label (http) and kept the operator's (zone)
        listed = cli("member", "list", "--cluster", follower_url, "--json")
        members = {m["id"]: m for m in json.loads(listed.stdout)["members"]}
        assert members[4]["metadata"] == {"http": http, "zone": "a"}
        removed = cli("member", "remove", "4", "--cluster", follower_url, "--timeout", "20")
        assert "401" in one_line_error(removed, 1)
        listed = cli("member", "list", "--cluster", urls[leader], "--json")
        assert {m["id"] for m in json.loads(listed.stdout)["members"]} == {1, 2, 3, 4}
        removed = cli("member", "remove", "4", "--cluster", follower_url, "--timeout", "20",
                      *token)
        assert (removed.returncode, removed.stdout) == (0, "member 4 removed\n")
        listed = cli("member", "list", "--cluster", urls[leader], "--json")
        assert {m["id"] for m in json.loads(listed.stdout)["members"]} == {1, 2, 3}
    finally:
        stop(joiner)


def test_member_changes_the_cluster_refuses_are_failures(cluster):
    _, _, _, urls, _ = cluster
    done = cli("member", "remove", "77", "--cluster", urls[1], "--timeout", "10",
               "--admin-token-file", str(cluster[4] / "admin-token"))
    line = one_line_error(done, 1)
    assert "77" in line or "member" in line


def test_the_status_table_shows_a_killed_member_as_a_row_with_the_error(cluster):
    """Last in the module: it kills a follower of the shared cluster."""
    _, http, processes, urls, _ = cluster
    leader = leader_of(urls)
    killed = next(m for m in urls if m != leader)
    done = cli("status", "--cluster", urls[leader], "--timeout", "10")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["ID", "RAFT", "ADDRESS", "HTTP", "ADDRESS", "ROLE", "TERM",
                                "COMMIT", "APPLIED", "LAG", "ERROR"]
    rows = {int(line.split()[0]): line.split() for line in lines[1:]}
    assert set(rows) == {1, 2, 3}
    assert rows[leader][3] == "leader" and rows[killed][3] == "follower"
    assert rows[leader][2] == http[leader] and rows[killed][-1] == "-"  # no error
    processes[killed].send_signal(signal.SIGKILL)
    processes[killed].wait(10)
    done = cli("status", "--cluster", urls[leader], "--timeout", "3")
    assert done.returncode == 1  # a member did not answer; the table is still printed
    rows = {int(line.split()[0]): line for line in done.stdout.splitlines()[1:]}
    assert set(rows) == {1, 2, 3}
    assert http[killed] in rows[killed] and "connection refused" in rows[killed]
    assert "leader" in rows[leader]
    as_json = cli("status", "--cluster", urls[leader], "--timeout", "3", "--json")
    members = {row["id"]: row for row in json.loads(as_json.stdout)["members"]}
    assert members[killed]["error"] == "connection refused"
    assert members[killed]["term"] is None and members[leader]["term"] >= 1
    for member in (m for m in urls if m != killed):
        assert members[member]["error"] is None and members[member]["applied"] >= 1
    # the killed member's own URL given first: its row comes from the others' membership
    done = cli("status", "--cluster", f"{urls[killed]},{urls[leader]}", "--timeout", "3")
    rows = {int(line.split()[0]): line for line in done.stdout.splitlines()[1:]}
    assert set(rows) == {1, 2, 3} and "connection refused" in rows[killed]
