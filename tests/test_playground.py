"""``pyraft playground`` starts a cluster, shows it working (and failing over), and stops
every process it started."""

from __future__ import annotations

import re
import subprocess
import sys


def test_playground_with_chaos_over_tcp():
    result = subprocess.run(
        [sys.executable, "-m", "pyraft", "playground", "--duration", "3", "--chaos", "1.2",
         "--interval", "0.2"],
        capture_output=True, text=True, timeout=120,
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "won the election for term" in out
    assert "chaos: SIGKILL member" in out and "leads after" in out
    written = int(re.search(r"stopping: (\d+) items written", out).group(1))
    assert written > 5


def test_playground_in_memory_over_tls():
    result = subprocess.run(
        [sys.executable, "-m", "pyraft", "playground", "--duration", "1.5", "--memory",
         "--transport", "tls", "--members", "5", "--interval", "0.2"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "member 5 listening" in result.stdout and "data in" not in result.stdout
    assert "items written" in result.stdout
