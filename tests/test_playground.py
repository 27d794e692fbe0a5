"""``pyraft playground`` starts a key-value cluster, shows it working (and failing over),
serves the HTTP API, and stops every process it started."""

from __future__ import annotations

import re
import subprocess
import sys


def test_playground_with_chaos_over_tcp():
    result = subprocess.run(
        [sys.executable, "-m", "pyraft", "playground", "--duration", "4", "--chaos", "1.5",
         "--interval", "0.2"],
        capture_output=True, text=True, timeout=120,
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "won the election for term" in out and "key-value API on http://" in out
    assert "chaos: SIGKILL member" in out and "leads after" in out
    written = int(re.search(r"stopping: (\d+) writes", out).group(1))
    assert written > 5
    assert f"last value write {written - 1}\n" in out  # read back through the API


def test_playground_in_memory_over_tls():
    result = subprocess.run(
        [sys.executable, "-m", "pyraft", "playground", "--duration", "2", "--memory",
         "--transport", "tls", "--members", "5", "--interval", "0.2"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "member 5: raft on" in result.stdout and "data in" not in result.stdout
    # the API is HTTPS with the throw-away CA, and the playground's own client trusts it
    assert "key-value API on https://127.0.0.1:" in result.stdout
    assert "http://" not in result.stdout
    assert "writes, last value" in result.stdout


# ---- the process handle it starts its members with (pyraft.testing.processes.KVNode) -------
PEERS = {1: "127.0.0.1:7001", 2: "127.0.0.1:7002"}
HTTP = {1: "127.0.0.1:8001", 2: "127.0.0.1:8002"}


def test_a_durable_node_keeps_its_state_in_sqlite_and_flushes_as_asked():
    from pyraft.testing.processes import KV_NODE_SNAPSHOT_ENTRIES, KVNode

    node = KVNode(2, PEERS, HTTP, "/tmp/node2", None, token_file="/tmp/token")
    assert node.id == 2 and node.url == "http://127.0.0.1:8002"
    assert node.arguments() == [
        "--log-level", "WARNING", "--data", "/tmp/node2", "--state", "sqlite",
        "--snapshot-entries", str(KV_NODE_SNAPSHOT_ENTRIES), "--admin-token-file", "/tmp/token"]
    flushing = KVNode(2, PEERS, HTTP, "/tmp/node2", None, snapshot_entries=500)
    assert flushing.arguments()[-2:] == ["--snapshot-entries", "500"]


def test_a_node_in_memory_over_tls_serves_https():
    from pyraft.testing.processes import KVNode

    node = KVNode(1, PEERS, HTTP, None, ("m1.pem", "m1.key", "ca.pem"))
    assert node.url == "https://127.0.0.1:8001"
    assert node.arguments() == [
        "--log-level", "WARNING", "--transport", "tls", "--cert", "m1.pem", "--key", "m1.key",
        "--ca", "ca.pem", "--http-cert", "m1.pem", "--http-key", "m1.key"]
    assert not node.alive  # nothing was started


def test_the_playground_and_the_bench_share_the_handle_and_the_bench_needs_no_playground():
    code = ("import sys, pyraft.bench.workloads as w, pyraft.testing.processes as p; "
            "assert w.KVNode is p.KVNode; assert 'pyraft.playground' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
