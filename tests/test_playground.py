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
